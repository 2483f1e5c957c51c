//! Evaluation of a checked lineage on the owner's data, at release time only.

use crate::catalogue;
use crate::check::{agg_type, arith_type, month_label, month_number, month_starts};
use crate::dataset::{ColumnData, DataSource, Dataset};
use crate::expr::{AggKind, ArithOp, CmpOp, Expr, Pred};
use crate::value::{DataType, Value};
use chrono::NaiveDate;
use ndarray::{Array1, ArrayView1};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The result of evaluating a lineage: what a plaintext release reveals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// A batch's answers, one per question in order.
    Batch {
        /// The answers.
        items: Vec<Answer>,
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
///
/// Semantics, all total (data-dependent problems give nulls, not errors):
/// - tables are row selections over their source dataset; a filter keeps the rows whose predicate holds,
///   and a comparison with a missing value does not hold (`column == null` / `column != null` test for a
///   missing value);
/// - arithmetic: `x / 0` is null, integer and money arithmetic saturates at the `i64` range, a float result
///   that is not finite is null, a null operand gives null, `date - date` gives whole days, and any division
///   gives a float;
/// - element-wise comparison gives a boolean, `false` when either side is null;
/// - aggregates skip nulls: count counts non-null values (or a table's rows); sum is exact for integers and
///   money (accumulated in `i128`, then saturated) and 0 when empty; mean and population variance are
///   floats, null when empty; min and max are null when empty;
/// - quantile is the lower nearest rank: with the `n` non-null values sorted, the value at index
///   `floor(q * (n - 1))` (so the median of an even count is the lower middle value); null when empty;
/// - histogram bins follow [`Expr::Histogram`]; values outside every bin, and nulls, are not counted;
/// - group-by-month gives one entry per calendar month of the dataset's public window, labelled `YYYY-MM`,
///   placing each row by its dataset's time column (rows dated outside the window, or undated, are left
///   out); a month with no non-null values gives 0 for count and null for every other aggregate;
/// - dot treats null entries as 0 and gives a float (computed with `ndarray`);
/// - a table or column gives [`Answer::Rows`] (money stays integer cents), a vector [`Answer::Vector`], a
///   scalar [`Answer::Scalar`], and catalogue attributes run [`catalogue::compute`].
///
/// Fails with [`EvalError::Unresolved`] on a pointer reference, a relative window, or a catalogue attribute
/// without a window end (run [`crate::check::check`] first).
pub fn evaluate(expr: &Expr, data: &dyn DataSource) -> Result<Answer, EvalError> {
    if let Expr::Batch { items } = expr {
        return Ok(Answer::Batch {
            items: items
                .iter()
                .map(|e| evaluate(e, data))
                .collect::<Result<_, _>>()?,
        });
    }
    Evaluator { data }.eval(expr)?.into_answer()
}

/// The longest group-by-month evaluation accepts (the checker's quota is normally much lower).
const MAX_MONTHS: usize = 12_000;

/// An intermediate result.
enum Val<'d> {
    Table(Table<'d>),
    Column(Col<'d>),
    Vector {
        dtype: DataType,
        labels: Vec<String>,
        values: Vec<Value>,
    },
    Scalar {
        dtype: DataType,
        value: Value,
    },
    Histogram {
        edges: Vec<f64>,
        counts: Vec<u64>,
    },
}

/// Some rows and columns of a dataset.
struct Table<'d> {
    name: String,
    ds: &'d Dataset,
    rows: Vec<usize>,
    columns: Vec<String>,
}

/// One value per row of a table.
struct Col<'d> {
    name: String,
    dtype: DataType,
    ds: &'d Dataset,
    rows: Vec<usize>,
    values: Vec<Value>,
}

impl Val<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Val::Table(_) => "a table",
            Val::Column(_) => "a column",
            Val::Vector { .. } => "a vector",
            Val::Scalar { .. } => "a scalar",
            Val::Histogram { .. } => "a histogram",
        }
    }

    fn into_answer(self) -> Result<Answer, EvalError> {
        Ok(match self {
            Val::Table(t) => {
                let cols = t
                    .columns
                    .iter()
                    .map(|c| column_of(t.ds, &t.name, c))
                    .collect::<Result<Vec<_>, _>>()?;
                let rows = t
                    .rows
                    .iter()
                    .map(|&i| cols.iter().map(|c| c.value(i)).collect())
                    .collect();
                Answer::Rows {
                    columns: t.columns,
                    rows,
                }
            }
            Val::Column(c) => Answer::Rows {
                columns: vec![c.name],
                rows: c.values.into_iter().map(|v| vec![v]).collect(),
            },
            Val::Vector { labels, values, .. } => Answer::Vector { labels, values },
            Val::Scalar { value, .. } => Answer::Scalar { value },
            Val::Histogram { edges, counts } => Answer::Histogram { edges, counts },
        })
    }
}

fn mismatch(what: &str, got: &Val<'_>) -> EvalError {
    EvalError::Other(format!("{what}, got {}", got.kind()))
}

fn column_of<'d>(ds: &'d Dataset, dataset: &str, name: &str) -> Result<&'d ColumnData, EvalError> {
    ds.column(name)
        .map(|c| &c.data)
        .ok_or_else(|| EvalError::MissingColumn {
            dataset: dataset.to_string(),
            column: name.to_string(),
        })
}

fn data_type(data: &ColumnData) -> DataType {
    match data {
        ColumnData::Int(_) => DataType::I64,
        ColumnData::Float(_) => DataType::F64,
        ColumnData::Bool(_) => DataType::Bool,
        ColumnData::Date(_) => DataType::Date,
        ColumnData::Cat(_) => DataType::Category,
    }
}

fn literal_type(v: &Value) -> DataType {
    match v {
        Value::Null | Value::Int(_) => DataType::I64,
        Value::Float(_) => DataType::F64,
        Value::Bool(_) => DataType::Bool,
        Value::Date(_) => DataType::Date,
        Value::Str(_) => DataType::Category,
    }
}

/// A float result, or null if it is not finite.
fn float(x: f64) -> Value {
    if x.is_finite() {
        Value::Float(x)
    } else {
        Value::Null
    }
}

fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

fn whole(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// `a op b` on two values (see [`evaluate`] for the rules).
fn arith_values(op: ArithOp, a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => Value::Null,
        (Value::Date(x), Value::Date(y)) if op == ArithOp::Sub => {
            Value::Int(x.signed_duration_since(*y).num_days())
        }
        _ => {
            if op != ArithOp::Div {
                if let (Some(x), Some(y)) = (whole(a), whole(b)) {
                    return Value::Int(match op {
                        ArithOp::Add => x.saturating_add(y),
                        ArithOp::Sub => x.saturating_sub(y),
                        _ => x.saturating_mul(y),
                    });
                }
            }
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Value::Null;
            };
            match op {
                ArithOp::Add => float(x + y),
                ArithOp::Sub => float(x - y),
                ArithOp::Mul => float(x * y),
                ArithOp::Div if y == 0.0 => Value::Null,
                ArithOp::Div => float(x / y),
            }
        }
    }
}

