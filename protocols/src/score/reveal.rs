//! What a run reveals ([`Reveal`]), agreed in public before it starts: the one definition the protocol,
//! the owner's policies (`duo-policies` re-exports it) and the wire share.
//!
//! The band count `k` is what a request names and what is counted (`log2 k` bits); the protocol runs with
//! `k - 1` FI-private thresholds, derived only by [`Reveal::thresholds`].
//!
//! What a run reveals can depend on the number of attributes `n` it scores ([`Reveal::DecisionReasons`]
//! names `k` of them), so [`Reveal::bits`] and [`Reveal::millibits`] take `n`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use super::{bands_circuit, decision_circuit, reasons_circuit, score_circuit, MAX_BAND_THRESHOLDS};
use crate::gc::builder::Thresholds;
use crate::gc::Circuit;

/// What one private scoring run reveals to the FI.
///
/// The wire form is tagged by `kind`: `{"kind":"decision"}`, `{"kind":"bands","k":4}`,
/// `{"kind":"decision_reasons","k":2}`, `{"kind":"score"}`; a band count outside `2..=16` or a reason
/// count outside `1..=4` does not deserialize. The command-line form ([`FromStr`]) is `decision`,
/// `bands:K`, `decision+reasons:K` or `score`.
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
    /// The decision and, only on a decline, the `k` attributes whose contributions fell furthest below the
    /// best contribution possible within their public bounds ("points below maximum"), worst first:
    /// `ceil(log2(n!/(n-k)!)) + 1` bits for `n` attributes.
    DecisionReasons {
        /// The number of reasons, from 1 to [`Reveal::MAX_REASONS`] (and at most the attributes scored).
        #[serde(deserialize_with = "reason_count")]
        #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 4)))]
        k: u32,
    },
    /// The raw score: 64 bits, which can reveal an attribute outright.
    Score,
}

impl Reveal {
    /// The fewest bands a [`Reveal::Bands`] may have.
    pub const MIN_BANDS: u32 = 2;
    /// The most bands a [`Reveal::Bands`] may have: one more than [`MAX_BAND_THRESHOLDS`].
    pub const MAX_BANDS: u32 = MAX_BAND_THRESHOLDS as u32 + 1;
    /// The bits of a raw score.
    pub const SCORE_BITS: u32 = 64;
    /// The most reasons a [`Reveal::DecisionReasons`] may name.
    pub const MAX_REASONS: u32 = 4;

