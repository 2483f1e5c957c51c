//! Private scoring (backend `2pc`) as both sides see it: what an FI asks to score, how a run starts and ends,
//! and how the protocol's messages travel on the session.
//!
//! During a run the session carries the protocol of [`duo_protocols::score`] as binary messages: each protocol
//! message is cut into chunks of at most [`CHUNK`] bytes, each chunk a channel payload `[0xB5, last, bytes...]`
//! (JSON payloads start with `{`, so the two never mix). A JSON payload during a run means the peer gave up.
//! Every wait has a timeout ([`STEP_TIMEOUT`]).
//!
//! What a run does not give the FI: any guarantee that its output is correct against a modified owner node (the
//! owner chooses the decoding bits of the FI's output). Against such a node the FI's model is protected to about
//! one bit per owner output wire per run, because the FI returns only output labels the owner committed to
//! (see [`duo_protocols::score`]). And since the FI chooses the model, a decision can be any bit of any
//! requested attribute, and a raw score can return every requested attribute exactly in one run. With
//! reasons the FI checks that what it decodes is something the circuit can output (an approval without
//! reasons, or a decline naming distinct attributes of the run), and aborts otherwise; a modified owner can
//! still make it decode other well-formed reasons.

use crate::error::Error;
use crate::proto::digest::FieldHasher;
use crate::proto::receipt::Receipt;
use duo_engine::{catalogue, Answer, Value};
use duo_policies::Reveal;
use duo_protocols::fixed::Bounds;
use duo_protocols::ot::SessionId;
use duo_protocols::score::Outcome;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// First byte of a protocol chunk on the session.
pub const CHUNK_MARK: u8 = 0xB5;

/// Largest protocol chunk this side sends, in bytes: with its two header bytes, one Noise transport message
/// (65 518 bytes of plaintext), so a chunk is one frame and one write. A receiver takes any chunk that fits a
/// channel message.
pub const CHUNK: usize = 65_516;

/// How long either side waits for the next protocol message before it ends the run.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What an FI asks to score: the attributes its model uses, what the run reveals, and its model commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ScoringSpec {
    /// Catalogue attributes, in the model's order (sorted by name by the client), each over the window ending
    /// at the last full month.
    pub attributes: Vec<String>,
    /// What the run reveals to both sides.
    pub reveal: Reveal,
    /// The FI's salted commitment to its model (64 hex digits): SHA-256 of a domain tag, a 32-byte salt and
    /// the model's canonical JSON. Asserted by the FI, openable to an auditor, not enforced by the protocol.
    pub commitment: String,
}

impl ScoringSpec {
    /// Checks the spec against the catalogue.
    pub fn validate(&self) -> Result<(), Error> {
        if self.attributes.is_empty() {
            return Err(Error::Refused(
                "a scoring request names at least one catalogue attribute".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.attributes {
            if catalogue::entry(a).is_none() {
                return Err(Error::Refused(format!(
                    "`{a}` is not a catalogue attribute; see `duo fi catalogue`"
                )));
            }
            if !seen.insert(a) {
                return Err(Error::Refused(format!("attribute `{a}` is listed twice")));
            }
        }
        if !self.reveal.is_valid() {
            return Err(Error::Refused(format!(
                "cannot reveal {}: bands must number {} to {}, reasons 1 to {}",
                self.reveal,
                Reveal::MIN_BANDS,
                Reveal::MAX_BANDS,
                Reveal::MAX_REASONS
            )));
        }
        if let Reveal::DecisionReasons { k } = self.reveal {
            let n = self.attributes.len();
            if k as usize > n || n > duo_protocols::score::MAX_REASON_ATTRIBUTES {
                return Err(Error::Refused(format!(
                    "cannot reveal {} of a model with {n} attributes: a decline names at most as many \
                     reasons as the model has attributes, and a run with reasons scores at most {} \
                     attributes",
                    self.reveal,
                    duo_protocols::score::MAX_REASON_ATTRIBUTES
                )));
            }
        }
        if self.commitment.len() != 64 || !self.commitment.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Refused(
                "the model commitment must be 64 hex digits (SHA-256)".into(),
            ));
        }
        Ok(())
    }

    /// The public bounds of each attribute, in order.
    pub fn bounds(&self) -> Vec<Bounds> {
        self.attributes
            .iter()
            .filter_map(|a| catalogue::entry(a))
            .map(|e| Bounds::new(e.bounds.lo, e.bounds.hi))
            .collect()
    }

    /// The request in plain words (for the log and both screens).
    pub fn describe(&self) -> String {
        format!(
            "private scoring of the FI's model over {}; reveals {} to both sides",
            self.attributes.join(", "),
            self.reveal.describe()
        )
    }
}

/// The owner's answer to [`crate::proto::ClientMsg::ScoreRun`]: the run's public parameters. Protocol messages
/// follow at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScoreStart {
    /// The request (the principal's own number for it).
    pub request: u64,
    /// The run (both sides derive the protocol session id from the channel, the request and the run).
    pub run: u64,
    /// The attributes, in the order of the model.
    pub attributes: Vec<String>,
    /// What the run reveals.
    pub reveal: Reveal,
    /// Whether the run continues the OT-extension state of an earlier run (no base OTs): the FI named it in
    /// [`ClientMsg::ScoreRun`](crate::proto::ClientMsg::ScoreRun)'s `resume` and the node holds the same one.
    #[serde(default)]
    pub warm: bool,
}

