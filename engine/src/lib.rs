//! The Duo engine: typed datasets, published metadata, lazy pointers and their lineage, and evaluation.
//!
//! An FI works with pointers to data on the owner's node. Each pointer operation type-checks against the
//! published metadata and extends a lineage ([`expr::Expr`]); nothing is computed until a release of the
//! lineage is approved, and then [`eval::evaluate`] runs it on the owner's machine.
//!
//! Layout:
//! - [`value`], [`dataset`], [`meta`]: the data model and the metadata the owner publishes;
//! - [`ingest`]: CSV into typed datasets, with errors that name the line and column;
//! - [`expr`]: the lineage tree; [`parse`]: the expression syntax; [`render`]: lineages in plain words;
//! - [`mod@check`]: static type-checking and quotas; [`eval`]: evaluation at release;
//! - [`catalogue`]: named alternative-data attributes;
//! - [`sample`]: a seeded generator of realistic sample data.
#![deny(missing_docs)]

pub mod catalogue;
pub mod check;
pub mod dataset;
pub mod draft;
pub mod eval;
pub mod expr;
pub mod ingest;
pub mod meta;
pub mod parse;
pub mod render;
pub mod sample;
#[cfg(test)]
pub(crate) mod testkit;
pub mod text;
pub mod value;

pub use check::{check, CheckContext, CheckError, Checked, Limits, Type};
pub use dataset::{Column, ColumnData, DataSource, Dataset};
pub use eval::{evaluate, Answer, EvalError};
pub use expr::{AggKind, ArithOp, CmpOp, Expr, OpKind, Pred};
pub use meta::{Bounds, ColumnMeta, DatasetMeta, PrivacyUnit, Suggestions, TimeWindow};
pub use value::{DataType, Value};
