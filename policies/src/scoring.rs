//! Disclosure accounting for private scoring (backend `2pc`): what one run reveals, in bits, and the
//! limits per principal and window.
//!
//! In private scoring the FI's secret linear model runs against the owner's attributes in a two-party
//! computation, and only the agreed output is revealed to the FI ([`Reveal`]):
//!
//! - a decision (the default): whether the score clears the FI's threshold, 1 bit;
//! - `k` bands (`k - 1` thresholds the FI keeps private, `2 <= k <= 16`): which band the score falls in,
//!   `log2 k` bits;
//! - the raw score: 64 bits. A raw score can reveal an attribute outright (a model that weights one
//!   attribute and nothing else returns its value), so it is never a default.
//!
//! The owner's policy limits the runs per principal ([`ScoringLimits`]): at most `max_runs` in the last
//! `window_days` days (3 per 30 days by default), and optionally at most `max_bits` revealed in that
//! window. A run is counted when it starts, so an aborted run counts too: a peer cannot probe by aborting.
//! The node sums what each principal used in the current window ([`ScoringUse`]) and
//! [`ScoringLimits::check`] says whether one more run fits.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// What one private scoring run reveals to the FI.
///
/// The wire form is tagged by `kind`: `{"kind":"decision"}`, `{"kind":"bands","k":4}`,
/// `{"kind":"score"}`; a band count outside `2..=16` does not deserialize. The command-line form
/// ([`FromStr`]) is `decision`, `bands:K` or `score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reveal {
    /// Whether the score clears the FI's threshold: 1 bit.
    Decision,
    /// Which of `k` bands the score falls in, the `k - 1` band edges private to the FI: `log2 k` bits.
    Bands {
        /// The number of bands, from [`Reveal::MIN_BANDS`] to [`Reveal::MAX_BANDS`].
        #[serde(deserialize_with = "band_count")]
        #[cfg_attr(feature = "schema", schemars(range(min = 2, max = 16)))]
        k: u32,
    },
    /// The raw score: 64 bits, which can reveal an attribute outright.
    Score,
}

/// The kind of a [`Reveal`], without the band count: what a policy rule's `reveal` condition lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RevealKind {
    /// [`Reveal::Decision`].
    Decision,
    /// [`Reveal::Bands`], any band count.
    Bands,
    /// [`Reveal::Score`].
    Score,
}

impl RevealKind {
    /// Every kind, in a fixed order.
    pub const ALL: [RevealKind; 3] = [RevealKind::Decision, RevealKind::Bands, RevealKind::Score];

    /// The policy-file and wire name: `decision`, `bands` or `score`.
    pub fn name(self) -> &'static str {
        match self {
            RevealKind::Decision => "decision",
            RevealKind::Bands => "bands",
            RevealKind::Score => "score",
        }
    }
}

impl fmt::Display for RevealKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevealKind {
    type Err = crate::backend::UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RevealKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                crate::backend::UnknownName::new("reveal kind", s, "decision, bands, score")
            })
    }
}

impl Reveal {
    /// The fewest bands a [`Reveal::Bands`] may have.
    pub const MIN_BANDS: u32 = 2;
    /// The most bands a [`Reveal::Bands`] may have.
    pub const MAX_BANDS: u32 = 16;
    /// The bits of a raw score.
    pub const SCORE_BITS: u32 = 64;

    /// The kind, without the band count.
    pub fn kind(self) -> RevealKind {
        match self {
            Reveal::Decision => RevealKind::Decision,
            Reveal::Bands { .. } => RevealKind::Bands,
            Reveal::Score => RevealKind::Score,
        }
    }

