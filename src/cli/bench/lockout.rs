//! `duo bench lockout`: a paired FI's commands while a flood of connections that never authenticate holds the
//! owner node's door (issue 10, item 1). An owner node (`duo owner serve`, its own process, so that its memory
//! is measured alone) and, in this process, the flood ([`duo_testkit::attack`]: silent TCP connections,
//! upgrades trickled a byte a second, half-finished WebSocket upgrades, each re-opened when closed) and one
//! paired FI running `duo fi datasets` (a session of its own, one `list_datasets`) one after another. Reports
//! the share of commands that succeeded, their latency percentiles, the owner's memory, and what the owner
//! printed about the pressure.

use super::load::rss_kib;
use super::measure::Micros;
use crate::cli::out::errln;
use anyhow::{bail, Result};
use duo::node::fi::{Client, FiHome};
use duo_testkit::attack::{Attack, AttackShape};
use duo_testkit::owner::BENCH_SEED;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Options of `duo bench lockout`.
#[derive(clap::Args, Debug, Clone)]
pub struct LockoutArgs {
    /// Silent TCP connections held.
    #[arg(long, default_value_t = 300)]
    pub silent: usize,
    /// Connections trickling their upgrade request a byte a second.
    #[arg(long, default_value_t = 40)]
    pub trickling: usize,
    /// Half-finished WebSocket upgrades held.
    #[arg(long, default_value_t = 300)]
    pub half_upgrades: usize,
    /// How long the FI runs commands under the flood, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a lockout run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LockoutReport {
    /// Silent, trickling and half-upgraded connections held.
    pub flood: [usize; 3],
    /// Connections the flood opened in all (re-opened ones included).
    pub flood_connections: u64,
    /// FI commands run under the flood.
    pub commands: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Median latency of the successful commands, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency (nearest rank), microseconds.
    pub p99_us: u64,
    /// Median latency of 20 commands before the flood, microseconds.
    pub quiet_p50_us: u64,
    /// The first few errors the FI saw.
    pub errors: Vec<String>,
    /// Resident memory of the owner node's process each second under the flood, KiB.
    pub owner_rss_kib: Vec<u64>,
    /// The owner's pressure warnings, as printed by `duo owner serve`.
    pub owner_warnings: Vec<String>,
}

impl LockoutReport {
    /// The report as text.
    pub fn text(&self) -> String {
        let rss = &self.owner_rss_kib;
        let pct = if self.commands == 0 {
            0.0
        } else {
            100.0 * self.succeeded as f64 / self.commands as f64
        };
        let mut s = format!(
            "flood: {} silent, {} trickling, {} half-upgraded connections ({} opened in all)\n\
             FI commands under the flood: {} of {} succeeded ({pct:.2}%), p50 {} us, p99 {} us \
             (before the flood: p50 {} us)\n\
             owner node memory: {} KiB at the start of the flood, {} KiB at its end, {} KiB at most",
            self.flood[0],
            self.flood[1],
            self.flood[2],
            self.flood_connections,
            self.succeeded,
            self.commands,
            self.p50_us,
            self.p99_us,
            self.quiet_p50_us,
            rss.first().copied().unwrap_or(0),
            rss.last().copied().unwrap_or(0),
            rss.iter().copied().max().unwrap_or(0),
        );
        for w in self.owner_warnings.iter().take(3) {
            s.push_str(&format!("\nowner printed: {w}"));
        }
        for e in &self.errors {
            s.push_str(&format!("\nFI error: {e}"));
        }
        s
    }
}

/// One `duo fi datasets`; its latency, or the error.
async fn one_command(home: &FiHome) -> Result<Duration, String> {
    let t = Instant::now();
    let call = async {
        let mut c = Client::connect(home, None).await?;
        c.datasets().await?;
        c.close().await;
        Ok::<_, duo::node::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(Ok(())) => Ok(t.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 30 s".into()),
    }
}

/// Run the lockout bench.
pub async fn lockout(args: LockoutArgs) -> Result<LockoutReport> {
    if args.seconds == 0 || args.seconds > 3600 {
        bail!("--seconds must be between 1 and 3600");
    }
    if args.silent + args.trickling + args.half_upgrades > 5000 {
        bail!("at most 5000 flood connections");
    }
    let tmp = tempfile::Builder::new().prefix("duo-lockout-").tempdir()?;
    let dir = duo_testkit::sample_owner(
        tmp.path(),
        duo_testkit::policy::CATALOGUE_APPROVE,
        BENCH_SEED,
        duo::engine::sample::Profile::Reliable,
    )?;
    let (mut child, url, warnings) = serve(tmp.path()).await?;
    let pid = child.id().unwrap_or(0);
    let fi = duo_testkit::fi::pair(&dir, &url, "Acme Bank", &tmp.path().join("fi")).await?;
    let mut quiet = Micros::new();
    for _ in 0..20 {
        if let Ok(d) = one_command(&fi).await {
            quiet.record(&d);
        }
    }
    let shape = AttackShape {
        silent: args.silent,
        trickling: args.trickling,
        half_upgrades: args.half_upgrades,
        reopen_after: Duration::from_secs(9),
    };
    let addr = url.trim_start_matches("ws://").parse()?;
    if !args.json {
        errln!(
            "flooding {url} and running FI commands for {} s...",
            args.seconds
        );
    }
    let attack = Attack::start(addr, shape);
    // The flood takes its places first.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut latency = Micros::new();
    let (mut commands, mut errors) = (0u64, Vec::new());
    let mut rss = vec![rss_kib(pid)];
    let start = Instant::now();
    let mut next_sample = Duration::from_secs(1);
    while start.elapsed() < Duration::from_secs(args.seconds) {
        commands += 1;
        match one_command(&fi).await {
            Ok(d) => latency.record(&d),
            Err(e) => errors.push(e),
        }
        if start.elapsed() >= next_sample {
            rss.push(rss_kib(pid));
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flood_connections = attack.opened();
    attack.stop().await;
    // The node reports pressure at most once a minute, within a second of it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = child.kill().await;
    let owner_warnings = warnings.lock().map(|w| w.clone()).unwrap_or_default();
    let failed = errors.len() as u64;
    errors.truncate(5);
    Ok(LockoutReport {
        flood: [args.silent, args.trickling, args.half_upgrades],
        flood_connections,
        commands,
        succeeded: commands - failed,
        p50_us: latency.quantile(0.5),
        p99_us: latency.quantile(0.99),
        quiet_p50_us: quiet.quantile(0.5),
        errors,
        owner_rss_kib: rss,
        owner_warnings,
    })
}

type Warnings = Arc<Mutex<Vec<String>>>;

/// `duo owner serve` on a free port: the process, its URL, and the warnings it prints.
async fn serve(home: &std::path::Path) -> Result<(tokio::process::Child, String, Warnings)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(home)
        .args([
            "owner",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sync",
            "normal",
        ])
        .arg("--quiet")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let url = super::node_url(&mut child).await?;
    let warnings: Warnings = Arc::default();
    if let Some(err) = child.stderr.take() {
        let sink = warnings.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("warning:") {
                    if let Ok(mut w) = sink.lock() {
                        w.push(l);
                    }
                }
            }
        });
    }
    Ok((child, url, warnings))
}
