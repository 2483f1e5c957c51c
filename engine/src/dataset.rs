//! Typed, versioned datasets held on the owner's node.

use crate::meta::DatasetMeta;
use crate::value::{DataType, Value};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The cells of one column, typed. `None` is a missing value (allowed only in nullable columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnData {
    /// Integers, or money in cents (the column's metadata says which).
    Int(Vec<Option<i64>>),
    /// Finite floats.
    Float(Vec<Option<f64>>),
    /// Booleans.
    Bool(Vec<Option<bool>>),
    /// Dates.
    Date(Vec<Option<NaiveDate>>),
    /// Categorical strings.
    Cat(Vec<Option<String>>),
}

impl ColumnData {
    /// An empty column for a declared type.
    pub fn empty(dtype: DataType) -> Self {
        match dtype {
            DataType::I64 | DataType::Money => ColumnData::Int(Vec::new()),
            DataType::F64 => ColumnData::Float(Vec::new()),
            DataType::Bool => ColumnData::Bool(Vec::new()),
            DataType::Date => ColumnData::Date(Vec::new()),
            DataType::Category => ColumnData::Cat(Vec::new()),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Int(v) => v.len(),
            ColumnData::Float(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Date(v) => v.len(),
            ColumnData::Cat(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value in row `i` (`Value::Null` past the end or when missing).
    pub fn value(&self, i: usize) -> Value {
        match self {
            ColumnData::Int(v) => v.get(i).copied().flatten().map_or(Value::Null, Value::Int),
            ColumnData::Float(v) => v
                .get(i)
                .copied()
                .flatten()
                .map_or(Value::Null, Value::Float),
            ColumnData::Bool(v) => v.get(i).copied().flatten().map_or(Value::Null, Value::Bool),
            ColumnData::Date(v) => v.get(i).copied().flatten().map_or(Value::Null, Value::Date),
            ColumnData::Cat(v) => v.get(i).cloned().flatten().map_or(Value::Null, Value::Str),
        }
    }
}

/// One named column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Column name, as declared in the metadata.
    pub name: String,
    /// The cells.
    pub data: ColumnData,
}

/// A typed table with the owner's declared metadata and a version number.
///
/// The version is assigned by the store when the dataset is loaded; each reload of the same name gets a new
/// version, and approvals and stored answers bind to the version they saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The owner's declared metadata (what may be published).
    pub meta: DatasetMeta,
    /// Version of this dataset under its name (1 for the first load).
    pub version: u64,
    /// Columns in declared order, all of the same length.
    pub columns: Vec<Column>,
}

impl Dataset {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Read access to the datasets an evaluation needs, by name.
pub trait DataSource {
    /// The current version of the dataset with this name, if loaded.
    fn dataset(&self, name: &str) -> Option<&Dataset>;
}

impl DataSource for std::collections::BTreeMap<String, Dataset> {
    fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.get(name)
    }
}
