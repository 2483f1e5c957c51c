//! The owner node: initialisation, loading data, invites, and the service FIs connect to.

use crate::error::Error;
use crate::keys::{fingerprint, InviteCode, Keypair};
use crate::release::{DatasetCache, Owner};
use crate::store::{self, Sync};
use crate::transport::{self, AcceptError, Limits, Mode};
use crate::wire::{self, ClientMsg, PointerInfo, PublishedDataset, ServerMsg};
use duo_engine::ingest::{load_csv, parse_meta, IngestLimits};
use duo_engine::{render, Checked, Expr, Suggestions};
use duo_policies::{Backend, Policy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The owner's directory inside a Duo home.
pub fn owner_dir(home: &Path) -> PathBuf {
    home.join("owner")
}

fn key_path(owner_dir: &Path) -> PathBuf {
    owner_dir.join("node.key")
}

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Whether a new node key was made.
    pub new_key: bool,
    /// Whether the policy file was written.
    pub wrote_policy: bool,
    /// The node key's fingerprint.
    pub fingerprint: String,
}

/// Create the owner directory, the node key and the policy file if they are missing (existing ones are kept).
/// `policy_text` replaces the default policy when the file does not exist yet.
pub fn init(owner_dir: &Path, policy_text: Option<&str>) -> Result<InitReport, Error> {
    crate::home::private_dir(owner_dir)?;
    let kp = key_path(owner_dir);
    let new_key = !kp.exists();
    if new_key {
        crate::home::write_private(&kp, &Keypair::generate().to_file_bytes())?;
    }
    let pp = crate::release::policy_path(owner_dir);
    let wrote_policy = !pp.exists();
    if wrote_policy {
        let text = policy_text.unwrap_or(Policy::default_text());
        Policy::parse(text)?;
        crate::home::write_private(&pp, text.as_bytes())?;
    }
    crate::receipt::NodeSigner::load_or_create(&crate::receipt::signing_key_path(owner_dir))?;
    store::open(owner_dir, Sync::Full)?;
    let key = node_key(owner_dir)?;
    Ok(InitReport {
        new_key,
        wrote_policy,
        fingerprint: fingerprint(&key.public),
    })
}

/// The owner node's static key.
pub fn node_key(owner_dir: &Path) -> Result<Keypair, Error> {
    let bytes = std::fs::read(key_path(owner_dir)).map_err(|e| {
        Error::NotFound(format!(
            "node key in {}: {e} (run `duo owner init`)",
            owner_dir.display()
        ))
    })?;
    Keypair::from_file_bytes(&bytes).map_err(|e| Error::Internal(format!("node key: {e}")))
}

/// The result of loading a CSV file.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Dataset name.
    pub name: String,
    /// New version.
    pub version: u64,
    /// Rows loaded.
    pub rows: u64,
    /// What the node inferred (owner-only).
    pub suggestions: Suggestions,
}

/// Load a CSV file as a new version of dataset `name`, with the metadata in `meta_text`. A bad file changes
/// nothing.
pub fn load(
    owner_dir: &Path,
    csv_path: &Path,
    name: &str,
    meta_text: &str,
) -> Result<LoadReport, Error> {
    let mut meta = parse_meta(meta_text).map_err(|e| Error::Refused(format!("metadata: {e}")))?;
    meta.name = name.to_string();
    // Re-validate with the chosen name.
    let meta_text = toml::to_string(&meta).map_err(|e| Error::Internal(e.to_string()))?;
    let meta = parse_meta(&meta_text).map_err(|e| Error::Refused(format!("metadata: {e}")))?;
    let file = std::fs::File::open(csv_path)
        .map_err(|e| Error::NotFound(format!("{}: {e}", csv_path.display())))?;
    let (ds, sugg) = load_csv(
        std::io::BufReader::new(file),
        &meta,
        &IngestLimits::default(),
    )
    .map_err(|e| Error::Refused(format!("{}: {e}", csv_path.display())))?;
    let mut conn = store::open(owner_dir, Sync::Full)?;
    let version = store::put_dataset(&mut conn, &ds, &sugg)?;
    Ok(LoadReport {
        name: name.to_string(),
        version,
        rows: ds.rows() as u64,
        suggestions: sugg,
    })
}

