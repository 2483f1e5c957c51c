//! Builders of lineages and dates for the engine's unit tests (test builds only).

use crate::expr::{AggKind, ArithOp, CmpOp, Expr, Pred};
use crate::value::Value;
use chrono::NaiveDate;

/// A date from `YYYY-MM-DD`.
pub(crate) fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A whole dataset.
pub(crate) fn ds(name: &str) -> Expr {
    Expr::Dataset { name: name.into() }
}

/// One column of a table.
pub(crate) fn col(t: Expr, name: &str) -> Expr {
    Expr::Column {
        input: Box::new(t),
        name: name.into(),
    }
}

/// Rows of a table where a predicate holds.
pub(crate) fn filter(t: Expr, pred: Pred) -> Expr {
    Expr::Filter {
        input: Box::new(t),
        pred,
    }
}

/// An aggregate.
pub(crate) fn agg(kind: AggKind, e: Expr) -> Expr {
    Expr::Aggregate {
        kind,
        input: Box::new(e),
    }
}

/// Arithmetic.
pub(crate) fn arith(op: ArithOp, l: Expr, r: Expr) -> Expr {
    Expr::Arith {
        op,
        left: Box::new(l),
        right: Box::new(r),
    }
}

/// A constant.
pub(crate) fn lit(v: Value) -> Expr {
    Expr::Literal { value: v }
}

/// `column == "s"`.
pub(crate) fn cat_is(column: &str, s: &str) -> Pred {
    Pred::Compare {
        column: column.into(),
        op: CmpOp::Eq,
        value: Value::Str(s.into()),
    }
}
