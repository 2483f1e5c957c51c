//! The units of privacy accounting, defined once for the whole workspace: the node's one [`Measure`] and
//! [`Amount`]s in it. The mechanisms here plan in them, and the owner's ledger and policies (`duo-policies`
//! re-exports them) and the node account in them.
//!
//! Every amount is an integer number of nano-units (1e-9 of epsilon or rho), so sums are exact and "a
//! budget for exactly `k` releases" means what it says. Conversions from real numbers:
//!
//! - a privacy map's output becomes a charge rounded *up*, exactly ([`Amount::from_f64_ceil`]); so does a
//!   decimal with more than nine decimals ([`Amount`]'s [`FromStr`]) and a pure-epsilon mechanism charged
//!   in rho ([`Measure::charge_for_pure_epsilon`]);
//! - a budget the requester states (`--epsilon 0.1`) is rounded to the *nearest* nano-unit
//!   ([`Amount::from_units`]): it is a target the plan then stays within, not a charge.
//!
//! Two (epsilon, delta) readings of a rho, for display only: [`zcdp_epsilon`], the bound of Bun and Steinke
//! rounded up to an amount, which the owner's commands show; and [`epsilon_delta`], OpenDP's optimal
//! conversion (never larger).

use std::fmt;
use std::str::FromStr;

use opendp::combinators::ConcentratedMeasure;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::traits::InfDiv;
use serde::{Deserialize, Serialize};

use super::DpError;

/// Nano-units in one unit of epsilon or rho.
pub const NANOS_PER_UNIT: u64 = 1_000_000_000;

/// Digits after the decimal point that an [`Amount`] keeps.
const DECIMALS: usize = 9;

/// The largest amount a DP plan charges or a stated budget may be: 2^53 nano-units (about 9.0e6 units), so
/// that every such amount converts to an `f64` exactly. (A ledger's caps and sums may go up to
/// [`Amount::MAX`].)
pub const MAX_NANOS: u64 = 1 << 53;

/// An amount of privacy loss (epsilon or rho, as the node's [`Measure`] says), in integer nano-units.
///
/// It parses from and displays as a decimal (`"1.5"` is 1 500 000 000 nano-units); a decimal with more
/// than nine decimals is rounded up. It serializes as the bare integer of nano-units.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(u64);

impl Amount {
    /// Nothing.
    pub const ZERO: Amount = Amount(0);
    /// The largest amount.
    pub const MAX: Amount = Amount(u64::MAX);

    /// The amount of so many nano-units.
    pub const fn from_nanos(nanos: u64) -> Amount {
        Amount(nanos)
    }

    /// The amount in nano-units.
    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// `self * k`, or `None` on overflow.
    pub fn checked_mul(self, k: u64) -> Option<Amount> {
        self.0.checked_mul(k).map(Amount)
    }

    /// The amount as a float, for display and accuracy estimates only (never for accounting).
    pub fn to_f64(self) -> f64 {
        // Exact for amounts below 2^53 nano-units (about 9 million units).
        self.0 as f64 / NANOS_PER_UNIT as f64
    }