/// Order of two values of comparable types (numbers with numbers, dates, strings, booleans).
fn cmp_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.as_f64()?.partial_cmp(&b.as_f64()?)
        }
        _ => None,
    }
}

fn holds(op: CmpOp, ord: Option<Ordering>) -> bool {
    ord.is_some_and(|o| match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    })
}

/// Clamp a value into `[lo, hi]`; whole numbers clamp into the whole numbers of the range.
fn clamp_value(v: Value, lo: f64, hi: f64) -> Value {
    match v {
        Value::Int(i) => Value::Int(i.max(lo.ceil() as i64).min(hi.floor() as i64)),
        Value::Float(f) => float(f.max(lo).min(hi)),
        other => other,
    }
}

/// The non-null numbers of a list: all whole (integers, money, booleans as 0/1), or floats.
enum Nums {
    Whole(Vec<i64>),
    Float(Vec<f64>),
}

impl Nums {
    fn of(values: &[Value]) -> Result<Nums, EvalError> {
        let mut floats = false;
        for v in values {
            match v {
                Value::Null => {}
                Value::Int(_) | Value::Bool(_) => {}
                Value::Float(_) => floats = true,
                other => return Err(EvalError::Other(format!("expected numbers, found {other}"))),
            }
        }
        if floats {
            return Ok(Nums::Float(
                values.iter().filter_map(Value::as_f64).collect(),
            ));
        }
        Ok(Nums::Whole(values.iter().filter_map(whole).collect()))
    }

    fn len(&self) -> usize {
        match self {
            Nums::Whole(v) => v.len(),
            Nums::Float(v) => v.len(),
        }
    }

    /// Exact sum for whole numbers (`i128`), float sum otherwise.
    fn sum(&self) -> Result<i128, f64> {
        match self {
            Nums::Whole(v) => Ok(v.iter().map(|&x| i128::from(x)).sum()),
            Nums::Float(v) => Err(v.iter().sum()),
        }
    }

    fn mean(&self) -> Option<f64> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        Some(match self.sum() {
            Ok(s) => s as f64 / n as f64,
            Err(s) => s / n as f64,
        })
    }

    fn floats(&self) -> Vec<f64> {
        match self {
            Nums::Whole(v) => v.iter().map(|&x| x as f64).collect(),
            Nums::Float(v) => v.clone(),
        }
    }
}

/// A whole-number result in the element type `dtype` (booleans stay booleans).
fn whole_value(x: i64, dtype: DataType) -> Value {
    if dtype == DataType::Bool {
        Value::Bool(x != 0)
    } else {
        Value::Int(x)
    }
}

