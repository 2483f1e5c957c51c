//! Private scoring (backend `2pc`) on the owner's side: a scoring request goes the way of every request (the
//! FI names the attributes its model uses, what the run reveals and a salted commitment to its model, with a
//! reason; the policy or the owner decides; the log records it). What differs is the release: an approved
//! scoring request lets the FI start **one run** ([`crate::proto::ClientMsg::ScoreRun`]). The run is counted
//! against the principal's `[scoring]` limits when it starts, whether it completes or aborts, and what it
//! reveals is counted in bits (a decision 1 bit, `k` bands `log2 k`, a raw score 64). A timeout, a closed channel
//! or a protocol error ends the run on both sides and is logged (`scoring-end` with the error).

use super::backend;
use super::view::ScoringView;
use super::Owner;
use crate::error::Error;
use crate::net::run::{recv_msg, send_msg, RunBytes, RunError};
use crate::net::transport::SecureChannel;
use crate::proto::receipt::Receipt;
use crate::proto::scoring::{
    ot_state_id, session_id, OtResume, ScoreDone, ScoreOutcome, ScoreStart, ScoringSpec,
    STEP_TIMEOUT,
};
use crate::proto::{self as wire, ServerMsg};
use crate::store::prelude::*;
use crate::store::{Conn, OtAtRest, Tx};
use duo_engine::{Answer, Checked, Expr};
use duo_policies::{RequestFacts, Reveal, ScoringFacts, ScoringLimits};
use duo_protocols::ot::kos;
use duo_protocols::score::{self, Outcome, OwnerRun, OwnerStep, Params};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

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
            Reveal::Decision | Reveal::DecisionReasons { .. } => duo_engine::DataType::Bool,
            Reveal::Bands { .. } => duo_engine::DataType::I64,
            Reveal::Score => duo_engine::DataType::F64,
        },
        bounds: None,
    };
    Ok(m)
}

/// Seconds since the epoch at which the `[scoring]` window starts now.
fn window_start(limits: &ScoringLimits) -> i64 {
    crate::store::now_unix() - limits.window_seconds()
}

/// What private scoring has revealed to each FI within the policy's window: runs started and bits, by
/// principal (for the owner's budget screen).
pub fn scoring_usage(
    owner: &Owner,
    limits: &ScoringLimits,
) -> Result<Vec<(String, duo_policies::ScoringUse)>, Error> {
    owner.store().scoring_usage(window_start(limits))
}

/// What the owner sees of a scoring request before deciding.
pub(crate) fn scoring_view(
    conn: &dyn Conn,
    principal: &str,
    spec: &ScoringSpec,
    limits: &ScoringLimits,
) -> Result<ScoringView, Error> {
    let used = conn.scoring_use(principal, window_start(limits))?;
    Ok(ScoringView {
        attributes: spec.attributes.clone(),
        reveals: spec.reveal.describe(),
        to_whom: format!("{principal} and you (the FI's model stays with the FI)"),
        bits: spec.reveal.bits(spec.attributes.len()),
        commitment: spec.commitment.clone(),
        runs_used: used.runs,
        runs_max: limits.max_runs,
        window_days: limits.window_days,
        bits_used: used.millibits as f64 / 1000.0,
    })
}

fn already_ran(request: u64, run: u64) -> Error {
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
    /// This principal's OT-extension state at rest, taken out of the store with the run's start.
    pub saved: Option<crate::store::OtAtRest>,
}

