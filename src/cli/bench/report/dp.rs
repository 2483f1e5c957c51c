//! The DP parts of `duo bench report`: the error of many releases against the plan's predicted 95% interval,
//! per epsilon and mechanism (its observed coverage), and the release's throughput beside the non-private
//! pass and OpenDP's own pipeline, by the code paths `benches/dp.rs` times (`Plan::release`,
//! `Plan::release_via_opendp`), without criterion.

use super::super::measure::Progress;
use anyhow::{anyhow, bail, Result};
use duo_protocols::dp::{
    histogram, plan, quantile, sum, Answer, Budget, Contribution, Measure, Plan, Query,
};
use serde::Serialize;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Lower clamp bound of the sums and the median's grid, cents (-$500), as in `benches/dp.rs`.
const LO: i64 = -50_000;
/// Upper clamp bound, cents ($5,000).
const HI: i64 = 500_000;
/// Rows of the column the error part releases on.
const ERROR_ROWS: usize = 10_000;
/// The failure probability of the predicted interval (95%).
const BETA: f64 = 0.05;
/// The one-sided test's false-alarm rate for "coverage below 95%" ([`Coverage::consistent`]).
const FALSE_ALARM: f64 = 0.001;

/// A fixed pseudo-random column (SplitMix64) of amounts in [-$1,000, $10,000), the same as `benches/dp.rs`.
pub(super) fn column(rows: usize) -> Vec<i64> {
    let mut state = rows as u64;
    (0..rows)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z % 1_100_000) as i64 - 100_000
        })
        .collect()
}

/// The histogram's public edges: $0 to $10,000 in $1,000 steps (12 bins).
fn edges() -> Vec<i64> {
    (0..=10).map(|i| i * 100_000).collect()
}

/// How often errors fell strictly inside a predicted half-width.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// Errors strictly inside the half-width.
    pub within: u64,
    /// Errors counted.
    pub total: u64,
    /// `within / total` (0 when nothing was counted).
    pub share: f64,
    /// False when `within` is so low that a coverage of at least 95% is rejected by a one-sided binomial
    /// test at a 0.1% false-alarm rate (each error an independent trial). With 200 trials it flags 178 or fewer
    /// inside: a true coverage of 85% about 96 times in 100, of 90% about 35 times in 100.
    pub consistent: bool,
}

/// The share of `errors` (absolute values) strictly below `half_width`, and whether it is consistent with a
/// 95% interval ([`Coverage::consistent`]).
pub fn coverage(errors: &[f64], half_width: f64) -> Coverage {
    let total = errors.len() as u64;
    let within = errors.iter().filter(|e| e.abs() < half_width).count() as u64;
    Coverage {
        within,
        total,
        share: if total == 0 {
            0.0
        } else {
            within as f64 / total as f64
        },
        consistent: total == 0 || binomial_cdf(within, total, 1.0 - BETA) > FALSE_ALARM,
    }
}

/// `P(X <= k)` for `X ~ Binomial(n, p)`, `0 < p < 1`, summed in log space (no underflow at large `n`).
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_pmf = n as f64 * lq;
    let mut total = 0.0;
    for i in 0..=k.min(n) {
        total += log_pmf.exp();
        log_pmf += ((n - i) as f64 / (i + 1) as f64).ln() + lp - lq;
    }
    total.min(1.0)
}

/// The `q`-quantile (nearest rank) of `v`; 0 when empty.
fn quantile_of(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|e| e.abs()).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// The released mechanisms the error part measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Count,
    Sum,
    Histogram,
    Median,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Count, Kind::Sum, Kind::Histogram, Kind::Median];

    fn name(self) -> &'static str {
        match self {
            Kind::Count => "count",
            Kind::Sum => "sum",
            Kind::Histogram => "histogram",
            Kind::Median => "median",
        }
    }

    fn query(self) -> Result<Query> {
        Ok(match self {
            Kind::Count => Query::Count,
            Kind::Sum => Query::Sum { lo: LO, hi: HI },
            Kind::Histogram => Query::Histogram { edges: edges() },
            Kind::Median => Query::median_grid(LO, HI, 256)?,
        })
    }

    fn unit(self) -> &'static str {
        match self {
            Kind::Count => "rows",
            Kind::Sum => "cents",
            Kind::Histogram => "rows per bin",
            Kind::Median => "rank score above the best candidate's",
        }
    }

    fn predicted_by(self) -> &'static str {
        match self {
            Kind::Median => "selection bound b ln(|C| / 0.05), b the noise scale on the scores",
            _ => "the plan's accuracy95 (OpenDP's discrete Laplace accuracy)",
        }
    }
}

