//! Disclosure accounting for private scoring (backend `2pc`): what one run reveals, in bits, and the
//! limits per principal and window.
//!
//! In private scoring the FI's secret linear model runs against the owner's attributes in a two-party
//! computation, and only the agreed output is revealed to the FI ([`Reveal`]):
//!
//! - a decision (the default): whether the score clears the FI's threshold, 1 bit;
//! - `k` bands (`k - 1` thresholds the FI keeps private, `2 <= k <= 16`): which band the score falls in,
//!   `log2 k` bits;
//! - a decision with `k` reasons (`1 <= k <= 4`): the decision and, only on a decline, which `k` of the
//!   model's `n` attributes cost the applicant most, worst first: `ceil(log2(n!/(n-k)!)) + 1` bits (so the
//!   bits depend on the attribute count, which every check takes);
//! - the raw score: 64 bits. A raw score can reveal an attribute outright (a model that weights one
//!   attribute and nothing else returns its value), so it is never a default.
//!
//! The owner's policy limits the runs per principal ([`ScoringLimits`]): at most `max_runs` in the last
//! `window_days` days (3 per 30 days by default), and optionally at most `max_bits` revealed in that
//! window. A run is counted when it starts, so an aborted run counts too: a peer cannot probe by aborting.
//! The node sums what each principal used in the current window ([`ScoringUse`]) and
//! [`ScoringLimits::check`] says whether one more run fits.

use duo_protocols::score::bits_text;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

// What a run reveals is defined once, next to the protocol that runs it (which derives its `k - 1`
// thresholds from the band count `k` with `Reveal::thresholds`).
pub use duo_protocols::score::{Reveal, RevealParseError};

/// The kind of a [`Reveal`], without the band count: what a policy rule's `reveal` condition lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RevealKind {
    /// [`Reveal::Decision`].
    Decision,
    /// [`Reveal::Bands`], any band count.
    Bands,
    /// [`Reveal::DecisionReasons`], any reason count: a policy file's `"decision+reasons"`.
    #[serde(rename = "decision+reasons")]
    DecisionReasons,
    /// [`Reveal::Score`].
    Score,
}

impl RevealKind {
    /// Every kind, in a fixed order.
    pub const ALL: [RevealKind; 4] = [
        RevealKind::Decision,
        RevealKind::Bands,
        RevealKind::DecisionReasons,
        RevealKind::Score,
    ];

    /// The policy-file name: `decision`, `bands`, `decision+reasons` or `score` ([`Reveal::name`]).
    pub fn name(self) -> &'static str {
        match self {
            RevealKind::Decision => "decision",
            RevealKind::Bands => "bands",
            RevealKind::DecisionReasons => "decision+reasons",
            RevealKind::Score => "score",
        }
    }
}

impl fmt::Display for RevealKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Reveal> for RevealKind {
    /// The kind, without the band count.
    fn from(r: Reveal) -> RevealKind {
        match r {
            Reveal::Decision => RevealKind::Decision,
            Reveal::Bands { .. } => RevealKind::Bands,
            Reveal::DecisionReasons { .. } => RevealKind::DecisionReasons,
            Reveal::Score => RevealKind::Score,
        }
    }
}

impl FromStr for RevealKind {
    type Err = crate::backend::UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RevealKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                crate::backend::UnknownName::new(
                    "reveal kind",
                    s,
                    "decision, bands, decision+reasons, score",
                )
            })
    }
}

/// The owner's limits on private scoring, per principal: the `[scoring]` table of the policy file.
///
/// Equality compares `max_bits` bit for bit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScoringLimits {
    /// Runs allowed per principal in the window, counted when a run starts (aborted runs count).
    pub max_runs: u32,
    /// The sliding window, in days, before the request.
    pub window_days: u32,
    /// The most bits a principal may learn in the window, summed over its runs' [`Reveal::bits`]; no cap
    /// when `None`.
    pub max_bits: Option<f64>,
}

impl ScoringLimits {
    /// Runs per principal and window unless the policy says otherwise.
    pub const DEFAULT_MAX_RUNS: u32 = 3;
    /// The window's length in days unless the policy says otherwise.
    pub const DEFAULT_WINDOW_DAYS: u32 = 30;

