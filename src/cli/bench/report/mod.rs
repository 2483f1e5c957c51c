//! `duo bench report --out DIR`, and `duo bench` alone: the default set of measurements in one run. DP error
//! against epsilon (with the observed coverage of the predicted 95% interval), DP throughput beside OpenDP's
//! own pipeline, private scoring's latency and bytes against n (the code of `duo bench score`), and the
//! request round trip and load test (the code of `duo bench load`). The report writes `report.json` (all of
//! it), one SVG per plot and `report.md`, which links them with a reading of each.

mod dp;
mod markdown;
mod plot;

use super::load::{self, LoadArgs, LoadReport};
use super::measure::{Machine, Progress};
use super::score::{self, ScoreArgs, ScoreReport};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The sizes of a run: `duo bench` and `duo bench report` take the same.
#[derive(clap::Args, Debug, Clone)]
pub struct SetArgs {
    /// Smaller sizes: about 12 s in a release build on 2 cores (the default set: about 40 s).
    #[arg(long)]
    pub quick: bool,
    /// The smallest sizes, for tests (seconds in a debug build); figures too rough to read.
    #[arg(long, hide = true)]
    pub smoke: bool,
    /// DP releases per epsilon and mechanism (default 200; 20 with the smallest sizes).
    #[arg(long)]
    pub releases: Option<usize>,
    /// Print one JSON object (the whole report) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// No progress on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `duo bench report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The directory to write `report.json`, the SVG plots and `report.md` into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// The sizes.
    #[command(flatten)]
    pub set: SetArgs,
}

/// The sizes a run measures at.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// "default", "quick" or "smoke".
    pub name: &'static str,
    /// Epsilons of the DP error part.
    pub epsilons: Vec<f64>,
    /// DP releases per epsilon and mechanism.
    pub releases: usize,
    /// Rows of the DP throughput part.
    pub rows: Vec<usize>,
    /// Time spent timing each way of answering each query at each size, milliseconds.
    pub throughput_ms: u64,
    /// Numbers of attributes scored.
    pub n: Vec<usize>,
    /// Timed scoring runs of each kind per n.
    pub score_reps: usize,
    /// Concurrent FI sessions of each load run (the first, 1, is the round trip).
    pub sessions: Vec<usize>,
    /// Seconds of each load run.
    pub load_seconds: u64,
}

impl Sizes {
    /// The sizes `args` asks for.
    pub fn of(args: &SetArgs) -> Result<Sizes> {
        let epsilons = vec![0.1, 0.3, 1.0, 3.0, 10.0];
        let s = if args.smoke {
            Sizes {
                name: "smoke",
                epsilons: vec![0.3, 3.0],
                releases: 20,
                rows: vec![1_000],
                throughput_ms: 5,
                n: vec![8],
                score_reps: 1,
                sessions: vec![1, 2],
                load_seconds: 1,
            }
        } else if args.quick {
            Sizes {
                name: "quick",
                epsilons,
                releases: 200,
                rows: vec![1_000, 10_000, 100_000],
                throughput_ms: 100,
                n: vec![8, 32, 128],
                score_reps: 5,
                sessions: vec![1, 8],
                load_seconds: 3,
            }
        } else {
            Sizes {
                name: "default",
                epsilons,
                releases: 200,
                rows: vec![1_000, 10_000, 100_000, 1_000_000],
                throughput_ms: 300,
                n: vec![8, 32, 128, 512],
                score_reps: 10,
                sessions: vec![1, 8, 32],
                load_seconds: 8,
            }
        };
        Ok(Sizes {
            releases: check_releases(args.releases.unwrap_or(s.releases))?,
            ..s
        })
    }
}

fn check_releases(r: usize) -> Result<usize> {
    if r == 0 || r > 100_000 {
        anyhow::bail!("--releases must be between 1 and 100000");
    }
    Ok(r)
}

/// The computer a report ran on, beyond [`Machine`]: its system and processor.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// The operating system (`PRETTY_NAME` of `/etc/os-release` where there is one) and architecture.
    pub os: String,
    /// The kernel release (Linux).
    pub kernel: Option<String>,
    /// The processor's model name (Linux).
    pub cpu: Option<String>,
}

impl Host {
    fn now() -> Host {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let pretty = read("/etc/os-release").and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
        let cpu = read("/proc/cpuinfo").and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        Host {
            os: format!(
                "{} ({})",
                pretty.unwrap_or_else(|| std::env::consts::OS.to_string()),
                std::env::consts::ARCH
            ),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
            cpu,
        }
    }
}

