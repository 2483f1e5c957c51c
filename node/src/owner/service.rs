//! The service FIs connect to: the listener, limits per principal, and the state a node's sessions share.

use super::{node_key, DatasetCache, Owner};
use crate::error::Error;
use crate::net::gate::{Gate, GateLimits, Pressure};
use crate::net::keys::Keypair;
use crate::net::transport::Limits;
use crate::proto::ServerMsg;
use crate::store::prelude::*;
use crate::store::{Store, Sync};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    /// Concurrent authenticated sessions, all FIs together (connections still in their handshake never take
    /// these places).
    pub max_connections: usize,
    /// Connections still in their handshake (not yet authenticated) held at once; when all are taken, a new
    /// connection evicts the oldest of them (see [`crate::net::gate`]).
    pub max_pending: usize,
    /// Limits per principal.
    pub principal_limits: PrincipalLimits,
    /// Where the node reports what happens as it happens (FIs connecting, asking, being answered; the node
    /// under pressure), for `duo owner serve` to print. Events are dropped, never waited for, when the
    /// receiver falls behind.
    pub events: Option<EventSink>,
    /// Least time between two reports that the node is under pressure (to the events and the audit log).
    pub pressure_every: Duration,
    /// Also serve FIs through this relay (`duo owner serve --relay`), keeping a connection to it.
    pub relay: Option<crate::relay::RelayTarget>,
}

/// The sending end of the node's events ([`ServeConfig::events`]).
pub type EventSink = tokio::sync::mpsc::Sender<NodeEvent>;

/// Longest reason shown in an event, in characters.
const EVENT_REASON_CHARS: usize = 60;

/// Something that happened on the node, for the owner to see as it happens. Text an FI chose (its reason) is
/// neutralised and shortened; names are the ones the owner gave.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A paired FI opened a session.
    Connected {
        /// The FI's name (its principal).
        principal: String,
    },
    /// An FI paired with an invite.
    Paired {
        /// The name the invite gave it.
        principal: String,
    },
    /// An FI asked for a release or a scoring.
    Asked {
        /// The FI.
        principal: String,
        /// The request's id.
        request: u64,
        /// `plaintext`, `dp` or `2pc`.
        kind: String,
        /// The FI's reason, neutralised and shortened.
        reason: String,
    },
    /// What became of a request when it was asked: `answered`, `refused` or `queued` (for the owner).
    Outcome {
        /// The FI.
        principal: String,
        /// The request's id.
        request: u64,
        /// `answered`, `refused` or `queued`.
        outcome: &'static str,
    },
    /// A session ended.
    Disconnected {
        /// The FI.
        principal: String,
    },
    /// Connections were dropped before authentication since the last such event (see [`crate::net::gate`]).
    Pressure {
        /// What was dropped.
        dropped: Pressure,
        /// Seconds the counts cover.
        seconds: u64,
    },
}

impl NodeEvent {
    /// A request's event, with its reason neutralised and shortened.
    pub(crate) fn asked(principal: &str, request: u64, kind: &str, reason: &str) -> Self {
        let clean = duo_engine::text::neutralize(reason);
        let mut short: String = clean.chars().take(EVENT_REASON_CHARS).collect();
        if clean.chars().count() > EVENT_REASON_CHARS {
            short.push('…');
        }
        NodeEvent::Asked {
            principal: principal.to_string(),
            request,
            kind: kind.to_string(),
            reason: short,
        }
    }
}

impl std::fmt::Display for NodeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |p: &str| duo_engine::text::neutralize(p);
        match self {
            NodeEvent::Connected { principal } => write!(f, "{} connected", name(principal)),
            NodeEvent::Paired { principal } => write!(f, "{} paired", name(principal)),
            NodeEvent::Asked {
                principal,
                request,
                kind,
                reason,
            } => write!(
                f,
                "{} asked #{request} ({kind}): \"{}\"",
                name(principal),
                duo_engine::text::neutralize(reason)
            ),
            NodeEvent::Outcome {
                principal,
                request,
                outcome,
            } => {
                let what = match *outcome {
                    "queued" => "queued for your decision (duo owner requests)",
                    other => other,
                };
                write!(f, "{} #{request} {what}", name(principal))
            }
            NodeEvent::Disconnected { principal } => write!(f, "{} disconnected", name(principal)),
            NodeEvent::Pressure { dropped, seconds } => write!(
                f,
                "under pressure: in the last {seconds} s, {} unauthenticated connections were evicted for newer \
                 ones, {} refused at the connection cap, {} closed for silence, and {} paired FIs refused for \
                 want of a session place; paired FIs that finish their handshake keep their own places",
                dropped.evicted, dropped.refused, dropped.timed_out, dropped.sessions_full
            ),
        }
    }
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
pub(crate) struct PrincipalUse {
    pub(crate) sessions: usize,
    pub(crate) views: RateWindow,
    pub(crate) requests: RateWindow,
    pub(crate) last_logged: HashMap<&'static str, std::time::Instant>,
}

