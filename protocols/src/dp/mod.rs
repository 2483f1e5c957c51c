//! Differentially private releases on [OpenDP](https://opendp.org) (`opendp` 0.16, feature `contrib`).
//!
//! A release is planned from public parameters only ([`plan`]): the [`Query`] with its public bounds, the
//! privacy unit's [`Contribution`] bound, the node's ledger [`Measure`], and a [`Budget`] (a stated
//! epsilon or rho, or a target accuracy). The [`Plan`] knows its cost, an [`Amount`] (OpenDP's privacy map
//! at the contribution bound, rounded up to 1e-9 units), and its expected error before any data is
//! touched; then [`Plan::release`] runs it on the column. Answers built from several noisy parts (a mean
//! over a noisy count, a variance, a coefficient of variation) are composed by the post-processing
//! functions of [`compose`].
//!
//! # What is protected
//! Neighbouring datasets differ by adding or removing *all the rows of one privacy unit*, at most
//! [`Contribution::max_rows_per_unit`] rows: one payment (event level, bound 1) or one month of one person's
//! activity (month level, bound = the dataset's declared rows per month). This is OpenDP's
//! `SymmetricDistance` at `d_in = max_rows_per_unit`. Replacing a unit's rows by other rows is two such
//! steps and costs twice as much in the worst case (group privacy). The number of rows is *not* public:
//! nothing here uses it except as data.
//!
//! # Exactness
//! Inputs are `i64` (money is integer cents), sums are exact integers (see [`sum`] for the overflow
//! semantics, which match OpenDP's), noise is discrete (Laplace for pure DP, Gaussian for zCDP), drawn by
//! OpenDP's samplers from OpenSSL's generator; floats appear only after noise (means, variances). Our
//! aggregations are faster than OpenDP's generic transformations but compute the same functions (tested
//! against them), and the noise is OpenDP's own measurement, so OpenDP's privacy proof applies.
//!
//! # Ledger
//! One measure per node ([`Measure`]), and amounts in it ([`Amount`]), both defined in [`units`] for the
//! whole workspace (the owner's ledger and policies use these types). Under zCDP a pure-DP mechanism
//! (chosen when the request states an epsilon) is charged `rho = epsilon^2 / 2` through OpenDP's
//! `make_pureDP_to_zCDP`. Display an (epsilon, delta) equivalent of a rho with [`epsilon_delta`] (or with
//! [`zcdp_epsilon`], the rounded-up bound the owner's commands show).
//!
//! Layout: one folder per mechanism ([`sum`], [`histogram`], [`quantile`]) with its notes (citations,
//! semantics and proof sketch, runtime, utility) and its tests; [`compose`] for answers composed from
//! noisy parts; [`units`] for the measure and amounts.

// OpenDP's measurement and transformation types are long by nature; naming each would hide them.
#![allow(clippy::type_complexity)]

pub mod accuracy;
pub mod compose;
pub mod grouped;
pub mod histogram;
pub mod quantile;
pub mod sum;
pub mod units;

#[cfg(test)]
mod tests;

use std::fmt;

use opendp::accuracy::{
    accuracy_to_discrete_laplacian_scale, discrete_laplacian_scale_to_accuracy,
};
use opendp::combinators::{
    make_chain_mt, make_composition, make_pureDP_to_zCDP, CompositionMeasure,
};
use opendp::core::{Function, Measurement, Metric, MetricSpace, StabilityMap, Transformation};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::{ErrorVariant, Fallible};
use opendp::measurements::{make_gaussian, make_laplace, make_noisy_max, TopKMeasure};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L2Distance, LInfDistance, SymmetricDistance};
use opendp::transformations::make_count;
use serde::{Deserialize, Serialize};

pub use units::{
    epsilon_delta, zcdp_epsilon, Amount, AmountError, Measure, UnknownMeasure, MAX_NANOS,
    NANOS_PER_UNIT,
};

/// A transformation from rows to a vector of counts (a histogram's bins, a grouped count's groups), with its
/// output metric `M` (L1 for Laplace noise, L2 for Gaussian).
type CountsTransformation<M> = Transformation<
    VectorDomain<AtomDomain<i64>>,
    SymmetricDistance,
    VectorDomain<AtomDomain<i64>>,
    M,
>;

/// Errors from planning or running a release. Every variant but [`DpError::OpenDp`] is the caller's
/// mistake or a refusal decided from public parameters only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// The query's public parameters are unusable (empty or unsorted edges, `lo > hi`, ...).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The bounds and contribution could overflow `i64` (sensitivity, or squares for a variance).
    #[error("refused: {0} could overflow a 64-bit integer; narrow the bounds")]
    Overflow(&'static str),
    /// The budget is not a usable amount (negative, not finite, zero, or out of range).
    #[error("invalid budget: {0}")]
    InvalidBudget(String),
    /// A rho was stated to a pure-epsilon ledger, which cannot account for it.
    #[error("a rho (zCDP) budget cannot be charged to a pure-epsilon ledger")]
    MeasureMismatch,
    /// The query has no accuracy function, so a target accuracy cannot be translated to a cost.
    #[error("{0} has no accuracy guarantee to plan for; state an epsilon or rho")]
    NoAccuracyFunction(&'static str),
    /// The cost exceeds the largest representable amount.
    #[error("cost too large to charge")]
    CostTooLarge,
    /// OpenDP refused a construction or failed while running; the message is OpenDP's.
    #[error("OpenDP: {0}")]
    OpenDp(String),
}

impl DpError {
    fn opendp(e: opendp::error::Error) -> DpError {
        DpError::OpenDp(e.variant.to_string() + ": " + e.message.as_deref().unwrap_or(""))
    }
}

/// How many rows one privacy unit can add or remove: 1 for event-level data, the dataset's declared
/// per-month bound for month-level data. Public, declared with the dataset, never read from the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Contribution {
    /// Rows per unit; at least 1.
    pub max_rows_per_unit: u32,
}

impl Contribution {
    /// One row per unit (event-level privacy).
    pub const EVENT: Contribution = Contribution {
        max_rows_per_unit: 1,
    };
}