/// One aggregate of a list of values of element type `dtype`.
fn aggregate(kind: AggKind, dtype: DataType, values: &[Value]) -> Result<Value, EvalError> {
    if kind == AggKind::Count {
        let n = values.iter().filter(|v| **v != Value::Null).count();
        return Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    let nums = Nums::of(values)?;
    Ok(match kind {
        AggKind::Count | AggKind::Sum => match nums.sum() {
            Ok(s) if dtype == DataType::F64 => float(s as f64),
            Ok(s) => Value::Int(saturate(s)),
            Err(s) => float(s),
        },
        AggKind::Mean => nums.mean().map_or(Value::Null, float),
        AggKind::Variance | AggKind::Stdev => match nums.mean() {
            None => Value::Null,
            Some(mean) => {
                let xs = nums.floats();
                let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
                let variance = (ss / xs.len() as f64).max(0.0);
                float(if kind == AggKind::Stdev {
                    variance.sqrt()
                } else {
                    variance
                })
            }
        },
        AggKind::Min | AggKind::Max => {
            let max = kind == AggKind::Max;
            match &nums {
                Nums::Whole(v) => {
                    let m = if max { v.iter().max() } else { v.iter().min() };
                    m.map_or(Value::Null, |&x| whole_value(x, dtype))
                }
                Nums::Float(v) => {
                    let m = v
                        .iter()
                        .copied()
                        .reduce(if max { f64::max } else { f64::min });
                    m.map_or(Value::Null, float)
                }
            }
        }
    })
}

/// Lower nearest-rank quantile: the sorted value at index `floor(q * (n - 1))`.
fn quantile(dtype: DataType, values: &[Value], q: f64) -> Result<Value, EvalError> {
    let nums = Nums::of(values)?;
    let n = nums.len();
    if n == 0 {
        return Ok(Value::Null);
    }
    // `as usize` saturates (and maps NaN to 0); `min` keeps the index in range.
    let idx = ((q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as usize).min(n - 1);
    Ok(match nums {
        Nums::Whole(mut v) => {
            v.sort_unstable();
            v.get(idx).map_or(Value::Null, |&x| whole_value(x, dtype))
        }
        Nums::Float(mut v) => {
            v.sort_unstable_by(f64::total_cmp);
            v.get(idx).map_or(Value::Null, |&x| float(x))
        }
    })
}

/// Counts per bin: bin `i` holds `edges[i] <= x < edges[i + 1]`, the last bin also `x == edges[last]`.
fn histogram(values: &[Value], edges: &[f64]) -> Result<Vec<u64>, EvalError> {
    if edges.len() < 2 {
        return Err(EvalError::Other(
            "a histogram needs at least two edges".into(),
        ));
    }
    let bins = edges.len() - 1;
    let mut counts = vec![0u64; bins];
    let last = edges.last().copied().unwrap_or(f64::NAN);
    for x in values.iter().filter_map(Value::as_f64) {
        // Number of edges <= x: the bin to the left of the first edge above x.
        let above = edges.partition_point(|e| *e <= x);
        let bin = if above == 0 {
            None
        } else if above <= bins {
            Some(above - 1)
        } else if x == last {
            Some(bins - 1)
        } else {
            None
        };
        if let Some(c) = bin.and_then(|b| counts.get_mut(b)) {
            *c += 1;
        }
    }
    Ok(counts)
}

/// A compiled row predicate over a dataset's columns.
enum Compiled<'d, 'e> {
    Compare(&'d ColumnData, CmpOp, &'e Value),
    Columns(&'d ColumnData, CmpOp, &'d ColumnData),
    Between(&'d ColumnData, NaiveDate, NaiveDate),
    And(Box<Compiled<'d, 'e>>, Box<Compiled<'d, 'e>>),
    Or(Box<Compiled<'d, 'e>>, Box<Compiled<'d, 'e>>),
    Not(Box<Compiled<'d, 'e>>),
}

impl<'d, 'e> Compiled<'d, 'e> {
    fn new(p: &'e Pred, t: &Table<'d>) -> Result<Self, EvalError> {
        let col = |name: &str| column_of(t.ds, &t.name, name);
        Ok(match p {
            Pred::Compare { column, op, value } => Compiled::Compare(col(column)?, *op, value),
            Pred::CompareColumns { left, op, right } => {
                Compiled::Columns(col(left)?, *op, col(right)?)
            }
            Pred::Between { column, from, to } => Compiled::Between(col(column)?, *from, *to),
            Pred::LastMonths { months, .. } => {
                return Err(EvalError::Unresolved(format!(
                    "relative window of the last {months} months"
                )))
            }
            Pred::And(a, b) => Compiled::And(
                Box::new(Compiled::new(a, t)?),
                Box::new(Compiled::new(b, t)?),
            ),
            Pred::Or(a, b) => Compiled::Or(
                Box::new(Compiled::new(a, t)?),
                Box::new(Compiled::new(b, t)?),
            ),
            Pred::Not(a) => Compiled::Not(Box::new(Compiled::new(a, t)?)),
        })
    }

    fn holds(&self, row: usize) -> bool {
        match self {
            Compiled::Compare(c, op, Value::Null) => {
                let missing = c.value(row) == Value::Null;
                match op {
                    CmpOp::Eq => missing,
                    CmpOp::Ne => !missing,
                    _ => false,
                }
            }
            Compiled::Compare(c, op, v) => holds(*op, cmp_values(&c.value(row), v)),
            Compiled::Columns(a, op, b) => holds(*op, cmp_values(&a.value(row), &b.value(row))),
            Compiled::Between(c, from, to) => {
                matches!(c.value(row), Value::Date(d) if *from <= d && d <= *to)
            }
            Compiled::And(a, b) => a.holds(row) && b.holds(row),
            Compiled::Or(a, b) => a.holds(row) || b.holds(row),
            Compiled::Not(a) => !a.holds(row),
        }
    }
}

struct Evaluator<'d> {
    data: &'d dyn DataSource,
}

impl<'d> Evaluator<'d> {
    fn table(&self, e: &Expr, what: &str) -> Result<Table<'d>, EvalError> {
        match self.eval(e)? {
            Val::Table(t) => Ok(t),
            other => Err(mismatch(&format!("{what} needs a table"), &other)),
        }
    }

    fn column(&self, e: &Expr, what: &str) -> Result<Col<'d>, EvalError> {
        match self.eval(e)? {
            Val::Column(c) => Ok(c),
            other => Err(mismatch(&format!("{what} needs a column"), &other)),
        }
    }

    fn eval(&self, e: &Expr) -> Result<Val<'d>, EvalError> {
        Ok(match e {
            Expr::Ptr { id } => {
                return Err(EvalError::Unresolved(format!("pointer reference {id}")))
            }
            Expr::Batch { .. } => {
                return Err(EvalError::Unresolved("a batch inside an expression".into()))
            }
            Expr::Dataset { name } => {
                let ds = self
                    .data
                    .dataset(name)
                    .ok_or_else(|| EvalError::MissingDataset(name.clone()))?;
                Val::Table(Table {
                    name: name.clone(),
                    ds,
                    rows: (0..ds.rows()).collect(),
                    columns: ds.columns.iter().map(|c| c.name.clone()).collect(),
                })
            }
            Expr::Select { input, columns } => {
                let mut t = self.table(input, "select")?;
                for c in columns {
                    column_of(t.ds, &t.name, c)?;
                }
                t.columns = columns.clone();
                Val::Table(t)
            }
            Expr::Filter { input, pred } => {
                let mut t = self.table(input, "filter")?;
                let p = Compiled::new(pred, &t)?;
                t.rows.retain(|&i| p.holds(i));
                Val::Table(t)
            }
            Expr::Column { input, name } => {
                let t = self.table(input, "column")?;
                let data = column_of(t.ds, &t.name, name)?;
                let dtype =
                    t.ds.meta
                        .column(name)
                        .map_or_else(|| data_type(data), |c| c.dtype);
                Val::Column(Col {
                    name: name.clone(),
                    dtype,
                    values: t.rows.iter().map(|&i| data.value(i)).collect(),
                    ds: t.ds,
                    rows: t.rows,
                })
            }
            Expr::Clamp { input, lo, hi } => match self.eval(input)? {
                Val::Column(mut c) => {
                    c.values = c
                        .values
                        .into_iter()
                        .map(|v| clamp_value(v, *lo, *hi))
                        .collect();
                    Val::Column(c)
                }
                Val::Vector {
                    dtype,
                    labels,
                    values,
                } => Val::Vector {
                    dtype,
                    labels,
                    values: values
                        .into_iter()
                        .map(|v| clamp_value(v, *lo, *hi))
                        .collect(),
                },
                Val::Scalar { dtype, value } => Val::Scalar {
                    dtype,
                    value: clamp_value(value, *lo, *hi),
                },
                other => return Err(mismatch("clamp needs numbers", &other)),
            },
            Expr::Arith { op, left, right } => {
                let (l, r) = (self.eval(left)?, self.eval(right)?);
                let dtype =
                    arith_type(*op, val_type(&l)?, val_type(&r)?).map_err(EvalError::Other)?;
                let op = *op;
                elementwise(l, r, dtype, &|a, b| arith_values(op, a, b))?
            }
            Expr::Compare { op, left, right } => {
                let (l, r) = (self.eval(left)?, self.eval(right)?);
                let op = *op;
                elementwise(l, r, DataType::Bool, &|a, b| {
                    Value::Bool(holds(op, cmp_values(a, b)))
                })?
            }
            Expr::Literal { value } => Val::Scalar {
                dtype: literal_type(value),
                value: value.clone(),
            },
            Expr::Aggregate { kind, input } => {
                let (dtype, value) = match (kind, self.eval(input)?) {
                    (AggKind::Count, Val::Table(t)) => (
                        DataType::I64,
                        Value::Int(i64::try_from(t.rows.len()).unwrap_or(i64::MAX)),
                    ),
                    (_, Val::Column(c)) => (
                        agg_type(*kind, c.dtype, None, 0.0).0,
                        aggregate(*kind, c.dtype, &c.values)?,
                    ),
                    (_, Val::Vector { dtype, values, .. }) => (
                        agg_type(*kind, dtype, None, 0.0).0,
                        aggregate(*kind, dtype, &values)?,
                    ),
                    (_, other) => {
                        return Err(mismatch(
                            &format!("{} needs a column or vector", kind.name()),
                            &other,
                        ))
                    }
                };
                Val::Scalar { dtype, value }
            }
            Expr::Quantile { input, q } => {
                let c = self.column(input, "quantile")?;
                Val::Scalar {
                    dtype: c.dtype,
                    value: quantile(c.dtype, &c.values, *q)?,
                }
            }
            Expr::Histogram { input, edges } => {
                let c = self.column(input, "histogram")?;
                Val::Histogram {
                    counts: histogram(&c.values, edges)?,
                    edges: edges.clone(),
                }
            }
            Expr::ByMonth { kind, input } => {
                let c = self.column(input, "by_month")?;
                let (labels, keys) = month_groups(&c)?;
                grouped(*kind, c, labels, &keys)?
            }
            Expr::ByCategory {
                kind,
                input,
                column,
            } => {
                let c = self.column(input, "by_category")?;
                let (labels, keys) = category_groups(&c, column)?;
                grouped(*kind, c, labels, &keys)?
            }
            Expr::Dot { input, weights } => match self.eval(input)? {
                Val::Vector { values, .. } => {
                    if values.len() != weights.len() {
                        return Err(EvalError::Other(format!(
                            "dot has {} weights for a vector of length {}",
                            weights.len(),
                            values.len()
                        )));
                    }
                    let x = Array1::from_iter(values.iter().map(|v| v.as_f64().unwrap_or(0.0)));
                    let w = ArrayView1::from(weights.as_slice());
                    Val::Scalar {
                        dtype: DataType::F64,
                        value: float(x.dot(&w)),
                    }
                }
                other => return Err(mismatch("dot needs a vector", &other)),
            },
            Expr::Catalogue { name, window_end } => {
                let end = window_end.ok_or_else(|| {
                    EvalError::Unresolved(format!("catalogue attribute `{name}` has no window end"))
                })?;
                let value = catalogue::compute(name, end, self.data)?;
                let dtype = catalogue::entry(name).map_or(DataType::F64, |e| e.output);
                Val::Scalar { dtype, value }
            }
        })
    }
}

