//! Private scoring (backend `2pc`): the FI's secret linear model against the owner's catalogue attributes.
//!
//! A scoring request goes the way of every request: the FI names the attributes its model uses, what the run
//! reveals ([`Reveal`]) and a salted commitment to its model, with a reason; the policy (or the owner) decides;
//! the log records it. What differs is the release: an approved scoring request lets the FI start **one run**
//! ([`crate::wire::ClientMsg::ScoreRun`]). The run is counted against the principal's `[scoring]` limits when it
//! starts, whether it completes or aborts, and what it reveals is counted in bits (a decision 1 bit, `k` bands
//! `log2 k`, a raw score 64).
//!
//! During a run the session carries the protocol of [`duo_protocols::score`] as binary messages: each protocol
//! message is cut into chunks of at most [`CHUNK`] bytes, each chunk a channel payload `[0xB5, last, bytes...]`
//! (JSON payloads start with `{`, so the two never mix). A JSON payload during a run means the peer gave up
//! (its error is read and logged). Every wait has a timeout; a timeout, a closed channel or a protocol error
//! ends the run on both sides and is logged by the owner (`scoring-end` with the error).
//!
//! The model file the FI uses (`duo fi score --model MODEL.toml`):
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

use crate::error::Error;
use crate::release::Owner;
use crate::store::{self, append_log, hex, write_tx};
use crate::transport::{SecureChannel, TransportError};
use duo_engine::{catalogue, Answer, Checked, Expr, Value};
use duo_policies::{Reveal, ScoringLimits, ScoringUse};
use duo_protocols::fixed::{Bounds, FixedModel};
use duo_protocols::ot::{kos, SessionId};
use duo_protocols::score::{self, FiModel, FiRun, FiStep, Outcome, OwnerRun, OwnerStep, Params};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// First byte of a protocol chunk on the session.
pub const CHUNK_MARK: u8 = 0xB5;

/// Largest protocol chunk, in bytes: far below the session's frame and message limits.
pub const CHUNK: usize = 32 * 1024;

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
                "cannot reveal {}: bands must number {} to {}",
                self.reveal,
                Reveal::MIN_BANDS,
                Reveal::MAX_BANDS
            )));
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

/// What the owner sees of a scoring request before deciding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringView {
    /// The attributes the model uses (their values never leave the node in the clear).
    pub attributes: Vec<String>,
    /// What a run reveals, in words.
    pub reveals: String,
    /// Who learns it.
    pub to_whom: String,
    /// Bits one run reveals.
    pub bits: f64,
    /// The FI's model commitment.
    pub commitment: String,
    /// Runs this FI started in the current window, and the limit.
    pub runs_used: u32,
    /// The limit on runs per window.
    pub runs_max: u32,
    /// The window, in days.
    pub window_days: u32,
    /// Bits revealed to this FI in the window so far.
    pub bits_used: f64,
}

/// The owner's answer to [`crate::wire::ClientMsg::ScoreRun`]: the run's public parameters. Protocol messages
/// follow at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScoreStart {
    /// The request.
    pub request: u64,
    /// The run (both sides derive the protocol session id from the channel, the request and the run).
    pub run: u64,
    /// The attributes, in the order of the model.
    pub attributes: Vec<String>,
    /// What the run reveals.
    pub reveal: Reveal,
    /// Whether the run reuses the OT-extension state of an earlier run in this session (no base OTs).
    #[serde(default)]
    pub warm: bool,
}

/// The output of a run, as both sides learn it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
}

impl ScoreOutcome {
    /// The outcome of a protocol run, in the node's terms.
    pub fn from_run(o: Outcome, reveal: Reveal) -> ScoreOutcome {
        match o {
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

    /// As an answer (what the receipt signs).
    pub fn answer(&self) -> Answer {
        let value = match *self {
            ScoreOutcome::Decision { approve } => Value::Bool(approve),
            ScoreOutcome::Band { band, .. } => Value::Int(band as i64),
            ScoreOutcome::Score { value } => Value::Float(value),
        };
        Answer::Scalar { value }
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
        }
    }
}

/// The owner's report of a finished run: [`crate::wire::ServerMsg::ScoreDone`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScoreDone {
    /// The request.
    pub request: u64,
    /// The run.
    pub run: u64,
    /// What the run revealed.
    pub outcome: ScoreOutcome,
    /// Bits it revealed.
    pub bits: f64,
    /// The node's signed receipt for the outcome.
    pub receipt: crate::receipt::Receipt,
}

