//! Quantile (median) over public candidates: score every candidate by how far it is from the `q`-quantile
//! of the data, then pick one with a private selection (report-noisy-max).
//!
//! # Citations
//! * \[MS20\] McKenna, Sheldon, *Permute-and-Flip: A new mechanism for differentially private selection*,
//!   NeurIPS 2020 (pure DP: exponential noise).
//! * \[MT07\] McSherry, Talwar, *Mechanism Design via Differential Privacy* (the exponential mechanism;
//!   zCDP: Gumbel noise).
//! * \[Smi11\] Smith, *Privacy-preserving statistical estimation with optimal convergence rates* (quantile
//!   scores).
//!
//! # Semantics and proof sketch
//! OpenDP's `make_private_quantile` is `make_quantile_score_candidates >> make_noisy_max >> index`. The
//! scores are integers: with `q = num/den` (exact when `q`'s binary denominator is below 10,000, otherwise
//! truncated to a multiple of 1/10,000), candidate `c` scores
//! `|(den - num) * min(#(x < c), L) - num * min(#(x > c), L)|` with `L = floor(u64::MAX / den)`, and the
//! smallest score is the most likely pick. [`scores`] computes this same function (the constants by
//! [`constants`], which mirrors OpenDP's private `score_candidates_constants` for an unknown size);
//! `tests.rs` checks both against OpenDP's transformation on random data and several `q`. Our release then
//! invokes OpenDP's own `make_noisy_max` with the scale `make_private_quantile` uses (`scale * den`), so the
//! privacy map charged, that of `make_private_quantile`, covers it.
//!
//! # Runtime
//! One pass, `O(n log c)` for `c` candidates, then `O(c)` noise draws.
//!
//! # Utility
//! No closed-form interval is given (accuracy is "n/a"): the error depends on the data's spread near the
//! quantile. The answer is always one of the candidates, so a grid step bounds the resolution.

use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::Fallible;
use opendp::measurements::{make_private_quantile, TopKMeasure};
use opendp::metrics::SymmetricDistance;

#[cfg(test)]
mod tests;

/// The quantile's integer form `(num, den)` and the count limit `L`, as OpenDP computes them for data of
/// unknown size. Requires `0 <= q <= 1`.
pub fn constants(q: f64) -> (u64, u64, u64) {
    const APPROX_DEN: u64 = 10_000;
    // q = m / 2^k exactly for the smallest such k; exact when 2^k < 10,000 (k <= 13).
    let exact = (0..=13u32).find_map(|k| {
        let scaled = q * (1u64 << k) as f64; // exact: scaling by a power of two
        (scaled.fract() == 0.0).then_some((scaled as u64, 1u64 << k))
    });
    // OpenDP's `round_cast` (num-traits' `NumCast`) truncates toward zero.
    let (num, den) = exact.unwrap_or(((q * APPROX_DEN as f64) as u64, APPROX_DEN));
    (num, den, u64::MAX / den)
}

/// One score per candidate (lower is closer to the `q`-quantile), equal to OpenDP's
/// `make_quantile_score_candidates` for data of unknown size. Requires strictly increasing `candidates`.
pub fn scores(values: &[i64], candidates: &[i64], q: f64) -> Vec<u64> {
    let (num, den, limit) = constants(q);
    // below[i]: rows in [c_{i-1}, c_i) (i.e. less than c_i, at least c_{i-1}); at[i]: rows equal to c_i.
    let mut below = vec![0u64; candidates.len() + 1];
    let mut at = vec![0u64; candidates.len()];
    for x in values {
        let lt = candidates.partition_point(|c| *c < *x);
        if lt < candidates.len() && candidates[lt] == *x {
            at[lt] += 1;
        } else {
            below[lt] += 1;
        }
    }
    let n = values.len() as u64;
    let (mut lt, mut le) = (0u64, 0u64);
    (0..candidates.len())
        .map(|i| {
            lt = le + below[i];
            le = lt + at[i];
            let gt = n - le;
            ((den - num) * lt.min(limit)).abs_diff(num * gt.min(limit))
        })
        .collect()
}

/// OpenDP's `make_private_quantile` over `i64` rows with no public size, for output measure `MO`.
pub fn opendp_quantile<MO: TopKMeasure>(
    candidates: &[i64],
    q: f64,
    scale: f64,
) -> Fallible<Measurement<VectorDomain<AtomDomain<i64>>, SymmetricDistance, MO, i64>> {
    make_private_quantile(
        VectorDomain::new(AtomDomain::default()),
        SymmetricDistance,
        MO::default(),
        candidates.to_vec(),
        q,
        scale,
    )
}