/// Element type of a column, vector or scalar.
fn val_type(v: &Val<'_>) -> Result<DataType, EvalError> {
    match v {
        Val::Column(c) => Ok(c.dtype),
        Val::Vector { dtype, .. } | Val::Scalar { dtype, .. } => Ok(*dtype),
        other => Err(mismatch(
            "arithmetic needs columns, vectors or scalars",
            other,
        )),
    }
}

/// Apply `f` element-wise: column with column (same rows), or anything with a scalar.
fn elementwise<'d>(
    l: Val<'d>,
    r: Val<'d>,
    dtype: DataType,
    f: &dyn Fn(&Value, &Value) -> Value,
) -> Result<Val<'d>, EvalError> {
    let map = |values: Vec<Value>, s: &Value, scalar_left: bool| -> Vec<Value> {
        values
            .iter()
            .map(|v| if scalar_left { f(s, v) } else { f(v, s) })
            .collect()
    };
    Ok(match (l, r) {
        (Val::Column(a), Val::Column(b)) => {
            if a.rows != b.rows || a.values.len() != b.values.len() {
                return Err(EvalError::Other(
                    "element-wise operation on columns from different rows".into(),
                ));
            }
            let values = a
                .values
                .iter()
                .zip(&b.values)
                .map(|(x, y)| f(x, y))
                .collect();
            Val::Column(Col {
                name: "value".into(),
                dtype,
                values,
                ..a
            })
        }
        (Val::Column(a), Val::Scalar { value, .. }) => Val::Column(Col {
            name: "value".into(),
            dtype,
            values: map(a.values, &value, false),
            ds: a.ds,
            rows: a.rows,
        }),
        (Val::Scalar { value, .. }, Val::Column(b)) => Val::Column(Col {
            name: "value".into(),
            dtype,
            values: map(b.values, &value, true),
            ds: b.ds,
            rows: b.rows,
        }),
        (Val::Vector { labels, values, .. }, Val::Scalar { value, .. }) => Val::Vector {
            dtype,
            labels,
            values: map(values, &value, false),
        },
        (Val::Scalar { value, .. }, Val::Vector { labels, values, .. }) => Val::Vector {
            dtype,
            labels,
            values: map(values, &value, true),
        },
        (Val::Scalar { value: a, .. }, Val::Scalar { value: b, .. }) => Val::Scalar {
            dtype,
            value: f(&a, &b),
        },
        (a, b) => {
            return Err(EvalError::Other(format!(
                "cannot combine {} with {} element-wise",
                a.kind(),
                b.kind()
            )))
        }
    })
}

/// Each value's month among the calendar months of its dataset's public window (`None` outside the window
/// or without a date), and the months' labels.
fn month_groups(c: &Col<'_>) -> Result<(Vec<String>, Vec<Option<u32>>), EvalError> {
    let meta = &c.ds.meta;
    let time = meta
        .time_column
        .as_deref()
        .ok_or_else(|| EvalError::Other(format!("dataset `{}` has no time column", meta.name)))?;
    let time_data = column_of(c.ds, &meta.name, time)?;
    let window = meta
        .window
        .ok_or_else(|| EvalError::Other(format!("dataset `{}` has no time window", meta.name)))?;
    let months = month_starts(window.start, window.end, MAX_MONTHS).ok_or_else(|| {
        EvalError::Other(format!(
            "the time window of `{}` is empty or too long",
            meta.name
        ))
    })?;
    let first = month_number(window.start);
    let keys = c
        .rows
        .iter()
        .map(|&row| {
            let Value::Date(d) = time_data.value(row) else {
                return None;
            };
            if d < window.start || d > window.end {
                return None;
            }
            u32::try_from(month_number(d) - first)
                .ok()
                .filter(|i| (*i as usize) < months.len())
        })
        .collect();
    Ok((months.into_iter().map(month_label).collect(), keys))
}

/// Each value's category among the declared categories of `column` in its dataset (`None` for a null or,
/// were one loaded, an undeclared category), and the declared categories, in their declared order.
fn category_groups(
    c: &Col<'_>,
    column: &str,
) -> Result<(Vec<String>, Vec<Option<u32>>), EvalError> {
    let meta = &c.ds.meta;
    let labels = meta
        .column(column)
        .and_then(|m| m.categories.clone())
        .filter(|set| !set.is_empty())
        .ok_or_else(|| {
            EvalError::Other(format!("`{}.{column}` declares no category set", meta.name))
        })?;
    let data = column_of(c.ds, &meta.name, column)?;
    let keys = c
        .rows
        .iter()
        .map(|&row| match data.value(row) {
            Value::Str(v) => labels
                .iter()
                .position(|l| *l == v)
                .and_then(|i| u32::try_from(i).ok()),
            _ => None,
        })
        .collect();
    Ok((labels, keys))
}

