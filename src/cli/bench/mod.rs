//! `duo bench ...`: measurements for researchers and operators. Progress goes to standard error, the report
//! to standard output (one JSON object with `--json`). `duo bench` alone runs the default set (the
//! measurements of `duo bench report`, printed and not written).

mod gc;
mod grid;
mod load;
mod lockout;
mod measure;
mod ot;
mod relay;
mod report;
mod score;
mod ui;

use super::{emit, runtime, JsonFlag};
use crate::cli::out::outln;
use anyhow::Result;
use clap::Subcommand;

/// `duo bench [SUBCOMMAND]`: one bench, or with none the default set.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// The bench to run; none runs the default set and prints a summary.
    #[command(subcommand)]
    pub cmd: Option<BenchCmd>,
    /// The default set's sizes and output.
    #[command(flatten)]
    pub set: report::SetArgs,
}

/// The benches.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// A researcher's report: DP error against epsilon (with the observed coverage of the predicted 95%
    /// interval), DP throughput beside OpenDP's pipeline, scoring latency and bytes against n, the request
    /// round trip and the load test; writes `report.json`, SVG plots and `report.md` into `--out`.
    ///
    /// About 40 s at the default sizes in a release build on 2 cores, about 12 s with `--quick`.
    Report(report::ReportArgs),
    /// A bounded load test on loopback: many FI sessions issuing auto-approved releases against one owner node.
    Load(load::LoadArgs),
    /// Pre-authentication lockout: a paired FI's commands while connections that never authenticate flood the
    /// owner node (silent, trickling, half-upgraded; each re-opened when closed), on loopback.
    ///
    /// Reports the share of the FI's commands that succeeded, their p50 and p99 latency, the owner node's
    /// memory, and the pressure warnings it printed.
    Lockout(lockout::LockoutArgs),
    /// Oblivious transfer: base-OT time and KOS extension rate.
    ///
    /// 128 Masny-Rindal base OTs, and KOS correlated-OT extension (with its consistency check) of 2^M OTs with
    /// and without the base OTs, in memory, one thread per party (owner = extension sender, FI = receiver;
    /// the FI's check pass after the challenge, while the owner waits, is split over the cores from 2^17 OTs
    /// on), with bytes on the wire. The base-OT time is wall time with the parties overlapping on two threads;
    /// the criterion bench `twopc/base_ot_one_thread` instead sums both parties' work on one thread.
    Ot(ot::OtArgs),
    /// Garbled circuits: garbling and evaluation rates.
    ///
    /// Half-gates garbling and evaluation in AND gates per second, one thread, for a wide layer of independent
    /// AND gates and for copies of the AES-128 circuit, with garbled-table bytes and the share of AND inputs
    /// whose hashing is shared across the gates of a layer.
    Gc(gc::GcArgs),
    /// Private credit scoring: latency and bytes on the wire.
    ///
    /// Latency of a scoring run, cold (with base OTs) and warm (extension state from an earlier run reused), and
    /// bytes on the wire, for several numbers of attributes. Each outcome is checked against the ideal one.
    Score(score::ScoreArgs),
    /// The relay's memory per idle owner connection: `duo relay` as a child process, its resident memory with no
    /// owner and with `--owners` Noise-authenticated owner control connections held idle.
    Relay(relay::RelayBenchArgs),
    /// The grid at scale on loopback: `duo relay` as a child process, `--owners` owner nodes in this process
    /// reachable only through it, one FI paired with each through it.
    ///
    /// (a) a private decision run to every owner (time, bytes through the relay, the relay's memory); (b) a DP
    /// question to every owner, each owner's ledger checked; (c) a second DP question during which 10% of the
    /// owners stop and the relay is killed and restarted, then the FI's rerun of the rest, checking nothing was
    /// charged or run twice. Exits 1 when a check fails.
    Grid(grid::GridArgs),
    /// The owner UI's speed with a full store (1,000 requests, 10,000 log entries): server time per page, and a
    /// new request's way to an open page.
    ///
    /// Each page (Home, Requests, Log first and later pages, a filtered Log page, Budgets) is fetched over
    /// loopback from a running `duo owner serve`; the time from an FI sending a request the owner must decide to
    /// the event on an open `/events` stream and to the request in the queue. Exits 1 when a page's median is
    /// 5 ms or more or the event's 250 ms or more.
    Ui(ui::UiArgs),
}

/// Run one bench, or the default set; `duo bench load` (and the default set and the report) exits 1 if any
/// request failed, `duo bench lockout` if under 99% of the FI's commands succeeded.
pub fn run(args: BenchArgs) -> Result<i32> {
    let Some(cmd) = args.cmd else {
        return report::run_default(args.set);
    };
    match cmd {
        BenchCmd::Report(args) => report::run_report(args),
        BenchCmd::Load(args) => {
            let json = args.json;
            let r = runtime()?.block_on(load::load(args))?;
            if json {
                super::print_json(&r)?;
            } else {
                outln!("{}", r.text())?;
            }
            Ok(if r.errors == 0 { 0 } else { 1 })
        }
        BenchCmd::Lockout(args) => {
            let json = args.json;
            let r = runtime()?.block_on(lockout::lockout(args))?;
            if json {
                super::print_json(&r)?;
            } else {
                outln!("{}", r.text())?;
            }
            Ok(if r.succeeded * 100 >= r.commands * 99 {
                0
            } else {
                1
            })
        }
        BenchCmd::Ot(args) => {
            let r = ot::ot(&args)?;
            emit(JsonFlag { json: args.json }, &r, ot::OtReport::text)?;
            Ok(0)
        }
        BenchCmd::Gc(args) => {
            let r = gc::gc(&args)?;
            emit(JsonFlag { json: args.json }, &r, gc::GcReport::text)?;
            Ok(0)
        }
        BenchCmd::Ui(args) => {
            let json = args.json;
            let r = runtime()?.block_on(ui::ui(args))?;
            emit(JsonFlag { json }, &r, ui::UiReport::text)?;
            Ok(if r.goals_met { 0 } else { 1 })
        }
        BenchCmd::Relay(args) => {
            let json = args.json;
            let r = runtime()?.block_on(relay::relay(args))?;
            emit(JsonFlag { json }, &r, relay::RelayReport::text)?;
            Ok(0)
        }
        BenchCmd::Grid(args) => {
            let json = args.json;
            let r = runtime()?.block_on(grid::grid(args))?;
            emit(JsonFlag { json }, &r, grid::GridReport::text)?;
            Ok(if r.checks_pass() { 0 } else { 1 })
        }
        BenchCmd::Score(args) => {
            let r = score::score(&args)?;
            emit(JsonFlag { json: args.json }, &r, score::ScoreReport::text)?;
            Ok(0)
        }
    }
}

/// The address a `duo owner serve` child printed first (it prints nothing before it listens).
async fn node_url(child: &mut tokio::process::Child) -> Result<String> {
    use tokio::io::AsyncBufReadExt;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout from the owner node"))?;
    let mut line = String::new();
    tokio::io::BufReader::new(out).read_line(&mut line).await?;
    let url = line.trim().to_string();
    if !url.starts_with("ws://") {
        anyhow::bail!("the owner node did not start: {url:?}");
    }
    Ok(url)
}
