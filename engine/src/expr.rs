//! The lineage: a tree of typed, allowlisted operations over dataset sources.
//!
//! An FI never sends code. It sends an [`Expr`], built either by the pointer API (each pointer operation
//! wraps the expression of its input) or parsed from the expression syntax in [`crate::parse`]. The owner's
//! node type-checks it against the published metadata ([`mod@crate::check`]), which also resolves relative time
//! windows to concrete dates; only a checked expression is stored with a request, rendered in plain words
//! ([`crate::render`]) and, once a release is approved, evaluated ([`crate::eval`]).

use crate::value::Value;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One node of a lineage. Table-, column-, vector- and scalar-valued nodes share this type; the checker
/// assigns each a [`crate::check::Type`] and rejects ill-typed trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "node", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expr {
    /// A reference to a pointer already created in this session (wire only: the owner substitutes the
    /// pointer's expression before checking, so stored lineages never contain it).
    Ptr {
        /// Pointer id, as returned by the owner.
        id: u64,
    },
    /// A whole dataset (a table).
    Dataset {
        /// Dataset name.
        name: String,
    },
    /// Keep some columns of a table (a table).
    Select {
        /// The table.
        input: Box<Expr>,
        /// Columns to keep, in order.
        columns: Vec<String>,
    },
    /// Keep the rows of a table that satisfy a predicate (a table).
    Filter {
        /// The table.
        input: Box<Expr>,
        /// Row predicate over the table's columns.
        pred: Pred,
    },
    /// One column of a table (a column).
    Column {
        /// The table.
        input: Box<Expr>,
        /// Column name.
        name: String,
    },
    /// Clamp each value of a numeric column, vector or scalar into `[lo, hi]` (in the stored unit).
    Clamp {
        /// What to clamp.
        input: Box<Expr>,
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Element-wise arithmetic between two columns of the same rows, or a column and a scalar, or two
    /// scalars. Division by zero gives null; integer overflow saturates. `date - date` gives days.
    Arith {
        /// The operator.
        op: ArithOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// Element-wise comparison giving a boolean column (or scalar).
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// A constant.
    Literal {
        /// The value.
        value: Value,
    },
    /// An aggregate of a column or vector (count also takes a table), giving a scalar.
    Aggregate {
        /// Which aggregate.
        kind: AggKind,
        /// What to aggregate.
        input: Box<Expr>,
    },
    /// The `q`-quantile of a numeric column (`0 <= q <= 1`; the median is 0.5), giving a scalar.
    Quantile {
        /// The column.
        input: Box<Expr>,
        /// Which quantile.
        q: f64,
    },
    /// Counts of a numeric column's values in public bins, given by increasing edges:
    /// bin i holds `edges[i] <= x < edges[i+1]`, the last bin also holds `x == edges[last]`.
    Histogram {
        /// The column.
        input: Box<Expr>,
        /// Bin edges (at least two, strictly increasing).
        edges: Vec<f64>,
    },
    /// An aggregate per calendar month of the table's public time window, giving a vector with one entry per
    /// month (a static length). The month of a row comes from its dataset's time column.
    ByMonth {
        /// Which aggregate to apply within each month.
        kind: AggKind,
        /// The column (its table must have a time column and a window).
        input: Box<Expr>,
    },
    /// An aggregate per category of a category column of the same table, over the column's declared (public)
    /// category set, giving a vector with one entry per declared category, in the declared order (a static
    /// length; a category with no rows still has its entry).
    ByCategory {
        /// Which aggregate to apply within each category.
        kind: AggKind,
        /// The column (of a table whose dataset has the category column).
        input: Box<Expr>,
        /// The category column of the input's dataset that gives each row its group.
        column: String,
    },
    /// Dot product of a numeric vector with public weights of the same length (a scalar).
    Dot {
        /// The vector.
        input: Box<Expr>,
        /// Weights.
        weights: Vec<f64>,
    },
    /// A named attribute from the catalogue ([`crate::catalogue`]), over the window ending at `window_end`
    /// (the last day of a month). `None` means "ending at the last full month"; the checker resolves it.
    Catalogue {
        /// Attribute name.
        name: String,
        /// Last day of the window.
        window_end: Option<NaiveDate>,
    },
    /// Several questions asked together (a batch): released as one request that is decided, charged and
    /// answered as a whole, with one answer per item in order. Only the whole of a lineage can be a batch, and
    /// its items are not batches.
    Batch {
        /// The questions, in order (at least one; at most [`MAX_BATCH`]).
        items: Vec<Expr>,
    },
}

/// The most questions one batch may hold.
pub const MAX_BATCH: usize = 32;

/// A row predicate inside [`Expr::Filter`]. Column names refer to the filtered table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pred {
    /// `column op value` (for example `category == "rent"`, `amount > 10000`).
    Compare {
        /// Column name.
        column: String,
        /// The operator.
        op: CmpOp,
        /// Literal to compare with (must fit the column's type; a category must be in its public set).
        value: Value,
    },
    /// `left op right` between two columns of the same table (for example `paid_date <= due_date`).
    CompareColumns {
        /// Left column.
        left: String,
        /// The operator.
        op: CmpOp,
        /// Right column.
        right: String,
    },
    /// A date column within `[from, to]` (inclusive).
    Between {
        /// Date column.
        column: String,
        /// First day.
        from: NaiveDate,
        /// Last day.
        to: NaiveDate,
    },
    /// The time column within the last `months` full calendar months; the checker resolves it to
    /// [`Pred::Between`] over the dataset's time column (or the named column).
    LastMonths {
        /// Number of months.
        months: u32,
        /// Date column; `None` means the dataset's time column.
        column: Option<String>,
    },
    /// Both hold.
    And(Box<Pred>, Box<Pred>),
    /// Either holds.
    Or(Box<Pred>, Box<Pred>),
    /// Does not hold.
    Not(Box<Pred>),
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (by zero gives null)
    Div,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// Aggregates over a column or vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AggKind {
    /// Number of rows (of a table) or of non-null values (of a column).
    Count,
    /// Sum (exact for integers and money, in a wide accumulator).
    Sum,
    /// Arithmetic mean (null when empty).
    Mean,
    /// Population variance (null when empty).
    Variance,
    /// Population standard deviation, the square root of the variance (null when empty).
    Stdev,
    /// Minimum (null when empty).
    Min,
    /// Maximum (null when empty).
    Max,
}

