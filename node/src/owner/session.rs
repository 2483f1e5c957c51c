//! One FI's session: the handshake's look-ups, then one handler per kind of client message.

use super::release::Ask;
use super::service::{blocking, limit_error, log_limit, within_rate, SessionSlot, Shared, Shown};
use super::Owner;
use crate::error::Error;
use crate::net::gate::{Admission, PendingSlot};
use crate::net::keys::fingerprint;
use crate::net::transport::{self, Mode};
use crate::proto::{self as wire, sanitize, ClientMsg, PointerInfo, PublishedDataset, ServerMsg};
use crate::store::prelude::*;
use duo_engine::{render, Checked, Expr};
use duo_policies::Backend;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// One connection, from the handshake to the end of the session.
pub(crate) async fn session(
    tcp: TcpStream,
    _peer: SocketAddr,
    shared: Arc<Shared>,
    mut admission: Admission,
) {
    let _ = tcp.set_nodelay(true);
    let Some((mut chan, mode, _session_place)) = handshake(tcp, &shared, admission.slot()).await
    else {
        return;
    };
    let mut owner = Owner::open(&shared.cfg.owner_dir, shared.cfg.sync, shared.cache.clone())
        .ok()
        .map(|o| o.with_max_pending(shared.cfg.principal_limits.max_pending));
    if owner.is_none() {
        return;
    }
    let remote = chan.remote_static();
    let Some(principal) = authenticate(&mut chan, &mode, &mut owner).await else {
        chan.close().await;
        return;
    };
    let Some(_slot) = take_slot(&shared, &mut chan, &mut owner, &principal).await else {
        chan.close().await;
        return;
    };
    let _shown = Shown::connected(&shared, &principal, &mode);
    let welcome = ServerMsg::Welcome {
        principal: principal.clone(),
        node: format!("duo {}", env!("CARGO_PKG_VERSION")),
        signing_key: shared.signing_key.clone(),
    };
    if chan.send(&wire::encode(0, &welcome)).await.is_err() {
        return;
    }
    let mut state = SessionState {
        principal,
        remote,
        pointers: Vec::new(),
        viewed: Default::default(),
        owner,
        shared: shared.clone(),
    };
    serve(&mut chan, &mut state).await;
    chan.close().await;
}

type Chan = transport::SecureChannel<TcpStream>;

/// Why a key that a newer key replaced (a re-key) is refused a session (`unknown_key`).
const REPLACED_KEY: &str = "this FI key's pairing was replaced by a newer key (the owner re-keyed it): this key no \
     longer works, and the new key holds the pairing with its budgets and history; if you did not ask for this, \
     contact the owner";

/// The Noise handshake, with this node's few store look-ups (an invite's key, a paired key), and the session
/// place it takes on success. The connection holds its unauthenticated `slot` meanwhile, and stops (told `busy`)
/// if the node evicts it for a newer one.
async fn handshake(
    tcp: TcpStream,
    shared: &Shared,
    slot: Option<PendingSlot>,
) -> Option<(Chan, Mode, OwnedSemaphorePermit)> {
    let mut slot = slot?;
    let mut place = None;
    let db = &shared.handshake_db;
    let psk_for = |invite: &str| -> Option<[u8; 32]> {
        let mut c = db.lock().ok()?;
        c.begin_invite_attempt(invite).ok().flatten()
    };
    let invite_refusal = |invite: &str| -> String {
        db.lock()
            .ok()
            .and_then(|c| c.invite_refusal(invite).ok())
            .unwrap_or_else(|| "this invite cannot be used".into())
    };
    let verify = |mode: &Mode, key: &[u8; 32]| -> Result<(), (String, String)> {
        let verdict = verify_key(db, mode, key);
        if verdict.is_ok() {
            // Authenticated: a session place, never one an unauthenticated connection could hold.
            place = Some(shared.gate.session().ok_or_else(|| {
                (
                    transport::codes::BUSY.to_string(),
                    format!(
                        "the owner node is serving its maximum of {} sessions; try again in a moment",
                        shared.gate.limits().max_sessions
                    ),
                )
            })?);
        }
        verdict
    };
    // A wrong invite secret is counted (and the invite burned after its last attempt) before the FI is told,
    // so its next attempt already sees the invite's new state.
    let bad_psk = |invite: &str| {
        if let Ok(mut c) = db.lock() {
            let _ = c.invite_failed(invite, "wrong invite secret");
        }
    };
    let checks = transport::Checks {
        psk_for_invite: psk_for,
        invite_refusal,
        verify,
        bad_psk,
    };
    let accepted =
        transport::accept_evictable(tcp, &shared.key, checks, &shared.cfg.limits, slot.evicted())
            .await;
    drop(slot);
    match accepted {
        Ok((chan, mode)) => Some((chan, mode, place?)),
        Err(transport::AcceptError::Timeout(_)) => {
            shared.gate.timed_out();
            None
        }
        Err(_) => None,
    }
}

