//! Bounded integer sum: clamp each row into public bounds `[lo, hi]`, add exactly, then add discrete noise.
//!
//! # Citations
//! * \[CSVW22\] Casacuberta, Shoemate, Vadhan, Wagaman, *Widespread Underestimation of Sensitivity in
//!   Differentially Private Libraries and How to Fix It*, CCS 2022 (why overflow semantics matter).
//! * \[DMNS06\] Dwork, McSherry, Nissim, Smith, *Calibrating Noise to Sensitivity in Private Data Analysis*.
//! * \[CKS20\] Canonne, Kamath, Steinke, *The Discrete Gaussian for Differential Privacy* (the noise).
//!
//! # Semantics and proof sketch
//! The OpenDP pipeline this feeds is `make_clamp >> make_sum >> make_laplace | make_gaussian` over
//! `VectorDomain<AtomDomain<i64>>` with `SymmetricDistance` and no public size. For bounds of mixed sign
//! OpenDP picks `make_bounded_int_split_sum`: positives and negatives are each summed with saturating
//! arithmetic, then added with saturation; for bounds of one sign it picks `make_bounded_int_monotonic_sum`,
//! one saturating sum. Its stability map is `d_in * max(|lo|, |hi|)` (refused when that overflows `i64`).
//!
//! [`clamped_sum`] computes *the same function*: a saturating sum of same-sign values equals the exact sum
//! clamped to the `i64` range (once it saturates, further same-sign terms keep it there), so we accumulate
//! positives and negatives exactly (in `i64` within chunks short enough that they cannot overflow, then in
//! `i128`), clamp each to the `i64` range, and add them with saturation. Equal function, so equal
//! sensitivity: the privacy map of the OpenDP pipeline holds for our output fed to the same noise
//! measurement. `tests.rs` checks equality against OpenDP's transformation on random and saturating inputs.
//!
//! # Runtime
//! One pass, `O(n)`, no allocation; about memory speed.
//!
//! # Utility
//! Error is the noise alone (no bias when the data are within bounds): see [`super::Plan::accuracy`].

use opendp::core::Transformation;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::Fallible;
use opendp::metrics::{AbsoluteDistance, SymmetricDistance};
use opendp::transformations::{make_clamp, make_sum};

#[cfg(test)]
mod tests;

/// Clamps each value into `[lo, hi]` and sums them with OpenDP's saturating split-sum semantics (see the
/// module docs): the result is the exact sum of positives clamped to `i64::MAX`, plus the exact sum of
/// negatives clamped to `i64::MIN`, added with saturation.
///
/// Requires `lo <= hi`; callers check that (and `lo > i64::MIN`) when planning.
pub fn clamped_sum(values: &[i64], lo: i64, hi: i64) -> i64 {
    debug_assert!(lo <= hi);
    let magnitude = (lo.unsigned_abs()).max(hi.unsigned_abs()).max(1);
    // Rows per chunk such that a chunk's partial sums cannot leave i64.
    let chunk = usize::try_from(i64::MAX as u64 / magnitude)
        .unwrap_or(usize::MAX)
        .max(1);
    let (mut pos, mut neg) = (0i128, 0i128);
    for part in values.chunks(chunk) {
        if lo >= 0 {
            pos += part.iter().map(|x| (*x).clamp(lo, hi)).sum::<i64>() as i128;
        } else if hi <= 0 {
            neg += part.iter().map(|x| (*x).clamp(lo, hi)).sum::<i64>() as i128;
        } else {
            let (mut p, mut n) = (0i64, 0i64);
            for x in part {
                let c = (*x).clamp(lo, hi);
                p += c.max(0);
                n += c.min(0);
            }
            pos += p as i128;
            neg += n as i128;
        }
    }
    let pos = pos.min(i64::MAX as i128) as i64;
    let neg = neg.max(i64::MIN as i128) as i64;
    pos.saturating_add(neg)
}

/// `make_clamp >> make_sum` over `i64` rows in `[lo, hi]` with no public size: the OpenDP transformation
/// whose function [`clamped_sum`] reproduces and whose stability map we charge for.
pub fn opendp_sum(
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
    let clamp = make_clamp(
        VectorDomain::new(AtomDomain::default()),
        SymmetricDistance,
        (lo, hi),
    )?;
    let sum = make_sum(clamp.output_domain.clone(), SymmetricDistance)?;
    clamp >> sum
}