/// The protocol session id of a run: bound to the channel (its handshake hash), the request and the run.
pub fn session_id(handshake_hash: &[u8], request: u64, run: u64) -> SessionId {
    let mut h = Sha256::new();
    h.update(b"duo/score/session/v1");
    h.update((handshake_hash.len() as u64).to_le_bytes());
    h.update(handshake_hash);
    h.update(request.to_le_bytes());
    h.update(run.to_le_bytes());
    SessionId(h.finalize().into())
}

// ---------------------------------------------------------------------------------------------------------
// Owner store side
// ---------------------------------------------------------------------------------------------------------

/// The lineage facts of a scoring request: every attribute over its latest window, merged.
pub(crate) fn scoring_checked(owner: &Owner, spec: &ScoringSpec) -> Result<Checked, Error> {
    spec.validate()?;
    let mut merged: Option<Checked> = None;
    for a in &spec.attributes {
        let c = owner.check(&Expr::Catalogue {
            name: a.clone(),
            window_end: None,
        })?;
        merged = Some(match merged {
            None => c,
            Some(mut m) => {
                m.datasets.extend(c.datasets);
                m.columns.extend(c.columns);
                m.op_kinds.extend(c.op_kinds);
                m.catalogue.extend(c.catalogue);
                m.nodes += c.nodes;
                m
            }
        });
    }
    let mut m = merged.ok_or_else(|| Error::Refused("no attributes".into()))?;
    m.catalogue_only = m.catalogue.len() == 1;
    m.ty = duo_engine::Type::Scalar {
        dtype: match spec.reveal {
            Reveal::Decision => duo_engine::DataType::Bool,
            Reveal::Bands { .. } => duo_engine::DataType::I64,
            Reveal::Score => duo_engine::DataType::F64,
        },
        bounds: None,
    };
    Ok(m)
}

