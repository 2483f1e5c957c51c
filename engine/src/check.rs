//! Static type-checking of lineages against published metadata, with quotas on static sizes.
//!
//! Checking depends only on the metadata, the expression and the date (never on rows), so its errors can be
//! shown to the FI at once.

use crate::catalogue;
use crate::expr::{AggKind, ArithOp, CmpOp, Expr, OpKind, Pred};
use crate::meta::{Bounds, DatasetMeta, TimeWindow};
use crate::value::{DataType, Value};
use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Quotas checked on static sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Maximum number of nodes in one lineage (see [`Expr::node_count`]).
    pub max_nodes: usize,
    /// Maximum length of a public bin-edge or weight list.
    pub max_vector: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_nodes: 64,
            max_vector: 1024,
        }
    }
}

/// What the checker needs: the published metadata of every loaded dataset, today's date (to resolve
/// relative windows) and the quotas.
#[derive(Debug, Clone)]
pub struct CheckContext<'a> {
    /// Published metadata by dataset name.
    pub metas: &'a BTreeMap<String, DatasetMeta>,
    /// Today's date on the owner's node.
    pub today: NaiveDate,
    /// Quotas.
    pub limits: Limits,
}

/// The static type of a lineage node. This is what a pointer shows the FI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Type {
    /// A table.
    Table {
        /// Datasets the rows come from.
        dataset: String,
        /// Columns and their types.
        columns: Vec<(String, DataType)>,
        /// Public bound on the number of rows.
        max_rows: u64,
        /// The public time window, if the dataset has one.
        window: Option<TimeWindow>,
    },
    /// A column (one value per row of its table).
    Column {
        /// Element type.
        dtype: DataType,
        /// Public bounds of the values, if known statically.
        bounds: Option<Bounds>,
        /// Public bound on the length.
        max_len: u64,
    },
    /// A vector of static length (for example one entry per month).
    Vector {
        /// Element type.
        dtype: DataType,
        /// Length.
        len: usize,
        /// Public bounds of each entry, if known statically.
        bounds: Option<Bounds>,
    },
    /// One value.
    Scalar {
        /// Type.
        dtype: DataType,
        /// Public bounds, if known statically.
        bounds: Option<Bounds>,
    },
    /// Counts in public bins.
    Histogram {
        /// Bin edges.
        edges: Vec<f64>,
    },
    /// A batch: one type per question, in order.
    Batch {
        /// The questions' types.
        items: Vec<Type>,
    },
}

impl Type {
    /// A batch's question types, in order (empty for any other type).
    pub fn batch_items(&self) -> &[Type] {
        match self {
            Type::Batch { items } => items,
            _ => &[],
        }
    }

    /// Whether releasing a value of this type reveals rows (a table or a column, or a batch holding one).
    pub fn is_row_level(&self) -> bool {
        match self {
            Type::Table { .. } | Type::Column { .. } => true,
            Type::Batch { items } => items.iter().any(Type::is_row_level),
            _ => false,
        }
    }
}

/// One use of a catalogue attribute in a lineage, with its resolved window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CatalogueUse {
    /// Attribute name.
    pub name: String,
    /// Last day of the window.
    pub window_end: NaiveDate,
    /// Whether the window ends at the last full month before today.
    pub latest: bool,
}

/// A checked lineage: the resolved expression (no pointers, concrete windows), its type, and the static facts
/// that policies decide on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    /// The resolved expression.
    pub expr: Expr,
    /// Its type.
    pub ty: Type,
    /// Datasets it reads.
    pub datasets: BTreeSet<String>,
    /// Columns it reads, as (dataset, column), including a catalogue attribute's declared inputs.
    pub columns: BTreeSet<(String, String)>,
    /// Kinds of operation used.
    pub op_kinds: BTreeSet<OpKind>,
    /// Catalogue attributes used.
    pub catalogue: Vec<CatalogueUse>,
    /// Whether the whole lineage is one catalogue attribute (possibly post-processed by nothing else).
    pub catalogue_only: bool,
    /// Number of nodes.
    pub nodes: usize,
    /// For a batch ([`Expr::Batch`]): each question checked on its own, in order (the fields above are then
    /// their union: every dataset, column, kind of operation and attribute any of them reads). Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Checked>,
}

/// Why a lineage does not type-check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No dataset with this name is published.
    #[error("no dataset named `{0}`")]
    UnknownDataset(String),
    /// The table has no such column.
    #[error("dataset `{dataset}` has no column `{column}`")]
    UnknownColumn {
        /// Dataset.
        dataset: String,
        /// Column.
        column: String,
    },
    /// No catalogue attribute with this name.
    #[error("no catalogue attribute named `{0}`")]
    UnknownAttribute(String),
    /// An operation got an input of the wrong kind or type.
    #[error("type error: {0}")]
    Type(String),
    /// A literal or parameter is invalid (NaN, out of range, a category outside the public set, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The lineage is larger than the quota.
    #[error("lineage has {nodes} nodes; the limit is {limit}")]
    TooLarge {
        /// Nodes in the lineage.
        nodes: usize,
        /// The quota.
        limit: usize,
    },
    /// A wire-only pointer reference was left in the expression.
    #[error("unresolved pointer reference {0}")]
    UnresolvedPointer(u64),
}

/// Type-check `expr` against the published metadata.
///
/// Checks the node quota first, then every node bottom-up:
/// - sources and columns must be published, selections must not repeat a column;
/// - filter predicates must compare a column with a literal of a fitting type (a category literal must be in
///   the column's public set; `==`/`!=` with `null` test for a missing value), order comparisons are not allowed
///   on categories and booleans, and relative windows ([`Pred::LastMonths`]) are resolved to concrete dates
///   ending at the last full month before `ctx.today`;
/// - element-wise arithmetic and comparison between two columns need both columns to come from the same rows
///   (structurally equal table expressions);
/// - clamps are resolved to the bounds they guarantee: `[lo, hi]` intersected with the input's public bounds,
///   and the resolved expression clamps into exactly those bounds;
/// - catalogue attributes must have their inputs published and a window ending at a month end no later than
///   the last full month (`None` resolves to it).
///
/// Every float parameter must be finite, and public lists (selected columns, bin edges, weights, the months of
/// a group-by-month) must not be longer than `ctx.limits.max_vector`.
pub fn check(expr: &Expr, ctx: &CheckContext<'_>) -> Result<Checked, CheckError> {
    if let Expr::Batch { items } = expr {
        return check_batch(items, ctx);
    }
    let nodes = expr.node_count();
    if nodes > ctx.limits.max_nodes {
        return Err(CheckError::TooLarge {
            nodes,
            limit: ctx.limits.max_nodes,
        });
    }
    let mut checker = Checker {
        metas: ctx.metas,
        limits: ctx.limits,
        last_full: last_full_month_end(ctx.today),
        datasets: BTreeSet::new(),
        columns: BTreeSet::new(),
        op_kinds: BTreeSet::new(),
        catalogue: Vec::new(),
    };
    let node = checker.visit(expr)?;
    // A row-level release of a table reveals every column it keeps.
    if let Type::Table {
        dataset, columns, ..
    } = &node.ty
    {
        for (name, _) in columns {
            checker.columns.insert((dataset.clone(), name.clone()));
        }
    }
    Ok(Checked {
        expr: node.expr,
        ty: node.ty,
        datasets: checker.datasets,
        columns: checker.columns,
        op_kinds: checker.op_kinds,
        catalogue: checker.catalogue,
        catalogue_only: matches!(expr, Expr::Catalogue { .. }),
        nodes,
        items: Vec::new(),
    })
}

/// Check a batch: each question on its own, then their union (see [`Checked::items`]). The node limit holds
/// for the whole batch.
fn check_batch(items: &[Expr], ctx: &CheckContext<'_>) -> Result<Checked, CheckError> {
    if items.is_empty() {
        return Err(CheckError::Invalid(
            "a batch needs at least one question".into(),
        ));
    }
    if items.len() > crate::expr::MAX_BATCH {
        return Err(CheckError::Invalid(format!(
            "a batch holds at most {} questions, not {}; send the rest as another batch",
            crate::expr::MAX_BATCH,
            items.len()
        )));
    }
    let nodes = 1 + items.iter().map(Expr::node_count).sum::<usize>();
    if nodes > ctx.limits.max_nodes {
        return Err(CheckError::TooLarge {
            nodes,
            limit: ctx.limits.max_nodes,
        });
    }
    let checked = items
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if matches!(e, Expr::Batch { .. }) {
                return Err(CheckError::Invalid(
                    "a batch cannot hold another batch; list its questions instead".into(),
                ));
            }
            check(e, ctx).map_err(|err| in_item(i, err))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Checked {
        expr: Expr::Batch {
            items: checked.iter().map(|c| c.expr.clone()).collect(),
        },
        ty: Type::Batch {
            items: checked.iter().map(|c| c.ty.clone()).collect(),
        },
        datasets: BTreeSet::new(),
        columns: BTreeSet::new(),
        op_kinds: BTreeSet::new(),
        catalogue: Vec::new(),
        catalogue_only: checked.iter().all(|c| c.catalogue_only),
        nodes,
        items: Vec::new(),
    };
    for c in &checked {
        out.datasets.extend(c.datasets.iter().cloned());
        out.columns.extend(c.columns.iter().cloned());
        out.op_kinds.extend(c.op_kinds.iter().copied());
        for u in &c.catalogue {
            if !out.catalogue.contains(u) {
                out.catalogue.push(u.clone());
            }
        }
    }
    out.items = checked;
    Ok(out)
}