/// What to release. All parameters are public; bounds clamp the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Query {
    /// Number of rows; answer [`Answer::Integer`].
    Count,
    /// Sum of rows clamped into `[lo, hi]` (cents, days, ...); answer [`Answer::Integer`].
    Sum {
        /// Lower clamp bound (greater than `i64::MIN`).
        lo: i64,
        /// Upper clamp bound.
        hi: i64,
    },
    /// The noisy clamped sum divided by a public denominator `n` (for example the days in the window, or a
    /// declared number of rows), by [`compose::mean`]; answer [`Answer::Real`]. The denominator is public,
    /// never the row count.
    Mean {
        /// Lower clamp bound.
        lo: i64,
        /// Upper clamp bound.
        hi: i64,
        /// Public denominator, at least 1.
        n: u64,
    },
    /// `S2/n - (S/n)^2` from a noisy clamped sum `S` and a noisy sum of squares `S2` (each half the
    /// budget), clamped into `[0, ((hi - lo) / 2)^2]`, with a public denominator `n`, by
    /// [`compose::variance`]; [`Answer::Real`].
    Variance {
        /// Lower clamp bound.
        lo: i64,
        /// Upper clamp bound.
        hi: i64,
        /// Public denominator, at least 1.
        n: u64,
    },
    /// The square root of a [`Query::Variance`] (the same two noisy sums, the same cost), by
    /// [`compose::stdev`]; [`Answer::Real`] in `[0, (hi - lo) / 2]`.
    Stdev {
        /// Lower clamp bound.
        lo: i64,
        /// Upper clamp bound.
        hi: i64,
        /// Public denominator, at least 1.
        n: u64,
    },
    /// The `q`-quantile, chosen among strictly increasing public candidates; [`Answer::Integer`].
    /// At `q = 0` it is a private minimum and at `q = 1` a private maximum (see [`Query::min_grid`]).
    Quantile {
        /// Public candidates, strictly increasing, at most 1,000,000.
        candidates: Vec<i64>,
        /// The quantile in `[0, 1]` (0.5 for the median).
        q: f64,
    },
    /// Counts of rows in the `edges.len() + 1` bins cut by strictly increasing public edges (bin `i` holds
    /// rows with `edges[i-1] <= v < edges[i]`); [`Answer::Counts`].
    Histogram {
        /// Public edges, strictly increasing, 1 to 100,000 of them.
        edges: Vec<i64>,
    },
    /// The number of rows in each of `groups` public groups (months of a window, values of a category set),
    /// released by [`Plan::release_grouped`] as [`Answer::Counts`], one per group; costs one
    /// [`Query::Count`] (see [`grouped`]).
    GroupedCount {
        /// Number of groups, 1 to 100,000.
        groups: u32,
    },
    /// The sum of rows clamped into `[lo, hi]` in each of `groups` public groups, released by
    /// [`Plan::release_grouped`] as [`Answer::Counts`] (one sum per group); costs one [`Query::Sum`] (see
    /// [`grouped`]).
    GroupedSum {
        /// Lower clamp bound (greater than `i64::MIN`).
        lo: i64,
        /// Upper clamp bound.
        hi: i64,
        /// Number of groups, 1 to 100,000.
        groups: u32,
    },
}

impl Query {
    /// The `q`-quantile over `bins + 1` evenly spaced integer candidates from `lo` to `hi` (fewer if the
    /// range is narrower).
    pub fn quantile_grid(lo: i64, hi: i64, bins: u32, q: f64) -> Result<Query, DpError> {
        if lo > hi || bins == 0 {
            return Err(DpError::InvalidQuery(
                "need lo <= hi and at least one bin".into(),
            ));
        }
        let span = hi as i128 - lo as i128;
        let mut candidates: Vec<i64> = (0..=bins as i128)
            .map(|i| (lo as i128 + span * i / bins as i128) as i64)
            .collect();
        candidates.dedup();
        Ok(Query::Quantile { candidates, q })
    }

    /// The median over a grid: [`Query::quantile_grid`] at `q = 0.5`.
    pub fn median_grid(lo: i64, hi: i64, bins: u32) -> Result<Query, DpError> {
        Query::quantile_grid(lo, hi, bins, 0.5)
    }

    /// A private minimum over a grid: [`Query::quantile_grid`] at `q = 0`. Every candidate at or below the
    /// exact minimum scores the best possible (no row lies below it), so the mechanism cannot tell them
    /// apart: the answer is, with high probability, a candidate between `lo` and the exact minimum (a
    /// lower bound on it), not the minimum itself. See [`quantile`].
    pub fn min_grid(lo: i64, hi: i64, bins: u32) -> Result<Query, DpError> {
        Query::quantile_grid(lo, hi, bins, 0.0)
    }

    /// A private maximum over a grid: [`Query::quantile_grid`] at `q = 1`; with high probability a candidate
    /// between the exact maximum and `hi` (an upper bound on it), as for [`Query::min_grid`].
    pub fn max_grid(lo: i64, hi: i64, bins: u32) -> Result<Query, DpError> {
        Query::quantile_grid(lo, hi, bins, 1.0)
    }