/// Runs started and bits revealed to `principal` within the policy's window.
pub(crate) fn scoring_use(
    conn: &rusqlite::Connection,
    principal: &str,
    limits: &ScoringLimits,
) -> Result<ScoringUse, Error> {
    let since = store::now_unix() - limits.window_seconds();
    let (runs, millibits): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(millibits), 0) FROM scoring_runs
             WHERE principal = ?1 AND started_at > ?2",
        )?
        .query_row(params![principal, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(ScoringUse {
        runs: runs as u32,
        millibits: millibits as u64,
    })
}

/// What private scoring has revealed to each FI within the policy's window: runs started and bits, by
/// principal (for the owner's budget screen).
pub fn scoring_usage(
    conn: &rusqlite::Connection,
    limits: &ScoringLimits,
) -> Result<Vec<(String, ScoringUse)>, Error> {
    let since = store::now_unix() - limits.window_seconds();
    let mut stmt = conn.prepare(
        "SELECT principal, COUNT(*), COALESCE(SUM(millibits), 0) FROM scoring_runs
         WHERE started_at > ?1 GROUP BY principal ORDER BY principal",
    )?;
    let rows = stmt.query_map([since], |r| {
        Ok((
            r.get::<_, String>(0)?,
            ScoringUse {
                runs: r.get::<_, i64>(1)? as u32,
                millibits: r.get::<_, i64>(2)? as u64,
            },
        ))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn stored_spec(
    conn: &rusqlite::Connection,
    request: u64,
) -> Result<Option<ScoringSpec>, Error> {
    let text: Option<String> = conn
        .prepare_cached("SELECT spec FROM scoring_requests WHERE request_id = ?1")?
        .query_row([request as i64], |r| r.get(0))
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

pub(crate) fn store_spec(
    tx: &rusqlite::Connection,
    request: u64,
    spec: &ScoringSpec,
) -> Result<(), Error> {
    tx.prepare_cached("INSERT INTO scoring_requests (request_id, spec) VALUES (?1, ?2)")?
        .execute(params![request as i64, serde_json::to_string(spec)?])?;
    Ok(())
}

pub(crate) fn scoring_view(
    conn: &rusqlite::Connection,
    principal: &str,
    spec: &ScoringSpec,
    limits: &ScoringLimits,
) -> Result<ScoringView, Error> {
    let used = scoring_use(conn, principal, limits)?;
    Ok(ScoringView {
        attributes: spec.attributes.clone(),
        reveals: spec.reveal.describe(),
        to_whom: format!("{principal} and you (the FI's model stays with the FI)"),
        bits: spec.reveal.bits(),
        commitment: spec.commitment.clone(),
        runs_used: used.runs,
        runs_max: limits.max_runs,
        window_days: limits.window_days,
        bits_used: used.millibits as f64 / 1000.0,
    })
}

fn already_ran(request: u64, run: i64) -> Error {
    Error::Refused(format!(
        "request {request} already had its run ({run}); each scoring request allows one run: ask again"
    ))
}

/// A run the owner's store has admitted: counted, logged, with the owner's attribute values.
pub(crate) struct AdmittedRun {
    pub run: u64,
    pub spec: ScoringSpec,
    pub attrs: Vec<f64>,
    /// The run's lineage facts, computed at admission (what its release records).
    pub checked: Checked,
}

impl Owner {
    /// Admits one run of an approved scoring request: checks it is this principal's, approved, not run yet
    /// and within the `[scoring]` limits; computes the attribute values; counts the run and logs its start,
    /// in one transaction.
    pub(crate) fn begin_scoring_run(
        &mut self,
        principal: &str,
        request: u64,
    ) -> Result<AdmittedRun, Error> {
        let (policy, _) = self.policy()?;
        let limits = *policy.scoring_limits();
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT backend, state FROM requests WHERE id = ?1 AND principal = ?2",
                params![request as i64, principal],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => return Err(Error::NotFound(format!("request {request}"))),
            Some((b, _)) if b != "2pc" => {
                return Err(Error::Refused(format!(
                    "request {request} is not a scoring request"
                )))
            }
            Some((_, s)) if s != "approved" => {
                return Err(Error::Refused(format!(
                    "request {request} is {s}; a run needs an approved scoring request"
                )))
            }
            _ => {}
        }
        let spec = stored_spec(&self.conn, request)?
            .ok_or_else(|| Error::Internal(format!("scoring request {request} has no spec")))?;
        // One run per approved request (checked again inside the transaction below, against a race).
        let ran: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM scoring_runs WHERE request_id = ?1",
                [request as i64],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(run) = ran {
            return Err(already_ran(request, run));
        }
        // The policy as it is now: a run of a request approved earlier is refused if the policy now denies it.
        let checked = scoring_checked(self, &spec)?;
        if let Some((rule, reason)) = self.scoring_denied(principal, &checked, &spec)? {
            let tx = write_tx(&mut self.conn)?;
            append_log(
                &tx,
                "scoring-refused",
                Some(principal),
                &serde_json::json!({ "request": request, "rule": rule, "why": reason }),
            )?;
            tx.commit()?;
            return Err(if rule == "scoring-limit" {
                Error::Limit(reason)
            } else {
                Error::Refused(format!(
                    "the owner's policy now refuses this run (rule `{rule}`): {reason}"
                ))
            });
        }
        // The values, computed before the transaction. Whether each has a value is itself about the owner's
        // data, so a missing one is found out only by a counted run (below), never for free.
        let mut attrs = Vec::with_capacity(spec.attributes.len());
        let mut missing = None;
        for a in &spec.attributes {
            let checked = self.check(&Expr::Catalogue {
                name: a.clone(),
                window_end: None,
            })?;
            let v = match self.evaluate_now(&checked) {
                Ok(Answer::Scalar { value }) => value.as_f64(),
                _ => None,
            };
            match v {
                Some(v) => attrs.push(v),
                None => {
                    missing.get_or_insert_with(|| a.clone());
                    attrs.push(0.0);
                }
            }
        }
        let tx = write_tx(&mut self.conn)?;
        let ran: Option<i64> = tx
            .query_row(
                "SELECT id FROM scoring_runs WHERE request_id = ?1",
                [request as i64],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(run) = ran {
            return Err(already_ran(request, run));
        }
        let used = scoring_use(&tx, principal, &limits)?;
        if let Err(e) = limits.check(&used, spec.reveal) {
            append_log(
                &tx,
                "scoring-refused",
                Some(principal),
                &serde_json::json!({ "request": request, "why": e.to_string() }),
            )?;
            tx.commit()?;
            return Err(Error::Limit(e.to_string()));
        }
        tx.execute(
            "INSERT INTO scoring_runs (request_id, principal, started_at, millibits, state)
             VALUES (?1, ?2, ?3, ?4, 'started')",
            params![
                request as i64,
                principal,
                store::now_unix(),
                spec.reveal.millibits() as i64
            ],
        )?;
        let run = tx.last_insert_rowid() as u64;
        append_log(
            &tx,
            "scoring-start",
            Some(principal),
            &serde_json::json!({
                "request": request, "run": run, "attributes": spec.attributes,
                "reveal": spec.reveal, "bits": spec.reveal.bits(), "commitment": spec.commitment,
                "runs_in_window": used.runs + 1, "max_runs": limits.max_runs,
            }),
        )?;
        if let Some(a) = missing {
            // The FI learns only that some value is missing (at most a bit), and the run it used is counted.
            let why = format!("attribute `{a}` has no value on this node for its window");
            tx.execute(
                "UPDATE scoring_runs SET state = 'aborted', error = ?2, ended_at = ?3 WHERE id = ?1",
                params![run as i64, why, store::now_unix()],
            )?;
            append_log(
                &tx,
                "scoring-end",
                Some(principal),
                &serde_json::json!({ "request": request, "run": run, "aborted": why }),
            )?;
            tx.commit()?;
            return Err(Error::Refused(format!(
                "scoring run {run} could not start: one of the attributes has no value on the owner's node \
                 for its window (the run is counted)"
            )));
        }
        tx.commit()?;
        Ok(AdmittedRun {
            run,
            spec,
            attrs,
            checked,
        })
    }

    /// Records how a run ended: its outcome (stored as the request's answer, logged as a release, with a
    /// signed receipt) or why it aborted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_scoring_run(
        &mut self,
        principal: &str,
        request: u64,
        run: u64,
        checked: &Checked,
        result: Result<ScoreOutcome, String>,
        bytes: u64,
        millis: f64,
    ) -> Result<Option<crate::receipt::Receipt>, Error> {
        let signer = self.signer();
        let tx = write_tx(&mut self.conn)?;
        let now = store::now_unix();
        let receipt = match &result {
            Ok(outcome) => {
                tx.execute(
                    "UPDATE scoring_runs SET state = 'done', outcome = ?2, ended_at = ?3 WHERE id = ?1",
                    params![run as i64, serde_json::to_string(outcome)?, now],
                )?;
                append_log(
                    &tx,
                    "scoring-end",
                    Some(principal),
                    &serde_json::json!({ "request": request, "run": run, "outcome": outcome,
                        "bytes": bytes, "millis": millis }),
                )?;
                let answer = outcome.answer();
                tx.execute(
                    "UPDATE requests SET answer = ?2 WHERE id = ?1",
                    params![request as i64, serde_json::to_string(&answer)?],
                )?;
                Some(crate::release::record_release(
                    &tx,
                    &signer,
                    request,
                    principal,
                    duo_policies::Backend::TwoPc,
                    checked,
                    &answer,
                    0,
                )?)
            }
            _ => {
                let why = result.as_ref().err().cloned().unwrap_or_default();
                tx.execute(
                    "UPDATE scoring_runs SET state = 'aborted', error = ?2, ended_at = ?3 WHERE id = ?1",
                    params![run as i64, why, now],
                )?;
                append_log(
                    &tx,
                    "scoring-end",
                    Some(principal),
                    &serde_json::json!({ "request": request, "run": run, "aborted": why,
                        "bytes": bytes, "millis": millis }),
                )?;
                None
            }
        };
        tx.commit()?;
        Ok(receipt)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Driving a run over the session
// ---------------------------------------------------------------------------------------------------------

/// Why a run over the session ended without an output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The protocol failed (the peer misbehaved, or an input was refused).
    #[error("{0}")]
    Protocol(#[from] score::Error),
    /// The peer sent nothing for [`STEP_TIMEOUT`].
    #[error("no message from the peer for {0:?} while waiting for {1}")]
    Timeout(Duration, &'static str),
    /// The channel failed or closed.
    #[error("the channel failed: {0}")]
    Transport(#[from] TransportError),
    /// The peer sent a control message instead of a protocol message: it gave up.
    #[error("the peer ended the run: {0}")]
    PeerEnded(String),
    /// The owner revoked the FI's pairing (or it expired) during the run.
    #[error("the owner revoked or ended this FI's pairing during the run")]
    Revoked,
    /// A protocol chunk was malformed, or a message outgrew the run's limit.
    #[error("bad protocol chunk: {0}")]
    BadChunk(String),
}

/// Counters of one run on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBytes {
    /// Protocol bytes sent (chunk payloads, without the two-byte chunk header and channel overhead).
    pub sent: u64,
    /// Protocol bytes received.
    pub received: u64,
}

async fn send_msg<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    msg: &[u8],
    bytes: &mut RunBytes,
) -> Result<(), RunError> {
    let mut chunks = msg.chunks(CHUNK).peekable();
    let mut buf = Vec::with_capacity(CHUNK + 2);
    if msg.is_empty() {
        chan.send(&[CHUNK_MARK, 1]).await?;
    }
    while let Some(c) = chunks.next() {
        buf.clear();
        buf.push(CHUNK_MARK);
        buf.push(chunks.peek().is_none() as u8);
        buf.extend_from_slice(c);
        chan.send(&buf).await?;
    }
    bytes.sent += msg.len() as u64;
    Ok(())
}

/// Receives the next protocol message by `deadline`. Cancel-safe: the chunks received so far stay in `partial`.
async fn recv_msg<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    max: usize,
    waiting_for: &'static str,
    bytes: &mut RunBytes,
    partial: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, RunError> {
    let msg = partial;
    loop {
        let got = tokio::time::timeout_at(deadline, chan.recv())
            .await
            .map_err(|_| RunError::Timeout(STEP_TIMEOUT, waiting_for))??;
        let Some(payload) = got else {
            return Err(RunError::Transport(TransportError::Closed));
        };
        match payload.split_first() {
            Some((&CHUNK_MARK, rest)) => {
                let (&last, body) = rest
                    .split_first()
                    .ok_or_else(|| RunError::BadChunk("a chunk without its header".into()))?;
                if last > 1 {
                    return Err(RunError::BadChunk(format!("chunk flag {last}")));
                }
                if msg.len() + body.len() > max {
                    return Err(RunError::BadChunk(format!(
                        "a protocol message over {max} bytes, the limit for this run"
                    )));
                }
                msg.extend_from_slice(body);
                if last == 1 {
                    bytes.received += msg.len() as u64;
                    return Ok(std::mem::take(msg));
                }
            }
            _ => {
                let text = String::from_utf8_lossy(&payload);
                let why = serde_json::from_slice::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/body/message")
                            .or_else(|| v.pointer("/body/reason"))
                            .and_then(|m| m.as_str().map(str::to_string))
                    })
                    .unwrap_or_else(|| text.chars().take(200).collect());
                return Err(RunError::PeerEnded(crate::owner::sanitize(&why)));
            }
        }
    }
}

/// What ends a run from the owner's side while it is under way: the FI's pairing ending (revoked or expired).
/// `still_paired` is asked whenever the store changes and once more before the owner releases the output.
pub(crate) struct RunGuard<'a> {
    /// Store changes (a revocation is one).
    pub changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// Whether the FI is still paired.
    pub still_paired: &'a (dyn Fn() -> bool + Sync),
}

impl RunGuard<'_> {
    /// Returns when the store changed and the FI is no longer paired; never otherwise.
    async fn revoked(&mut self) {
        let Some(rx) = self.changes.as_mut() else {
            return std::future::pending().await;
        };
        while rx.changed().await.is_ok() {
            if !(self.still_paired)() {
                return;
            }
        }
        // The watcher is gone (the node is shutting down): nothing more to watch.
        std::future::pending().await
    }
}

/// The owner's side of a run that computed its output: the FI's output is still on this node.
pub(crate) struct OwnerDone {
    /// The output (the owner's copy).
    pub outcome: Outcome,
    /// The extension state, for a warm run in this session.
    pub ot: kos::Sender,
    /// Bytes so far.
    pub bytes: RunBytes,
    /// The last messages, which carry the FI's output: send them only once the release is recorded.
    pub release: Vec<Vec<u8>>,
}

/// Drives the owner's side of a run over the session up to, not including, the messages that carry the FI's
/// output ([`OwnerDone::release`]).
pub(crate) async fn drive_owner<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    params: &Params,
    attrs: &[f64],
    ot: Option<kos::Sender>,
    guard: &mut RunGuard<'_>,
) -> Result<OwnerDone, RunError> {
    let mut bytes = RunBytes::default();
    let max = params.max_message_bytes();
    let mut rng = StdRng::from_os_rng();
    let (mut run, out) = OwnerRun::start(params, attrs, ot, &mut rng)?;
    for m in &out {
        send_msg(chan, m, &mut bytes).await?;
    }
    let mut partial = Vec::new();
    loop {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let msg = tokio::select! {
            got = recv_msg(chan, max, run.waiting_for(), &mut bytes, &mut partial, deadline) => got?,
            _ = guard.revoked() => return Err(RunError::Revoked),
        };
        match run.handle(msg, &mut rng)? {
            OwnerStep::Continue(next, out) => {
                for m in &out {
                    send_msg(chan, m, &mut bytes).await?;
                }
                run = *next;
                run.work_ahead();
            }
            OwnerStep::Done { outcome, send, ot } => {
                if let (Outcome::Band(b), score::Reveal::Bands { k }) = (outcome, params.reveal) {
                    // Only FI thresholds out of order give a band past the last; never record one.
                    if b >= k {
                        return Err(RunError::BadChunk(format!(
                            "the circuit gave band {b} of {k}: the FI's band thresholds are not ascending"
                        )));
                    }
                }
                return Ok(OwnerDone {
                    outcome,
                    ot: *ot,
                    bytes,
                    release: send,
                });
            }
        }
    }
}

/// Drives the FI's side of a run over its session, calling `progress` with what it waits for.
pub(crate) async fn drive_fi<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    params: &Params,
    model: &FiModel,
    ot: Option<kos::Receiver>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(Outcome, kos::Receiver, RunBytes), RunError> {
    let mut bytes = RunBytes::default();
    let max = params.max_message_bytes();
    let mut rng = StdRng::from_os_rng();
    let (mut run, out) = FiRun::start(params, model, ot, &mut rng)?;
    for m in &out {
        send_msg(chan, m, &mut bytes).await?;
    }
    let mut partial = Vec::new();
    loop {
        progress(run.waiting_for());
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let msg = recv_msg(
            chan,
            max,
            run.waiting_for(),
            &mut bytes,
            &mut partial,
            deadline,
        )
        .await?;
        match run.handle(msg, &mut rng)? {
            FiStep::Continue(next, out) => {
                for m in &out {
                    send_msg(chan, m, &mut bytes).await?;
                }
                run = *next;
            }
            FiStep::Done { outcome, ot } => return Ok((outcome, ot, bytes)),
        }
    }
}

/// The owner's side of `ScoreRun`: admit, announce, run, record. Returns the reply to send when the run is
/// over (a [`ScoreDone`] or an error).
pub(crate) async fn owner_run<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    owner: &mut Option<Owner>,
    warm: &mut Option<kos::Sender>,
    principal: &str,
    id: u64,
    request: u64,
    mut guard: RunGuard<'_>,
) -> crate::wire::ServerMsg {
    use crate::wire::{self, ServerMsg};
    let who = principal.to_string();
    let admitted = crate::owner::blocking(owner, move |o| o.begin_scoring_run(&who, request)).await;
    let admitted = match admitted {
        Ok(Ok(a)) => a,
        Ok(Err(e)) | Err(e) => {
            return ServerMsg::Error {
                code: e.code().into(),
                message: e.to_string(),
            }
        }
    };
    let AdmittedRun {
        run,
        spec,
        attrs,
        checked,
    } = admitted;
    let params = Params {
        session: session_id(chan.handshake_hash(), request, run),
        bounds: spec.bounds(),
        reveal: spec.reveal,
    };
    let start = ServerMsg::ScoreStart(Box::new(ScoreStart {
        request,
        run,
        attributes: spec.attributes.clone(),
        reveal: spec.reveal,
        warm: warm.is_some(),
    }));
    let began = Instant::now();
    let result = match chan.send(&wire::encode(id, &start)).await {
        Ok(()) => drive_owner(chan, &params, &attrs, warm.take(), &mut guard).await,
        Err(e) => Err(RunError::Transport(e)),
    };
    // The release is recorded (outcome, log entries, receipt) before the message carrying the FI's output leaves,
    // and only for a principal still paired; anything else ends the run as aborted.
    let mut last_bytes = RunBytes::default();
    let result = match result {
        Ok(done) if !(guard.still_paired)() => {
            let _ = done;
            Err(RunError::Revoked.to_string())
        }
        Ok(done) => {
            *warm = Some(done.ot);
            last_bytes = done.bytes;
            Ok((
                ScoreOutcome::from_run(done.outcome, spec.reveal),
                done.release,
            ))
        }
        Err(e) => Err(e.to_string()),
    };
    let millis = began.elapsed().as_secs_f64() * 1e3;
    let recorded = result.as_ref().map(|(o, _)| *o).map_err(Clone::clone);
    let who = principal.to_string();
    let total = last_bytes.sent + last_bytes.received;
    let receipt = crate::owner::blocking(owner, move |o| {
        o.finish_scoring_run(&who, request, run, &checked, recorded, total, millis)
    })
    .await;
    match (result, receipt) {
        (Ok((outcome, release)), Ok(Ok(Some(receipt)))) => {
            for m in &release {
                if let Err(e) = send_msg(chan, m, &mut last_bytes).await {
                    return ServerMsg::Error {
                        code: "score_aborted".into(),
                        message: format!("scoring run {run}: the output could not be sent: {e}"),
                    };
                }
            }
            ServerMsg::ScoreDone(Box::new(ScoreDone {
                request,
                run,
                outcome,
                bits: spec.reveal.bits(),
                receipt,
            }))
        }
        (Err(why), _) => ServerMsg::Error {
            code: "score_aborted".into(),
            message: format!("scoring run {run} aborted: {why}"),
        },
        (Ok(_), Ok(Err(e)) | Err(e)) => ServerMsg::Error {
            code: "score_aborted".into(),
            message: format!("scoring run {run} aborted: its release could not be recorded: {e}"),
        },
        (Ok(_), Ok(Ok(None))) => ServerMsg::Error {
            code: "internal".into(),
            message: "the run finished without a receipt".into(),
        },
    }
}