/// Whether a key may have a session (any key may pair: the invite's secret was checked by the handshake).
fn verify_key(
    db: &std::sync::Mutex<crate::store::Store>,
    mode: &Mode,
    key: &[u8; 32],
) -> Result<(), (String, String)> {
    match mode {
        Mode::Pair { .. } => Ok(()),
        Mode::Session => {
            let c = db
                .lock()
                .map_err(|_| ("internal".to_string(), "try again".to_string()))?;
            match c.principal_for_key(key) {
                    Ok(Some(_)) => Ok(()),
                    // The refusal travels in clear text: it says what happened to this key, and names neither
                    // the principal nor the new key.
                    Ok(None) if matches!(c.replaced_key(key), Ok(Some(_))) => Err((
                        "unknown_key".into(),
                        REPLACED_KEY.into(),
                    )),
                    Ok(None) => Err((
                        "unknown_key".into(),
                        "this FI key is not paired with this node, or its pairing expired; ask the owner for a new invite code".into(),
                    )),
                    Err(e @ Error::Integrity(_)) => Err((e.code().into(), e.to_string())),
                    Err(_) => Err(("internal".into(), "the node could not check the key".into())),
                }
        }
    }
}

/// Who the peer is: the principal its invite names (pairing it now), or the one its key is paired as.
async fn authenticate(chan: &mut Chan, mode: &Mode, owner: &mut Option<Owner>) -> Option<String> {
    let remote = chan.remote_static();
    match mode {
        Mode::Pair { invite } => {
            let invite = invite.clone();
            let fp = fingerprint(&remote);
            match blocking(owner, move |o| {
                o.store_mut().complete_pairing(&invite, &remote, &fp)
            })
            .await
            {
                Ok(Ok(p)) => Some(p),
                Ok(Err(e)) => {
                    let failed = ServerMsg::Error {
                        code: "pairing_failed".into(),
                        message: e.wire_message(),
                    };
                    let _ = chan.send(&wire::encode(0, &failed)).await;
                    None
                }
                Err(_) => None,
            }
        }
        Mode::Session => match blocking(owner, move |o| {
            let p = o.store().principal_for_key(&remote)?;
            if let Some(p) = &p {
                o.store().touch_pairing(p)?;
            }
            Ok::<_, Error>(p)
        })
        .await
        {
            Ok(Ok(p)) => p,
            _ => None,
        },
    }
}

/// One more session for this principal, within its limit; `None` (the FI told why) when over it.
async fn take_slot(
    shared: &Arc<Shared>,
    chan: &mut Chan,
    owner: &mut Option<Owner>,
    principal: &str,
) -> Option<SessionSlot> {
    let max = shared.cfg.principal_limits.max_sessions;
    let admitted = shared
        .with_use(principal, |u| {
            if u.sessions >= max {
                false
            } else {
                u.sessions += 1;
                true
            }
        })
        .unwrap_or(false);
    if admitted {
        return Some(SessionSlot {
            shared: shared.clone(),
            principal: principal.to_string(),
        });
    }
    log_limit(shared, owner, principal, "sessions").await;
    let msg =
        format!("this FI already has {max} sessions open, the limit; close one and try again");
    let refusal = ServerMsg::Error {
        code: "limit".into(),
        message: msg,
    };
    let _ = chan.send(&wire::encode(0, &refusal)).await;
    None
}

