//! Fixed point in `Z_2^64` for private scoring, and the bit-exact plaintext reference of the scoring protocol.
//!
//! # Representation
//!
//! A real `x` at scale `2^f` is the integer `round(x · 2^f)`, rounded half away from zero, held as a `u64`
//! (two's complement, i.e. an element of `Z_2^64`):
//!
//! | value               | scale                         | who encodes it        |
//! |---------------------|-------------------------------|-----------------------|
//! | attribute `x_i`     | `2^16` ([`ATTR_FRAC_BITS`])    | owner, after clamping to the public bounds |
//! | weight `w_i`        | `2^16` ([`WEIGHT_FRAC_BITS`])  | FI                    |
//! | product, score      | `2^32` ([`SCORE_FRAC_BITS`])   | (the protocol)        |
//! | bias, threshold     | `2^32`                        | FI                    |
//!
//! The score is `s = Σ w̃_i · x̃_i + b̃ mod 2^64` at scale `2^32`. Products are summed at that scale and **never
//! truncated**: the additive shares of `Σ w̃_i x̃_i` that the Gilboa products give the two parties are added to
//! the bias as they are, so the circuit compares exact integers and there is no probabilistic truncation error.
//! The decision is `s ≥ t̃` (threshold `t̃`), which the protocol computes as "the sign of
//! `(owner share + FI share) mod 2^64` is non-negative" after the FI folds `b̃ − t̃` into its share.
//!
//! # Headroom
//!
//! Reading `Z_2^64` as signed integers is exact only while no sum wraps. [`FixedModel::new`] computes, from the
//! public attribute bounds and the FI's encoded weights, the exact extremes of `Σ w̃_i x̃_i` over the box of
//! allowed attributes (an affine function is extreme at a corner, so per term `min/max(w̃_i·lo_i, w̃_i·hi_i)`) and
//! refuses the model if `|s|` or `|s − t̃|` could reach `2^62` ([`HEADROOM_BITS`]), naming the worst case and
//! the attribute with the largest term. Attributes are clamped to their bounds before encoding, so the check
//! holds for every input the owner can give.
//!
//! # Resolution
//!
//! Attributes and weights resolve `2^-16 ≈ 1.5e-5`. A non-zero weight that rounds to zero is refused rather
//! than silently dropped; a model with tiny weights on large attributes should use larger attribute units.
//!
//! # Weight range
//!
//! An encoded weight is a signed 32-bit integer ([`WEIGHT_BITS`]): `|w| < 2^15 = 32768` in model units. Private
//! scoring inputs each weight bit by bit, one oblivious transfer per bit, so the bound halves its cost against
//! the whole 64-bit ring; it also bounds what any weight the FI inputs can be.

use std::fmt;

/// Fractional bits of an encoded attribute.
pub const ATTR_FRAC_BITS: u32 = 16;
/// Fractional bits of an encoded weight.
pub const WEIGHT_FRAC_BITS: u32 = 16;
/// Bits of an encoded weight, a signed integer: weights lie in `[-2^15, 2^15)` in model units.
pub const WEIGHT_BITS: u32 = 32;
/// Fractional bits of a product, of the score, of the bias and of the threshold.
pub const SCORE_FRAC_BITS: u32 = ATTR_FRAC_BITS + WEIGHT_FRAC_BITS;
/// A model is refused if its worst-case `|score|` (or `|score − threshold|`) could reach `2^HEADROOM_BITS`.
pub const HEADROOM_BITS: u32 = 62;

/// Public bounds of an attribute (from the catalogue), inclusive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Bounds {
    /// Bounds `[lo, hi]`.
    pub fn new(lo: f64, hi: f64) -> Bounds {
        Bounds { lo, hi }
    }
}

