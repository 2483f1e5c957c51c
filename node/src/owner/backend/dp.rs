//! The `dp` backend: which lineages can be released with differential privacy, at what cost, and how.
//!
//! A DP release is an aggregate at the top of a lineage over one dataset: `count` of a table or column, `sum`,
//! `mean` (a noisy sum over a noisy count, each with half the budget), `variance` (noisy sum, sum of squares and
//! count, a third each), `stdev` (the square root of that variance, from the same parts), `quantile`/`median`, `min` and
//! `max` (the quantile mechanism at q = 0 and 1) and `histogram` over public bins, or a catalogue attribute's DP form. The column under the aggregate is computed exactly on the owner's node (filters, clamps and
//! arithmetic as the lineage says); the noise and its cost come from the OpenDP mechanisms in
//! [`duo_protocols::dp`]. Sensitivity follows from the dataset's declared privacy unit (one row for `event`,
//! the declared `max_rows_per_month` for `month`) and from public bounds, never from the data: sums and
//! quantiles need bounds, which the metadata or a `clamp` in the lineage provide. Answers built from several
//! noisy parts (a mean, a variance, the coefficient of variation of `income_cv_12m`) are composed by
//! [`duo_protocols::dp::compose`], next to the mechanisms, which clamps a variance one way.

use crate::error::Error;
use crate::proto::request::DpParams;
use duo_engine::{
    evaluate, AggKind, Answer, ArithOp, Checked, DataSource, DatasetMeta, Expr, PrivacyUnit, Type,
    Value,
};
use duo_protocols::dp::{self, compose, Amount, Budget, Contribution, Measure, Query};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Scalar,
    Mean,
    Histogram {
        edges: Vec<f64>,
    },
    /// Coefficient of variation of `months` monthly totals, from a noisy sum and a noisy sum of squares.
    Cv {
        months: u32,
    },
    /// Population variance from a noisy sum, a noisy sum of squares and a noisy count.
    Variance,
    /// A catalogue attribute's first noisy sum over its second (no value when the second is below 1).
    Ratio,
    /// Population standard deviation: the square root of [`Shape::Variance`], from the same three parts.
    Stdev,
    /// One entry per public group (a calendar month of the dataset's public window, or a declared category):
    /// a grouped count or sum, or (`mean`) a grouped sum over a grouped count.
    Grouped {
        /// Whether the entries are means (sum part over count part).
        mean: bool,
        /// Small-count suppression (the policy's `min_group_count`): an entry whose noisy count (the last
        /// part, a grouped count) is below this is released as null.
        min_count: Option<u32>,
    },
    /// Several releases asked together (a batch): each item planned and released on its own, in order. The
    /// batch costs the sum of their costs (sequential composition, which is what the ledger adds up).
    Batch {
        /// Each question's plan.
        items: Vec<DpPlan>,
    },
}

/// What a part of a DP release reads: a lineage, or a catalogue attribute's own exact inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Input {
    /// The values of a lineage's column (or one zero per row of a table).
    Lineage(Expr),
    /// The squares of those values.
    Squares(Expr),
    /// The values of a lineage's column with each row's month in its dataset's public window.
    Months(Expr),
    /// The values of a lineage's column with each row's category among the declared categories of `column`.
    Categories {
        /// The lineage.
        input: Expr,
        /// The category column of its dataset.
        column: String,
    },
    /// Monthly totals of `income` transactions in `[from, to]`, each transaction clamped into `[0, per_tx]` and
    /// each total into `[0, per_month]`; squared if `squared`.
    MonthlyIncome {
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        per_tx: i64,
        per_month: i64,
        squared: bool,
    },
    /// For each transaction up to `to`: its amount clamped into `[-per_tx, per_tx]`, times the days of
    /// `[from, to]` on or after it. Their sum over the days in the window is the sum of daily balances.
    BalanceWeights {
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        per_tx: i64,
    },
    /// Part `part` of a catalogue attribute's DP form of noisy sums over the window ending at `to`
    /// ([`duo_engine::catalogue::dp_values`]).
    Attribute {
        name: String,
        to: chrono::NaiveDate,
        part: usize,
    },
}

/// Public parameters of the DP forms of `income_cv_12m` and `avg_daily_balance_3m`, in cents.
const INCOME_PER_TX: i64 = 1_000_000;
const INCOME_PER_MONTH: i64 = 2_000_000;
const BALANCE_PER_TX: i64 = 1_000_000;

/// Post-processing of a scalar after noise: multiply by a public factor (division by a public denominator is
/// a factor below one).
fn public_factor(op: ArithOp, right: &Expr) -> Option<f64> {
    let Expr::Literal { value } = right else {
        return None;
    };
    let x = value.as_f64().filter(|x| x.is_finite() && *x != 0.0)?;
    match op {
        ArithOp::Mul => Some(x),
        ArithOp::Div => Some(1.0 / x),
        _ => None,
    }
}

/// The stated budget split between `K` noisy parts so that their charges add up to at most it
/// ([`dp::split`]); `what` says why a target accuracy cannot be split.
fn split<const K: usize>(budget: Budget, what: &str) -> Result<[Budget; K], Error> {
    if let Budget::Accuracy { .. } = budget {
        return Err(refuse(format!(
            "{what}: state `epsilon` or `rho` (on the command line --epsilon or --rho), not a target accuracy `alpha`"
        )));
    }
    dp::split(budget, K as u32)
        .map_err(|e| Error::Refused(e.to_string()))?
        .try_into()
        .map_err(|_| Error::Internal("a budget split into the wrong number of parts".into()))
}

/// The budget of the unscaled aggregate whose noisy value times the public `factor` is the answer the FI
/// receives: a target accuracy is stated on that answer (`--alpha 10` for `sum(x) / 100` is 10 on the answer, so
/// 1000 on the sum), an epsilon or rho is unchanged.
fn on_the_answer(budget: Budget, factor: f64) -> Budget {
    match budget {
        Budget::Accuracy { alpha, beta } => Budget::Accuracy {
            alpha: alpha / factor.abs(),
            beta,
        },
        other => other,
    }
}

/// A planned DP release of a lineage: its cost, expected error and mechanism, from public facts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpPlan {
    parts: Vec<(dp::Plan, Input)>,
    shape: Shape,
    /// A public factor applied to a scalar answer after noise.
    factor: f64,
    /// The total cost in 1e-9 units of the node's measure.
    pub cost: Amount,
    /// Half-width of a 95% interval around the exact value, from public parameters only: the noise's accuracy
    /// for a count, sum or histogram, a conservative closed form for composed answers (docs/dp.md).
    pub accuracy95: Option<f64>,
    /// The noise mechanism.
    pub mechanism: String,
    /// The answer's public bounds (the checked lineage's type, from metadata and clamps, never the data): the
    /// released value is clamped into them, which is free post-processing and never moves it away from the
    /// exact value.
    #[serde(default)]
    bounds: Option<(f64, f64)>,
}

fn refuse(msg: impl Into<String>) -> Error {
    Error::Refused(format!("not available with dp: {}", msg.into()))
}

fn contribution(
    checked: &Checked,
    metas: &BTreeMap<String, DatasetMeta>,
) -> Result<Contribution, Error> {
    let mut datasets = checked.datasets.iter();
    let (Some(name), None) = (datasets.next(), datasets.next()) else {
        return Err(refuse("a dp release reads exactly one dataset"));
    };
    let meta = metas
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("dataset `{name}`")))?;
    match meta.privacy_unit {
        PrivacyUnit::Event => Ok(Contribution::EVENT),
        PrivacyUnit::Month => meta
            .max_rows_per_month
            .map(|k| Contribution {
                max_rows_per_unit: k,
            })
            .ok_or_else(|| {
                refuse(format!(
                    "dataset `{name}` protects a month of activity but declares no max_rows_per_month"
                ))
            }),
        PrivacyUnit::Dataset => Err(refuse(format!(
            "dataset `{name}` protects the whole dataset, which needs a node holding several people"
        ))),
    }
}

fn int_bounds(ty: &Type) -> Result<(i64, i64), Error> {
    let (dtype, bounds) = match ty {
        Type::Column { dtype, bounds, .. } => (*dtype, *bounds),
        _ => return Err(refuse("the aggregate must be over a column")),
    };
    if !matches!(
        dtype,
        duo_engine::DataType::I64 | duo_engine::DataType::Money | duo_engine::DataType::Bool
    ) {
        return Err(refuse(format!(
            "dp sums, means and quantiles take integer, money or boolean columns, not {dtype}"
        )));
    }
    let b = match (dtype, bounds) {
        (duo_engine::DataType::Bool, _) => duo_engine::Bounds { lo: 0.0, hi: 1.0 },
        (_, Some(b)) => b,
        (_, None) => {
            return Err(refuse(
                "the column has no public bounds; clamp it first, e.g. sum(clamp(rent.amount, 0, 300000))",
            ))
        }
    };
    let (lo, hi) = (b.lo.ceil(), b.hi.floor());
    if !(lo.is_finite() && hi.is_finite() && lo <= hi && lo > -9.0e15 && hi < 9.0e15) {
        return Err(refuse("the column's bounds are not usable integers"));
    }
    Ok((lo as i64, hi as i64))
}

/// Plan the DP release of a checked lineage under the node's measure, with no small-count suppression.
pub fn plan(
    checked: &Checked,
    metas: &BTreeMap<String, DatasetMeta>,
    m: Measure,
    params: &DpParams,
) -> Result<DpPlan, Error> {
    plan_with(checked, metas, m, params, None)
}

/// Plan the DP release of a checked lineage under the node's measure; a grouped release withholds each group
/// whose noisy count is below `min_group_count` (the policy's small-count suppression).
pub fn plan_with(
    checked: &Checked,
    metas: &BTreeMap<String, DatasetMeta>,
    m: Measure,
    params: &DpParams,
    min_group_count: Option<u32>,
) -> Result<DpPlan, Error> {
    if !checked.items.is_empty() {
        return batch_plan(checked, metas, m, params, min_group_count);
    }
    let contribution = contribution(checked, metas)?;
    // A catalogue attribute is released through its DP form; a public factor is applied after noise.
    let mut expr = checked.expr.clone();
    if let Expr::Catalogue {
        name,
        window_end: Some(end),
    } = &expr
    {
        if let Some(special) = catalogue_form(name, *end, contribution, m, params, &checked.ty)? {
            return Ok(within_public_bounds(special, &checked.ty));
        }
        expr = duo_engine::catalogue::dp_lineage(name, *end, metas).map_err(refuse)?;
    }
    let mut factor = 1.0;
    if let Expr::Arith { op, left, right } = &expr {
        if let Some(f) = public_factor(*op, right) {
            factor = f;
            expr = (**left).clone();
        }
    }
    let budget = on_the_answer(params.budget()?, factor);
    let (parts, shape) = aggregate_parts(&expr, metas, contribution, m, budget, min_group_count)?;
    Ok(within_public_bounds(
        finish_plan(parts, shape, factor)?,
        &checked.ty,
    ))
}