    fn name(&self) -> &'static str {
        match self {
            Query::Count => "count",
            Query::Sum { .. } => "sum",
            Query::Mean { .. } => "mean",
            Query::Variance { .. } => "variance",
            Query::Stdev { .. } => "standard deviation",
            Query::Quantile { .. } => "quantile",
            Query::Histogram { .. } => "histogram",
            Query::GroupedCount { .. } => "grouped count",
            Query::GroupedSum { .. } => "grouped sum",
        }
    }

    fn validate(&self) -> Result<(), DpError> {
        let bounds = |lo: i64, hi: i64| {
            if lo > hi || lo == i64::MIN {
                Err(DpError::InvalidQuery(format!(
                    "bounds [{lo}, {hi}] need i64::MIN < lo <= hi"
                )))
            } else {
                Ok(())
            }
        };
        let groups_in_range = |g: u32| {
            if (1..=100_000).contains(&g) {
                Ok(())
            } else {
                Err(DpError::InvalidQuery(format!(
                    "a grouped release has 1 to 100000 groups, not {g}"
                )))
            }
        };
        let increasing = |v: &[i64], what: &str, max: usize| {
            if v.is_empty() || v.len() > max || !v.windows(2).all(|w| w[0] < w[1]) {
                Err(DpError::InvalidQuery(format!(
                    "{what} must be 1 to {max} strictly increasing values"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Query::Count => Ok(()),
            Query::Sum { lo, hi } => bounds(*lo, *hi),
            Query::Mean { lo, hi, n }
            | Query::Variance { lo, hi, n }
            | Query::Stdev { lo, hi, n } => {
                bounds(*lo, *hi)?;
                if *n == 0 {
                    return Err(DpError::InvalidQuery(
                        "the public denominator must be at least 1".into(),
                    ));
                }
                Ok(())
            }
            Query::Quantile { candidates, q } => {
                if !(0.0..=1.0).contains(q) {
                    return Err(DpError::InvalidQuery(format!("q ({q}) must be in [0, 1]")));
                }
                increasing(candidates, "candidates", 1_000_000)
            }
            Query::Histogram { edges } => increasing(edges, "edges", 100_000),
            Query::GroupedCount { groups } => groups_in_range(*groups),
            Query::GroupedSum { lo, hi, groups } => {
                bounds(*lo, *hi)?;
                groups_in_range(*groups)
            }
        }
    }
}

/// How much to spend on a release.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Budget {
    /// A pure-DP epsilon (discrete Laplace or permute-and-flip). Under a zCDP ledger it is charged
    /// `epsilon^2 / 2`.
    Epsilon(f64),
    /// A zCDP rho (discrete Gaussian or Gumbel selection); zCDP ledgers only.
    Rho(f64),
    /// The smallest cost whose answer is within `alpha` of the exact value (in the answer's units; per bin
    /// for histograms) with probability at least `1 - beta`. Pure-DP ledgers use discrete Laplace, zCDP
    /// ledgers discrete Gaussian. Not available for quantiles and variances.
    Accuracy {
        /// Half-width of the interval, positive.
        alpha: f64,
        /// Failure probability, in (0, 1).
        beta: f64,
    },
}

/// The noise a plan adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Mechanism {
    /// Discrete Laplace (pure DP) on an exact integer or vector of integers.
    DiscreteLaplace,
    /// Discrete Gaussian (zCDP).
    DiscreteGaussian,
    /// Report-noisy-max over candidate scores: permute-and-flip (exponential noise) under pure DP.
    PermuteAndFlip,
    /// Report-noisy-max with Gumbel noise (the exponential mechanism) under zCDP.
    GumbelMax,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::DiscreteLaplace => "discrete Laplace",
            Mechanism::DiscreteGaussian => "discrete Gaussian",
            Mechanism::PermuteAndFlip => "permute-and-flip",
            Mechanism::GumbelMax => "Gumbel report-noisy-max",
        })
    }
}

/// A released answer. Integers are exact sums or counts plus integer noise; reals come only from
/// post-processing noisy integers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// A noisy count, sum, or a chosen quantile candidate.
    Integer(i64),
    /// A post-processed real (mean, variance).
    Real(f64),
    /// Noisy histogram counts, one per bin.
    Counts(Vec<i64>),
}

/// A release planned from public parameters: what it costs, how accurate it is, and how to run it.
///
/// Holds plain parameters only (Send, Sync, serialisable); the OpenDP measurements are rebuilt from them at
/// release, and their privacy map is checked against the planned cost then.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    query: Query,
    contribution: Contribution,
    measure: Measure,
    /// True for pure-DP noise (Laplace, permute-and-flip), cast to zCDP under a zCDP ledger.
    pure: bool,
    /// Noise scale; for a variance, the sum's.
    scale: f64,
    /// For a variance, the sum of squares' scale.
    scale2: Option<f64>,
    cost: Amount,
}

/// Plans a release: checks the public parameters, picks the mechanism and the smallest noise scale whose
/// cost fits the budget (or the largest scale meeting a target accuracy), and computes the cost as OpenDP's
/// privacy map at `d_in = contribution.max_rows_per_unit`, rounded up to 1e-9 units.
///
/// A stated epsilon or rho is rounded to the nearest 1e-9 first; the plan then costs at most that (usually
/// exactly that).
pub fn plan(
    query: Query,
    contribution: Contribution,
    measure: Measure,
    budget: Budget,
) -> Result<Plan, DpError> {
    query.validate()?;
    if contribution.max_rows_per_unit == 0 {
        return Err(DpError::InvalidQuery(
            "a privacy unit contributes at least one row".into(),
        ));
    }
    let pure = match (measure, budget) {
        (Measure::PureEpsilon, Budget::Rho(_)) => return Err(DpError::MeasureMismatch),
        (Measure::PureEpsilon, _) | (_, Budget::Epsilon(_)) => true,
        (Measure::Zcdp, _) => false,
    };
    let mut plan = Plan {
        query,
        contribution,
        measure,
        pure,
        scale: 1.0,
        scale2: None,
        cost: Amount::ZERO,
    };
    plan.check_ranges()?;
    match budget {
        Budget::Epsilon(x) | Budget::Rho(x) => {
            let target = match (measure, budget) {
                // A pure epsilon under zCDP is charged rho = epsilon^2 / 2.
                (Measure::Zcdp, Budget::Epsilon(_)) if x.is_finite() && x >= 0.0 => {
                    Amount::from_units(x * x / 2.0)?
                }
                _ => Amount::from_units(x)?,
            };
            if target == Amount::ZERO {
                return Err(DpError::InvalidBudget(
                    "a release costs more than zero".into(),
                ));
            }
            if let Query::Variance { .. } | Query::Stdev { .. } = plan.query {
                // Half the budget each to the sum and to the sum of squares.
                let half = Amount::from_nanos(target.nanos() / 2);
                plan.scale = plan.fit_scale(half, Part::First)?;
                plan.scale2 = Some(plan.fit_scale(
                    Amount::from_nanos(target.nanos() - half.nanos()),
                    Part::Second,
                )?);
            } else {
                plan.scale = plan.fit_scale(target, Part::First)?;
            }
        }
        Budget::Accuracy { alpha, beta } => {
            if !(alpha > 0.0 && alpha.is_finite() && beta > 0.0 && beta < 1.0) {
                return Err(DpError::InvalidBudget(format!(
                    "need alpha > 0 and 0 < beta < 1, got ({alpha}, {beta})"
                )));
            }
            let per_unit = plan
                .accuracy_divisor()
                .ok_or(DpError::NoAccuracyFunction(plan.query.name()))?;
            plan.scale = plan.scale_for_accuracy(alpha * per_unit, beta)?;
        }
    }
    plan.cost = plan.compute_cost()?;
    if plan.cost == Amount::ZERO {
        return Err(DpError::InvalidBudget(
            "the accuracy target needs no noise; refusing a free release".into(),
        ));
    }
    Ok(plan)
}