/// A question's error, naming the question (numbered from 1, as the owner and FI see them).
fn in_item(i: usize, err: CheckError) -> CheckError {
    let n = i + 1;
    match err {
        CheckError::Type(m) => CheckError::Type(format!("question {n} of the batch: {m}")),
        CheckError::Invalid(m) => CheckError::Invalid(format!("question {n} of the batch: {m}")),
        other => other,
    }
}

/// The last day of the last full calendar month before `today`'s month (for 2026-03-15: 2026-02-28).
pub fn last_full_month_end(today: NaiveDate) -> NaiveDate {
    month_start(today).pred_opt().unwrap_or(NaiveDate::MIN)
}

/// The first day of `d`'s month.
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The last day of `d`'s month.
pub fn month_end(d: NaiveDate) -> NaiveDate {
    month_start(d)
        .checked_add_months(Months::new(1))
        .and_then(|n| n.pred_opt())
        .unwrap_or(NaiveDate::MAX)
}

/// Whether `d` is the last day of its month.
pub fn is_month_end(d: NaiveDate) -> bool {
    d.succ_opt().is_none_or(|n| n.day() == 1)
}

/// The first day of the month `months` calendar months before `d`'s month (`months = 0`: `d`'s own month).
pub fn months_before(d: NaiveDate, months: u32) -> Option<NaiveDate> {
    month_start(d).checked_sub_months(Months::new(months))
}

/// A number that grows by one per calendar month (`year * 12 + month - 1`), for month arithmetic.
pub fn month_number(d: NaiveDate) -> i64 {
    i64::from(d.year()) * 12 + i64::from(d.month0())
}

/// The label of `d`'s month, `YYYY-MM`.
pub fn month_label(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

/// The first day of every calendar month from `from`'s month through `to`'s month, in order; `None` if
/// `from > to` or there would be more than `limit` months.
pub fn month_starts(from: NaiveDate, to: NaiveDate, limit: usize) -> Option<Vec<NaiveDate>> {
    if from > to {
        return None;
    }
    let count = usize::try_from(month_number(to) - month_number(from) + 1).ok()?;
    if count > limit {
        return None;
    }
    let first = month_start(from);
    (0..count)
        .map(|i| first.checked_add_months(Months::new(u32::try_from(i).ok()?)))
        .collect()
}

/// The element type of `left op right` for arithmetic, or why it is not allowed.
///
/// Money plus or minus money (or a whole number) stays money, as does money times a whole number; anything
/// with a float, and every division, gives a float; whole numbers (and booleans as 0/1) give whole numbers;
/// `date - date` gives whole days.
pub fn arith_type(op: ArithOp, left: DataType, right: DataType) -> Result<DataType, String> {
    use DataType::{Bool, Date, Money, F64, I64};
    let whole = |t: DataType| matches!(t, I64 | Bool);
    match (left, right) {
        (Date, Date) if op == ArithOp::Sub => Ok(I64),
        (a, b) if !a.is_numeric() || !b.is_numeric() => Err(format!(
            "arithmetic `{}` is not defined on {a} and {b}",
            arith_symbol(op)
        )),
        _ if op == ArithOp::Div => Ok(F64),
        (F64, _) | (_, F64) => Ok(F64),
        (Money, Money) => Ok(if op == ArithOp::Mul { I64 } else { Money }),
        (Money, b) if whole(b) => Ok(Money),
        (a, Money) if whole(a) => Ok(Money),
        _ => Ok(I64),
    }
}

fn arith_symbol(op: ArithOp) -> &'static str {
    match op {
        ArithOp::Add => "+",
        ArithOp::Sub => "-",
        ArithOp::Mul => "*",
        ArithOp::Div => "/",
    }
}

fn is_order(op: CmpOp) -> bool {
    !matches!(op, CmpOp::Eq | CmpOp::Ne)
}

/// Whether values of types `a` and `b` may be compared with `op`.
fn comparable(a: DataType, b: DataType, op: CmpOp) -> Result<(), CheckError> {
    use DataType::{Bool, Category, Date};
    let ok = match (a, b) {
        (Date, Date) => true,
        (Category, Category) | (Bool, Bool) => !is_order(op),
        (x, y) => x.is_numeric() && y.is_numeric() && x != Bool && y != Bool,
    };
    if ok {
        Ok(())
    } else if is_order(op) && matches!(a, Category | Bool) && a == b {
        Err(CheckError::Type(format!(
            "order comparisons are not defined on {a} values"
        )))
    } else {
        Err(CheckError::Type(format!("cannot compare {a} with {b}")))
    }
}

/// Bounds if they are usable (finite, ordered).
fn sane(b: Option<Bounds>) -> Option<Bounds> {
    b.filter(|b| b.lo.is_finite() && b.hi.is_finite() && b.lo <= b.hi)
}

fn bounds(lo: f64, hi: f64) -> Option<Bounds> {
    sane(Some(Bounds { lo, hi }))
}

/// Bounds of a numeric operand: its own, or `[0, 1]` for booleans.
fn numeric_bounds(dtype: DataType, b: Option<Bounds>) -> Option<Bounds> {
    match dtype {
        DataType::Bool => sane(b).or(bounds(0.0, 1.0)),
        _ => sane(b),
    }
}

/// Interval arithmetic; `None` for division or when either side is unbounded.
fn interval(op: ArithOp, a: Option<Bounds>, b: Option<Bounds>) -> Option<Bounds> {
    let (a, b) = (a?, b?);
    match op {
        ArithOp::Add => bounds(a.lo + b.lo, a.hi + b.hi),
        ArithOp::Sub => bounds(a.lo - b.hi, a.hi - b.lo),
        ArithOp::Mul => {
            let p = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi];
            let lo = p.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            bounds(lo, hi)
        }
        ArithOp::Div => None,
    }
}

/// Clamp `x` into `[lo, hi]` (`lo <= hi`), mapping NaN to `lo`.
fn clamp_f(x: f64, lo: f64, hi: f64) -> f64 {
    if x.is_nan() {
        lo
    } else {
        x.max(lo).min(hi)
    }
}

/// The checked input of a grouped aggregate (`Checker::grouped_input`).
struct GroupedInput {
    /// The input column.
    node: Node,
    /// Its dataset.
    dataset: String,
    /// The type of the grouped vector's entries.
    dtype: DataType,
    /// Their bounds.
    bounds: Option<Bounds>,
}

/// Element type and bounds of an aggregate over `n` values of type `dtype` with bounds `b`.
pub(crate) fn agg_type(
    kind: AggKind,
    dtype: DataType,
    b: Option<Bounds>,
    n: f64,
) -> (DataType, Option<Bounds>) {
    let nb = numeric_bounds(dtype, b);
    match kind {
        AggKind::Count => (DataType::I64, bounds(0.0, n)),
        AggKind::Sum => {
            let dt = match dtype {
                DataType::F64 => DataType::F64,
                DataType::Money => DataType::Money,
                _ => DataType::I64,
            };
            // Between none and all `n` values are present, so the sum may also be 0.
            (
                dt,
                nb.and_then(|b| bounds((n * b.lo).min(0.0), (n * b.hi).max(0.0))),
            )
        }
        // A mean of money is money (fractions of a cent are kept); of anything else, a number.
        AggKind::Mean if dtype == DataType::Money => (DataType::Money, nb),
        AggKind::Mean => (DataType::F64, nb),
        AggKind::Variance => (
            DataType::F64,
            nb.and_then(|b| bounds(0.0, (b.hi - b.lo) * (b.hi - b.lo) / 4.0)),
        ),
        // A standard deviation is in the values' unit (money stays money), at most half their range.
        AggKind::Stdev => (
            if dtype == DataType::Money {
                DataType::Money
            } else {
                DataType::F64
            },
            nb.and_then(|b| bounds(0.0, (b.hi - b.lo) / 2.0)),
        ),
        AggKind::Min | AggKind::Max => (dtype, nb),
    }
}

fn finite(x: f64, what: &str) -> Result<(), CheckError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(CheckError::Invalid(format!(
            "{what} must be a finite number, not {x}"
        )))
    }
}

fn type_err(msg: impl Into<String>) -> CheckError {
    CheckError::Type(msg.into())
}

/// The value shape of a node that is a column, vector or scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Column(u64),
    Vector(usize),
    Scalar,
}

/// Shape, element type and bounds of a column, vector or scalar type.
fn value_parts(ty: &Type) -> Option<(Shape, DataType, Option<Bounds>)> {
    match ty {
        Type::Column {
            dtype,
            bounds,
            max_len,
        } => Some((Shape::Column(*max_len), *dtype, *bounds)),
        Type::Vector { dtype, len, bounds } => Some((Shape::Vector(*len), *dtype, *bounds)),
        Type::Scalar { dtype, bounds } => Some((Shape::Scalar, *dtype, *bounds)),
        Type::Table { .. } | Type::Histogram { .. } | Type::Batch { .. } => None,
    }
}

fn shaped(shape: Shape, dtype: DataType, bounds: Option<Bounds>) -> Type {
    match shape {
        Shape::Column(max_len) => Type::Column {
            dtype,
            bounds,
            max_len,
        },
        Shape::Vector(len) => Type::Vector { dtype, len, bounds },
        Shape::Scalar => Type::Scalar { dtype, bounds },
    }
}

/// A checked node and what its parents need to know about it.
struct Node {
    /// The resolved expression.
    expr: Expr,
    /// Its type.
    ty: Type,
    /// For a column: the resolved table expression its rows come from.
    rows: Option<Expr>,
    /// For a table or a column: the dataset its rows come from.
    dataset: Option<String>,
    /// For a category column: its public category set, if declared.
    categories: Option<Vec<String>>,
}

impl Node {
    fn plain(expr: Expr, ty: Type) -> Node {
        Node {
            expr,
            ty,
            rows: None,
            dataset: None,
            categories: None,
        }
    }
}