/// A batch's plan: each question planned with the same parameters (an `epsilon` or `rho` is spent on each, a
/// target accuracy is met by each), costing their sum.
fn batch_plan(
    checked: &Checked,
    metas: &BTreeMap<String, DatasetMeta>,
    m: Measure,
    params: &DpParams,
    min_group_count: Option<u32>,
) -> Result<DpPlan, Error> {
    let mut items = Vec::with_capacity(checked.items.len());
    let mut cost = Amount::from_nanos(0);
    for (i, item) in checked.items.iter().enumerate() {
        let p = plan_with(item, metas, m, params, min_group_count).map_err(|e| match e {
            Error::Refused(why) => {
                Error::Refused(format!("question {} of the batch: {why}", i + 1))
            }
            other => other,
        })?;
        cost = cost
            .checked_add(p.cost)
            .ok_or_else(|| Error::Refused("the cost overflows".into()))?;
        items.push(p);
    }
    let mechanism = format!(
        "{} releases asked together, each with its own noise, charged the sum of their costs",
        items.len()
    );
    Ok(DpPlan {
        parts: Vec::new(),
        shape: Shape::Batch { items },
        factor: 1.0,
        cost,
        accuracy95: None,
        mechanism,
        bounds: None,
    })
}

impl DpPlan {
    /// For a batch: each question's plan, in order (empty for a single release).
    pub fn items(&self) -> &[DpPlan] {
        match &self.shape {
            Shape::Batch { items } => items,
            _ => &[],
        }
    }
}

/// The plan with the answer's public bounds from the checked type: the release is clamped into them, and the
/// expected error is at most their width (the exact value is inside them too).
fn within_public_bounds(mut p: DpPlan, ty: &Type) -> DpPlan {
    if let Type::Scalar {
        bounds: Some(b), ..
    }
    | Type::Vector {
        bounds: Some(b), ..
    } = ty
    {
        if b.lo <= b.hi {
            p.bounds = Some((b.lo, b.hi));
            p.accuracy95 = p.accuracy95.map(|a| a.min(b.hi - b.lo));
        }
    }
    p
}

/// The expected error shown before a release: the half-width of an interval holding the answer's distance to
/// the exact value with probability at least 95%, from public parameters only; conservative closed forms:
///
/// - a count, sum or histogram bin (scaled by a public factor): OpenDP's accuracy of its noise (see
///   `duo_protocols::dp::accuracy`), times the factor;
/// - a quantile: the span of its candidates (the answer and the exact quantile are both among them);
/// - a mean (noisy sum over noisy count, clamped into `[lo, hi]`): `hi - lo`; a variance: `((hi - lo) / 2)^2`;
///   the income CV: 10, its published range. A tighter form needs the number of rows, which is private (see
///   docs/dp.md for the form at `n` rows).
fn expected_error(parts: &[(dp::Plan, Input)], shape: &Shape, factor: f64) -> Option<f64> {
    let (first, _) = parts.first()?;
    let span = match first.query() {
        Query::Sum { lo, hi } => Some(*hi as f64 - *lo as f64),
        Query::Quantile { candidates, .. } => {
            Some(*candidates.last()? as f64 - *candidates.first()? as f64)
        }
        _ => None,
    };
    match shape {
        Shape::Scalar => match first.query() {
            Query::Quantile { .. } => span.map(|w| w * factor.abs()),
            _ => first.accuracy95().map(|a| a * factor.abs()),
        },
        Shape::Histogram { .. } | Shape::Grouped { mean: false, .. } => first.accuracy95(),
        Shape::Grouped { mean: true, .. } => match first.query() {
            Query::GroupedSum { lo, hi, .. } => Some(*hi as f64 - *lo as f64),
            _ => None,
        },
        Shape::Mean => span,
        Shape::Variance => span.map(|w| (w / 2.0) * (w / 2.0)),
        // On the answer's scale: a standard deviation of values in [lo, hi] is in [0, (hi - lo) / 2].
        Shape::Stdev => span.map(|w| w / 2.0),
        Shape::Cv { .. } => Some(10.0),
        // The width of the attribute's public bounds, set with them (`within_public_bounds`).
        Shape::Ratio => None,
        // Each question has its own.
        Shape::Batch { .. } => None,
    }
}

/// The noisy parts of an aggregate (one for a count, sum, quantile or histogram; a sum and a count for a mean;
/// a sum, a sum of squares and a count for a variance), and how the answer is composed from them.
fn aggregate_parts(
    expr: &Expr,
    metas: &BTreeMap<String, DatasetMeta>,
    contribution: Contribution,
    m: Measure,
    budget: Budget,
    min_count: Option<u32>,
) -> Result<(Vec<(dp::Plan, Input)>, Shape), Error> {
    let mk = |q: Query, b: Budget| {
        dp::plan(q, contribution, m, b).map_err(|e| Error::Refused(e.to_string()))
    };
    let input_ty = |input: &Expr| -> Result<Type, Error> {
        let c = duo_engine::check(
            input,
            &duo_engine::CheckContext {
                metas,
                today: chrono::Utc::now().date_naive(),
                limits: duo_engine::Limits::default(),
            },
        )?;
        Ok(c.ty)
    };
    Ok(match expr {
        Expr::Aggregate {
            kind: AggKind::Count,
            input,
        } => (vec![(mk(Query::Count, budget)?, Input::Lineage((**input).clone()))], Shape::Scalar),
        Expr::Aggregate {
            kind: AggKind::Sum,
            input,
        } => {
            let (lo, hi) = int_bounds(&input_ty(input)?)?;
            (
                vec![(mk(Query::Sum { lo, hi }, budget)?, Input::Lineage((**input).clone()))],
                Shape::Scalar,
            )
        }
        Expr::Aggregate {
            kind: AggKind::Mean,
            input,
        } => {
            let (lo, hi) = int_bounds(&input_ty(input)?)?;
            let [sum, count] = split::<2>(budget, "a dp mean is a noisy sum over a noisy count")?;
            (
                vec![
                    (mk(Query::Sum { lo, hi }, sum)?, Input::Lineage((**input).clone())),
                    (mk(Query::Count, count)?, Input::Lineage((**input).clone())),
                ],
                Shape::Mean,
            )
        }
        Expr::Aggregate {
            kind: kind @ (AggKind::Variance | AggKind::Stdev),
            input,
        } => {
            let (lo, hi) = int_bounds(&input_ty(input)?)?;
            let top = lo.unsigned_abs().max(hi.unsigned_abs());
            let sq_hi = i64::try_from(top.saturating_mul(top))
                .map_err(|_| refuse("the bounds are too wide for a dp variance"))?;
            let [b1, b2, b3] = split::<3>(
                budget,
                "a dp variance or standard deviation combines three noisy sums",
            )?;
            (
                vec![
                    (mk(Query::Sum { lo, hi }, b1)?, Input::Lineage((**input).clone())),
                    (
                        mk(Query::Sum { lo: 0, hi: sq_hi }, b2)?,
                        Input::Squares((**input).clone()),
                    ),
                    (mk(Query::Count, b3)?, Input::Lineage((**input).clone())),
                ],
                if *kind == AggKind::Stdev {
                    Shape::Stdev
                } else {
                    Shape::Variance
                },
            )
        }
        // A minimum or maximum is the quantile mechanism at q = 0 or 1 over the same grid as a quantile: with
        // high probability a candidate between the public bound and the exact value (docs/dp.md).
        Expr::Aggregate {
            kind: kind @ (AggKind::Min | AggKind::Max),
            input,
        } => {
            let (lo, hi) = int_bounds(&input_ty(input)?)?;
            let bins = u32::try_from((hi - lo).clamp(1, 256)).unwrap_or(256);
            let query = if *kind == AggKind::Min {
                Query::min_grid(lo, hi, bins)
            } else {
                Query::max_grid(lo, hi, bins)
            }
            .map_err(|e| Error::Refused(e.to_string()))?;
            (vec![(mk(query, budget)?, Input::Lineage((**input).clone()))], Shape::Scalar)
        }
        Expr::Quantile { input, q } => {
            let (lo, hi) = int_bounds(&input_ty(input)?)?;
            let bins = u32::try_from((hi - lo).clamp(1, 256)).unwrap_or(256);
            let query = Query::quantile_grid(lo, hi, bins, *q).map_err(|e| Error::Refused(e.to_string()))?;
            (vec![(mk(query, budget)?, Input::Lineage((**input).clone()))], Shape::Scalar)
        }
        // Grouped by the months of the dataset's public window: one vector, charged one ungrouped release
        // (duo_protocols::dp::grouped: a unit's rows move the vector no more than the ungrouped aggregate).
        // Grouped by the months of the dataset's public window, or by a category column's declared set: one
        // vector, charged one ungrouped release (duo_protocols::dp::grouped: a unit's rows move the vector no
        // more in L1 or L2 than they move the ungrouped aggregate, even spread over several categories).
        Expr::ByMonth { input, .. } | Expr::ByCategory { input, .. } => {
            let Type::Vector { len, .. } = input_ty(expr)? else {
                return Err(Error::Internal("a grouped lineage is not a vector".into()));
            };
            let groups = u32::try_from(len).map_err(|_| refuse("too many groups"))?;
            let grouping = Grouping::of(expr, groups, min_count)?;
            grouped_parts(grouping, budget, &mk, &|| int_bounds(&input_ty(input)?))?
        }
        Expr::Histogram { input, edges } => {
            int_bounds(&input_ty(input)?).or_else(|e| match input_ty(input)? {
                Type::Column { .. } => Ok((0, 0)),
                _ => Err(e),
            })?;
            let int_edges = opendp_edges(edges)?;
            (
                vec![(
                    mk(Query::Histogram { edges: int_edges }, budget)?,
                    Input::Lineage((**input).clone()),
                )],
                Shape::Histogram {
                    edges: edges.clone(),
                },
            )
        }
        _ => {
            return Err(refuse(
                "the lineage must end in count, sum, mean, variance, stdev, min, max, quantile/median or \
                 histogram, optionally scaled by a public number, or be a catalogue attribute with a dp form \
                 (row-level values and dot are not released with dp; by_month and by_category take count, \
                 sum or mean)",
            ))
        }
    })
}