/// The session's loop: answer each message, and end the session when the FI goes quiet for too long or its
/// pairing ends. The pairing is checked on every store change (a revocation is one) and at least every 30 s (an
/// expiry is not); the idle timeout counts from the last message, whatever else happens on the node.
async fn serve(chan: &mut Chan, state: &mut SessionState) {
    let shared = state.shared.clone();
    let mut changes = shared.changes.clone();
    let mut recheck = tokio::time::interval(Duration::from_secs(30));
    recheck.tick().await;
    let mut last_message = tokio::time::Instant::now();
    loop {
        let bytes = tokio::select! {
            got = chan.recv() => match got {
                Ok(Some(b)) => Some(b),
                Ok(None) | Err(_) => break,
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                None
            }
            _ = recheck.tick() => None,
        };
        let Some(bytes) = bytes else {
            if last_message.elapsed() > shared.cfg.limits.idle_timeout
                || !state.still_paired(chan).await
            {
                break;
            }
            continue;
        };
        last_message = tokio::time::Instant::now();
        let Some((id, reply, ran)) = state.dispatch(chan, &bytes).await else {
            continue;
        };
        if ran {
            // A scoring run is one long exchange of messages: the idle time counts from its end.
            last_message = tokio::time::Instant::now();
        }
        fail::fail_point!("owner::before_send", |_| {});
        if chan.send(&state.encode_reply(id, &reply)).await.is_err() {
            break;
        }
    }
}

struct SessionState {
    principal: String,
    /// The FI's static key for this session.
    remote: [u8; 32],
    pointers: Vec<Checked>,
    /// What this session has viewed already (logged once per session, not once per message).
    viewed: std::collections::BTreeSet<&'static str>,
    owner: Option<Owner>,
    shared: Arc<Shared>,
}

/// An error as the FI is sent it: its code, and no text of the owner's (see [`Error::wire_message`]).
fn error_msg(e: &Error) -> ServerMsg {
    ServerMsg::Error {
        code: e.code().into(),
        message: e.wire_message(),
    }
}

impl SessionState {
    fn allow_view(&self) -> bool {
        let max = self.shared.cfg.principal_limits.views_per_hour;
        self.shared
            .with_use(&self.principal, |u| within_rate(&mut u.views, max))
            .unwrap_or(false)
    }

    /// Decode one message and answer it: the id, the reply, and whether it was a scoring run. `None` when it
    /// needs no answer.
    async fn dispatch(&mut self, chan: &mut Chan, bytes: &[u8]) -> Option<(u64, ServerMsg, bool)> {
        match wire::decode_client(bytes) {
            Ok((
                id,
                ClientMsg::ScoreRun {
                    request, resume, ..
                },
            )) => Some((id, self.score_run(chan, id, request, resume).await, true)),
            Ok((id, ClientMsg::OtPrepare { base })) => {
                Some((id, self.ot_prepare(chan, id, &base).await, false))
            }
            // A `score_abort` outside a run (it arrived after its run ended): answered like any message. Its id
            // is the run's, which was answered already, so a client skips this late reply (spec, section 7.5).
            Ok((id, ClientMsg::ScoreAbort { .. })) => Some((
                id,
                ServerMsg::Error {
                    code: "no_run".into(),
                    message: "no scoring run with this id is in progress; it had ended already"
                        .into(),
                },
                false,
            )),
            Ok((id, msg)) => Some((id, self.handle(msg).await, false)),
            Err(e) => Some((
                e.id,
                ServerMsg::Error {
                    code: e.code.into(),
                    message: e.message,
                },
                false,
            )),
        }
    }

    /// A reply as sent: refused as too large if it is over the session's message limit.
    fn encode_reply(&self, id: u64, reply: &ServerMsg) -> Vec<u8> {
        let max = self.shared.cfg.limits.max_message;
        let bytes = wire::encode(id, reply);
        if bytes.len() <= max {
            return bytes;
        }
        wire::encode(
            id,
            &ServerMsg::Error {
                code: "too_large".into(),
                message: format!(
                    "the reply is {} bytes, over this session's limit of {max}; ask for an aggregate instead",
                    bytes.len()
                ),
            },
        )
    }