/// One epsilon's releases of one mechanism.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPoint {
    /// The stated epsilon (pure DP, event level).
    pub epsilon: f64,
    /// The predicted 95% half-width.
    pub predicted95: f64,
    /// Median absolute error observed.
    pub median_abs_error: f64,
    /// 95th percentile (nearest rank) of the absolute errors observed.
    pub p95_abs_error: f64,
    /// How many errors fell inside the predicted half-width.
    pub coverage: Coverage,
}

/// One mechanism's error at every epsilon.
#[derive(Debug, Clone, Serialize)]
pub struct MechanismError {
    /// "count", "sum", "histogram" or "median".
    pub query: &'static str,
    /// The noise (discrete Laplace, permute-and-flip).
    pub mechanism: String,
    /// What an error is measured in.
    pub unit: &'static str,
    /// Where the predicted half-width comes from.
    pub predicted_by: &'static str,
    /// One entry per epsilon.
    pub points: Vec<ErrorPoint>,
}

/// The error part: every mechanism at every epsilon.
#[derive(Debug, Clone, Serialize)]
pub struct DpError {
    /// Rows of the column released on.
    pub rows: usize,
    /// Releases per epsilon and mechanism.
    pub releases: usize,
    /// One entry per mechanism.
    pub mechanisms: Vec<MechanismError>,
}

/// The exact answer a release's error is measured from.
enum Exact {
    Integer(i64),
    Counts(Vec<i64>),
    /// The median's candidate scores (lower is better) and the candidates.
    Scores(Vec<u64>, Vec<i64>),
}

impl Exact {
    fn of(kind: Kind, query: &Query, data: &[i64]) -> Exact {
        match (kind, query) {
            (Kind::Count, _) => Exact::Integer(data.len() as i64),
            (Kind::Histogram, _) => Exact::Counts(histogram::bin_counts(data, &edges())),
            (Kind::Median, Query::Quantile { candidates, q }) => {
                Exact::Scores(quantile::scores(data, candidates, *q), candidates.clone())
            }
            _ => Exact::Integer(sum::clamped_sum(data, LO, HI)),
        }
    }

    /// The absolute errors of one answer: one, or one per bin.
    fn errors(&self, answer: &Answer) -> Result<Vec<f64>> {
        Ok(match (self, answer) {
            (Exact::Integer(e), Answer::Integer(a)) => vec![(a - e).abs() as f64],
            (Exact::Counts(e), Answer::Counts(a)) => {
                a.iter().zip(e).map(|(a, e)| (a - e).abs() as f64).collect()
            }
            (Exact::Scores(scores, candidates), Answer::Integer(a)) => {
                let i = candidates
                    .binary_search(a)
                    .map_err(|_| anyhow!("the median {a} is not a candidate"))?;
                let best = scores.iter().copied().min().unwrap_or(0);
                vec![(scores[i] - best) as f64]
            }
            _ => bail!("the release answered in an unexpected shape: {answer:?}"),
        })
    }
}

/// The predicted 95% half-width of `p`'s error: its accuracy, or for the median the selection bound (a
/// candidate whose score is `t` above the best is picked with probability at most `exp(-t / b)` under
/// permute-and-flip and Gumbel noise alike, so all such candidates together at most `|C| exp(-t / b)`).
fn predicted95(kind: Kind, p: &Plan) -> Result<f64> {
    if let Query::Quantile { candidates, q } = p.query() {
        let (_, den, _) = quantile::constants(*q);
        let b = p.scale() * den as f64;
        return Ok(b * (candidates.len() as f64 / BETA).ln());
    }
    p.accuracy95()
        .ok_or_else(|| anyhow!("the {} plan has no accuracy", kind.name()))
}

/// `releases` releases of `kind` at `epsilon` on `data`: the predicted 95% half-width and every error.
fn release_errors(
    kind: Kind,
    epsilon: f64,
    data: &[i64],
    releases: usize,
) -> Result<(f64, Vec<f64>)> {
    let query = kind.query()?;
    let exact = Exact::of(kind, &query, data);
    let p = plan(
        query,
        Contribution::EVENT,
        Measure::PureEpsilon,
        Budget::Epsilon(epsilon),
    )?;
    let mut errors = Vec::with_capacity(releases);
    for _ in 0..releases {
        errors.extend(exact.errors(&p.release(data)?)?);
    }
    Ok((predicted95(kind, &p)?, errors))
}

