//! Answers composed from noisy parts: a mean, a variance and a coefficient of variation from noisy sums,
//! a noisy sum of squares and a noisy (or public) count.
//!
//! # Citations
//! * \[DR14\] Dwork, Roth, *The Algorithmic Foundations of Differential Privacy*, Proposition 2.1
//!   (post-processing).
//! * \[Pop35\] Popoviciu, *Sur les équations algébriques ayant toutes leurs racines réelles*, 1935 (the
//!   variance of values in `[lo, hi]` is at most `((hi - lo) / 2)^2`).
//!
//! # Semantics and proof sketch
//! Every function here reads only released noisy integers and public parameters (bounds, a public
//! denominator), never the data, so its output is as private as the parts it reads (post-processing,
//! \[DR14\]): composing costs nothing beyond the parts' [`super::Plan::cost`]s. With `S` the noisy sum of
//! the values clamped into `[lo, hi]`, `S2` the noisy sum of their squares and `n` the denominator (a
//! noisy count, or a public number of rows):
//!
//! | function | value | no value when |
//! |---|---|---|
//! | [`mean`] | `S / n` | `n < 1` |
//! | [`variance`] | `S2 / n - (S / n)^2`, clamped into `[0, ((hi - lo) / 2)^2]` | `n < 1` |
//! | [`stdev`] | `sqrt(variance)`, so in `[0, (hi - lo) / 2]` | `n < 1` |
//! | [`coefficient_of_variation`] | `sqrt(variance) / mean` | `n < 1`, or the mean is not positive |
//!
//! # Clamping: one convention
//! A variance is clamped into `[0, ((hi - lo) / 2)^2]`: the range the exact population variance of values
//! in `[lo, hi]` lies in \[Pop35\]. Noise can push `S2 / n - (S / n)^2` below zero or above that bound; the
//! clamp moves it to the nearer end. The planned [`super::Query::Variance`] (over a public denominator),
//! the node's DP `variance` (over a noisy count) and its coefficient of variation of monthly income (over
//! the public number of months) all use this one rule, through [`variance`]. The coefficient of variation
//! is computed from the clamped variance and is not clamped further here (a caller may clamp it into the
//! published bounds of what it releases). A mean is not clamped: over a public denominator its exact
//! value need not lie in `[lo, hi]`, and over a noisy count it is released as computed.
//!
//! A denominator below 1 gives no value (`None`) rather than a quotient by a noisy zero or a negative
//! count; so does a coefficient of variation whose noisy mean is zero or negative.
//!
//! # Runtime
//! Constant: a few floating-point operations.
//!
//! # Utility
//! Clamping projects the estimate onto an interval that holds the exact value, so it never moves the
//! estimate farther from it. The ratios are biased when the denominator is a noisy count near zero (and a
//! coefficient of variation when the noisy mean is); the error of each part is that part's
//! [`super::Plan::accuracy`].

#[cfg(test)]
mod tests;

/// `sum / denominator`: a mean from a noisy sum over a noisy count, or over a public denominator.
///
/// `None` when the denominator is below 1 (a noisy count can be zero or negative).
pub fn mean(sum: i64, denominator: i64) -> Option<f64> {
    (denominator >= 1).then(|| sum as f64 / denominator as f64)
}

/// The population variance `S2 / n - (S / n)^2` from a noisy sum `S` and a noisy sum of squares `S2` of
/// values clamped into `[lo, hi]`, over a denominator `n` (a noisy count, or a public number of rows),
/// clamped into `[0, ((hi - lo) / 2)^2]` (the module's one convention).
///
/// `None` when `n` is below 1.
pub fn variance(sum: i64, sum_of_squares: i64, n: i64, lo: i64, hi: i64) -> Option<f64> {
    let mean = mean(sum, n)?;
    let raw = sum_of_squares as f64 / n as f64 - mean * mean;
    let half_range = (hi as f64 - lo as f64) / 2.0;
    Some(raw.clamp(0.0, half_range * half_range))
}

/// The population standard deviation `sqrt(variance)`, from the clamped [`variance`] (so in
/// `[0, (hi - lo) / 2]`, the range a standard deviation of values in `[lo, hi]` can have).
///
/// `None` when `n` is below 1.
pub fn stdev(sum: i64, sum_of_squares: i64, n: i64, lo: i64, hi: i64) -> Option<f64> {
    variance(sum, sum_of_squares, n, lo, hi).map(f64::sqrt)
}

/// The coefficient of variation `sqrt(variance) / mean` from a noisy sum, a noisy sum of squares and a
/// denominator `n`, with the [`variance`] clamped as the module says.
///
/// `None` when `n` is below 1 or the noisy mean is not positive (a ratio over a mean at or below zero
/// says nothing about variability).
pub fn coefficient_of_variation(
    sum: i64,
    sum_of_squares: i64,
    n: i64,
    lo: i64,
    hi: i64,
) -> Option<f64> {
    let mean = mean(sum, n).filter(|m| *m > 0.0)?;
    let var = variance(sum, sum_of_squares, n, lo, hi)?;
    Some(var.sqrt() / mean)
}
