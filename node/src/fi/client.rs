//! The FI client: pairing, sessions, and pointers to the owner's data.
//!
//! Pointers are lazy. Every method that makes a pointer sends the operation to the owner's node, which
//! type-checks it against the published metadata and extends the lineage; nothing is computed and nothing
//! data-dependent comes back. Only [`Client::request`] asks for a release, which the owner's policy (or the owner)
//! decides.

use crate::error::Error;
use crate::fi::home::{AskedScoring, FiHome, PairingRecord, ScoreAbortRecord, ScoreRunRecord};
use crate::fi::model::ModelFile;
use crate::fi::run::drive_fi;
use crate::net::keys::{fingerprint, InviteCode, Keypair};
use crate::net::run::{RunBytes, RunError};
use crate::net::transport::{self, Limits, Mode, SecureChannel};
use crate::proto::digest::{hex, unhex};
use crate::proto::receipt::Receipt;
use crate::proto::request::{DpParams, RequestState, RequestView};
use crate::proto::scoring::{
    ot_state_id, prepare_session_id, session_id, OtResume, ScoreOutcome, ScoreStart, ScoringSpec,
};
use crate::proto::{self as wire, ClientMsg, PointerInfo, PublishedDataset, ServerMsg};
use duo_engine::catalogue::CatalogueInfo;
use duo_engine::{AggKind, ArithOp, CmpOp, Expr, Pred, Type, Value};
use duo_policies::{Backend, Reveal};
use duo_protocols::ot::kos;
use duo_protocols::score::Params;
use serde::{Deserialize, Serialize};

use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

/// A pointer to an object on the owner's node: an id and static facts, never data.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    /// Pointer id in this session.
    pub id: u64,
    /// Static type.
    pub ty: Type,
    /// The lineage in plain words.
    pub description: String,
}

impl From<PointerInfo> for Pointer {
    fn from(p: PointerInfo) -> Self {
        Pointer {
            id: p.id,
            ty: p.ty,
            description: p.description,
        }
    }
}

fn ptr(p: &Pointer) -> Box<Expr> {
    Box::new(Expr::Ptr { id: p.id })
}

/// A session with an owner node.
pub struct Client {
    chan: SecureChannel<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    principal: String,
    /// The node's receipt-signing key: pinned at pairing, or as announced in this session.
    signing_key: String,
    /// Where verified receipts are kept (the FI home and the pairing's name), when connected through one.
    keep: Option<(FiHome, String)>,
    /// The OT-extension state of this session's last scoring run, with its id, when there is no FI home to
    /// keep it in (with one, it is kept there between runs and sessions: [`FiHome::take_ot_state`]).
    warm: Option<(kos::Receiver, String)>,
    /// This FI's own limit on scoring runs against this owner.
    score_limit: ScoreLimit,
    /// Runs started in this session (counted here when there is no FI home to count them in).
    runs_here: Vec<i64>,
    /// A run of this session that the owner's messages failed after this FI's inputs entered the circuit
    /// (kept here when there is no FI home to keep it in).
    aborted_here: Option<ScoreAbortRecord>,
    /// The scoring requests this session made, with their commitments' salts (also kept in the FI home).
    asked: Vec<AskedScoring>,
}

/// The FI's own limit on scoring runs per applicant: an owner who controls its inputs could probe the model, so
/// the FI caps how often one owner may run it. Runs count per applicant, the name the FI paired the owner node
/// under (and per owner key), not per key alone: an owner can make new keys at will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreLimit {
    /// Runs per window against one applicant.
    pub max_runs: u32,
    /// The window, in days.
    pub window_days: u32,
}

impl Default for ScoreLimit {
    fn default() -> Self {
        ScoreLimit {
            max_runs: 5,
            window_days: 30,
        }
    }
}

/// What a scoring run gave the FI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// The scoring request.
    pub request: u64,
    /// The run.
    pub run: u64,
    /// The attributes the model used.
    pub attributes: Vec<String>,
    /// What the run revealed (to both sides).
    pub reveal: Reveal,
    /// The outcome.
    pub outcome: ScoreOutcome,
    /// The reasons of a decline with reasons, worst first, each with its plain-language phrase from the
    /// catalogue (empty otherwise).
    #[serde(default)]
    pub reasons: Vec<ScoreReason>,
    /// Bits revealed.
    pub bits: f64,
    /// The model commitment shown to the owner (when this call made the request).
    pub commitment: Option<String>,
    /// Protocol bytes sent and received.
    pub bytes: RunBytes,
    /// Whether the run included the base OTs (the first run of a session).
    pub cold: bool,
    /// Milliseconds from the run request to the owner's receipt.
    pub millis: f64,
    /// The node's signed receipt.
    pub receipt: Receipt,
}