/// Both operands of an element-wise operation, checked, with the result's shape and rows.
struct Operands {
    left: Node,
    right: Node,
    types: (DataType, DataType),
    bounds: (Option<Bounds>, Option<Bounds>),
    shape: Shape,
    rows: Option<Expr>,
    dataset: Option<String>,
}

/// The table a predicate filters.
struct TableCtx<'t> {
    dataset: &'t str,
    columns: &'t [(String, DataType)],
    meta: &'t DatasetMeta,
}

struct Checker<'a> {
    metas: &'a BTreeMap<String, DatasetMeta>,
    limits: Limits,
    last_full: NaiveDate,
    datasets: BTreeSet<String>,
    columns: BTreeSet<(String, String)>,
    op_kinds: BTreeSet<OpKind>,
    catalogue: Vec<CatalogueUse>,
}

impl<'a> Checker<'a> {
    fn meta(&self, name: &str) -> Result<&'a DatasetMeta, CheckError> {
        self.metas
            .get(name)
            .ok_or_else(|| CheckError::UnknownDataset(name.to_string()))
    }

    fn list_len(&self, len: usize, what: &str) -> Result<(), CheckError> {
        if len > self.limits.max_vector {
            Err(CheckError::Invalid(format!(
                "{what} has {len} entries; the limit is {}",
                self.limits.max_vector
            )))
        } else {
            Ok(())
        }
    }

    fn visit(&mut self, expr: &Expr) -> Result<Node, CheckError> {
        match expr {
            Expr::Ptr { id } => Err(CheckError::UnresolvedPointer(*id)),
            Expr::Dataset { name } => {
                let meta = self.meta(name)?;
                self.datasets.insert(name.clone());
                Ok(Node {
                    expr: expr.clone(),
                    ty: Type::Table {
                        dataset: name.clone(),
                        columns: meta
                            .columns
                            .iter()
                            .map(|c| (c.name.clone(), c.dtype))
                            .collect(),
                        max_rows: meta.max_rows,
                        window: meta.window,
                    },
                    rows: None,
                    dataset: Some(name.clone()),
                    categories: None,
                })
            }
            Expr::Select { input, columns } => self.select(input, columns),
            Expr::Filter { input, pred } => {
                let inp = self.visit(input)?;
                let Type::Table {
                    dataset, columns, ..
                } = &inp.ty
                else {
                    return Err(type_err("filter needs a table"));
                };
                let table = TableCtx {
                    dataset,
                    columns,
                    meta: self.meta(dataset)?,
                };
                let pred = self.pred(pred, &table)?;
                self.op_kinds.insert(OpKind::Filter);
                Ok(Node {
                    expr: Expr::Filter {
                        input: Box::new(inp.expr),
                        pred,
                    },
                    ty: inp.ty,
                    rows: None,
                    dataset: inp.dataset,
                    categories: None,
                })
            }
            Expr::Column { input, name } => self.column(input, name),
            Expr::Clamp { input, lo, hi } => self.clamp(input, *lo, *hi),
            Expr::Arith { op, left, right } => self.arith(*op, left, right),
            Expr::Compare { op, left, right } => self.compare(*op, left, right),
            Expr::Literal { value } => {
                let (dtype, b) = match value {
                    Value::Null => {
                        return Err(CheckError::Invalid(
                            "a null literal is only allowed in a filter (`column == null`)".into(),
                        ))
                    }
                    Value::Int(v) => (DataType::I64, bounds(*v as f64, *v as f64)),
                    Value::Float(v) => {
                        finite(*v, "a literal")?;
                        (DataType::F64, bounds(*v, *v))
                    }
                    Value::Bool(v) => {
                        let x = if *v { 1.0 } else { 0.0 };
                        (DataType::Bool, bounds(x, x))
                    }
                    Value::Date(_) => (DataType::Date, None),
                    Value::Str(_) => (DataType::Category, None),
                };
                Ok(Node::plain(expr.clone(), Type::Scalar { dtype, bounds: b }))
            }
            Expr::Aggregate { kind, input } => self.aggregate(*kind, input),
            Expr::Quantile { input, q } => {
                finite(*q, "the quantile")?;
                if !(0.0..=1.0).contains(q) {
                    return Err(CheckError::Invalid(format!(
                        "the quantile must be between 0 and 1, not {q}"
                    )));
                }
                let inp = self.visit(input)?;
                let (dtype, b) = numeric_column(&inp.ty, "quantile")?;
                self.op_kinds.insert(OpKind::Quantile);
                Ok(Node::plain(
                    Expr::Quantile {
                        input: Box::new(inp.expr),
                        q: *q,
                    },
                    Type::Scalar {
                        dtype,
                        bounds: numeric_bounds(dtype, b),
                    },
                ))
            }
            Expr::Histogram { input, edges } => {
                self.list_len(edges.len(), "the bin edge list")?;
                if edges.len() < 2 {
                    return Err(CheckError::Invalid(
                        "a histogram needs at least two bin edges".into(),
                    ));
                }
                for e in edges {
                    finite(*e, "a bin edge")?;
                }
                if edges.windows(2).any(|w| w.first() >= w.get(1)) {
                    return Err(CheckError::Invalid(
                        "bin edges must be strictly increasing".into(),
                    ));
                }
                let inp = self.visit(input)?;
                numeric_column(&inp.ty, "histogram")?;
                self.op_kinds.insert(OpKind::Histogram);
                Ok(Node::plain(
                    Expr::Histogram {
                        input: Box::new(inp.expr),
                        edges: edges.clone(),
                    },
                    Type::Histogram {
                        edges: edges.clone(),
                    },
                ))
            }
            Expr::ByMonth { kind, input } => self.by_month(*kind, input),
            Expr::ByCategory {
                kind,
                input,
                column,
            } => self.by_category(*kind, input, column),
            Expr::Dot { input, weights } => self.dot(input, weights),
            Expr::Catalogue { name, window_end } => self.catalogue(name, *window_end),
            Expr::Batch { .. } => Err(CheckError::Invalid(
                "a batch can only be the whole of a request, not part of an expression".into(),
            )),
        }
    }

    fn select(&mut self, input: &Expr, columns: &[String]) -> Result<Node, CheckError> {
        let inp = self.visit(input)?;
        let Type::Table {
            dataset,
            columns: have,
            max_rows,
            window,
        } = &inp.ty
        else {
            return Err(type_err("select needs a table"));
        };
        if columns.is_empty() {
            return Err(CheckError::Invalid(
                "select needs at least one column".into(),
            ));
        }
        self.list_len(columns.len(), "the column list")?;
        let mut seen = BTreeSet::new();
        let mut kept = Vec::with_capacity(columns.len());
        for c in columns {
            if !seen.insert(c.as_str()) {
                return Err(CheckError::Invalid(format!(
                    "column `{c}` is selected twice"
                )));
            }
            let dtype = find_column(have, c).ok_or_else(|| CheckError::UnknownColumn {
                dataset: dataset.clone(),
                column: c.clone(),
            })?;
            kept.push((c.clone(), dtype));
            self.columns.insert((dataset.clone(), c.clone()));
        }
        self.op_kinds.insert(OpKind::Select);
        let ty = Type::Table {
            dataset: dataset.clone(),
            columns: kept,
            max_rows: *max_rows,
            window: *window,
        };
        Ok(Node {
            expr: Expr::Select {
                input: Box::new(inp.expr),
                columns: columns.to_vec(),
            },
            ty,
            rows: None,
            dataset: inp.dataset,
            categories: None,
        })
    }

    fn column(&mut self, input: &Expr, name: &str) -> Result<Node, CheckError> {
        let inp = self.visit(input)?;
        let Type::Table {
            dataset,
            columns,
            max_rows,
            ..
        } = &inp.ty
        else {
            return Err(type_err(format!(
                "column `{name}` needs a table to take it from"
            )));
        };
        let dtype = find_column(columns, name).ok_or_else(|| CheckError::UnknownColumn {
            dataset: dataset.clone(),
            column: name.to_string(),
        })?;
        let meta = self.meta(dataset)?;
        let cmeta = meta.column(name);
        let ty = Type::Column {
            dtype,
            bounds: sane(cmeta.and_then(|c| c.bounds)),
            max_len: *max_rows,
        };
        let dataset = dataset.clone();
        self.columns.insert((dataset.clone(), name.to_string()));
        self.op_kinds.insert(OpKind::Select);
        Ok(Node {
            rows: Some(inp.expr.clone()),
            expr: Expr::Column {
                input: Box::new(inp.expr),
                name: name.to_string(),
            },
            ty,
            dataset: Some(dataset),
            categories: cmeta.and_then(|c| c.categories.clone()),
        })
    }

    fn clamp(&mut self, input: &Expr, lo: f64, hi: f64) -> Result<Node, CheckError> {
        finite(lo, "the clamp's lower bound")?;
        finite(hi, "the clamp's upper bound")?;
        if lo > hi {
            return Err(CheckError::Invalid(format!(
                "the clamp's lower bound {lo} is above its upper bound {hi}"
            )));
        }
        let inp = self.visit(input)?;
        let (shape, dtype, b) = value_parts(&inp.ty)
            .ok_or_else(|| type_err("clamp needs a numeric column, vector or scalar"))?;
        match dtype {
            DataType::F64 => {}
            DataType::I64 | DataType::Money => {
                if lo.ceil() > hi.floor() {
                    return Err(CheckError::Invalid(format!(
                        "no whole number lies in [{lo}, {hi}] to clamp {dtype} values into"
                    )));
                }
            }
            other => return Err(type_err(format!("clamp is not defined on {other} values"))),
        }
        let new = match sane(b) {
            Some(b) => Bounds {
                lo: clamp_f(b.lo, lo, hi),
                hi: clamp_f(b.hi, lo, hi),
            },
            None => Bounds { lo, hi },
        };
        self.op_kinds.insert(OpKind::Clamp);
        Ok(Node {
            expr: Expr::Clamp {
                input: Box::new(inp.expr),
                lo: new.lo,
                hi: new.hi,
            },
            ty: shaped(shape, dtype, Some(new)),
            rows: inp.rows,
            dataset: inp.dataset,
            categories: None,
        })
    }

    /// Visit both operands of an element-wise operation and work out the result's shape and rows.
    fn operands(&mut self, left: &Expr, right: &Expr, what: &str) -> Result<Operands, CheckError> {
        let l = self.visit(left)?;
        let r = self.visit(right)?;
        let need = || type_err(format!("{what} needs columns, vectors or scalars"));
        let (ls, ldt, lb) = value_parts(&l.ty).ok_or_else(need)?;
        let (rs, rdt, rb) = value_parts(&r.ty).ok_or_else(need)?;
        let (shape, rows, dataset) = match (ls, rs) {
            (Shape::Column(n), Shape::Column(_)) => {
                if l.rows.is_none() || l.rows != r.rows {
                    return Err(type_err(format!(
                        "{what}: the columns come from different rows (take both from the same table \
                         expression)"
                    )));
                }
                (Shape::Column(n), l.rows.clone(), l.dataset.clone())
            }
            (Shape::Column(n), Shape::Scalar) => (Shape::Column(n), l.rows.clone(), l.dataset.clone()),
            (Shape::Scalar, Shape::Column(n)) => (Shape::Column(n), r.rows.clone(), r.dataset.clone()),
            (Shape::Vector(n), Shape::Scalar) | (Shape::Scalar, Shape::Vector(n)) => {
                (Shape::Vector(n), None, None)
            }
            (Shape::Scalar, Shape::Scalar) => (Shape::Scalar, None, None),
            _ => {
                return Err(type_err(format!(
                    "{what} combines a column with a column of the same rows, or anything with a scalar"
                )))
            }
        };
        Ok(Operands {
            left: l,
            right: r,
            types: (ldt, rdt),
            bounds: (lb, rb),
            shape,
            rows,
            dataset,
        })
    }

    fn arith(&mut self, op: ArithOp, left: &Expr, right: &Expr) -> Result<Node, CheckError> {
        let Operands {
            left: l,
            right: r,
            types: (ldt, rdt),
            bounds: (lb, rb),
            shape,
            rows,
            dataset,
        } = self.operands(left, right, "arithmetic")?;
        let dtype = arith_type(op, ldt, rdt).map_err(CheckError::Type)?;
        let b = if ldt.is_numeric() && rdt.is_numeric() {
            interval(op, numeric_bounds(ldt, lb), numeric_bounds(rdt, rb))
        } else {
            None
        };
        self.op_kinds.insert(OpKind::Arith);
        Ok(Node {
            expr: Expr::Arith {
                op,
                left: Box::new(l.expr),
                right: Box::new(r.expr),
            },
            ty: shaped(shape, dtype, b),
            rows,
            dataset,
            categories: None,
        })
    }

    fn compare(&mut self, op: CmpOp, left: &Expr, right: &Expr) -> Result<Node, CheckError> {
        let Operands {
            left: l,
            right: r,
            types: (ldt, rdt),
            shape,
            rows,
            dataset,
            ..
        } = self.operands(left, right, "comparison")?;
        comparable(ldt, rdt, op)?;
        for (col, lit) in [(&l, &r), (&r, &l)] {
            if let (
                Some(set),
                Expr::Literal {
                    value: Value::Str(s),
                },
            ) = (&col.categories, &lit.expr)
            {
                if !set.contains(s) {
                    return Err(CheckError::Invalid(format!(
                        "{s:?} is not in the column's public category set"
                    )));
                }
            }
        }
        self.op_kinds.insert(OpKind::Arith);
        Ok(Node {
            expr: Expr::Compare {
                op,
                left: Box::new(l.expr),
                right: Box::new(r.expr),
            },
            ty: shaped(shape, DataType::Bool, bounds(0.0, 1.0)),
            rows,
            dataset,
            categories: None,
        })
    }

    fn aggregate(&mut self, kind: AggKind, input: &Expr) -> Result<Node, CheckError> {
        let inp = self.visit(input)?;
        let name = kind.name();
        let (dtype, b) = match (kind, &inp.ty) {
            (AggKind::Count, Type::Table { max_rows, .. }) => {
                (DataType::I64, bounds(0.0, *max_rows as f64))
            }
            (AggKind::Count, Type::Column { max_len, .. }) => {
                (DataType::I64, bounds(0.0, *max_len as f64))
            }
            (AggKind::Count, _) => return Err(type_err("count needs a table or a column")),
            (
                _,
                Type::Column {
                    dtype,
                    bounds: b,
                    max_len,
                },
            ) if dtype.is_numeric() => agg_type(kind, *dtype, *b, *max_len as f64),
            (
                _,
                Type::Vector {
                    dtype,
                    len,
                    bounds: b,
                },
            ) if dtype.is_numeric() => agg_type(kind, *dtype, *b, *len as f64),
            _ => return Err(type_err(format!("{name} needs a numeric column or vector"))),
        };
        self.op_kinds.insert(kind.into());
        Ok(Node::plain(
            Expr::Aggregate {
                kind,
                input: Box::new(inp.expr),
            },
            Type::Scalar { dtype, bounds: b },
        ))
    }

    /// The input of a grouped aggregate `op` (`by_month`, `by_category`): a column of a dataset, numeric unless
    /// counted.
    fn grouped_input(
        &mut self,
        op: &str,
        kind: AggKind,
        input: &Expr,
    ) -> Result<GroupedInput, CheckError> {
        let inp = self.visit(input)?;
        let (
            Type::Column {
                dtype,
                bounds: b,
                max_len,
            },
            Some(dataset),
        ) = (&inp.ty, &inp.dataset)
        else {
            return Err(type_err(format!("{op} needs a column of a table")));
        };
        if kind != AggKind::Count && !dtype.is_numeric() {
            return Err(type_err(format!(
                "{op} {} needs a numeric column",
                kind.name()
            )));
        }
        let (dtype, bounds) = agg_type(kind, *dtype, *b, *max_len as f64);
        Ok(GroupedInput {
            dataset: dataset.clone(),
            node: inp,
            dtype,
            bounds,
        })
    }

    fn by_month(&mut self, kind: AggKind, input: &Expr) -> Result<Node, CheckError> {
        let GroupedInput {
            node: inp,
            dataset,
            dtype: dt,
            bounds: vb,
        } = self.grouped_input("by_month", kind, input)?;
        let dataset = &dataset;
        let meta = self.meta(dataset)?;
        let time = meta.time_column.as_deref().ok_or_else(|| {
            type_err(format!(
                "dataset `{dataset}` has no time column to group by month"
            ))
        })?;
        if meta.column(time).map(|c| c.dtype) != Some(DataType::Date) {
            return Err(CheckError::Invalid(format!(
                "the time column `{time}` of `{dataset}` is not a declared date column"
            )));
        }
        let window = meta.window.ok_or_else(|| {
            type_err(format!(
                "dataset `{dataset}` has no public time window to group by month"
            ))
        })?;
        let len = month_starts(window.start, window.end, self.limits.max_vector)
            .ok_or_else(|| {
                CheckError::Invalid(format!(
                    "the time window of `{dataset}` is empty or has more than {} months",
                    self.limits.max_vector
                ))
            })?
            .len();
        self.columns.insert((dataset.clone(), time.to_string()));
        self.op_kinds.insert(OpKind::ByMonth);
        self.op_kinds.insert(kind.into());
        Ok(Node::plain(
            Expr::ByMonth {
                kind,
                input: Box::new(inp.expr),
            },
            Type::Vector {
                dtype: dt,
                len,
                bounds: vb,
            },
        ))
    }

    /// `by_category(kind, input, column)`: one entry per category of `column`'s declared (public) set, never
    /// the categories seen in the data; refused when `column` is not a category column of the input's dataset
    /// or declares no set.
    fn by_category(
        &mut self,
        kind: AggKind,
        input: &Expr,
        column: &str,
    ) -> Result<Node, CheckError> {
        let GroupedInput {
            node: inp,
            dataset,
            dtype: dt,
            bounds: vb,
        } = self.grouped_input("by_category", kind, input)?;
        let dataset = &dataset;
        let meta = self.meta(dataset)?;
        let cmeta = meta
            .column(column)
            .ok_or_else(|| CheckError::UnknownColumn {
                dataset: dataset.clone(),
                column: column.to_string(),
            })?;
        if cmeta.dtype != DataType::Category {
            return Err(type_err(format!(
                "by_category groups by a category column; `{dataset}.{column}` is {}",
                cmeta.dtype
            )));
        }
        let len = match &cmeta.categories {
            Some(set) if !set.is_empty() => set.len(),
            _ => {
                return Err(CheckError::Invalid(format!(
                    "`{dataset}.{column}` declares no category set; by_category groups only by a public set \
                     (list it as `categories` in the dataset's metadata)"
                )))
            }
        };
        self.list_len(len, "the category set")?;
        self.columns.insert((dataset.clone(), column.to_string()));
        self.op_kinds.insert(OpKind::ByCategory);
        self.op_kinds.insert(kind.into());
        Ok(Node::plain(
            Expr::ByCategory {
                kind,
                input: Box::new(inp.expr),
                column: column.to_string(),
            },
            Type::Vector {
                dtype: dt,
                len,
                bounds: vb,
            },
        ))
    }

    fn dot(&mut self, input: &Expr, weights: &[f64]) -> Result<Node, CheckError> {
        self.list_len(weights.len(), "the weight list")?;
        for w in weights {
            finite(*w, "a weight")?;
        }
        let inp = self.visit(input)?;
        let Type::Vector {
            dtype,
            len,
            bounds: b,
        } = &inp.ty
        else {
            return Err(type_err("dot needs a vector"));
        };
        if !dtype.is_numeric() {
            return Err(type_err(format!("dot is not defined on {dtype} vectors")));
        }
        if weights.len() != *len {
            return Err(CheckError::Invalid(format!(
                "dot has {} weights for a vector of length {len}",
                weights.len()
            )));
        }
        let out = numeric_bounds(*dtype, *b).and_then(|b| {
            let (lo, hi) = weights.iter().fold((0.0, 0.0), |(lo, hi), w| {
                let (x, y) = (w * b.lo, w * b.hi);
                (lo + x.min(y), hi + x.max(y))
            });
            bounds(lo, hi)
        });
        self.op_kinds.insert(OpKind::Dot);
        Ok(Node::plain(
            Expr::Dot {
                input: Box::new(inp.expr),
                weights: weights.to_vec(),
            },
            Type::Scalar {
                dtype: DataType::F64,
                bounds: out,
            },
        ))
    }

    fn catalogue(&mut self, name: &str, window_end: Option<NaiveDate>) -> Result<Node, CheckError> {
        let entry =
            catalogue::entry(name).ok_or_else(|| CheckError::UnknownAttribute(name.to_string()))?;
        for (dataset, column) in entry.inputs {
            let meta = self.meta(dataset)?;
            if meta.column(column).is_none() {
                return Err(CheckError::UnknownColumn {
                    dataset: dataset.to_string(),
                    column: column.to_string(),
                });
            }
        }
        let end = match window_end {
            None => self.last_full,
            Some(d) if !is_month_end(d) => {
                return Err(CheckError::Invalid(format!(
                    "the window of `{name}` must end on the last day of a month, not {d}"
                )))
            }
            Some(d) if d > self.last_full => {
                return Err(CheckError::Invalid(format!(
                    "the window of `{name}` ends {d}, after the last full month (ending {})",
                    self.last_full
                )))
            }
            Some(d) => d,
        };
        for (dataset, column) in entry.inputs {
            self.datasets.insert(dataset.to_string());
            self.columns
                .insert((dataset.to_string(), column.to_string()));
        }
        self.catalogue.push(CatalogueUse {
            name: name.to_string(),
            window_end: end,
            latest: end == self.last_full,
        });
        self.op_kinds.insert(OpKind::Catalogue);
        Ok(Node::plain(
            Expr::Catalogue {
                name: name.to_string(),
                window_end: Some(end),
            },
            Type::Scalar {
                dtype: entry.output,
                bounds: Some(entry.bounds),
            },
        ))
    }

    /// The type of a column a predicate reads (recording the read).
    fn pred_column(&mut self, t: &TableCtx<'_>, name: &str) -> Result<DataType, CheckError> {
        let dtype = find_column(t.columns, name).ok_or_else(|| CheckError::UnknownColumn {
            dataset: t.dataset.to_string(),
            column: name.to_string(),
        })?;
        self.columns
            .insert((t.dataset.to_string(), name.to_string()));
        Ok(dtype)
    }

    fn pred(&mut self, p: &Pred, t: &TableCtx<'_>) -> Result<Pred, CheckError> {
        match p {
            Pred::Compare { column, op, value } => {
                let dtype = self.pred_column(t, column)?;
                let fits = match value {
                    Value::Null => {
                        if is_order(*op) {
                            return Err(CheckError::Invalid(
                                "only == and != compare with null".into(),
                            ));
                        }
                        true
                    }
                    Value::Int(_) => {
                        matches!(dtype, DataType::I64 | DataType::Money | DataType::F64)
                    }
                    Value::Float(f) => {
                        finite(*f, "a literal")?;
                        matches!(dtype, DataType::I64 | DataType::Money | DataType::F64)
                    }
                    Value::Date(_) => dtype == DataType::Date,
                    Value::Bool(_) => dtype == DataType::Bool,
                    Value::Str(s) => {
                        if dtype == DataType::Category {
                            let set = t.meta.column(column).and_then(|c| c.categories.as_ref());
                            if set.is_some_and(|set| !set.contains(s)) {
                                return Err(CheckError::Invalid(format!(
                                    "{s:?} is not in the public category set of `{}.{column}`",
                                    t.dataset
                                )));
                            }
                        }
                        dtype == DataType::Category
                    }
                };
                if !fits {
                    return Err(type_err(format!(
                        "cannot compare {dtype} column `{column}` with {value}"
                    )));
                }
                if is_order(*op) && matches!(dtype, DataType::Category | DataType::Bool) {
                    return Err(type_err(format!(
                        "order comparisons are not defined on {dtype} column `{column}`"
                    )));
                }
                Ok(p.clone())
            }
            Pred::CompareColumns { left, op, right } => {
                let a = self.pred_column(t, left)?;
                let b = self.pred_column(t, right)?;
                comparable(a, b, *op)?;
                Ok(p.clone())
            }
            Pred::Between { column, from, to } => {
                if self.pred_column(t, column)? != DataType::Date {
                    return Err(type_err(format!(
                        "a date range needs a date column; `{column}` is not one"
                    )));
                }
                if from > to {
                    return Err(CheckError::Invalid(format!(
                        "the date range starts {from}, after it ends ({to})"
                    )));
                }
                Ok(p.clone())
            }
            Pred::LastMonths { months, column } => {
                if !(1..=120).contains(months) {
                    return Err(CheckError::Invalid(format!(
                        "last_months takes 1 to 120 months, not {months}"
                    )));
                }
                let column = match column {
                    Some(c) => c.clone(),
                    None => t.meta.time_column.clone().ok_or_else(|| {
                        CheckError::Invalid(format!(
                            "dataset `{}` has no time column; name the date column",
                            t.dataset
                        ))
                    })?,
                };
                if self.pred_column(t, &column)? != DataType::Date {
                    return Err(type_err(format!(
                        "last_months needs a date column; `{column}` is not one"
                    )));
                }
                let from = months_before(self.last_full, months - 1).ok_or_else(|| {
                    CheckError::Invalid(format!(
                        "{months} months before {} is out of range",
                        self.last_full
                    ))
                })?;
                Ok(Pred::Between {
                    column,
                    from,
                    to: self.last_full,
                })
            }
            Pred::And(a, b) => Ok(Pred::And(
                Box::new(self.pred(a, t)?),
                Box::new(self.pred(b, t)?),
            )),
            Pred::Or(a, b) => Ok(Pred::Or(
                Box::new(self.pred(a, t)?),
                Box::new(self.pred(b, t)?),
            )),
            Pred::Not(a) => Ok(Pred::Not(Box::new(self.pred(a, t)?))),
        }
    }
}

