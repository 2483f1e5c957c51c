//! The owner's web UI: a second listener of `duo owner serve`, on the loopback interface only, rendering the
//! same views the command line prints (the same [`Owner`](crate::owner::Owner) methods, the same wording) as
//! pages, with a live queue of requests over server-sent events.
//!
//! Who may use it (`guard.rs`): whoever holds the per-launch secret in the printed address, exchanged on first
//! use for an HttpOnly, SameSite=Strict cookie; requests must name the UI by one of its loopback host names
//! (against DNS rebinding); state-changing requests and the event stream must come from the UI's own origin,
//! and forms carry a CSRF token. Every response carries a strict Content-Security-Policy. Pages are askama
//! templates (checked at compile time, HTML-escaped); the one script and the style sheet are compiled in.

mod common;
mod data;
pub mod fi;
mod guard;
mod pages;

pub use fi::{spawn_fi, FiUiConfig, FiWords};

use crate::error::Error;
use crate::owner::view::PendingView;
use crate::proto::request::RequestView;
use crate::store::{LogEntry, Store, Sync};
use duo_engine::Type;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How the UI puts the node's records into words: the command line's own functions, so a person reads the same
/// sentences in both.
#[derive(Clone, Copy)]
pub struct Words {
    /// A pending request, as `duo owner requests` prints it.
    pub pending: fn(&PendingView) -> String,
    /// A decided request, as `duo owner approve` / `deny` print it.
    pub request: fn(&RequestView) -> String,
    /// What one log entry records, in the words `duo owner log` uses for it (given the type of the request a
    /// release answers, so money reads as dollars).
    pub log_summary: fn(&LogEntry, Option<&Type>) -> String,
    /// A privacy amount, as `duo owner budget` prints it (on a zCDP node with its epsilon equivalent).
    pub amount: fn(duo_policies::Amount, duo_policies::Measure) -> String,
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Words")
    }
}

/// Settings of the owner's UI.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// The owner directory.
    pub owner_dir: PathBuf,
    /// How commits are synced.
    pub sync: Sync,
    /// Where to listen: 127.0.0.1 or `[::1]` (port 0 picks a free port); anything else is refused.
    pub listen: SocketAddr,
    /// The wording of requests and log entries.
    pub words: Words,
}

impl UiConfig {
    /// Defaults for an owner directory: 127.0.0.1, a free port, commits synced in full.
    pub fn new(owner_dir: &Path, words: Words) -> Self {
        UiConfig {
            owner_dir: owner_dir.to_path_buf(),
            sync: Sync::Full,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            words,
        }
    }
}

/// A running UI. Dropping it does not stop it; call [`RunningUi::shutdown`].
pub struct RunningUi {
    /// The address it listens on.
    pub addr: SocketAddr,
    secret: String,
    shutdown: watch::Sender<bool>,
    stop_watcher: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningUi {
    /// The address to open, with the per-launch secret: `http://127.0.0.1:PORT/?k=SECRET`.
    pub fn url(&self) -> String {
        format!("http://{}/?k={}", self.addr, self.secret)
    }

    /// Stop serving and wait for the server to end.
    pub async fn shutdown(self) {
        self.stop_watcher.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The file in the owner directory where a running `duo owner serve` writes its UI address (mode 0600,
/// removed when it stops); `duo owner ui` reads it.
pub fn address_file(owner_dir: &Path) -> PathBuf {
    owner_dir.join("ui.url")
}

/// Refuse any listening address but 127.0.0.1 and `[::1]`: the UI is for the person at this computer.
pub fn check_listen(listen: SocketAddr) -> Result<(), Error> {
    match listen.ip() {
        IpAddr::V4(ip) if ip == Ipv4Addr::LOCALHOST => Ok(()),
        IpAddr::V6(ip) if ip == Ipv6Addr::LOCALHOST => Ok(()),
        other => Err(Error::Refused(format!(
            "the UI listens on 127.0.0.1 or [::1] only, not {other}: it is for the person at this computer \
             (use --ui 127.0.0.1:PORT, or --no-ui)"
        ))),
    }
}

/// Start the owner's UI.
pub async fn spawn(cfg: UiConfig) -> Result<RunningUi, Error> {
    let stop_watcher = Arc::new(AtomicBool::new(false));
    let stop = stop_watcher.clone();
    serve(cfg.listen, "owner", stop_watcher, move |keys| {
        let changes = watch_store(&cfg.owner_dir, stop)?;
        Ok(pages::router(Arc::new(pages::State::new(
            cfg, keys, changes,
        ))))
    })
    .await
}

/// What both UIs share: refuse a listening address off the loopback interface, bind, make the per-launch keys
/// for `who`'s UI (`owner` or `fi`), build the routes with them and serve until [`RunningUi::shutdown`].
/// `stop_watcher` is set at shutdown, for any background task the UI started.
async fn serve(
    listen: SocketAddr,
    who: &'static str,
    stop_watcher: Arc<AtomicBool>,
    app: impl FnOnce(guard::Keys) -> Result<axum::Router, Error>,
) -> Result<RunningUi, Error> {
    check_listen(listen)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let keys = guard::Keys::generate(addr.port(), who);
    let secret = keys.secret.clone();
    let app = app(keys)?;
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            })
            .await;
    });
    Ok(RunningUi {
        addr,
        secret,
        shutdown: shutdown_tx,
        stop_watcher,
        task,
    })
}

/// Watch the store for commits from any process (FI sessions, the command line, this UI) and bump a counter:
/// the event stream's trigger. SQLite's `data_version` on a connection of its own, read every 100 ms.
fn watch_store(owner_dir: &Path, stop: Arc<AtomicBool>) -> Result<watch::Receiver<u64>, Error> {
    let (tx, rx) = watch::channel(0u64);
    let conn = Store::open(owner_dir, Sync::Normal)?;
    tokio::task::spawn_blocking(move || {
        let mut last = None;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(v) = conn.data_version() {
                if last.is_some_and(|l| l != v) {
                    tx.send_modify(|n| *n += 1);
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    Ok(rx)
}