/// One reason of a decline: the attribute and what it means for the applicant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreReason {
    /// The catalogue attribute.
    pub attribute: String,
    /// The catalogue's plain-language reason ("rent paid late in the last 12 months").
    pub reason: String,
}

impl ScoreReason {
    /// The reasons of an outcome, in order, with their phrases.
    pub fn of(outcome: &ScoreOutcome) -> Vec<ScoreReason> {
        outcome
            .reasons()
            .iter()
            .map(|a| ScoreReason {
                attribute: a.clone(),
                reason: crate::proto::scoring::reason_words(a),
            })
            .collect()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// Pair with an owner node using an invite code, and remember the pairing under `name`.
pub async fn pair(
    home: &FiHome,
    url: &str,
    code: &str,
    name: &str,
) -> Result<PairingRecord, Error> {
    let code = InviteCode::parse(code).map_err(|e| Error::Refused(format!("invite code: {e}")))?;
    let key = home.key()?;
    let mode = Mode::Pair {
        invite: code.id.clone(),
    };
    let chan = transport::connect(
        url,
        &key,
        mode,
        Some(code.psk()),
        &code.fingerprint,
        &Limits::default(),
    )
    .await
    .map_err(|e| Error::Transport(e.to_string()))?;
    let client = Client::start(chan, None).await?;
    let rec = PairingRecord {
        name: name.to_string(),
        url: url.to_string(),
        fingerprint: code.fingerprint.clone(),
        principal: client.principal.clone(),
        paired_at: crate::proto::now_text(),
        signing_key: Some(client.signing_key.clone()),
        last_seen: Some(crate::proto::now_text()),
    };
    home.save(rec.clone())?;
    client.close().await;
    // The base OTs of scoring runs, made now so the first run does not wait for them; a node that does not
    // take part (or any failure here) only leaves that work to the first run.
    if let Ok(mut session) = Client::connect(home, Some(name)).await {
        let _ = session.prepare_ot().await;
        session.close().await;
    }
    Ok(rec)
}

/// The pairing already kept under `name` with another owner node than the one `code` invites to, if any:
/// pairing with the code under that name would replace it (checked before the code is used, so a refusal costs
/// the invite nothing).
pub fn pairing_conflict(
    home: &FiHome,
    code: &str,
    name: &str,
) -> Result<Option<PairingRecord>, Error> {
    let owner_key = InviteCode::parse(code)
        .map_err(|e| Error::Refused(format!("invite code: {e}")))?
        .fingerprint;
    Ok(home
        .pairings()?
        .into_iter()
        .find(|p| p.name == name && p.fingerprint != owner_key))
}

/// How many times a session is tried again when the owner node says it is busy.
const BUSY_RETRIES: u32 = 2;

/// Open a session's transport, trying again [`BUSY_RETRIES`] times, after a short random pause (about 0.2 s,
/// then 0.6 s), when the owner node says it is busy; its last answer otherwise.
async fn connect_session(
    url: &str,
    key: &Keypair,
    owner_fingerprint: &str,
) -> Result<SecureChannel<MaybeTlsStream<TcpStream>>, Error> {
    let mut pause = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        let limits = Limits::default();
        match transport::connect(url, key, Mode::Session, None, owner_fingerprint, &limits).await {
            Err(transport::TransportError::Busy(_)) if tries < BUSY_RETRIES => {
                tries += 1;
                let jitter = rand::random::<u64>() % (pause.as_millis() as u64 / 2 + 1);
                tokio::time::sleep(pause + Duration::from_millis(jitter)).await;
                pause *= 3;
            }
            other => return other.map_err(|e| Error::Transport(e.to_string())),
        }
    }
}

impl Client {
    /// Open a session with a paired owner node (`name` as in [`FiHome::pairing`]).
    pub async fn connect(home: &FiHome, name: Option<&str>) -> Result<Client, Error> {
        let rec = home.pairing(name)?;
        let key = home.key()?;
        let chan = connect_session(&rec.url, &key, &rec.fingerprint).await?;
        let client = Self::start(chan, Some((home.clone(), rec.name.clone()))).await?;
        if let Some(pinned) = &rec.signing_key {
            if !pinned.eq_ignore_ascii_case(&client.signing_key) {
                return Err(Error::Refused(
                    "the owner node announced a different receipt-signing key than the one pinned at pairing"
                        .into(),
                ));
            }
        }
        home.touch(&rec.name)?;
        Ok(client)
    }