/// Splits a stated epsilon or rho into `parts` budgets for the noisy parts of one answer (a mean's sum and
/// count, a variance's three sums, ...), so that the parts' charges add up to at most the stated amount.
///
/// The split is done in whole nano-units of the stated number (rounded to the nearest 1e-9, as [`plan`]
/// does): each part gets `floor(T / parts)` nanos, the first `T mod parts` one nano more. [`plan`] then
/// charges each part at most its share (its privacy map rounded up, never less), so the sum is at most `T`;
/// splitting the float (`epsilon / 3`) instead rounds each third to the nearest nano and can sum past `T`
/// (0.5 / 3 rounds to 0.166666667, three of which are 0.500000001).
///
/// Under a zCDP ledger a stated epsilon is split as an epsilon (each part is pure DP, the whole answer
/// `epsilon`-DP) and each part is charged `epsilon_i^2 / 2`, which sum to less than `epsilon^2 / 2`.
///
/// # Errors
/// [`DpError::InvalidBudget`] for a target accuracy (it has no amount to split), for no parts, or for an
/// amount too small to give every part a nano-unit.
pub fn split(budget: Budget, parts: u32) -> Result<Vec<Budget>, DpError> {
    let (x, make): (f64, fn(f64) -> Budget) =
        match budget {
            Budget::Epsilon(x) => (x, Budget::Epsilon),
            Budget::Rho(x) => (x, Budget::Rho),
            Budget::Accuracy { .. } => return Err(DpError::InvalidBudget(
                "a target accuracy cannot be split between noisy parts; state an epsilon or rho"
                    .into(),
            )),
        };
    if parts == 0 {
        return Err(DpError::InvalidBudget("nothing to split into".into()));
    }
    let total = Amount::from_units(x)?.nanos();
    let k = u64::from(parts);
    if total < k {
        return Err(DpError::InvalidBudget(format!(
            "{x} is too small to split into {parts} noisy parts"
        )));
    }
    Ok((0..k)
        .map(|i| {
            let nanos = total / k + u64::from(i < total % k);
            // `from_units` rounds this back to `nanos` (exactly below 2^50 nanos); above, step down until
            // it rounds to no more.
            let mut units = nanos as f64 / NANOS_PER_UNIT as f64;
            while Amount::from_units(units).map_or(true, |a| a.nanos() > nanos) {
                units = units.next_down();
            }
            make(units)
        })
        .collect())
}

/// Which of a variance's two measurements (others have only the first).
#[derive(Clone, Copy, PartialEq)]
enum Part {
    First,
    Second,
}

impl Plan {
    /// The query planned.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// The contribution bound the cost was computed at.
    pub fn contribution(&self) -> Contribution {
        self.contribution
    }

    /// The ledger measure the cost is in.
    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// The noise this plan adds.
    pub fn mechanism(&self) -> Mechanism {
        match (&self.query, self.pure) {
            (Query::Quantile { .. }, true) => Mechanism::PermuteAndFlip,
            (Query::Quantile { .. }, false) => Mechanism::GumbelMax,
            (_, true) => Mechanism::DiscreteLaplace,
            (_, false) => Mechanism::DiscreteGaussian,
        }
    }

    /// The noise scale (for a variance, the sum's; the sum of squares has its own).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The charge: OpenDP's privacy map at the contribution bound, rounded up to 1e-9 units.
    pub fn cost(&self) -> Amount {
        self.cost
    }

    /// Half-width `a` such that the answer is within `(-a, a)` of the exact value (per bin for
    /// histograms; the noise alone, for data within the bounds) with probability at least `1 - beta`,
    /// by OpenDP's accuracy functions. `None` where no such function applies (quantile, variance).
    pub fn accuracy(&self, beta: f64) -> Option<f64> {
        let divisor = self.accuracy_divisor()?;
        let raw = if self.pure {
            discrete_laplacian_scale_to_accuracy(self.scale, beta).map_err(DpError::opendp)
        } else {
            accuracy::discrete_gaussian_accuracy(self.scale, beta)
        };
        raw.ok().map(|a| a / divisor)
    }

    /// [`Plan::accuracy`] at 95% confidence: the expected error shown before a release.
    pub fn accuracy95(&self) -> Option<f64> {
        self.accuracy(0.05)
    }

    /// Runs the release on a column: exact aggregation (ours, equal to OpenDP's transformation), then
    /// OpenDP's noise measurement. Re-checks that OpenDP's privacy map still gives the planned cost.
    ///
    /// Never call twice for the same question: store the answer and serve it again.
    pub fn release(&self, values: &[i64]) -> Result<Answer, DpError> {
        if self.compute_cost()? != self.cost {
            return Err(DpError::OpenDp(
                "privacy map disagrees with the planned cost".into(),
            ));
        }
        match self.measure {
            Measure::PureEpsilon => self.release_in::<MaxDivergence>(values),
            Measure::Zcdp => self.release_in::<ZeroConcentratedDivergence>(values),
        }
        .map_err(DpError::opendp)
    }

    /// The same release through OpenDP's own pipeline (its transformations on an owned `Vec`), for
    /// benchmarks and cross-checks. Same distribution as [`Plan::release`], slower.
    pub fn release_via_opendp(&self, values: &Vec<i64>) -> Result<Answer, DpError> {
        match self.measure {
            Measure::PureEpsilon => self.opendp_release_in::<MaxDivergence>(values),
            Measure::Zcdp => self.opendp_release_in::<ZeroConcentratedDivergence>(values),
        }
        .map_err(DpError::opendp)
    }