/// How long a pairing lasts unless the invite says otherwise.
pub const DEFAULT_PAIRING: Duration = Duration::from_secs(90 * 24 * 3600);

/// Make an invite code for `principal`, valid for `ttl`; the pairing it makes lasts [`DEFAULT_PAIRING`].
pub fn invite(owner_dir: &Path, principal: &str, ttl: Duration) -> Result<InviteCode, Error> {
    invite_for(owner_dir, principal, ttl, DEFAULT_PAIRING)
}

/// Make an invite code for `principal`, valid for `ttl`, whose pairing lasts `pairing`.
pub fn invite_for(
    owner_dir: &Path,
    principal: &str,
    ttl: Duration,
    pairing: Duration,
) -> Result<InviteCode, Error> {
    let principal = principal.trim();
    if principal.is_empty() || principal.len() > 128 || principal.chars().any(char::is_control) {
        return Err(Error::Refused(
            "the principal name must be 1 to 128 printable characters".into(),
        ));
    }
    let key = node_key(owner_dir)?;
    let code = InviteCode::generate(&key.public);
    let mut conn = store::open(owner_dir, Sync::Full)?;
    store::create_invite(
        &mut conn,
        &code.id,
        principal,
        &code.psk(),
        store::now_unix() + ttl.as_secs() as i64,
        pairing,
    )?;
    Ok(code)
}

/// Settings of a running owner node.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The owner directory.
    pub owner_dir: PathBuf,
    /// How commits are synced.
    pub sync: Sync,
    /// Transport limits.
    pub limits: Limits,
    /// Pointers one session may hold.
    pub max_pointers: usize,
    /// Concurrent connections (authenticated or not).
    pub max_connections: usize,
    /// Concurrent connections still in their handshake (not yet authenticated).
    pub max_handshakes: usize,
    /// Limits per principal.
    pub principal_limits: PrincipalLimits,
}

/// Limits each principal gets; exceeding one gets a `limit` error, is logged (at most once a minute per
/// principal and limit), and never affects other principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalLimits {
    /// Concurrent sessions.
    pub max_sessions: usize,
    /// Requests waiting for the owner.
    pub max_pending: u64,
    /// Requests (new or repeated) per hour.
    pub requests_per_hour: usize,
    /// Metadata and catalogue views per hour.
    pub views_per_hour: usize,
}

impl Default for PrincipalLimits {
    fn default() -> Self {
        PrincipalLimits {
            max_sessions: 8,
            max_pending: 32,
            requests_per_hour: 3600,
            views_per_hour: 600,
        }
    }
}

/// What one principal is using now (runtime counters, not records).
#[derive(Debug, Default)]
struct PrincipalUse {
    sessions: usize,
    views: std::collections::VecDeque<std::time::Instant>,
    requests: std::collections::VecDeque<std::time::Instant>,
    last_logged: HashMap<&'static str, std::time::Instant>,
}

/// Count one event in a sliding one-hour window; false when the window is full.
fn within_rate(window: &mut std::collections::VecDeque<std::time::Instant>, max: usize) -> bool {
    let now = std::time::Instant::now();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600))
    {
        window.pop_front();
    }
    if window.len() >= max {
        return false;
    }
    window.push_back(now);
    true
}

impl ServeConfig {
    /// Defaults for an owner directory.
    pub fn new(owner_dir: &Path) -> Self {
        ServeConfig {
            owner_dir: owner_dir.to_path_buf(),
            sync: Sync::Full,
            limits: Limits::default(),
            max_pointers: 1024,
            max_connections: 256,
            max_handshakes: 32,
            principal_limits: PrincipalLimits::default(),
        }
    }
}