    /// The kind's name: `decision`, `bands` or `score`.
    pub fn name(self) -> &'static str {
        self.kind().name()
    }

    /// Whether this reveal is one a run may use: always, except bands outside
    /// [`Reveal::MIN_BANDS`]`..=`[`Reveal::MAX_BANDS`].
    pub fn is_valid(self) -> bool {
        match self {
            Reveal::Bands { k } => (Reveal::MIN_BANDS..=Reveal::MAX_BANDS).contains(&k),
            Reveal::Decision | Reveal::Score => true,
        }
    }

    /// What one run reveals, in bits: 1 for a decision, `log2 k` for `k` bands, 64 for a raw score. (A band
    /// count outside the valid range still counts its `log2 k`; fewer than one band counts 0.)
    pub fn bits(self) -> f64 {
        match self {
            Reveal::Decision => 1.0,
            Reveal::Bands { k } => f64::from(k.max(1)).log2(),
            Reveal::Score => f64::from(Reveal::SCORE_BITS),
        }
    }

    /// [`Reveal::bits`] in thousandths of a bit, rounded up, the unit disclosure is counted in: 1000 for a
    /// decision, 64000 for a raw score, `ceil(1000 log2 k)` for `k` bands (2000 for 4 bands, 1585 for 3).
    pub fn millibits(self) -> u64 {
        match self {
            Reveal::Decision => 1_000,
            Reveal::Score => u64::from(Reveal::SCORE_BITS) * 1_000,
            // log2 of a power of two is exact; for other counts 1000 log2 k is irrational, far from an
            // integer at these sizes, so the float rounds up to the right value. At most 32 000.
            Reveal::Bands { .. } => (1_000.0 * self.bits()).ceil() as u64,
        }
    }

    /// What the run reveals, in plain words for the owner's approval screen.
    pub fn describe(self) -> String {
        match self {
            Reveal::Decision => "a yes/no decision: whether your score clears the FI's threshold \
                                 (1 bit); your attribute values and the score stay hidden"
                .to_owned(),
            Reveal::Bands { k } => format!(
                "which of {k} score bands your score falls in ({} bits); the FI sets the band edges \
                 and keeps them private, and your attribute values and the exact score stay hidden",
                bits_text(self.millibits())
            ),
            Reveal::Score => "the raw score itself (64 bits). A raw score can reveal an attribute \
                              outright: a model that weights a single attribute returns its exact \
                              value, and a few runs with different models can reveal several"
                .to_owned(),
        }
    }
}

impl fmt::Display for Reveal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reveal::Decision => f.write_str("decision"),
            Reveal::Bands { k } => write!(f, "{k} bands"),
            Reveal::Score => f.write_str("raw score"),
        }
    }
}

/// A [`Reveal`] in the command-line form that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RevealParseError(String);

impl FromStr for Reveal {
    type Err = RevealParseError;

    /// `decision`, `bands:K` (K from 2 to 16) or `score`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "decision" => return Ok(Reveal::Decision),
            "score" => return Ok(Reveal::Score),
            _ => {}
        }
        let Some(k) = s.strip_prefix("bands:") else {
            return Err(RevealParseError(format!(
                "unknown reveal `{s}`; expected decision, bands:K (K from {} to {}) or score",
                Reveal::MIN_BANDS,
                Reveal::MAX_BANDS
            )));
        };
        let k = k
            .parse::<u32>()
            .ok()
            .filter(|k| (Reveal::MIN_BANDS..=Reveal::MAX_BANDS).contains(k));
        k.map(|k| Reveal::Bands { k }).ok_or_else(|| {
            RevealParseError(format!(
                "`{s}`: the number of bands must be a whole number from {} to {}",
                Reveal::MIN_BANDS,
                Reveal::MAX_BANDS
            ))
        })
    }
}