    /// Runs a grouped release ([`Query::GroupedCount`], [`Query::GroupedSum`]): row `i` has the value
    /// `values[i]` (ignored by a count) and lies in group `keys[i]` (keys at or past the number of groups count
    /// nowhere). Exact per-group counts or clamped sums (equal to OpenDP's transformation in [`grouped`]),
    /// then OpenDP's noise on the vector; one entry per group. Re-checks the planned cost like
    /// [`Plan::release`].
    pub fn release_grouped(&self, keys: &[u32], values: &[i64]) -> Result<Answer, DpError> {
        if self.compute_cost()? != self.cost {
            return Err(DpError::OpenDp(
                "privacy map disagrees with the planned cost".into(),
            ));
        }
        match self.measure {
            Measure::PureEpsilon => self.release_grouped_in::<MaxDivergence>(keys, values),
            Measure::Zcdp => self.release_grouped_in::<ZeroConcentratedDivergence>(keys, values),
        }
        .map_err(DpError::opendp)
    }

    fn release_grouped_in<MO: LedgerMeasure>(
        &self,
        keys: &[u32],
        values: &[i64],
    ) -> Fallible<Answer> {
        Ok(Answer::Counts(match &self.query {
            Query::GroupedCount { groups } => {
                let (_, noise) = self.group_counts_pipeline::<MO>(*groups)?;
                noise.eval(&grouped::group_counts(keys, *groups))?
            }
            Query::GroupedSum { lo, hi, groups } => {
                let (_, noise) = self.group_sums_pipeline::<MO>(*lo, *hi, *groups)?;
                noise.eval(&grouped::group_sums(keys, values, *lo, *hi, *groups))?
            }
            _ => {
                return Err(opendp_error(
                    ErrorVariant::FailedFunction,
                    "not a grouped query: use release",
                ))
            }
        }))
    }

    /// OpenDP's grouped-count pipeline (over group indices), and the noise function alone for our counts.
    fn group_counts_pipeline<MO: LedgerMeasure>(
        &self,
        groups: u32,
    ) -> Fallible<(
        Measurement<VectorDomain<AtomDomain<i64>>, SymmetricDistance, MO, Vec<i64>>,
        Function<Vec<i64>, Vec<i64>>,
    )> {
        self.counts_pipeline::<MO>(
            || grouped::opendp_group_counts::<L1Distance<i64>>(groups),
            || grouped::opendp_group_counts::<L2Distance<i64>>(groups),
        )
    }

    /// A vector of counts, then OpenDP's noise on it: the transformation built for the L1 metric (Laplace, pure
    /// DP) or the L2 metric (Gaussian, zCDP), chained with the noise, and the noise function alone.
    fn counts_pipeline<MO: LedgerMeasure>(
        &self,
        l1: impl FnOnce() -> Fallible<CountsTransformation<L1Distance<i64>>>,
        l2: impl FnOnce() -> Fallible<CountsTransformation<L2Distance<i64>>>,
    ) -> Fallible<(
        Measurement<VectorDomain<AtomDomain<i64>>, SymmetricDistance, MO, Vec<i64>>,
        Function<Vec<i64>, Vec<i64>>,
    )> {
        if self.pure {
            let t = l1()?;
            let noise = make_laplace::<_, _, MaxDivergence>(
                t.output_domain.clone(),
                t.output_metric.clone(),
                self.scale,
                None,
            )?;
            let function = noise.function.clone();
            Ok((MO::from_pure(make_chain_mt(&noise, &t)?)?, function))
        } else {
            let t = l2()?;
            let noise = MO::gaussian_counts(t.output_domain.clone(), self.scale)?;
            let function = noise.function.clone();
            Ok((make_chain_mt(&noise, &t)?, function))
        }
    }

    /// The grouped-sum pipeline (our transformation of [`grouped`], OpenDP's vector noise), and the noise
    /// function alone for our sums.
    fn group_sums_pipeline<MO: LedgerMeasure>(
        &self,
        lo: i64,
        hi: i64,
        groups: u32,
    ) -> Fallible<(
        Measurement<VectorDomain<VectorDomain<AtomDomain<i64>>>, SymmetricDistance, MO, Vec<i64>>,
        Function<Vec<i64>, Vec<i64>>,
    )> {
        if self.pure {
            let t = grouped::opendp_group_sums::<L1Distance<i64>>(lo, hi, groups)?;
            let noise = make_laplace::<_, _, MaxDivergence>(
                t.output_domain.clone(),
                t.output_metric.clone(),
                self.scale,
                None,
            )?;
            let function = noise.function.clone();
            Ok((MO::from_pure(make_chain_mt(&noise, &t)?)?, function))
        } else {
            let t = grouped::opendp_group_sums::<L2Distance<i64>>(lo, hi, groups)?;
            let noise = MO::gaussian_counts(t.output_domain.clone(), self.scale)?;
            let function = noise.function.clone();
            Ok((make_chain_mt(&noise, &t)?, function))
        }
    }

    /// Refusals decided from the public parameters alone (overflow of sensitivities or squares).
    fn check_ranges(&self) -> Result<(), DpError> {
        let k = self.contribution.max_rows_per_unit as i128;
        if let Query::Sum { lo, hi }
        | Query::GroupedSum { lo, hi, .. }
        | Query::Mean { lo, hi, .. }
        | Query::Variance { lo, hi, .. }
        | Query::Stdev { lo, hi, .. } = self.query
        {
            let magnitude = (lo as i128).abs().max((hi as i128).abs());
            if magnitude * k > i64::MAX as i128 {
                return Err(DpError::Overflow(
                    "the sum's sensitivity (bound x rows per unit)",
                ));
            }
            if let Query::Variance { .. } | Query::Stdev { .. } = self.query {
                if magnitude * magnitude * k > i64::MAX as i128 {
                    return Err(DpError::Overflow("the sum of squares' sensitivity"));
                }
            }
        }
        Ok(())
    }

    /// Units per unit of answer for accuracy (the public denominator of a mean), or `None` if there is no
    /// accuracy function.
    fn accuracy_divisor(&self) -> Option<f64> {
        match self.query {
            Query::Count
            | Query::Sum { .. }
            | Query::Histogram { .. }
            | Query::GroupedCount { .. }
            | Query::GroupedSum { .. } => Some(1.0),
            Query::Mean { n, .. } => Some(n as f64),
            Query::Quantile { .. } | Query::Variance { .. } | Query::Stdev { .. } => None,
        }
    }

    /// The privacy map of the plan's OpenDP measurement at the contribution bound.
    fn privacy_map(&self, part: Option<Part>) -> Fallible<f64> {
        match self.measure {
            Measure::PureEpsilon => self.map_in::<MaxDivergence>(part),
            Measure::Zcdp => self.map_in::<ZeroConcentratedDivergence>(part),
        }
    }