// ---------------------------------------------------------------------------------------------------------
// Loopback runs for benchmarks
// ---------------------------------------------------------------------------------------------------------

/// One run of [`loopback_runs`], as the owner's side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoopbackRun {
    /// Whether the run included the base OTs.
    pub cold: bool,
    /// Milliseconds from the start of the run (its log write, if any) to the end (its log write, if any).
    pub millis: f64,
    /// Milliseconds of the protocol alone (first message to the last).
    pub protocol_millis: f64,
    /// Protocol bytes sent and received by the owner.
    pub bytes: u64,
}

/// Runs `runs` private scorings with `n` random attributes over a real loopback WebSocket and its Noise
/// session, both sides in this process: the first run cold, the rest warm, as in one FI session. With
/// `log_dir`, each run also commits its start and its end to a hash-chained log in a scratch owner store
/// there, with `sync` as the node would (the durable log write of a real run). For `duo bench`.
pub async fn loopback_runs(
    n: usize,
    reveal: score::Reveal,
    runs: usize,
    log_dir: Option<&std::path::Path>,
    sync: store::Sync,
) -> Result<Vec<LoopbackRun>, Error> {
    use crate::keys::{fingerprint, Keypair};
    use crate::transport::{self, Limits, Mode};
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(n as u64);
    let bounds: Vec<Bounds> = (0..n).map(|_| Bounds::new(-10.0, 10.0)).collect();
    let weights: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let attrs: Vec<f64> = (0..n).map(|_| rng.random_range(-10.0..10.0)).collect();
    let fixed =
        FixedModel::new(&bounds, &weights, 0.5, 0.0).map_err(|e| Error::Refused(e.to_string()))?;
    let bands: Vec<f64> = match reveal {
        score::Reveal::Bands { .. } => (0..reveal.thresholds()).map(|i| i as f64).collect(),
        _ => Vec::new(),
    };
    let model = FiModel::new(fixed, &bands).map_err(|e| Error::Refused(e.to_string()))?;
    let server_key = Keypair::generate();
    let client_key = Keypair::generate();
    let owner_fp = fingerprint(&server_key.public);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}", listener.local_addr()?);
    let limits = Limits::default();
    let conn = match log_dir {
        Some(dir) => Some(store::open(dir, sync)?),
        None => None,
    };
    let fi_bounds = bounds.clone();
    let fi_limits = limits.clone();
    let fi = tokio::spawn(async move {
        let mut chan = transport::connect(
            &url,
            &client_key,
            Mode::Session,
            None,
            &owner_fp,
            &fi_limits,
        )
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
        let mut warm = None;
        for run in 0..runs {
            let params = Params {
                session: session_id(chan.handshake_hash(), 0, run as u64),
                bounds: fi_bounds.clone(),
                reveal,
            };
            let (_, ot, _) = drive_fi(&mut chan, &params, &model, warm.take(), &mut |_| {})
                .await
                .map_err(|e| Error::Refused(e.to_string()))?;
            warm = Some(ot);
        }
        chan.close().await;
        Ok::<_, Error>(())
    });
    let (tcp, _) = listener.accept().await?;
    let _ = tcp.set_nodelay(true);
    let (mut chan, _) = transport::accept(
        tcp,
        &server_key,
        |_| None,
        |_| String::new(),
        |_, _| Ok(()),
        &limits,
    )
    .await
    .map_err(|e| Error::Transport(e.to_string()))?;
    let mut conn = conn;
    let mut log = |kind: &str, run: usize| -> Result<(), Error> {
        if let Some(c) = conn.as_mut() {
            let tx = write_tx(c)?;
            append_log(
                &tx,
                kind,
                Some("bench"),
                &serde_json::json!({ "run": run, "n": n }),
            )?;
            tx.commit()?;
        }
        Ok(())
    };
    let mut warm = None;
    let mut out = Vec::with_capacity(runs);
    for run in 0..runs {
        let began = Instant::now();
        log("scoring-start", run)?;
        let params = Params {
            session: session_id(chan.handshake_hash(), 0, run as u64),
            bounds: bounds.clone(),
            reveal,
        };
        let cold = warm.is_none();
        let p0 = Instant::now();
        let mut guard = RunGuard {
            changes: None,
            still_paired: &|| true,
        };
        let done = drive_owner(&mut chan, &params, &attrs, warm.take(), &mut guard)
            .await
            .map_err(|e| Error::Refused(e.to_string()))?;
        let (ot, mut bytes) = (done.ot, done.bytes);
        for m in &done.release {
            send_msg(&mut chan, m, &mut bytes)
                .await
                .map_err(|e| Error::Refused(e.to_string()))?;
        }
        let protocol_millis = p0.elapsed().as_secs_f64() * 1e3;
        log("scoring-end", run)?;
        warm = Some(ot);
        out.push(LoopbackRun {
            cold,
            millis: began.elapsed().as_secs_f64() * 1e3,
            protocol_millis,
            bytes: bytes.sent + bytes.received,
        });
    }
    // Close this end while the FI closes its own, so neither waits out the other's close grace.
    let (_, fi) = tokio::join!(chan.close(), fi);
    fi.map_err(|e| Error::Internal(format!("FI task: {e}")))??;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// The FI's model file