/// A running owner node. Dropping it does not stop it; call [`RunningNode::shutdown`].
pub struct RunningNode {
    /// The address it listens on.
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    /// The `ws://` URL FIs connect to.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stop accepting, close every session and wait for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Start the owner node on `listen` (port 0 picks a free port).
pub async fn spawn(cfg: ServeConfig, listen: SocketAddr) -> Result<RunningNode, Error> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let key = Arc::new(node_key(&cfg.owner_dir)?);
    // Fail early on a broken policy or store.
    Owner::open(&cfg.owner_dir, cfg.sync, DatasetCache::default())?.policy()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let changes = spawn_change_watcher(cfg.owner_dir.clone(), shutdown_rx.clone())?;
    let signing_key = crate::receipt::NodeSigner::load_or_create(
        &crate::receipt::signing_key_path(&cfg.owner_dir),
    )?
    .public_hex();
    let handshake_db = std::sync::Mutex::new(store::open(&cfg.owner_dir, cfg.sync)?);
    let handshakes = Arc::new(Semaphore::new(cfg.max_handshakes));
    let shared = Arc::new(Shared {
        handshake_db,
        handshakes,
        principals: Default::default(),
        write_turn: tokio::sync::Mutex::new(()),
        signing_key,
        cfg,
        key,
        cache: DatasetCache::default(),
        changes,
    });
    let task = tokio::spawn(accept_loop(listener, shared, shutdown_rx));
    Ok(RunningNode {
        addr,
        shutdown: shutdown_tx,
        task,
    })
}

struct Shared {
    cfg: ServeConfig,
    signing_key: String,
    key: Arc<Keypair>,
    cache: DatasetCache,
    changes: watch::Receiver<u64>,
    /// One connection for the handshakes' short look-ups, so an unauthenticated peer opens nothing.
    handshake_db: std::sync::Mutex<rusqlite::Connection>,
    handshakes: Arc<Semaphore>,
    principals: std::sync::Mutex<HashMap<String, PrincipalUse>>,
    /// Taken around a session's write transaction (see the request handler).
    write_turn: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Apply `f` to a principal's counters.
    fn with_use<R>(&self, principal: &str, f: impl FnOnce(&mut PrincipalUse) -> R) -> Option<R> {
        let mut map = self.principals.lock().ok()?;
        Some(f(map.entry(principal.to_string()).or_default()))
    }

    /// Whether a limit event should be logged now (at most once a minute per principal and limit).
    fn should_log(&self, principal: &str, limit: &'static str) -> bool {
        self.with_use(principal, |u| {
            let now = std::time::Instant::now();
            let due = u
                .last_logged
                .get(limit)
                .is_none_or(|t| now.duration_since(*t) > Duration::from_secs(60));
            if due {
                u.last_logged.insert(limit, now);
            }
            due
        })
        .unwrap_or(false)
    }
}

/// Releases a principal's session slot when the session ends.
struct SessionSlot {
    shared: Arc<Shared>,
    principal: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.shared.with_use(&self.principal, |u| {
            u.sessions = u.sessions.saturating_sub(1)
        });
    }
}

