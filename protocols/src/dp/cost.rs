//! Privacy amounts as integers: [`Cost`] in 1e-9 units, rounded up from OpenDP's privacy maps, and the
//! zCDP-to-(epsilon, delta) conversion for display.

use std::fmt;

use opendp::combinators::ConcentratedMeasure;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::traits::{InfDiv, InfMul};
use serde::{Deserialize, Serialize};

use super::DpError;

/// Nano-units per unit of epsilon (or rho).
pub const NANOS_PER_UNIT: u64 = 1_000_000_000;

/// The largest amount a [`Cost`] may hold: 2^53 nanos (about 9.0e6 units), so that every amount converts to
/// an `f64` exactly.
pub const MAX_NANOS: u64 = 1 << 53;

/// A privacy amount in 1e-9 units of the node's measure (epsilon under pure DP, rho under zCDP).
///
/// A charge is OpenDP's privacy map at the contribution bound, rounded *up* to the next nano-unit, so a
/// ledger that adds charges never under-counts, and "a budget for exactly k releases" is well defined.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Cost {
    /// The amount in 1e-9 units.
    pub nanos: u64,
}

impl Cost {
    /// No privacy spent.
    pub const ZERO: Cost = Cost { nanos: 0 };

    /// A cost of `nanos` 1e-9 units.
    pub const fn from_nanos(nanos: u64) -> Cost {
        Cost { nanos }
    }

    /// The amount a user typed (for example `--epsilon 0.1`), rounded to the nearest nano-unit.
    ///
    /// Refuses negative, non-finite and too-large values (more than [`MAX_NANOS`]).
    pub fn from_units(units: f64) -> Result<Cost, DpError> {
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
        Ok(Cost {
            nanos: nanos as u64,
        })
    }

    /// Rounds a privacy-map output up: the smallest cost whose exact value is at least `d_out`.
    ///
    /// `d_out * 1e9` is computed with OpenDP's upward-rounding multiplication, then rounded up to an
    /// integer, so the result is never below the exact product.
    pub fn round_up(d_out: f64) -> Result<Cost, DpError> {
        if d_out.is_nan() || d_out < 0.0 {
            return Err(DpError::OpenDp(format!("privacy map returned {d_out}")));
        }
        let scaled = d_out
            .inf_mul(&(NANOS_PER_UNIT as f64))
            .map_err(DpError::opendp)?
            .ceil();
        if scaled.is_nan() || scaled > MAX_NANOS as f64 {
            return Err(DpError::CostTooLarge);
        }
        Ok(Cost {
            nanos: scaled as u64,
        })
    }

    /// The largest `f64` not above this amount's exact value: a privacy-map target that, when met, makes
    /// [`Cost::round_up`] return at most this cost.
    pub(crate) fn as_f64_round_down(self) -> f64 {
        // nanos <= 2^53 converts exactly; the division rounds toward -inf.
        (self.nanos as f64)
            .neg_inf_div(&(NANOS_PER_UNIT as f64))
            .unwrap_or(0.0)
    }

    /// The amount as a float, for display only (ledger arithmetic stays in integers).
    pub fn units(self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }

    /// `self + other`, or `None` past [`MAX_NANOS`].
    pub fn checked_add(self, other: Cost) -> Option<Cost> {
        self.nanos
            .checked_add(other.nanos)
            .filter(|n| *n <= MAX_NANOS)
            .map(Cost::from_nanos)
    }

    /// `self - other`, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Cost) -> Option<Cost> {
        self.nanos.checked_sub(other.nanos).map(Cost::from_nanos)
    }
}

impl fmt::Display for Cost {
    /// Exact decimal: `0.100000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.nanos / NANOS_PER_UNIT,
            self.nanos % NANOS_PER_UNIT
        )
    }
}

/// The smallest epsilon such that rho-zCDP implies (epsilon, delta)-DP, by OpenDP's conversion (the optimal
/// bound of Canonne, Kamath and Steinke 2020, Proposition 12, as implemented by
/// `opendp::combinators::make_zCDP_to_approxDP`). For display next to a rho ledger.
///
/// # Arguments
/// * `rho` - the zCDP parameter, for example a [`Cost`]'s [`Cost::units`].
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