fn find_column(columns: &[(String, DataType)], name: &str) -> Option<DataType> {
    columns.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
}

/// Element type and bounds of a numeric column.
fn numeric_column(ty: &Type, what: &str) -> Result<(DataType, Option<Bounds>), CheckError> {
    match ty {
        Type::Column { dtype, bounds, .. } if dtype.is_numeric() => Ok((*dtype, *bounds)),
        _ => Err(type_err(format!("{what} needs a numeric column"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{ColumnMeta, PrivacyUnit};
    use crate::testkit::*;

    fn cm(
        name: &str,
        dtype: DataType,
        bounds: Option<[f64; 2]>,
        cats: Option<&[&str]>,
    ) -> ColumnMeta {
        ColumnMeta {
            name: name.into(),
            dtype,
            description: String::new(),
            unit: None,
            bounds: bounds.map(Bounds::from),
            categories: cats.map(|c| c.iter().map(|s| s.to_string()).collect()),
            nullable: false,
        }
    }

    fn metas() -> BTreeMap<String, DatasetMeta> {
        let window = Some(TimeWindow {
            start: d("2024-11-01"),
            end: d("2026-10-31"),
        });
        let rent = DatasetMeta {
            name: "rent".into(),
            description: String::new(),
            tags: vec!["housing".into()],
            privacy_unit: PrivacyUnit::Event,
            time_column: Some("due_date".into()),
            window,
            max_rows: 24,
            max_rows_per_month: None,
            columns: vec![
                cm("due_date", DataType::Date, None, None),
                cm("paid_date", DataType::Date, None, None),
                cm("amount", DataType::Money, Some([0.0, 1_000_000.0]), None),
            ],
        };
        let tx = DatasetMeta {
            name: "transactions".into(),
            description: String::new(),
            tags: vec!["bank".into()],
            privacy_unit: PrivacyUnit::Event,
            time_column: Some("date".into()),
            window,
            max_rows: 5000,
            max_rows_per_month: None,
            columns: vec![
                cm("date", DataType::Date, None, None),
                cm(
                    "amount",
                    DataType::Money,
                    Some([-1_000_000.0, 1_000_000.0]),
                    None,
                ),
                cm(
                    "category",
                    DataType::Category,
                    None,
                    Some(&["income", "rent", "nsf_fee", "overdraft_fee"]),
                ),
                cm("score", DataType::F64, Some([0.0, 1.0]), None),
                cm("flag", DataType::Bool, None, None),
                cm("n", DataType::I64, Some([0.0, 10.0]), None),
            ],
        };
        // A dataset without a time column or window.
        let plain = DatasetMeta {
            name: "plain".into(),
            description: String::new(),
            tags: vec![],
            privacy_unit: PrivacyUnit::Dataset,
            time_column: None,
            window: None,
            max_rows: 10,
            max_rows_per_month: None,
            columns: vec![
                cm("x", DataType::I64, Some([0.0, 5.0]), None),
                cm("when", DataType::Date, None, None),
            ],
        };
        [rent, tx, plain]
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect()
    }

    fn run(e: &Expr) -> Result<Checked, CheckError> {
        let m = metas();
        let ctx = CheckContext {
            metas: &m,
            today: d("2026-03-15"),
            limits: Limits::default(),
        };
        check(e, &ctx)
    }

    fn clamp(e: Expr, lo: f64, hi: f64) -> Expr {
        Expr::Clamp {
            input: Box::new(e),
            lo,
            hi,
        }
    }
    fn catalogue_expr(name: &str, end: Option<&str>) -> Expr {
        Expr::Catalogue {
            name: name.into(),
            window_end: end.map(d),
        }
    }
    fn scalar_bounds(c: &Checked) -> Option<Bounds> {
        match &c.ty {
            Type::Scalar { bounds, .. } => *bounds,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    /// A batch is checked question by question; its facts are their union, each question's are kept, and it
    /// is refused nested, inside an expression, empty, too long, or with a question that does not check (the
    /// error names the question).
    #[test]
    fn a_batch_checks_each_question_and_unions_their_facts() {
        let p = |src: &str| crate::parse::parse_expr(src).unwrap();
        let c = run(&p(
            "batch(count(rent), mean(clamp(plain.x, 0, 5)), select(rent, amount))",
        ))
        .unwrap();
        assert_eq!(c.items.len(), 3);
        assert_eq!(c.datasets, ["plain".to_string(), "rent".to_string()].into());
        assert!(c.op_kinds.contains(&OpKind::Count) && c.op_kinds.contains(&OpKind::Mean));
        assert!(c.op_kinds.contains(&OpKind::Select));
        assert!(
            c.ty.is_row_level(),
            "one row-level question makes the batch row-level"
        );
        assert!(!c.catalogue_only);
        let Type::Batch { items } = &c.ty else {
            panic!("{:?}", c.ty)
        };
        assert_eq!(items.len(), 3);
        assert_eq!(c.items[1].datasets, ["plain".to_string()].into());
        let aggregates = run(&p("batch(count(rent), count(plain))")).unwrap();
        assert!(!aggregates.ty.is_row_level());
        // A batch's own question is checked as if asked alone.
        assert_eq!(aggregates.items[0], run(&p("count(rent)")).unwrap());

        let nested = Expr::Batch {
            items: vec![p("count(rent)"), p("batch(count(rent))")],
        };
        assert!(matches!(run(&nested), Err(CheckError::Invalid(m)) if m.contains("another batch")));
        let inside = Expr::Arith {
            op: crate::expr::ArithOp::Add,
            left: Box::new(p("count(rent)")),
            right: Box::new(p("batch(count(rent))")),
        };
        assert!(
            matches!(run(&inside), Err(CheckError::Invalid(m)) if m.contains("whole of a request"))
        );
        assert!(run(&Expr::Batch { items: vec![] }).is_err());
        let long = Expr::Batch {
            items: vec![p("count(rent)"); crate::expr::MAX_BATCH + 1],
        };
        assert!(matches!(run(&long), Err(CheckError::Invalid(m)) if m.contains("at most 32")));
        let bad = run(&p("batch(count(rent), mean(rent))")).unwrap_err();
        assert!(bad.to_string().contains("question 2 of the batch"), "{bad}");
    }

    #[test]
    fn calendar_helpers() {
        assert_eq!(last_full_month_end(d("2026-03-15")), d("2026-02-28"));
        assert_eq!(last_full_month_end(d("2024-03-01")), d("2024-02-29"));
        assert_eq!(last_full_month_end(d("2026-01-31")), d("2025-12-31"));
        assert!(is_month_end(d("2024-02-29")));
        assert!(!is_month_end(d("2025-02-27")));
        assert_eq!(month_end(d("2025-04-10")), d("2025-04-30"));
        assert_eq!(months_before(d("2026-02-28"), 11), Some(d("2025-03-01")));
        assert_eq!(month_label(d("2025-04-10")), "2025-04");
        let m = month_starts(d("2024-11-15"), d("2025-02-01"), 100).unwrap();
        assert_eq!(
            m,
            vec![
                d("2024-11-01"),
                d("2024-12-01"),
                d("2025-01-01"),
                d("2025-02-01")
            ]
        );
        assert_eq!(month_starts(d("2025-01-01"), d("2024-01-01"), 100), None);
        assert_eq!(month_starts(d("2020-01-01"), d("2025-01-01"), 12), None);
    }

    #[test]
    fn unknown_names() {
        assert_eq!(
            run(&agg(AggKind::Count, ds("payroll"))),
            Err(CheckError::UnknownDataset("payroll".into()))
        );
        assert_eq!(
            run(&col(ds("rent"), "landlord")),
            Err(CheckError::UnknownColumn {
                dataset: "rent".into(),
                column: "landlord".into()
            })
        );
        assert_eq!(
            run(&filter(ds("rent"), cat_is("landlord", "x"))),
            Err(CheckError::UnknownColumn {
                dataset: "rent".into(),
                column: "landlord".into()
            })
        );
        assert_eq!(
            run(&catalogue_expr("credit_score", None)),
            Err(CheckError::UnknownAttribute("credit_score".into()))
        );
        // The attribute exists but its input dataset is not published.
        assert_eq!(
            run(&catalogue_expr("utility_on_time_ratio_12m", None)),
            Err(CheckError::UnknownDataset("utilities".into()))
        );
        // A column dropped by select is gone.
        let sel = Expr::Select {
            input: Box::new(ds("rent")),
            columns: vec!["amount".into()],
        };
        assert!(matches!(
            run(&col(sel, "due_date")),
            Err(CheckError::UnknownColumn { .. })
        ));
    }

    #[test]
    fn categories_must_be_in_the_public_set() {
        let ok = filter(ds("transactions"), cat_is("category", "income"));
        assert!(run(&agg(AggKind::Count, ok)).is_ok());
        let bad = filter(ds("transactions"), cat_is("category", "casino"));
        assert!(matches!(
            run(&agg(AggKind::Count, bad)),
            Err(CheckError::Invalid(_))
        ));
        // Expression form too.
        let cmp = Expr::Compare {
            op: CmpOp::Eq,
            left: Box::new(col(ds("transactions"), "category")),
            right: Box::new(lit(Value::Str("casino".into()))),
        };
        assert!(matches!(run(&cmp), Err(CheckError::Invalid(_))));
        // Order comparisons on categories are not allowed.
        let order = filter(
            ds("transactions"),
            Pred::Compare {
                column: "category".into(),
                op: CmpOp::Lt,
                value: Value::Str("income".into()),
            },
        );
        assert!(matches!(run(&order), Err(CheckError::Type(_))));
    }

    #[test]
    fn literal_types_must_fit_the_column() {
        let pred = |column: &str, op: CmpOp, value: Value| {
            run(&filter(
                ds("transactions"),
                Pred::Compare {
                    column: column.into(),
                    op,
                    value,
                },
            ))
        };
        assert!(pred("amount", CmpOp::Gt, Value::Int(100)).is_ok());
        assert!(pred("amount", CmpOp::Gt, Value::Float(10.5)).is_ok());
        assert!(pred("score", CmpOp::Le, Value::Int(1)).is_ok());
        assert!(pred("date", CmpOp::Ge, Value::Date(d("2025-01-01"))).is_ok());
        assert!(pred("flag", CmpOp::Eq, Value::Bool(true)).is_ok());
        assert!(pred("amount", CmpOp::Eq, Value::Null).is_ok());
        assert!(matches!(
            pred("amount", CmpOp::Lt, Value::Null),
            Err(CheckError::Invalid(_))
        ));
        assert!(matches!(
            pred("date", CmpOp::Gt, Value::Int(3)),
            Err(CheckError::Type(_))
        ));
        assert!(matches!(
            pred("amount", CmpOp::Gt, Value::Str("x".into())),
            Err(CheckError::Type(_))
        ));
        assert!(matches!(
            pred("flag", CmpOp::Gt, Value::Bool(false)),
            Err(CheckError::Type(_))
        ));
        assert!(matches!(
            pred("amount", CmpOp::Gt, Value::Float(f64::NAN)),
            Err(CheckError::Invalid(_))
        ));
        // Column against column.
        let cols = |l: &str, op: CmpOp, r: &str| {
            run(&filter(
                ds("transactions"),
                Pred::CompareColumns {
                    left: l.into(),
                    op,
                    right: r.into(),
                },
            ))
        };
        assert!(cols("amount", CmpOp::Lt, "n").is_ok());
        assert!(matches!(
            cols("amount", CmpOp::Lt, "date"),
            Err(CheckError::Type(_))
        ));
        // Date ranges.
        let between = |from: &str, to: &str, column: &str| {
            run(&filter(
                ds("rent"),
                Pred::Between {
                    column: column.into(),
                    from: d(from),
                    to: d(to),
                },
            ))
        };
        assert!(between("2025-01-01", "2025-01-01", "due_date").is_ok());
        assert!(matches!(
            between("2025-02-01", "2025-01-01", "due_date"),
            Err(CheckError::Invalid(_))
        ));
        assert!(matches!(
            between("2025-01-01", "2025-02-01", "amount"),
            Err(CheckError::Type(_))
        ));
    }

    #[test]
    fn last_months_resolves_to_concrete_dates() {
        // today 2026-03-15: last full month is February 2026.
        let e = agg(
            AggKind::Count,
            filter(
                ds("rent"),
                Pred::LastMonths {
                    months: 12,
                    column: None,
                },
            ),
        );
        let c = run(&e).unwrap();
        let want = agg(
            AggKind::Count,
            filter(
                ds("rent"),
                Pred::Between {
                    column: "due_date".into(),
                    from: d("2025-03-01"),
                    to: d("2026-02-28"),
                },
            ),
        );
        assert_eq!(c.expr, want);
        assert!(c.columns.contains(&("rent".into(), "due_date".into())));
        // One month, named column.
        let e = filter(
            ds("rent"),
            Pred::LastMonths {
                months: 1,
                column: Some("paid_date".into()),
            },
        );
        let Expr::Filter { pred, .. } = run(&e).unwrap().expr else {
            panic!("not a filter")
        };
        assert_eq!(
            pred,
            Pred::Between {
                column: "paid_date".into(),
                from: d("2026-02-01"),
                to: d("2026-02-28"),
            }
        );
        for months in [0, 121] {
            let e = filter(
                ds("rent"),
                Pred::LastMonths {
                    months,
                    column: None,
                },
            );
            assert!(matches!(run(&e), Err(CheckError::Invalid(_))), "{months}");
        }
        // No time column and none named.
        let e = filter(
            ds("plain"),
            Pred::LastMonths {
                months: 3,
                column: None,
            },
        );
        assert!(matches!(run(&e), Err(CheckError::Invalid(_))));
        // Nested inside Not / And, also resolved.
        let e = filter(
            ds("plain"),
            Pred::Not(Box::new(Pred::And(
                Box::new(Pred::LastMonths {
                    months: 2,
                    column: Some("when".into()),
                }),
                Box::new(Pred::Compare {
                    column: "x".into(),
                    op: CmpOp::Gt,
                    value: Value::Int(1),
                }),
            ))),
        );
        let Expr::Filter { pred, .. } = run(&e).unwrap().expr else {
            panic!("not a filter")
        };
        let Pred::Not(inner) = pred else { panic!() };
        let Pred::And(a, _) = *inner else { panic!() };
        assert_eq!(
            *a,
            Pred::Between {
                column: "when".into(),
                from: d("2026-01-01"),
                to: d("2026-02-28"),
            }
        );
    }

    #[test]
    fn columns_from_different_rows_do_not_mix() {
        let all = ds("transactions");
        let income = filter(ds("transactions"), cat_is("category", "income"));
        let e = arith(
            ArithOp::Sub,
            col(all.clone(), "amount"),
            col(income.clone(), "amount"),
        );
        let err = run(&e).unwrap_err();
        assert!(
            matches!(&err, CheckError::Type(m) if m.contains("different rows")),
            "{err}"
        );
        // Same table expression: fine, and a column with a scalar too.
        let e = arith(
            ArithOp::Sub,
            col(income.clone(), "amount"),
            col(income.clone(), "n"),
        );
        let c = run(&e).unwrap();
        assert_eq!(
            c.ty,
            Type::Column {
                dtype: DataType::Money,
                bounds: Some(Bounds {
                    lo: -1_000_010.0,
                    hi: 1_000_000.0
                }),
                max_len: 5000
            }
        );
        let e = arith(
            ArithOp::Sub,
            col(all.clone(), "amount"),
            agg(AggKind::Mean, col(income.clone(), "amount")),
        );
        assert!(run(&e).is_ok());
        // Comparisons follow the same rule.
        let e = Expr::Compare {
            op: CmpOp::Lt,
            left: Box::new(col(all, "amount")),
            right: Box::new(col(income, "amount")),
        };
        assert!(matches!(run(&e), Err(CheckError::Type(_))));
    }

    #[test]
    fn arithmetic_types() {
        let rent = ds("rent");
        let ty = |e: Expr| run(&e).map(|c| c.ty);
        // date - date: days.
        assert!(matches!(
            ty(arith(
                ArithOp::Sub,
                col(rent.clone(), "paid_date"),
                col(rent.clone(), "due_date")
            )),
            Ok(Type::Column {
                dtype: DataType::I64,
                ..
            })
        ));
        assert!(matches!(
            ty(arith(
                ArithOp::Add,
                col(rent.clone(), "paid_date"),
                col(rent.clone(), "due_date")
            )),
            Err(CheckError::Type(_))
        ));
        // money / number is a float without bounds; money * 2 stays money with doubled bounds.
        assert_eq!(
            ty(arith(
                ArithOp::Div,
                col(rent.clone(), "amount"),
                lit(Value::Int(100))
            ))
            .unwrap(),
            Type::Column {
                dtype: DataType::F64,
                bounds: None,
                max_len: 24
            }
        );
        assert_eq!(
            ty(arith(
                ArithOp::Mul,
                col(rent.clone(), "amount"),
                lit(Value::Int(2))
            ))
            .unwrap(),
            Type::Column {
                dtype: DataType::Money,
                bounds: Some(Bounds {
                    lo: 0.0,
                    hi: 2_000_000.0
                }),
                max_len: 24
            }
        );
        assert_eq!(
            ty(arith(
                ArithOp::Add,
                lit(Value::Int(2)),
                lit(Value::Float(0.5))
            ))
            .unwrap(),
            Type::Scalar {
                dtype: DataType::F64,
                bounds: Some(Bounds { lo: 2.5, hi: 2.5 })
            }
        );
        assert!(matches!(
            ty(arith(
                ArithOp::Add,
                col(ds("transactions"), "category"),
                lit(Value::Int(1))
            )),
            Err(CheckError::Type(_))
        ));
        assert!(matches!(
            ty(arith(ArithOp::Add, ds("rent"), lit(Value::Int(1)))),
            Err(CheckError::Type(_))
        ));
        assert!(matches!(ty(lit(Value::Null)), Err(CheckError::Invalid(_))));
    }

    #[test]
    fn clamp_rules_and_bounds() {
        let amount = col(ds("transactions"), "amount");
        // Bounds are intersected and the resolved clamp uses them.
        let c = run(&clamp(amount.clone(), 0.0, 5_000_000.0)).unwrap();
        assert_eq!(c.expr, clamp(amount.clone(), 0.0, 1_000_000.0));
        assert_eq!(
            c.ty,
            Type::Column {
                dtype: DataType::Money,
                bounds: Some(Bounds {
                    lo: 0.0,
                    hi: 1_000_000.0
                }),
                max_len: 5000
            }
        );
        assert!(c.op_kinds.contains(&OpKind::Clamp));
        assert!(matches!(
            run(&clamp(amount.clone(), 5.0, 1.0)),
            Err(CheckError::Invalid(_))
        ));
        assert!(matches!(
            run(&clamp(amount.clone(), 0.2, 0.8)),
            Err(CheckError::Invalid(_))
        ));
        assert!(matches!(
            run(&clamp(amount.clone(), f64::NAN, 1.0)),
            Err(CheckError::Invalid(_))
        ));
        assert!(matches!(
            run(&clamp(amount, 0.0, f64::INFINITY)),
            Err(CheckError::Invalid(_))
        ));
        for c in ["date", "category", "flag"] {
            assert!(
                matches!(
                    run(&clamp(col(ds("transactions"), c), 0.0, 1.0)),
                    Err(CheckError::Type(_))
                ),
                "{c}"
            );
        }
        assert!(matches!(
            run(&clamp(ds("rent"), 0.0, 1.0)),
            Err(CheckError::Type(_))
        ));
        // Post-processing a catalogue attribute is allowed.
        let c = run(&clamp(
            catalogue_expr("rent_on_time_ratio_12m", None),
            0.5,
            2.0,
        ))
        .unwrap();
        assert_eq!(scalar_bounds(&c), Some(Bounds { lo: 0.5, hi: 1.0 }));
        assert!(!c.catalogue_only);
    }

    #[test]
    fn parameters_must_be_finite_and_lists_short() {
        let score = col(ds("transactions"), "score");
        let q = |q: f64| {
            run(&Expr::Quantile {
                input: Box::new(score.clone()),
                q,
            })
        };
        assert!(q(0.5).is_ok());
        assert!(matches!(q(f64::NAN), Err(CheckError::Invalid(_))));
        assert!(matches!(q(1.5), Err(CheckError::Invalid(_))));
        let h = |edges: Vec<f64>| {
            run(&Expr::Histogram {
                input: Box::new(score.clone()),
                edges,
            })
        };
        assert_eq!(
            h(vec![0.0, 0.5, 1.0]).unwrap().ty,
            Type::Histogram {
                edges: vec![0.0, 0.5, 1.0]
            }
        );
        assert!(matches!(h(vec![0.0]), Err(CheckError::Invalid(_))));
        assert!(matches!(
            h(vec![0.0, 0.0, 1.0]),
            Err(CheckError::Invalid(_))
        ));
        assert!(matches!(
            h(vec![0.0, f64::NAN]),
            Err(CheckError::Invalid(_))
        ));
        let long: Vec<f64> = (0..2000).map(f64::from).collect();
        assert!(matches!(h(long), Err(CheckError::Invalid(_))));
        assert!(matches!(
            run(&lit(Value::Float(f64::INFINITY))),
            Err(CheckError::Invalid(_))
        ));
    }

    #[test]
    fn node_quota_and_pointers() {
        let mut e = col(ds("transactions"), "amount");
        for _ in 0..70 {
            e = clamp(e, 0.0, 10.0);
        }
        let nodes = e.node_count();
        assert_eq!(run(&e), Err(CheckError::TooLarge { nodes, limit: 64 }));
        assert_eq!(
            run(&agg(AggKind::Sum, col(Expr::Ptr { id: 7 }, "amount"))),
            Err(CheckError::UnresolvedPointer(7))
        );
        let dup = Expr::Select {
            input: Box::new(ds("rent")),
            columns: vec!["amount".into(), "amount".into()],
        };
        assert!(matches!(run(&dup), Err(CheckError::Invalid(_))));
    }

    #[test]
    fn aggregate_types_and_bounds() {
        let rent = ds("rent");
        let c = run(&agg(AggKind::Count, rent.clone())).unwrap();
        assert_eq!(
            c.ty,
            Type::Scalar {
                dtype: DataType::I64,
                bounds: Some(Bounds { lo: 0.0, hi: 24.0 })
            }
        );
        let c = run(&agg(AggKind::Sum, col(rent.clone(), "amount"))).unwrap();
        assert_eq!(
            c.ty,
            Type::Scalar {
                dtype: DataType::Money,
                bounds: Some(Bounds {
                    lo: 0.0,
                    hi: 24_000_000.0
                })
            }
        );
        // A mean of money is money (so it is shown in dollars), with the column's bounds.
        let c = run(&agg(AggKind::Mean, col(rent.clone(), "amount"))).unwrap();
        assert!(
            matches!(
                c.ty,
                Type::Scalar {
                    dtype: DataType::Money,
                    ..
                }
            ),
            "{:?}",
            c.ty
        );
        let c = run(&agg(AggKind::Variance, col(ds("transactions"), "n"))).unwrap();
        assert_eq!(scalar_bounds(&c), Some(Bounds { lo: 0.0, hi: 25.0 }));
        let c = run(&agg(AggKind::Mean, col(ds("transactions"), "flag"))).unwrap();
        assert_eq!(scalar_bounds(&c), Some(Bounds { lo: 0.0, hi: 1.0 }));
        assert!(matches!(
            run(&agg(AggKind::Sum, col(rent.clone(), "due_date"))),
            Err(CheckError::Type(_))
        ));
        assert!(matches!(
            run(&agg(AggKind::Sum, rent.clone())),
            Err(CheckError::Type(_))
        ));
        // Count of a date column is fine.
        assert!(run(&agg(AggKind::Count, col(rent, "due_date"))).is_ok());
    }

    /// `by_category` has one entry per declared category (whatever the rows), the sum's bounds, reads the
    /// grouping column, and is refused over a column that is not a category column, declares no set, or is
    /// missing.
    #[test]
    fn by_category_over_the_declared_set() {
        let by = |kind, input: Expr, column: &str| Expr::ByCategory {
            kind,
            input: Box::new(input),
            column: column.into(),
        };
        let bc = by(
            AggKind::Sum,
            clamp(col(ds("transactions"), "amount"), -100.0, 0.0),
            "category",
        );
        let c = run(&bc).unwrap();
        assert_eq!(
            c.ty,
            Type::Vector {
                dtype: DataType::Money,
                len: 4,
                bounds: Some(Bounds {
                    lo: -500_000.0,
                    hi: 0.0
                })
            }
        );
        assert!(c.op_kinds.contains(&OpKind::ByCategory));
        assert!(c.op_kinds.contains(&OpKind::Sum));
        assert!(c
            .columns
            .contains(&("transactions".into(), "category".into())));
        // Over a filtered table, and a count of any column.
        let filtered = Expr::Filter {
            input: Box::new(ds("transactions")),
            pred: Pred::Compare {
                column: "amount".into(),
                op: CmpOp::Lt,
                value: Value::Int(0),
            },
        };
        assert!(run(&by(AggKind::Count, col(filtered, "date"), "category")).is_ok());
        // A sum of dates, a non-category column, a missing column, a table.
        let err = |e: &Expr| run(e).unwrap_err().to_string();
        assert!(err(&by(
            AggKind::Sum,
            col(ds("transactions"), "date"),
            "category"
        ))
        .contains("numeric"));
        assert!(err(&by(
            AggKind::Count,
            col(ds("transactions"), "amount"),
            "amount"
        ))
        .contains("groups by a category column; `transactions.amount` is money"));
        assert!(err(&by(
            AggKind::Count,
            col(ds("transactions"), "amount"),
            "nope"
        ))
        .contains("no column `nope`"));
        assert!(err(&by(AggKind::Count, ds("transactions"), "category")).contains("needs a column"));
        // A category column with no declared set.
        let mut m = metas();
        if let Some(t) = m.get_mut("transactions") {
            t.columns
                .push(cm("merchant", DataType::Category, None, None));
        }
        let ctx = CheckContext {
            metas: &m,
            today: d("2026-03-15"),
            limits: Limits::default(),
        };
        let e = check(
            &by(
                AggKind::Count,
                col(ds("transactions"), "amount"),
                "merchant",
            ),
            &ctx,
        )
        .unwrap_err();
        assert!(e.to_string().contains("declares no category set"), "{e}");
    }

    #[test]
    fn by_month_and_dot() {
        // Window 2024-11 .. 2026-10: 24 months.
        let bm = Expr::ByMonth {
            kind: AggKind::Sum,
            input: Box::new(col(ds("rent"), "amount")),
        };
        let c = run(&bm).unwrap();
        assert_eq!(
            c.ty,
            Type::Vector {
                dtype: DataType::Money,
                len: 24,
                bounds: Some(Bounds {
                    lo: 0.0,
                    hi: 24_000_000.0
                })
            }
        );
        assert!(c.op_kinds.contains(&OpKind::ByMonth));
        assert!(c.op_kinds.contains(&OpKind::Sum));
        // Reads the time column.
        assert!(c.columns.contains(&("rent".into(), "due_date".into())));
        // No time column.
        let bad = Expr::ByMonth {
            kind: AggKind::Count,
            input: Box::new(col(ds("plain"), "x")),
        };
        assert!(matches!(run(&bad), Err(CheckError::Type(_))));
        let dot = |weights: Vec<f64>| {
            run(&Expr::Dot {
                input: Box::new(bm.clone()),
                weights,
            })
        };
        let c = dot(vec![1.0; 24]).unwrap();
        assert_eq!(
            scalar_bounds(&c),
            Some(Bounds {
                lo: 0.0,
                hi: 24.0 * 24_000_000.0
            })
        );
        assert!(matches!(dot(vec![1.0; 23]), Err(CheckError::Invalid(_))));
        assert!(matches!(
            dot({
                let mut w = vec![1.0; 24];
                w[3] = f64::NAN;
                w
            }),
            Err(CheckError::Invalid(_))
        ));
        // Dot needs a vector.
        let e = Expr::Dot {
            input: Box::new(col(ds("rent"), "amount")),
            weights: vec![1.0],
        };
        assert!(matches!(run(&e), Err(CheckError::Type(_))));
    }

    #[test]
    fn catalogue_windows() {
        let c = run(&catalogue_expr("rent_on_time_ratio_12m", None)).unwrap();
        assert_eq!(
            c.expr,
            catalogue_expr("rent_on_time_ratio_12m", Some("2026-02-28"))
        );
        assert_eq!(
            c.catalogue,
            vec![CatalogueUse {
                name: "rent_on_time_ratio_12m".into(),
                window_end: d("2026-02-28"),
                latest: true
            }]
        );
        assert!(c.catalogue_only);
        assert_eq!(scalar_bounds(&c), Some(Bounds { lo: 0.0, hi: 1.0 }));
        assert_eq!(
            c.columns,
            [("rent", "due_date"), ("rent", "paid_date")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        );
        assert_eq!(c.datasets, ["rent".to_string()].into_iter().collect());
        assert_eq!(c.op_kinds, [OpKind::Catalogue].into_iter().collect());
        // An earlier month end is allowed but not the latest.
        let c = run(&catalogue_expr(
            "rent_on_time_ratio_12m",
            Some("2025-12-31"),
        ))
        .unwrap();
        assert!(!c.catalogue[0].latest);
        // Not a month end; the current (unfinished) month.
        for end in ["2026-01-30", "2026-03-31", "2026-02-27"] {
            assert!(
                matches!(
                    run(&catalogue_expr("rent_on_time_ratio_12m", Some(end))),
                    Err(CheckError::Invalid(_))
                ),
                "{end}"
            );
        }
    }

    #[test]
    fn checked_facts() {
        // mean(clamp(amount of transactions where category == "income" over the last 3 months)) -
        //     nsf count
        let income = filter(
            ds("transactions"),
            Pred::And(
                Box::new(cat_is("category", "income")),
                Box::new(Pred::LastMonths {
                    months: 3,
                    column: None,
                }),
            ),
        );
        let e = arith(
            ArithOp::Sub,
            agg(AggKind::Mean, clamp(col(income, "amount"), 0.0, 500_000.0)),
            catalogue_expr("nsf_overdraft_count_90d", None),
        );
        let c = run(&e).unwrap();
        assert_eq!(c.nodes, e.node_count());
        assert_eq!(c.nodes, 10);
        assert!(!c.catalogue_only);
        assert_eq!(
            c.op_kinds,
            [
                OpKind::Filter,
                OpKind::Select,
                OpKind::Clamp,
                OpKind::Mean,
                OpKind::Arith,
                OpKind::Catalogue
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(
            c.datasets,
            ["transactions".to_string()].into_iter().collect()
        );
        let cols: BTreeSet<(String, String)> = ["amount", "category", "date"]
            .iter()
            .map(|c| ("transactions".to_string(), c.to_string()))
            .collect();
        assert_eq!(c.columns, cols);
        assert_eq!(c.catalogue.len(), 1);
        assert!(!c.ty.is_row_level());
        // A row-level table release lists every column it keeps.
        let sel = Expr::Select {
            input: Box::new(ds("rent")),
            columns: vec!["due_date".into(), "amount".into()],
        };
        let c = run(&sel).unwrap();
        assert!(c.ty.is_row_level());
        assert_eq!(
            c.columns,
            [("rent", "due_date"), ("rent", "amount")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        );
        assert_eq!(c.op_kinds, [OpKind::Select].into_iter().collect());
        let c = run(&ds("rent")).unwrap();
        assert_eq!(c.columns.len(), 3);
        assert!(c.op_kinds.is_empty());
    }
}