    fn compute_cost(&self) -> Result<Amount, DpError> {
        Amount::charge_of_map(self.privacy_map(None).map_err(DpError::opendp)?)
    }

    /// The smallest scale (to within a few ulps) whose privacy map (of `part`) is at most `target`.
    ///
    /// Every map here is `c / scale` or `c / scale^2` (up to OpenDP's upward rounding), so one evaluation at
    /// scale 1 gives the analytic answer; we then step up until OpenDP's map agrees.
    fn fit_scale(&mut self, target: Amount, part: Part) -> Result<f64, DpError> {
        let target = target.as_f64_round_down();
        let power = if self.pure && self.measure == Measure::PureEpsilon {
            1.0
        } else {
            2.0
        };
        let set = |plan: &mut Plan, s: f64| match part {
            Part::First => plan.scale = s,
            Part::Second => plan.scale2 = Some(s),
        };
        set(self, 1.0);
        let at_one = self.privacy_map(Some(part)).map_err(DpError::opendp)?;
        let mut scale = (at_one / target).powf(1.0 / power);
        if !(scale.is_finite() && scale > 0.0) {
            return Err(DpError::InvalidBudget(
                "no finite noise scale fits this budget".into(),
            ));
        }
        for _ in 0..64 {
            set(self, scale);
            if self.privacy_map(Some(part)).map_err(DpError::opendp)? <= target {
                return Ok(scale);
            }
            scale *= 1.0 + 1e-12;
        }
        Err(DpError::OpenDp(
            "could not fit a noise scale to the budget".into(),
        ))
    }

    /// The largest scale whose accuracy at `beta` is at most `alpha` (in the noise's units).
    fn scale_for_accuracy(&self, alpha: f64, beta: f64) -> Result<f64, DpError> {
        let to_accuracy = |scale: f64| {
            if self.pure {
                discrete_laplacian_scale_to_accuracy(scale, beta).map_err(DpError::opendp)
            } else {
                accuracy::discrete_gaussian_accuracy(scale, beta)
            }
        };
        let mut scale = if self.pure {
            accuracy_to_discrete_laplacian_scale(alpha, beta).map_err(DpError::opendp)?
        } else {
            accuracy::discrete_gaussian_scale_for_accuracy(alpha, beta)?
        };
        for _ in 0..64 {
            if to_accuracy(scale)? <= alpha {
                return Ok(scale);
            }
            scale *= 1.0 - 1e-12;
        }
        Err(DpError::OpenDp("could not meet the accuracy target".into()))
    }

    fn map_in<MO: LedgerMeasure>(&self, part: Option<Part>) -> Fallible<f64> {
        let d_in = self.contribution.max_rows_per_unit;
        match (&self.query, part) {
            (Query::Variance { lo, hi, .. } | Query::Stdev { lo, hi, .. }, None) => {
                make_composition(vec![
                    self.scalar_pipeline::<MO>(sum::opendp_sum(*lo, *hi)?, self.scale)?,
                    self.scalar_pipeline::<MO>(opendp_sum_of_squares(*lo, *hi)?, self.scale2())?,
                ])?
                .map(&d_in)
            }
            (Query::Variance { lo, hi, .. } | Query::Stdev { lo, hi, .. }, Some(Part::First)) => {
                self.scalar_pipeline::<MO>(sum::opendp_sum(*lo, *hi)?, self.scale)?
                    .map(&d_in)
            }
            (Query::Variance { lo, hi, .. } | Query::Stdev { lo, hi, .. }, Some(Part::Second)) => {
                self.scalar_pipeline::<MO>(opendp_sum_of_squares(*lo, *hi)?, self.scale2())?
                    .map(&d_in)
            }
            (Query::Histogram { edges }, _) => self.histogram_pipeline::<MO>(edges)?.0.map(&d_in),
            (Query::GroupedCount { groups }, _) => {
                self.group_counts_pipeline::<MO>(*groups)?.0.map(&d_in)
            }
            (Query::GroupedSum { lo, hi, groups }, _) => self
                .group_sums_pipeline::<MO>(*lo, *hi, *groups)?
                .0
                .map(&d_in),
            (Query::Quantile { candidates, q }, _) => {
                self.quantile_pipeline::<MO>(candidates, *q)?.map(&d_in)
            }
            (query, _) => self
                .scalar_pipeline::<MO>(scalar_transformation(query)?, self.scale)?
                .map(&d_in),
        }
    }

    fn scale2(&self) -> f64 {
        self.scale2.unwrap_or(self.scale)
    }

    fn release_in<MO: LedgerMeasure>(&self, values: &[i64]) -> Fallible<Answer> {
        Ok(match &self.query {
            Query::Count => {
                Answer::Integer(self.scalar_noise::<MO>(self.scale)?.eval(&count(values))?)
            }
            Query::Sum { lo, hi } => Answer::Integer(
                self.scalar_noise::<MO>(self.scale)?
                    .eval(&sum::clamped_sum(values, *lo, *hi))?,
            ),
            Query::Mean { lo, hi, n } => {
                let s = self
                    .scalar_noise::<MO>(self.scale)?
                    .eval(&sum::clamped_sum(values, *lo, *hi))?;
                composed(compose::mean(s, public_denominator(*n)))?
            }
            Query::Variance { lo, hi, n } => {
                let s = self
                    .scalar_noise::<MO>(self.scale)?
                    .eval(&sum::clamped_sum(values, *lo, *hi))?;
                let s2 = self
                    .scalar_noise::<MO>(self.scale2())?
                    .eval(&sum_of_squares(values, *lo, *hi))?;
                composed(compose::variance(s, s2, public_denominator(*n), *lo, *hi))?
            }
            Query::Stdev { lo, hi, n } => {
                let s = self
                    .scalar_noise::<MO>(self.scale)?
                    .eval(&sum::clamped_sum(values, *lo, *hi))?;
                let s2 = self
                    .scalar_noise::<MO>(self.scale2())?
                    .eval(&sum_of_squares(values, *lo, *hi))?;
                composed(compose::stdev(s, s2, public_denominator(*n), *lo, *hi))?
            }
            Query::Histogram { edges } => {
                let (_, noise) = self.histogram_pipeline::<MO>(edges)?;
                Answer::Counts(noise.eval(&histogram::bin_counts(values, edges))?)
            }
            Query::GroupedCount { .. } | Query::GroupedSum { .. } => {
                return Err(opendp_error(
                    ErrorVariant::FailedFunction,
                    "a grouped release needs each row's group: use release_grouped",
                ))
            }
            Query::Quantile { candidates, q } => {
                let scores = quantile::scores(values, candidates, *q);
                let (_, den, _) = quantile::constants(*q);
                let index = self
                    .noisy_max::<MO>(candidates.len(), self.scale * den as f64)?
                    .eval(&scores)?;
                Answer::Integer(candidates[index])
            }
        })
    }