/// Watch the database for commits from any process (sessions, owner CLI commands) and bump a counter, so that
/// FIs waiting for a decision hear of it promptly without the node holding state of its own.
fn spawn_change_watcher(
    owner_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> Result<watch::Receiver<u64>, Error> {
    let (tx, rx) = watch::channel(0u64);
    let conn = store::open(&owner_dir, Sync::Normal)?;
    tokio::task::spawn_blocking(move || {
        let mut last: i64 = -1;
        loop {
            if *shutdown.borrow_and_update() || tx.is_closed() {
                return;
            }
            if let Ok(v) = conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) {
                if v != last {
                    last = v;
                    tx.send_modify(|n| *n += 1);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Ok(rx)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(shared.cfg.max_connections));
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    drop(tcp);
                    continue;
                };
                let shared = shared.clone();
                let mut stop = shutdown.clone();
                sessions.spawn(async move {
                    tokio::select! {
                        _ = session(tcp, peer, shared) => {}
                        _ = stop.changed() => {}
                    }
                    drop(permit);
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    sessions.shutdown().await;
}

/// Log that a principal hit a limit (at most once a minute per principal and limit).
async fn log_limit(
    shared: &Shared,
    owner: &mut Option<Owner>,
    principal: &str,
    limit: &'static str,
) {
    if !shared.should_log(principal, limit) {
        return;
    }
    let p = principal.to_string();
    let _ = blocking(owner, move |o| -> Result<(), Error> {
        let tx = store::write_tx(&mut o.conn)?;
        store::append_log(
            &tx,
            "limit_exceeded",
            Some(&p),
            &serde_json::json!({ "limit": limit }),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await;
}

fn limit_error(what: &str) -> ServerMsg {
    ServerMsg::Error {
        code: "limit".into(),
        message: format!("{what}; try again later"),
    }
}

/// Run a closure on the owner store without blocking other tasks.
pub(crate) async fn blocking<R: Send + 'static>(
    slot: &mut Option<Owner>,
    f: impl FnOnce(&mut Owner) -> R + Send + 'static,
) -> Result<R, Error> {
    let mut owner = slot
        .take()
        .ok_or_else(|| Error::Internal("owner store lost".into()))?;
    // On a multi-threaded runtime, run in place (the worker hands its other tasks on): no thread hop per store
    // call. Elsewhere, the blocking pool.
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        let r = tokio::task::block_in_place(|| f(&mut owner));
        *slot = Some(owner);
        return Ok(r);
    }
    let (owner, r) = tokio::task::spawn_blocking(move || {
        let r = f(&mut owner);
        (owner, r)
    })
    .await
    .map_err(|e| Error::Internal(format!("store task: {e}")))?;
    *slot = Some(owner);
    Ok(r)
}

async fn session(tcp: TcpStream, _peer: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let cfg = &shared.cfg;
    // Unauthenticated connections have their own small allowance.
    let Ok(handshake_permit) = shared.handshakes.clone().try_acquire_owned() else {
        return;
    };
    let conn = &shared.handshake_db;
    let psk_for = |invite: &str| -> Option<[u8; 32]> {
        let mut c = conn.lock().ok()?;
        store::begin_invite_attempt(&mut c, invite).ok().flatten()
    };
    let invite_refusal = |invite: &str| -> String {
        conn.lock()
            .ok()
            .and_then(|c| store::invite_refusal(&c, invite).ok())
            .unwrap_or_else(|| "this invite cannot be used".into())
    };
    let verify = |mode: &Mode, key: &[u8; 32]| -> Result<(), (String, String)> {
        match mode {
            Mode::Pair { .. } => Ok(()),
            Mode::Session => {
                let c = conn
                    .lock()
                    .map_err(|_| ("internal".to_string(), "try again".to_string()))?;
                match store::principal_for_key(&c, key) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err((
                        "unknown_key".into(),
                        "this FI key is not paired with this node, or its pairing expired; ask the owner for a new invite code".into(),
                    )),
                    Err(_) => Err(("internal".into(), "the node could not check the key".into())),
                }
            }
        }
    };
    let accepted = transport::accept(
        tcp,
        &shared.key,
        psk_for,
        invite_refusal,
        verify,
        &cfg.limits,
    )
    .await;
    drop(handshake_permit);
    let (mut chan, mode) = match accepted {
        Ok(x) => x,
        Err(AcceptError::BadPsk { invite_id }) => {
            if let Ok(mut c) = shared.handshake_db.lock() {
                let _ = store::invite_failed(&mut c, &invite_id, "wrong invite secret");
            }
            return;
        }
        Err(_) => return,
    };
    let mut owner = Owner::open(&cfg.owner_dir, cfg.sync, shared.cache.clone())
        .ok()
        .map(|o| o.with_max_pending(cfg.principal_limits.max_pending));
    if owner.is_none() {
        return;
    }
    let remote = chan.remote_static();
    let principal = match &mode {
        Mode::Pair { invite } => {
            let invite = invite.clone();
            let fp = fingerprint(&remote);
            match blocking(&mut owner, move |o| {
                store::complete_pairing(&mut o.conn, &invite, &remote, &fp)
            })
            .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    let _ = chan
                        .send(&wire::encode(
                            0,
                            &ServerMsg::Error {
                                code: "pairing_failed".into(),
                                message: e.to_string(),
                            },
                        ))
                        .await;
                    chan.close().await;
                    return;
                }
                Err(_) => return,
            }
        }
        Mode::Session => {
            match blocking(&mut owner, move |o| {
                let p = store::principal_for_key(&o.conn, &remote)?;
                if let Some(p) = &p {
                    store::touch_pairing(&o.conn, p)?;
                }
                Ok::<_, Error>(p)
            })
            .await
            {
                Ok(Ok(Some(p))) => p,
                _ => return,
            }
        }
    };
    // One more session for this principal, within its limit.
    let admitted = shared
        .with_use(&principal, |u| {
            if u.sessions >= cfg.principal_limits.max_sessions {
                false
            } else {
                u.sessions += 1;
                true
            }
        })
        .unwrap_or(false);
    if !admitted {
        let msg = format!(
            "this FI already has {} sessions open, the limit; close one and try again",
            cfg.principal_limits.max_sessions
        );
        log_limit(&shared, &mut owner, &principal, "sessions").await;
        let _ = chan
            .send(&wire::encode(
                0,
                &ServerMsg::Error {
                    code: "limit".into(),
                    message: msg,
                },
            ))
            .await;
        chan.close().await;
        return;
    }
    let _slot = SessionSlot {
        shared: shared.clone(),
        principal: principal.clone(),
    };
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
        warm: None,
        owner,
        shared: shared.clone(),
    };
    let mut changes = shared.changes.clone();
    // The pairing is checked on every store change (a revocation is one) and at least every 30 s (an expiry
    // is not); the idle timeout counts from the last message, whatever else happens on the node.
    let mut recheck = tokio::time::interval(Duration::from_secs(30));
    recheck.tick().await;
    let mut last_message = tokio::time::Instant::now();
    loop {
        let bytes = tokio::select! {
            got = chan.recv() => match got {
                Ok(Some(b)) => {
                    last_message = tokio::time::Instant::now();
                    Some(b)
                }
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
            if last_message.elapsed() > cfg.limits.idle_timeout {
                break;
            }
            {
                let still = blocking(&mut state.owner, move |o| {
                    store::principal_for_key(&o.conn, &remote)
                })
                .await;
                if !matches!(still, Ok(Ok(Some(ref p))) if *p == state.principal) {
                    let bye = ServerMsg::Error {
                        code: "revoked".into(),
                        message: "the owner revoked or ended this pairing; the session is closed"
                            .into(),
                    };
                    let _ = chan.send(&wire::encode(0, &bye)).await;
                    break;
                }
            }
            continue;
        };
        let (id, reply) = match wire::decode_client(&bytes) {
            Ok((id, ClientMsg::ScoreRun { request, warm })) => {
                if !warm {
                    state.warm = None;
                }
                // Runs count against the principal's hourly request rate, like requests.
                if let Ok(Some(refusal)) = state.admit_request("").await {
                    if chan.send(&wire::encode(id, &refusal)).await.is_err() {
                        break;
                    }
                    continue;
                }
                let (who, db) = (state.principal.clone(), &shared.handshake_db);
                let still_paired = move || {
                    db.lock().ok().is_some_and(|c| {
                        matches!(store::principal_for_key(&c, &remote), Ok(Some(p)) if p == who)
                    })
                };
                let guard = crate::scoring::RunGuard {
                    changes: Some(shared.changes.clone()),
                    still_paired: &still_paired,
                };
                let reply = crate::scoring::owner_run(
                    &mut chan,
                    &mut state.owner,
                    &mut state.warm,
                    &state.principal,
                    id,
                    request,
                    guard,
                )
                .await;
                last_message = tokio::time::Instant::now();
                (id, reply)
            }
            Ok((id, msg)) => (id, state.handle(msg).await),
            // An FI's `score_abort` that arrives after its run already ended needs no answer: an answer would
            // be read as the reply to the FI's next message.
            Err(e)
                if e.code == "unknown_type"
                    && e.message == "unknown message type \"score_abort\"" =>
            {
                continue;
            }
            Err(e) => (
                e.id,
                ServerMsg::Error {
                    code: e.code.into(),
                    message: e.message,
                },
            ),
        };
        fail::fail_point!("owner::before_send", |_| {});
        let mut bytes = wire::encode(id, &reply);
        if bytes.len() > cfg.limits.max_message {
            bytes = wire::encode(
                id,
                &ServerMsg::Error {
                    code: "too_large".into(),
                    message: format!(
                        "the reply is {} bytes, over this session's limit of {}; ask for an aggregate instead",
                        bytes.len(),
                        cfg.limits.max_message
                    ),
                },
            );
        }
        if chan.send(&bytes).await.is_err() {
            break;
        }
    }
    chan.close().await;
}

struct SessionState {
    principal: String,
    /// The FI's static key for this session.
    remote: [u8; 32],
    pointers: Vec<Checked>,
    /// What this session has viewed already (logged once per session, not once per message).
    viewed: std::collections::BTreeSet<&'static str>,
    /// The OT extension state of this session's last scoring run (a later run skips the base OTs).
    warm: Option<duo_protocols::ot::kos::Sender>,
    owner: Option<Owner>,
    shared: Arc<Shared>,
}

fn error_msg(e: &Error) -> ServerMsg {
    ServerMsg::Error {
        code: e.code().into(),
        message: e.to_string(),
    }
}

impl SessionState {
    fn allow_view(&self) -> bool {
        let max = self.shared.cfg.principal_limits.views_per_hour;
        self.shared
            .with_use(&self.principal, |u| within_rate(&mut u.views, max))
            .unwrap_or(false)
    }

    async fn handle(&mut self, msg: ClientMsg) -> ServerMsg {
        match self.handle_inner(msg).await {
            Ok(m) => m,
            Err(e) => error_msg(&e),
        }
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

    async fn handle_inner(&mut self, msg: ClientMsg) -> Result<ServerMsg, Error> {
        let principal = self.principal.clone();
        match msg {
            ClientMsg::ListDatasets => {
                if !self.allow_view() {
                    log_limit(&self.shared, &mut self.owner, &principal, "views").await;
                    return Ok(limit_error("too many metadata views this hour"));
                }
                let first = self.viewed.insert("datasets");
                blocking(&mut self.owner, move |o| {
                    let rows = store::datasets(&o.conn)?;
                    if first {
                        let tx = store::write_tx(&mut o.conn)?;
                        store::append_log(
                            &tx,
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
            ClientMsg::ListCatalogue => {
                if !self.allow_view() {
                    log_limit(&self.shared, &mut self.owner, &principal, "views").await;
                    return Ok(limit_error("too many metadata views this hour"));
                }
                let first = self.viewed.insert("catalogue");
                blocking(&mut self.owner, move |o| {
                    if first {
                        let tx = store::write_tx(&mut o.conn)?;
                        store::append_log(
                            &tx,
                            "metadata_viewed",
                            Some(&principal),
                            &serde_json::json!({ "what": "catalogue" }),
                        )?;
                        tx.commit()?;
                    }
                    Ok(ServerMsg::Catalogue {
                        entries: crate::release::catalogue_infos(),
                    })
                })
                .await?
            }
            ClientMsg::Pointer { expr } => {
                if self.pointers.len() >= self.shared.cfg.max_pointers {
                    return Ok(ServerMsg::Error {
                        code: "quota".into(),
                        message: format!(
                            "this session already holds {} pointers, the limit; open a new session",
                            self.pointers.len()
                        ),
                    });
                }
                // Refuse before expanding: a message made of many references to a large pointer would
                // otherwise multiply into a huge tree. The expanded size is known from the stored pointers.
                let mut refs = Vec::new();
                collect_ptrs(&expr, &mut refs);
                let mut expanded = expr.node_count();
                for id in &refs {
                    let p = usize::try_from(*id)
                        .ok()
                        .and_then(|i| self.pointers.get(i))
                        .ok_or_else(|| Error::NotFound(format!("pointer {id} in this session")))?;
                    expanded = expanded.saturating_add(p.nodes.saturating_sub(1));
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
                let id = self.pointers.len() as u64;
                let info = PointerInfo {
                    id,
                    ty: checked.ty.clone(),
                    description: render::describe(&checked.expr),
                };
                self.pointers.push(checked);
                Ok(ServerMsg::Pointer(info))
            }
            ClientMsg::Cost { pointer, dp } => {
                let idx = usize::try_from(pointer)
                    .ok()
                    .filter(|i| *i < self.pointers.len())
                    .ok_or_else(|| Error::NotFound(format!("pointer {pointer} in this session")))?;
                let checked = self.pointers[idx].clone();
                blocking(&mut self.owner, move |o| -> Result<ServerMsg, Error> {
                    let (plan, measure) = o.dp_plan(&checked, &dp)?;
                    Ok(ServerMsg::Cost {
                        cost: plan.cost.to_string(),
                        measure,
                        accuracy95: plan.accuracy95,
                        mechanism: plan.mechanism,
                    })
                })
                .await?
            }
            ClientMsg::Request {
                pointer,
                backend,
                reason,
                dp,
            } => {
                if let Some(refusal) = self.admit_request(&reason).await? {
                    return Ok(refusal);
                }
                let idx = usize::try_from(pointer)
                    .ok()
                    .filter(|i| *i < self.pointers.len())
                    .ok_or_else(|| Error::NotFound(format!("pointer {pointer} in this session")))?;
                let expr: Expr = self.pointers[idx].expr.clone();
                // What the owner reads is the checked lineage written out by the node, never text from the FI.
                let source = duo_engine::parse::to_source(&expr);
                let reason = sanitize(&reason);
                // Sessions of this node take turns at the store's write lock here, so they queue without
                // SQLite's sleeping busy handler; other processes (owner commands) still get the lock fairly.
                let _turn = self.shared.write_turn.lock().await;
                let view = blocking(&mut self.owner, move |o| {
                    let checked = o.check(&expr)?;
                    o.submit(
                        &principal,
                        backend,
                        &reason,
                        &source,
                        &checked,
                        dp.as_ref(),
                        None,
                    )
                })
                .await??;
                Ok(ServerMsg::Request(Box::new(view)))
            }
            ClientMsg::Score { scoring, reason } => {
                if let Some(refusal) = self.admit_request(&reason).await? {
                    return Ok(refusal);
                }
                let reason = sanitize(&reason);
                let _turn = self.shared.write_turn.lock().await;
                let view = blocking(&mut self.owner, move |o| {
                    let checked = crate::scoring::scoring_checked(o, &scoring)?;
                    let source = format!(
                        "score [{}] reveal {} commitment {}",
                        scoring.attributes.join(", "),
                        scoring.reveal,
                        scoring.commitment
                    );
                    o.submit(
                        &principal,
                        Backend::TwoPc,
                        &reason,
                        &source,
                        &checked,
                        None,
                        Some(&scoring),
                    )
                })
                .await??;
                Ok(ServerMsg::Request(Box::new(view)))
            }
            ClientMsg::ScoreRun { .. } => Err(Error::Internal(
                "a scoring run is driven by the session loop".into(),
            )),
            ClientMsg::Status { request, wait_ms } => {
                let deadline = tokio::time::Instant::now()
                    + Duration::from_millis(wait_ms.min(wire::MAX_WAIT_MS));
                let mut changes = self.shared.changes.clone();
                let remote = self.remote;
                loop {
                    changes.borrow_and_update();
                    let p = principal.clone();
                    // A wait ends early if the pairing was revoked meanwhile.
                    let (view, still) = blocking(&mut self.owner, move |o| {
                        let still = store::principal_for_key(&o.conn, &remote)?;
                        Ok::<_, Error>((o.request_view(&p, request)?, still))
                    })
                    .await??;
                    if still.as_deref() != Some(principal.as_str()) {
                        return Err(Error::Refused(
                            "the owner revoked or ended this pairing".into(),
                        ));
                    }
                    if view.state != crate::release::RequestState::Pending
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

/// Text from a peer made safe for the owner's terminal: control characters become spaces.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