/// Events of the last hour, counted per second: at most 3600 counters whatever the rate (one timestamp per
/// event grew without bound under a high limit: 16 bytes a request, 100 MB an hour at 1,700 requests a second).
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// (second since `origin`, events in it), oldest first.
    seconds: std::collections::VecDeque<(u64, usize)>,
    /// Events in `seconds`.
    total: usize,
    origin: Option<std::time::Instant>,
}

/// Count one event in a sliding one-hour window (to the second); false when the window is full.
pub(crate) fn within_rate(window: &mut RateWindow, max: usize) -> bool {
    let now = std::time::Instant::now();
    let origin = *window.origin.get_or_insert(now);
    let second = now.duration_since(origin).as_secs();
    while let Some(&(s, n)) = window.seconds.front() {
        if second.saturating_sub(s) < 3600 {
            break;
        }
        window.seconds.pop_front();
        window.total -= n;
    }
    if window.total >= max {
        return false;
    }
    window.total += 1;
    match window.seconds.back_mut() {
        Some((s, n)) if *s == second => *n += 1,
        _ => window.seconds.push_back((second, 1)),
    }
    true
}

/// SQLite's memory for all the node's connections together (each session has its own): past it, SQLite
/// reuses page-cache pages instead of growing. Without it each of 64 sessions kept up to 2 MiB of pages, and
/// the node grew for minutes as the log grew.
const SQLITE_SOFT_HEAP_LIMIT: i64 = 16 << 20;

impl ServeConfig {
    /// Defaults for an owner directory.
    pub fn new(owner_dir: &Path) -> Self {
        ServeConfig {
            owner_dir: owner_dir.to_path_buf(),
            sync: Sync::Full,
            limits: Limits::default(),
            max_pointers: 1024,
            max_connections: 256,
            max_pending: 1024,
            principal_limits: PrincipalLimits::default(),
            events: None,
            pressure_every: Duration::from_secs(60),
            relay: None,
        }
    }
}

/// A running owner node. Dropping it does not stop it; call [`RunningNode::shutdown`].
pub struct RunningNode {
    /// The address it listens on.
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    relay: Option<watch::Receiver<super::relay::LinkState>>,
    /// Only one node serves one owner directory.
    _lock: crate::home::ServeLock,
}

impl RunningNode {
    /// The `ws://` URL FIs connect to.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The URL FIs use through the relay ([`ServeConfig::relay`]) while the node is connected to it.
    pub fn relay_url(&self) -> Option<String> {
        match &*self.relay.as_ref()?.borrow() {
            super::relay::LinkState::Up(url) => Some(url.clone()),
            super::relay::LinkState::Down(_) => None,
        }
    }

    /// Wait up to `timeout` for the node to be connected to its relay: its URL there, or why not.
    ///
    /// # Errors
    /// The last reason the connection failed (or that the node has no relay).
    pub async fn relay_ready(&self, timeout: Duration) -> Result<String, String> {
        let Some(mut rx) = self.relay.clone() else {
            return Err("this node serves through no relay".into());
        };
        let up = tokio::time::timeout(timeout, async {
            loop {
                if let super::relay::LinkState::Up(url) = &*rx.borrow_and_update() {
                    return Some(url.clone());
                }
                rx.changed().await.ok()?;
            }
        })
        .await;
        match up {
            Ok(Some(url)) => Ok(url),
            _ => match &*rx.borrow() {
                super::relay::LinkState::Down(Some(why)) => Err(why.clone()),
                _ => Err(format!("not connected to the relay within {timeout:?}")),
            },
        }
    }