    /// Whether the FI is still paired; if not, it is told the session is closed.
    async fn still_paired(&mut self, chan: &mut Chan) -> bool {
        let remote = self.remote;
        let still = blocking(&mut self.owner, move |o| {
            let p = o.store().principal_for_key(&remote)?;
            let replaced = p.is_none() && o.store().replaced_key(&remote)?.is_some();
            Ok::<_, Error>((p, replaced))
        })
        .await;
        if matches!(still, Ok(Ok((Some(ref p), _))) if *p == self.principal) {
            return true;
        }
        let message = if matches!(still, Ok(Ok((_, true)))) {
            "the owner re-keyed this pairing: a newer key replaced this one, which no longer works; the session \
             is closed"
        } else {
            "the owner revoked or ended this pairing; the session is closed"
        };
        let bye = ServerMsg::Error {
            code: "revoked".into(),
            message: message.into(),
        };
        let _ = chan.send(&wire::encode(0, &bye)).await;
        false
    }

    /// `ot_prepare`: the base OTs of later scoring runs, made now (counted against the hourly rate of requests,
    /// as they cost the node public-key work). The node's side of the new state replaces any it kept for this
    /// FI; nothing is revealed, so nothing is logged.
    async fn ot_prepare(&mut self, chan: &mut Chan, id: u64, base: &str) -> ServerMsg {
        use duo_protocols::ot::{kos, msgs::BaseSenderMsg};
        if let Ok(Some(refusal)) = self.admit_request("").await {
            return refusal;
        }
        let refused = |message: &str| ServerMsg::Error {
            code: "malformed".into(),
            message: message.into(),
        };
        let Some(msg) =
            crate::proto::digest::unhex(base).and_then(|b| BaseSenderMsg::from_bytes(&b).ok())
        else {
            return refused("`base` is not a base-OT sender message in hex");
        };
        let sid = crate::proto::scoring::prepare_session_id(chan.handshake_hash(), id);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let (setup, reply) = match kos::Sender::setup(sid, &mut rng) {
            Ok(x) => x,
            Err(e) => return error_msg(&Error::Internal(e.to_string())),
        };
        let ot = setup.finish(&msg);
        let state = crate::store::OtAtRest {
            id: crate::proto::scoring::ot_state_id(&sid),
            next_index: ot.next_index(),
            state: ot.to_rest(),
        };
        let (principal, remote) = (self.principal.clone(), self.remote);
        let kept = blocking(&mut self.owner, move |o| {
            use crate::store::prelude::*;
            // Only for a pairing still in force (a revocation may have committed since the session began).
            let tx = o.store_mut().write()?;
            if tx.principal_for_key(&remote)?.as_deref() != Some(principal.as_str()) {
                return Ok(false);
            }
            tx.put_ot_state(&principal, &state)?;
            tx.commit()?;
            Ok::<_, Error>(true)
        })
        .await;
        match kept {
            Ok(Ok(true)) => ServerMsg::OtPrepared {
                base: crate::proto::digest::hex(&reply.to_bytes()),
            },
            Ok(Ok(false)) => ServerMsg::Error {
                code: "revoked".into(),
                message: "the owner revoked or ended this pairing".into(),
            },
            Ok(Err(e)) | Err(e) => error_msg(&e),
        }
    }

    /// A scoring run: admitted like a request (it counts against the hourly rate), then driven over the
    /// session until its outcome is recorded.
    async fn score_run(
        &mut self,
        chan: &mut Chan,
        id: u64,
        request: u64,
        resume: Option<crate::proto::scoring::OtResume>,
    ) -> ServerMsg {
        if let Ok(Some(refusal)) = self.admit_request("").await {
            return refusal;
        }
        let (who, db, remote) = (
            self.principal.clone(),
            &self.shared.handshake_db,
            self.remote,
        );
        let still_paired = move || {
            db.lock()
                .ok()
                .is_some_and(|c| matches!(c.principal_for_key(&remote), Ok(Some(p)) if p == who))
        };
        let guard = super::scoring::RunGuard {
            changes: Some(self.shared.changes.clone()),
            still_paired: &still_paired,
        };
        super::scoring::owner_run(
            chan,
            &mut self.owner,
            resume,
            &self.principal,
            id,
            request,
            guard,
        )
        .await
    }