    /// The smallest amount at least `x`: how a float privacy map (for example OpenDP's) becomes a charge.
    ///
    /// Exact: the float is decomposed into its integer mantissa and power of two, and the product with
    /// 1e9 is rounded up in integer arithmetic. Negative, NaN, infinite or too large values are errors;
    /// `-0.0` is zero.
    pub fn from_f64_ceil(x: f64) -> Result<Amount, AmountError> {
        if x.is_nan() || x.is_infinite() || x < 0.0 {
            return Err(AmountError::NotFinite(x.to_string()));
        }
        if x == 0.0 {
            return Ok(Amount::ZERO);
        }
        let bits = x.to_bits();
        let exp_bits = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        // x = mantissa * 2^exp exactly.
        let (mantissa, exp) = if exp_bits == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), exp_bits - 1075)
        };
        let scaled = u128::from(mantissa) * u128::from(NANOS_PER_UNIT);
        let nanos = if exp >= 0 {
            // scaled < 2^83; shifting past 2^64 is an overflow anyway.
            if exp > 64 {
                return Err(AmountError::TooLarge);
            }
            scaled
                .checked_shl(exp.unsigned_abs())
                .ok_or(AmountError::TooLarge)?
        } else {
            let shift = exp.unsigned_abs();
            if shift >= 128 {
                // 0 < x * 1e9 < 1.
                1
            } else {
                let floor = scaled >> shift;
                let rem = scaled & ((1u128 << shift) - 1);
                floor + u128::from(rem != 0)
            }
        };
        u64::try_from(nanos)
            .map(Amount)
            .map_err(|_| AmountError::TooLarge)
    }

    /// The budget a requester stated (for example `--epsilon 0.1`), rounded to the *nearest* nano-unit: a
    /// target a plan then stays within, not a charge (charges round up, [`Amount::from_f64_ceil`]).
    ///
    /// Refuses negative, non-finite and too-large values (more than [`MAX_NANOS`]).
    pub fn from_units(units: f64) -> Result<Amount, DpError> {
        if !units.is_finite() || units < 0.0 {
            return Err(DpError::InvalidBudget(format!(
                "{units} is not a finite, non-negative amount"
            )));
        }
        let nanos = (units * NANOS_PER_UNIT as f64).round();
        if nanos > MAX_NANOS as f64 {
            return Err(DpError::InvalidBudget(format!(
                "{units} is larger than the largest budget"
            )));
        }
        Ok(Amount(nanos as u64))
    }

    /// A privacy map's output as the charge of a plan: [`Amount::from_f64_ceil`], refused past
    /// [`MAX_NANOS`] with [`DpError::CostTooLarge`].
    pub(crate) fn charge_of_map(d_out: f64) -> Result<Amount, DpError> {
        if d_out.is_nan() || d_out < 0.0 {
            return Err(DpError::OpenDp(format!("privacy map returned {d_out}")));
        }
        match Amount::from_f64_ceil(d_out) {
            Ok(a) if a.0 <= MAX_NANOS => Ok(a),
            // Past MAX_NANOS, or infinite.
            _ => Err(DpError::CostTooLarge),
        }
    }

    /// The largest `f64` not above this amount's exact value: a privacy-map target that, when met, makes
    /// [`Amount::charge_of_map`] return at most this amount. Exact for amounts up to [`MAX_NANOS`].
    pub(crate) fn as_f64_round_down(self) -> f64 {
        // nanos <= 2^53 converts exactly; the division rounds toward -inf.
        (self.0 as f64)
            .neg_inf_div(&(NANOS_PER_UNIT as f64))
            .unwrap_or(0.0)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Parse a non-negative decimal: digits, optionally a point and more digits (`"2"`, `"0.25"`,
    /// `"1.000000001"`). No sign, exponent, spaces or separators. More than nine decimals round up.
    fn from_str(s: &str) -> Result<Amount, AmountError> {
        let bad = || AmountError::Syntax(s.to_owned());
        let (int, frac) = match s.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (s, None),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let mut nanos: u64 = 0;
        for b in int.bytes() {
            nanos = nanos
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(AmountError::TooLarge)?;
        }
        nanos = nanos
            .checked_mul(NANOS_PER_UNIT)
            .ok_or(AmountError::TooLarge)?;
        if let Some(frac) = frac {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let mut part: u64 = 0;
            let mut scale = NANOS_PER_UNIT;
            for b in frac.bytes().take(DECIMALS) {
                scale /= 10;
                part += u64::from(b - b'0') * scale;
            }
            let beyond = frac.bytes().skip(DECIMALS).any(|b| b != b'0');
            part += u64::from(beyond);
            nanos = nanos.checked_add(part).ok_or(AmountError::TooLarge)?;
        }
        Ok(Amount(nanos))
    }
}

impl fmt::Display for Amount {
    /// The shortest exact decimal: `1.5`, `0.000000001`, `3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / NANOS_PER_UNIT;
        let frac = self.0 % NANOS_PER_UNIT;
        if frac == 0 {
            return write!(f, "{int}");
        }
        let digits = format!("{frac:09}");
        write!(f, "{int}.{}", digits.trim_end_matches('0'))
    }
}

/// An amount that cannot be read or computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// Not a non-negative decimal such as `0.5`.
    #[error("`{0}` is not an amount; write a non-negative decimal such as \"0.5\"")]
    Syntax(String),
    /// Negative, not a number, or infinite.
    #[error("`{0}` is not a finite non-negative amount")]
    NotFinite(String),
    /// More than 18 446 744 073.709551615 units.
    #[error("amount too large")]
    TooLarge,
    /// A delta outside (0, 1).
    #[error("delta must be strictly between 0 and 1, not {0}")]
    BadDelta(String),
}