/// Errors of fixed-point encoding and of the headroom check.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FixedError {
    /// A value is NaN or infinite.
    #[error("{what} is not a finite number")]
    NotFinite {
        /// Which value.
        what: String,
    },
    /// A probability threshold that has no exact linear-score threshold ([`logit_threshold`]).
    #[error("probability threshold {p}: {why}")]
    Probability {
        /// The probability given.
        p: f64,
        /// Why it is refused.
        why: &'static str,
    },
    /// A value is too large for a 64-bit signed encoding at its scale.
    #[error("{what} = {value} does not fit in 64 bits at scale 2^{frac_bits}")]
    OutOfRange {
        /// Which value.
        what: String,
        /// The value.
        value: f64,
        /// Its scale.
        frac_bits: u32,
    },
    /// Bounds with `lo > hi`.
    #[error("bounds of attribute {index} are empty: lo {lo} > hi {hi}")]
    EmptyBounds {
        /// Attribute index.
        index: usize,
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// The numbers of attributes, bounds and weights differ.
    #[error("{attributes} attributes, {bounds} bounds and {weights} weights: they must be equal")]
    LengthMismatch {
        /// Attributes given.
        attributes: usize,
        /// Bounds given.
        bounds: usize,
        /// Weights given.
        weights: usize,
    },
    /// A weight outside the [`WEIGHT_BITS`]-bit range.
    #[error(
        "weight {index} = {value} is out of range: a weight's magnitude must be below {}",
        1u64 << (WEIGHT_BITS - 1 - WEIGHT_FRAC_BITS)
    )]
    WeightOutOfRange {
        /// Attribute index.
        index: usize,
        /// The weight.
        value: f64,
    },
    /// A non-zero weight encodes to zero at scale `2^16`.
    #[error("weight {index} = {value} is below the resolution 2^-{WEIGHT_FRAC_BITS} and would be dropped")]
    WeightUnderflow {
        /// Attribute index.
        index: usize,
        /// The weight.
        value: f64,
    },
    /// The model's worst case could overflow the headroom of `Z_2^64`.
    #[error(
        "model refused: over the public attribute bounds its worst-case |score| is {worst_case_value:e} \
         (2^{worst_case_log2:.2} at scale 2^{SCORE_FRAC_BITS}), which reaches the 2^{HEADROOM_BITS} headroom; \
         the largest term is attribute {largest_term}"
    )]
    HeadroomExceeded {
        /// The worst case, encoded (scale `2^32`).
        worst_case: u128,
        /// The worst case in model units.
        worst_case_value: f64,
        /// `log2` of `worst_case`.
        worst_case_log2: f64,
        /// Index of the attribute with the largest `|w_i| · max(|lo_i|, |hi_i|)`.
        largest_term: usize,
    },
}

/// `round(x · 2^frac_bits)`, half away from zero, as a signed 64-bit integer.
pub fn encode(x: f64, frac_bits: u32, what: impl FnOnce() -> String) -> Result<i64, FixedError> {
    if !x.is_finite() {
        return Err(FixedError::NotFinite { what: what() });
    }
    // Scaling by a power of two is exact (barring overflow, caught below); f64::round is half away from zero.
    let v = (x * (2f64).powi(frac_bits as i32)).round();
    // i64 holds [-2^63, 2^63); both bounds are exact in f64.
    if !(-(2f64).powi(63)..(2f64).powi(63)).contains(&v) {
        return Err(FixedError::OutOfRange {
            what: what(),
            value: x,
            frac_bits,
        });
    }
    Ok(v as i64)
}

/// Clamps an attribute to its public bounds, then encodes it at scale `2^16`. NaN is refused.
pub fn encode_attribute(x: f64, bounds: Bounds) -> Result<i64, FixedError> {
    if x.is_nan() {
        return Err(FixedError::NotFinite {
            what: "attribute".into(),
        });
    }
    encode(x.clamp(bounds.lo, bounds.hi), ATTR_FRAC_BITS, || {
        "attribute".into()
    })
}

/// A score in `Z_2^64` (scale `2^32`) as a real number.
pub fn decode_score(s: u64) -> f64 {
    (s as i64) as f64 / (2f64).powi(SCORE_FRAC_BITS as i32)
}