/// A histogram's whole-number edges as OpenDP bins them. The plaintext histogram's last bin includes its upper
/// edge; OpenDP's bins are half-open. The values are whole numbers, so moving the last edge up by one gives the
/// last bin the same members (one bin per value still: the sensitivity does not change).
fn opendp_edges(edges: &[f64]) -> Result<Vec<i64>, Error> {
    let mut int_edges = edges
        .iter()
        .map(|e| {
            (e.fract() == 0.0 && e.abs() < 9.0e15)
                .then_some(*e as i64)
                .ok_or_else(|| refuse("dp histogram edges must be whole numbers"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(last) = int_edges.last_mut() {
        *last = last
            .checked_add(1)
            .ok_or_else(|| refuse("the last histogram edge is too large"))?;
    }
    Ok(int_edges)
}

/// A grouped release: the aggregate, what it reads with each row's group, the number of public groups, and
/// the small-count suppression asked for.
struct Grouping {
    kind: AggKind,
    input: Input,
    groups: u32,
    min_count: Option<u32>,
}

impl Grouping {
    /// The grouping of a `by_month` or `by_category` lineage over `groups` public groups.
    fn of(expr: &Expr, groups: u32, min_count: Option<u32>) -> Result<Grouping, Error> {
        let (kind, input) = match expr {
            Expr::ByMonth { kind, input } => (*kind, Input::Months((**input).clone())),
            Expr::ByCategory {
                kind,
                input,
                column,
            } => (
                *kind,
                Input::Categories {
                    input: (**input).clone(),
                    column: column.clone(),
                },
            ),
            _ => return Err(Error::Internal("not a grouped lineage".into())),
        };
        Ok(Grouping {
            kind,
            input,
            groups,
            min_count,
        })
    }
}

/// The parts of a count, sum or mean per public group: one grouped release (a mean: a grouped sum over a
/// grouped count, half the budget each). With small-count suppression the last part is a grouped count whose
/// noisy values decide which groups are withheld: a count's or a mean's own count; for a sum, a second part
/// with half the budget (the stated budget covers both, so the cost is unchanged and each sum is noisier).
fn grouped_parts(
    g: Grouping,
    budget: Budget,
    mk: &dyn Fn(Query, Budget) -> Result<dp::Plan, Error>,
    bounds: &dyn Fn() -> Result<(i64, i64), Error>,
) -> Result<(Vec<(dp::Plan, Input)>, Shape), Error> {
    let Grouping {
        kind,
        input,
        groups,
        min_count,
    } = g;
    let shape = |mean| Shape::Grouped { mean, min_count };
    Ok(match kind {
        AggKind::Count => (
            vec![(mk(Query::GroupedCount { groups }, budget)?, input)],
            shape(false),
        ),
        AggKind::Sum if min_count.is_none() => {
            let (lo, hi) = bounds()?;
            (
                vec![(mk(Query::GroupedSum { lo, hi, groups }, budget)?, input)],
                shape(false),
            )
        }
        AggKind::Sum | AggKind::Mean => {
            let (lo, hi) = bounds()?;
            let what = if kind == AggKind::Mean {
                "a dp mean per group is a noisy sum over a noisy count"
            } else {
                "a dp sum per group with small-count suppression (the policy's min_group_count) is a noisy \
                 sum with a noisy count"
            };
            let [sum, count] = split::<2>(budget, what)?;
            (
                vec![
                    (
                        mk(Query::GroupedSum { lo, hi, groups }, sum)?,
                        input.clone(),
                    ),
                    (mk(Query::GroupedCount { groups }, count)?, input),
                ],
                shape(kind == AggKind::Mean),
            )
        }
        other => {
            return Err(refuse(format!(
                "by_month and by_category release count, sum or mean with dp, not {}",
                other.name()
            )))
        }
    })
}

/// The plan from its parts: the total cost, and the accuracy and mechanism of a single part.
fn finish_plan(parts: Vec<(dp::Plan, Input)>, shape: Shape, factor: f64) -> Result<DpPlan, Error> {
    let mut cost = Amount::from_nanos(0);
    for (p, _) in &parts {
        cost = cost
            .checked_add(p.cost())
            .ok_or_else(|| Error::Refused("the cost overflows".into()))?;
    }
    if factor != 1.0 && !matches!(shape, Shape::Scalar) {
        return Err(refuse(
            "only a single count, sum or quantile can be scaled by a public factor",
        ));
    }
    let accuracy95 = expected_error(&parts, &shape, factor);
    let mut mechanism = parts
        .first()
        .map(|(p, _)| p.mechanism().to_string())
        .unwrap_or_default();
    if let Shape::Grouped { mean, min_count } = &shape {
        mechanism = grouped_mechanism(mechanism, &parts, *mean, *min_count);
    }
    Ok(DpPlan {
        parts,
        shape,
        factor,
        cost,
        accuracy95,
        mechanism,
        bounds: None,
    })
}

/// A grouped release's mechanism in plain words for the owner: one request, one vector, one cost, and the
/// small-count suppression if any.
fn grouped_mechanism(
    mechanism: String,
    parts: &[(dp::Plan, Input)],
    mean: bool,
    min_count: Option<u32>,
) -> String {
    let Some((first, input)) = parts.first() else {
        return mechanism;
    };
    let (Query::GroupedCount { groups } | Query::GroupedSum { groups, .. }) = first.query() else {
        return mechanism;
    };
    let mut text = match input {
        Input::Categories { column, .. } => format!(
            "{mechanism}, one noisy value for each of the {groups} categories of `{column}` that the metadata \
             lists, released together; the whole list costs one release, because a payment falls in one \
             category only (and a month of activity, spread over several, moves the whole list no more than \
             it moves one total), and the expected error applies to each category"
        ),
        _ => format!(
            "{mechanism}, one noisy value for each of the {groups} months, released together; the whole list \
             costs one release, because a payment (or a month of activity) falls in one month only, and the \
             expected error applies to each month"
        ),
    };
    if let Some(t) = min_count {
        text.push_str(&format!(
            "; a group whose noisy count is below {t} is withheld (your policy's min_group_count)"
        ));
        if !mean && parts.len() == 2 {
            text.push_str(
                ", so each sum comes with a noisy count, which takes half of the stated budget",
            );
        }
    }
    text
}

/// The DP forms of the catalogue attributes that are not a lineage: `income_cv_12m` from a noisy sum and a noisy
/// sum of squares of clamped monthly totals (one unit, event or month, moves one monthly total),
/// `avg_daily_balance_3m` and `avg_daily_balance_12m` from a noisy sum of balance weights divided by the public
/// number of days, and the attributes with a [`duo_engine::catalogue::dp_form`] from its noisy sums.
fn catalogue_form(
    name: &str,
    end: chrono::NaiveDate,
    contribution: Contribution,
    m: Measure,
    params: &DpParams,
    ty: &Type,
) -> Result<Option<DpPlan>, Error> {
    if let Some(form) = duo_engine::catalogue::dp_form(name) {
        return noisy_sums_form(name, end, &form, contribution, m, params, ty).map(Some);
    }
    let start = |months: u32| {
        duo_engine::check::months_before(end, months - 1)
            .ok_or_else(|| refuse("the window starts before the calendar does"))
    };
    let mk = |q: Query, b: Budget, c: Contribution| {
        dp::plan(q, c, m, b).map_err(|e| Error::Refused(e.to_string()))
    };
    match name {
        "income_cv_12m" => {
            let from = start(12)?;
            let [b1, b2] = split::<2>(
                params.budget()?,
                "the dp income CV is composed from a noisy sum and a noisy sum of squares",
            )?;
            let one_month = Contribution {
                max_rows_per_unit: 1,
            };
            let input = |squared| Input::MonthlyIncome {
                from,
                to: end,
                per_tx: INCOME_PER_TX,
                per_month: INCOME_PER_MONTH,
                squared,
            };
            let parts = vec![
                (
                    mk(
                        Query::Sum {
                            lo: 0,
                            hi: INCOME_PER_MONTH,
                        },
                        b1,
                        one_month,
                    )?,
                    input(false),
                ),
                (
                    mk(
                        Query::Sum {
                            lo: 0,
                            hi: INCOME_PER_MONTH * INCOME_PER_MONTH,
                        },
                        b2,
                        one_month,
                    )?,
                    input(true),
                ),
            ];
            Ok(Some(finish_plan(parts, Shape::Cv { months: 12 }, 1.0)?))
        }
        "avg_daily_balance_3m" | "avg_daily_balance_12m" => {
            let from = start(if name == "avg_daily_balance_3m" {
                3
            } else {
                12
            })?;
            let days = (end - from).num_days() + 1;
            let bound = BALANCE_PER_TX * days;
            let parts = vec![(
                mk(
                    Query::Sum {
                        lo: -bound,
                        hi: bound,
                    },
                    on_the_answer(params.budget()?, 1.0 / days as f64),
                    contribution,
                )?,
                Input::BalanceWeights {
                    from,
                    to: end,
                    per_tx: BALANCE_PER_TX,
                },
            )];
            Ok(Some(finish_plan(parts, Shape::Scalar, 1.0 / days as f64)?))
        }
        _ => Ok(None),
    }
}

/// The plan of a catalogue attribute's DP form of noisy sums: each part a sum of the attribute's values within
/// the part's bounds, at the dataset's contribution for values one per row, at one value (whatever the unit) for
/// values a unit can move only one of; the budget split evenly between the parts.
fn noisy_sums_form(
    name: &str,
    end: chrono::NaiveDate,
    form: &duo_engine::catalogue::DpForm,
    contribution: Contribution,
    m: Measure,
    params: &DpParams,
    ty: &Type,
) -> Result<DpPlan, Error> {
    use duo_engine::catalogue::{DpCombine, DpReach};
    let budgets = match form.parts.len() {
        1 => vec![params.budget()?],
        2 => split::<2>(
            params.budget()?,
            "this attribute is composed from two noisy sums",
        )?
        .to_vec(),
        _ => {
            return Err(Error::Internal(format!(
                "the dp form of `{name}` has an unexpected number of parts"
            )))
        }
    };
    let mut parts = Vec::with_capacity(budgets.len());
    for (i, (part, budget)) in form.parts.iter().zip(budgets).enumerate() {
        let c = match part.reach {
            DpReach::Rows => contribution,
            // One value replaced by another within [lo, hi]: at most max(|lo|, |hi|) when the bounds do not
            // straddle zero, which one row's contribution covers; twice that otherwise.
            DpReach::OneValue => Contribution {
                max_rows_per_unit: if part.lo < 0 && part.hi > 0 { 2 } else { 1 },
            },
        };
        let plan = dp::plan(
            Query::Sum {
                lo: part.lo,
                hi: part.hi,
            },
            c,
            m,
            budget,
        )
        .map_err(|e| Error::Refused(e.to_string()))?;
        parts.push((
            plan,
            Input::Attribute {
                name: name.to_string(),
                to: end,
                part: i,
            },
        ));
    }
    let shape = match form.combine {
        DpCombine::Sum => Shape::Scalar,
        DpCombine::Ratio => Shape::Ratio,
    };
    let mut p = finish_plan(parts, shape, 1.0)?;
    if form.combine == DpCombine::Ratio {
        // A ratio of noisy sums: its error depends on the private denominator; the width of the public bounds,
        // which hold both the answer and the exact value, holds with probability 1.
        if let Type::Scalar {
            bounds: Some(b), ..
        } = ty
        {
            p.accuracy95 = Some(b.hi - b.lo);
        }
    }
    Ok(p)
}

/// The integers a part of a release reads.
fn input_values(input: &Input, data: &dyn DataSource) -> Result<Vec<i64>, Error> {
    match input {
        Input::Lineage(e) => values(e, data),
        Input::Months(_) | Input::Categories { .. } => Ok(group_rows(input, data)?
            .map(|(_, values, _)| values)
            .unwrap_or_default()),
        Input::Squares(e) => Ok(values(e, data)?
            .into_iter()
            .map(|v| v.saturating_mul(v))
            .collect()),
        Input::MonthlyIncome {
            from,
            to,
            per_tx,
            per_month,
            squared,
        } => {
            let (dates, amounts, cats) = transactions(data)?;
            let first = duo_engine::check::month_number(*from);
            let months = (duo_engine::check::month_number(*to) - first + 1).max(0) as usize;
            let mut totals = vec![0i128; months];
            for i in 0..dates.len() {
                let (Some(Some(d)), Some(Some(a)), Some(Some(c))) =
                    (dates.get(i), amounts.get(i), cats.get(i))
                else {
                    continue;
                };
                if c != "income" || d < from || d > to {
                    continue;
                }
                let k = (duo_engine::check::month_number(*d) - first) as usize;
                if let Some(t) = totals.get_mut(k) {
                    *t += i128::from((*a).clamp(0, *per_tx));
                }
            }
            Ok(totals
                .into_iter()
                .map(|t| {
                    let t = t.clamp(0, i128::from(*per_month)) as i64;
                    if *squared {
                        t.saturating_mul(t)
                    } else {
                        t
                    }
                })
                .collect())
        }
        Input::Attribute { name, to, part } => {
            Ok(duo_engine::catalogue::dp_values(name, *part, *to, data)?)
        }
        Input::BalanceWeights { from, to, per_tx } => {
            let (dates, amounts, _) = transactions(data)?;
            let mut out = Vec::new();
            for (d, a) in dates.iter().zip(amounts) {
                let (Some(d), Some(a)) = (d, a) else { continue };
                if d > to {
                    continue;
                }
                let days_on_or_after = (*to - *d.max(from)).num_days() + 1;
                out.push(
                    (*a).clamp(-*per_tx, *per_tx)
                        .saturating_mul(days_on_or_after),
                );
            }
            Ok(out)
        }
    }
}

type Columns<'a> = (
    &'a [Option<chrono::NaiveDate>],
    &'a [Option<i64>],
    &'a [Option<String>],
);

fn transactions(data: &dyn DataSource) -> Result<Columns<'_>, Error> {
    use duo_engine::ColumnData;
    let ds = data
        .dataset("transactions")
        .ok_or_else(|| Error::NotFound("dataset `transactions`".into()))?;
    let col = |n: &str| {
        ds.column(n)
            .map(|c| &c.data)
            .ok_or_else(|| Error::NotFound(format!("column `transactions.{n}`")))
    };
    match (col("date")?, col("amount")?, col("category")?) {
        (ColumnData::Date(d), ColumnData::Int(a), ColumnData::Cat(c)) => Ok((d, a, c)),
        _ => Err(Error::Internal(
            "transactions has unexpected column types".into(),
        )),
    }
}

/// Rows' groups (indices among the public groups), their integers, and the groups' labels.
type GroupRows = (Vec<u32>, Vec<i64>, Vec<String>);

/// The rows of a grouped input that lie in one of its public groups (a month of the dataset's public window,
/// or a declared category), non-null: their groups, their integers, and the groups' labels; `None` for an
/// input that is not grouped.
fn group_rows(input: &Input, data: &dyn DataSource) -> Result<Option<GroupRows>, Error> {
    let g = match input {
        Input::Months(e) => duo_engine::eval::group_by_month(e, data)?,
        Input::Categories { input, column } => {
            duo_engine::eval::group_by_category(input, column, data)?
        }
        _ => return Ok(None),
    };
    let (mut keys, mut ints) = (
        Vec::with_capacity(g.values.len()),
        Vec::with_capacity(g.values.len()),
    );
    for (v, k) in g.values.iter().zip(&g.keys) {
        let (Some(k), Some(x)) = (k, aggregated_int(v)) else {
            continue;
        };
        keys.push(*k);
        ints.push(x);
    }
    Ok(Some((keys, ints, g.labels)))
}

/// The integer an aggregate reads from a cell: integers as they are, booleans as 0 or 1, nothing for a null,
/// and 0 for any other value (a row that a count counts without reading its value).
fn aggregated_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(x) => Some(*x),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Null => None,
        _ => Some(0),
    }
}

