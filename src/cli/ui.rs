//! The owner's web UI as `duo owner serve` runs it (`--ui`, `--no-ui`) and `duo owner ui` finds it.

use super::show;
use crate::cli::out::{errln, outln};
use anyhow::{Context, Result};
use duo::node::store;
use duo::node::web::{self, RunningUi, UiConfig, Words};
use std::net::SocketAddr;
use std::path::Path;

/// The command line's wording, which the UI shows too.
pub const WORDS: Words = Words {
    pending: show::pending,
    request: show::request,
    log_summary: log_words,
    amount: super::budget::with_equivalent,
};

/// What a log entry records, as `duo owner log` says it.
fn log_words(e: &duo::node::store::LogEntry, ty: Option<&duo_engine::Type>) -> String {
    show::log_summary_typed(&e.kind, &e.body, ty)
}

/// Start the UI on `listen` and write its address to the owner directory (mode 0600); `None` with `--no-ui`.
pub async fn start(
    dir: &Path,
    listen: Option<SocketAddr>,
    sync: store::Sync,
) -> Result<Option<RunningUi>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let mut cfg = UiConfig::new(dir, WORDS);
    cfg.listen = listen;
    cfg.sync = sync;
    let ui = web::spawn(cfg).await?;
    let file = web::address_file(dir);
    duo::node::home::write_private(&file, format!("{}\n", ui.url()).as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    errln!("owner UI: {}  (`duo owner ui` prints it again)", ui.url());
    Ok(Some(ui))
}

/// Stop the UI and remove its address file.
pub async fn stop(dir: &Path, ui: Option<RunningUi>) {
    if let Some(ui) = ui {
        let _ = std::fs::remove_file(web::address_file(dir));
        ui.shutdown().await;
    }
}

/// `duo owner ui`: the running node's UI address.
pub fn print_address(home: &Path) -> Result<i32> {
    let dir = duo::node::owner::owner_dir(home);
    match std::fs::read_to_string(web::address_file(&dir)) {
        Ok(url) => {
            outln!("{}", url.trim())?;
            Ok(0)
        }
        Err(_) => {
            errln!("no owner UI is running: start the node with `duo owner serve` (its UI is on unless --no-ui)");
            Ok(1)
        }
    }
}