impl AggKind {
    /// The name used in the expression syntax.
    pub fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::Sum => "sum",
            AggKind::Mean => "mean",
            AggKind::Variance => "variance",
            AggKind::Stdev => "stdev",
            AggKind::Min => "min",
            AggKind::Max => "max",
        }
    }
}

/// The kinds of operation a lineage uses, for policies to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Selecting columns or one column.
    Select,
    /// Filtering rows.
    Filter,
    /// Clamping.
    Clamp,
    /// Arithmetic or comparison.
    Arith,
    /// Group by month.
    ByMonth,
    /// Group by the declared categories of a category column.
    ByCategory,
    /// Count.
    Count,
    /// Sum.
    Sum,
    /// Mean.
    Mean,
    /// Variance.
    Variance,
    /// Standard deviation.
    Stdev,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Quantile or median.
    Quantile,
    /// Histogram over public bins.
    Histogram,
    /// Dot product.
    Dot,
    /// A catalogue attribute.
    Catalogue,
}

impl OpKind {
    /// The name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Select => "select",
            OpKind::Filter => "filter",
            OpKind::Clamp => "clamp",
            OpKind::Arith => "arith",
            OpKind::ByMonth => "by_month",
            OpKind::ByCategory => "by_category",
            OpKind::Count => "count",
            OpKind::Sum => "sum",
            OpKind::Mean => "mean",
            OpKind::Variance => "variance",
            OpKind::Stdev => "stdev",
            OpKind::Min => "min",
            OpKind::Max => "max",
            OpKind::Quantile => "quantile",
            OpKind::Histogram => "histogram",
            OpKind::Dot => "dot",
            OpKind::Catalogue => "catalogue",
        }
    }

    /// Every kind, in a fixed order.
    pub const ALL: [OpKind; 17] = [
        OpKind::Select,
        OpKind::Filter,
        OpKind::Clamp,
        OpKind::Arith,
        OpKind::ByMonth,
        OpKind::ByCategory,
        OpKind::Count,
        OpKind::Sum,
        OpKind::Mean,
        OpKind::Variance,
        OpKind::Stdev,
        OpKind::Min,
        OpKind::Max,
        OpKind::Quantile,
        OpKind::Histogram,
        OpKind::Dot,
        OpKind::Catalogue,
    ];

    /// The kind with this policy-file name.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl From<AggKind> for OpKind {
    fn from(k: AggKind) -> Self {
        match k {
            AggKind::Count => OpKind::Count,
            AggKind::Sum => OpKind::Sum,
            AggKind::Mean => OpKind::Mean,
            AggKind::Variance => OpKind::Variance,
            AggKind::Stdev => OpKind::Stdev,
            AggKind::Min => OpKind::Min,
            AggKind::Max => OpKind::Max,
        }
    }
}

