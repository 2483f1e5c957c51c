//! Accuracy of the discrete Gaussian, in bounded work at any scale.
//!
//! OpenDP's `discrete_gaussian_scale_to_accuracy` sums the distribution's mass term by term, out to about 40
//! standard deviations: work linear in the scale. The average daily balance's zCDP form has a scale near 1e8
//! at rho 1 (a sensitivity of $10,000 x 92 days), where it ran for minutes on a cost preview. Its inverse,
//! `accuracy_to_discrete_gaussian_scale`, is a bisection whose every step is linear in the accuracy.
//!
//! Here, up to [`EXACT_SCALE_LIMIT`] we use OpenDP's exact functions (a few hundred thousand terms at most);
//! above it a closed-form tail bound:
//!
//! * Canonne, Kamath and Steinke 2020 ("The Discrete Gaussian for Differential Privacy", Proposition 25): for
//!   `X ~ N_Z(0, sigma^2)` and an integer `t >= 0`, `P[X > t] = P[X >= t + 1] <= P[N(0, sigma^2) >= t]`, the
//!   continuous Gaussian's tail one step in. OpenDP computes that tail with outward rounding
//!   (`conservative_discrete_gaussian_tail_to_alpha`: it never underestimates `P[X > t]`).
//! * By symmetry `P[|X| > t] <= 2 P[X > t]`. The smallest integer `t` whose bound is at most `beta` gives the
//!   accuracy `t + 1`: `P[|X| >= t + 1] <= beta`, the same meaning as OpenDP's exact function, whose answer is
//!   the smallest such integer. Ours is therefore never below the exact one (conservative: a shown interval
//!   holds at least as often as stated), and above it by the one-step shift of the proposition and the
//!   single-precision rounding of OpenDP's `erfc`, about one unit in 1e7 of the accuracy.
//!
//! Finding `t` is a doubling then a bisection over integers (at most about 130 evaluations of the bound at any
//! scale), so one preview's work is bounded whatever the request states.

use dashu::integer::UBig;
use dashu::rational::RBig;
use opendp::accuracy::{
    conservative_discrete_gaussian_tail_to_alpha, discrete_gaussian_scale_to_accuracy,
};

use super::DpError;

/// Noise scales up to which OpenDP's exact, term-by-term accuracy functions are used (their work is about
/// 40 x the scale, under a millisecond here); above, the bounded closed form of this module.
pub const EXACT_SCALE_LIMIT: f64 = 1_000.0;

/// Half-width `a` (an integer) such that discrete Gaussian noise of scale `scale` is in `(-a, a)` with
/// probability at least `1 - beta`: OpenDP's exact value up to [`EXACT_SCALE_LIMIT`], the closed-form bound
/// above (never below the exact value; see the module notes).
pub fn discrete_gaussian_accuracy(scale: f64, beta: f64) -> Result<f64, DpError> {
    check(scale, beta)?;
    if scale <= EXACT_SCALE_LIMIT {
        // OpenDP gives up when the density underflows before the mass is reached (beta near 0): use the bound.
        if let Ok(a) = discrete_gaussian_scale_to_accuracy(scale, beta) {
            return Ok(a);
        }
    }
    discrete_gaussian_accuracy_bound(scale, beta)
}

/// The closed-form accuracy bound at any scale: `t + 1` for the smallest integer `t` with
/// `2 * P[X > t] <= beta`, `P[X > t]` bounded above by OpenDP's conservative tail.
pub fn discrete_gaussian_accuracy_bound(scale: f64, beta: f64) -> Result<f64, DpError> {
    check(scale, beta)?;
    let sigma = RBig::try_from(scale)
        .map_err(|_| DpError::InvalidBudget(format!("scale {scale} is not a finite number")))?;
    let meets = |t: u64| -> Result<bool, DpError> {
        let tail = conservative_discrete_gaussian_tail_to_alpha(sigma.clone(), UBig::from(t))
            .map_err(DpError::opendp)?;
        Ok(2.0 * tail <= beta)
    };
    // Double from about one standard deviation to a `t` that meets beta (the tail at 40 sigma is below any
    // positive double's worth; OpenDP's single-precision erfc then gives its smallest bound).
    let mut hi = (scale.ceil() as u64).max(1);
    let mut doublings = 0;
    while !meets(hi)? {
        doublings += 1;
        hi = match hi.checked_mul(2) {
            Some(h) if doublings <= 64 => h,
            _ => {
                return Err(DpError::InvalidBudget(format!(
                    "no accuracy bound at beta {beta}; state a larger failure probability"
                )))
            }
        };
    }
    // Smallest t in [0, hi] that meets beta (t = 0 never does: 2 P[X > 0] is about 1 > beta).
    let mut lo = 0u64;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if meets(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi as f64 + 1.0)
}

