//! Scalar values and column types.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The type of a column, a scalar or the elements of a vector.
///
/// Money is stored as integer cents (`i64`); it is its own type so that renders and bounds can say
/// "cents" and so that arithmetic on money stays exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// 64-bit signed integer.
    I64,
    /// 64-bit float; never NaN or infinite in a dataset.
    F64,
    /// Boolean.
    Bool,
    /// Calendar date (no time of day).
    Date,
    /// Categorical string.
    Category,
    /// Money as integer cents.
    Money,
}

impl DataType {
    /// Whether values of this type are numbers (integers, floats, money or booleans as 0/1).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            DataType::I64 | DataType::F64 | DataType::Money | DataType::Bool
        )
    }

    /// The name used in metadata files and the expression syntax.
    pub fn name(self) -> &'static str {
        match self {
            DataType::I64 => "i64",
            DataType::F64 => "f64",
            DataType::Bool => "bool",
            DataType::Date => "date",
            DataType::Category => "category",
            DataType::Money => "money",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value: a cell of a dataset, a literal in an expression, or a released scalar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// Missing, or the result of a total operation that has no value (such as x / 0).
    Null,
    /// Integer (also money in cents).
    Int(i64),
    /// Float; never NaN or infinite.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Calendar date.
    Date(NaiveDate),
    /// Categorical string.
    Str(String),
}

impl Value {
    /// The value as a float, if it is a number (booleans count as 0 and 1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}