fn band_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let k = u32::deserialize(d)?;
    if (Reveal::MIN_BANDS..=Reveal::MAX_BANDS).contains(&k) {
        Ok(k)
    } else {
        Err(serde::de::Error::custom(format!(
            "the number of bands must be from {} to {}, not {k}",
            Reveal::MIN_BANDS,
            Reveal::MAX_BANDS
        )))
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

    /// Whether one more run revealing `reveal` fits, given what the principal `used` in the current
    /// window: the runs so far must be fewer than `max_runs` (the new run counts when it starts), and,
    /// when there is a bit cap, the millibits used plus [`Reveal::millibits`] must be at most
    /// [`ScoringLimits::max_millibits`].
    pub fn check(&self, used: &ScoringUse, reveal: Reveal) -> Result<(), ScoringExceeded> {
        if used.runs >= self.max_runs {
            return Err(ScoringExceeded::Runs {
                used: used.runs,
                max: self.max_runs,
                window_days: self.window_days,
            });
        }
        if let Some(max) = self.max_millibits() {
            let wanted = reveal.millibits();
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
    /// The use after one more run revealing `reveal` starts.
    pub fn plus(self, reveal: Reveal) -> ScoringUse {
        ScoringUse {
            runs: self.runs.saturating_add(1),
            millibits: self.millibits.saturating_add(reveal.millibits()),
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

/// Millibits as a decimal number of bits, without trailing zeros: 2000 -> "2", 1585 -> "1.585".
fn bits_text(millibits: u64) -> String {
    let whole = millibits / 1_000;
    let frac = millibits % 1_000;
    if frac == 0 {
        whole.to_string()
    } else {
        let frac = format!("{frac:03}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
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
    fn reveal_bits_and_millibits() {
        assert_eq!(Reveal::Decision.bits(), 1.0);
        assert_eq!(Reveal::Decision.millibits(), 1_000);
        assert_eq!(Reveal::Score.bits(), 64.0);
        assert_eq!(Reveal::Score.millibits(), 64_000);
        let table = [
            (2, 1_000),
            (3, 1_585),
            (4, 2_000),
            (5, 2_322),
            (6, 2_585),
            (7, 2_808),
            (8, 3_000),
            (9, 3_170),
            (10, 3_322),
            (11, 3_460),
            (12, 3_585),
            (13, 3_701),
            (14, 3_808),
            (15, 3_907),
            (16, 4_000),
        ];
        for (k, want) in table {
            let r = Reveal::Bands { k };
            assert_eq!(r.millibits(), want, "k = {k}");
            assert!(r.millibits() as f64 >= 1_000.0 * r.bits());
            assert!(r.is_valid());
        }
        assert_eq!(Reveal::Bands { k: 4 }.bits(), 2.0);
        assert!(!Reveal::Bands { k: 1 }.is_valid());
        assert!(!Reveal::Bands { k: 17 }.is_valid());
        // Out-of-range counts are still counted honestly, never negative.
        assert_eq!(Reveal::Bands { k: 0 }.millibits(), 0);
        assert_eq!(Reveal::Bands { k: 32 }.millibits(), 5_000);
        assert_eq!(Reveal::Bands { k: u32::MAX }.millibits(), 32_000);
    }

    #[test]
    fn reveal_parses_the_command_line_form() {
        assert_eq!("decision".parse::<Reveal>(), Ok(Reveal::Decision));
        assert_eq!("score".parse::<Reveal>(), Ok(Reveal::Score));
        assert_eq!("bands:2".parse::<Reveal>(), Ok(Reveal::Bands { k: 2 }));
        assert_eq!("bands:16".parse::<Reveal>(), Ok(Reveal::Bands { k: 16 }));
        for bad in [
            "bands:1",
            "bands:17",
            "bands:0",
            "bands:-3",
            "bands:",
            "bands:4.0",
        ] {
            let err = bad.parse::<Reveal>().unwrap_err().to_string();
            assert_eq!(
                err,
                format!("`{bad}`: the number of bands must be a whole number from 2 to 16"),
            );
        }
        for bad in ["bands", "Decision", "raw", ""] {
            let err = bad.parse::<Reveal>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("unknown reveal `{bad}`")), "{err}");
            assert!(err.contains("bands:K (K from 2 to 16)"), "{err}");
        }
    }

    #[test]
    fn reveal_names_display_and_descriptions() {
        assert_eq!(Reveal::Decision.to_string(), "decision");
        assert_eq!(Reveal::Bands { k: 4 }.to_string(), "4 bands");
        assert_eq!(Reveal::Score.to_string(), "raw score");
        assert_eq!(Reveal::Decision.name(), "decision");
        assert_eq!(Reveal::Bands { k: 4 }.name(), "bands");
        assert_eq!(Reveal::Score.name(), "score");
        assert!(Reveal::Decision.describe().contains("(1 bit)"));
        assert!(Reveal::Bands { k: 4 }.describe().contains("4 score bands"));
        assert!(Reveal::Bands { k: 4 }.describe().contains("(2 bits)"));
        assert!(Reveal::Bands { k: 3 }.describe().contains("(1.585 bits)"));
        let score = Reveal::Score.describe();
        assert!(score.contains("64 bits"), "{score}");
        assert!(
            score.contains("can reveal an attribute outright"),
            "{score}"
        );
        for k in RevealKind::ALL {
            assert_eq!(k.name().parse::<RevealKind>(), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(
            "raw".parse::<RevealKind>().unwrap_err().to_string(),
            "unknown reveal kind `raw`; expected one of: decision, bands, score"
        );
    }

    #[test]
    fn reveal_wire_form_is_tagged_and_checked() {
        for (r, json) in [
            (Reveal::Decision, r#"{"kind":"decision"}"#),
            (Reveal::Bands { k: 4 }, r#"{"kind":"bands","k":4}"#),
            (Reveal::Score, r#"{"kind":"score"}"#),
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), json);
            assert_eq!(serde_json::from_str::<Reveal>(json).unwrap(), r);
        }
        for bad in [
            r#"{"kind":"bands","k":1}"#,
            r#"{"kind":"bands","k":17}"#,
            r#"{"kind":"bands","k":-1}"#,
            r#"{"kind":"bands"}"#,
            r#"{"kind":"raw"}"#,
            r#""decision""#,
        ] {
            assert!(serde_json::from_str::<Reveal>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<Reveal>(r#"{"kind":"bands","k":99}"#).unwrap_err();
        assert!(err.to_string().contains("from 2 to 16, not 99"), "{err}");
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
        assert_eq!(limits.check(&two, Reveal::Decision), Ok(()));
        // No bit cap: even a raw score fits the limits (the policy decides whether it is allowed).
        assert_eq!(limits.check(&two, Reveal::Score), Ok(()));
        let three = two.plus(Reveal::Decision);
        assert_eq!(
            three,
            ScoringUse {
                runs: 3,
                millibits: 3_000
            }
        );
        let err = limits.check(&three, Reveal::Decision).unwrap_err();
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
                    Reveal::Decision
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
        assert_eq!(limits.check(&used, Reveal::Bands { k: 4 }), Ok(()));
        // 2 + log2 5 > 4.
        let err = limits.check(&used, Reveal::Bands { k: 5 }).unwrap_err();
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
        assert!(limits.check(&used, Reveal::Decision).is_err());
        let used = ScoringUse {
            runs: 0,
            millibits: 3_000,
        };
        assert_eq!(limits.check(&used, Reveal::Decision), Ok(()));
        // A raw score alone is over a 4-bit cap, whatever came before.
        let err = limits
            .check(&ScoringUse::default(), Reveal::Score)
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
            limits.check(&full, Reveal::Decision),
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
            cap(1.585).check(&ScoringUse::default(), Reveal::Bands { k: 3 }),
            Ok(())
        );
        assert!(cap(1.584)
            .check(&ScoringUse::default(), Reveal::Bands { k: 3 })
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
        assert_eq!(u.plus(Reveal::Score), u);
        let limits = ScoringLimits {
            max_runs: u32::MAX,
            window_days: 30,
            max_bits: Some(1.0),
        };
        let u = ScoringUse {
            runs: 0,
            millibits: u64::MAX,
        };
        assert!(limits.check(&u, Reveal::Decision).is_err());
    }
}