    /// The window's length in seconds.
    pub fn window_seconds(&self) -> i64 {
        i64::from(self.window_days) * 86_400
    }

    /// `max_bits` in thousandths of a bit, rounded down (a cap given in bits with up to three decimals is
    /// exact); `None` when there is no cap.
    pub fn max_millibits(&self) -> Option<u64> {
        // The tiny allowance absorbs the float error of decimals such as 1.585 (1584.9999999999998).
        // A NaN or negative cap allows nothing; an infinite one saturates.
        self.max_bits.map(|b| (b * 1_000.0 + 1e-6).floor() as u64)
    }

    /// Whether one more run revealing `reveal` over `attributes` attributes fits, given what the principal
    /// `used` in the current window: the runs so far must be fewer than `max_runs` (the new run counts when
    /// it starts), and, when there is a bit cap, the millibits used plus [`Reveal::millibits`] must be at
    /// most [`ScoringLimits::max_millibits`].
    pub fn check(
        &self,
        used: &ScoringUse,
        reveal: Reveal,
        attributes: usize,
    ) -> Result<(), ScoringExceeded> {
        if used.runs >= self.max_runs {
            return Err(ScoringExceeded::Runs {
                used: used.runs,
                max: self.max_runs,
                window_days: self.window_days,
            });
        }
        if let Some(max) = self.max_millibits() {
            let wanted = reveal.millibits(attributes);
            if used.millibits.saturating_add(wanted) > max {
                return Err(ScoringExceeded::Bits {
                    used_millibits: used.millibits,
                    reveal_millibits: wanted,
                    max_millibits: max,
                    window_days: self.window_days,
                });
            }
        }
        Ok(())
    }
}

impl Default for ScoringLimits {
    /// 3 runs per principal per 30 days, no bit cap.
    fn default() -> Self {
        ScoringLimits {
            max_runs: ScoringLimits::DEFAULT_MAX_RUNS,
            window_days: ScoringLimits::DEFAULT_WINDOW_DAYS,
            max_bits: None,
        }
    }
}

impl PartialEq for ScoringLimits {
    fn eq(&self, other: &Self) -> bool {
        self.max_runs == other.max_runs
            && self.window_days == other.window_days
            && self.max_bits.map(f64::to_bits) == other.max_bits.map(f64::to_bits)
    }
}

impl Eq for ScoringLimits {}

/// What one principal used of its scoring limits in the current window (the last
/// [`ScoringLimits::window_days`] days), as the node counts it from its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScoringUse {
    /// Runs started in the window, aborted ones included.
    pub runs: u32,
    /// The sum of their [`Reveal::millibits`].
    pub millibits: u64,
}

impl ScoringUse {
    /// The use after one more run revealing `reveal` over `attributes` attributes starts.
    pub fn plus(self, reveal: Reveal, attributes: usize) -> ScoringUse {
        ScoringUse {
            runs: self.runs.saturating_add(1),
            millibits: self.millibits.saturating_add(reveal.millibits(attributes)),
        }
    }
}

/// One more scoring run would exceed the owner's limits. The message gives the numbers and when a run
/// becomes possible again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoringExceeded {
    /// The principal already started `max_runs` runs in the window.
    #[error(
        "{used} of {max} scoring runs in the last {} used; another run is possible once the oldest of \
         them is more than {} old",
        days(*window_days),
        length(*window_days)
    )]
    Runs {
        /// Runs started in the window.
        used: u32,
        /// Runs allowed in the window.
        max: u32,
        /// The window, in days.
        window_days: u32,
    },
    /// The run would take the bits revealed in the window over the cap.
    #[error("{}", bits_message(*used_millibits, *reveal_millibits, *max_millibits, *window_days))]
    Bits {
        /// Millibits revealed in the window so far.
        used_millibits: u64,
        /// Millibits this run would reveal.
        reveal_millibits: u64,
        /// The cap, in millibits.
        max_millibits: u64,
        /// The window, in days.
        window_days: u32,
    },
}