    /// Open a session with explicit keys.
    pub async fn connect_with(
        url: &str,
        key: &Keypair,
        owner_fingerprint: &str,
    ) -> Result<Client, Error> {
        let chan = connect_session(url, key, owner_fingerprint).await?;
        Self::start(chan, None).await
    }

    async fn start(
        mut chan: SecureChannel<MaybeTlsStream<TcpStream>>,
        keep: Option<(FiHome, String)>,
    ) -> Result<Client, Error> {
        let bytes = chan
            .recv()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?
            .ok_or_else(|| Error::Transport("the owner node closed the session".into()))?;
        match wire::decode_server(&bytes)? {
            (
                _,
                ServerMsg::Welcome {
                    principal,
                    signing_key,
                    ..
                },
            ) => Ok(Client {
                chan,
                next_id: 1,
                principal,
                signing_key,
                keep,
                warm: None,
                score_limit: ScoreLimit::default(),
                runs_here: Vec::new(),
                aborted_here: None,
                asked: Vec::new(),
            }),
            (_, ServerMsg::Error { code, message }) => Err(Error::Remote { code, message }),
            (_, other) => Err(Error::Transport(format!(
                "unexpected first message from the owner node: {other:?}"
            ))),
        }
    }

    /// The principal name the owner gave this FI.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Send one message and wait for its reply; an `error` reply becomes [`Error::Remote`].
    pub async fn call(&mut self, msg: &ClientMsg) -> Result<ServerMsg, Error> {
        let id = self.next_id;
        self.next_id += 1;
        self.chan
            .send(&wire::encode(id, msg))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        match self.recv_reply(id).await? {
            ServerMsg::Error { code, message } => Err(Error::Remote { code, message }),
            other => Ok(other),
        }
    }

    /// The published metadata of the owner's datasets.
    pub async fn datasets(&mut self) -> Result<Vec<PublishedDataset>, Error> {
        match self.call(&ClientMsg::ListDatasets {}).await? {
            ServerMsg::Datasets { datasets } => Ok(datasets),
            other => Err(unexpected(other)),
        }
    }