/// What the node's ledger counts: one measure per node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Measure {
    /// Pure differential privacy: amounts are epsilon. The default.
    #[default]
    #[serde(rename = "epsilon")]
    PureEpsilon,
    /// Zero-concentrated differential privacy: amounts are rho. Shown also as (epsilon, delta) at a stated
    /// delta with [`zcdp_epsilon`].
    #[serde(rename = "rho")]
    Zcdp,
}

impl Measure {
    /// The name used in files, commands and on the wire: `epsilon` or `rho`.
    pub fn name(self) -> &'static str {
        match self {
            Measure::PureEpsilon => "epsilon",
            Measure::Zcdp => "rho",
        }
    }

    /// The Greek letter shown to people: `ε` or `ρ`.
    pub fn symbol(self) -> &'static str {
        match self {
            Measure::PureEpsilon => "ε",
            Measure::Zcdp => "ρ",
        }
    }

    /// What a mechanism that is `epsilon`-DP costs in this measure. In epsilon, `epsilon` itself; in rho,
    /// `rho = epsilon^2 / 2` (an epsilon-DP mechanism is `epsilon^2/2`-zCDP, Bun and Steinke 2016,
    /// Proposition 1.4), computed exactly and rounded up to the next nano-unit.
    pub fn charge_for_pure_epsilon(self, epsilon: Amount) -> Amount {
        match self {
            Measure::PureEpsilon => epsilon,
            Measure::Zcdp => {
                let e = u128::from(epsilon.0);
                let denom = 2 * u128::from(NANOS_PER_UNIT);
                // (e/1e9)^2 / 2 in nano-units is e^2 / (2e9); e^2 < 2^128.
                let rho = e * e / denom + u128::from(e * e % denom != 0);
                Amount(u64::try_from(rho).unwrap_or(u64::MAX))
            }
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Measure {
    type Err = UnknownMeasure;

    /// [`Measure::name`]: `epsilon` or `rho`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "epsilon" => Ok(Measure::PureEpsilon),
            "rho" => Ok(Measure::Zcdp),
            _ => Err(UnknownMeasure(s.to_owned())),
        }
    }
}

/// A measure name that is neither `epsilon` nor `rho`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown measure `{0}`; expected one of: epsilon, rho")]
pub struct UnknownMeasure(pub String);

/// The epsilon of the (epsilon, delta)-DP guarantee implied by `rho`-zCDP at the stated `delta`, rounded
/// up to the next nano-unit:
///
/// ```text
/// epsilon = rho + 2 * sqrt(rho * ln(1 / delta))
/// ```
///
/// (Bun and Steinke 2016, Proposition 1.3). The computation is conservative: `ln(1/delta)` is bounded above
/// in nano-units (the float logarithm, whose error is far below 1e-9 here, plus one nano-unit), and the
/// square root is an exact integer square root rounded up. Delta must be strictly between 0 and 1.
pub fn zcdp_epsilon(rho: Amount, delta: f64) -> Result<Amount, AmountError> {
    if delta.is_nan() || delta <= 0.0 || delta >= 1.0 {
        return Err(AmountError::BadDelta(delta.to_string()));
    }
    // ln(1/delta) is in (0, 745] for positive doubles; an upper bound in nano-units.
    let ln = -delta.ln();
    let ln_nanos = Amount::from_f64_ceil(ln)?.0.saturating_add(1);
    // 2 sqrt(rho ln) in nano-units is sqrt(4 * rho_n * ln_n); below 2^108, so no overflow.
    let radicand = 4 * u128::from(rho.0) * u128::from(ln_nanos);
    let root = ceil_sqrt(radicand);
    let eps = u128::from(rho.0) + root;
    u64::try_from(eps)
        .map(Amount)
        .map_err(|_| AmountError::TooLarge)
}