/// The decision from `sum = (owner share + FI share) mod 2^64` where the FI folded `b̃ − t̃` into its share:
/// `true` iff the sum, read as signed, is non-negative (score ≥ threshold).
pub fn decision_of_sum(sum: u64) -> bool {
    (sum as i64) >= 0
}

/// The band of a score: the number of thresholds (scale `2^32`) it is at or above.
pub fn band_of(score: u64, thresholds: &[i64]) -> u32 {
    thresholds.iter().filter(|&&t| (score as i64) >= t).count() as u32
}

/// A model encoded and checked against the headroom: weights, bias, threshold and the attributes' bounds.
#[derive(Clone, PartialEq)]
pub struct FixedModel {
    weights: Vec<i64>,
    bias: i64,
    threshold: i64,
    bounds: Vec<Bounds>,
    /// The bounds encoded as the owner encodes an attribute at each bound (scale `2^16`).
    encoded_bounds: Vec<(i64, i64)>,
    worst_case: u128,
}

// The weights are the FI's secret: Debug shows only the shape.
impl fmt::Debug for FixedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixedModel({} attributes, ..)", self.weights.len())
    }
}

/// The reference outcome of scoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreReference {
    /// `Σ w̃_i x̃_i + b̃ mod 2^64`, scale `2^32`.
    pub score: u64,
    /// `score ≥ threshold`, i.e. the sign of `score − t̃` is non-negative.
    pub decision: bool,
}

impl FixedModel {
    /// Encodes and checks a model: bounds must be finite and non-empty, weights must not underflow and must fit
    /// [`WEIGHT_BITS`] bits, and the
    /// worst case over the bounds must stay below the headroom (see the module docs).
    pub fn new(
        bounds: &[Bounds],
        weights: &[f64],
        bias: f64,
        threshold: f64,
    ) -> Result<FixedModel, FixedError> {
        if bounds.len() != weights.len() {
            return Err(FixedError::LengthMismatch {
                attributes: bounds.len(),
                bounds: bounds.len(),
                weights: weights.len(),
            });
        }
        let mut enc_w = Vec::with_capacity(weights.len());
        for (i, &w) in weights.iter().enumerate() {
            let e = encode(w, WEIGHT_FRAC_BITS, || format!("weight {i}"))?;
            if e == 0 && w != 0.0 {
                return Err(FixedError::WeightUnderflow { index: i, value: w });
            }
            let half = 1i64 << (WEIGHT_BITS - 1);
            if !(-half..half).contains(&e) {
                return Err(FixedError::WeightOutOfRange { index: i, value: w });
            }
            enc_w.push(e);
        }
        let mut enc_b = Vec::with_capacity(bounds.len());
        for (i, b) in bounds.iter().enumerate() {
            let lo = encode(b.lo, ATTR_FRAC_BITS, || {
                format!("lower bound of attribute {i}")
            })?;
            let hi = encode(b.hi, ATTR_FRAC_BITS, || {
                format!("upper bound of attribute {i}")
            })?;
            if b.lo > b.hi {
                return Err(FixedError::EmptyBounds {
                    index: i,
                    lo: b.lo,
                    hi: b.hi,
                });
            }
            enc_b.push((lo, hi));
        }
        let bias_e = encode(bias, SCORE_FRAC_BITS, || "bias".into())?;
        let thr_e = encode(threshold, SCORE_FRAC_BITS, || "threshold".into())?;

        // Exact extremes of Σ w̃_i x̃_i over the box, in i128 (each term is below 2^126 in magnitude; sums
        // saturate, and anything near saturation is far past the limit anyway).
        let limit: i128 = 1i128 << HEADROOM_BITS;
        let (mut smin, mut smax) = (0i128, 0i128);
        let mut largest = (0usize, 0i128);
        for (i, (&w, &(lo, hi))) in enc_w.iter().zip(&enc_b).enumerate() {
            let (a, b) = (w as i128 * lo as i128, w as i128 * hi as i128);
            smin = smin.saturating_add(a.min(b));
            smax = smax.saturating_add(a.max(b));
            let mag = a.abs().max(b.abs());
            if mag > largest.1 {
                largest = (i, mag);
            }
        }
        let (b, t) = (bias_e as i128, thr_e as i128);
        let (lo, hi) = (smin.saturating_add(b), smax.saturating_add(b));
        let worst = [lo, hi, lo.saturating_sub(t), hi.saturating_sub(t)]
            .iter()
            .map(|v| v.unsigned_abs())
            .max()
            .unwrap_or(0);
        if worst >= limit as u128 {
            return Err(FixedError::HeadroomExceeded {
                worst_case: worst,
                worst_case_value: worst as f64 / (2f64).powi(SCORE_FRAC_BITS as i32),
                worst_case_log2: (worst as f64).log2(),
                largest_term: largest.0,
            });
        }
        Ok(FixedModel {
            weights: enc_w,
            bias: bias_e,
            threshold: thr_e,
            bounds: bounds.to_vec(),
            encoded_bounds: enc_b,
            worst_case: worst,
        })
    }