/// One aggregate per group: `labels` name the groups, `keys` give each value's group (or none).
fn grouped(
    kind: AggKind,
    c: Col<'_>,
    labels: Vec<String>,
    keys: &[Option<u32>],
) -> Result<Val<'static>, EvalError> {
    let mut buckets: Vec<Vec<Value>> = vec![Vec::new(); labels.len()];
    for (v, key) in c.values.iter().zip(keys) {
        if let Some(b) = key.and_then(|k| buckets.get_mut(k as usize)) {
            b.push(v.clone());
        }
    }
    let values = buckets
        .iter()
        .map(|b| {
            if kind != AggKind::Count && b.iter().all(|v| *v == Value::Null) {
                Ok(Value::Null)
            } else {
                aggregate(kind, c.dtype, b)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Val::Vector {
        dtype: agg_type(kind, c.dtype, None, 0.0).0,
        labels,
        values,
    })
}

/// A column's values with each row's group among public keys, for a grouped DP release.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouped {
    /// The groups' labels, in order (`2026-01`, ..., or the declared categories).
    pub labels: Vec<String>,
    /// Each row's value (nulls included).
    pub values: Vec<Value>,
    /// Each row's group: an index into `labels`, or `None` (the row is in no group).
    pub keys: Vec<Option<u32>>,
}

/// The values of a column lineage with each row's calendar month in its dataset's public window, as
/// `by_month` groups them (the lineage must be checked first, as for [`evaluate`]).
pub fn group_by_month(input: &Expr, data: &dyn DataSource) -> Result<Grouped, EvalError> {
    let c = Evaluator { data }.column(input, "by_month")?;
    let (labels, keys) = month_groups(&c)?;
    Ok(Grouped {
        labels,
        values: c.values,
        keys,
    })
}