    /// Answer one message (an error is an answer too; the session goes on).
    async fn handle(&mut self, msg: ClientMsg) -> ServerMsg {
        let what = msg.type_name();
        let reply = match msg {
            ClientMsg::ListDatasets {} => self.list_datasets().await,
            ClientMsg::ListCatalogue {} => self.list_catalogue().await,
            ClientMsg::Pointer { expr } => self.pointer(expr).await,
            ClientMsg::Cost { pointer, dp } => self.cost(pointer, dp).await,
            ClientMsg::Request {
                pointer,
                backend,
                reason,
                dp,
            } => self.request(pointer, backend, reason, dp).await,
            ClientMsg::Score { scoring, reason } => self.score(scoring, reason).await,
            ClientMsg::ScoreRun { .. }
            | ClientMsg::ScoreAbort { .. }
            | ClientMsg::OtPrepare { .. } => Err(Error::Internal(
                "a scoring run and its base OTs are driven by the session loop".into(),
            )),
            ClientMsg::Status { request, wait_ms } => self.status(request, wait_ms).await,
        };
        match reply {
            Ok(reply) => reply,
            Err(e) => self.refused(what, &e).await,
        }
    }

    /// The reply to a message that failed: a refused request or scoring request is logged (with the owner's
    /// detail), and an error on the owner's side is shown to the owner; the FI is sent only the code and, for
    /// errors on the owner's side, a generic sentence ([`Error::wire_message`]).
    async fn refused(&mut self, what: &'static str, e: &Error) -> ServerMsg {
        let owner_side = e.is_owner_side();
        // A store that no longer matches its log is the owner's to know about too.
        if owner_side || matches!(e, Error::Integrity(_)) {
            eprintln!(
                "duo: a `{what}` from {} failed on this node: {e}",
                sanitize(&self.principal)
            );
        }
        if owner_side || matches!(what, "request" | "score") {
            let principal = self.principal.clone();
            let body =
                serde_json::json!({ "message": what, "code": e.code(), "detail": e.to_string() });
            let logged = blocking(&mut self.owner, move |o| {
                let tx = o.store_mut().write()?;
                tx.append_log("request_refused", Some(&principal), &body)?;
                tx.commit()
            })
            .await;
            if !matches!(logged, Ok(Ok(()))) {
                eprintln!("duo: could not log the refusal of a `{what}`");
            }
        }
        error_msg(e)
    }

    /// Whether one more metadata view fits this hour; logs the limit when not.
    async fn view_allowed(&mut self) -> bool {
        if self.allow_view() {
            return true;
        }
        let principal = self.principal.clone();
        log_limit(&self.shared, &mut self.owner, &principal, "views").await;
        false
    }

    /// The pointer with this id in this session.
    fn pointer_at(&self, pointer: u64) -> Result<&Checked, Error> {
        usize::try_from(pointer)
            .ok()
            .and_then(|i| self.pointers.get(i))
            .ok_or_else(|| Error::NotFound(format!("pointer {pointer} in this session")))
    }

    /// The checks every new request passes first: the principal's hourly request rate and the reason's
    /// length. `Some(reply)` when over the rate (logged at most once a minute).
    async fn admit_request(&mut self, reason: &str) -> Result<Option<ServerMsg>, Error> {
        let principal = self.principal.clone();
        let max = self.shared.cfg.principal_limits.requests_per_hour;
        if !self
            .shared
            .with_use(&principal, |u| within_rate(&mut u.requests, max))
            .unwrap_or(false)
        {
            log_limit(&self.shared, &mut self.owner, &principal, "requests").await;
            return Ok(Some(limit_error("too many requests this hour")));
        }
        if reason.len() > wire::MAX_REASON {
            return Err(Error::Refused(format!(
                "the reason is longer than {} bytes",
                wire::MAX_REASON
            )));
        }
        Ok(None)
    }

