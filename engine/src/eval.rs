//! Evaluation of a checked lineage on the owner's data, at release time only.

use crate::dataset::DataSource;
use crate::expr::Expr;
use crate::value::Value;
use serde::{Deserialize, Serialize};

/// The result of evaluating a lineage: what a plaintext release reveals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// One value.
    Scalar {
        /// The value.
        value: Value,
    },
    /// A vector, with a label per entry (for example `2026-03` for a month).
    Vector {
        /// Entry labels.
        labels: Vec<String>,
        /// Entries.
        values: Vec<Value>,
    },
    /// Counts in public bins.
    Histogram {
        /// Bin edges.
        edges: Vec<f64>,
        /// Count per bin.
        counts: Vec<u64>,
    },
    /// Rows (a row-level release of a table or a column).
    Rows {
        /// Column names.
        columns: Vec<String>,
        /// Rows of values.
        rows: Vec<Vec<Value>>,
    },
}

/// Why evaluation failed. Only an approved release evaluates, so these reach the FI only with the owner's
/// approval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A dataset the lineage reads is no longer loaded.
    #[error("dataset `{0}` is not loaded")]
    MissingDataset(String),
    /// A column the lineage reads is missing (the dataset changed shape).
    #[error("dataset `{dataset}` has no column `{column}`")]
    MissingColumn {
        /// Dataset.
        dataset: String,
        /// Column.
        column: String,
    },
    /// The lineage was not checked (it holds a pointer reference or an unresolved window).
    #[error("lineage is not resolved: {0}")]
    Unresolved(String),
    /// Any other mismatch between the lineage and the data.
    #[error("{0}")]
    Other(String),
}

/// Evaluate a checked (resolved) lineage.
pub fn evaluate(expr: &Expr, data: &dyn DataSource) -> Result<Answer, EvalError> {
    let _ = (expr, data);
    unimplemented!("evaluate")
}
