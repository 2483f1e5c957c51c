//! `duo bench relay`: the relay's memory per idle owner connection.

use super::load::rss_kib;
use anyhow::{bail, Context, Result};
use clap::Args;
use duo::node::net::keys::Keypair;
use duo::node::net::transport::{self, Limits, Mode};
use duo::node::relay::{ControlMsg, RelayTarget, CONTROL_PATH};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Options of `duo bench relay`.
#[derive(Args, Debug)]
pub struct RelayBenchArgs {
    /// Idle owner control connections to hold at the relay.
    #[arg(long, default_value_t = 200)]
    owners: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `duo bench relay` measured.
#[derive(Debug, Serialize)]
pub struct RelayReport {
    /// Owner control connections held (each a Noise-authenticated owner with its own key).
    pub owners: usize,
    /// The relay process's resident memory with no owner, KiB.
    pub rss_idle_kib: u64,
    /// Its resident memory with all the owners connected and idle, KiB.
    pub rss_owners_kib: u64,
    /// (rss_owners - rss_idle) / owners, KiB.
    pub kib_per_owner: f64,
    /// Time to connect all the owners (handshake and `ready` each), ms.
    pub connect_ms: u128,
}

impl RelayReport {
    /// The report as text.
    pub fn text(&self) -> String {
        format!(
            "relay memory: {} KiB with no owner, {} KiB with {} idle owner connections: {:.1} KiB per owner \
             connection ({} owners connected in {} ms)\n",
            self.rss_idle_kib,
            self.rss_owners_kib,
            self.owners,
            self.kib_per_owner,
            self.owners,
            self.connect_ms
        )
    }
}

/// Start `duo relay` as a child process, measure its memory, connect the owners, measure again.
pub async fn relay(args: RelayBenchArgs) -> Result<RelayReport> {
    if args.owners == 0 || args.owners > 5000 {
        bail!("--owners must be between 1 and 5000");
    }
    let tmp = tempfile::Builder::new().prefix("duo-relay-").tempdir()?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(tmp.path())
        .args(["relay", "--listen", "127.0.0.1:0", "--every", "3600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let out = child.stdout.take().context("the relay's output")?;
    let pin = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::io::BufReader::new(out).lines().next_line().await
    })
    .await
    .context("the relay did not print its address within 10 s")??
    .context("the relay printed nothing")?;
    let target = RelayTarget::parse(&pin)?;
    let pid = child.id().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kib = rss_kib(pid);
    let url = format!("{}{CONTROL_PATH}", target.url);
    let start = Instant::now();
    let mut held = Vec::with_capacity(args.owners);
    for chunk in (0..args.owners).collect::<Vec<_>>().chunks(16) {
        let mut batch = tokio::task::JoinSet::new();
        for _ in chunk {
            let (url, fp) = (url.clone(), target.fingerprint.clone());
            batch.spawn(async move {
                let key = Keypair::generate();
                let mut chan =
                    transport::connect(&url, &key, Mode::Session, None, &fp, &Limits::default())
                        .await?;
                let ready = chan.recv().await?.unwrap_or_default();
                match serde_json::from_slice::<ControlMsg>(&ready) {
                    Ok(ControlMsg::Ready { .. }) => Ok(chan),
                    _ => Err(anyhow::anyhow!("the relay did not say ready")),
                }
            });
        }
        while let Some(done) = batch.join_next().await {
            held.push(done??);
        }
    }
    let connect_ms = start.elapsed().as_millis();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_owners_kib = rss_kib(pid);
    drop(held);
    let _ = child.kill().await;
    Ok(RelayReport {
        owners: args.owners,
        rss_idle_kib,
        rss_owners_kib,
        kib_per_owner: rss_owners_kib.saturating_sub(rss_idle_kib) as f64 / args.owners as f64,
        connect_ms,
    })
}
