//! `duo bench load`: a bounded load test on loopback. An owner node (`duo owner serve`, its own process) and
//! many FI sessions in this process, each issuing auto-approved releases (the first one a fresh release, the
//! rest the same question answered from the store with a new request, decision, log entries and signed
//! receipt each time) for a fixed time; latency percentiles from an HDR histogram.

use super::measure::Micros;
use crate::cli::out::errln;
use anyhow::{bail, Result};
use duo::node::fi::{Client, Pointer};
use duo::policies::Backend;
use duo_testkit::owner::BENCH_SEED;
use duo_testkit::policy::CATALOGUE_APPROVE;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `duo bench load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Concurrent FI sessions (one paired principal each).
    #[arg(long, default_value_t = 64)]
    pub sessions: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// How the owner's store syncs commits.
    #[arg(long, default_value = "normal", value_parser = ["full", "normal"])]
    pub sync: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Concurrent sessions.
    pub sessions: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Releases answered.
    pub releases: u64,
    /// Releases per second.
    pub releases_per_sec: f64,
    /// Median latency (nearest rank), microseconds.
    pub p50_us: u64,
    /// 99th percentile latency (nearest rank), microseconds.
    pub p99_us: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Resident memory of the owner node's process each second, KiB.
    pub owner_rss_kib: Vec<u64>,
}

/// The resident memory of process `pid`, KiB (0 when unknown, as off Linux).
pub(super) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl LoadReport {
    /// The report as text: the totals, the owner's memory, and its memory every 10 s.
    pub fn text(&self) -> String {
        let rss = &self.owner_rss_kib;
        let (first, last, max) = (
            rss.first().copied().unwrap_or(0),
            rss.last().copied().unwrap_or(0),
            rss.iter().copied().max().unwrap_or(0),
        );
        // After the first third (the warm-up): how far memory moved.
        let warm = rss.get(rss.len() / 3).copied().unwrap_or(0);
        let samples: Vec<String> = rss
            .iter()
            .enumerate()
            .filter(|(s, _)| s % 10 == 0 || *s + 1 == rss.len())
            .map(|(s, kib)| format!("{s} s {kib}"))
            .collect();
        format!(
            "{} sessions, {:.1} s: {} releases, {:.0} releases/s, p50 {} us, p99 {} us, {} errors\n\
             owner node memory: {} KiB at start, {} KiB at end, {} KiB at most; {:+} KiB from {} s (after \
             warm-up) to the end\n\
             owner node memory (KiB) by second: {}",
            self.sessions,
            self.seconds,
            self.releases,
            self.releases_per_sec,
            self.p50_us,
            self.p99_us,
            self.errors,
            first,
            last,
            max,
            last as i64 - warm as i64,
            rss.len() / 3,
            samples.join(", ")
        )
    }
}

/// Run the load test.
pub async fn load(args: LoadArgs) -> Result<LoadReport> {
    if args.sessions == 0 || args.sessions > 1024 {
        bail!("--sessions must be between 1 and 1024");
    }
    if args.seconds == 0 || args.seconds > 3600 {
        bail!("--seconds must be between 1 and 3600");
    }
    let tmp = tempfile::Builder::new().prefix("duo-load-").tempdir()?;
    let dir = duo_testkit::sample_owner(
        tmp.path(),
        CATALOGUE_APPROVE,
        BENCH_SEED,
        duo::engine::sample::Profile::Reliable,
    )?;
    let (mut child, url) = serve(tmp.path(), &args).await?;
    let pid = child.id().unwrap_or(0);
    if !args.json {
        errln!("pairing {} FI sessions...", args.sessions);
    }
    let mut clients = Vec::new();
    for i in 0..args.sessions {
        let fi_dir = tmp.path().join(format!("fi-{i}"));
        let mut c =
            duo_testkit::fi::pair_and_connect(&dir, &url, &format!("FI {i}"), &fi_dir).await?;
        let p = c.expr("rent_on_time_ratio_12m()").await?;
        clients.push((c, p));
    }
    if !args.json {
        errln!("running for {} s...", args.seconds);
    }
    let run = drive(clients, &args, pid).await?;
    let _ = child.kill().await;
    let releases = run.latency.len();
    Ok(LoadReport {
        sessions: args.sessions,
        seconds: run.seconds,
        releases,
        releases_per_sec: releases as f64 / run.seconds,
        p50_us: run.latency.quantile(0.5),
        p99_us: run.latency.quantile(0.99),
        errors: run.errors,
        owner_rss_kib: run.rss,
    })
}

/// Start the owner node as its own process (`duo owner serve` on a free port), so that its memory is measured
/// alone; it allows the load (no per-principal rate limit gets in the way). The process and its URL.
async fn serve(home: &Path, args: &LoadArgs) -> Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(home)
        .args([
            "owner",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sync",
            &args.sync,
        ])
        .args(["--requests-per-hour", &usize::MAX.to_string()])
        .args(["--max-connections", &(args.sessions + 16).to_string()])
        .arg("--quiet")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let url = super::node_url(&mut child).await?;
    Ok((child, url))
}

/// What the sessions did in the measured time.
struct Run {
    /// Seconds from the first request to the stop.
    seconds: f64,
    /// Latency of every answered release.
    latency: Micros,
    /// Requests that failed.
    errors: u64,
    /// The owner node's resident memory each second, KiB.
    rss: Vec<u64>,
}

/// Every session asks for releases in a loop for `args.seconds`, recording its latencies; meanwhile the owner
/// node's memory (process `pid`) is read each second.
async fn drive(clients: Vec<(Client, Pointer)>, args: &LoadArgs, pid: u32) -> Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut c, p) in clients {
        let stop = stop.clone();
        let errors = errors.clone();
        tasks.spawn(async move {
            let mut latency = Micros::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.request(&p, Backend::Plaintext, "load test").await {
                    Ok(v) if v.answer.is_some() => latency.record(&t.elapsed()),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            c.close().await;
            latency
        });
    }
    let mut rss = vec![rss_kib(pid)];
    for s in 0..args.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(rss_kib(pid));
        if !args.json && (s + 1) % 10 == 0 {
            errln!("  {} s, owner node rss {} KiB", s + 1, rss_kib(pid));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let mut latency = Micros::new();
    while let Some(r) = tasks.join_next().await {
        latency.merge(&r?);
    }
    Ok(Run {
        seconds,
        latency,
        errors: errors.load(Ordering::Relaxed),
        rss,
    })
}