    /// `list_datasets`: the published metadata (logged once per session).
    async fn list_datasets(&mut self) -> Result<ServerMsg, Error> {
        if !self.view_allowed().await {
            return Ok(limit_error("too many metadata views this hour"));
        }
        let first = self.viewed.insert("datasets");
        let principal = self.principal.clone();
        blocking(&mut self.owner, move |o| {
            let rows = o.store().datasets()?;
            if first {
                let tx = o.store_mut().write()?;
                tx.append_log(
                    "metadata_viewed",
                    Some(&principal),
                    &serde_json::json!({ "what": "datasets", "datasets": rows.iter().map(|r| (&r.meta.name, r.version)).collect::<Vec<_>>() }),
                )?;
                tx.commit()?;
            }
            Ok(ServerMsg::Datasets {
                datasets: rows
                    .into_iter()
                    .map(|r| PublishedDataset {
                        meta: r.meta,
                        version: r.version,
                    })
                    .collect(),
            })
        })
        .await?
    }

    /// `list_catalogue`: the catalogue of attributes (logged once per session).
    async fn list_catalogue(&mut self) -> Result<ServerMsg, Error> {
        if !self.view_allowed().await {
            return Ok(limit_error("too many metadata views this hour"));
        }
        let first = self.viewed.insert("catalogue");
        let principal = self.principal.clone();
        blocking(&mut self.owner, move |o| {
            if first {
                let tx = o.store_mut().write()?;
                tx.append_log(
                    "metadata_viewed",
                    Some(&principal),
                    &serde_json::json!({ "what": "catalogue" }),
                )?;
                tx.commit()?;
            }
            Ok(ServerMsg::Catalogue {
                entries: duo_engine::catalogue::entries()
                    .iter()
                    .map(duo_engine::catalogue::CatalogueInfo::from)
                    .collect(),
            })
        })
        .await?
    }

    /// `pointer`: type-check an expression over this session's pointers and keep it.
    async fn pointer(&mut self, expr: Expr) -> Result<ServerMsg, Error> {
        if self.pointers.len() >= self.shared.cfg.max_pointers {
            return Ok(ServerMsg::Error {
                code: "quota".into(),
                message: format!(
                    "this session already holds {} pointers, the limit; open a new session",
                    self.pointers.len()
                ),
            });
        }
        // Refuse before expanding: a message made of many references to a large pointer would otherwise
        // multiply into a huge tree. The expanded size is known from the stored pointers.
        let mut refs = Vec::new();
        collect_ptrs(&expr, &mut refs);
        let mut expanded = expr.node_count();
        for id in &refs {
            expanded = expanded.saturating_add(self.pointer_at(*id)?.nodes.saturating_sub(1));
        }
        let limit = duo_engine::Limits::default().max_nodes;
        if expanded > limit {
            return Err(Error::Check(duo_engine::CheckError::TooLarge {
                nodes: expanded,
                limit,
            }));
        }
        let pointers = &self.pointers;
        let expr = expr
            .substitute_ptrs(&|id| {
                usize::try_from(id)
                    .ok()
                    .and_then(|i| pointers.get(i))
                    .map(|c| c.expr.clone())
            })
            .ok_or_else(|| Error::Internal("pointer vanished".into()))?;
        let checked = blocking(&mut self.owner, move |o| o.check(&expr)).await??;
        let info = PointerInfo {
            id: self.pointers.len() as u64,
            ty: checked.ty.clone(),
            description: render::describe(&checked.expr),
        };
        self.pointers.push(checked);
        Ok(ServerMsg::Pointer(info))
    }