// ---------------------------------------------------------------------------------------------------------

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
    /// The decision is "the score reaches this".
    pub threshold: f64,
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
        for (what, v) in [("bias", m.bias), ("threshold", m.threshold)] {
            if !v.is_finite() {
                return Err(Error::Refused(format!(
                    "model file: {what} is not a finite number"
                )));
            }
        }
        if m.bands.iter().any(|b| !b.is_finite()) || m.bands.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Refused(
                "model file: bands must be finite and strictly ascending".into(),
            ));
        }
        Ok(m)
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
        let fixed = FixedModel::new(&bounds, &weights, self.bias, self.threshold)
            .map_err(|e| Error::Refused(format!("model refused: {e}")))?;
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
        assert_ne!(c, other.commitment(&salt));
        assert!(m.encode(Reveal::Decision).is_ok());
        assert!(m.encode(Reveal::Bands { k: 3 }).is_ok());
        let e = m.encode(Reveal::Bands { k: 4 }).unwrap_err().to_string();
        assert!(e.contains("needs 3 band thresholds"), "{e}");
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
        let huge = "bias = 0.0\nthreshold = 0.0\n[weights]\navg_daily_balance_3m = 1e12\n";
        let e = ModelFile::parse(huge)
            .unwrap()
            .encode(Reveal::Decision)
            .unwrap_err()
            .to_string();
        assert!(e.contains("headroom"), "{e}");
    }

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_runs_go_cold_then_warm_and_log_each_run() {
        let dir = tempfile::tempdir().unwrap();
        let runs = loopback_runs(
            8,
            score::Reveal::Decision,
            3,
            Some(dir.path()),
            store::Sync::Normal,
        )
        .await
        .unwrap();
        assert_eq!(runs.len(), 3);
        assert!(runs[0].cold && !runs[1].cold && !runs[2].cold);
        // Warm runs skip the base OTs: 32 bytes from the FI and 64 per base OT from the owner, at least.
        assert!(runs[0].bytes >= runs[1].bytes + 32 + 64 * 128);
        assert_eq!(runs[1].bytes, runs[2].bytes);
        let conn = store::open(dir.path(), store::Sync::Normal).unwrap();
        let kinds: Vec<String> = store::log_entries(&conn, 0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            ["scoring-start", "scoring-end"].repeat(3),
            "one durable start and end per run"
        );
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