/// Everything one run measured (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always "report".
    pub bench: &'static str,
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    /// Seconds the whole run took.
    pub seconds: f64,
    /// CPUs, load and build.
    pub machine: Machine,
    /// System and processor.
    pub host: Host,
    /// The sizes measured at.
    pub sizes: Sizes,
    /// DP error against epsilon, with the predicted interval's observed coverage.
    pub dp_error: dp::DpError,
    /// DP throughput beside the non-private pass and OpenDP's pipeline.
    pub dp_throughput: Vec<dp::ThroughputPoint>,
    /// Private scoring, as `duo bench score --transport both` reports it.
    pub scoring: ScoreReport,
    /// The request round trip: `duo bench load --sessions 1`.
    pub round_trip: LoadReport,
    /// The load test at more sessions, as `duo bench load` reports it.
    pub load: Vec<LoadReport>,
}

impl Report {
    /// Failed load requests over every load run (a sound run has none).
    pub fn load_errors(&self) -> u64 {
        self.round_trip.errors + self.load.iter().map(|l| l.errors).sum::<u64>()
    }

    /// The round trip and the load runs, by sessions.
    fn load_runs(&self) -> Vec<&LoadReport> {
        std::iter::once(&self.round_trip)
            .chain(&self.load)
            .collect()
    }

    /// A few lines: each part's headline figures.
    pub fn text(&self) -> String {
        markdown::summary(self)
    }
}

/// Runs every part at `sizes`.
pub fn measure(sizes: Sizes, p: Progress) -> Result<Report> {
    let start = Instant::now();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let machine = Machine::now();
    let dp_error = dp::dp_error(&sizes.epsilons, sizes.releases, p)?;
    let budget = Duration::from_millis(sizes.throughput_ms);
    let dp_throughput = dp::dp_throughput(&sizes.rows, budget, p)?;
    p.say("scoring: in memory and over loopback WebSocket...");
    let scoring = score::score(&ScoreArgs {
        n: sizes.n.clone(),
        reps: sizes.score_reps,
        transport: "both".into(),
        reveal: "decision".into(),
        json: false,
        quiet: p.quiet,
    })?;
    let mut load = load_runs(&sizes, p)?;
    let round_trip = load.remove(0);
    Ok(Report {
        bench: "report",
        date,
        seconds: start.elapsed().as_secs_f64(),
        machine,
        host: Host::now(),
        sizes,
        dp_error,
        dp_throughput,
        scoring,
        round_trip,
        load,
    })
}

/// One `duo bench load` run per number of sessions (the first the round trip, one session).
fn load_runs(sizes: &Sizes, p: Progress) -> Result<Vec<LoadReport>> {
    let rt = super::runtime()?;
    let mut out = Vec::new();
    for &sessions in std::iter::once(&1).chain(sizes.sessions.iter().filter(|s| **s != 1)) {
        p.say(format!(
            "{}: {sessions} session{} for {} s, the owner node in its own process...",
            if sessions == 1 { "round trip" } else { "load" },
            if sessions == 1 { "" } else { "s" },
            sizes.load_seconds
        ));
        out.push(rt.block_on(load::load(LoadArgs {
            sessions,
            seconds: sizes.load_seconds,
            sync: "normal".into(),
            json: true,
        }))?);
    }
    Ok(out)
}

/// The files a report writes, by name, beside `report.json` and `report.md`.
pub const PLOTS: [&str; 5] = [
    "dp-error.svg",
    "dp-coverage.svg",
    "dp-throughput.svg",
    "scoring.svg",
    "load.svg",
];

/// Writes `report.json`, the plots and `report.md` into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let put = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    put("report.json", serde_json::to_string_pretty(report)? + "\n")?;
    let svgs = [
        plot::dp_error(&report.dp_error)?,
        plot::dp_coverage(&report.dp_error)?,
        plot::dp_throughput(&report.dp_throughput)?,
        plot::scoring(&report.scoring)?,
        plot::load(&report.load_runs())?,
    ];
    for (name, svg) in PLOTS.iter().zip(svgs) {
        put(name, svg)?;
    }
    put("report.md", markdown::report(report))
}

/// `duo bench report`: measures, writes the files, prints the summary (or the JSON). Exits 1 if a load
/// request failed.
pub fn run_report(args: ReportArgs) -> Result<i32> {
    let p = Progress {
        quiet: args.set.quiet,
    };
    let report = measure(Sizes::of(&args.set)?, p)?;
    write(&report, &args.out)?;
    p.say(format!(
        "wrote {} ({:.0} s)",
        args.out.join("report.md").display(),
        report.seconds
    ));
    emit(&report, args.set.json)
}

/// `duo bench` with no subcommand: the same measurements, printed and not written.
pub fn run_default(args: SetArgs) -> Result<i32> {
    let report = measure(Sizes::of(&args)?, Progress { quiet: args.quiet })?;
    emit(&report, args.json)
}

fn emit(report: &Report, json: bool) -> Result<i32> {
    super::emit(super::JsonFlag { json }, report, Report::text)?;
    Ok(if report.load_errors() == 0 { 0 } else { 1 })
}