/// `releases` releases of `kind` at `epsilon` on `data`: their error against the prediction.
fn error_point(kind: Kind, epsilon: f64, data: &[i64], releases: usize) -> Result<ErrorPoint> {
    let (predicted, errors) = release_errors(kind, epsilon, data, releases)?;
    Ok(ErrorPoint {
        epsilon,
        predicted95: predicted,
        median_abs_error: quantile_of(&errors, 0.5),
        p95_abs_error: quantile_of(&errors, 0.95),
        coverage: coverage(&errors, predicted),
    })
}

/// The error part: `releases` releases per mechanism and epsilon.
pub(super) fn dp_error(epsilons: &[f64], releases: usize, p: Progress) -> Result<DpError> {
    let data = column(ERROR_ROWS);
    let mut mechanisms = Vec::new();
    for kind in Kind::ALL {
        p.say(format!(
            "DP error: {} releases of the {} at each of {} epsilons...",
            releases,
            kind.name(),
            epsilons.len()
        ));
        let points = epsilons
            .iter()
            .map(|&e| error_point(kind, e, &data, releases))
            .collect::<Result<Vec<_>>>()?;
        let probe = plan(
            kind.query()?,
            Contribution::EVENT,
            Measure::PureEpsilon,
            Budget::Epsilon(1.0),
        )?;
        mechanisms.push(MechanismError {
            query: kind.name(),
            mechanism: probe.mechanism().to_string(),
            unit: kind.unit(),
            predicted_by: kind.predicted_by(),
            points,
        });
    }
    Ok(DpError {
        rows: ERROR_ROWS,
        releases,
        mechanisms,
    })
}

/// The time one call takes, from batches of calls (a batch lasts at least 100 us, so calls far shorter than a
/// microsecond are still timed to the nanosecond).
#[derive(Debug, Clone, Serialize)]
pub struct CallTime {
    /// Median over the batches of a batch's time per call, microseconds.
    pub median_us: f64,
    /// Fastest batch's time per call, microseconds.
    pub min_us: f64,
    /// Calls timed in all.
    pub calls: u64,
    /// Rows per second at the median (the column's rows over `median_us`).
    pub rows_per_sec: f64,
}

/// One query at one size: the three ways of answering it, timed.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputPoint {
    /// "sum", "histogram" or "median".
    pub query: &'static str,
    /// Rows in the column.
    pub rows: usize,
    /// The best non-private pass (clamp-and-sum, bin counts, select-nth).
    pub non_private: CallTime,
    /// The node's DP release (`Plan::release`).
    pub duo: CallTime,
    /// OpenDP's own pipeline for the same query (`Plan::release_via_opendp`).
    pub opendp: CallTime,
}

/// Calls `f` once to warm up and to size a batch (at least 100 us of calls), then times batches until `budget`
/// has passed and at least 3 were timed (at most 1,000). `rows` gives the rate.
fn time_calls<T>(
    budget: Duration,
    rows: usize,
    mut f: impl FnMut() -> Result<T>,
) -> Result<CallTime> {
    let t = Instant::now();
    black_box(f()?);
    let once = t.elapsed().as_nanos().max(1);
    let batch = (100_000 / once).clamp(1, 100_000) as u32;
    let start = Instant::now();
    let mut per_call = Vec::new();
    while per_call.len() < 3 || (start.elapsed() < budget && per_call.len() < 1_000) {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(f()?);
        }
        per_call.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(batch));
    }
    per_call.sort_by(f64::total_cmp);
    let median_us = per_call[(per_call.len() - 1) / 2];
    Ok(CallTime {
        median_us,
        min_us: per_call[0],
        calls: per_call.len() as u64 * u64::from(batch),
        rows_per_sec: rows as f64 / (median_us.max(1e-9) / 1e6),
    })
}

/// The non-private pass `benches/dp.rs` compares each query with.
fn non_private(kind: Kind, d: &[i64]) -> i64 {
    match kind {
        Kind::Histogram => {
            let e = edges();
            let mut counts = vec![0i64; e.len() + 1];
            for v in d {
                counts[e.partition_point(|x| *x <= *v)] += 1;
            }
            counts.iter().sum()
        }
        Kind::Median => {
            let mut v = d.to_vec();
            let mid = v.len() / 2;
            *v.select_nth_unstable(mid).1
        }
        _ => d.iter().map(|x| (*x).clamp(LO, HI)).sum(),
    }
}