    /// The encoded weights (scale `2^16`).
    pub fn weights(&self) -> &[i64] {
        &self.weights
    }

    /// The encoded bias (scale `2^32`).
    pub fn bias(&self) -> i64 {
        self.bias
    }

    /// The encoded threshold (scale `2^32`).
    pub fn threshold(&self) -> i64 {
        self.threshold
    }

    /// The public bounds.
    pub fn bounds(&self) -> &[Bounds] {
        &self.bounds
    }

    /// The worst-case `|score|` or `|score − threshold|` over the bounds (scale `2^32`), below `2^62`.
    pub fn worst_case(&self) -> u128 {
        self.worst_case
    }

    /// `b̃ − t̃ mod 2^64`: what the FI adds to its share so the decision is the sign of the sum of shares.
    pub fn decision_offset(&self) -> u64 {
        (self.bias as u64).wrapping_sub(self.threshold as u64)
    }

    /// The owner's side: clamps each attribute to its bounds and encodes it (scale `2^16`, as `Z_2^64`).
    pub fn encode_attributes(&self, attrs: &[f64]) -> Result<Vec<u64>, FixedError> {
        if attrs.len() != self.bounds.len() {
            return Err(FixedError::LengthMismatch {
                attributes: attrs.len(),
                bounds: self.bounds.len(),
                weights: self.weights.len(),
            });
        }
        attrs
            .iter()
            .zip(&self.bounds)
            .map(|(&x, &b)| encode_attribute(x, b).map(|v| v as u64))
            .collect()
    }

    /// The bit-exact plaintext reference of the protocol: `score = Σ w̃_i x̃_i + b̃ mod 2^64` with the attributes
    /// clamped and encoded as the owner does, and `decision = sign(score − t̃) ≥ 0`.
    pub fn score_reference(&self, attrs: &[f64]) -> Result<ScoreReference, FixedError> {
        let x = self.encode_attributes(attrs)?;
        let dot = x.iter().zip(&self.weights).fold(0u64, |acc, (&xi, &wi)| {
            acc.wrapping_add(xi.wrapping_mul(wi as u64))
        });
        let score = dot.wrapping_add(self.bias as u64);
        Ok(ScoreReference {
            score,
            decision: decision_of_sum(dot.wrapping_add(self.decision_offset())),
        })
    }
}

/// The best contribution of each attribute within its public bounds, `max(w̃_i·lõ_i, w̃_i·hĩ_i) mod 2^64`
/// (scale `2^32`): what the FI folds into its input for reasons. It depends on the sign of the weight, so
/// only the FI can compute it.
pub fn best_contributions(model: &FixedModel) -> Vec<u64> {
    model
        .weights
        .iter()
        .zip(&model.encoded_bounds)
        .map(|(&w, &(lo, hi))| {
            let (a, b) = (w as i128 * lo as i128, w as i128 * hi as i128);
            a.max(b) as u64
        })
        .collect()
}