fn bits_message(used: u64, reveal: u64, max: u64, window_days: u32) -> String {
    let cap = format!("the cap of {} per {}", bits_words(max), days(window_days));
    if reveal > max {
        format!(
            "this run would reveal {}, more than {cap} on its own; ask for fewer bands or a decision \
             (1 bit) instead",
            bits_words(reveal)
        )
    } else {
        format!(
            "this run would reveal {} on top of {} revealed in the last {}, over {cap}; a run becomes \
             possible once earlier runs are more than {} old",
            bits_words(reveal),
            bits_words(used),
            days(window_days),
            length(window_days)
        )
    }
}

/// "1 bit", "2.585 bits".
fn bits_words(millibits: u64) -> String {
    let text = bits_text(millibits);
    if millibits == 1_000 {
        format!("{text} bit")
    } else {
        format!("{text} bits")
    }
}

/// "30 days", "day" (as in "in the last day", "per day").
fn days(n: u32) -> String {
    if n == 1 {
        "day".to_owned()
    } else {
        format!("{n} days")
    }
}

/// "30 days", "a day" (as in "more than a day old").
fn length(n: u32) -> String {
    if n == 1 {
        "a day".to_owned()
    } else {
        format!("{n} days")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_kinds_have_names() {
        for k in RevealKind::ALL {
            assert_eq!(k.name().parse::<RevealKind>(), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(
            "raw".parse::<RevealKind>().unwrap_err().to_string(),
            "unknown reveal kind `raw`; expected one of: decision, bands, decision+reasons, score"
        );
        for (r, k) in [
            (Reveal::Decision, RevealKind::Decision),
            (Reveal::Bands { k: 4 }, RevealKind::Bands),
            (Reveal::Score, RevealKind::Score),
        ] {
            assert_eq!(RevealKind::from(r), k);
            assert_eq!(r.name(), k.name());
        }
    }

    #[test]
    fn runs_limit_at_the_edges() {
        let limits = ScoringLimits::default();
        assert_eq!(
            limits,
            ScoringLimits {
                max_runs: 3,
                window_days: 30,
                max_bits: None
            }
        );
        let two = ScoringUse {
            runs: 2,
            millibits: 2_000,
        };
        assert_eq!(limits.check(&two, Reveal::Decision, 3), Ok(()));
        // No bit cap: even a raw score fits the limits (the policy decides whether it is allowed).
        assert_eq!(limits.check(&two, Reveal::Score, 3), Ok(()));
        let three = two.plus(Reveal::Decision, 3);
        assert_eq!(
            three,
            ScoringUse {
                runs: 3,
                millibits: 3_000
            }
        );
        let err = limits.check(&three, Reveal::Decision, 3).unwrap_err();
        assert_eq!(
            err,
            ScoringExceeded::Runs {
                used: 3,
                max: 3,
                window_days: 30
            }
        );
        assert_eq!(
            err.to_string(),
            "3 of 3 scoring runs in the last 30 days used; another run is possible once the oldest \
             of them is more than 30 days old"
        );
        let daily = ScoringLimits {
            max_runs: 1,
            window_days: 1,
            max_bits: None,
        };
        assert_eq!(
            daily
                .check(
                    &ScoringUse {
                        runs: 1,
                        millibits: 0
                    },
                    Reveal::Decision,
                    3
                )
                .unwrap_err()
                .to_string(),
            "1 of 1 scoring runs in the last day used; another run is possible once the oldest of \
             them is more than a day old",
        );
    }

    #[test]
    fn bits_cap_at_the_exact_edge() {
        let limits = ScoringLimits {
            max_runs: 10,
            window_days: 30,
            max_bits: Some(4.0),
        };
        assert_eq!(limits.max_millibits(), Some(4_000));
        let used = ScoringUse {
            runs: 2,
            millibits: 2_000,
        };
        // 2 + 2 = 4 bits: exactly at the cap.
        assert_eq!(limits.check(&used, Reveal::Bands { k: 4 }, 3), Ok(()));
        // 2 + log2 5 > 4.
        let err = limits.check(&used, Reveal::Bands { k: 5 }, 3).unwrap_err();
        assert_eq!(
            err,
            ScoringExceeded::Bits {
                used_millibits: 2_000,
                reveal_millibits: 2_322,
                max_millibits: 4_000,
                window_days: 30
            }
        );
        assert_eq!(
            err.to_string(),
            "this run would reveal 2.322 bits on top of 2 bits revealed in the last 30 days, over the \
             cap of 4 bits per 30 days; a run becomes possible once earlier runs are more than 30 \
             days old"
        );
        // One millibit short of room.
        let used = ScoringUse {
            runs: 0,
            millibits: 3_001,
        };
        assert!(limits.check(&used, Reveal::Decision, 3).is_err());
        let used = ScoringUse {
            runs: 0,
            millibits: 3_000,
        };
        assert_eq!(limits.check(&used, Reveal::Decision, 3), Ok(()));
        // A raw score alone is over a 4-bit cap, whatever came before.
        let err = limits
            .check(&ScoringUse::default(), Reveal::Score, 3)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "this run would reveal 64 bits, more than the cap of 4 bits per 30 days on its own; ask \
             for fewer bands or a decision (1 bit) instead"
        );
        // The runs limit is checked first.
        let full = ScoringUse {
            runs: 10,
            millibits: 0,
        };
        assert!(matches!(
            limits.check(&full, Reveal::Decision, 3),
            Err(ScoringExceeded::Runs { .. })
        ));
    }

    #[test]
    fn decimal_caps_are_exact_in_millibits() {
        let cap = |b: f64| ScoringLimits {
            max_runs: 3,
            window_days: 30,
            max_bits: Some(b),
        };
        assert_eq!(cap(1.585).max_millibits(), Some(1_585));
        assert_eq!(cap(0.1).max_millibits(), Some(100));
        assert_eq!(cap(2.3219).max_millibits(), Some(2_321));
        // 3 bands (1585 millibits) fit a cap of 1.585 bits exactly, not one of 1.584.
        assert_eq!(
            cap(1.585).check(&ScoringUse::default(), Reveal::Bands { k: 3 }, 3),
            Ok(())
        );
        assert!(cap(1.584)
            .check(&ScoringUse::default(), Reveal::Bands { k: 3 }, 3)
            .is_err());
        assert_eq!(cap(f64::NAN).max_millibits(), Some(0));
        assert_eq!(cap(f64::INFINITY).max_millibits(), Some(u64::MAX));
        assert_ne!(cap(1.0), cap(2.0));
        assert_eq!(cap(1.0), cap(1.0));
    }

    #[test]
    fn use_accumulates_without_overflow() {
        let u = ScoringUse {
            runs: u32::MAX,
            millibits: u64::MAX,
        };
        assert_eq!(u.plus(Reveal::Score, 3), u);
        let limits = ScoringLimits {
            max_runs: u32::MAX,
            window_days: 30,
            max_bits: Some(1.0),
        };
        let u = ScoringUse {
            runs: 0,
            millibits: u64::MAX,
        };
        assert!(limits.check(&u, Reveal::Decision, 3).is_err());
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    #[test]
    fn reasons_are_counted_by_the_attribute_count() {
        let limits = ScoringLimits {
            max_runs: 10,
            window_days: 30,
            max_bits: Some(6.0),
        };
        let two = Reveal::DecisionReasons { k: 2 };
        // 2 of 4: 12 orders, 4 bits, plus the decision: 5 bits fit a cap of 6.
        assert_eq!(limits.check(&ScoringUse::default(), two, 4), Ok(()));
        assert_eq!(ScoringUse::default().plus(two, 4).millibits, 5_000);
        // 2 of 8: 56 orders, 6 bits, plus the decision: 7 bits do not.
        assert_eq!(
            limits.check(&ScoringUse::default(), two, 8),
            Err(ScoringExceeded::Bits {
                used_millibits: 0,
                reveal_millibits: 7_000,
                max_millibits: 6_000,
                window_days: 30
            })
        );
        assert_eq!(RevealKind::from(two), RevealKind::DecisionReasons);
        assert_eq!(
            "decision+reasons".parse::<RevealKind>(),
            Ok(RevealKind::DecisionReasons)
        );
        assert_eq!(
            serde_json::to_string(&RevealKind::DecisionReasons).unwrap(),
            r#""decision+reasons""#
        );
    }
}