impl Owner {
    /// Whether the policy, as it is now, refuses a scoring run of an approved request about to start: the
    /// request decided again from scratch, as the owner's approval re-checks it, with its own approval left
    /// out of the `rate` counts (it was counted when it was approved, and is not a second release). A deny,
    /// whether from a rule, the backend, the `[scoring]` limits or a reveal no rule now lists, refuses the
    /// run; an ask does not, since the request was already approved.
    fn scoring_denied(
        &self,
        principal: &str,
        request: u64,
        checked: &Checked,
        spec: &ScoringSpec,
    ) -> Result<Option<(String, String)>, Error> {
        let (policy, _) = self.policy()?;
        let tags = super::tags_with(&self.cache, &self.store, checked)?;
        let counts = super::release::rate_counts(&self.store, &policy, principal, Some(request))?;
        let used = self
            .store
            .scoring_use(principal, window_start(policy.scoring_limits()))?;
        let facts = RequestFacts {
            now: Some(chrono::Local::now().naive_local()),
            available_backends: backend::AVAILABLE,
            rate_counts: Some(&counts),
            scoring: Some(ScoringFacts {
                reveal: spec.reveal,
                used,
                attributes: spec.attributes.len(),
            }),
            ..RequestFacts::new(principal, duo_policies::Backend::TwoPc, checked, &tags)
        };
        Ok(match duo_policies::decide(&policy, &facts) {
            duo_policies::Decision::Deny { rule, reason } => Some((rule, reason)),
            duo_policies::Decision::Approve { .. } | duo_policies::Decision::Ask { .. } => None,
        })
    }

    /// The approved, not yet run scoring request `request` of `principal`, with its spec.
    fn approved_scoring(&self, principal: &str, request: u64) -> Result<ScoringSpec, Error> {
        let row = self
            .store
            .request(request, Some(principal))?
            .ok_or_else(|| Error::NotFound(format!("request {request}")))?;
        if row.backend != duo_policies::Backend::TwoPc {
            return Err(Error::Refused(format!(
                "request {request} is not a scoring request"
            )));
        }
        if row.state != crate::proto::request::RequestState::Approved {
            return Err(Error::Refused(format!(
                "request {request} is {}; a run needs an approved scoring request",
                row.state.as_str()
            )));
        }
        let spec = self
            .store
            .scoring_spec(request)?
            .ok_or_else(|| Error::Internal(format!("scoring request {request} has no spec")))?;
        // One run per approved request (checked again inside the admitting transaction, against a race).
        if let Some(run) = self.store.run_of(request)? {
            return Err(already_ran(request, run));
        }
        Ok(spec)
    }

    /// The owner's attribute values for a run, and the first attribute without one. Whether each has a value
    /// is itself about the owner's data, so a missing one is found out only by a counted run, never for free.
    fn attribute_values(&self, spec: &ScoringSpec) -> Result<(Vec<f64>, Option<String>), Error> {
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
        Ok((attrs, missing))
    }

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
        let spec = self.approved_scoring(principal, request)?;
        // The policy as it is now: a run of a request approved earlier is refused if the policy now denies it.
        let checked = scoring_checked(self, &spec)?;
        if let Some((rule, reason)) = self.scoring_denied(principal, request, &checked, &spec)? {
            let tx = self.store.write()?;
            tx.append_log(
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
        let (attrs, missing) = self.attribute_values(&spec)?;
        let tx = self.store.write()?;
        if let Some(run) = tx.run_of(request)? {
            return Err(already_ran(request, run));
        }
        let used = tx.scoring_use(principal, window_start(&limits))?;
        if let Err(e) = limits.check(&used, spec.reveal, spec.attributes.len()) {
            tx.append_log(
                "scoring-refused",
                Some(principal),
                &serde_json::json!({ "request": request, "why": e.to_string() }),
            )?;
            tx.commit()?;
            return Err(Error::Limit(e.to_string()));
        }
        let n = spec.attributes.len();
        let run = tx.start_run(request, principal, spec.reveal.millibits(n))?;
        // Out of the store before the run can use it: whatever happens to the run, this state is never
        // extended twice (a run that finishes puts back its successor).
        let saved = tx.take_ot_state(principal)?;
        tx.append_log(
            "scoring-start",
            Some(principal),
            &serde_json::json!({
                "request": request, "run": run, "attributes": spec.attributes,
                "reveal": spec.reveal, "bits": spec.reveal.bits(n), "commitment": spec.commitment,
                "runs_in_window": used.runs + 1, "max_runs": limits.max_runs,
            }),
        )?;
        if let Some(a) = missing {
            abort_missing(tx, principal, request, run, &a)?;
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
            saved,
        })
    }