impl Expr {
    /// Number of nodes in the tree (predicates count one per node too). Quotas are checked on this.
    pub fn node_count(&self) -> usize {
        1 + match self {
            Expr::Ptr { .. } | Expr::Dataset { .. } | Expr::Literal { .. } => 0,
            Expr::Catalogue { .. } => 0,
            Expr::Select { input, .. }
            | Expr::Column { input, .. }
            | Expr::Clamp { input, .. }
            | Expr::Aggregate { input, .. }
            | Expr::Quantile { input, .. }
            | Expr::Histogram { input, .. }
            | Expr::ByMonth { input, .. }
            | Expr::ByCategory { input, .. }
            | Expr::Dot { input, .. } => input.node_count(),
            Expr::Filter { input, pred } => input.node_count() + pred.node_count(),
            Expr::Arith { left, right, .. } | Expr::Compare { left, right, .. } => {
                left.node_count() + right.node_count()
            }
            Expr::Batch { items } => items.iter().map(Expr::node_count).sum(),
        }
    }

    /// The direct sub-expressions of this node.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Ptr { .. } | Expr::Dataset { .. } | Expr::Literal { .. } => vec![],
            Expr::Catalogue { .. } => vec![],
            Expr::Select { input, .. }
            | Expr::Filter { input, .. }
            | Expr::Column { input, .. }
            | Expr::Clamp { input, .. }
            | Expr::Aggregate { input, .. }
            | Expr::Quantile { input, .. }
            | Expr::Histogram { input, .. }
            | Expr::ByMonth { input, .. }
            | Expr::ByCategory { input, .. }
            | Expr::Dot { input, .. } => vec![input],
            Expr::Arith { left, right, .. } | Expr::Compare { left, right, .. } => {
                vec![left, right]
            }
            Expr::Batch { items } => items.iter().collect(),
        }
    }

    /// Replace every [`Expr::Ptr`] with the expression `lookup` gives for it; `None` if a pointer is unknown.
    pub fn substitute_ptrs(&self, lookup: &dyn Fn(u64) -> Option<Expr>) -> Option<Expr> {
        let sub = |e: &Expr| e.substitute_ptrs(lookup).map(Box::new);
        Some(match self {
            Expr::Ptr { id } => return lookup(*id),
            Expr::Dataset { .. } | Expr::Literal { .. } | Expr::Catalogue { .. } => self.clone(),
            Expr::Select { input, columns } => Expr::Select {
                input: sub(input)?,
                columns: columns.clone(),
            },
            Expr::Filter { input, pred } => Expr::Filter {
                input: sub(input)?,
                pred: pred.clone(),
            },
            Expr::Column { input, name } => Expr::Column {
                input: sub(input)?,
                name: name.clone(),
            },
            Expr::Clamp { input, lo, hi } => Expr::Clamp {
                input: sub(input)?,
                lo: *lo,
                hi: *hi,
            },
            Expr::Arith { op, left, right } => Expr::Arith {
                op: *op,
                left: sub(left)?,
                right: sub(right)?,
            },
            Expr::Compare { op, left, right } => Expr::Compare {
                op: *op,
                left: sub(left)?,
                right: sub(right)?,
            },
            Expr::Aggregate { kind, input } => Expr::Aggregate {
                kind: *kind,
                input: sub(input)?,
            },
            Expr::Quantile { input, q } => Expr::Quantile {
                input: sub(input)?,
                q: *q,
            },
            Expr::Histogram { input, edges } => Expr::Histogram {
                input: sub(input)?,
                edges: edges.clone(),
            },
            Expr::ByMonth { kind, input } => Expr::ByMonth {
                kind: *kind,
                input: sub(input)?,
            },
            Expr::ByCategory {
                kind,
                input,
                column,
            } => Expr::ByCategory {
                kind: *kind,
                input: sub(input)?,
                column: column.clone(),
            },
            Expr::Dot { input, weights } => Expr::Dot {
                input: sub(input)?,
                weights: weights.clone(),
            },
            Expr::Batch { items } => Expr::Batch {
                items: items
                    .iter()
                    .map(|e| e.substitute_ptrs(lookup))
                    .collect::<Option<_>>()?,
            },
        })
    }
}

impl Pred {
    /// Number of nodes in the predicate.
    pub fn node_count(&self) -> usize {
        match self {
            Pred::Compare { .. }
            | Pred::CompareColumns { .. }
            | Pred::Between { .. }
            | Pred::LastMonths { .. } => 1,
            Pred::And(a, b) | Pred::Or(a, b) => 1 + a.node_count() + b.node_count(),
            Pred::Not(a) => 1 + a.node_count(),
        }
    }
}