/// The OT-extension state an FI holds from an earlier finished run with this owner, kept between sessions
/// (docs/scoring.md): which state it is and where it stands. Nothing secret: the id is the session id of the
/// run that made the state's base OTs, which both sides derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OtResume {
    /// The state's id: 64 hex digits.
    pub id: String,
    /// Its next OT index.
    pub next_index: u64,
}

/// The protocol session id of the base OTs made ahead of a run by the message with envelope id `envelope`
/// ([`crate::proto::ClientMsg::OtPrepare`]): bound to the channel like a run's, and apart from every run's.
pub fn prepare_session_id(handshake_hash: &[u8], envelope: u64) -> SessionId {
    let mut h = FieldHasher::new(b"duo/score/prepare/v1");
    h.field(handshake_hash).raw(envelope.to_le_bytes());
    SessionId(h.finish())
}

/// The id of the OT-extension state whose base OTs a run with this session id makes.
pub fn ot_state_id(session: &SessionId) -> String {
    crate::proto::digest::hex(&session.0)
}

/// The output of a run, as both sides learn it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScoreOutcome {
    /// Whether the score reaches the FI's threshold.
    Decision {
        /// `true`: it does.
        approve: bool,
    },
    /// The band of the score.
    Band {
        /// Band index, from 0 (below every band threshold).
        band: u32,
        /// Number of bands.
        of: u32,
    },
    /// The score itself.
    Score {
        /// The score in model units.
        value: f64,
    },
    /// The decision and, on a decline, the attributes that cost the applicant most.
    DecisionReasons {
        /// `true`: the score reaches the threshold.
        approve: bool,
        /// On a decline, the catalogue attributes whose contributions fell furthest below their best within
        /// the public bounds, worst first; empty on an approval.
        reasons: Vec<String>,
    },
}

impl ScoreOutcome {
    /// The outcome of a protocol run over `attributes` (in the model's order), in the node's terms.
    pub fn from_run(o: Outcome, reveal: Reveal, attributes: &[String]) -> ScoreOutcome {
        match o {
            Outcome::DecisionReasons { approve, reasons } => ScoreOutcome::DecisionReasons {
                approve,
                // The protocol checked each index against the run's attribute count.
                reasons: reasons
                    .indices()
                    .iter()
                    .filter_map(|&i| attributes.get(usize::from(i)).cloned())
                    .collect(),
            },
            Outcome::Decision(approve) => ScoreOutcome::Decision { approve },
            Outcome::Band(band) => ScoreOutcome::Band {
                band,
                of: match reveal {
                    Reveal::Bands { k } => k,
                    _ => 0,
                },
            },
            Outcome::Score(s) => ScoreOutcome::Score {
                value: duo_protocols::fixed::decode_score(s),
            },
        }
    }