    fn opendp_release_in<MO: LedgerMeasure>(&self, values: &Vec<i64>) -> Fallible<Answer> {
        Ok(match &self.query {
            Query::Count | Query::Sum { .. } => Answer::Integer(
                self.scalar_pipeline::<MO>(scalar_transformation(&self.query)?, self.scale)?
                    .invoke(values)?,
            ),
            Query::Mean { lo, hi, n } => {
                let s = self
                    .scalar_pipeline::<MO>(sum::opendp_sum(*lo, *hi)?, self.scale)?
                    .invoke(values)?;
                composed(compose::mean(s, public_denominator(*n)))?
            }
            Query::Variance { lo, hi, n } | Query::Stdev { lo, hi, n } => {
                let both = make_composition(vec![
                    self.scalar_pipeline::<MO>(sum::opendp_sum(*lo, *hi)?, self.scale)?,
                    self.scalar_pipeline::<MO>(opendp_sum_of_squares(*lo, *hi)?, self.scale2())?,
                ])?
                .invoke(values)?;
                let compose = if let Query::Stdev { .. } = self.query {
                    compose::stdev
                } else {
                    compose::variance
                };
                composed(compose(both[0], both[1], public_denominator(*n), *lo, *hi))?
            }
            Query::Histogram { edges } => {
                Answer::Counts(self.histogram_pipeline::<MO>(edges)?.0.invoke(values)?)
            }
            Query::Quantile { candidates, q } => Answer::Integer(
                self.quantile_pipeline::<MO>(candidates, *q)?
                    .invoke(values)?,
            ),
            Query::GroupedCount { .. } | Query::GroupedSum { .. } => {
                return Err(opendp_error(
                    ErrorVariant::FailedFunction,
                    "a grouped release needs each row's group: use release_grouped",
                ))
            }
        })
    }

    /// The noise measurement's function on an exact integer (pure noise is the same function under either
    /// ledger; only the map is cast).
    fn scalar_noise<MO: LedgerMeasure>(&self, scale: f64) -> Fallible<Function<i64, i64>> {
        let space = (
            AtomDomain::<i64>::default(),
            AbsoluteDistance::<i64>::default(),
        );
        Ok(if self.pure {
            make_laplace::<_, _, MaxDivergence>(space.0, space.1, scale, None)?
                .function
                .clone()
        } else {
            MO::gaussian_scalar(scale)?.function.clone()
        })
    }

    /// `t >> noise` as one OpenDP measurement in the ledger's measure.
    fn scalar_pipeline<MO: LedgerMeasure>(
        &self,
        t: Transformation<
            VectorDomain<AtomDomain<i64>>,
            SymmetricDistance,
            AtomDomain<i64>,
            AbsoluteDistance<i64>,
        >,
        scale: f64,
    ) -> Fallible<Measurement<VectorDomain<AtomDomain<i64>>, SymmetricDistance, MO, i64>> {
        if self.pure {
            let noise = make_laplace::<_, _, MaxDivergence>(
                t.output_domain.clone(),
                t.output_metric.clone(),
                scale,
                None,
            )?;
            MO::from_pure(make_chain_mt(&noise, &t)?)
        } else {
            make_chain_mt(&MO::gaussian_scalar(scale)?, &t)
        }
    }

    /// OpenDP's histogram pipeline, and the noise function alone for our counts.
    fn histogram_pipeline<MO: LedgerMeasure>(
        &self,
        edges: &[i64],
    ) -> Fallible<(
        Measurement<VectorDomain<AtomDomain<i64>>, SymmetricDistance, MO, Vec<i64>>,
        Function<Vec<i64>, Vec<i64>>,
    )> {
        self.counts_pipeline::<MO>(
            || histogram::opendp_histogram::<L1Distance<i64>>(edges),
            || histogram::opendp_histogram::<L2Distance<i64>>(edges),
        )
    }

    fn quantile_pipeline<MO: LedgerMeasure>(
        &self,
        candidates: &[i64],
        q: f64,
    ) -> Fallible<Measurement<VectorDomain<AtomDomain<i64>>, SymmetricDistance, MO, i64>> {
        if self.pure {
            MO::from_pure(quantile::opendp_quantile::<MaxDivergence>(
                candidates, q, self.scale,
            )?)
        } else {
            quantile::opendp_quantile::<MO>(candidates, q, self.scale)
        }
    }

    fn noisy_max<MO: LedgerMeasure>(
        &self,
        len: usize,
        scale: f64,
    ) -> Fallible<Function<Vec<u64>, usize>> {
        let domain = VectorDomain::new(AtomDomain::<u64>::default()).with_size(len);
        Ok(if self.pure {
            make_noisy_max(domain, LInfDistance::default(), MaxDivergence, scale, true)?
                .function
                .clone()
        } else {
            make_noisy_max(domain, LInfDistance::default(), MO::default(), scale, true)?
                .function
                .clone()
        })
    }
}

/// The ledger measures, with what differs between them.
trait LedgerMeasure:
    'static + TopKMeasure + CompositionMeasure + opendp::core::Measure<Distance = f64>
{
    /// A pure-DP measurement recharged in this measure (identity, or `rho = epsilon^2 / 2`).
    fn from_pure<DI, MI, TO>(
        m: Measurement<DI, MI, MaxDivergence, TO>,
    ) -> Fallible<Measurement<DI, MI, Self, TO>>
    where
        DI: 'static + opendp::core::Domain,
        MI: 'static + Metric,
        TO: 'static,
        (DI, MI): MetricSpace;

    /// Discrete Gaussian noise on an integer (zCDP only).
    fn gaussian_scalar(
        scale: f64,
    ) -> Fallible<Measurement<AtomDomain<i64>, AbsoluteDistance<i64>, Self, i64>>;

    /// Discrete Gaussian noise on a vector of counts (zCDP only).
    fn gaussian_counts(
        domain: VectorDomain<AtomDomain<i64>>,
        scale: f64,
    ) -> Fallible<Measurement<VectorDomain<AtomDomain<i64>>, L2Distance<i64>, Self, Vec<i64>>>;
}