/// The integers an aggregate reads: the values of its input column (nulls left out), or one zero per row of a
/// table.
fn values(input: &Expr, data: &dyn DataSource) -> Result<Vec<i64>, Error> {
    match evaluate(input, data)? {
        Answer::Rows { columns, rows } if columns.len() == 1 => Ok(rows
            .iter()
            .filter_map(|r| r.first().and_then(aggregated_int))
            .collect()),
        Answer::Rows { rows, .. } => Ok(vec![0; rows.len()]),
        _ => Err(Error::Internal(
            "a dp aggregate's input is not a column or table".into(),
        )),
    }
}

/// Run a planned release: exact inputs on the owner's node, then OpenDP's noise, then post-processing: the
/// composition of noisy parts, a public factor, and the clamp into the answer's public bounds (a noisy count is
/// never negative, a mean never outside its clamp). Floats appear only after noise.
pub fn release(p: &DpPlan, data: &dyn DataSource) -> Result<Answer, Error> {
    if let Shape::Batch { items } = &p.shape {
        return Ok(Answer::Batch {
            items: items
                .iter()
                .map(|item| release(item, data))
                .collect::<Result<_, _>>()?,
        });
    }
    let answer = noisy_answer(p, data)?;
    Ok(match (answer, p.bounds) {
        (Answer::Scalar { value }, Some((lo, hi))) => Answer::Scalar {
            value: clamped(value, lo, hi),
        },
        (Answer::Vector { labels, values }, Some((lo, hi))) => Answer::Vector {
            labels,
            values: values.into_iter().map(|v| clamped(v, lo, hi)).collect(),
        },
        (other, _) => other,
    })
}

/// A released scalar clamped into public bounds `[lo, hi]` (an integer into the whole numbers among them).
fn clamped(value: Value, lo: f64, hi: f64) -> Value {
    match value {
        Value::Int(v) => {
            let (lo, hi) = (lo.ceil(), hi.floor());
            if lo <= hi {
                // `as` saturates: bounds past the i64 range clamp nothing there.
                Value::Int(v.clamp(lo as i64, hi as i64))
            } else {
                Value::Int(v)
            }
        }
        Value::Float(x) => Value::Float(x.clamp(lo, hi)),
        other => other,
    }
}

/// The answer from the noisy parts, composed and scaled, before the clamp into public bounds.
fn noisy_answer(p: &DpPlan, data: &dyn DataSource) -> Result<Answer, Error> {
    let mut outs = Vec::new();
    let mut labels = Vec::new();
    for (plan, input) in &p.parts {
        let out = if let Some((keys, vals, l)) = group_rows(input, data)? {
            labels = l;
            plan.release_grouped(&keys, &vals)
        } else {
            plan.release(&input_values(input, data)?)
        };
        outs.push(out.map_err(|e| Error::Internal(e.to_string()))?);
    }
    let int = |a: &dp::Answer| match a {
        dp::Answer::Integer(v) => Some(*v),
        _ => None,
    };
    // The bounds the values were clamped into: the first part's, a sum over them (mean, variance, CV).
    let bounds = match p.parts.first().map(|(plan, _)| plan.query()) {
        Some(Query::Sum { lo, hi }) => Some((*lo, *hi)),
        _ => None,
    };
    // Composed answers are post-processing in `compose`, which clamps a variance one way; no value (a noisy
    // count below 1, or a CV over a mean at or below zero) is released as null.
    let composed = |x: Option<f64>| Answer::Scalar {
        value: x.map_or(Value::Null, Value::Float),
    };
    Ok(match (&p.shape, outs.as_slice(), bounds) {
        (Shape::Scalar, [dp::Answer::Integer(v)], _) if p.factor == 1.0 => Answer::Scalar {
            value: Value::Int(*v),
        },
        (Shape::Scalar, [dp::Answer::Integer(v)], _) => Answer::Scalar {
            value: Value::Float(*v as f64 * p.factor),
        },
        (Shape::Scalar, [dp::Answer::Real(v)], _) => Answer::Scalar {
            value: Value::Float(*v * p.factor),
        },
        (Shape::Ratio, [num, den], _) => {
            let (num, den) = (int(num).unwrap_or(0), int(den).unwrap_or(0));
            composed((den >= 1).then(|| num as f64 / den as f64))
        }
        (Shape::Mean, [s, c], _) => {
            composed(compose::mean(int(s).unwrap_or(0), int(c).unwrap_or(0)))
        }
        (Shape::Cv { months }, [s1, s2], Some((lo, hi))) => {
            let cv = compose::coefficient_of_variation(
                int(s1).unwrap_or(0),
                int(s2).unwrap_or(0),
                i64::from(*months),
                lo,
                hi,
            );
            // Then into the attribute's published bounds, [0, 10].
            composed(cv.map(|cv| cv.clamp(0.0, 10.0)))
        }
        (Shape::Variance | Shape::Stdev, [s1, s2, n], Some((lo, hi))) => {
            let compose = if p.shape == Shape::Stdev {
                compose::stdev
            } else {
                compose::variance
            };
            composed(compose(
                int(s1).unwrap_or(0),
                int(s2).unwrap_or(0),
                int(n).unwrap_or(0),
                lo,
                hi,
            ))
        }
        (Shape::Grouped { mean, min_count }, outs, _) => {
            grouped_answer(outs, *mean, *min_count, labels)?
        }
        (Shape::Histogram { edges }, [dp::Answer::Counts(counts)], _) => {
            // OpenDP's bins: below the first edge, between edges, at or above the last (which the plan moved up by
            // one, so the last bin between edges includes the published last edge, as in plaintext). Report the
            // bins between edges; negative noisy counts are shown as zero (post-processing).
            let inner = counts
                .iter()
                .skip(1)
                .take(edges.len().saturating_sub(1))
                .map(|c| (*c).max(0) as u64)
                .collect();
            Answer::Histogram {
                edges: edges.clone(),
                counts: inner,
            }
        }
        _ => return Err(Error::Internal("unexpected dp answer shape".into())),
    })
}

