//! `duo fi ui`: the FI's web UI on the loopback interface, with the FI commands' own wording.

use super::super::show;
use super::release;
use crate::cli::out::{errln, outln};
use anyhow::{Context, Result};
use duo::node::fi::{self as client, FiHome};
use duo::node::web::{self, FiUiConfig, FiWords, RunningUi};
use std::net::SocketAddr;
use std::path::Path;

/// The FI commands' wording, which the UI shows too.
pub const WORDS: FiWords = FiWords {
    paired: super::paired_words,
    request: show::request,
    cost: release::cost_words,
    score_progress: show::score_progress,
    score_report: show::score_report,
};

/// Start the FI's UI on `listen` and write its address to the FI home (mode 0600).
pub async fn start(home: &Path, listen: SocketAddr) -> Result<RunningUi> {
    let dir = client::fi_dir(home);
    // The home exists (its key made) before the first page asks for it.
    FiHome::new(&dir).key()?;
    let mut cfg = FiUiConfig::new(&dir, WORDS);
    cfg.listen = listen;
    let ui = web::spawn_fi(cfg).await?;
    let file = web::fi::address_file(&dir);
    duo::node::home::write_private(&file, format!("{}\n", ui.url()).as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(ui)
}

/// Stop the UI and remove its address file.
pub async fn stop(home: &Path, ui: RunningUi) {
    let _ = std::fs::remove_file(web::fi::address_file(&client::fi_dir(home)));
    ui.shutdown().await;
}

/// `duo fi ui`: serve until Ctrl-C.
pub async fn run(home: &Path, listen: SocketAddr) -> Result<i32> {
    web::check_listen(listen)?;
    let ui = start(home, listen).await?;
    outln!("{}", ui.url())?;
    errln!(
        "FI UI: {}  (open it in a browser; Ctrl-C to stop)",
        ui.url()
    );
    crate::cli::owner::shutdown_signal().await;
    errln!("stopping");
    stop(home, ui).await;
    Ok(0)
}