/// The largest scale (to a part in 1e12) whose [`discrete_gaussian_accuracy`] at `beta` is at most `alpha`:
/// a bisection on that function (non-decreasing in the scale), so at most about 100 evaluations, each bounded.
///
/// OpenDP's own inverse (`accuracy_to_discrete_gaussian_scale`) is not used: each of its steps is linear in
/// `alpha`, and its answer's accuracy by OpenDP's forward function can be one more than `alpha`.
pub fn discrete_gaussian_scale_for_accuracy(alpha: f64, beta: f64) -> Result<f64, DpError> {
    if !(alpha.is_finite() && alpha >= 1.0) {
        return Err(DpError::InvalidBudget(format!(
            "no discrete noise is within {alpha} of the exact value; ask for an accuracy of at least 1"
        )));
    }
    check(1.0, beta)?;
    let fits =
        |s: f64| -> Result<bool, DpError> { Ok(discrete_gaussian_accuracy(s, beta)? <= alpha) };
    let (mut lo, mut hi) = (alpha / 64.0, alpha);
    let mut steps = 0;
    while !fits(lo)? {
        lo /= 2.0;
        steps += 1;
        if steps > 64 {
            return Err(DpError::InvalidBudget(format!(
                "no noise scale meets the accuracy {alpha} at beta {beta}"
            )));
        }
    }
    while fits(hi)? {
        hi *= 2.0;
        steps += 1;
        if steps > 128 {
            return Err(DpError::InvalidBudget(format!(
                "no noise scale bounds the accuracy {alpha} at beta {beta}"
            )));
        }
    }
    for _ in 0..200 {
        if hi / lo - 1.0 < 1e-12 {
            break;
        }
        let mid = lo + (hi - lo) / 2.0;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn check(scale: f64, beta: f64) -> Result<(), DpError> {
    if !(scale.is_finite() && scale > 0.0 && beta > 0.0 && beta < 1.0) {
        return Err(DpError::InvalidBudget(format!(
            "need a positive finite scale and 0 < beta < 1, got ({scale}, {beta})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound is never below OpenDP's exact accuracy and within a unit or two of it (2e-5 relative at
    /// beta 1e-9, from the single-precision erfc), at scales where the exact one is computable (up to 1e5
    /// here; its cost grows with the scale). Measured: scale 1e5, beta 0.05: 195,998 vs 195,997.
    #[test]
    fn the_bound_is_conservative_and_tight_where_the_exact_accuracy_is_computable() {
        for scale in [0.5, 1.0, 3.7, 10.0, 99.5, 1_000.0, 12_345.6, 100_000.0] {
            for beta in [0.5, 0.05, 1e-3, 1e-9] {
                let exact = discrete_gaussian_scale_to_accuracy(scale, beta).unwrap();
                let bound = discrete_gaussian_accuracy_bound(scale, beta).unwrap();
                assert!(
                    bound >= exact,
                    "scale {scale} beta {beta}: {bound} < {exact}"
                );
                assert!(
                    bound - exact <= 2.0 + exact * 2e-5,
                    "scale {scale} beta {beta}: {bound} vs {exact}"
                );
                assert_eq!(
                    discrete_gaussian_accuracy(scale, beta).unwrap(),
                    if scale <= EXACT_SCALE_LIMIT {
                        exact
                    } else {
                        bound
                    }
                );
            }
        }
    }

    /// At the average daily balance's rho-1 scale (about 6.5e7) the accuracy answers; it matches the
    /// continuous Gaussian's two-sided 95% quantile (1.96 sigma) to a part in a million, from above.
    #[test]
    fn large_scales_answer_with_the_closed_form() {
        let scale = 1e6 * 92.0 / 2f64.sqrt();
        let a = discrete_gaussian_accuracy(scale, 0.05).unwrap();
        let continuous = 1.959_963_984_540_054 * scale;
        assert!(a >= continuous && a < continuous * (1.0 + 1e-6), "{a}");
        // Tiny beta and huge scales stay bounded and finite.
        assert!(discrete_gaussian_accuracy(1e15, 1e-30).unwrap().is_finite());
        // Past single precision's smallest tail the bound refuses rather than loops.
        assert!(discrete_gaussian_accuracy(1e15, 1e-300).is_err());
    }

    /// The inverse meets the target with the largest scale to within the bisection's precision, both sides
    /// of the exact range.
    #[test]
    fn the_scale_for_an_accuracy_meets_it_and_is_the_largest() {
        for alpha in [1.0, 2.5, 40.0, 1_500.0, 3_000.0, 1e5, 9.2e7] {
            for beta in [0.05, 1e-6] {
                let s = discrete_gaussian_scale_for_accuracy(alpha, beta).unwrap();
                assert!(
                    discrete_gaussian_accuracy(s, beta).unwrap() <= alpha,
                    "{alpha} {beta}"
                );
                let a = discrete_gaussian_accuracy(s * (1.0 + 1e-9), beta).unwrap();
                assert!(
                    a > alpha - 1.0,
                    "{alpha} {beta}: {s} is not near the largest"
                );
            }
        }
        assert!(discrete_gaussian_scale_for_accuracy(0.5, 0.05).is_err());
    }
}