    /// The catalogue of attributes.
    pub async fn catalogue(&mut self) -> Result<Vec<CatalogueInfo>, Error> {
        match self.call(&ClientMsg::ListCatalogue {}).await? {
            ServerMsg::Catalogue { entries } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Make a pointer from an expression (which may refer to this session's pointers).
    pub async fn pointer(&mut self, expr: Expr) -> Result<Pointer, Error> {
        match self.call(&ClientMsg::Pointer { expr }).await? {
            ServerMsg::Pointer(p) => Ok(p.into()),
            other => Err(unexpected(other)),
        }
    }

    /// Parse an expression in the syntax of [`duo_engine::parse`] and make a pointer from it.
    pub async fn expr(&mut self, src: &str) -> Result<Pointer, Error> {
        let expr = duo_engine::parse::parse_expr(src)
            .map_err(|e| Error::Refused(format!("expression:\n{}", e.render(src))))?;
        self.pointer(expr).await
    }

    /// A pointer to a whole dataset.
    pub async fn dataset(&mut self, name: &str) -> Result<Pointer, Error> {
        self.pointer(Expr::Dataset { name: name.into() }).await
    }

    /// A pointer to a catalogue attribute over the window ending at the last full month.
    pub async fn attribute(&mut self, name: &str) -> Result<Pointer, Error> {
        self.pointer(Expr::Catalogue {
            name: name.into(),
            window_end: None,
        })
        .await
    }

    /// One column of a table pointer.
    pub async fn column(&mut self, table: &Pointer, name: &str) -> Result<Pointer, Error> {
        let e = Expr::Column {
            input: ptr(table),
            name: name.into(),
        };
        self.pointer(e).await
    }

    /// The rows of a table pointer that satisfy a predicate.
    pub async fn filter(&mut self, table: &Pointer, pred: Pred) -> Result<Pointer, Error> {
        let e = Expr::Filter {
            input: ptr(table),
            pred,
        };
        self.pointer(e).await
    }

    /// The rows of a table pointer where `column == value`.
    pub async fn filter_eq(
        &mut self,
        table: &Pointer,
        column: &str,
        value: Value,
    ) -> Result<Pointer, Error> {
        let pred = Pred::Compare {
            column: column.into(),
            op: CmpOp::Eq,
            value,
        };
        self.filter(table, pred).await
    }

    /// The rows of a table pointer in the last `months` full months.
    pub async fn last_months(&mut self, table: &Pointer, months: u32) -> Result<Pointer, Error> {
        let pred = Pred::LastMonths {
            months,
            column: None,
        };
        self.filter(table, pred).await
    }

    /// Clamp a numeric pointer into `[lo, hi]`.
    pub async fn clamp(&mut self, p: &Pointer, lo: f64, hi: f64) -> Result<Pointer, Error> {
        let e = Expr::Clamp {
            input: ptr(p),
            lo,
            hi,
        };
        self.pointer(e).await
    }

    /// Arithmetic between two pointers.
    pub async fn arith(&mut self, op: ArithOp, a: &Pointer, b: &Pointer) -> Result<Pointer, Error> {
        let e = Expr::Arith {
            op,
            left: ptr(a),
            right: ptr(b),
        };
        self.pointer(e).await
    }

    /// An aggregate of a pointer.
    pub async fn aggregate(&mut self, kind: AggKind, p: &Pointer) -> Result<Pointer, Error> {
        let e = Expr::Aggregate {
            kind,
            input: ptr(p),
        };
        self.pointer(e).await
    }

    /// Mean of a pointer.
    pub async fn mean(&mut self, p: &Pointer) -> Result<Pointer, Error> {
        self.aggregate(AggKind::Mean, p).await
    }

    /// Sum of a pointer.
    pub async fn sum(&mut self, p: &Pointer) -> Result<Pointer, Error> {
        self.aggregate(AggKind::Sum, p).await
    }

    /// Count of a pointer.
    pub async fn count(&mut self, p: &Pointer) -> Result<Pointer, Error> {
        self.aggregate(AggKind::Count, p).await
    }

    /// Ask for the release of a pointer through a backend, with a reason. The reply says whether it was
    /// approved (with the answer), denied (with the reason) or is waiting for the owner.
    pub async fn request(
        &mut self,
        p: &Pointer,
        backend: Backend,
        reason: &str,
    ) -> Result<RequestView, Error> {
        self.request_with(p, backend, reason, None).await
    }

    /// Ask for a differentially private release of a pointer, spending what `params` says (an epsilon, a rho,
    /// or a target accuracy).
    pub async fn request_dp(
        &mut self,
        p: &Pointer,
        params: DpParams,
        reason: &str,
    ) -> Result<RequestView, Error> {
        self.request_with(p, Backend::Dp, reason, Some(params))
            .await
    }

    /// Preview a DP release's cost and expected error without asking for it (nothing is charged).
    pub async fn cost(&mut self, p: &Pointer, params: DpParams) -> Result<ServerMsg, Error> {
        match self
            .call(&ClientMsg::Cost {
                pointer: p.id,
                dp: params,
            })
            .await?
        {
            m @ ServerMsg::Cost { .. } => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    async fn request_with(
        &mut self,
        p: &Pointer,
        backend: Backend,
        reason: &str,
        dp: Option<DpParams>,
    ) -> Result<RequestView, Error> {
        let msg = ClientMsg::Request {
            pointer: p.id,
            backend,
            reason: reason.into(),
            dp,
        };
        match self.call(&msg).await? {
            ServerMsg::Request(v) => self.checked_view(*v),
            other => Err(unexpected(other)),
        }
    }

    /// Verify the receipt of an approved answer against the node's signing key, and keep it.
    fn checked_view(&self, v: RequestView) -> Result<RequestView, Error> {
        // An approved scoring request releases nothing until its run: no answer, no receipt yet.
        let scoring_not_run =
            v.backend == Backend::TwoPc && v.answer.is_none() && v.receipt.is_none();
        if v.state == RequestState::Approved && !scoring_not_run {
            let receipt = v.receipt.as_ref().ok_or_else(|| {
                Error::Refused(format!(
                    "request {}: the answer came without a receipt",
                    v.id
                ))
            })?;
            receipt.verify(Some(&self.signing_key))?;
            // Both were written by the node from the same answer; compare them parsed the same way.
            let signed_answer: Option<duo_engine::Answer> =
                serde_json::from_str(&receipt.answer).ok();
            if receipt.request != v.id
                || receipt.principal != self.principal
                || receipt.backend != v.backend.name()
                || signed_answer != v.answer
            {
                return Err(Error::Refused(format!(
                    "request {}: the receipt does not match the answer it came with",
                    v.id
                )));
            }
            if let Some((home, name)) = &self.keep {
                home.keep_receipt(name, receipt)?;
            }
        }
        if let Some((home, name)) = &self.keep {
            home.keep_request(name, &v)?;
        }
        Ok(v)
    }

    /// The state of a request, waiting up to `wait` for a decision.
    pub async fn status(&mut self, request: u64, wait: Duration) -> Result<RequestView, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = ClientMsg::Status {
                request,
                wait_ms: (left.as_millis() as u64).min(wire::MAX_WAIT_MS),
            };
            let view = match self.call(&msg).await? {
                ServerMsg::Request(v) => self.checked_view(*v)?,
                other => return Err(unexpected(other)),
            };
            if view.state != RequestState::Pending || tokio::time::Instant::now() >= deadline {
                return Ok(view);
            }
        }
    }

    /// Set this FI's limit on scoring runs against this owner (default 5 per 30 days).
    pub fn set_score_limit(&mut self, limit: ScoreLimit) {
        self.score_limit = limit;
    }

    /// Ask to score `model` privately, revealing `reveal`, without running it: the owner's reply (approved,
    /// denied, or waiting for the owner). The commitment's opening and what was asked are kept, so that
    /// [`Client::score_run`] can run it once approved (this session or a later one from the same FI home).
    pub async fn ask_score(
        &mut self,
        model: &ModelFile,
        reveal: Reveal,
        reason: &str,
    ) -> Result<RequestView, Error> {
        // Everything that can be refused locally is, before the owner hears of it.
        model.encode(reveal)?;
        self.check_score_limit()?;
        let mut salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        let commitment = model.commitment(&salt);
        if let Some((home, _)) = &self.keep {
            home.keep_model_opening(&commitment, &salt, model)?;
        }
        let spec = ScoringSpec {
            attributes: model.attributes(),
            reveal,
            commitment: commitment.clone(),
        };
        let view = match self
            .call(&ClientMsg::Score {
                scoring: spec.clone(),
                reason: reason.into(),
            })
            .await?
        {
            ServerMsg::Request(v) => *v,
            other => return Err(unexpected(other)),
        };
        let asked = AskedScoring {
            owner: self.owner_key(),
            request: view.id,
            spec,
            salt: hex(&salt),
        };
        if let Some((home, _)) = &self.keep {
            home.keep_asked_scoring(asked.clone())?;
        }
        self.asked.push(asked);
        Ok(view)
    }

    /// Ask to score `model` privately against the owner's attributes, revealing `reveal`, and run it once
    /// approved (waiting up to `wait` for the owner). The model never leaves this process in the clear: the
    /// owner sees the attributes it uses, what the run reveals and a salted commitment, whose opening is kept
    /// in the FI home (`models/COMMITMENT.json`) for an auditor.
    pub async fn score(
        &mut self,
        model: &ModelFile,
        reveal: Reveal,
        reason: &str,
        wait: Duration,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ScoreReport, Error> {
        progress("asking the owner");
        let view = self.ask_score(model, reveal, reason).await?;
        let view = if view.state == RequestState::Pending {
            progress("waiting for the owner's decision");
            self.status(view.id, wait).await?
        } else {
            view
        };
        match view.state {
            RequestState::Approved => self.score_run(view.id, model, progress).await,
            RequestState::Denied => Err(Error::Refused(format!(
                "scoring request {} was denied: {}",
                view.id,
                view.why.unwrap_or_default()
            ))),
            RequestState::Pending => Err(Error::Pending(view.id)),
        }
    }

    /// Run an approved scoring request (one run per request).
    pub async fn score_run(
        &mut self,
        request: u64,
        model: &ModelFile,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ScoreReport, Error> {
        // The run must be of exactly the committed model, revealing what the request said.
        let asked = self.asked_scoring(request)?;
        let salt: [u8; 32] = unhex(&asked.salt)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Internal(format!("request {request}: a bad salt on record")))?;
        if model.commitment(&salt) != asked.spec.commitment {
            return Err(Error::Refused(format!(
                "this model is not the one request {request} committed to (commitment {}); run it with that model file",
                asked.spec.commitment
            )));
        }
        self.check_score_limit()?;
        let began = std::time::Instant::now();
        let (id, start, held) = self.start_run(request).await?;
        // Counted once the owner started it, as the owner counts it (a refusal costs nothing).
        self.record_score_run()?;
        let fi_model = if start.attributes != asked.spec.attributes
            || start.reveal != asked.spec.reveal
        {
            Err(Error::Refused(format!(
                "the owner started a run of [{}] revealing {}, but request {request} asked for [{}] revealing {}",
                start.attributes.join(", "),
                start.reveal,
                asked.spec.attributes.join(", "),
                asked.spec.reveal
            )))
        } else {
            model.encode(start.reveal)
        };
        let fi_model = match fi_model {
            Ok(m) => m,
            Err(e) => {
                // The run has started on the owner's side: end it there too.
                // A generic reason: the local error may quote the model's numbers.
                self.abort_run(id, "the FI could not run its model for this request")
                    .await;
                return Err(e);
            }
        };
        // The node starts from new base OTs unless it holds the same state: so must this side.
        let held = held.filter(|_| start.warm);
        let params = Params {
            session: session_id(self.chan.handshake_hash(), request, start.run),
            bounds: fi_model.model().bounds().to_vec(),
            reveal: start.reveal,
        };
        let cold = held.is_none();
        let (held, ot_id) = match held {
            Some((ot, ot_id)) => (Some(ot), ot_id),
            None => (None, ot_state_id(&params.session)),
        };
        let (outcome, ot, bytes) = match drive_fi(
            &mut self.chan,
            &params,
            &fi_model,
            held,
            progress,
        )
        .await
        {
            Ok(x) => x,
            Err(e) => {
                let why = e.to_string();
                let flagged = matches!(&e, RunError::Protocol(p) if p.after_fi_inputs());
                if flagged {
                    // Kept before anything else can fail: this owner is scored no more unchecked.
                    self.flag_abort(request, start.run, &why)?;
                }
                // The owner's account of the run is still to come unless the owner already ended it (its
                // error was the message read) or the channel is gone: ask it to end and read its reply.
                if !matches!(e, RunError::PeerEnded(_) | RunError::Transport(_)) {
                    self.abort_run(id, &why).await;
                }
                return Err(Error::Refused(if flagged {
                    format!(
                        "scoring run aborted: {why}. Only a modified owner node fails this check, and the abort \
                         itself may have told it a bit of the model: this FI scores `{}` no more until you \
                         decide to, with `duo fi score --allow-after-abort`",
                        self.applicant()
                    )
                } else {
                    format!("scoring run aborted: {why}")
                }));
            }
        };
        self.keep_ot(ot, ot_id);
        progress("waiting for the owner's receipt");
        let mine = ScoreOutcome::from_run(outcome, start.reveal, &start.attributes);
        let done = self.check_score_done(id, request, mine.clone()).await?;
        let bits = start.reveal.bits(start.attributes.len());
        Ok(ScoreReport {
            request,
            run: start.run,
            attributes: start.attributes,
            reveal: start.reveal,
            reasons: ScoreReason::of(&mine),
            outcome: mine,
            bits,
            bytes,
            cold,
            millis: began.elapsed().as_secs_f64() * 1e3,
            receipt: done.receipt,
            commitment: Some(asked.spec.commitment),
        })
    }

    /// The owner's report of a run: it must name the output this side computed, with a receipt that verifies
    /// against the pinned key and signs that output. The receipt is kept.
    async fn check_score_done(
        &mut self,
        id: u64,
        request: u64,
        mine: ScoreOutcome,
    ) -> Result<crate::proto::scoring::ScoreDone, Error> {
        let done = match self.recv_reply(id).await? {
            ServerMsg::ScoreDone(d) => *d,
            ServerMsg::Error { code, message } => return Err(Error::Remote { code, message }),
            other => return Err(unexpected(other)),
        };
        let r = &done.receipt;
        r.verify(Some(&self.signing_key))?;
        let signed: Option<duo_engine::Answer> = serde_json::from_str(&r.answer).ok();
        if done.outcome != mine
            || r.request != request
            || r.principal != self.principal
            || r.backend != Backend::TwoPc.name()
            || signed != Some(mine.answer())
        {
            return Err(Error::Refused(format!(
                "request {request}: the owner's report or receipt does not match the output this side computed"
            )));
        }
        if let Some((home, name)) = &self.keep {
            home.keep_receipt(name, r)?;
        }
        Ok(done)
    }

    /// Tells the owner this side ends the run, then takes its reply (its account of the abort) off the channel.
    async fn abort_run(&mut self, id: u64, why: &str) {
        let abort = serde_json::json!({ "type": "score_abort", "reason": why });
        if self.chan.send(&wire::encode(id, &abort)).await.is_err() {
            return;
        }
        // Protocol chunks the owner sent before it read the abort are skipped.
        let drain = async {
            while let Ok(Some(bytes)) = self.chan.recv().await {
                if bytes.first() == Some(&crate::proto::scoring::CHUNK_MARK) {
                    continue;
                }
                if matches!(wire::decode_server(&bytes), Ok((rid, _)) if rid == id) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }

    async fn recv_reply(&mut self, id: u64) -> Result<ServerMsg, Error> {
        loop {
            let bytes = self
                .chan
                .recv()
                .await
                .map_err(|e| Error::Transport(e.to_string()))?
                .ok_or_else(|| Error::Transport("the owner node closed the session".into()))?;
            let (rid, reply) = wire::decode_server(&bytes)?;
            // With id 0 the node ends the session (the owner revoked or re-keyed this pairing, or it expired)
            // and says why.
            if let (0, ServerMsg::Error { code, message }) = (rid, &reply) {
                return Err(Error::Remote {
                    code: code.clone(),
                    message: message.clone(),
                });
            }
            // A late reply to an earlier message (the node's `no_run` to a `score_abort` that arrived after its
            // run had ended) is skipped: ids only go up.
            if rid < id {
                continue;
            }
            if rid != id {
                return Err(Error::Transport(format!(
                    "reply to message {rid} while waiting for {id}"
                )));
            }
            return Ok(reply);
        }
    }

    /// What this FI asked for in scoring request `request` of this owner (this session, or the FI home).
    fn asked_scoring(&self, request: u64) -> Result<AskedScoring, Error> {
        let owner = self.owner_key();
        let here = self
            .asked
            .iter()
            .find(|a| a.request == request && a.owner == owner)
            .cloned();
        let kept = match (&here, &self.keep) {
            (None, Some((home, _))) => home
                .asked_scorings()?
                .into_iter()
                .find(|a| a.request == request && a.owner == owner),
            _ => None,
        };
        here.or(kept).ok_or_else(|| {
            Error::Refused(format!(
                "this FI has no record of asking for scoring request {request} of this owner; \
                 run it from the FI home that asked for it"
            ))
        })
    }

    fn owner_key(&self) -> String {
        fingerprint(&self.chan.remote_static())
    }

    /// The applicant: the name this FI paired the owner node under (the owner key without an FI home).
    fn applicant(&self) -> String {
        match &self.keep {
            Some((_, name)) => name.clone(),
            None => self.owner_key(),
        }
    }

    /// The FI's own checks before a run: no abort on record for this owner ([`ScoreAbortRecord`]), and the
    /// run limit per applicant.
    fn check_score_limit(&self) -> Result<(), Error> {
        let (applicant, key) = (self.applicant(), self.owner_key());
        let flagged = match &self.keep {
            Some((home, _)) => home.score_aborts_for(&applicant, &key)?.into_iter().next(),
            None => self.aborted_here.clone(),
        };
        if let Some(a) = flagged {
            return Err(Error::Refused(format!(
                "this FI scores `{applicant}` no more: its scoring run {} (request {}) aborted after this FI's \
                 inputs had entered the circuit ({}). Only a modified owner node fails that check, and each \
                 such abort may tell it a bit of the model. To score it again anyway, run `duo fi score` with \
                 --allow-after-abort",
                a.run, a.request, a.why
            )));
        }
        let limit = self.score_limit;
        let since = chrono::Utc::now().timestamp() - i64::from(limit.window_days) * 86_400;
        let used = match &self.keep {
            Some((home, _)) => home
                .score_runs()?
                .iter()
                .filter(|r| r.counts_for(&applicant, &key) && r.at > since)
                .count(),
            None => self.runs_here.iter().filter(|&&t| t > since).count(),
        };
        if used as u64 >= u64::from(limit.max_runs) {
            return Err(Error::Limit(format!(
                "this FI's own limit: {used} of {} scoring runs for `{applicant}` in the last {} days; \
                 an owner who controls its inputs could probe the model (raise it with --max-runs-per-owner)",
                limit.max_runs, limit.window_days
            )));
        }
        Ok(())
    }

    /// Ask the owner to start the run of `request`, naming the OT-extension state kept for it: the envelope
    /// id, the owner's `score_start`, and the state taken out of rest (which the run continues if the owner
    /// holds the same, and drops otherwise; only a run that finishes leaves a state behind).
    async fn start_run(
        &mut self,
        request: u64,
    ) -> Result<(u64, ScoreStart, Option<(kos::Receiver, String)>), Error> {
        let id = self.next_id;
        self.next_id += 1;
        let held = self.take_ot();
        let resume = held.as_ref().map(|(ot, ot_id)| OtResume {
            id: ot_id.clone(),
            next_index: ot.next_index(),
        });
        let msg = ClientMsg::ScoreRun {
            request,
            warm: held.is_some(),
            resume,
        };
        self.chan
            .send(&wire::encode(id, &msg))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        match self.recv_reply(id).await? {
            ServerMsg::ScoreStart(s) => Ok((id, *s, held)),
            ServerMsg::Error { code, message } => {
                // The run did not start: the state was not extended, and is kept for the next one.
                if let Some((ot, ot_id)) = held {
                    self.keep_ot(ot, ot_id);
                }
                Err(Error::Remote { code, message })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Make the base OTs of scoring runs with this owner now, so the next run starts warm (`duo fi pair` does
    /// this after pairing). Nothing is done when a state is kept already. Returns whether it made one.
    pub async fn prepare_ot(&mut self) -> Result<bool, Error> {
        use duo_protocols::ot::msgs::BaseReceiverMsg;
        let held = match &self.keep {
            Some((home, _)) => home.has_ot_state(&self.owner_key()),
            None => self.warm.is_some(),
        };
        if held {
            return Ok(false);
        }
        let id = self.next_id;
        self.next_id += 1;
        let sid = prepare_session_id(self.chan.handshake_hash(), id);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let (setup, msg) =
            kos::Receiver::setup(sid, &mut rng).map_err(|e| Error::Internal(e.to_string()))?;
        let body = ClientMsg::OtPrepare {
            base: hex(&msg.to_bytes()),
        };
        self.chan
            .send(&wire::encode(id, &body))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let base = match self.recv_reply(id).await? {
            ServerMsg::OtPrepared { base } => base,
            ServerMsg::Error { code, message } => return Err(Error::Remote { code, message }),
            other => return Err(unexpected(other)),
        };
        let reply = unhex(&base)
            .and_then(|b| BaseReceiverMsg::from_bytes(&b).ok())
            .ok_or_else(|| Error::Refused("the owner's base-OT message does not parse".into()))?;
        let ot = setup
            .finish(&reply)
            .map_err(|e| Error::Refused(format!("the owner's base-OT message: {e}")))?;
        self.keep_ot(ot, ot_state_id(&sid));
        Ok(true)
    }

    /// The OT-extension state kept for this owner, out of rest (this session's, or the FI home's): `None` when
    /// there is none or it does not read back.
    fn take_ot(&mut self) -> Option<(kos::Receiver, String)> {
        if let Some(held) = self.warm.take() {
            return Some(held);
        }
        let (home, _) = self.keep.as_ref()?;
        home.take_ot_state(&self.owner_key()).ok().flatten()
    }

    /// Keep the OT-extension state a run left, in the FI home (or this session, without one). If it cannot be
    /// written, the next run starts from new base OTs.
    fn keep_ot(&mut self, ot: kos::Receiver, ot_id: String) {
        match &self.keep {
            Some((home, _)) => {
                let _ = home.put_ot_state(&self.owner_key(), &ot_id, &ot);
            }
            None => self.warm = Some((ot, ot_id)),
        }
    }

    fn record_score_run(&mut self) -> Result<(), Error> {
        let now = chrono::Utc::now().timestamp();
        self.runs_here.push(now);
        if let Some((home, name)) = &self.keep {
            home.add_score_run(ScoreRunRecord {
                owner: self.owner_key(),
                at: now,
                applicant: Some(name.clone()),
            })?;
        }
        Ok(())
    }

    /// Keeps the record that stops this FI scoring this owner ([`ScoreAbortRecord`]).
    fn flag_abort(&mut self, request: u64, run: u64, why: &str) -> Result<(), Error> {
        let rec = ScoreAbortRecord {
            applicant: self.applicant(),
            owner: self.owner_key(),
            request,
            run,
            at: chrono::Utc::now().timestamp(),
            why: why.to_string(),
        };
        match &self.keep {
            Some((home, _)) => home.add_score_abort(rec),
            None => {
                self.aborted_here = Some(rec);
                Ok(())
            }
        }
    }

    /// The operator's decision to score this owner again after an abort that stopped it: removes the
    /// records naming it (by pairing name or key) and returns them.
    pub fn allow_after_abort(&mut self) -> Result<Vec<ScoreAbortRecord>, Error> {
        let mut cleared: Vec<ScoreAbortRecord> = self.aborted_here.take().into_iter().collect();
        if let Some((home, _)) = &self.keep {
            cleared.extend(home.clear_score_aborts(&self.applicant(), &self.owner_key())?);
        }
        Ok(cleared)
    }

    /// Close the session.
    pub async fn close(self) {
        self.chan.close().await;
    }
}

fn unexpected(m: ServerMsg) -> Error {
    Error::Transport(format!("unexpected reply from the owner node: {m:?}"))
}

/// The fingerprint of this FI's key (the owner sees it in its pairing list).
pub fn key_fingerprint(home: &FiHome) -> Result<String, Error> {
    Ok(fingerprint(&home.key()?.public))
}