/// The shortfall of each attribute below its best contribution, `best_i − w̃_i·x̃_i mod 2^64`, for the
/// owner's encoded (clamped) attributes `x`: the "points below maximum" the reasons rank. For attributes
/// within the bounds each is exact and non-negative (below `2^63`, by the headroom check).
pub fn shortfalls(model: &FixedModel, x: &[u64]) -> Vec<u64> {
    best_contributions(model)
        .iter()
        .zip(x.iter().zip(&model.weights))
        .map(|(&best, (&x, &w))| best.wrapping_sub(x.wrapping_mul(w as u64)))
        .collect()
}

/// The indices of the `k` largest shortfalls (compared as unsigned integers), largest first; equal
/// shortfalls go to the lower index first. At most `shortfalls.len()` indices.
pub fn worst_reasons(shortfalls: &[u64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..shortfalls.len()).collect();
    // A stable sort by descending shortfall keeps equal shortfalls in index order.
    order.sort_by(|&a, &b| shortfalls[b].cmp(&shortfalls[a]));
    order.truncate(k);
    order
}

/// The linear-score threshold of a logistic model's probability threshold, at scale `2^32`: the smallest
/// integer `T` with `T / 2^32 ≥ logit(p) = ln(p / (1 − p))`.
///
/// A logistic model approves when `σ(s) = 1 / (1 + e^−s) ≥ p`, that is when `s ≥ logit(p)`, `σ` being
/// increasing. The protocol's score is an integer `S` at scale `2^32`, so the decision `S ≥ T` is the same
/// as `σ(S / 2^32) ≥ p` for every score exactly when `T` is `logit(p)` scaled and rounded up. `logit(p)` is
/// irrational for every `p ≠ 1/2`, never on the grid, and computed here in `f64` with an error below
/// `(|logit(p)| + 1)·2^−48` of a grid step; a `p` whose scaled logit lies that close to a grid point is
/// refused (about one `p` in 30 000) rather than rounded the wrong way by chance. `p` must be strictly
/// between 0 and 1, and `|logit(p)|` below `2^20`.
pub fn logit_threshold(p: f64) -> Result<i64, FixedError> {
    let refuse = |why| Err(FixedError::Probability { p, why });
    if !(p > 0.0 && p < 1.0) {
        return refuse("it must be strictly between 0 and 1");
    }
    if p == 0.5 {
        return Ok(0);
    }
    // ln(p) − ln(1 − p), with ln_1p for 1 − p so that p near 0 loses nothing; for p ≥ 1/2, 1 − p is exact.
    let y = if p < 0.5 {
        p.ln() - (-p).ln_1p()
    } else {
        p.ln() - (1.0 - p).ln()
    };
    if !y.is_finite() || y.abs() >= (1u64 << 20) as f64 {
        return refuse("its log-odds are out of range");
    }
    let scale = (2f64).powi(SCORE_FRAC_BITS as i32);
    let z = y * scale;
    let t = z.ceil();
    let margin = (y.abs() + 1.0) * (2f64).powi(-16);
    if (t - z) < margin || (z - (t - 1.0)) < margin {
        return refuse(
            "its log-odds fall too close to a step of the score's fixed point to round with \
             certainty; give the threshold on the linear score instead",
        );
    }
    Ok(t as i64)
}

