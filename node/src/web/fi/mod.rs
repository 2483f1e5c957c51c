//! The FI's web UI, `duo fi ui`: the same listener and guard as the owner's (see [`super`]), on the FI's own
//! code only: [`crate::fi`] (its home, its client, pairing, model files) and [`crate::proto`]. Every screen does
//! what an FI command does (each action opens a session with the paired owner node, does one thing and closes
//! it) and shows it in the command's own words ([`FiWords`]).

mod pages;

use super::{serve, RunningUi};
use crate::error::Error;
use crate::fi::{PairingRecord, Pointer, ScoreReport};
use crate::proto::request::RequestView;
use crate::proto::ServerMsg;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// How the FI's UI puts things into words: the FI commands' own functions, so both say the same.
#[derive(Clone, Copy)]
pub struct FiWords {
    /// A new pairing, as `duo fi pair` reports it.
    pub paired: fn(&PairingRecord) -> String,
    /// A request and its answer, as `duo fi request` / `duo fi result` print it.
    pub request: fn(&RequestView) -> String,
    /// One DP release's preview (the pointer and the node's `Cost` reply), as `duo fi cost` prints it.
    pub cost: fn(&Pointer, &ServerMsg) -> String,
    /// A scoring run's progress line, as `duo fi score` prints it.
    pub score_progress: fn(&str) -> String,
    /// What a scoring run gave (the report, this FI's name, where the commitment's opening is kept), as
    /// `duo fi score` prints it.
    pub score_report: fn(&ScoreReport, &str, Option<&Path>) -> String,
}

impl std::fmt::Debug for FiWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FiWords")
    }
}

/// Settings of the FI's UI.
#[derive(Debug, Clone)]
pub struct FiUiConfig {
    /// The FI home (`HOME/fi`).
    pub fi_dir: PathBuf,
    /// Where to listen: 127.0.0.1 or `[::1]` (port 0 picks a free port); anything else is refused.
    pub listen: SocketAddr,
    /// The wording.
    pub words: FiWords,
}

impl FiUiConfig {
    /// Defaults for an FI home: 127.0.0.1, a free port.
    pub fn new(fi_dir: &Path, words: FiWords) -> Self {
        FiUiConfig {
            fi_dir: fi_dir.to_path_buf(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            words,
        }
    }
}

/// The file in the FI home where a running `duo fi ui` writes its address (mode 0600, removed when it stops).
pub fn address_file(fi_dir: &Path) -> PathBuf {
    fi_dir.join("ui.url")
}

/// Start the FI's UI.
pub async fn spawn_fi(cfg: FiUiConfig) -> Result<RunningUi, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    serve(cfg.listen, "fi", stop, move |keys| {
        Ok(pages::router(Arc::new(pages::State::new(cfg, keys))))
    })
    .await
}