/// The values of a column lineage with each row's category among the declared categories of `column` (a
/// category column of the same dataset), as `by_category` groups them (the lineage must be checked first).
pub fn group_by_category(
    input: &Expr,
    column: &str,
    data: &dyn DataSource,
) -> Result<Grouped, EvalError> {
    let c = Evaluator { data }.column(input, "by_category")?;
    let (labels, keys) = category_groups(&c, column)?;
    Ok(Grouped {
        labels,
        values: c.values,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check, CheckContext, Limits};
    use crate::dataset::Column;
    use crate::meta::{ColumnMeta, DatasetMeta, PrivacyUnit, TimeWindow};
    use crate::testkit::*;
    use std::collections::BTreeMap;

    fn cm(name: &str, dtype: DataType) -> ColumnMeta {
        ColumnMeta {
            name: name.into(),
            dtype,
            description: String::new(),
            unit: None,
            bounds: None,
            categories: None,
            nullable: true,
        }
    }

    /// `tx`: window 2025-01-01 .. 2025-04-30 on `date`. February has no rows; one row is dated after the
    /// window and one has no date.
    fn tx() -> Dataset {
        type Row<'a> = (Option<&'a str>, Option<i64>, &'a str, Option<f64>);
        let rows: [Row<'_>; 7] = [
            (Some("2025-01-05"), Some(100), "income", Some(0.5)),
            (Some("2025-01-20"), Some(-40), "rent", None),
            (Some("2025-03-01"), Some(250), "income", Some(1.5)),
            (Some("2025-03-31"), None, "groceries", Some(2.5)),
            (Some("2025-04-30"), Some(-10), "groceries", Some(-1.0)),
            (Some("2025-05-01"), Some(999), "income", Some(9.0)),
            (None, Some(7), "cash", None),
        ];
        Dataset {
            meta: DatasetMeta {
                name: "tx".into(),
                description: String::new(),
                tags: vec![],
                privacy_unit: PrivacyUnit::Event,
                time_column: Some("date".into()),
                window: Some(TimeWindow {
                    start: d("2025-01-01"),
                    end: d("2025-04-30"),
                }),
                max_rows: 100,
                max_rows_per_month: None,
                columns: vec![
                    cm("date", DataType::Date),
                    cm("amount", DataType::Money),
                    cm("category", DataType::Category),
                    cm("score", DataType::F64),
                ],
            },
            version: 1,
            columns: vec![
                Column {
                    name: "date".into(),
                    data: ColumnData::Date(rows.iter().map(|r| r.0.map(d)).collect()),
                },
                Column {
                    name: "amount".into(),
                    data: ColumnData::Int(rows.iter().map(|r| r.1).collect()),
                },
                Column {
                    name: "category".into(),
                    data: ColumnData::Cat(rows.iter().map(|r| Some(r.2.to_string())).collect()),
                },
                Column {
                    name: "score".into(),
                    data: ColumnData::Float(rows.iter().map(|r| r.3).collect()),
                },
            ],
        }
    }

    /// `rent`: due/paid dates and amounts, for catalogue and date arithmetic.
    fn rent() -> Dataset {
        let rows = [
            ("2025-01-01", Some("2024-12-30"), 150_000),
            ("2025-02-01", Some("2025-02-03"), 150_000),
            ("2025-03-01", None, 150_000),
        ];
        Dataset {
            meta: DatasetMeta {
                name: "rent".into(),
                description: String::new(),
                tags: vec![],
                privacy_unit: PrivacyUnit::Event,
                time_column: Some("due_date".into()),
                window: Some(TimeWindow {
                    start: d("2025-01-01"),
                    end: d("2025-03-31"),
                }),
                max_rows: 12,
                max_rows_per_month: None,
                columns: vec![
                    cm("due_date", DataType::Date),
                    cm("paid_date", DataType::Date),
                    cm("amount", DataType::Money),
                ],
            },
            version: 1,
            columns: vec![
                Column {
                    name: "due_date".into(),
                    data: ColumnData::Date(rows.iter().map(|r| Some(d(r.0))).collect()),
                },
                Column {
                    name: "paid_date".into(),
                    data: ColumnData::Date(rows.iter().map(|r| r.1.map(d)).collect()),
                },
                Column {
                    name: "amount".into(),
                    data: ColumnData::Int(rows.iter().map(|r| Some(r.2)).collect()),
                },
            ],
        }
    }

    fn data() -> BTreeMap<String, Dataset> {
        [tx(), rent()]
            .into_iter()
            .map(|s| (s.meta.name.clone(), s))
            .collect()
    }

    fn scalar(e: &Expr) -> Value {
        match evaluate(e, &data()).unwrap() {
            Answer::Scalar { value } => value,
            other => panic!("not a scalar: {other:?}"),
        }
    }
    fn none_rows() -> Expr {
        filter(ds("tx"), cat_is("category", "nothing"))
    }

    /// A batch's answer is each question's own answer, in order; a batch inside an expression is not evaluated.
    #[test]
    fn a_batch_answers_each_question_in_order() {
        let questions = vec![
            agg(AggKind::Count, ds("tx")),
            agg(AggKind::Sum, col(ds("tx"), "amount")),
            lit(Value::Int(3)),
        ];
        let batch = Expr::Batch {
            items: questions.clone(),
        };
        let want: Vec<Answer> = questions
            .iter()
            .map(|q| evaluate(q, &data()).unwrap())
            .collect();
        assert_eq!(
            evaluate(&batch, &data()).unwrap(),
            Answer::Batch { items: want }
        );
        let inside = arith(ArithOp::Add, lit(Value::Int(1)), batch);
        assert!(matches!(
            evaluate(&inside, &data()),
            Err(EvalError::Unresolved(_))
        ));
    }

    #[test]
    fn division_by_zero_is_null() {
        assert_eq!(
            scalar(&arith(ArithOp::Div, lit(Value::Int(5)), lit(Value::Int(0)))),
            Value::Null
        );
        assert_eq!(
            scalar(&arith(
                ArithOp::Div,
                lit(Value::Float(5.0)),
                lit(Value::Float(0.0))
            )),
            Value::Null
        );
        assert_eq!(
            scalar(&arith(ArithOp::Div, lit(Value::Int(5)), lit(Value::Int(2)))),
            Value::Float(2.5)
        );
        // Element-wise: amount / 0 is null in every row.
        let e = arith(ArithOp::Div, col(ds("tx"), "amount"), lit(Value::Int(0)));
        let Answer::Rows { rows, .. } = evaluate(&e, &data()).unwrap() else {
            panic!()
        };
        assert_eq!(rows.len(), 7);
        assert!(rows.iter().all(|r| r == &vec![Value::Null]));
    }

    #[test]
    fn integer_arithmetic_saturates() {
        let big = lit(Value::Int(i64::MAX));
        assert_eq!(
            scalar(&arith(ArithOp::Add, big.clone(), lit(Value::Int(1)))),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            scalar(&arith(ArithOp::Mul, big.clone(), lit(Value::Int(-2)))),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            scalar(&arith(
                ArithOp::Sub,
                lit(Value::Int(i64::MIN)),
                lit(Value::Int(1))
            )),
            Value::Int(i64::MIN)
        );
        // A sum of large column values saturates instead of wrapping.
        let e = agg(
            AggKind::Sum,
            arith(ArithOp::Mul, col(ds("tx"), "amount"), big),
        );
        assert_eq!(scalar(&e), Value::Int(i64::MAX));
        // Float overflow gives null.
        assert_eq!(
            scalar(&arith(
                ArithOp::Mul,
                lit(Value::Float(1e300)),
                lit(Value::Float(1e300))
            )),
            Value::Null
        );
    }

    #[test]
    fn aggregates_skip_nulls_and_handle_empty() {
        let amount = col(ds("tx"), "amount");
        // Amounts: 100, -40, 250, null, -10, 999, 7.
        assert_eq!(scalar(&agg(AggKind::Count, ds("tx"))), Value::Int(7));
        assert_eq!(scalar(&agg(AggKind::Count, amount.clone())), Value::Int(6));
        assert_eq!(scalar(&agg(AggKind::Sum, amount.clone())), Value::Int(1306));
        assert_eq!(scalar(&agg(AggKind::Min, amount.clone())), Value::Int(-40));
        assert_eq!(scalar(&agg(AggKind::Max, amount.clone())), Value::Int(999));
        let Value::Float(mean) = scalar(&agg(AggKind::Mean, amount.clone())) else {
            panic!()
        };
        assert!((mean - 1306.0 / 6.0).abs() < 1e-9);
        // Scores 0.5, 1.5, 2.5, -1, 9 (two nulls): mean 2.5, variance (4+1+0+12.25+42.25)/5 = 11.9.
        let score = col(ds("tx"), "score");
        assert_eq!(
            scalar(&agg(AggKind::Mean, score.clone())),
            Value::Float(2.5)
        );
        let Value::Float(var) = scalar(&agg(AggKind::Variance, score.clone())) else {
            panic!()
        };
        assert!((var - 11.9).abs() < 1e-9, "{var}");
        let Value::Float(sd) = scalar(&agg(AggKind::Stdev, score)) else {
            panic!()
        };
        assert!((sd - 11.9f64.sqrt()).abs() < 1e-9, "{sd}");
        // Empty inputs.
        let empty = col(none_rows(), "amount");
        assert_eq!(scalar(&agg(AggKind::Count, none_rows())), Value::Int(0));
        assert_eq!(scalar(&agg(AggKind::Sum, empty.clone())), Value::Int(0));
        assert_eq!(
            scalar(&agg(AggKind::Sum, col(none_rows(), "score"))),
            Value::Float(0.0)
        );
        for kind in [
            AggKind::Mean,
            AggKind::Variance,
            AggKind::Stdev,
            AggKind::Min,
            AggKind::Max,
        ] {
            assert_eq!(scalar(&agg(kind, empty.clone())), Value::Null, "{kind:?}");
        }
        assert_eq!(
            scalar(&Expr::Quantile {
                input: Box::new(empty),
                q: 0.5
            }),
            Value::Null
        );
    }

    #[test]
    fn filters_treat_null_as_false() {
        let amount_gt = |v: i64| {
            filter(
                ds("tx"),
                Pred::Compare {
                    column: "amount".into(),
                    op: CmpOp::Gt,
                    value: Value::Int(v),
                },
            )
        };
        // Amounts > -1000: every non-null amount (6 of 7).
        assert_eq!(
            scalar(&agg(AggKind::Count, amount_gt(-1000))),
            Value::Int(6)
        );
        // Not(...) includes the null row.
        let not = filter(
            ds("tx"),
            Pred::Not(Box::new(Pred::Compare {
                column: "amount".into(),
                op: CmpOp::Gt,
                value: Value::Int(0),
            })),
        );
        assert_eq!(scalar(&agg(AggKind::Count, not)), Value::Int(3));
        // == null / != null test for missing values.
        let missing = |op| {
            filter(
                ds("tx"),
                Pred::Compare {
                    column: "score".into(),
                    op,
                    value: Value::Null,
                },
            )
        };
        assert_eq!(
            scalar(&agg(AggKind::Count, missing(CmpOp::Eq))),
            Value::Int(2)
        );
        assert_eq!(
            scalar(&agg(AggKind::Count, missing(CmpOp::Ne))),
            Value::Int(5)
        );
        // Between is inclusive; an undated row never matches.
        let between = filter(
            ds("tx"),
            Pred::Between {
                column: "date".into(),
                from: d("2025-01-20"),
                to: d("2025-03-31"),
            },
        );
        assert_eq!(scalar(&agg(AggKind::Count, between)), Value::Int(3));
        // Or / And.
        let or = filter(
            ds("tx"),
            Pred::Or(
                Box::new(cat_is("category", "rent")),
                Box::new(cat_is("category", "cash")),
            ),
        );
        assert_eq!(
            scalar(&agg(AggKind::Sum, col(or, "amount"))),
            Value::Int(-33)
        );
        // Unpaid rent: paid_date <= due_date is false for the null row.
        let late = filter(
            ds("rent"),
            Pred::Not(Box::new(Pred::CompareColumns {
                left: "paid_date".into(),
                op: CmpOp::Le,
                right: "due_date".into(),
            })),
        );
        assert_eq!(scalar(&agg(AggKind::Count, late)), Value::Int(2));
    }

    #[test]
    fn quantile_is_lower_nearest_rank() {
        // Non-null amounts sorted: -40, -10, 7, 100, 250, 999 (n = 6).
        let q = |q: f64| {
            scalar(&Expr::Quantile {
                input: Box::new(col(ds("tx"), "amount")),
                q,
            })
        };
        assert_eq!(q(0.0), Value::Int(-40));
        assert_eq!(q(0.5), Value::Int(7)); // floor(2.5) = 2
        assert_eq!(q(0.6), Value::Int(100)); // floor(3.0) = 3
        assert_eq!(q(0.99), Value::Int(250)); // floor(4.95) = 4
        assert_eq!(q(1.0), Value::Int(999));
        // Floats: -1, 0.5, 1.5, 2.5, 9.
        let median = scalar(&Expr::Quantile {
            input: Box::new(col(ds("tx"), "score")),
            q: 0.5,
        });
        assert_eq!(median, Value::Float(1.5));
    }

    #[test]
    fn histogram_bins() {
        // Amounts: 100, -40, 250, null, -10, 999, 7; edges [-40, 0, 100, 250].
        let e = Expr::Histogram {
            input: Box::new(col(ds("tx"), "amount")),
            edges: vec![-40.0, 0.0, 100.0, 250.0],
        };
        assert_eq!(
            evaluate(&e, &data()).unwrap(),
            Answer::Histogram {
                edges: vec![-40.0, 0.0, 100.0, 250.0],
                // [-40, 0): -40, -10; [0, 100): 7; [100, 250]: 100, 250. 999 and null not counted.
                counts: vec![2, 1, 2],
            }
        );
        let e = Expr::Histogram {
            input: Box::new(col(ds("tx"), "score")),
            edges: vec![0.0, 1.0, 2.0],
        };
        let Answer::Histogram { counts, .. } = evaluate(&e, &data()).unwrap() else {
            panic!()
        };
        // 0.5 -> bin 0; 1.5 -> bin 1; 2.5, -1, 9 outside.
        assert_eq!(counts, vec![1, 1]);
    }

    /// `by_category` labels the entries with the declared categories, in the declared order, including one
    /// with no rows (`fees`), and groups the rows of a filtered table by the dataset's category column.
    #[test]
    fn by_category_labels_and_values() {
        let mut data = data();
        let declared: Vec<String> = ["rent", "income", "groceries", "cash", "fees"]
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(c) = data
            .get_mut("tx")
            .and_then(|t| t.meta.columns.iter_mut().find(|c| c.name == "category"))
        {
            c.categories = Some(declared.clone());
        }
        let by = |kind, input| Expr::ByCategory {
            kind,
            input: Box::new(input),
            column: "category".into(),
        };
        let values = |e: &Expr| match evaluate(e, &data).unwrap() {
            Answer::Vector { labels, values } => {
                assert_eq!(labels, declared);
                values
            }
            other => panic!("{other:?}"),
        };
        // rent: -40; income: 100, 250, 999; groceries: null, -10; cash: 7; fees: none.
        let amount = || col(ds("tx"), "amount");
        assert_eq!(
            values(&by(AggKind::Sum, amount())),
            vec![
                Value::Int(-40),
                Value::Int(1349),
                Value::Int(-10),
                Value::Int(7),
                Value::Null
            ]
        );
        assert_eq!(
            values(&by(AggKind::Count, amount())),
            vec![
                Value::Int(1),
                Value::Int(3),
                Value::Int(1),
                Value::Int(1),
                Value::Int(0)
            ]
        );
        let positive = filter(
            ds("tx"),
            Pred::Compare {
                column: "amount".into(),
                op: CmpOp::Gt,
                value: Value::Int(0),
            },
        );
        assert_eq!(
            values(&by(AggKind::Mean, col(positive, "amount"))),
            vec![
                Value::Null,
                Value::Float(1349.0 / 3.0),
                Value::Null,
                Value::Float(7.0),
                Value::Null
            ]
        );
        let g = group_by_category(&amount(), "category", &data).unwrap();
        assert_eq!(g.labels, declared);
        assert_eq!(
            g.keys,
            vec![
                Some(1),
                Some(0),
                Some(1),
                Some(2),
                Some(2),
                Some(1),
                Some(3)
            ]
        );
        // Without a declared set there is nothing to group by.
        assert!(group_by_category(&amount(), "category", &self::data()).is_err());
        assert!(group_by_category(&amount(), "nope", &data).is_err());
    }

    #[test]
    fn by_month_labels_and_values() {
        let by = |kind| Expr::ByMonth {
            kind,
            input: Box::new(col(ds("tx"), "amount")),
        };
        // January: 100, -40; February: none; March: 250, null; April: -10. May and undated rows left out.
        assert_eq!(
            evaluate(&by(AggKind::Sum), &data()).unwrap(),
            Answer::Vector {
                labels: vec![
                    "2025-01".into(),
                    "2025-02".into(),
                    "2025-03".into(),
                    "2025-04".into()
                ],
                values: vec![
                    Value::Int(60),
                    Value::Null,
                    Value::Int(250),
                    Value::Int(-10)
                ],
            }
        );
        let Answer::Vector { values, .. } = evaluate(&by(AggKind::Count), &data()).unwrap() else {
            panic!()
        };
        assert_eq!(
            values,
            vec![Value::Int(2), Value::Int(0), Value::Int(1), Value::Int(1)]
        );
        let Answer::Vector { values, .. } = evaluate(&by(AggKind::Max), &data()).unwrap() else {
            panic!()
        };
        assert_eq!(
            values,
            vec![
                Value::Int(100),
                Value::Null,
                Value::Int(250),
                Value::Int(-10)
            ]
        );
        // Grouping a filtered table still uses the dataset's time column.
        let e = Expr::ByMonth {
            kind: AggKind::Count,
            input: Box::new(col(
                filter(ds("tx"), cat_is("category", "income")),
                "category",
            )),
        };
        let Answer::Vector { values, .. } = evaluate(&e, &data()).unwrap() else {
            panic!()
        };
        assert_eq!(
            values,
            vec![Value::Int(1), Value::Int(0), Value::Int(1), Value::Int(0)]
        );
        // Dot with weights, null months count as 0: 60*1 + 0 + 250*2 + (-10)*0.5 = 555.
        let dot = Expr::Dot {
            input: Box::new(by(AggKind::Sum)),
            weights: vec![1.0, 100.0, 2.0, 0.5],
        };
        assert_eq!(scalar(&dot), Value::Float(555.0));
        let bad = Expr::Dot {
            input: Box::new(by(AggKind::Sum)),
            weights: vec![1.0],
        };
        assert!(matches!(evaluate(&bad, &data()), Err(EvalError::Other(_))));
        // Vector and scalar arithmetic keeps the labels.
        let e = arith(ArithOp::Mul, by(AggKind::Count), lit(Value::Int(10)));
        let Answer::Vector { labels, values } = evaluate(&e, &data()).unwrap() else {
            panic!()
        };
        assert_eq!(labels.len(), 4);
        assert_eq!(
            values,
            vec![
                Value::Int(20),
                Value::Int(0),
                Value::Int(10),
                Value::Int(10)
            ]
        );
    }

    #[test]
    fn row_releases() {
        let e = Expr::Select {
            input: Box::new(filter(ds("tx"), cat_is("category", "income"))),
            columns: vec!["amount".into(), "date".into()],
        };
        assert_eq!(
            evaluate(&e, &data()).unwrap(),
            Answer::Rows {
                columns: vec!["amount".into(), "date".into()],
                rows: vec![
                    vec![Value::Int(100), Value::Date(d("2025-01-05"))],
                    vec![Value::Int(250), Value::Date(d("2025-03-01"))],
                    vec![Value::Int(999), Value::Date(d("2025-05-01"))],
                ],
            }
        );
        // Days late: paid - due.
        let rent = ds("rent");
        let e = arith(
            ArithOp::Sub,
            col(rent.clone(), "paid_date"),
            col(rent.clone(), "due_date"),
        );
        assert_eq!(
            evaluate(&e, &data()).unwrap(),
            Answer::Rows {
                columns: vec!["value".into()],
                rows: vec![vec![Value::Int(-2)], vec![Value::Int(2)], vec![Value::Null]],
            }
        );
        // Clamp a column: whole numbers stay whole.
        let e = Expr::Clamp {
            input: Box::new(col(
                filter(ds("tx"), cat_is("category", "income")),
                "amount",
            )),
            lo: 0.5,
            hi: 200.7,
        };
        assert_eq!(
            evaluate(&e, &data()).unwrap(),
            Answer::Rows {
                columns: vec!["amount".into()],
                rows: vec![
                    vec![Value::Int(100)],
                    vec![Value::Int(200)],
                    vec![Value::Int(200)]
                ],
            }
        );
        // On-time share as the mean of a comparison (null compares false).
        let on_time = Expr::Compare {
            op: CmpOp::Le,
            left: Box::new(col(rent.clone(), "paid_date")),
            right: Box::new(col(rent, "due_date")),
        };
        let Value::Float(share) = scalar(&agg(AggKind::Mean, on_time)) else {
            panic!()
        };
        assert!((share - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn unresolved_and_missing() {
        let d0 = data();
        assert!(matches!(
            evaluate(&Expr::Ptr { id: 3 }, &d0),
            Err(EvalError::Unresolved(_))
        ));
        let e = agg(
            AggKind::Count,
            filter(
                ds("tx"),
                Pred::LastMonths {
                    months: 3,
                    column: None,
                },
            ),
        );
        assert!(matches!(evaluate(&e, &d0), Err(EvalError::Unresolved(_))));
        let e = Expr::Catalogue {
            name: "rent_on_time_ratio_12m".into(),
            window_end: None,
        };
        assert!(matches!(evaluate(&e, &d0), Err(EvalError::Unresolved(_))));
        assert_eq!(
            evaluate(&ds("utilities"), &d0),
            Err(EvalError::MissingDataset("utilities".into()))
        );
        assert_eq!(
            evaluate(&col(ds("tx"), "counterparty"), &d0),
            Err(EvalError::MissingColumn {
                dataset: "tx".into(),
                column: "counterparty".into()
            })
        );
        // Ill-typed (unchecked) trees are errors, not panics.
        assert!(matches!(
            evaluate(&agg(AggKind::Sum, col(ds("tx"), "category")), &d0),
            Err(EvalError::Other(_))
        ));
        assert!(matches!(
            evaluate(&arith(ArithOp::Add, ds("tx"), lit(Value::Int(1))), &d0),
            Err(EvalError::Other(_))
        ));
    }

    #[test]
    fn catalogue_and_checked_lineage() {
        // Rent: 2025-01 on time, 2025-02 late, 2025-03 unpaid.
        let e = Expr::Catalogue {
            name: "rent_on_time_ratio_12m".into(),
            window_end: Some(d("2025-03-31")),
        };
        let Value::Float(r) = scalar(&e) else {
            panic!()
        };
        assert!((r - 1.0 / 3.0).abs() < 1e-12);
        let e = Expr::Catalogue {
            name: "rent_current_streak_months".into(),
            window_end: Some(d("2025-01-31")),
        };
        assert_eq!(scalar(&e), Value::Int(1));
        // Check, then evaluate: the relative window resolves against `today`.
        let metas: BTreeMap<String, DatasetMeta> =
            data().into_iter().map(|(k, v)| (k, v.meta)).collect();
        let ctx = CheckContext {
            metas: &metas,
            today: d("2025-05-10"),
            limits: Limits::default(),
        };
        // Last 2 full months before May 2025: March and April.
        let e = agg(
            AggKind::Sum,
            col(
                filter(
                    ds("tx"),
                    Pred::LastMonths {
                        months: 2,
                        column: None,
                    },
                ),
                "amount",
            ),
        );
        let checked = check(&e, &ctx).unwrap();
        assert_eq!(
            evaluate(&checked.expr, &data()).unwrap(),
            Answer::Scalar {
                value: Value::Int(240)
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn arithmetic_is_total(a in proptest::num::i64::ANY, b in proptest::num::i64::ANY,
                               x in proptest::num::f64::ANY, op in 0usize..4) {
            let op = [ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div][op];
            for (l, r) in [
                (Value::Int(a), Value::Int(b)),
                (Value::Int(a), Value::Float(x)),
                (Value::Float(x), Value::Bool(b % 2 == 0)),
            ] {
                match arith_values(op, &l, &r) {
                    Value::Float(f) => proptest::prop_assert!(f.is_finite()),
                    Value::Int(_) | Value::Null => {}
                    other => proptest::prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }

        #[test]
        fn quantile_and_histogram_are_total(values in proptest::collection::vec(proptest::num::i64::ANY, 0..20),
                                            q in proptest::num::f64::ANY,
                                            edges in proptest::collection::vec(proptest::num::f64::ANY, 0..5)) {
            let values: Vec<Value> = values.into_iter().map(Value::Int).collect();
            let got = quantile(DataType::I64, &values, q).unwrap();
            proptest::prop_assert!(got == Value::Null || values.contains(&got));
            if let Ok(counts) = histogram(&values, &edges) {
                proptest::prop_assert_eq!(counts.len() + 1, edges.len());
                proptest::prop_assert!(counts.iter().sum::<u64>() <= values.len() as u64);
            }
        }
    }
}