    /// The kind's name, without the band or reason count: `decision`, `bands`, `decision+reasons` or
    /// `score` (the policy file's and the command line's; the wire's `kind` is `decision_reasons` for
    /// reasons).
    pub fn name(self) -> &'static str {
        match self {
            Reveal::Decision => "decision",
            Reveal::Bands { .. } => "bands",
            Reveal::DecisionReasons { .. } => "decision+reasons",
            Reveal::Score => "score",
        }
    }

    /// The number of reasons a decline names: `k` for [`Reveal::DecisionReasons`], 0 otherwise.
    pub fn reasons(self) -> usize {
        match self {
            Reveal::DecisionReasons { k } => k as usize,
            _ => 0,
        }
    }

    /// The number of band thresholds the FI inputs to a run: `k - 1` for `k` bands (0 for fewer than one
    /// band), 0 for a decision or a raw score. The one place the band count becomes a threshold count.
    pub fn thresholds(self) -> usize {
        match self {
            Reveal::Bands { k } => k.saturating_sub(1) as usize,
            Reveal::Decision | Reveal::DecisionReasons { .. } | Reveal::Score => 0,
        }
    }

    /// Whether this reveal is one a run may use: always, except bands outside
    /// [`Reveal::MIN_BANDS`]`..=`[`Reveal::MAX_BANDS`] and reasons outside `1..=`[`Reveal::MAX_REASONS`].
    /// (A run checks in addition that it scores at least `k` attributes for `k` reasons.)
    pub fn is_valid(self) -> bool {
        match self {
            Reveal::Bands { k } => (Reveal::MIN_BANDS..=Reveal::MAX_BANDS).contains(&k),
            Reveal::DecisionReasons { k } => (1..=Reveal::MAX_REASONS).contains(&k),
            Reveal::Decision | Reveal::Score => true,
        }
    }

    /// What one run over `n` attributes reveals, in bits: 1 for a decision, `log2 k` for `k` bands, 64 for
    /// a raw score (none of these depend on `n`), and `ceil(log2(n!/(n-k)!)) + 1` for a decision with `k`
    /// reasons: the decision, and on a decline one ordered choice of `k` of the `n` attributes. (A band
    /// count outside the valid range still counts its `log2 k`; fewer than one band counts 0; `k` reasons
    /// of fewer than `k` attributes count as `k` of `k`.)
    pub fn bits(self, n: usize) -> f64 {
        match self {
            Reveal::Decision => 1.0,
            Reveal::Bands { k } => f64::from(k.max(1)).log2(),
            Reveal::DecisionReasons { k } => f64::from(reason_bits(n, k) + 1),
            Reveal::Score => f64::from(Reveal::SCORE_BITS),
        }
    }

    /// [`Reveal::bits`] in thousandths of a bit, rounded up, the unit disclosure is counted in: 1000 for a
    /// decision, 64000 for a raw score, `ceil(1000 log2 k)` for `k` bands (2000 for 4 bands, 1585 for 3),
    /// `1000 (ceil(log2(n!/(n-k)!)) + 1)` for `k` reasons of `n` attributes (5000 for 2 of 4).
    pub fn millibits(self, n: usize) -> u64 {
        match self {
            Reveal::Decision => 1_000,
            Reveal::Score => u64::from(Reveal::SCORE_BITS) * 1_000,
            // log2 of a power of two is exact; for other counts 1000 log2 k is irrational, far from an
            // integer at these sizes, so the float rounds up to the right value. At most 32 000.
            Reveal::Bands { .. } => (1_000.0 * self.bits(n)).ceil() as u64,
            Reveal::DecisionReasons { k } => 1_000 * u64::from(reason_bits(n, k) + 1),
        }
    }

    /// What the run reveals, in plain words for the owner's approval screen.
    pub fn describe(self) -> String {
        match self {
            Reveal::Decision => "a yes/no decision: whether your score clears the FI's threshold \
                                 (1 bit; the FI chooses the model, so that bit can be any bit of any \
                                 attribute used); your attribute values and the score stay hidden"
                .to_owned(),
            Reveal::Bands { k } => format!(
                "which of {k} score bands your score falls in ({} bits); the FI sets the band edges \
                 and keeps them private, and your attribute values and the exact score stay hidden",
                bits_text(self.millibits(0))
            ),
            Reveal::DecisionReasons { k } => format!(
                "a yes/no decision and, only if it is a no, the {k} attribute{} that cost you the most \
                 points, worst first (which attributes, not their values; the decision can be any bit \
                 the FI's model chooses, as for a decision); you see the same reasons",
                if k == 1 { "" } else { "s" }
            ),
            Reveal::Score => "the raw score itself (64 bits). A raw score can reveal an attribute \
                              outright: a model that weights a single attribute returns its exact \
                              value, and one with weights far enough apart returns every attribute \
                              it uses, each exactly, in one run"
                .to_owned(),
        }
    }

    /// The circuit computing this output over `n` attributes from the two parties' inputs (the shares, and
    /// the FI's band thresholds or best contributions).
    pub fn circuit(self, n: usize) -> Circuit {
        match self {
            Reveal::Decision => decision_circuit(),
            Reveal::Bands { .. } => bands_circuit(&Thresholds::Private {
                count: self.thresholds(),
            })
            .expect("private thresholds are always well formed"),
            Reveal::DecisionReasons { k } => reasons_circuit(n, k as usize),
            Reveal::Score => score_circuit(),
        }
    }
}