/// The smallest `r` with `r * r >= n`.
fn ceil_sqrt(n: u128) -> u128 {
    // Binary search for the floor square root; it is below 2^64.
    let (mut lo, mut hi) = (0u128, 1u128 << 64);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if mid * mid <= n {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if lo * lo == n {
        lo
    } else {
        lo + 1
    }
}

/// The smallest epsilon such that rho-zCDP implies (epsilon, delta)-DP, by OpenDP's conversion (the optimal
/// bound of Canonne, Kamath and Steinke 2020, Proposition 12, as implemented by
/// `opendp::combinators::make_zCDP_to_approxDP`). Never larger than [`zcdp_epsilon`]; for display only.
///
/// # Arguments
/// * `rho` - the zCDP parameter, for example an [`Amount`]'s [`Amount::to_f64`].
/// * `delta` - the stated delta, in (0, 1].
pub fn epsilon_delta(rho: f64, delta: f64) -> Result<f64, DpError> {
    if !rho.is_finite() || rho < 0.0 {
        return Err(DpError::InvalidBudget(format!(
            "rho ({rho}) must be finite and non-negative"
        )));
    }
    if !(delta > 0.0 && delta <= 1.0) {
        return Err(DpError::InvalidBudget(format!(
            "delta ({delta}) must be in (0, 1]"
        )));
    }
    ZeroConcentratedDivergence::convert(rho)
        .and_then(|profile| profile.epsilon(delta))
        .map_err(DpError::opendp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn amt(s: &str) -> Amount {
        s.parse().unwrap()
    }

    #[test]
    fn decimals_parse_exactly_and_round_up() {
        let cases = [
            ("0", 0),
            ("1", NANOS_PER_UNIT),
            ("1.5", 1_500_000_000),
            ("0.000000001", 1),
            ("0.1", 100_000_000),
            ("2.000000000", 2 * NANOS_PER_UNIT),
            ("0.0000000001", 1),
            ("0.0000000010", 1),
            ("0.1000000000000", 100_000_000),
            ("0.1000000001", 100_000_001),
            ("1.9999999999", 2 * NANOS_PER_UNIT),
            ("007.25", 7_250_000_000),
            ("18446744073.709551615", u64::MAX),
        ];
        for (text, nanos) in cases {
            assert_eq!(amt(text).nanos(), nanos, "{text}");
        }
        for bad in [
            "", ".", ".5", "5.", "-1", "+1", "1e3", " 1", "1 ", "1,5", "0x10", "1.2.3", "١",
        ] {
            assert!(
                matches!(bad.parse::<Amount>(), Err(AmountError::Syntax(_))),
                "{bad:?} parsed"
            );
        }
        for big in [
            "18446744073.709551616",
            "18446744074",
            "99999999999999999999999",
            "18446744073.7095516151",
        ] {
            assert_eq!(big.parse::<Amount>(), Err(AmountError::TooLarge), "{big}");
        }
    }

    #[test]
    fn amounts_display_as_shortest_decimals() {
        assert_eq!(Amount::ZERO.to_string(), "0");
        assert_eq!(Amount::from_nanos(1).to_string(), "0.000000001");
        assert_eq!(Amount::from_nanos(1_500_000_000).to_string(), "1.5");
        assert_eq!(Amount::from_nanos(3 * NANOS_PER_UNIT).to_string(), "3");
        assert_eq!(Amount::from_nanos(100_000_010).to_string(), "0.10000001");
        assert_eq!(Amount::MAX.to_string(), "18446744073.709551615");
        assert_eq!(serde_json::to_string(&amt("0.5")).unwrap(), "500000000");
    }

    #[test]
    fn floats_round_up_exactly() {
        assert_eq!(Amount::from_f64_ceil(0.0), Ok(Amount::ZERO));
        assert_eq!(Amount::from_f64_ceil(-0.0), Ok(Amount::ZERO));
        assert_eq!(Amount::from_f64_ceil(1.0), Ok(amt("1")));
        assert_eq!(Amount::from_f64_ceil(0.5), Ok(amt("0.5")));
        // 0.1 as a double is 0.1000000000000000055..., so it rounds up to one more nano-unit.
        assert_eq!(
            Amount::from_f64_ceil(0.1),
            Ok(Amount::from_nanos(100_000_001))
        );
        // 1.5 is exact.
        assert_eq!(Amount::from_f64_ceil(1.5), Ok(amt("1.5")));
        assert_eq!(Amount::from_f64_ceil(1e-300), Ok(Amount::from_nanos(1)));
        assert_eq!(Amount::from_f64_ceil(5e-324), Ok(Amount::from_nanos(1)));
        assert_eq!(Amount::from_f64_ceil(1e-9), Ok(Amount::from_nanos(2)));
        assert_eq!(Amount::from_f64_ceil(1e12), Err(AmountError::TooLarge));
        assert_eq!(Amount::from_f64_ceil(f64::MAX), Err(AmountError::TooLarge));
        for bad in [f64::NAN, f64::INFINITY, -1.0, -1e-300] {
            assert!(matches!(
                Amount::from_f64_ceil(bad),
                Err(AmountError::NotFinite(_))
            ));
        }
    }

    #[test]
    fn rho_of_pure_epsilon_rounds_up() {
        let m = Measure::Zcdp;
        assert_eq!(m.charge_for_pure_epsilon(amt("1")), amt("0.5"));
        assert_eq!(m.charge_for_pure_epsilon(amt("2")), amt("2"));
        assert_eq!(m.charge_for_pure_epsilon(amt("0.1")), amt("0.005"));
        // (1e-9)^2 / 2 is tiny but not zero: one nano-unit.
        assert_eq!(
            m.charge_for_pure_epsilon(Amount::from_nanos(1)),
            Amount::from_nanos(1)
        );
        assert_eq!(m.charge_for_pure_epsilon(Amount::ZERO), Amount::ZERO);
        // 0.3^2/2 = 0.045 exactly; 0.000000003^2/2 rounds up.
        assert_eq!(m.charge_for_pure_epsilon(amt("0.3")), amt("0.045"));
        assert_eq!(m.charge_for_pure_epsilon(Amount::MAX), Amount::MAX);
        assert_eq!(
            Measure::PureEpsilon.charge_for_pure_epsilon(amt("0.3")),
            amt("0.3")
        );
    }

    #[test]
    fn zcdp_epsilon_follows_the_formula_rounded_up() {
        for (rho, delta) in [
            (0.5, 1e-6),
            (0.01, 1e-9),
            (2.0, 1e-5),
            (1e-9, 0.5),
            (0.125, 1e-300),
        ] {
            let got = zcdp_epsilon(amt(&rho.to_string()), delta).unwrap();
            let want = rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt();
            let got = got.to_f64();
            assert!(got >= want, "rho {rho}, delta {delta}: {got} < {want}");
            assert!(
                got - want < 1e-8,
                "rho {rho}, delta {delta}: {got} vs {want}"
            );
        }
        assert_eq!(zcdp_epsilon(Amount::ZERO, 1e-6), Ok(Amount::ZERO));
        for bad in [0.0, 1.0, -0.1, 2.0, f64::NAN] {
            assert!(matches!(
                zcdp_epsilon(amt("1"), bad),
                Err(AmountError::BadDelta(_))
            ));
        }
        assert_eq!(zcdp_epsilon(Amount::MAX, 1e-6), Err(AmountError::TooLarge));
    }

    #[test]
    fn ceil_sqrt_is_exact() {
        for n in 0u128..2000 {
            let r = ceil_sqrt(n);
            assert!(r * r >= n);
            assert!(r == 0 || (r - 1) * (r - 1) < n, "{n}");
        }
        let big = u128::MAX >> 1;
        let r = ceil_sqrt(big);
        assert!(r * r >= big && (r - 1) * (r - 1) < big);
    }

    #[test]
    fn measures_have_names() {
        assert_eq!("rho".parse::<Measure>(), Ok(Measure::Zcdp));
        assert_eq!("epsilon".parse::<Measure>(), Ok(Measure::PureEpsilon));
        assert_eq!(
            "delta".parse::<Measure>().unwrap_err().to_string(),
            "unknown measure `delta`; expected one of: epsilon, rho"
        );
        assert_eq!(Measure::Zcdp.to_string(), "rho");
        assert_eq!(serde_json::to_string(&Measure::Zcdp).unwrap(), "\"rho\"");
        assert_eq!(Measure::default(), Measure::PureEpsilon);
    }

    proptest! {
        /// Decimals round-trip, and parsing is monotone in the number.
        #[test]
        fn decimals_round_trip(nanos in any::<u64>()) {
            let a = Amount::from_nanos(nanos);
            prop_assert_eq!(a.to_string().parse::<Amount>(), Ok(a));
            // Appending digits beyond the ninth decimal rounds up by exactly one nano-unit, or not at all.
            let s = a.to_string();
            let longer = if s.contains('.') { format!("{s}{}", "0".repeat(12)) } else { format!("{s}.{}", "0".repeat(12)) };
            prop_assert_eq!(longer.parse::<Amount>(), Ok(a));
            if nanos < u64::MAX {
                let padded = format!("{}.{:09}7", nanos / NANOS_PER_UNIT, nanos % NANOS_PER_UNIT);
                prop_assert_eq!(padded.parse::<Amount>(), Ok(Amount::from_nanos(nanos + 1)));
            }
        }

        /// The float conversion never rounds down and is off by less than one nano-unit.
        #[test]
        fn float_conversion_rounds_up(x in 0.0f64..1e9) {
            let a = Amount::from_f64_ceil(x).unwrap();
            let exact = x * 1e9;
            prop_assert!((a.nanos() as f64) >= exact * (1.0 - 1e-15));
            prop_assert!((a.nanos() as f64) < exact * (1.0 + 1e-15) + 1.0);
        }
    }
}