    /// Records how a run ended: its outcome (stored as the request's answer, logged as a release, with a
    /// signed receipt, and the OT-extension state the run left kept for the next one) or why it aborted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_scoring_run(
        &mut self,
        principal: &str,
        request: u64,
        run: u64,
        checked: &Checked,
        result: Result<ScoreOutcome, String>,
        next_ot: Option<&OtAtRest>,
        bytes: u64,
        millis: f64,
    ) -> Result<Option<Receipt>, Error> {
        let signer = self.signer.clone();
        let tx = self.store.write()?;
        let receipt = match &result {
            Ok(outcome) => {
                // Kept only for a principal still paired: a revocation that committed during the run removed
                // its state, and none comes back.
                if let (Some(next), Some(_)) = (next_ot, tx.current_pairing(principal)?) {
                    tx.put_ot_state(principal, next)?;
                }
                tx.run_done(run, outcome)?;
                tx.append_log(
                    "scoring-end",
                    Some(principal),
                    &serde_json::json!({ "request": request, "run": run, "outcome": outcome,
                        "bytes": bytes, "millis": millis }),
                )?;
                let answer = outcome.answer();
                tx.set_answer(request, &serde_json::to_string(&answer)?)?;
                Some(super::release::record_release(
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
            Err(why) => {
                tx.run_aborted(run, why)?;
                tx.append_log(
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

/// A run whose attribute has no value: counted, aborted and logged naming the attribute. The FI learns only
/// that some value is missing (at most a bit), and the run it used is counted.
fn abort_missing(
    tx: Tx<'_>,
    principal: &str,
    request: u64,
    run: u64,
    attribute: &str,
) -> Result<(), Error> {
    let why = format!("attribute `{attribute}` has no value on this node for its window");
    tx.run_aborted(run, &why)?;
    tx.append_log(
        "scoring-end",
        Some(principal),
        &serde_json::json!({ "request": request, "run": run, "aborted": why }),
    )?;
    tx.commit()
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

/// When the FI's next message is due: [`STEP_TIMEOUT`] after the node last sent something (or after the run's
/// start). Messages the FI sends without waiting for an answer (the parts of its matrix) do not move it, so a
/// FI trickling small parts cannot hold a run longer than one step.
fn next_deadline(
    current: Option<tokio::time::Instant>,
    sent: bool,
    now: tokio::time::Instant,
) -> tokio::time::Instant {
    match current {
        Some(at) if !sent => at,
        _ => now + STEP_TIMEOUT,
    }
}

/// Drives the owner's side of a run over the session up to, not including, the messages that carry the FI's
/// output ([`OwnerDone::release`]).
pub(crate) async fn drive_owner<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    params: &Params,
    attrs: &[f64],
    ot: Option<kos::Sender>,
    guard: &mut RunGuard<'_>,
    principal: &str,
) -> Result<OwnerDone, RunError> {
    let mut bytes = RunBytes::default();
    let max = params.max_message_bytes();
    let mut rng = StdRng::from_os_rng();
    let (mut run, out) = OwnerRun::start(params, attrs, ot, &mut rng)?;
    for m in &out {
        send_msg(chan, m, &mut bytes).await?;
    }
    let mut partial = Vec::new();
    let mut deadline = next_deadline(None, true, tokio::time::Instant::now());
    loop {
        let msg = tokio::select! {
            got = recv_msg(chan, max, run.waiting_for(), &mut bytes, &mut partial, deadline) => got?,
            _ = guard.revoked() => return Err(RunError::Revoked),
        };
        match run.handle(msg, &mut rng)? {
            OwnerStep::Continue(next, out) => {
                deadline =
                    next_deadline(Some(deadline), !out.is_empty(), tokio::time::Instant::now());
                for mut m in out {
                    corrupt_for_tests(principal, &mut m);
                    send_msg(chan, &m, &mut bytes).await?;
                }
                run = *next;
                run.work_ahead();
            }
            OwnerStep::Done { outcome, send, ot } => {
                check_band(outcome, params.reveal)?;
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

/// Tests only (the `failpoints` feature): with the failpoint `scoring::corrupt-fi-labels` set to
/// `return(PRINCIPAL)`, this node hands that FI wrong input labels, as a modified owner node would; the FI must
/// abort before it returns an output label.
#[allow(unused_variables)]
fn corrupt_for_tests(principal: &str, msg: &mut [u8]) {
    fail::fail_point!("scoring::corrupt-fi-labels", |arg: Option<String>| {
        if arg.as_deref() == Some(principal) && msg.last() == Some(&(score::Tag::Labels as u8)) {
            let n = msg.len() - 1;
            msg[..n].iter_mut().for_each(|b| *b ^= 0x5a);
        }
    });
}

/// The sender a state at rest continues, with the state's id, when the FI named that state at the same index
/// (anything else, including a state that does not read back, starts from new base OTs).
fn resumed(saved: Option<OtAtRest>, resume: Option<&OtResume>) -> Option<(kos::Sender, String)> {
    let (saved, resume) = (saved?, resume?);
    if saved.id != resume.id || saved.next_index != resume.next_index {
        return None;
    }
    let ot = kos::Sender::from_rest(&saved.state).ok()?;
    (ot.next_index() == saved.next_index).then_some((ot, saved.id))
}

/// A band past the last comes only from FI thresholds out of order: never recorded nor released.
fn check_band(outcome: Outcome, reveal: score::Reveal) -> Result<(), RunError> {
    match (outcome, reveal) {
        (Outcome::Band(b), score::Reveal::Bands { k }) if b >= k => Err(RunError::Withheld(
            format!("the circuit gave band {b} of {k}: the FI's band thresholds are not ascending"),
        )),
        _ => Ok(()),
    }
}

/// The FI's copy of an aborted run: the code `score_aborted`, the run and a generic reason
/// ([`RunError::wire_reason`]); the detail is in the owner's log (`scoring-end`) only.
fn aborted(run: u64, e: &RunError) -> ServerMsg {
    ServerMsg::Error {
        code: "score_aborted".into(),
        message: format!(
            "scoring run {run} aborted: {} (the run is counted; the owner's log has the detail)",
            e.wire_reason()
        ),
    }
}

/// The owner's side of `ScoreRun`: admit, announce, run, record. Returns the reply to send when the run is
/// over (a [`ScoreDone`] or an error).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn owner_run<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    owner: &mut Option<Owner>,
    resume: Option<OtResume>,
    principal: &str,
    id: u64,
    request: u64,
    mut guard: RunGuard<'_>,
) -> ServerMsg {
    // `request` is the FI's own number for it (on the wire and in the run's session id); the store knows the
    // request by the node's id.
    let who = principal.to_string();
    let admitted = super::service::blocking(owner, move |o| {
        let id = o
            .store()
            .request_by_fi(&who, request)?
            .ok_or_else(|| Error::NotFound(format!("request {request}")))?;
        // A run starts only on an approval the log recorded.
        crate::store::integrity::check_request(o.store(), id)?;
        o.begin_scoring_run(&who, id).map(|a| (id, a))
    })
    .await;
    let (node_request, admitted) = match admitted {
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
        saved,
    } = admitted;
    let params = Params {
        session: session_id(chan.handshake_hash(), request, run),
        bounds: spec.bounds(),
        reveal: spec.reveal,
    };
    // Continue the state at rest only if the FI names the same one, at the same index; otherwise both sides
    // start from new base OTs, and the run's state gets this run's id.
    let (ot, ot_id) = match resumed(saved, resume.as_ref()) {
        Some((ot, ot_id)) => (Some(ot), ot_id),
        None => (None, ot_state_id(&params.session)),
    };
    let start = ServerMsg::ScoreStart(Box::new(ScoreStart {
        request,
        run,
        attributes: spec.attributes.clone(),
        reveal: spec.reveal,
        warm: ot.is_some(),
    }));
    let began = Instant::now();
    let result = match chan.send(&wire::encode(id, &start)).await {
        Ok(()) => drive_owner(chan, &params, &attrs, ot, &mut guard, principal).await,
        Err(e) => Err(RunError::Transport(e)),
    };
    // The release is recorded (outcome, log entries, receipt) before the message carrying the FI's output leaves,
    // and only for a principal still paired; anything else ends the run as aborted.
    let mut last_bytes = RunBytes::default();
    let result = match result {
        Ok(done) if !(guard.still_paired)() => {
            let _ = done;
            Err(RunError::Revoked)
        }
        Ok(done) => {
            last_bytes = done.bytes;
            Ok((
                ScoreOutcome::from_run(done.outcome, spec.reveal, &spec.attributes),
                done.release,
                done.ot,
            ))
        }
        Err(e) => Err(e),
    };
    let millis = began.elapsed().as_secs_f64() * 1e3;
    let recorded = result
        .as_ref()
        .map(|(o, _, _)| o.clone())
        .map_err(|e| e.to_string());
    let who = principal.to_string();
    let total = last_bytes.sent + last_bytes.received;
    // The state a finished run leaves, to keep for the next run with this FI.
    let next = result.as_ref().ok().map(|(_, _, ot)| OtAtRest {
        id: ot_id.clone(),
        next_index: ot.next_index(),
        state: ot.to_rest(),
    });
    let receipt = super::service::blocking(owner, move |o| {
        o.finish_scoring_run(
            &who,
            node_request,
            run,
            &checked,
            recorded,
            next.as_ref(),
            total,
            millis,
        )
    })
    .await;
    match (result, receipt) {
        (Ok((outcome, release, _)), Ok(Ok(Some(receipt)))) => {
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
                bits: spec.reveal.bits(spec.attributes.len()),
                receipt,
            }))
        }
        (Err(e), _) => aborted(run, &e),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A state at rest is continued only when the FI names the same state at the same index and it reads
    /// back; anything else starts from new base OTs.
    #[test]
    fn only_the_state_the_fi_names_at_its_index_is_continued() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let keys: Vec<duo_protocols::block::Block> = (0..kos::BASE_OTS)
            .map(|_| duo_protocols::block::Block::random(&mut rng))
            .collect();
        let ot =
            kos::Sender::from_base(duo_protocols::block::Block::random(&mut rng), &keys).unwrap();
        let saved = || OtAtRest {
            id: "a".repeat(64),
            next_index: 0,
            state: ot.to_rest(),
        };
        let named = |id: &str, next_index| OtResume {
            id: id.into(),
            next_index,
        };
        let a = "a".repeat(64);
        assert!(resumed(Some(saved()), Some(&named(&a, 0))).is_some());
        assert!(resumed(Some(saved()), Some(&named(&"b".repeat(64), 0))).is_none());
        assert!(resumed(Some(saved()), Some(&named(&a, 7))).is_none());
        assert!(resumed(None, Some(&named(&a, 0))).is_none());
        assert!(resumed(Some(saved()), None).is_none());
        let mut edited = saved();
        edited.state.truncate(100);
        assert!(resumed(Some(edited), Some(&named(&a, 0))).is_none());
        // The row's index must be the state's own.
        let mut moved = saved();
        moved.next_index = 7;
        assert!(resumed(Some(moved), Some(&named(&a, 7))).is_none());
    }

    /// Issue 10, item 8: the owner withholds a band past the last, and the FI's copy of the abort does not
    /// carry it (it was a release with no receipt); the owner's record keeps the detail.
    #[test]
    fn an_abort_tells_the_fi_nothing_of_the_output() {
        let k3 = score::Reveal::Bands { k: 3 };
        assert!(check_band(Outcome::Band(2), k3).is_ok());
        assert!(check_band(Outcome::Decision(true), score::Reveal::Decision).is_ok());
        let e = check_band(Outcome::Band(3), k3).unwrap_err();
        assert!(e.to_string().contains("band 3 of 3"), "{e}");
        let ServerMsg::Error { code, message } = aborted(17, &e) else {
            panic!("not an error reply");
        };
        assert_eq!(code, "score_aborted");
        assert!(
            !message.contains("band") && !message.contains("3 of 3"),
            "the FI was told: {message}"
        );
        assert!(message.contains("scoring run 17 aborted"), "{message}");
    }

    #[test]
    fn matrix_parts_do_not_move_the_step_deadline() {
        let t0 = tokio::time::Instant::now();
        let first = next_deadline(None, true, t0);
        assert_eq!(first, t0 + STEP_TIMEOUT);
        // A part arrives 29 s later and the node sends nothing back: the deadline stays.
        let later = t0 + std::time::Duration::from_secs(29);
        assert_eq!(next_deadline(Some(first), false, later), first);
        // Once the node answers (the challenge), the FI has a whole step again.
        assert_eq!(
            next_deadline(Some(first), true, later),
            later + STEP_TIMEOUT
        );
    }
}