impl LedgerMeasure for MaxDivergence {
    fn from_pure<DI, MI, TO>(
        m: Measurement<DI, MI, MaxDivergence, TO>,
    ) -> Fallible<Measurement<DI, MI, Self, TO>>
    where
        DI: 'static + opendp::core::Domain,
        MI: 'static + Metric,
        TO: 'static,
        (DI, MI): MetricSpace,
    {
        Ok(m)
    }

    fn gaussian_scalar(
        _: f64,
    ) -> Fallible<Measurement<AtomDomain<i64>, AbsoluteDistance<i64>, Self, i64>> {
        Err(opendp_error(
            ErrorVariant::MakeMeasurement,
            "Gaussian noise is not pure DP",
        ))
    }

    fn gaussian_counts(
        _: VectorDomain<AtomDomain<i64>>,
        _: f64,
    ) -> Fallible<Measurement<VectorDomain<AtomDomain<i64>>, L2Distance<i64>, Self, Vec<i64>>> {
        Err(opendp_error(
            ErrorVariant::MakeMeasurement,
            "Gaussian noise is not pure DP",
        ))
    }
}

impl LedgerMeasure for ZeroConcentratedDivergence {
    fn from_pure<DI, MI, TO>(
        m: Measurement<DI, MI, MaxDivergence, TO>,
    ) -> Fallible<Measurement<DI, MI, Self, TO>>
    where
        DI: 'static + opendp::core::Domain,
        MI: 'static + Metric,
        TO: 'static,
        (DI, MI): MetricSpace,
    {
        make_pureDP_to_zCDP(m)
    }

    fn gaussian_scalar(
        scale: f64,
    ) -> Fallible<Measurement<AtomDomain<i64>, AbsoluteDistance<i64>, Self, i64>> {
        make_gaussian(
            AtomDomain::default(),
            AbsoluteDistance::default(),
            scale,
            None,
        )
    }

    fn gaussian_counts(
        domain: VectorDomain<AtomDomain<i64>>,
        scale: f64,
    ) -> Fallible<Measurement<VectorDomain<AtomDomain<i64>>, L2Distance<i64>, Self, Vec<i64>>> {
        make_gaussian(domain, L2Distance::default(), scale, None)
    }
}

fn opendp_error(variant: ErrorVariant, message: &str) -> opendp::error::Error {
    opendp::error::Error {
        variant,
        message: Some(message.into()),
        backtrace: std::backtrace::Backtrace::disabled(),
    }
}

/// `make_count` saturates at `i64::MAX`; a slice is never that long, so this is the same function.
fn count(values: &[i64]) -> i64 {
    i64::try_from(values.len()).unwrap_or(i64::MAX)
}

/// The transformation a scalar query charges for.
fn scalar_transformation(
    query: &Query,
) -> Fallible<
    Transformation<
        VectorDomain<AtomDomain<i64>>,
        SymmetricDistance,
        AtomDomain<i64>,
        AbsoluteDistance<i64>,
    >,
> {
    match query {
        Query::Count => make_count(VectorDomain::new(AtomDomain::default()), SymmetricDistance),
        Query::Sum { lo, hi } | Query::Mean { lo, hi, .. } => sum::opendp_sum(*lo, *hi),
        _ => Err(opendp_error(
            ErrorVariant::MakeTransformation,
            "not a scalar query",
        )),
    }
}

/// Bounds of `x^2` for `x` in `[lo, hi]` (checked not to overflow when planning).
fn square_bounds(lo: i64, hi: i64) -> (i64, i64) {
    let (a, b) = (lo.saturating_mul(lo), hi.saturating_mul(hi));
    if lo >= 0 || hi <= 0 {
        (a.min(b), a.max(b))
    } else {
        (0, a.max(b))
    }
}

/// Sum of squares of the rows clamped into `[lo, hi]`, with the semantics of [`opendp_sum_of_squares`]
/// (squares are non-negative, so OpenDP's saturating sum is the exact sum clamped to `i64::MAX`).
fn sum_of_squares(values: &[i64], lo: i64, hi: i64) -> i64 {
    let squares: i128 = values
        .iter()
        .map(|x| {
            let c = (*x).clamp(lo, hi) as i128;
            c * c
        })
        .sum();
    squares.min(i64::MAX as i128) as i64
}

/// `make_clamp >> (square each row) >> make_sum` over the squares' bounds. Squaring row by row is 1-stable
/// under the symmetric distance (it maps each row alone), so the map is the sum's.
fn opendp_sum_of_squares(
    lo: i64,
    hi: i64,
) -> Fallible<
    Transformation<
        VectorDomain<AtomDomain<i64>>,
        SymmetricDistance,
        AtomDomain<i64>,
        AbsoluteDistance<i64>,
    >,
> {
    let clamp = opendp::transformations::make_clamp(
        VectorDomain::new(AtomDomain::default()),
        SymmetricDistance,
        (lo, hi),
    )?;
    let bounds = square_bounds(lo, hi);
    let square = Transformation::new(
        clamp.output_domain.clone(),
        SymmetricDistance,
        VectorDomain::new(AtomDomain::new_closed(bounds)?),
        SymmetricDistance,
        Function::new(|x: &Vec<i64>| x.iter().map(|v| v.saturating_mul(*v)).collect()),
        StabilityMap::new_from_constant(1),
    )?;
    let sum = opendp::transformations::make_sum(square.output_domain.clone(), SymmetricDistance)?;
    clamp >> square >> sum
}

/// A query's public denominator for [`compose`] (at least 1 after validation; saturating past `i64::MAX`).
fn public_denominator(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A composed real answer; a public denominator is never below 1, so `None` cannot happen after
/// validation.
fn composed(x: Option<f64>) -> Fallible<Answer> {
    x.map(Answer::Real)
        .ok_or_else(|| opendp_error(ErrorVariant::FailedFunction, "a public denominator below 1"))
}