/// One query at one size, each way timed for `budget`.
fn throughput_point(kind: Kind, rows: usize, budget: Duration) -> Result<ThroughputPoint> {
    let data = column(rows);
    let p = plan(
        kind.query()?,
        Contribution::EVENT,
        Measure::PureEpsilon,
        Budget::Epsilon(1.0),
    )?;
    let non_private = time_calls(budget, rows, || Ok(non_private(kind, black_box(&data))))?;
    let duo = time_calls(budget, rows, || Ok(p.release(black_box(&data))?))?;
    let opendp = time_calls(budget, rows, || Ok(p.release_via_opendp(black_box(&data))?))?;
    Ok(ThroughputPoint {
        query: kind.name(),
        rows,
        non_private,
        duo,
        opendp,
    })
}

/// The throughput part: sum, histogram and median at each size.
pub(super) fn dp_throughput(
    sizes: &[usize],
    budget: Duration,
    p: Progress,
) -> Result<Vec<ThroughputPoint>> {
    let mut out = Vec::new();
    for kind in [Kind::Sum, Kind::Histogram, Kind::Median] {
        p.say(format!(
            "DP throughput: the {} at {} rows, beside OpenDP's pipeline...",
            kind.name(),
            sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for &rows in sizes {
            out.push(throughput_point(kind, rows, budget)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: errors 0, 1, 2, 3, -4 against a half-width of 3: 0, 1 and 2 are inside; 3 is on the edge
    /// and does not count (the interval is open); -4 is 4 in absolute value. 3 of 5.
    #[test]
    fn coverage_counts_errors_strictly_inside_the_half_width() {
        let c = coverage(&[0.0, 1.0, 2.0, 3.0, -4.0], 3.0);
        assert_eq!((c.within, c.total), (3, 5));
        assert_eq!(c.share, 0.6);
        // P(X <= 3) for X ~ Binomial(5, 0.95) = 1 - P(4) - P(5) = 1 - 0.2036 - 0.7738 = 0.0226 > 0.001.
        assert!(c.consistent);
        let none = coverage(&[], 1.0);
        assert_eq!((none.within, none.total, none.share), (0, 0, 0.0));
    }

    /// 179 of 200 is consistent with 95% (P(X <= 179) is about 0.00116); 178 of 200 is not (about 0.0005).
    #[test]
    fn the_binomial_test_rejects_at_a_tenth_of_a_percent() {
        let at = |k: usize| {
            let errs: Vec<f64> = (0..200).map(|i| if i < k { 0.0 } else { 9.0 }).collect();
            coverage(&errs, 1.0)
        };
        assert!(at(179).consistent);
        assert!(!at(178).consistent);
        assert!(at(200).consistent);
        // Binomial(5, 0.95): P(X <= 3) = 0.0225925..., P(X <= 5) = 1.
        assert!((binomial_cdf(3, 5, 0.95) - 0.022_592_5).abs() < 1e-6);
        assert!((binomial_cdf(5, 5, 0.95) - 1.0).abs() < 1e-12);
        // Far in the tail at a large n: no underflow to a wrong 0 or NaN.
        let tail = binomial_cdf(2000, 2400, 0.95);
        assert!(tail.is_finite() && tail > 0.0 && tail < 1e-30);
    }

    /// The count at epsilon 1 (discrete Laplace of scale 1, predicted half-width about 3.3, true coverage
    /// 1 - 2e^-4 / (1 + e^-1), about 97.3%): 400 releases pass the coverage test, which fails at most 0.1% of the
    /// time while the accuracy claim holds. Against half the predicted width the true coverage is about 80%, and
    /// the test (which flags 364 or fewer of 400) misses that with probability about 1e-9.
    #[test]
    fn observed_coverage_meets_the_count_s_accuracy_and_not_half_of_it() {
        let data = column(1_000);
        let (predicted, errors) = release_errors(Kind::Count, 1.0, &data, 400).unwrap();
        assert!((3.0..4.0).contains(&predicted), "{predicted}");
        let c = coverage(&errors, predicted);
        assert!(c.consistent, "{c:?}");
        let half = coverage(&errors, predicted / 2.0);
        assert!(!half.consistent, "{half:?}");
    }

    #[test]
    fn quantiles_are_nearest_rank_of_absolute_values() {
        let v = [-5.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_of(&v, 0.5), 3.0);
        assert_eq!(quantile_of(&v, 0.95), 5.0);
        assert_eq!(quantile_of(&[], 0.5), 0.0);
    }
}