/// [`FixedModel::new`] then [`FixedModel::score_reference`].
pub fn score_reference(
    attrs: &[f64],
    bounds: &[Bounds],
    weights: &[f64],
    bias: f64,
    threshold: f64,
) -> Result<ScoreReference, FixedError> {
    FixedModel::new(bounds, weights, bias, threshold)?.score_reference(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const S16: f64 = 65536.0;
    const S32: f64 = 4294967296.0;

    /// σ(s) in f64.
    fn sigmoid(s: f64) -> f64 {
        1.0 / (1.0 + (-s).exp())
    }

    #[test]
    fn a_probability_threshold_is_the_logit_rounded_up() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(90);
        let mut ps = vec![
            0.5,
            0.7,
            0.3,
            0.9,
            0.1,
            0.99,
            0.01,
            1e-9,
            1.0 - 1e-9,
            0.25,
            0.75,
        ];
        ps.extend((0..2000).map(|_| rng.random_range(1e-6..1.0 - 1e-6)));
        let mut refused = 0;
        for p in ps {
            let t = match logit_threshold(p) {
                Ok(t) => t,
                Err(FixedError::Probability { .. }) => {
                    refused += 1;
                    continue;
                }
                Err(e) => panic!("{p}: {e}"),
            };
            // The decision is the same at the two scores either side of the threshold: S = T approves,
            // S = T − 1 declines. σ(s) ≥ p is checked as e^s·(1 − p) ≥ p, in odds: one step of the score
            // changes e^s by a factor 1 + 2^-32, and the refusal margin keeps both scores at least 2^-48
            // (relative) away, far above f64's error in this check (σ itself cannot resolve a step near 1).
            let at = t as f64 / S32;
            let below = (t - 1) as f64 / S32;
            assert!(at.exp() * (1.0 - p) >= p, "{p}: T = {t} declines");
            assert!(below.exp() * (1.0 - p) < p, "{p}: T - 1 approves");
            if (0.01..0.99).contains(&p) {
                assert!(sigmoid(at) >= p && sigmoid(below) < p, "{p}");
            }
            // And it survives the model's own encoding exactly.
            assert_eq!(encode(at, SCORE_FRAC_BITS, || "t".into()).unwrap(), t);
        }
        assert!(refused <= 5, "{refused} of 2011 refused");
        assert_eq!(logit_threshold(0.5), Ok(0));
        // logit(0.7) = 0.8472978603872037: ceil(0.8472978603872037 · 2^32).
        assert_eq!(logit_threshold(0.7), Ok(3_639_116_601));
        assert_eq!(logit_threshold(0.3), Ok(-3_639_116_600));
        for bad in [0.0, 1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                logit_threshold(bad),
                Err(FixedError::Probability { .. })
            ));
        }
    }

    #[test]
    fn encoding_rounds_half_away_from_zero() {
        let e = |x: f64| encode(x, 16, || "x".into()).unwrap();
        assert_eq!(e(0.0), 0);
        assert_eq!(e(-0.0), 0);
        assert_eq!(e(1.0), 65536);
        assert_eq!(e(-1.0), -65536);
        assert_eq!(e(0.5 / S16), 1);
        assert_eq!(e(-0.5 / S16), -1);
        assert_eq!(e(1.5 / S16), 2);
        assert_eq!(e(-2.5 / S16), -3);
        assert_eq!(e(0.49 / S16), 0);
        assert!(matches!(
            encode(f64::NAN, 16, || "x".into()),
            Err(FixedError::NotFinite { .. })
        ));
        assert!(matches!(
            encode(f64::INFINITY, 16, || "x".into()),
            Err(FixedError::NotFinite { .. })
        ));
        assert!(matches!(
            encode(2f64.powi(47), 16, || "x".into()),
            Err(FixedError::OutOfRange { .. })
        ));
        assert_eq!(
            encode(-(2f64.powi(47)), 16, || "x".into()).unwrap(),
            i64::MIN
        );
    }

    #[test]
    fn attributes_are_clamped_before_encoding() {
        let b = Bounds::new(-2.0, 3.0);
        assert_eq!(encode_attribute(10.0, b).unwrap(), 3 * 65536);
        assert_eq!(encode_attribute(-10.0, b).unwrap(), -2 * 65536);
        assert_eq!(encode_attribute(f64::INFINITY, b).unwrap(), 3 * 65536);
        assert_eq!(encode_attribute(3.0, b).unwrap(), 3 * 65536);
        assert!(encode_attribute(f64::NAN, b).is_err());
    }

    /// The reference computed independently: encode with f64 rounding, then exact i128 arithmetic.
    fn slow_reference(
        attrs: &[f64],
        bounds: &[Bounds],
        w: &[f64],
        bias: f64,
        thr: f64,
    ) -> (i128, bool) {
        let enc = |x: f64, s: f64| -> i128 { (x * s).round() as i128 };
        let mut sum = enc(bias, S32);
        for ((&x, b), &wi) in attrs.iter().zip(bounds).zip(w) {
            sum += enc(x.max(b.lo).min(b.hi), S16) * enc(wi, S16);
        }
        (sum, sum >= enc(thr, S32))
    }

    #[test]
    fn reference_with_negative_weights_zero_and_clamp_bounds() {
        let bounds = [
            Bounds::new(0.0, 1.0),
            Bounds::new(-5.0, 5.0),
            Bounds::new(0.0, 1000.0),
        ];
        let weights = [2.5, -1.25, 0.0];
        let m = FixedModel::new(&bounds, &weights, 0.75, 1.0).unwrap();
        // 2.5·1 − 1.25·(−5) + 0 + 0.75 = 9.5
        let r = m.score_reference(&[7.0, -9.0, 123.0]).unwrap();
        assert_eq!(r.score as i64, (9.5 * S32) as i64);
        assert!(r.decision);
        assert_eq!(decode_score(r.score), 9.5);
        // All zero attributes: score = bias.
        let r = m.score_reference(&[0.0, 0.0, 0.0]).unwrap();
        assert_eq!(r.score as i64, (0.75 * S32) as i64);
        assert!(!r.decision);
        // Negative score.
        let r = m.score_reference(&[0.0, 5.0, 0.0]).unwrap();
        assert_eq!(decode_score(r.score), -5.5);
        assert!(!r.decision);
    }

    #[test]
    fn score_exactly_at_threshold_decides_yes() {
        let bounds = [Bounds::new(-10.0, 10.0); 2];
        // 0.5·2 + 0.25·(−2) + 0.5 = 1.0 = threshold.
        let r = score_reference(&[2.0, -2.0], &bounds, &[0.5, 0.25], 0.5, 1.0).unwrap();
        assert_eq!(decode_score(r.score), 1.0);
        assert!(r.decision);
        // One unit of the last place below: no.
        let r = score_reference(&[2.0, -2.0], &bounds, &[0.5, 0.25], 0.5 - 1.0 / S32, 1.0).unwrap();
        assert!(!r.decision);
    }

    #[test]
    fn reference_matches_integer_arithmetic_on_random_models() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(77);
        for _ in 0..500 {
            let n = rng.random_range(1..40);
            let bounds: Vec<Bounds> = (0..n)
                .map(|_| {
                    let lo = rng.random_range(-1e4..1e4);
                    Bounds::new(lo, lo + rng.random_range(0.0..1e4))
                })
                .collect();
            let w: Vec<f64> = (0..n).map(|_| rng.random_range(-100.0..100.0)).collect();
            let attrs: Vec<f64> = (0..n).map(|_| rng.random_range(-2e4..2e4)).collect();
            let bias = rng.random_range(-1e6..1e6);
            let thr = rng.random_range(-1e6..1e6);
            let r = score_reference(&attrs, &bounds, &w, bias, thr).unwrap();
            let (sum, dec) = slow_reference(&attrs, &bounds, &w, bias, thr);
            assert_eq!(r.score as i64 as i128, sum);
            assert_eq!(r.decision, dec);
            // The protocol's view: shares of the dot product plus the FI's folded offset.
            let m = FixedModel::new(&bounds, &w, bias, thr).unwrap();
            let x = m.encode_attributes(&attrs).unwrap();
            let dot = x
                .iter()
                .zip(m.weights())
                .fold(0u64, |a, (&x, &w)| a.wrapping_add(x.wrapping_mul(w as u64)));
            let owner_share: u64 = rng.random();
            let fi_share = dot
                .wrapping_sub(owner_share)
                .wrapping_add(m.decision_offset());
            assert_eq!(decision_of_sum(owner_share.wrapping_add(fi_share)), dec);
        }
    }

    #[test]
    fn headroom_refusal_names_the_worst_case() {
        // 2^47 · 2^16 (attr) × 2^14 · 2^16 (weight) = 2^93 ≫ 2^62.
        let bounds = [Bounds::new(0.0, 1.0), Bounds::new(-(2f64.powi(47)), 0.0)];
        let err = FixedModel::new(&bounds, &[1.0, 2f64.powi(14)], 0.0, 0.0).unwrap_err();
        match &err {
            FixedError::HeadroomExceeded {
                largest_term,
                worst_case_log2,
                ..
            } => {
                assert_eq!(*largest_term, 1);
                assert!(*worst_case_log2 > 92.9 && *worst_case_log2 < 93.1);
            }
            e => panic!("unexpected {e}"),
        }
        assert!(err.to_string().contains("headroom"));
        // Exactly at the limit is refused, one below is accepted: |w·x| = 2^62 exactly.
        let b = [Bounds::new(-(2f64.powi(16)), 2f64.powi(16))];
        assert!(matches!(
            FixedModel::new(&b, &[2f64.powi(14)], 0.0, 0.0),
            Err(FixedError::HeadroomExceeded { worst_case, .. }) if worst_case == 1u128 << 62
        ));
        let m = FixedModel::new(&b, &[2f64.powi(14) - 1.0 / S16], 0.0, 0.0).unwrap();
        assert!(m.worst_case() < 1u128 << 62);
        // The threshold counts too: score fits but score − threshold does not.
        let b = [Bounds::new(0.0, 2f64.powi(15))];
        assert!(FixedModel::new(&b, &[2f64.powi(14)], 0.0, 0.0).is_ok());
        assert!(matches!(
            FixedModel::new(&b, &[2f64.powi(14)], 0.0, -(2f64.powi(29))),
            Err(FixedError::HeadroomExceeded { .. })
        ));
    }

    #[test]
    fn weights_are_32_bit_signed_at_scale_2_16() {
        let b = [Bounds::new(0.0, 1.0)];
        let top = 2f64.powi(15);
        for ok in [top - 1.0 / S16, -top] {
            assert!(FixedModel::new(&b, &[ok], 0.0, 0.0).is_ok(), "{ok}");
        }
        for bad in [top, -top - 1.0 / S16, 1e12] {
            let e = FixedModel::new(&b, &[bad], 0.0, 0.0).unwrap_err();
            assert!(
                matches!(e, FixedError::WeightOutOfRange { index: 0, .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("below 32768"), "{e}");
        }
    }

    #[test]
    fn malformed_models_are_refused() {
        let b = [Bounds::new(0.0, 1.0)];
        assert!(matches!(
            FixedModel::new(&b, &[1.0, 2.0], 0.0, 0.0),
            Err(FixedError::LengthMismatch { .. })
        ));
        assert!(matches!(
            FixedModel::new(&[Bounds::new(1.0, 0.0)], &[1.0], 0.0, 0.0),
            Err(FixedError::EmptyBounds { index: 0, .. })
        ));
        assert!(matches!(
            FixedModel::new(&b, &[1e-6], 0.0, 0.0),
            Err(FixedError::WeightUnderflow { index: 0, .. })
        ));
        assert!(matches!(
            FixedModel::new(&b, &[f64::NAN], 0.0, 0.0),
            Err(FixedError::NotFinite { .. })
        ));
        let m = FixedModel::new(&b, &[1.0], 0.0, 0.0).unwrap();
        assert!(matches!(
            m.score_reference(&[]),
            Err(FixedError::LengthMismatch { .. })
        ));
        assert!(matches!(
            m.score_reference(&[f64::NAN]),
            Err(FixedError::NotFinite { .. })
        ));
        assert_eq!(format!("{m:?}"), "FixedModel(1 attributes, ..)");
    }

    #[test]
    fn bands() {
        let t = [-(1i64 << 32), 0, 1 << 32];
        assert_eq!(band_of((-(2i64 << 32)) as u64, &t), 0);
        assert_eq!(band_of((-(1i64 << 32)) as u64, &t), 1);
        assert_eq!(band_of(0, &t), 2);
        assert_eq!(band_of(1 << 32, &t), 3);
        assert_eq!(band_of(i64::MAX as u64, &t), 3);
        assert_eq!(band_of(i64::MIN as u64, &t), 0);
    }
}