    /// As an answer (what the receipt signs). A decision with reasons is a vector: `decision`, then
    /// `reason 1`, `reason 2`, ... naming the attributes (only the decision on an approval).
    pub fn answer(&self) -> Answer {
        let value = match self {
            ScoreOutcome::Decision { approve } => Value::Bool(*approve),
            ScoreOutcome::Band { band, .. } => Value::Int(*band as i64),
            ScoreOutcome::Score { value } => Value::Float(*value),
            ScoreOutcome::DecisionReasons { approve, reasons } => {
                let mut labels = vec!["decision".to_owned()];
                let mut values = vec![Value::Bool(*approve)];
                for (i, r) in reasons.iter().enumerate() {
                    labels.push(format!("reason {}", i + 1));
                    values.push(Value::Str(r.clone()));
                }
                return Answer::Vector { labels, values };
            }
        };
        Answer::Scalar { value }
    }

    /// The reasons of a decline with reasons (empty otherwise).
    pub fn reasons(&self) -> &[String] {
        match self {
            ScoreOutcome::DecisionReasons { reasons, .. } => reasons,
            _ => &[],
        }
    }
}

impl std::fmt::Display for ScoreOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreOutcome::Decision { approve: true } => {
                f.write_str("approve (score reaches the threshold)")
            }
            ScoreOutcome::Decision { approve: false } => {
                f.write_str("decline (score below the threshold)")
            }
            ScoreOutcome::Band { band, of } => write!(f, "band {band} of {of} (0 is lowest)"),
            ScoreOutcome::Score { value } => write!(f, "score {value}"),
            ScoreOutcome::DecisionReasons { approve: true, .. } => {
                f.write_str("approve (score reaches the threshold; no reasons)")
            }
            ScoreOutcome::DecisionReasons {
                approve: false,
                reasons,
            } => write!(
                f,
                "decline (score below the threshold); reasons, worst first: {}",
                reasons
                    .iter()
                    .map(|r| format!("{} ({r})", reason_words(r)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

/// A catalogue attribute named as a reason, in plain words ([`catalogue::CatalogueEntry::reason`]); the name
/// itself for an attribute the catalogue does not know.
pub fn reason_words(attribute: &str) -> String {
    catalogue::entry(attribute).map_or_else(|| attribute.to_owned(), |e| e.reason())
}

/// The owner's report of a finished run: [`crate::proto::ServerMsg::ScoreDone`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScoreDone {
    /// The request (the principal's own number for it).
    pub request: u64,
    /// The run.
    pub run: u64,
    /// What the run revealed.
    pub outcome: ScoreOutcome,
    /// Bits it revealed.
    pub bits: f64,
    /// The node's signed receipt for the outcome.
    pub receipt: Receipt,
}

/// The protocol session id of a run: bound to the channel (its handshake hash), the request and the run.
pub fn session_id(handshake_hash: &[u8], request: u64, run: u64) -> SessionId {
    let mut h = FieldHasher::new(b"duo/score/session/v1");
    h.field(handshake_hash)
        .raw(request.to_le_bytes())
        .raw(run.to_le_bytes());
    SessionId(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        let ok = ScoringSpec {
            attributes: vec!["rent_on_time_ratio_12m".into()],
            reveal: Reveal::Decision,
            commitment: "ab".repeat(32),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            ScoringSpec {
                attributes: vec![],
                ..ok.clone()
            },
            ScoringSpec {
                attributes: vec!["x".into()],
                ..ok.clone()
            },
            ScoringSpec {
                attributes: vec!["rent_on_time_ratio_12m".into(); 2],
                ..ok.clone()
            },
            ScoringSpec {
                commitment: "zz".repeat(32),
                ..ok.clone()
            },
            ScoringSpec {
                reveal: Reveal::Bands { k: 40 },
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        // k bands run with k - 1 FI thresholds.
        assert_eq!(Reveal::Bands { k: 4 }.thresholds(), 3);
    }

    #[test]
    fn session_ids_bind_channel_request_and_run() {
        let a = session_id(b"hh", 1, 1);
        assert_ne!(a, session_id(b"hh", 1, 2));
        assert_ne!(a, session_id(b"hh", 2, 1));
        assert_ne!(a, session_id(b"hH", 1, 1));
        assert_eq!(a, session_id(b"hh", 1, 1));
    }
}