impl fmt::Display for Reveal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reveal::Decision => f.write_str("decision"),
            Reveal::Bands { k } => write!(f, "{k} bands"),
            Reveal::DecisionReasons { k: 1 } => f.write_str("decision with 1 reason"),
            Reveal::DecisionReasons { k } => write!(f, "decision with {k} reasons"),
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

    /// `decision`, `bands:K` (K from 2 to 16), `decision+reasons:K` (K from 1 to 4) or `score`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "decision" => return Ok(Reveal::Decision),
            "score" => return Ok(Reveal::Score),
            _ => {}
        }
        if let Some(k) = s.strip_prefix("decision+reasons:") {
            return k
                .parse::<u32>()
                .ok()
                .filter(|k| (1..=Reveal::MAX_REASONS).contains(k))
                .map(|k| Reveal::DecisionReasons { k })
                .ok_or_else(|| {
                    RevealParseError(format!(
                        "`{s}`: the number of reasons must be a whole number from 1 to {}",
                        Reveal::MAX_REASONS
                    ))
                });
        }
        let Some(k) = s.strip_prefix("bands:") else {
            return Err(RevealParseError(format!(
                "unknown reveal `{s}`; expected decision, bands:K (K from {} to {}), \
                 decision+reasons:K (K from 1 to {}) or score",
                Reveal::MIN_BANDS,
                Reveal::MAX_BANDS,
                Reveal::MAX_REASONS
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

fn reason_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let k = u32::deserialize(d)?;
    if (1..=Reveal::MAX_REASONS).contains(&k) {
        Ok(k)
    } else {
        Err(serde::de::Error::custom(format!(
            "the number of reasons must be from 1 to {}, not {k}",
            Reveal::MAX_REASONS
        )))
    }
}

/// The number of ordered choices of `k` of `n` attributes, `n!/(n-k)!` (with `k` capped at `n`; 1 for
/// `k = 0`). Exact: `n` is at most a run's attribute limit and `k` at most [`Reveal::MAX_REASONS`] in any
/// run, and larger values saturate.
pub fn ordered_choices(n: usize, k: u32) -> u128 {
    let k = (k as usize).min(n);
    (0..k).fold(1u128, |acc, i| acc.saturating_mul((n - i) as u128))
}

/// `ceil(log2(n!/(n-k)!))`, exactly (integer arithmetic): the bits of the reasons of a decline.
fn reason_bits(n: usize, k: u32) -> u32 {
    let p = ordered_choices(n, k);
    // ceil(log2 p) for p >= 1 is the bit length of p - 1.
    u128::BITS - (p - 1).leading_zeros()
}

/// Millibits as a decimal number of bits, without trailing zeros: 2000 -> "2", 1585 -> "1.585".
pub fn bits_text(millibits: u64) -> String {
    let whole = millibits / 1_000;
    let frac = millibits % 1_000;
    if frac == 0 {
        whole.to_string()
    } else {
        let frac = format!("{frac:03}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_bits_and_millibits() {
        assert_eq!(Reveal::Decision.bits(1), 1.0);
        assert_eq!(Reveal::Decision.millibits(1), 1_000);
        assert_eq!(Reveal::Score.bits(1), 64.0);
        assert_eq!(Reveal::Score.millibits(1), 64_000);
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
            assert_eq!(r.millibits(1), want, "k = {k}");
            assert!(r.millibits(1) as f64 >= 1_000.0 * r.bits(1));
            assert!(r.is_valid());
        }
        assert_eq!(Reveal::Bands { k: 4 }.bits(1), 2.0);
        assert_eq!(Reveal::MAX_BANDS, 16);
        assert!(!Reveal::Bands { k: 1 }.is_valid());
        assert!(!Reveal::Bands { k: 17 }.is_valid());
        // Out-of-range counts are still counted honestly, never negative.
        assert_eq!(Reveal::Bands { k: 0 }.millibits(1), 0);
        assert_eq!(Reveal::Bands { k: 32 }.millibits(1), 5_000);
        assert_eq!(Reveal::Bands { k: u32::MAX }.millibits(1), 32_000);
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
        assert_eq!(
            "decision+reasons:1".parse::<Reveal>(),
            Ok(Reveal::DecisionReasons { k: 1 })
        );
        assert_eq!(
            "decision+reasons:4".parse::<Reveal>(),
            Ok(Reveal::DecisionReasons { k: 4 })
        );
        for bad in [
            "decision+reasons:0",
            "decision+reasons:5",
            "decision+reasons:",
            "decision+reasons:two",
        ] {
            let err = bad.parse::<Reveal>().unwrap_err().to_string();
            assert_eq!(
                err,
                format!("`{bad}`: the number of reasons must be a whole number from 1 to 4"),
            );
        }
        for bad in ["bands", "Decision", "raw", "", "decision+reasons"] {
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
        assert!(Reveal::Decision.describe().contains("(1 bit; "));
        assert!(Reveal::Bands { k: 4 }.describe().contains("4 score bands"));
        assert!(Reveal::Bands { k: 4 }.describe().contains("(2 bits)"));
        assert!(Reveal::Bands { k: 3 }.describe().contains("(1.585 bits)"));
        let score = Reveal::Score.describe();
        assert!(score.contains("64 bits"), "{score}");
        assert!(
            score.contains("can reveal an attribute outright"),
            "{score}"
        );
    }

    #[test]
    fn reveal_wire_form_is_tagged_and_checked() {
        for (r, json) in [
            (Reveal::Decision, r#"{"kind":"decision"}"#),
            (Reveal::Bands { k: 4 }, r#"{"kind":"bands","k":4}"#),
            (Reveal::Score, r#"{"kind":"score"}"#),
            (
                Reveal::DecisionReasons { k: 2 },
                r#"{"kind":"decision_reasons","k":2}"#,
            ),
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
            r#"{"kind":"decision_reasons","k":0}"#,
            r#"{"kind":"decision_reasons","k":5}"#,
            r#"{"kind":"decision_reasons"}"#,
        ] {
            assert!(serde_json::from_str::<Reveal>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<Reveal>(r#"{"kind":"bands","k":99}"#).unwrap_err();
        assert!(err.to_string().contains("from 2 to 16, not 99"), "{err}");
    }

    #[test]
    fn the_protocol_runs_k_minus_one_thresholds() {
        assert_eq!(Reveal::Bands { k: 4 }.thresholds(), 3);
        assert_eq!(Reveal::Bands { k: 2 }.thresholds(), 1);
        assert_eq!(
            Reveal::Bands {
                k: Reveal::MAX_BANDS
            }
            .thresholds(),
            MAX_BAND_THRESHOLDS
        );
        assert_eq!(Reveal::Bands { k: 0 }.thresholds(), 0);
        assert_eq!(Reveal::Decision.thresholds(), 0);
        assert_eq!(Reveal::Score.thresholds(), 0);
        for k in Reveal::MIN_BANDS..=Reveal::MAX_BANDS {
            let r = Reveal::Bands { k };
            // k bands: k - 1 thresholds, log2 k bits, and a circuit with k - 1 threshold inputs.
            assert_eq!(r.bits(1), ((r.thresholds() + 1) as f64).log2());
            assert_eq!(
                r.circuit(1).evaluator_inputs().len(),
                64 * (1 + r.thresholds())
            );
        }
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    /// ceil(log2(x)) for x >= 1 by doubling, independent of the bit-length formula.
    fn ceil_log2(x: u128) -> u32 {
        let mut bits = 0;
        while (1u128 << bits) < x {
            bits += 1;
        }
        bits
    }

    #[test]
    fn reasons_count_ordered_choices_plus_the_decision() {
        // 2 of 4: 12 ordered choices, ceil(log2 12) = 4, plus the decision bit.
        assert_eq!(Reveal::DecisionReasons { k: 2 }.bits(4), 5.0);
        assert_eq!(Reveal::DecisionReasons { k: 2 }.millibits(4), 5_000);
        // 1 of 1: nothing to choose, only the decision.
        assert_eq!(Reveal::DecisionReasons { k: 1 }.millibits(1), 1_000);
        // 4 of 32: 32·31·30·29 = 863 040 < 2^20.
        assert_eq!(ordered_choices(32, 4), 863_040);
        assert_eq!(Reveal::DecisionReasons { k: 4 }.millibits(32), 21_000);
        for n in 1..=300usize {
            for k in 1..=4u32 {
                let p: u128 = (0..(k as usize).min(n)).map(|i| (n - i) as u128).product();
                assert_eq!(ordered_choices(n, k), p);
                let r = Reveal::DecisionReasons { k };
                assert_eq!(
                    r.millibits(n),
                    1_000 * u64::from(ceil_log2(p) + 1),
                    "{k} of {n}"
                );
                // The outcomes: one approval and p declines, at most 2^bits of them.
                assert!(((p + 1) as f64).log2() <= r.bits(n));
            }
        }
        // Other kinds do not depend on the attribute count.
        for n in [1, 7, 4096] {
            assert_eq!(Reveal::Decision.millibits(n), 1_000);
            assert_eq!(Reveal::Bands { k: 4 }.millibits(n), 2_000);
        }
    }

    #[test]
    fn reasons_names_and_validity() {
        let r = Reveal::DecisionReasons { k: 2 };
        assert_eq!(r.name(), "decision+reasons");
        assert_eq!(r.to_string(), "decision with 2 reasons");
        assert_eq!(
            Reveal::DecisionReasons { k: 1 }.to_string(),
            "decision with 1 reason"
        );
        assert!(r
            .describe()
            .contains("only if it is a no, the 2 attributes"));
        assert!(r.is_valid());
        assert!(!Reveal::DecisionReasons { k: 0 }.is_valid());
        assert!(!Reveal::DecisionReasons { k: 5 }.is_valid());
        assert_eq!(r.reasons(), 2);
        assert_eq!(r.thresholds(), 0);
        assert_eq!(Reveal::Decision.reasons(), 0);
    }
}