    /// Stop accepting, close every session and wait for the accept loop to end (a session stuck in a long
    /// computation is given half a second, then left to the process's exit).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Start the owner node on `listen` (port 0 picks a free port).
///
/// # Errors
/// Notably when another node serves the same owner directory ([`crate::home::ServeLock`]), or the address is
/// taken.
pub async fn spawn(cfg: ServeConfig, listen: SocketAddr) -> Result<RunningNode, Error> {
    let lock = crate::home::ServeLock::take(&cfg.owner_dir)?;
    failpoints_from_env();
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let key = Arc::new(node_key(&cfg.owner_dir)?);
    // Fail early on a broken policy or store.
    Owner::open(&cfg.owner_dir, cfg.sync, DatasetCache::default())?.policy()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let changes = spawn_change_watcher(cfg.owner_dir.clone(), shutdown_rx.clone())?;
    let signing_key = super::signer::NodeSigner::load_or_create(&super::signer::signing_key_path(
        &cfg.owner_dir,
    ))?
    .public_hex();
    crate::store::bound_memory(SQLITE_SOFT_HEAP_LIMIT)?;
    let handshake_db = std::sync::Mutex::new(Store::open(&cfg.owner_dir, cfg.sync)?);
    let gate = Gate::new(GateLimits::new(cfg.max_pending, cfg.max_connections));
    let shared = Arc::new(Shared {
        handshake_db,
        gate,
        principals: Default::default(),
        write_turn: tokio::sync::Mutex::new(()),
        signing_key,
        cfg,
        key,
        cache: DatasetCache::default(),
        changes,
        stopping: shutdown_rx.clone(),
    });
    let relay = shared.cfg.relay.clone().map(|target| {
        let (state, rx) = watch::channel(super::relay::LinkState::Down(None));
        tokio::spawn(super::relay::run(
            target,
            shared.clone(),
            state,
            shutdown_rx.clone(),
        ));
        rx
    });
    let task = tokio::spawn(accept_loop(listener, shared, shutdown_rx));
    Ok(RunningNode {
        addr,
        shutdown: shutdown_tx,
        task,
        relay,
        _lock: lock,
    })
}

/// Test builds only (feature `failpoints`): arm the failpoints named in `DUO_TEST_FAILPOINTS`
/// (`name=action;name=action`, actions as the `fail` crate reads them, e.g. `owner::cost_preview=sleep(60000)`),
/// so that a test can slow a `duo owner serve` process down where it wants. Without the feature the failpoints
/// are compiled out and the variable is never read.
fn failpoints_from_env() {
    #[cfg(feature = "failpoints")]
    if let Ok(spec) = std::env::var("DUO_TEST_FAILPOINTS") {
        for one in spec.split(';').filter(|s| !s.trim().is_empty()) {
            if let Some((name, action)) = one.split_once('=') {
                let _ = fail::cfg(name.trim(), action.trim());
            }
        }
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: ServeConfig,
    pub(crate) signing_key: String,
    pub(crate) key: Arc<Keypair>,
    pub(crate) cache: DatasetCache,
    pub(crate) changes: watch::Receiver<u64>,
    /// One connection for the handshakes' short look-ups, so an unauthenticated peer opens nothing.
    pub(crate) handshake_db: std::sync::Mutex<Store>,
    /// The admission of connections: unauthenticated ones, sessions, all.
    pub(crate) gate: Arc<Gate>,
    pub(crate) principals: std::sync::Mutex<HashMap<String, PrincipalUse>>,
    /// Taken around a session's write transaction (see the request handler).
    pub(crate) write_turn: tokio::sync::Mutex<()>,
    /// Changes to `true` when the node stops (sessions started outside the accept loop watch it).
    pub(crate) stopping: watch::Receiver<bool>,
}

impl Shared {
    /// Report an event to whoever listens ([`ServeConfig::events`]); dropped if they fall behind.
    pub(crate) fn event(&self, event: NodeEvent) {
        if let Some(sink) = &self.cfg.events {
            let _ = sink.try_send(event);
        }
    }

    /// Apply `f` to a principal's counters.
    pub(crate) fn with_use<R>(
        &self,
        principal: &str,
        f: impl FnOnce(&mut PrincipalUse) -> R,
    ) -> Option<R> {
        let mut map = self.principals.lock().ok()?;
        Some(f(map.entry(principal.to_string()).or_default()))
    }

    /// Whether a limit event should be logged now (at most once a minute per principal and limit).
    pub(crate) fn should_log(&self, principal: &str, limit: &'static str) -> bool {
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

impl Shared {
    /// A request's events: what was asked, and what became of it at once.
    pub(crate) fn show_request(&self, principal: &str, view: &crate::proto::request::RequestView) {
        if self.cfg.events.is_none() {
            return;
        }
        let kind = serde_json::to_value(view.backend)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.event(NodeEvent::asked(principal, view.id, &kind, &view.reason));
        let outcome = match view.state {
            crate::proto::request::RequestState::Pending => "queued",
            crate::proto::request::RequestState::Approved => "answered",
            crate::proto::request::RequestState::Denied => "refused",
        };
        self.event(NodeEvent::Outcome {
            principal: principal.to_string(),
            request: view.id,
            outcome,
        });
    }
}

/// A session as the owner sees it: shown connected (and paired, for a pairing) when made, disconnected when
/// dropped.
pub(crate) struct Shown {
    shared: Arc<Shared>,
    principal: String,
}

impl Shown {
    /// The session of `principal`, opened with `mode`.
    pub(crate) fn connected(
        shared: &Arc<Shared>,
        principal: &str,
        mode: &crate::net::transport::Mode,
    ) -> Shown {
        let principal = principal.to_string();
        if matches!(mode, crate::net::transport::Mode::Pair { .. }) {
            shared.event(NodeEvent::Paired {
                principal: principal.clone(),
            });
        }
        shared.event(NodeEvent::Connected {
            principal: principal.clone(),
        });
        Shown {
            shared: shared.clone(),
            principal,
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.shared.event(NodeEvent::Disconnected {
            principal: std::mem::take(&mut self.principal),
        });
    }
}

/// Releases a principal's session slot when the session ends.
pub(crate) struct SessionSlot {
    pub(crate) shared: Arc<Shared>,
    pub(crate) principal: String,
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
    let conn = Store::open(&owner_dir, Sync::Normal)?;
    tokio::task::spawn_blocking(move || {
        let mut last: i64 = -1;
        loop {
            if *shutdown.borrow_and_update() || tx.is_closed() {
                return;
            }
            if let Ok(v) = conn.data_version() {
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
    let mut sessions = tokio::task::JoinSet::new();
    let mut pressure = tokio::time::interval(Duration::from_secs(1));
    let mut reported: Option<tokio::time::Instant> = None;
    let started = tokio::time::Instant::now();
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
                let Some(admission) = shared.gate.admit() else {
                    // Over the cap on all connections: say so in the one write the socket takes now, and close.
                    let _ = tcp.try_write(crate::net::transport::BUSY_HTTP_RESPONSE);
                    drop(tcp);
                    continue;
                };
                let shared = shared.clone();
                let mut stop = shutdown.clone();
                sessions.spawn(async move {
                    tokio::select! {
                        _ = super::session::session(tcp, peer, shared, admission) => {}
                        _ = stop.changed() => {}
                    }
                });
            }
            _ = pressure.tick() => {
                let due = reported.is_none_or(|t| t.elapsed() >= shared.cfg.pressure_every);
                if due && shared.gate.under_pressure() {
                    let since = reported.unwrap_or(started);
                    reported = Some(tokio::time::Instant::now());
                    report_pressure(&shared, since.elapsed().as_secs().max(1));
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    // Sessions stop at their next await; one stuck in a long computation is left to the process's exit
    // rather than holding the shutdown up.
    sessions.abort_all();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    sessions.detach_all();
}

/// How long a shutdown waits for the sessions to end before leaving the rest to the process's exit.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Tell the owner (events) and the audit log that connections were dropped, with the counts since the last
/// report.
fn report_pressure(shared: &Arc<Shared>, seconds: u64) {
    let dropped = shared.gate.take_pressure();
    shared.event(NodeEvent::Pressure { dropped, seconds });
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(mut db) = shared.handshake_db.lock() else {
            return;
        };
        let body = serde_json::json!({
            "seconds": seconds,
            "evicted": dropped.evicted,
            "refused": dropped.refused,
            "timed_out": dropped.timed_out,
            "sessions_full": dropped.sessions_full,
        });
        let logged = db.write().and_then(|tx| {
            tx.append_log("connections_dropped", None, &body)?;
            tx.commit()
        });
        drop(logged);
    });
}

/// Log that a principal hit a limit (at most once a minute per principal and limit).
pub(crate) async fn log_limit(
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
        let tx = o.store_mut().write()?;
        tx.append_log(
            "limit_exceeded",
            Some(&p),
            &serde_json::json!({ "limit": limit }),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await;
}

pub(crate) fn limit_error(what: &str) -> ServerMsg {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_counts_to_its_limit_in_bounded_memory() {
        let mut w = RateWindow::default();
        assert!((0..3).all(|_| within_rate(&mut w, 3)));
        assert!(!within_rate(&mut w, 3), "the fourth in the hour is refused");
        // A high limit: a hundred thousand events in the same second take one counter, not one timestamp each.
        let mut w = RateWindow::default();
        assert!((0..100_000).all(|_| within_rate(&mut w, usize::MAX)));
        assert!(w.seconds.len() <= 2, "{} counters", w.seconds.len());
        assert_eq!(w.total, 100_000);
    }

    #[test]
    fn events_show_fi_text_neutralised_and_short() {
        let e = NodeEvent::asked(
            "Acme Bank",
            7,
            "dp",
            &format!("rent\u{202E}evil{}", "x".repeat(200)),
        );
        let line = e.to_string();
        assert!(
            line.starts_with("Acme Bank asked #7 (dp): \"rent<U+202E>"),
            "{line}"
        );
        assert!(!line.contains('\u{202E}'));
        assert!(line.chars().count() < 120, "{line}");
    }
}
