//! The FI's model file (`duo fi score --model MODEL.toml`): a linear model over catalogue attributes, its
//! canonical JSON and salted commitment, and its encoding for a run.
//!
//! ```toml
//! name = "thin-file-v1"           # optional, for the FI's own records
//! bias = -1.0
//! threshold = 0.25
//! bands = [-0.5, 0.0, 0.5]        # optional: band thresholds, for --reveal bands:4
//! [weights]                        # catalogue attribute = weight
//! rent_on_time_ratio_12m = 2.0
//! nsf_overdraft_count_90d = -0.25
//! ```
//!
//! A logistic model (the score is the log-odds) may state its threshold as a probability instead:
//! `probability = 0.7` in place of `threshold` approves when `1 / (1 + e^-score) ≥ 0.7`. It is converted to
//! the linear-score threshold `logit(p) = ln(p / (1 - p))`, rounded up to the score's fixed point, which
//! gives the same decision for every score ([`duo_protocols::fixed::logit_threshold`]). The commitment
//! covers the file as written (the probability, not the converted threshold).

use crate::error::Error;
use crate::proto::digest::hex;
use duo_engine::catalogue;
use duo_policies::Reveal;
use duo_protocols::fixed::{Bounds, FixedModel};
use duo_protocols::score::FiModel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An FI's linear model, as read from its TOML file (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// A name for the FI's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Weight per catalogue attribute.
    pub weights: BTreeMap<String, f64>,
    /// Added to the weighted sum.
    pub bias: f64,
    /// The decision is "the score reaches this". Exactly one of `threshold` and `probability` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// For a logistic model: the decision is "`1 / (1 + e^-score)` reaches this", strictly between 0 and 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Band thresholds, ascending (for a banded reveal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bands: Vec<f64>,
}

/// A float as Python's `repr` writes it: the shortest digits that read back to the same value (Rust's `{:e}`
/// gives the same digits), in plain notation when the decimal exponent is from -4 to 15 (with `.0` when
/// integral), otherwise as `d.ddde±XX` with at least two exponent digits.
fn python_float(x: f64) -> String {
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let e = exp as usize;
            let int: String = if digits.len() > e {
                digits[..=e].to_string()
            } else {
                format!("{digits}{}", "0".repeat(e + 1 - digits.len()))
            };
            let frac = digits.get(e + 1..).filter(|f| !f.is_empty()).unwrap_or("0");
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let rest = &digits[1..];
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!(
            "{sign}{}{dot}e{esign}{:02}",
            &digits[..1],
            exp.unsigned_abs()
        )
    }
}

/// Domain tag of model commitments.
pub const COMMITMENT_TAG: &[u8] = b"duo/model-commitment/v1";

