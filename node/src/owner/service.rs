//! The service FIs connect to: the listener, limits per principal, and the state a node's sessions share.

use super::{node_key, DatasetCache, Owner};
use crate::error::Error;
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
use tokio::sync::{watch, Semaphore};

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
pub(crate) struct PrincipalUse {
    pub(crate) sessions: usize,
    pub(crate) views: std::collections::VecDeque<std::time::Instant>,
    pub(crate) requests: std::collections::VecDeque<std::time::Instant>,
    pub(crate) last_logged: HashMap<&'static str, std::time::Instant>,
}

/// Count one event in a sliding one-hour window; false when the window is full.
pub(crate) fn within_rate(
    window: &mut std::collections::VecDeque<std::time::Instant>,
    max: usize,
) -> bool {
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
    let signing_key = super::signer::NodeSigner::load_or_create(&super::signer::signing_key_path(
        &cfg.owner_dir,
    ))?
    .public_hex();
    let handshake_db = std::sync::Mutex::new(Store::open(&cfg.owner_dir, cfg.sync)?);
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

pub(crate) struct Shared {
    pub(crate) cfg: ServeConfig,
    pub(crate) signing_key: String,
    pub(crate) key: Arc<Keypair>,
    pub(crate) cache: DatasetCache,
    pub(crate) changes: watch::Receiver<u64>,
    /// One connection for the handshakes' short look-ups, so an unauthenticated peer opens nothing.
    pub(crate) handshake_db: std::sync::Mutex<Store>,
    pub(crate) handshakes: Arc<Semaphore>,
    pub(crate) principals: std::sync::Mutex<HashMap<String, PrincipalUse>>,
    /// Taken around a session's write transaction (see the request handler).
    pub(crate) write_turn: tokio::sync::Mutex<()>,
}

impl Shared {
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
                        _ = super::session::session(tcp, peer, shared) => {}
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