    /// `cost`: what a DP release of a pointer would cost and how accurate it would be.
    async fn cost(
        &mut self,
        pointer: u64,
        dp: crate::proto::request::DpParams,
    ) -> Result<ServerMsg, Error> {
        let checked = self.pointer_at(pointer)?.clone();
        blocking(&mut self.owner, move |o| -> Result<ServerMsg, Error> {
            fail::fail_point!("owner::cost_preview");
            let (plan, measure) = o.dp_plan(&checked, &dp)?;
            Ok(ServerMsg::Cost {
                cost: plan.cost.map(|c| c.to_string()).unwrap_or_default(),
                measure,
                accuracy95: plan.accuracy95,
                items: plan.items(),
                mechanism: plan.mechanism.unwrap_or_default(),
            })
        })
        .await?
    }

    /// `request`: ask for the release of a pointer.
    async fn request(
        &mut self,
        pointer: u64,
        backend: Backend,
        reason: String,
        dp: Option<crate::proto::request::DpParams>,
    ) -> Result<ServerMsg, Error> {
        if let Some(refusal) = self.admit_request(&reason).await? {
            return Ok(refusal);
        }
        let expr: Expr = self.pointer_at(pointer)?.expr.clone();
        // What the owner reads is the checked lineage written out by the node, never text from the FI.
        let source = duo_engine::parse::to_source(&expr);
        let reason = sanitize(&reason);
        let principal = self.principal.clone();
        // Sessions of this node take turns at the store's write lock here, so they queue without SQLite's
        // sleeping busy handler; other processes (owner commands) still get the lock fairly.
        let _turn = self.shared.write_turn.lock().await;
        let view = blocking(&mut self.owner, move |o| {
            let checked = o.check(&expr)?;
            o.submit(&Ask {
                principal: &principal,
                backend,
                reason: &reason,
                source: &source,
                checked: &checked,
                dp: dp.as_ref(),
                scoring: None,
            })
        })
        .await??;
        self.shared.show_request(&self.principal, &view);
        Ok(ServerMsg::Request(Box::new(view)))
    }

    /// `score`: ask to score the FI's private model against the owner's attributes.
    async fn score(
        &mut self,
        scoring: crate::proto::scoring::ScoringSpec,
        reason: String,
    ) -> Result<ServerMsg, Error> {
        if let Some(refusal) = self.admit_request(&reason).await? {
            return Ok(refusal);
        }
        let reason = sanitize(&reason);
        let principal = self.principal.clone();
        let _turn = self.shared.write_turn.lock().await;
        let view = blocking(&mut self.owner, move |o| {
            let checked = super::scoring::scoring_checked(o, &scoring)?;
            let source = format!(
                "score [{}] reveal {} commitment {}",
                scoring.attributes.join(", "),
                scoring.reveal,
                scoring.commitment
            );
            o.submit(&Ask {
                principal: &principal,
                backend: Backend::TwoPc,
                reason: &reason,
                source: &source,
                checked: &checked,
                dp: None,
                scoring: Some(&scoring),
            })
        })
        .await??;
        self.shared.show_request(&self.principal, &view);
        Ok(ServerMsg::Request(Box::new(view)))
    }

    /// `status`: the state of an earlier request, waiting up to `wait_ms` for a decision.
    async fn status(&mut self, request: u64, wait_ms: u64) -> Result<ServerMsg, Error> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(wire::MAX_WAIT_MS));
        let mut changes = self.shared.changes.clone();
        let (remote, principal) = (self.remote, self.principal.clone());
        loop {
            changes.borrow_and_update();
            let p = principal.clone();
            // A wait ends early if the pairing was revoked meanwhile.
            let (view, still) = blocking(&mut self.owner, move |o| {
                let still = o.store().principal_for_key(&remote)?;
                Ok::<_, Error>((o.request_view(&p, request)?, still))
            })
            .await??;
            if still.as_deref() != Some(principal.as_str()) {
                return Err(Error::Refused(
                    "the owner revoked or ended this pairing".into(),
                ));
            }
            if view.state != crate::proto::request::RequestState::Pending
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(ServerMsg::Request(Box::new(view)));
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return Ok(ServerMsg::Request(Box::new(view))) },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Every pointer reference in an expression.
fn collect_ptrs(expr: &Expr, out: &mut Vec<u64>) {
    if let Expr::Ptr { id } = expr {
        out.push(*id);
    }
    for c in expr.children() {
        collect_ptrs(c, out);
    }
}
