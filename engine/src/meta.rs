//! Metadata the owner declares for a dataset: the only facts about it that are ever published.
//!
//! Nothing here is inferred from the rows. Values inferred from the data (ranges, categories, counts,
//! dates) are [`Suggestions`], shown to the owner when loading and never sent to an FI.

use crate::value::DataType;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// What one unit of differential privacy protects in a dataset.
///
/// A Duo node usually holds one person's data, so DP protects an event or a month of activity, not the
/// person's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PrivacyUnit {
    /// One row (one payment, one transaction).
    Event,
    /// All rows of one calendar month (by the dataset's time column).
    Month,
    /// The whole dataset (only for nodes that hold several people's data).
    Dataset,
}

impl PrivacyUnit {
    /// Plain words for owner screens.
    pub fn describe(self) -> &'static str {
        match self {
            PrivacyUnit::Event => "one payment or transaction (one row)",
            PrivacyUnit::Month => "one calendar month of activity",
            PrivacyUnit::Dataset => "the whole dataset",
        }
    }
}

/// Public lower and upper bound of a numeric column, in the stored unit (cents for money).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Bounds {
    /// Lower bound (inclusive).
    pub lo: f64,
    /// Upper bound (inclusive).
    pub hi: f64,
}

impl From<[f64; 2]> for Bounds {
    fn from(v: [f64; 2]) -> Self {
        Bounds { lo: v[0], hi: v[1] }
    }
}

impl From<Bounds> for [f64; 2] {
    fn from(b: Bounds) -> Self {
        [b.lo, b.hi]
    }
}

/// The public time window a dataset covers (inclusive dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TimeWindow {
    /// First day covered.
    pub start: NaiveDate,
    /// Last day covered.
    pub end: NaiveDate,
}

/// Declared metadata of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ColumnMeta {
    /// Column name; must match a CSV header.
    pub name: String,
    /// Declared type.
    #[serde(rename = "type")]
    pub dtype: DataType,
    /// What the column holds, in plain words.
    #[serde(default)]
    pub description: String,
    /// Unit of the stored values (for example "USD cents", "days").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Public bounds for numeric columns, in the stored unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Bounds>,
    /// Public category set for categorical columns; values outside it are rejected at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// Whether cells may be empty.
    #[serde(default)]
    pub nullable: bool,
}

/// Declared metadata of a dataset: everything an FI may learn about it without a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DatasetMeta {
    /// Dataset name (letters, digits and underscores; starts with a letter).
    pub name: String,
    /// What the dataset holds, in plain words.
    #[serde(default)]
    pub description: String,
    /// Free tags that policies can match on (for example "housing", "bank").
    #[serde(default)]
    pub tags: Vec<String>,
    /// What one unit of differential privacy protects.
    pub privacy_unit: PrivacyUnit,
    /// The date column that places each row in time (used by windows and group-by-month).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_column: Option<String>,
    /// The public time window covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    /// A public upper bound on the number of rows (used for static sizes and quotas).
    pub max_rows: u64,
    /// A public upper bound on the rows of one calendar month; required when the privacy unit is a month (it is
    /// how many rows one unit can contribute to a differentially private release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_month: Option<u32>,
    /// Columns in CSV order.
    pub columns: Vec<ColumnMeta>,
}

impl DatasetMeta {
    /// The declared column with this name.
    pub fn column(&self, name: &str) -> Option<&ColumnMeta> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// What the owner's node inferred from the rows at load time. Shown only to the owner, as suggestions for the
/// metadata; never published.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Suggestions {
    /// Number of rows loaded.
    pub rows: u64,
    /// Per column: observed minimum and maximum (numbers in the stored unit, dates as text), distinct
    /// categories (up to a limit), and the count of empty cells.
    pub columns: Vec<ColumnSuggestion>,
}

/// Observed facts about one column (owner-only).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ColumnSuggestion {
    /// Column name.
    pub name: String,
    /// Observed minimum, as text.
    pub min: Option<String>,
    /// Observed maximum, as text.
    pub max: Option<String>,
    /// Distinct categories seen (categorical columns; at most 64).
    pub categories: Option<Vec<String>>,
    /// Empty cells seen.
    pub nulls: u64,
    /// Values outside the declared bounds (they are kept; bounds are applied by clamping).
    pub outside_bounds: u64,
}