/// A grouped release's vector from its noisy parts: the counts or sums (one part), the sums with their counts
/// (a sum under suppression), or the sums over the counts (a mean). With `min_count`, an entry whose noisy
/// count (the last part) is below it is withheld as null: post-processing of the noisy counts, never of the
/// exact ones.
fn grouped_answer(
    outs: &[dp::Answer],
    mean: bool,
    min_count: Option<u32>,
    labels: Vec<String>,
) -> Result<Answer, Error> {
    let vector = |a: &dp::Answer| match a {
        dp::Answer::Counts(v) => Ok(v.clone()),
        _ => Err(Error::Internal("unexpected grouped dp answer".into())),
    };
    let (values, counts) = match outs {
        [v] => {
            let v = vector(v)?;
            (v.iter().map(|x| Value::Int(*x)).collect::<Vec<_>>(), v)
        }
        [s, c] => {
            let (s, c) = (vector(s)?, vector(c)?);
            let values = s
                .iter()
                .zip(&c)
                .map(|(s, c)| {
                    if mean {
                        compose::mean(*s, *c).map_or(Value::Null, Value::Float)
                    } else {
                        Value::Int(*s)
                    }
                })
                .collect();
            (values, c)
        }
        _ => return Err(Error::Internal("unexpected grouped dp answer".into())),
    };
    let values = match min_count {
        Some(t) => values
            .into_iter()
            .zip(&counts)
            .map(|(v, c)| if *c < i64::from(t) { Value::Null } else { v })
            .collect(),
        None => values,
    };
    Ok(Answer::Vector { labels, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use duo_engine::ingest::{load_csv, parse_meta, IngestLimits};
    use duo_engine::sample::{generate, Profile, SampleConfig};

    fn sample(profile: Profile) -> BTreeMap<String, duo_engine::Dataset> {
        let cfg = SampleConfig {
            seed: 5,
            profile,
            end_month: (2026, 10),
            months: 24,
        };
        generate(&cfg)
            .into_iter()
            .map(|f| {
                let meta = parse_meta(&f.meta_toml).unwrap();
                let (ds, _) = load_csv(f.csv.as_bytes(), &meta, &IngestLimits::default()).unwrap();
                (f.name, ds)
            })
            .collect()
    }

    /// The published metadata of the sample datasets.
    fn metas_of(data: &BTreeMap<String, duo_engine::Dataset>) -> BTreeMap<String, DatasetMeta> {
        data.iter()
            .map(|(n, d)| (n.clone(), d.meta.clone()))
            .collect()
    }

    /// Type-checking as of a fixed day after the sample's last month.
    fn check_ctx(metas: &BTreeMap<String, DatasetMeta>) -> duo_engine::CheckContext<'_> {
        duo_engine::CheckContext {
            metas,
            today: chrono::NaiveDate::from_ymd_opt(2026, 11, 15).unwrap(),
            limits: duo_engine::Limits::default(),
        }
    }

    /// Whatever the noise, a released variance is null or within `[0, ((hi - lo) / 2)^2]` of its clamp
    /// bounds, and an income CV null or within the attribute's published `[0, 10]`: the composition in
    /// `duo_protocols::dp::compose` gets the bounds the plan clamped to.
    #[test]
    fn composed_answers_stay_in_their_ranges_under_heavy_noise() {
        let data = sample(Profile::Struggling);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let noisy = DpParams {
            epsilon: Some(0.01),
            ..DpParams::default()
        };
        for (src, max) in [
            (
                "variance(clamp(rent.amount, 0, 300000))",
                150_000f64 * 150_000.0,
            ),
            ("income_cv_12m()", 10.0),
        ] {
            let expr = duo_engine::parse::parse_expr(src).unwrap();
            let checked = duo_engine::check(&expr, &ctx).unwrap();
            let p = plan(&checked, &metas, Measure::PureEpsilon, &noisy).unwrap();
            for _ in 0..50 {
                match release(&p, &data).unwrap() {
                    Answer::Scalar {
                        value: Value::Float(x),
                    } => assert!((0.0..=max).contains(&x), "{src}: {x}"),
                    Answer::Scalar { value: Value::Null } => {}
                    other => panic!("{src}: {other:?}"),
                }
            }
        }
    }

    /// A DP histogram bins as the plaintext one does: `e0 <= x < e1`, ..., the last bin including its upper
    /// edge. With edges at values the data has (the last at its largest amount), a DP histogram at epsilon 1e6
    /// must give the plaintext counts exactly: its discrete Laplace noise has scale 1e-6, so a bin's noise is
    /// nonzero with probability about 2e^(-1e6), which is no false alarm in any number of runs.
    #[test]
    fn dp_histograms_count_values_on_the_edges_as_plaintext_does() {
        let data = sample(Profile::Reliable);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let column = duo_engine::parse::parse_expr("transactions.amount").unwrap();
        let mut values = input_values(&Input::Lineage(column), &data).unwrap();
        values.sort_unstable();
        values.dedup();
        let pick = |q: usize| values[(values.len() - 1) * q / 4];
        let edges: Vec<i64> = (0..=4).map(pick).collect();
        let src = format!(
            "histogram(transactions.amount, [{}])",
            edges
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let checked =
            duo_engine::check(&duo_engine::parse::parse_expr(&src).unwrap(), &ctx).unwrap();
        let exact = duo_engine::evaluate(&checked.expr, &data).unwrap();
        let Answer::Histogram { counts: want, .. } = &exact else {
            panic!("{exact:?}");
        };
        assert!(want.iter().sum::<u64>() > 0, "{want:?}");
        let sharp = DpParams {
            epsilon: Some(1e6),
            ..DpParams::default()
        };
        let p = plan(&checked, &metas, Measure::PureEpsilon, &sharp).unwrap();
        match release(&p, &data).unwrap() {
            Answer::Histogram { counts, .. } => assert_eq!(&counts, want, "edges {edges:?}"),
            other => panic!("{other:?}"),
        }
    }

    /// The plan of `src` on the sample's metadata, under `m`, with `params`.
    /// `src` released at epsilon 1e6 under the event unit (noise far below a cent at the tests' small clamps),
    /// and evaluated exactly.
    fn released_and_exact(
        src: &str,
        data: &BTreeMap<String, duo_engine::Dataset>,
    ) -> (Answer, Answer) {
        let metas = metas_of(data);
        let ctx = check_ctx(&metas);
        let c = duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap();
        let huge = DpParams {
            epsilon: Some(1e6),
            ..DpParams::default()
        };
        let released = release(
            &plan(&c, &metas, Measure::PureEpsilon, &huge).unwrap(),
            data,
        )
        .unwrap();
        (released, duo_engine::evaluate(&c.expr, data).unwrap())
    }

    /// A plaintext vector with its empty groups as 0, as a grouped DP release shows them.
    fn nulls_as_zero(a: Answer) -> Answer {
        let Answer::Vector { labels, values } = a else {
            panic!("{a:?}")
        };
        Answer::Vector {
            labels,
            values: values
                .into_iter()
                .map(|v| if v == Value::Null { Value::Int(0) } else { v })
                .collect(),
        }
    }

    /// A released vector of means equal to the exact one within 1e-6, empty groups empty in both.
    fn assert_means_close(released: &Answer, exact: &Answer) {
        let (
            Answer::Vector { labels, values },
            Answer::Vector {
                labels: l2,
                values: v2,
            },
        ) = (released, exact)
        else {
            panic!("{released:?} {exact:?}")
        };
        assert_eq!(labels, l2);
        for (a, b) in values.iter().zip(v2) {
            match (a, b) {
                (Value::Float(a), Value::Float(b)) => assert!((a - b).abs() < 1e-6, "{a} vs {b}"),
                (Value::Null, Value::Null) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    fn plan_of(src: &str, m: Measure, params: &DpParams) -> DpPlan {
        let data = sample(Profile::Reliable);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let checked =
            duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap();
        plan(&checked, &metas, m, params).unwrap()
    }

    /// A target accuracy is met on the answer the FI receives, not on the aggregate before a public factor: at
    /// `--alpha 1000` (beta 0.05) `sum(clamp(rent.amount, 0, 300000)) / 100` needs a noise scale of about
    /// 100,000 / ln(20) on the sum, so epsilon = 300,000 ln(20) / 100,000 = 8.99 (Laplace: alpha = scale
    /// ln(1/beta)); the zCDP plan needs sigma = 100,000 / z(0.975), rho = 300,000^2 / (2 sigma^2) (Gaussian:
    /// alpha = sigma z(1 - beta/2)). The average daily balance is a sum of balance weights over the days of the
    /// window (92 here), each transaction clamped to $10,000: sensitivity 1e6 x 92 cents on the sum. Before the
    /// fix the sum was planned to within alpha itself: epsilon 899.17 for the rent, 92 times too much for the
    /// balance.
    #[test]
    fn accuracy_targets_are_met_on_the_scaled_answer() {
        let z = 1.959_963_984_540_054; // the standard normal's 97.5% quantile
        let alpha = |a: f64| DpParams {
            alpha: Some(a),
            beta: Some(0.05),
            ..DpParams::default()
        };
        let days = 92.0;
        for (src, a, sensitivity, scale) in [
            (
                "sum(clamp(rent.amount, 0, 300000)) / 100",
                1_000.0,
                300_000.0,
                100.0,
            ),
            (
                "sum(clamp(rent.amount, 0, 300000)) * 0.01",
                1_000.0,
                300_000.0,
                100.0,
            ),
            ("avg_daily_balance_3m()", 100_000.0, 1e6 * days, days),
        ] {
            let p = plan_of(src, Measure::PureEpsilon, &alpha(a));
            let closed = sensitivity * 20f64.ln() / (a * scale);
            let cost = p.cost.to_f64();
            assert!(
                (cost / closed - 1.0).abs() < 1e-3,
                "{src}: epsilon {cost}, closed form {closed}"
            );
            let got = p.accuracy95.unwrap();
            assert!(got <= a && got > a * 0.999, "{src}: accuracy {got}");

            let p = plan_of(src, Measure::Zcdp, &alpha(a));
            let sigma = a * scale / z;
            let closed = sensitivity * sensitivity / (2.0 * sigma * sigma);
            let cost = p.cost.to_f64();
            assert!(
                (cost / closed - 1.0).abs() < 1e-3,
                "{src}: rho {cost}, closed form {closed}"
            );
            let got = p.accuracy95.unwrap();
            assert!(got <= a && got > a * 0.999, "{src}: accuracy {got}");
        }
    }

    /// The zCDP preview of `avg_daily_balance_3m()` at rho 1 answers (its noise scale, 6.5e7 on the sum of
    /// balance weights, sent OpenDP's term-by-term accuracy function past 120 s), with the closed-form bound:
    /// 1.96 sigma / 92 days, from above and within a part in a million.
    #[test]
    fn a_zcdp_preview_of_the_average_daily_balance_answers_at_rho_1() {
        let rho = DpParams {
            rho: Some(1.0),
            ..DpParams::default()
        };
        let p = plan_of("avg_daily_balance_3m()", Measure::Zcdp, &rho);
        assert_eq!(p.cost, "1".parse().unwrap());
        let sigma = 1e6 * 92.0 / 2f64.sqrt();
        let continuous = 1.959_963_984_540_054 * sigma / 92.0;
        let a = p.accuracy95.unwrap();
        assert!(
            a >= continuous && a <= continuous * (1.0 + 1e-6),
            "{a} vs {continuous}"
        );
    }

    /// Under a month unit the charged sensitivity is what one month of the loaded data can change: the declared
    /// `max_rows_per_month` rows, each within the clamp. A file with a fuller month is refused at load (before,
    /// it loaded and the charge understated the sensitivity up to 38 times); one at the bound loads, and a DP sum
    /// over it is planned at exactly that contribution: removing the fullest month moves the exact sum by at
    /// most the sensitivity the noise is scaled to.
    #[test]
    fn a_month_unit_charges_the_sensitivity_the_loaded_data_can_have() {
        let meta = parse_meta(
            "name = \"activity\"\nprivacy_unit = \"month\"\ntime_column = \"day\"\nmax_rows = 1000\n\
             max_rows_per_month = 3\n[[columns]]\nname = \"day\"\ntype = \"date\"\n[[columns]]\n\
             name = \"amount\"\ntype = \"money\"\nbounds = [0, 100000]\n",
        )
        .unwrap();
        let full =
            "day,amount\n2026-03-01,100000\n2026-03-09,100000\n2026-03-30,100000\n2026-04-02,5\n";
        let over = format!("{full}2026-03-31,1\n");
        let e = load_csv(over.as_bytes(), &meta, &IngestLimits::default()).unwrap_err();
        assert!(e.to_string().contains("2026-03 has 4 rows"), "{e}");
        let (ds, _) = load_csv(full.as_bytes(), &meta, &IngestLimits::default()).unwrap();
        let metas = BTreeMap::from([("activity".to_string(), meta.clone())]);
        let data = BTreeMap::from([("activity".to_string(), ds)]);
        let ctx = duo_engine::CheckContext {
            metas: &metas,
            today: chrono::NaiveDate::from_ymd_opt(2026, 11, 15).unwrap(),
            limits: duo_engine::Limits::default(),
        };
        let src = "sum(clamp(activity.amount, 0, 100000))";
        let checked =
            duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap();
        let one = DpParams {
            epsilon: Some(1.0),
            ..DpParams::default()
        };
        let p = plan(&checked, &metas, Measure::PureEpsilon, &one).unwrap();
        let (part, input) = &p.parts[0];
        assert_eq!(part.contribution().max_rows_per_unit, 3);
        // Discrete Laplace at epsilon 1: scale = sensitivity = 3 rows x 100,000.
        assert!(
            (part.scale() / 300_000.0 - 1.0).abs() < 1e-9,
            "{}",
            part.scale()
        );
        // What the data can contribute: the fullest month's clamped rows.
        let values = input_values(input, &data).unwrap();
        let march: i64 = values.iter().take(3).sum();
        assert_eq!(march, 300_000);
        assert!(march as f64 <= part.scale());
    }

    /// Released values are clamped into their public bounds (free post-processing). A count of no rows at
    /// epsilon 0.05 (discrete Laplace of scale 20) was negative about half the time, and a mean at epsilon
    /// 0.02 (noisy sum over noisy count) left its clamp often. Over 100 draws each: every count is in
    /// `[0, max_rows]` and every mean in `[0, 300000]` (or null); the clamps are deterministic, so the test has
    /// no false alarms. Power: without the clamp, the chance that 100 counts are all non-negative is about
    /// 0.51^100 < 1e-29. The count also sits on its bound at least 30 times in 100: each draw does with
    /// probability about 0.51 (noise <= 0), so fewer than 30 has probability under 1e-5 with the clamp (the
    /// false-alarm rate of that check), while without it a draw is exactly 0 with probability about 0.025.
    #[test]
    fn released_values_stay_within_their_public_bounds() {
        let data = sample(Profile::Reliable);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let plan_at = |src: &str, e: f64| {
            let checked =
                duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap();
            let eps = DpParams {
                epsilon: Some(e),
                ..DpParams::default()
            };
            plan(&checked, &metas, Measure::PureEpsilon, &eps).unwrap()
        };
        let none = plan_at("count(filter(rent, amount > 100000000))", 0.05);
        let max_rows = metas["rent"].max_rows as i64;
        let mut zeros = 0;
        for _ in 0..100 {
            match release(&none, &data).unwrap() {
                Answer::Scalar {
                    value: Value::Int(v),
                } => {
                    assert!((0..=max_rows).contains(&v), "{v}");
                    zeros += usize::from(v == 0);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(zeros >= 30, "{zeros} of 100 on the bound");
        let mean = plan_at("mean(clamp(rent.amount, 0, 300000))", 0.02);
        for _ in 0..100 {
            match release(&mean, &data).unwrap() {
                Answer::Scalar {
                    value: Value::Float(x),
                } => assert!((0.0..=300_000.0).contains(&x), "{x}"),
                Answer::Scalar { value: Value::Null } => {}
                other => panic!("{other:?}"),
            }
        }
    }

    /// A mean, a variance and a quantile show an expected error (they showed none): conservative closed forms
    /// from public parameters only, the width of the range the answer and the exact value share.
    #[test]
    fn means_variances_and_quantiles_show_an_expected_error() {
        let one = DpParams {
            epsilon: Some(1.0),
            ..DpParams::default()
        };
        for (src, want) in [
            ("mean(clamp(rent.amount, 0, 300000))", 300_000.0),
            (
                "variance(clamp(rent.amount, 0, 300000))",
                150_000.0 * 150_000.0,
            ),
            ("median(clamp(rent.amount, 100000, 200000))", 100_000.0),
            ("income_cv_12m()", 10.0),
        ] {
            let p = plan_of(src, Measure::PureEpsilon, &one);
            assert_eq!(p.accuracy95, Some(want), "{src}");
        }
        // A count's error is its noise's, at most the width of its public bounds.
        let p = plan_of("count(rent)", Measure::PureEpsilon, &one);
        let a = p.accuracy95.unwrap();
        assert!(a > 1.0 && a < 10.0, "{a}");
    }

    /// The sensitivity each new attribute's DP form is charged at, under each privacy unit: at epsilon 1 a
    /// discrete Laplace part has scale = sensitivity / its share of the budget. Values one per row move with the
    /// unit's rows (1 under `event`, the declared `max_rows_per_month` under `month`); a value a unit can move
    /// only one of (the count of overdrawn days, a month's income flag) moves by its bound under either unit.
    #[test]
    fn new_attributes_are_charged_their_sensitivity_under_each_unit() {
        let data = sample(Profile::Reliable);
        let event = metas_of(&data);
        let mut month = event.clone();
        for m in month.values_mut() {
            m.privacy_unit = PrivacyUnit::Month;
            m.max_rows_per_month = Some(40);
        }
        let one = DpParams {
            epsilon: Some(1.0),
            ..DpParams::default()
        };
        // (attribute, sensitivity of each part under event, under month with 40 rows a month)
        let cases: [(&str, &[f64], &[f64]); 9] = [
            ("utility_late_30d_count_12m", &[1.0], &[40.0]),
            ("subscription_paid_ratio_12m", &[1.0, 1.0], &[40.0, 40.0]),
            ("negative_balance_days_90d", &[90.0], &[90.0]),
            ("inflow_90d", &[1e6], &[4e7]),
            ("outflow_90d", &[1e6], &[4e7]),
            ("net_cash_flow_90d", &[1e6], &[4e7]),
            ("income_months_12m", &[1.0], &[1.0]),
            ("rent_to_income_ratio_12m", &[1e6, 1e6], &[4e7, 4e7]),
            ("liquidity_buffer_days_3m", &[9.2e7, 1e6], &[3.68e9, 4e7]),
        ];
        for (name, at_event, at_month) in cases {
            for (metas, want) in [(&event, at_event), (&month, at_month)] {
                let ctx = check_ctx(metas);
                let src = format!("{name}()");
                let checked =
                    duo_engine::check(&duo_engine::parse::parse_expr(&src).unwrap(), &ctx).unwrap();
                let p = plan(&checked, metas, Measure::PureEpsilon, &one).unwrap();
                assert_eq!(p.cost, "1".parse().unwrap(), "{name}");
                assert_eq!(p.parts.len(), want.len(), "{name}");
                let share = want.len() as f64;
                for ((part, _), s) in p.parts.iter().zip(want) {
                    assert!(
                        (part.scale() / (s * share) - 1.0).abs() < 1e-9,
                        "{name}: scale {} for sensitivity {s}",
                        part.scale()
                    );
                }
            }
        }
        // The account age, like the streak, is refused with its reason.
        let ctx = check_ctx(&event);
        let checked = duo_engine::check(
            &duo_engine::parse::parse_expr("account_age_months()").unwrap(),
            &ctx,
        )
        .unwrap();
        let e = plan(&checked, &event, Measure::PureEpsilon, &one).unwrap_err();
        assert!(e.to_string().contains("unsuited"), "{e}");
    }

    /// Released at a large epsilon, each new attribute lands near its exact value on both samples, and always
    /// within its public bounds. At epsilon 2000 a part's discrete Laplace scale is at most 2 x sensitivity /
    /// 2000 (two parts share the budget): 0.001 for the counts, 0.09 for the overdrawn days, 1,000 cents for the
    /// cash flows, 92,000 for the liquidity buffer's balance weights. The tolerance is 30 scales for a sum (a
    /// miss has probability about e^-30 < 1e-13 per part, so the false-alarm rate over the 18 releases is below
    /// 1e-11); for a ratio n/d, (t_n + r t_d) / (d - t_d) with t = 30 scales of each part and r the exact ratio,
    /// which bounds |n'/d' - n/d| when both parts are within t. Power: a release that ignored the data, or used
    /// the wrong window or part, misses these tolerances on the sample (the exact values differ by far more).
    #[test]
    fn new_attributes_release_near_their_exact_values() {
        let big = DpParams {
            epsilon: Some(2000.0),
            ..DpParams::default()
        };
        let end = chrono::NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        for profile in [Profile::Reliable, Profile::Struggling] {
            let data = sample(profile);
            let metas = metas_of(&data);
            let ctx = check_ctx(&metas);
            for name in [
                "utility_late_30d_count_12m",
                "subscription_paid_ratio_12m",
                "negative_balance_days_90d",
                "inflow_90d",
                "outflow_90d",
                "net_cash_flow_90d",
                "income_months_12m",
                "rent_to_income_ratio_12m",
                "liquidity_buffer_days_3m",
            ] {
                let form = duo_engine::catalogue::dp_form(name).unwrap();
                let src = format!("{name}()");
                let checked =
                    duo_engine::check(&duo_engine::parse::parse_expr(&src).unwrap(), &ctx).unwrap();
                let p = plan(&checked, &metas, Measure::PureEpsilon, &big).unwrap();
                let exact = duo_engine::catalogue::compute(name, end, &data)
                    .unwrap()
                    .as_f64()
                    .unwrap();
                let got = match release(&p, &data).unwrap() {
                    Answer::Scalar { value } => value.as_f64().unwrap(),
                    other => panic!("{other:?}"),
                };
                let e = duo_engine::catalogue::entry(name).unwrap();
                assert!((e.bounds.lo..=e.bounds.hi).contains(&got), "{name}: {got}");
                let t: Vec<f64> = p
                    .parts
                    .iter()
                    .map(|(part, _)| 30.0 * part.scale())
                    .collect();
                let tol = if form.parts.len() == 2 {
                    let den: i64 = duo_engine::catalogue::dp_values(name, 1, end, &data)
                        .unwrap()
                        .iter()
                        .sum();
                    // |n'/d' - n/d| for |n' - n| <= t_n, |d' - d| <= t_d: at most (t_n + (n/d) t_d) / (d - t_d).
                    (t[0] + exact * t[1]) / (den as f64 - t[1])
                } else {
                    t[0]
                };
                assert!(
                    (got - exact).abs() <= tol,
                    "{name}, {profile}: {got} vs exact {exact} (tolerance {tol})"
                );
            }
        }
    }

    /// A standard deviation costs what a variance costs (the same three noisy parts; the root is
    /// post-processing) and shows its expected error on its own scale, `(hi - lo) / 2`; a minimum and a
    /// maximum are the quantile mechanism at q = 0 and 1, charged the stated epsilon, with the span of their
    /// candidates as expected error. At epsilon 1e6 the standard deviation is the plaintext one to within 2%
    /// (the bound argued below, failing with probability under 1e-8), and the minimum (maximum) a candidate at
    /// or below (at or above) the exact one, within the public bounds (a candidate past it has at least one row
    /// on the wrong side, a score gap of 1 against a noise scale of 2e-6 on the scores).
    #[test]
    fn stdev_min_and_max_are_dp_releases() {
        let one = DpParams {
            epsilon: Some(1.0),
            ..DpParams::default()
        };
        let var = plan_of(
            "variance(clamp(rent.amount, 0, 300000))",
            Measure::PureEpsilon,
            &one,
        );
        let sd = plan_of(
            "stdev(clamp(rent.amount, 0, 300000))",
            Measure::PureEpsilon,
            &one,
        );
        assert_eq!(sd.cost, var.cost);
        assert_eq!(sd.cost, "1".parse().unwrap());
        assert_eq!(sd.accuracy95, Some(150_000.0));
        for src in [
            "min(clamp(rent.amount, 0, 300000))",
            "max(clamp(rent.amount, 0, 300000))",
        ] {
            let p = plan_of(src, Measure::PureEpsilon, &one);
            assert_eq!(p.cost, "1".parse().unwrap(), "{src}");
            assert_eq!(p.accuracy95, Some(300_000.0), "{src}");
            assert_eq!(p.mechanism, "permute-and-flip", "{src}");
            let p = plan_of(
                src,
                Measure::Zcdp,
                &DpParams {
                    rho: Some(0.1),
                    ..DpParams::default()
                },
            );
            assert_eq!(p.cost, "0.1".parse().unwrap(), "{src}");
        }
        // A target accuracy cannot be planned for a standard deviation (three parts, no accuracy function).
        let data = sample(Profile::Reliable);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let checked = |src: &str| {
            duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap()
        };
        let alpha = DpParams {
            alpha: Some(100.0),
            beta: Some(0.05),
            ..DpParams::default()
        };
        let e = plan(
            &checked("stdev(clamp(rent.amount, 0, 300000))"),
            &metas,
            Measure::PureEpsilon,
            &alpha,
        )
        .unwrap_err();
        assert!(e.to_string().contains("epsilon"), "{e}");

        let huge = DpParams {
            epsilon: Some(1e6),
            ..DpParams::default()
        };
        let exact = |src: &str| match duo_engine::evaluate(&checked(src).expr, &data).unwrap() {
            Answer::Scalar { value } => value.as_f64().unwrap(),
            other => panic!("{other:?}"),
        };
        let released = |src: &str| match release(
            &plan(&checked(src), &metas, Measure::PureEpsilon, &huge).unwrap(),
            &data,
        )
        .unwrap()
        {
            Answer::Scalar { value } => value.as_f64().unwrap(),
            other => panic!("{other:?}"),
        };
        // The sum of squares keeps some noise: sensitivity 300,000^2 at epsilon 1e6 / 3 is a Laplace scale of
        // 2.7e5, beyond 20 scales with probability 2e-9; over the 24 rents that moves the variance (about 1.6e7)
        // by under 2.3e5, the standard deviation (about 4,000) by under 1%; 2% is the tolerance.
        let src = "stdev(clamp(rent.amount, 0, 300000))";
        let (got, want) = (released(src), exact(src));
        assert!(
            (got - want).abs() <= 0.02 * want.max(1.0),
            "{got} vs {want}"
        );
        let min = exact("min(clamp(rent.amount, 0, 300000))");
        let max = exact("max(clamp(rent.amount, 0, 300000))");
        for _ in 0..10 {
            let low = released("min(clamp(rent.amount, 0, 300000))");
            assert!((0.0..=min).contains(&low), "{low} vs {min}");
            let high = released("max(clamp(rent.amount, 0, 300000))");
            assert!((max..=300_000.0).contains(&high), "{high} vs {max}");
        }
    }

    /// A count, sum or mean per month over the dataset's public window is one DP release: one plan, one cost
    /// equal to the ungrouped aggregate's (a payment is in one month: parallel composition), one vector with
    /// the ungrouped expected error for each month. Under negligible noise (epsilon 1e6 over $100 clamps,
    /// every scale at most 0.02: P(noise != 0) < 1e-40 per month) it is the plaintext `by_month`, labels
    /// and all; a mean per month is its sum over its count. Other aggregates per month are refused.
    #[test]
    fn by_month_is_one_grouped_release_costing_one_aggregate() {
        let one = DpParams {
            epsilon: Some(1.0),
            ..DpParams::default()
        };
        let income = "clamp(filter(transactions, category == \"income\").amount, 0, 1000000)";
        let grouped = plan_of(
            &format!("by_month(sum, {income})"),
            Measure::PureEpsilon,
            &one,
        );
        let ungrouped = plan_of(&format!("sum({income})"), Measure::PureEpsilon, &one);
        assert_eq!(grouped.cost, ungrouped.cost);
        assert_eq!(grouped.cost, "1".parse().unwrap());
        assert_eq!(grouped.accuracy95, ungrouped.accuracy95);
        assert!(
            grouped.mechanism.contains("each of the 24 months"),
            "{}",
            grouped.mechanism
        );
        let p = plan_of(
            "by_month(count, rent.amount)",
            Measure::Zcdp,
            &DpParams {
                rho: Some(0.2),
                ..DpParams::default()
            },
        );
        assert_eq!(p.cost, "0.2".parse().unwrap());
        let p = plan_of(
            &format!("by_month(mean, {income})"),
            Measure::PureEpsilon,
            &one,
        );
        assert_eq!(p.cost, "1".parse().unwrap());
        assert_eq!(p.accuracy95, Some(1_000_000.0));

        let data = sample(Profile::Struggling);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let checked = |src: &str| {
            duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap()
        };
        // Exact comparisons over $100 clamps: the sum's scale is then 1e4 / 1e6 (half that budget for a mean).
        let small = "clamp(filter(transactions, category == \"income\").amount, 0, 10000)";
        for src in [
            format!("by_month(sum, {small})"),
            "by_month(count, rent.amount)".to_string(),
            "by_month(count, transactions.amount)".to_string(),
        ] {
            // A month with no rows sums to 0 in a DP release (plaintext shows it empty: a DP answer cannot
            // say which months have rows).
            let (released, exact) = released_and_exact(&src, &data);
            assert_eq!(released, nulls_as_zero(exact), "{src}");
        }
        let (released, exact) = released_and_exact(&format!("by_month(mean, {small})"), &data);
        assert_means_close(&released, &exact);
        let e = plan(
            &checked("by_month(max, rent.amount)"),
            &metas,
            Measure::PureEpsilon,
            &one,
        )
        .unwrap_err();
        assert!(e.to_string().contains("count, sum or mean"), "{e}");
    }

    /// `by_category` over the sample's transactions: one request, one cost equal to the ungrouped aggregate's
    /// (event unit: a payment is in one category), one vector labelled with the 15 declared categories (all of
    /// them, in the declared order, whatever the rows), the ungrouped expected error for each. Under negligible
    /// noise (epsilon 1e6 over $100 clamps: every scale at most 0.02, P(noise != 0) < 1e-40 per entry) it is
    /// the plaintext `by_category`; a mean per category is its sum over its count.
    #[test]
    fn by_category_is_one_grouped_release_costing_one_aggregate() {
        let one = DpParams {
            epsilon: Some(1.0),
            ..DpParams::default()
        };
        let spend = "clamp(transactions.amount, -500000, 0)";
        let grouped = plan_of(
            &format!("by_category(sum, {spend}, category)"),
            Measure::PureEpsilon,
            &one,
        );
        let ungrouped = plan_of(&format!("sum({spend})"), Measure::PureEpsilon, &one);
        assert_eq!(grouped.cost, ungrouped.cost);
        assert_eq!(grouped.cost, "1".parse().unwrap());
        assert_eq!(grouped.accuracy95, ungrouped.accuracy95);
        assert!(
            grouped
                .mechanism
                .contains("each of the 15 categories of `category`"),
            "{}",
            grouped.mechanism
        );
        let rho = DpParams {
            rho: Some(0.2),
            ..DpParams::default()
        };
        let p = plan_of(
            "by_category(count, transactions.amount, category)",
            Measure::Zcdp,
            &rho,
        );
        assert_eq!(p.cost, "0.2".parse().unwrap());
        assert_eq!(
            p.accuracy95,
            plan_of("count(transactions.amount)", Measure::Zcdp, &rho).accuracy95
        );
        let p = plan_of(
            &format!("by_category(mean, {spend}, category)"),
            Measure::PureEpsilon,
            &one,
        );
        assert_eq!(p.cost, "1".parse().unwrap());
        assert_eq!(p.accuracy95, Some(500_000.0));

        let data = sample(Profile::Struggling);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let checked = |src: &str| {
            duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap()
        };
        let small = "clamp(transactions.amount, -10000, 10000)";
        for src in [
            format!("by_category(sum, {small}, category)"),
            "by_category(count, transactions.amount, category)".to_string(),
            "by_category(count, filter(transactions, amount > 0).date, category)".to_string(),
        ] {
            let (released, exact) = released_and_exact(&src, &data);
            let Answer::Vector { labels, .. } = &exact else {
                panic!("{exact:?}")
            };
            assert_eq!(labels, &duo_engine::sample::TRANSACTION_CATEGORIES);
            // A category with no rows is 0 in a DP release (plaintext shows it empty).
            assert_eq!(released, nulls_as_zero(exact), "{src}");
        }
        let (released, exact) =
            released_and_exact(&format!("by_category(mean, {small}, category)"), &data);
        let Answer::Vector { values, .. } = &released else {
            panic!("{released:?}")
        };
        assert!(values.iter().any(|v| matches!(v, Value::Float(_))));
        assert_means_close(&released, &exact);
        let e = plan(
            &checked("by_category(max, transactions.amount, category)"),
            &metas,
            Measure::PureEpsilon,
            &one,
        )
        .unwrap_err();
        assert!(e.to_string().contains("count, sum or mean"), "{e}");
    }

    /// Under a `month` unit (k rows a month, which may fall in several categories) a by-category release is
    /// still charged one ungrouped release at contribution k: the unit's rows move the whole vector by at most
    /// k M in L1 (and so in L2), the ungrouped sensitivity (`duo_protocols::dp::grouped`, whose tests check the
    /// charge against OpenDP's privacy maps and the bound on neighbours whose rows spread over groups). Here:
    /// the grouped charge and noise scale equal the ungrouped ones at k = 1, 4 and 31, both measures, and grow
    /// with k as the ungrouped ones do (never the event unit's).
    #[test]
    fn by_category_under_a_month_unit_costs_one_release_at_k_rows() {
        let data = sample(Profile::Reliable);
        for k in [1u32, 4, 31] {
            let mut metas = metas_of(&data);
            if let Some(t) = metas.get_mut("transactions") {
                t.privacy_unit = PrivacyUnit::Month;
                t.max_rows_per_month = Some(k);
            }
            let ctx = check_ctx(&metas);
            let planned = |src: &str, m, params: &DpParams| {
                let c =
                    duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap();
                plan(&c, &metas, m, params).unwrap()
            };
            for (m, params) in [
                (
                    Measure::PureEpsilon,
                    DpParams {
                        epsilon: Some(0.5),
                        ..DpParams::default()
                    },
                ),
                (
                    Measure::Zcdp,
                    DpParams {
                        rho: Some(0.1),
                        ..DpParams::default()
                    },
                ),
            ] {
                for (grouped, ungrouped) in [
                    (
                        "by_category(sum, clamp(transactions.amount, -20000, 50000), category)",
                        "sum(clamp(transactions.amount, -20000, 50000))",
                    ),
                    (
                        "by_category(count, transactions.amount, category)",
                        "count(transactions.amount)",
                    ),
                ] {
                    let (g, u) = (planned(grouped, m, &params), planned(ungrouped, m, &params));
                    assert_eq!(g.cost, u.cost, "k {k}: {grouped}");
                    assert_eq!(g.accuracy95, u.accuracy95, "k {k}: {grouped}");
                    let (gs, us) = (g.parts[0].0.scale(), u.parts[0].0.scale());
                    assert_eq!(gs, us, "k {k}: {grouped}");
                    // The scale is k times the event unit's: the sensitivity is k M (or k).
                    let event = plan_of(ungrouped, m, &params).parts[0].0.scale();
                    assert!(
                        (gs - f64::from(k) * event).abs() <= 1e-9 * gs,
                        "k {k}: {gs} vs {event}"
                    );
                }
            }
        }
    }

    /// A grouped answer withholds an entry exactly when its noisy count is below the threshold: the decision
    /// reads the released noisy counts only (the function gets nothing else); for a sum under suppression the
    /// counts are the second part's, and a mean's entries are its sums over its counts.
    #[test]
    fn suppression_reads_the_noisy_counts_only() {
        let labels = || vec!["a".to_string(), "b".into(), "c".into()];
        let counts = dp::Answer::Counts(vec![9, 10, -2]);
        assert_eq!(
            grouped_answer(std::slice::from_ref(&counts), false, Some(10), labels()).unwrap(),
            Answer::Vector {
                labels: labels(),
                values: vec![Value::Null, Value::Int(10), Value::Null]
            }
        );
        assert_eq!(
            grouped_answer(std::slice::from_ref(&counts), false, None, labels()).unwrap(),
            Answer::Vector {
                labels: labels(),
                values: vec![Value::Int(9), Value::Int(10), Value::Int(-2)]
            }
        );
        let sums = dp::Answer::Counts(vec![900, 1_000, 5]);
        assert_eq!(
            grouped_answer(&[sums.clone(), counts.clone()], false, Some(1), labels()).unwrap(),
            Answer::Vector {
                labels: labels(),
                values: vec![Value::Int(900), Value::Int(1_000), Value::Null]
            }
        );
        assert_eq!(
            grouped_answer(&[sums, counts], true, Some(10), labels()).unwrap(),
            Answer::Vector {
                labels: labels(),
                values: vec![Value::Null, Value::Float(100.0), Value::Null]
            }
        );
    }

    /// Small-count suppression through the plan. Costs: a count or mean keeps its parts and cost; a sum gets a
    /// grouped count beside it, half the stated budget each (the cost stays as stated; the sum's expected error
    /// is the half-budget one's); a target accuracy cannot be split and is refused. Under negligible noise
    /// (epsilon 1e6, as above) exactly the categories with fewer than 3 rows are withheld. Under heavy noise
    /// (epsilon 0.1 on counts: discrete Laplace of scale 10) a category with **no** rows is released with
    /// probability P(noise >= 3) = e^(-0.3) / (1 + e^(-0.1)) = 0.3889 per run, which a rule on exact counts
    /// would never do: over 200 runs, the test fails if it is never released (probability 0.611^200 < 1e-42
    /// under the rule as built: no false alarm) and catches a rule on exact counts with certainty.
    #[test]
    fn small_count_suppression_is_decided_on_noisy_counts() {
        let data = sample(Profile::Struggling);
        let metas = metas_of(&data);
        let ctx = check_ctx(&metas);
        let checked = |src: &str| {
            duo_engine::check(&duo_engine::parse::parse_expr(src).unwrap(), &ctx).unwrap()
        };
        let eps = |e: f64| DpParams {
            epsilon: Some(e),
            ..DpParams::default()
        };
        let sum = checked("by_category(sum, clamp(transactions.amount, -10000, 10000), category)");
        let plain = plan(&sum, &metas, Measure::PureEpsilon, &eps(1.0)).unwrap();
        let suppressed = plan_with(&sum, &metas, Measure::PureEpsilon, &eps(1.0), Some(3)).unwrap();
        assert_eq!(plain.parts.len(), 1);
        assert_eq!(suppressed.parts.len(), 2);
        assert!(matches!(
            suppressed.parts[1].0.query(),
            Query::GroupedCount { groups: 15 }
        ));
        assert_eq!(suppressed.cost, plain.cost);
        let half = plan(
            &checked("by_category(sum, clamp(transactions.amount, -10000, 10000), category)"),
            &metas,
            Measure::PureEpsilon,
            &eps(0.5),
        )
        .unwrap();
        assert_eq!(suppressed.accuracy95, half.accuracy95);
        assert!(
            suppressed.mechanism.contains("below 3 is withheld")
                && suppressed.mechanism.contains("half of the stated budget"),
            "{}",
            suppressed.mechanism
        );
        let alpha = DpParams {
            alpha: Some(1000.0),
            ..DpParams::default()
        };
        assert!(plan_with(&sum, &metas, Measure::PureEpsilon, &alpha, Some(3)).is_err());
        let count = checked("by_category(count, transactions.amount, category)");
        let c = plan_with(&count, &metas, Measure::PureEpsilon, &eps(1.0), Some(3)).unwrap();
        assert_eq!(c.parts.len(), 1);
        assert_eq!(c.cost, "1".parse().unwrap());
        assert!(!c.mechanism.contains("half"), "{}", c.mechanism);

        // Negligible noise: withheld exactly where the exact count is below 3.
        let Answer::Vector { values: exact, .. } =
            duo_engine::evaluate(&count.expr, &data).unwrap()
        else {
            panic!()
        };
        let few: Vec<bool> = exact
            .iter()
            .map(|v| matches!(v, Value::Int(n) if *n < 3))
            .collect();
        assert!(
            few.iter().any(|f| *f) && few.iter().any(|f| !*f),
            "{exact:?}"
        );
        for (src, expr) in [("count", &count), ("sum", &sum)] {
            let p = plan_with(expr, &metas, Measure::PureEpsilon, &eps(1e6), Some(3)).unwrap();
            let Answer::Vector { values, .. } = release(&p, &data).unwrap() else {
                panic!()
            };
            for (v, f) in values.iter().zip(&few) {
                assert_eq!(*v == Value::Null, *f, "{src}: {values:?}");
            }
        }

        // Heavy noise: an empty category (no rows: spending categories among credits) is sometimes released.
        let credits =
            checked("by_category(count, filter(transactions, amount > 0).amount, category)");
        let Answer::Vector { values: exact, .. } =
            duo_engine::evaluate(&credits.expr, &data).unwrap()
        else {
            panic!()
        };
        let empty = exact
            .iter()
            .position(|v| *v == Value::Int(0))
            .expect("a category with no credits");
        let p = plan_with(&credits, &metas, Measure::PureEpsilon, &eps(0.1), Some(3)).unwrap();
        let released = (0..200)
            .filter(|_| match release(&p, &data).unwrap() {
                Answer::Vector { values, .. } => values[empty] != Value::Null,
                _ => false,
            })
            .count();
        assert!(
            released > 0,
            "an empty category was withheld in all 200 runs"
        );
    }

    /// Before noise, the DP forms compute exactly the plaintext attributes (with clamps too wide to bind).
    #[test]
    fn the_dp_forms_inputs_reproduce_the_plaintext_attributes() {
        let end = chrono::NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        for profile in [Profile::Reliable, Profile::Struggling] {
            let data = sample(profile);
            let wide = 1_000_000_000_000;
            // Average daily balances: sum of weights / days.
            for (months, name) in [(3, "avg_daily_balance_3m"), (12, "avg_daily_balance_12m")] {
                let from = duo_engine::check::months_before(end, months - 1).unwrap();
                let days = (end - from).num_days() + 1;
                let w = input_values(
                    &Input::BalanceWeights {
                        from,
                        to: end,
                        per_tx: wide,
                    },
                    &data,
                )
                .unwrap();
                let avg = w.iter().map(|v| i128::from(*v)).sum::<i128>() as f64 / days as f64;
                let Value::Int(exact) = duo_engine::catalogue::compute(name, end, &data).unwrap()
                else {
                    panic!()
                };
                assert!(
                    (avg - exact as f64).abs() <= 0.5,
                    "{name}: {avg} vs {exact}"
                );
            }
            // Income CV from the monthly totals.
            let from = duo_engine::check::months_before(end, 11).unwrap();
            let totals = input_values(
                &Input::MonthlyIncome {
                    from,
                    to: end,
                    per_tx: wide,
                    per_month: wide,
                    squared: false,
                },
                &data,
            )
            .unwrap();
            assert_eq!(totals.len(), 12);
            let n = 12.0;
            let mean = totals.iter().map(|t| *t as f64).sum::<f64>() / n;
            let var = totals
                .iter()
                .map(|t| (*t as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let Value::Float(cv) =
                duo_engine::catalogue::compute("income_cv_12m", end, &data).unwrap()
            else {
                panic!()
            };
            assert!(
                (var.sqrt() / mean - cv).abs() < 1e-9,
                "{} vs {cv}",
                var.sqrt() / mean
            );
        }
    }
}

/// The `dp` backend: a noisy aggregate from OpenDP's mechanisms, charged to the privacy ledger.
#[derive(Debug, Clone, Copy)]
pub struct Dp;

impl super::Backend for Dp {
    fn kind(&self) -> duo_policies::Backend {
        duo_policies::Backend::Dp
    }

    fn admit(&self, ask: &super::Ask<'_>) -> Result<(), Error> {
        super::plaintext::refuse_foreign_params(ask)?;
        if ask.dp.is_none() {
            return Err(Error::Refused(
                "a dp request states its cost: `epsilon`, `rho`, or a target accuracy `alpha` (on the command line \
                 --epsilon, --rho or --alpha)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The cost, and whether the budgets allow it, from public facts only.
    fn plan(&self, ctx: &super::Ctx<'_>, ask: &super::Ask<'_>) -> Result<super::Plan, Error> {
        use crate::store::prelude::*;
        let params = ask
            .dp
            .ok_or_else(|| Error::Internal("a dp request without its parameters".into()))?;
        let ledger = ctx.conn.ledger()?;
        let metas = ctx.cache.metas(ctx.conn)?;
        // The policy's small-count suppression of grouped releases (a preview without a policy has none).
        let min_group_count = ctx.policy.and_then(|p| p.min_group_count());
        let plan = plan_with(
            ctx.checked,
            &metas,
            ledger.measure(),
            params,
            min_group_count,
        )?;
        // A batch charges each question against the datasets it reads, so a dataset's budget pays only for
        // the questions about it; a single release is one charge.
        let charges: Vec<duo_policies::Charge> = if ctx.checked.items.is_empty() {
            vec![duo_policies::Charge {
                principal: ask.principal.to_string(),
                datasets: ctx.checked.datasets.clone(),
                amount: plan.cost,
            }]
        } else {
            ctx.checked
                .items
                .iter()
                .zip(plan.items())
                .map(|(item, p)| duo_policies::Charge {
                    principal: ask.principal.to_string(),
                    datasets: item.datasets.clone(),
                    amount: p.cost,
                })
                .collect()
        };
        let left = check_all(&ledger, &charges);
        let exceeded = match &left {
            Err(duo_policies::ledger::LedgerError::Exceeded(e)) => Some(e.clone()),
            _ => None,
        };
        Ok(super::Plan {
            cost: Some(plan.cost),
            budget_left: Some(left.map_err(|e| e.to_string())),
            exceeded,
            accuracy95: plan.accuracy95,
            mechanism: Some(plan.mechanism.clone()),
            scoring: None,
            dp: Some(super::DpCharge {
                ledger,
                plan,
                charges,
            }),
        })
    }

    /// Draw the noisy answer, once the budgets are known to allow the charge. The charge itself is saved by
    /// `charge` in the release's record stage, with its history and log entry, so an answer that fails to
    /// compute (recorded as a denial) charges nothing; and since both happen in the release transaction, once
    /// it commits the same question is answered from the store, never sampled again.
    fn answer(&self, ctx: &super::Ctx<'_>, plan: &super::Plan) -> Result<Option<Answer>, Error> {
        let d = plan
            .dp
            .as_ref()
            .ok_or_else(|| Error::Internal("a dp answer without its plan".into()))?;
        check_all(&d.ledger, &d.charges).map_err(|e| Error::Refused(e.to_string()))?;
        let loaded = crate::owner::load_versions(ctx.cache, ctx.conn, ctx.versions)?;
        release(&d.plan, &loaded).map(Some)
    }
}

/// Charge the ledger for a released answer and keep the charge in the history and the log, inside the
/// release transaction.
pub(crate) fn charge(
    tx: &crate::store::Tx<'_>,
    request: u64,
    plan: &super::Plan,
) -> Result<(), Error> {
    use crate::store::prelude::*;
    let Some(d) = &plan.dp else { return Ok(()) };
    // All of a batch's charges or none: they are made in the release transaction, which a refusal rolls back.
    let mut ledger = d.ledger.clone();
    for c in &d.charges {
        ledger
            .charge(c)
            .map_err(|e| Error::Refused(e.to_string()))?;
        tx.save_ledger(&ledger)?;
        tx.record_charge(request, c)?;
    }
    Ok(())
}

/// Whether the budgets allow every charge, made one after the other (a batch's; a single release has one):
/// the smallest amount left after any of them, or the first refusal.
fn check_all(
    ledger: &duo_policies::Ledger,
    charges: &[duo_policies::Charge],
) -> Result<Amount, duo_policies::ledger::LedgerError> {
    let mut ledger = ledger.clone();
    let mut left = Amount::MAX;
    for c in charges {
        left = left.min(ledger.charge(c)?.left_after);
    }
    Ok(left)
}