impl ModelFile {
    /// Parses a model file; every number must be finite and every attribute in the catalogue.
    pub fn parse(text: &str) -> Result<ModelFile, Error> {
        let m: ModelFile = toml::from_str(text)
            .map_err(|e| Error::Refused(format!("model file: {}", e.message())))?;
        if m.weights.is_empty() {
            return Err(Error::Refused(
                "model file: [weights] names no attribute".into(),
            ));
        }
        for (a, w) in &m.weights {
            if catalogue::entry(a).is_none() {
                return Err(Error::Refused(format!(
                    "model file: `{a}` is not a catalogue attribute; see `duo fi catalogue`"
                )));
            }
            if !w.is_finite() {
                return Err(Error::Refused(format!(
                    "model file: the weight of `{a}` is not a finite number"
                )));
            }
        }
        let threshold = match (m.threshold, m.probability) {
            (Some(t), None) => t,
            // Checked (and converted) by `linear_threshold`.
            (None, Some(_)) => 0.0,
            (Some(_), Some(_)) => {
                return Err(Error::Refused(
                    "model file: give either threshold or probability, not both".into(),
                ))
            }
            (None, None) => {
                return Err(Error::Refused(
                    "model file: missing threshold (or probability, for a logistic model)".into(),
                ))
            }
        };
        for (what, v) in [("bias", m.bias), ("threshold", threshold)] {
            if !v.is_finite() {
                return Err(Error::Refused(format!(
                    "model file: {what} is not a finite number"
                )));
            }
        }
        m.linear_threshold()?;
        if m.bands.iter().any(|b| !b.is_finite()) || m.bands.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Refused(
                "model file: bands must be finite and strictly ascending".into(),
            ));
        }
        Ok(m)
    }

    /// The threshold on the linear score: `threshold`, or for `probability = p` the exact equivalent
    /// `ceil(logit(p) · 2^32) / 2^32` (see the module docs).
    pub fn linear_threshold(&self) -> Result<f64, Error> {
        match (self.threshold, self.probability) {
            (Some(t), None) => Ok(t),
            (None, Some(p)) => {
                let t = duo_protocols::fixed::logit_threshold(p)
                    .map_err(|e| Error::Refused(format!("model file: {e}")))?;
                // Exact: |t| < 2^53.
                Ok(t as f64 / (2f64).powi(duo_protocols::fixed::SCORE_FRAC_BITS as i32))
            }
            _ => Err(Error::Refused(
                "model file: give exactly one of threshold and probability".into(),
            )),
        }
    }

    /// The attributes, in the model's (sorted) order.
    pub fn attributes(&self) -> Vec<String> {
        self.weights.keys().cloned().collect()
    }

    /// The model's canonical JSON: object keys sorted, no whitespace, numbers written as Python writes floats
    /// (the shortest digits that read back exactly; plain notation for decimal exponents from -4 to 15,
    /// otherwise `1e-05`, `1e+16`). That is what the commitment hashes, and what Python's
    /// `json.dumps(model, sort_keys=True, separators=(",", ":"))` writes.
    pub fn canonical_json(&self) -> String {
        fn write(v: &serde_json::Value, out: &mut String) {
            match v {
                serde_json::Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    out.push('{');
                    for (i, k) in keys.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&serde_json::Value::String(k.clone()).to_string());
                        out.push(':');
                        write(&m[k], out);
                    }
                    out.push('}');
                }
                serde_json::Value::Array(a) => {
                    out.push('[');
                    for (i, x) in a.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(x, out);
                    }
                    out.push(']');
                }
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) if !n.is_f64() => out.push_str(&i.to_string()),
                    (_, Some(f)) => out.push_str(&python_float(f)),
                    _ => out.push_str(&n.to_string()),
                },
                other => out.push_str(&other.to_string()),
            }
        }
        let mut out = String::new();
        write(&serde_json::to_value(self).unwrap_or_default(), &mut out);
        out
    }

    /// The salted commitment to this model: SHA-256 of [`COMMITMENT_TAG`], the 32-byte salt and
    /// [`ModelFile::canonical_json`], in hex.
    pub fn commitment(&self, salt: &[u8; 32]) -> String {
        let mut h = Sha256::new();
        h.update(COMMITMENT_TAG);
        h.update(salt);
        h.update(self.canonical_json().as_bytes());
        hex(&h.finalize())
    }

    /// The model encoded for a run, after the headroom check, with band thresholds for `reveal`.
    pub fn encode(&self, reveal: Reveal) -> Result<FiModel, Error> {
        let bounds: Vec<Bounds> = self
            .weights
            .keys()
            .filter_map(|a| catalogue::entry(a))
            .map(|e| Bounds::new(e.bounds.lo, e.bounds.hi))
            .collect();
        let weights: Vec<f64> = self.weights.values().copied().collect();
        let fixed = FixedModel::new(&bounds, &weights, self.bias, self.linear_threshold()?).map_err(
            |e| match e {
                // Named by attribute, as the file names it.
                duo_protocols::fixed::FixedError::WeightOutOfRange { index, value } => {
                    let name = self.weights.keys().nth(index).map_or("?", String::as_str);
                    Error::Refused(format!(
                        "model refused: the weight of `{name}` ({value}) is out of range; a weight's magnitude \
                         must be below {}",
                        1u64 << (duo_protocols::fixed::WEIGHT_BITS
                            - 1
                            - duo_protocols::fixed::WEIGHT_FRAC_BITS)
                    ))
                }
                e => Error::Refused(format!("model refused: {e}")),
            },
        )?;
        let bands: &[f64] = match reveal {
            Reveal::Bands { k } => {
                if self.bands.len() + 1 != k as usize {
                    return Err(Error::Refused(format!(
                        "--reveal bands:{k} needs {} band thresholds in the model file; it has {}",
                        k.saturating_sub(1),
                        self.bands.len()
                    )));
                }
                &self.bands
            }
            _ => &[],
        };
        FiModel::new(fixed, bands).map_err(|e| Error::Refused(format!("model refused: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_out_of_range_is_refused_by_name() {
        let m = ModelFile::parse(
            "bias = 0.0\nthreshold = 0.0\n[weights]\nincome_cv_12m = 1.0\nrent_on_time_ratio_12m = 40000.0\n",
        )
        .unwrap();
        let e = m.encode(Reveal::Decision).unwrap_err().to_string();
        assert!(
            e.contains("`rent_on_time_ratio_12m`") && e.contains("below 32768"),
            "{e}"
        );
        let ok = ModelFile::parse(
            "bias = 0.0\nthreshold = 0.0\n[weights]\nrent_on_time_ratio_12m = -32768.0\n",
        )
        .unwrap();
        assert!(ok.encode(Reveal::Decision).is_ok());
    }

    const MODEL: &str = r#"
name = "t"
bias = -1.0
threshold = 0.25
bands = [-0.5, 0.5]
[weights]
rent_on_time_ratio_12m = 2.0
nsf_overdraft_count_90d = -0.25
"#;

    #[test]
    fn model_files_parse_commit_and_encode() {
        let m = ModelFile::parse(MODEL).unwrap();
        assert_eq!(
            m.attributes(),
            vec!["nsf_overdraft_count_90d", "rent_on_time_ratio_12m"]
        );
        let salt = [7u8; 32];
        let c = m.commitment(&salt);
        assert_eq!(c.len(), 64);
        assert_eq!(
            m.canonical_json(),
            r#"{"bands":[-0.5,0.5],"bias":-1.0,"name":"t","threshold":0.25,"weights":{"nsf_overdraft_count_90d":-0.25,"rent_on_time_ratio_12m":2.0}}"#
        );
        assert_ne!(c, m.commitment(&[8u8; 32]));
        let mut other = m.clone();
        other.bias = -0.5;
        assert_eq!(m.linear_threshold().unwrap(), 0.25);
        assert_ne!(c, other.commitment(&salt));
        assert!(m.encode(Reveal::Decision).is_ok());
        assert!(m.encode(Reveal::Bands { k: 3 }).is_ok());
        let e = m.encode(Reveal::Bands { k: 4 }).unwrap_err().to_string();
        assert!(e.contains("needs 3 band thresholds"), "{e}");
    }

    #[test]
    fn a_probability_threshold_gives_the_same_decisions_as_its_logit() {
        let text = "bias = -1.0\nprobability = 0.7\n[weights]\nrent_on_time_ratio_12m = 3.0\n";
        let m = ModelFile::parse(text).unwrap();
        assert!(m.canonical_json().contains(r#""probability":0.7"#));
        assert!(!m.canonical_json().contains("threshold"));
        let t = m.linear_threshold().unwrap();
        assert_eq!(
            (t * 4294967296.0) as i64,
            duo_protocols::fixed::logit_threshold(0.7).unwrap()
        );
        let fi = m.encode(Reveal::Decision).unwrap();
        // Over a fine grid of attribute values, the encoded model's decision is the logistic decision
        // σ(score) ≥ 0.7 computed from the fixed-point score.
        let sigmoid = |s: f64| 1.0 / (1.0 + (-s).exp());
        let mut both = [0, 0];
        for i in 0..=20_000 {
            let x = i as f64 / 20_000.0;
            let r = fi.model().score_reference(&[x]).unwrap();
            let score = duo_protocols::fixed::decode_score(r.score);
            assert_eq!(r.decision, sigmoid(score) >= 0.7, "x = {x}, score {score}");
            both[r.decision as usize] += 1;
        }
        assert!(both[0] > 0 && both[1] > 0);
        for (text, want) in [
            (
                "bias = 0.0\nprobability = 1.0\n[weights]\nrent_on_time_ratio_12m = 1.0\n",
                "strictly between 0 and 1",
            ),
            (
                "bias = 0.0\nthreshold = 0.1\nprobability = 0.5\n[weights]\nrent_on_time_ratio_12m = 1.0\n",
                "not both",
            ),
            (
                "bias = 0.0\n[weights]\nrent_on_time_ratio_12m = 1.0\n",
                "missing threshold",
            ),
        ] {
            let e = ModelFile::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn floats_are_written_as_python_writes_them() {
        // Expected strings printed by Python 3's repr() for the same doubles.
        let cases: [(f64, &str); 22] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.25, "0.25"),
            (2.0, "2.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345.0, "123456789012345.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5e-05, "2.5e-05"),
            (-2.5e-05, "-2.5e-05"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (1e22, "1e+22"),
            (-3.75, "-3.75"),
            (65536.0, "65536.0"),
            (2e-5, "2e-05"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float(x), want, "{x:e}");
        }
    }

    #[test]
    fn bad_model_files_are_refused_with_reasons() {
        for (text, want) in [
            ("bias = 0.0\nthreshold = 0.0\n[weights]\n", "names no attribute"),
            (
                "bias = 0.0\nthreshold = 0.0\n[weights]\nsalary = 1.0\n",
                "not a catalogue attribute",
            ),
            (
                "bias = nan\nthreshold = 0.0\n[weights]\nnsf_overdraft_count_90d = 1.0\n",
                "bias is not a finite",
            ),
            (
                "bias = 0.0\nthreshold = 0.0\nbands = [1.0, 1.0]\n[weights]\nnsf_overdraft_count_90d = 1.0\n",
                "strictly ascending",
            ),
            (
                "bias = 0.0\nthreshold = 0.0\nextra = 1\n[weights]\nnsf_overdraft_count_90d = 1.0\n",
                "unknown field",
            ),
        ] {
            let e = ModelFile::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // A model that could overflow the headroom is refused before anything leaves the FI.
        let huge = "bias = 0.0\nthreshold = 0.0\n[weights]\navg_daily_balance_3m = 1000.0\n";
        let e = ModelFile::parse(huge)
            .unwrap()
            .encode(Reveal::Decision)
            .unwrap_err()
            .to_string();
        assert!(e.contains("headroom"), "{e}");
    }
}
