//! The `duo` command line.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use duo::node::fi::{self as client, Client, FiHome};
use duo::node::owner::{self, ServeConfig};
use duo::node::owner::{DatasetCache, Owner};
use duo::node::proto::request::RequestState;
use duo::node::store::{self, prelude::*};
use duo::policies::{Backend, Policy};
use duo::show;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Duo: keep your alternative credit data on your own computer, and let a lender learn only what you approve.
#[derive(Parser, Debug)]
#[command(name = "duo", version, about, long_about = None)]
struct Cli {
    /// Data directory (owner data under owner/, FI keys under fi/). Default: $DUO_HOME, else $XDG_DATA_HOME/duo.
    #[arg(long, global = true, env = "DUO_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the whole story on this machine: an owner node and an FI client over loopback, on sample data.
    Demo(duo::demo::DemoArgs),
    /// Write realistic sample data (CSV files plus metadata files that `duo owner load` accepts).
    Sample {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Random seed: the same seed writes the same files.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Payment behaviour of the sample person.
        #[arg(long, default_value = "reliable", value_parser = ["reliable", "struggling"])]
        profile: String,
        /// Last full month covered, as YYYY-MM (default: the last full month before today).
        #[arg(long)]
        end_month: Option<String>,
        /// Months of history.
        #[arg(long, default_value_t = 24)]
        months: u32,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Commands for the data owner.
    #[command(subcommand)]
    Owner(OwnerCmd),
    /// Commands for the financial institution.
    #[command(subcommand)]
    Fi(FiCmd),
    /// Measurements for researchers and operators.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Check a receipt (a JSON file, as `duo fi receipts --json` or `duo fi result --json` prints it) against an
    /// owner node's public signing key. Exit 0 if it verifies, 1 if not.
    VerifyReceipt {
        /// The receipt file (`-` for standard input).
        file: PathBuf,
        /// The node's signing key (hex). Without it, the key the receipt names is used, which proves only that
        /// the receipt was not altered.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Args, Debug, Clone, Copy)]
struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum OwnerCmd {
    /// Create the owner node: its key, its store and a commented default policy (existing ones are kept).
    Init {
        /// Use this policy file instead of the default.
        #[arg(long)]
        policy: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Load a CSV file as a new version of a dataset.
    Load {
        /// The CSV file.
        file: PathBuf,
        /// Dataset name (letters, digits, underscores).
        #[arg(long)]
        name: String,
        /// Metadata file (TOML). Default: FILE with `.csv` replaced by `.meta.toml`.
        #[arg(long)]
        meta: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List loaded datasets, with what the node inferred from them (shown only to you).
    Datasets {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Serve FIs: listen for paired sessions and pairings.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// How commits are synced: `full` survives power loss, `normal` survives a crash of the program.
        #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
        sync: String,
        /// Requests each FI may make per hour.
        #[arg(long, default_value_t = 3600)]
        requests_per_hour: usize,
        /// Concurrent sessions each FI may hold.
        #[arg(long, default_value_t = 8)]
        sessions_per_fi: usize,
        /// Concurrent connections in all.
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
    },
    /// Make a one-time invite code for an FI, bound to the name you choose for it.
    Invite {
        /// The name you give this FI (its principal), e.g. "Acme Bank".
        #[arg(long = "fi")]
        principal: String,
        /// How long the code stays valid (e.g. 15m, 2h, 1d).
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// How many days the pairing lasts; after that the FI needs a new invite.
        #[arg(long, default_value_t = 90)]
        pairing_days: u32,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The FIs paired with this node.
    #[command(subcommand)]
    Fi(OwnerFiCmd),
    /// Dataset commands.
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Privacy budgets: caps per FI, per dataset and overall, and what has been spent.
    #[command(subcommand)]
    Budget(BudgetCmd),
    /// Delete all loaded data (every version of every dataset); the log and the history are kept.
    Forget {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Show the requests waiting for your decision, with the exact value each would release.
    Requests {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Approve a pending request (releases the value shown by `duo owner requests`).
    Approve {
        /// Request id.
        id: u64,
        /// The token `duo owner requests` printed: the approval fails if anything you were shown has changed.
        #[arg(long, required_unless_present = "yes")]
        seen: Option<String>,
        /// Approve without a token: whatever the request would release now (printed after approving).
        #[arg(long, conflicts_with = "seen")]
        yes: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Deny a pending request; the FI sees your reason.
    Deny {
        /// Request id.
        id: u64,
        /// Why (sent to the FI).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show the audit log, or check that it has not been tampered with.
    Log {
        /// Check every entry's hash and link; exit 1 if anything was edited, removed or reordered.
        #[arg(long)]
        verify: bool,
        /// With --verify: also check the log against a receipt an FI holds (JSON file): the entry it names must
        /// still be in the log with the same hash, so nothing up to it was edited, reordered or removed.
        #[arg(long, requires = "verify")]
        receipt: Option<PathBuf>,
        /// Show only the last N entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Policy file commands.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

#[derive(Subcommand, Debug)]
enum BudgetCmd {
    /// Set a cap (the global cap without --fi or --dataset). Only this command raises a cap.
    Set {
        /// Cap this FI's spending.
        #[arg(long = "fi", conflicts_with = "dataset")]
        principal: Option<String>,
        /// Cap the spending on this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// The cap, in epsilon (pure-DP nodes).
        #[arg(long, conflicts_with = "rho", required_unless_present = "rho")]
        epsilon: Option<String>,
        /// The cap, in rho (zCDP nodes).
        #[arg(long)]
        rho: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show caps, spent, remaining and the history of charges.
    Show {
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// A bounded load test on loopback: many FI sessions issuing auto-approved releases against one owner node.
    Load(duo::bench::LoadArgs),
    /// Oblivious transfer: base-OT time and KOS extension rate.
    ///
    /// 128 Masny-Rindal base OTs, and KOS correlated-OT extension (with its consistency check) of 2^M OTs with
    /// and without the base OTs, in memory on two threads (owner = extension sender, FI = receiver), with bytes
    /// on the wire.
    Ot(duo::bench_twopc::OtArgs),
    /// Garbled circuits: garbling and evaluation rates.
    ///
    /// Half-gates garbling and evaluation in AND gates per second, one thread, for a wide layer of independent
    /// AND gates and for copies of the AES-128 circuit, with garbled-table bytes.
    Gc(duo::bench_twopc::GcArgs),
    /// Private credit scoring: latency and bytes on the wire.
    ///
    /// Latency of a scoring run, cold (with base OTs) and warm (extension state from an earlier run reused), and
    /// bytes on the wire, for several numbers of attributes. Each outcome is checked against the ideal one.
    Score(duo::bench_twopc::ScoreArgs),
}

#[derive(Subcommand, Debug)]
enum OwnerFiCmd {
    /// List paired FIs: principal, key fingerprint, since, expiry, last seen, pending requests.
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Cut an FI off: its sessions close at once and its pending requests are cancelled. Its history is kept;
    /// a new invite pairs it again.
    Revoke {
        /// The principal name.
        principal: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
enum DatasetCmd {
    /// Delete every version of a dataset's rows; its metadata and the log stay.
    Delete {
        /// Dataset name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Check a policy file (default: the node's) and point at the line of any error.
    Check {
        /// The file to check.
        file: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// What a DP request spends: an epsilon, a rho, or a target accuracy.
#[derive(Args, Debug, Clone)]
struct DpArgs {
    /// Privacy cost in epsilon (with --backend dp).
    #[arg(long, conflicts_with_all = ["rho", "alpha"])]
    epsilon: Option<f64>,
    /// Privacy cost in rho, on zCDP nodes (with --backend dp).
    #[arg(long, conflicts_with = "alpha")]
    rho: Option<f64>,
    /// Target accuracy: the answer within ALPHA of the exact value ...
    #[arg(long)]
    alpha: Option<f64>,
    /// ... with probability at least 1 - BETA (default 0.05).
    #[arg(long, requires = "alpha")]
    beta: Option<f64>,
}

impl DpArgs {
    fn params(&self) -> Option<duo::node::proto::request::DpParams> {
        (self.epsilon.is_some() || self.rho.is_some() || self.alpha.is_some()).then_some(
            duo::node::proto::request::DpParams {
                epsilon: self.epsilon,
                rho: self.rho,
                alpha: self.alpha,
                beta: self.beta,
            },
        )
    }
}

#[derive(Subcommand, Debug)]
enum FiCmd {
    /// Preview, without charging anything, what DP releases would cost and how accurate they would be.
    Cost {
        /// One or more expressions.
        #[arg(required = true)]
        exprs: Vec<String>,
        #[command(flatten)]
        dp: DpArgs,
        /// Which paired owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Pair with an owner node using the invite code the owner gave you.
    Pair {
        /// The owner node's address, e.g. ws://127.0.0.1:7878.
        url: String,
        /// The invite code (duo1-...).
        code: String,
        /// Local name for this owner node.
        #[arg(long, default_value = "owner")]
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the owner's published datasets (metadata and schemas, never rows).
    Datasets {
        /// Which paired owner (default: the most recent pairing).
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the catalogue of named attributes.
    Catalogue {
        /// Which paired owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Ask for the release of an expression, e.g. `mean(clamp(rent.amount, 0, 300000))` or
    /// `rent_on_time_ratio_12m()`. See the expression syntax in the README.
    Request {
        /// The expression.
        expr: String,
        /// Why you need it (the owner sees it).
        #[arg(long)]
        reason: String,
        /// Backend: plaintext (the exact value) or dp (a differentially private value).
        #[arg(long, default_value = "plaintext", value_parser = ["plaintext", "dp"])]
        backend: String,
        #[command(flatten)]
        dp: DpArgs,
        /// Wait up to this many seconds for the owner's decision.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Which paired owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Score the owner privately with a model file (2PC): only the agreed output is revealed
    ///
    /// Private scoring (backend 2pc) is a two-party computation in which the model never leaves the FI in the
    /// clear and the owner's attribute values never leave the owner's node.
    ///
    /// The owner (or the owner's policy) sees the attributes the model uses, what a run reveals and to whom,
    /// and a salted commitment to the model, never its weights; the commitment's opening is kept in the FI
    /// home (`fi/models/COMMITMENT.json`) for an auditor. Once the request is approved, one run computes the
    /// model and both sides learn only the agreed output:
    ///
    ///   decision  whether the score reaches the model's threshold: 1 bit (the default);
    ///
    ///   bands:K   which of K score bands (2 to 16) the score falls in, using the K-1 `bands` thresholds of
    ///             the model file: log2 K bits;
    ///
    ///   score     the raw score: 64 bits, which can reveal an attribute outright; owners' policies refuse it
    ///             unless a rule allows it.
    ///
    /// The owner's policy limits the runs and bits per FI and window; this FI also limits its own runs per
    /// owner (--max-runs-per-owner), since an owner who controls its inputs could probe the model.
    #[command(verbatim_doc_comment)]
    Score {
        /// The model file (TOML): `bias`, `threshold`, optional `name` and `bands`, and a `[weights]` table
        /// of catalogue attribute = weight. See the README.
        #[arg(long)]
        model: PathBuf,
        /// Why you need it (the owner sees it).
        #[arg(long, required_unless_present = "request")]
        reason: Option<String>,
        /// What the run reveals: decision (1 bit), bands:K (log2 K bits) or score (64 bits).
        #[arg(long, default_value = "decision")]
        reveal: duo::policies::Reveal,
        /// Wait up to this many seconds for the owner's decision (for a request that goes to the owner);
        /// without it, a request the owner must decide is left pending: run it later with --request.
        #[arg(long, default_value_t = 0, conflicts_with = "request")]
        wait: u64,
        /// Run this already approved scoring request (made earlier by `duo fi score`) instead of asking
        /// again; pass the same model file. Each approved request allows one run.
        #[arg(long, conflicts_with = "reason")]
        request: Option<u64>,
        /// This FI's own limit: scoring runs against one owner per 30 days.
        #[arg(long, default_value_t = duo::node::fi::ScoreLimit::default().max_runs)]
        max_runs_per_owner: u32,
        /// Which paired owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The receipts this FI has kept, each verified when it arrived; --verify checks them all again.
    Receipts {
        /// Check the log's chain and every signature against the pinned keys; exit 1 on any problem.
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The state of an earlier request (and its answer, once approved).
    Result {
        /// Request id.
        id: u64,
        /// Wait up to this many seconds for a decision.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Which paired owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

fn main() {
    let cli = Cli::parse();
    let home = cli
        .home
        .clone()
        .unwrap_or_else(duo::node::home::default_home);
    match run(cli.cmd, &home) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Print `v` as JSON with `--json`, else as the text `text` makes of it.
fn emit<T: serde::Serialize>(json: JsonFlag, v: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
    if json.json {
        print_json(v)
    } else {
        print!("{}", text(v));
        Ok(())
    }
}

/// Parse a duration like `30s`, `15m`, `2h` or `7d`.
fn parse_ttl(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a duration; write e.g. 30s, 15m, 2h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" | "" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("`{s}` is not a duration; write e.g. 30s, 15m, 2h or 7d"),
    };
    if secs == 0 || secs > 30 * 86400 {
        bail!("an invite may last from 1 second to 30 days");
    }
    Ok(Duration::from_secs(secs))
}

fn ensure_owner(home: &Path) -> Result<PathBuf> {
    let dir = owner::owner_dir(home);
    if !dir.join("node.key").exists() {
        let r = owner::init(&dir, None)?;
        eprintln!(
            "initialised a new owner node in {} (key {})",
            dir.display(),
            r.fingerprint
        );
    }
    Ok(dir)
}

fn run(cmd: Cmd, home: &Path) -> Result<i32> {
    match cmd {
        Cmd::Demo(args) => runtime()?.block_on(duo::demo::run(args)).map(|_| 0),
        Cmd::Sample {
            out,
            seed,
            profile,
            end_month,
            months,
            json,
        } => {
            let end_month = match end_month {
                Some(m) => parse_month(&m)?,
                None => duo::engine::sample::last_full_month(chrono::Utc::now().date_naive()),
            };
            let cfg = duo::engine::sample::SampleConfig {
                seed,
                profile: profile.parse().map_err(|e| anyhow!("{e:?}"))?,
                end_month,
                months,
            };
            let files = duo::engine::sample::generate(&cfg);
            let paths = duo::engine::sample::write_dir(&out, &files)
                .with_context(|| format!("writing to {}", out.display()))?;
            if json.json {
                print_json(&paths)?;
            } else {
                for p in paths {
                    println!("{}", p.display());
                }
            }
            Ok(0)
        }
        Cmd::Owner(c) => owner_cmd(c, home),
        Cmd::Bench(BenchCmd::Load(args)) => {
            let json = args.json;
            let r = runtime()?.block_on(duo::bench::load(args))?;
            if json {
                print_json(&r)?;
            } else {
                let (first, last, max) = (
                    r.owner_rss_kib.first().copied().unwrap_or(0),
                    r.owner_rss_kib.last().copied().unwrap_or(0),
                    r.owner_rss_kib.iter().copied().max().unwrap_or(0),
                );
                println!(
                    "{} sessions, {:.1} s: {} releases, {:.0} releases/s, p50 {} us, p99 {} us, {} errors\n\
                     owner node memory: {} KiB at start, {} KiB at end, {} KiB at most",
                    r.sessions, r.seconds, r.releases, r.releases_per_sec, r.p50_us, r.p99_us, r.errors,
                    first, last, max
                );
            }
            Ok(if r.errors == 0 { 0 } else { 1 })
        }
        Cmd::Bench(BenchCmd::Ot(args)) => {
            let r = duo::bench_twopc::ot(&args)?;
            emit(
                JsonFlag { json: args.json },
                &r,
                duo::bench_twopc::OtReport::text,
            )?;
            Ok(0)
        }
        Cmd::Bench(BenchCmd::Gc(args)) => {
            let r = duo::bench_twopc::gc(&args)?;
            emit(
                JsonFlag { json: args.json },
                &r,
                duo::bench_twopc::GcReport::text,
            )?;
            Ok(0)
        }
        Cmd::Bench(BenchCmd::Score(args)) => {
            let r = duo::bench_twopc::score(&args)?;
            emit(
                JsonFlag { json: args.json },
                &r,
                duo::bench_twopc::ScoreReport::text,
            )?;
            Ok(0)
        }
        Cmd::VerifyReceipt { file, key } => {
            let receipt = read_receipt(&file)?;
            match receipt.verify(key.as_deref()) {
                Ok(()) => {
                    println!(
                        "receipt verifies: request {} released to \"{}\" via {} (log entry {}, node key {}){}",
                        receipt.request,
                        receipt.principal,
                        receipt.backend,
                        receipt.log_seq,
                        receipt.node_key,
                        if key.is_none() {
                            "; pass --key to check it is this node's key"
                        } else {
                            ""
                        }
                    );
                    Ok(0)
                }
                Err(e) => {
                    println!("receipt does NOT verify: {e}");
                    Ok(1)
                }
            }
        }
        Cmd::Fi(c) => runtime()?.block_on(fi_cmd(c, home)),
    }
}

fn parse_month(s: &str) -> Result<(i32, u32)> {
    let (y, m) = s
        .split_once('-')
        .ok_or_else(|| anyhow!("write the month as YYYY-MM"))?;
    let y: i32 = y
        .parse()
        .map_err(|_| anyhow!("write the month as YYYY-MM"))?;
    let m: u32 = m
        .parse()
        .map_err(|_| anyhow!("write the month as YYYY-MM"))?;
    if !(1..=12).contains(&m) {
        bail!("month must be 01 to 12");
    }
    Ok((y, m))
}

fn open_owner(dir: &Path) -> Result<Owner> {
    Ok(Owner::open(
        dir,
        store::Sync::Full,
        DatasetCache::default(),
    )?)
}

fn owner_cmd(cmd: OwnerCmd, home: &Path) -> Result<i32> {
    match cmd {
        OwnerCmd::Init { policy, json } => {
            let dir = owner::owner_dir(home);
            let text = policy
                .map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?;
            let r = owner::init(&dir, text.as_deref())?;
            if json.json {
                print_json(&serde_json::json!({
                    "dir": dir, "fingerprint": r.fingerprint, "new_key": r.new_key, "wrote_policy": r.wrote_policy,
                }))?;
            } else {
                println!("owner node in {}", dir.display());
                println!(
                    "  key fingerprint: {}{}",
                    r.fingerprint,
                    if r.new_key { " (new)" } else { "" }
                );
                println!(
                    "  policy: {}{}",
                    duo::node::owner::policy_path(&dir).display(),
                    if r.wrote_policy {
                        " (default written: every request goes to you)"
                    } else {
                        " (kept)"
                    }
                );
            }
            Ok(0)
        }
        OwnerCmd::Load {
            file,
            name,
            meta,
            json,
        } => {
            let dir = ensure_owner(home)?;
            let meta_path = meta.unwrap_or_else(|| {
                let s = file.to_string_lossy();
                PathBuf::from(
                    s.strip_suffix(".csv")
                        .map_or_else(|| format!("{s}.meta.toml"), |b| format!("{b}.meta.toml")),
                )
            });
            let meta_text = std::fs::read_to_string(&meta_path).with_context(|| {
                format!(
                    "reading the metadata file {} (pass --meta FILE; `duo sample --out DIR` writes examples)",
                    meta_path.display()
                )
            })?;
            let r = owner::load(&dir, &file, &name, &meta_text)?;
            if json.json {
                print_json(&serde_json::json!({
                    "name": r.name, "version": r.version, "rows": r.rows, "suggestions": r.suggestions,
                }))?;
            } else {
                println!(
                    "loaded {} rows into `{}` (version {})",
                    r.rows, r.name, r.version
                );
                println!("  inferred from the data (shown only to you, never published):");
                for c in &r.suggestions.columns {
                    println!(
                        "    {:<14} min {} max {}{}{}",
                        c.name,
                        c.min.as_deref().unwrap_or("-"),
                        c.max.as_deref().unwrap_or("-"),
                        if c.nulls > 0 {
                            format!(", {} empty", c.nulls)
                        } else {
                            String::new()
                        },
                        if c.outside_bounds > 0 {
                            format!(
                                ", {} outside the declared bounds (clamped when used)",
                                c.outside_bounds
                            )
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(0)
        }
        OwnerCmd::Datasets { json } => {
            let dir = ensure_owner(home)?;
            let o = open_owner(&dir)?;
            let rows = o.store().datasets()?;
            if json.json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("no datasets yet; load one with `duo owner load FILE.csv --name NAME`");
            } else {
                for r in rows {
                    println!(
                        "{} v{}: {} rows, loaded {}\n  {}",
                        r.meta.name, r.version, r.rows, r.loaded_at, r.meta.description
                    );
                }
            }
            Ok(0)
        }
        OwnerCmd::Serve {
            listen,
            sync,
            requests_per_hour,
            sessions_per_fi,
            max_connections,
        } => {
            let dir = ensure_owner(home)?;
            let mut cfg = ServeConfig::new(&dir);
            cfg.principal_limits.requests_per_hour = requests_per_hour;
            cfg.principal_limits.max_sessions = sessions_per_fi.max(1);
            cfg.max_connections = max_connections.max(1);
            cfg.sync = if sync == "normal" {
                store::Sync::Normal
            } else {
                store::Sync::Full
            };
            let rt = runtime()?;
            rt.block_on(async move {
                let node = owner::spawn(cfg, listen).await?;
                println!("{}", node.url());
                eprintln!(
                    "owner node listening on {} (key {}); Ctrl-C to stop",
                    node.url(),
                    duo::node::net::keys::fingerprint(&owner::node_key(&dir)?.public)
                );
                shutdown_signal().await;
                eprintln!("stopping");
                node.shutdown().await;
                Ok::<_, anyhow::Error>(0)
            })
        }
        OwnerCmd::Invite {
            principal,
            ttl,
            pairing_days,
            json,
        } => {
            let dir = ensure_owner(home)?;
            let ttl = parse_ttl(&ttl)?;
            if !(1..=3650).contains(&pairing_days) {
                bail!("--pairing-days must be between 1 and 3650");
            }
            let pairing = Duration::from_secs(u64::from(pairing_days) * 86400);
            let code = owner::invite_for(&dir, &principal, ttl, pairing)?;
            if json.json {
                print_json(&serde_json::json!({
                    "principal": principal.trim(), "code": code.to_string(), "expires_in_secs": ttl.as_secs(),
                }))?;
            } else {
                println!("{code}");
                eprintln!(
                    "give this code to {} out of band; it works once, for {}",
                    principal.trim(),
                    humantime(ttl)
                );
            }
            Ok(0)
        }
        OwnerCmd::Fi(OwnerFiCmd::List { json }) => {
            let dir = ensure_owner(home)?;
            let o = open_owner(&dir)?;
            let list = o.store().pairings()?;
            if json.json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no FI is paired; make an invite with `duo owner invite --fi NAME`");
            } else {
                for p in list {
                    let expires = chrono::DateTime::from_timestamp(p.expires_at, 0)
                        .map(|t| t.format("%Y-%m-%d").to_string())
                        .unwrap_or_default();
                    println!(
                        "{}  [{}]\n  key {}; paired {}; expires {}; last seen {}; {} pending request(s)",
                        p.principal,
                        p.state,
                        p.fingerprint,
                        p.paired_at,
                        expires,
                        p.last_seen.as_deref().unwrap_or("never"),
                        p.pending
                    );
                }
            }
            Ok(0)
        }
        OwnerCmd::Fi(OwnerFiCmd::Revoke { principal, json }) => {
            let dir = ensure_owner(home)?;
            let mut o = open_owner(&dir)?;
            let cancelled = o.store_mut().revoke(&principal)?;
            if json.json {
                print_json(
                    &serde_json::json!({ "principal": principal, "cancelled_requests": cancelled }),
                )?;
            } else {
                println!(
                    "revoked `{principal}`: its sessions close now; {} pending request(s) cancelled",
                    cancelled.len()
                );
            }
            Ok(0)
        }
        OwnerCmd::Dataset(DatasetCmd::Delete { name, yes }) => {
            let dir = ensure_owner(home)?;
            if !yes && !confirm(&format!("delete every version of the rows of `{name}`?"))? {
                return Ok(1);
            }
            let mut o = open_owner(&dir)?;
            let n = o.store_mut().delete_dataset(&name)?;
            o.store().scrub()?;
            println!("deleted {n} version(s) of `{name}`; the log keeps what was released from it");
            Ok(0)
        }
        OwnerCmd::Budget(BudgetCmd::Set {
            principal,
            dataset,
            epsilon,
            rho,
            json,
        }) => {
            use duo::policies::{Amount, Measure, Scope};
            let dir = ensure_owner(home)?;
            let mut o = open_owner(&dir)?;
            let (text, measure) = match (&epsilon, &rho) {
                (Some(e), None) => (e.clone(), Measure::PureEpsilon),
                (None, Some(r)) => (r.clone(), Measure::Zcdp),
                _ => bail!("give exactly one of --epsilon or --rho"),
            };
            let amount: Amount = text
                .parse()
                .map_err(|e| anyhow!("`{text}` is not a budget: {e}"))?;
            let scope = match (principal, dataset) {
                (Some(p), _) => Scope::Principal(p),
                (None, Some(d)) => Scope::Dataset(d),
                (None, None) => Scope::Global,
            };
            o.set_cap(&scope, amount, measure)?;
            if json.json {
                print_json(
                    &serde_json::json!({ "scope": scope, "cap": amount.to_string(), "measure": measure.name() }),
                )?;
            } else {
                println!("{scope}: cap {amount} {}", measure.name());
            }
            Ok(0)
        }
        OwnerCmd::Budget(BudgetCmd::Show { json }) => {
            let dir = ensure_owner(home)?;
            let o = open_owner(&dir)?;
            let ledger = o.store().ledger()?;
            let history: Vec<_> = o
                .store()
                .budget_history()?
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "request": e.request,
                        "at": e.at,
                        "principal": e.principal,
                        "datasets": e.datasets,
                        "amount": e.amount.to_string(),
                    })
                })
                .collect();
            let accounts: Vec<_> = ledger
                .accounts()
                .into_iter()
                .map(|(scope, a)| {
                    serde_json::json!({
                        "scope": scope,
                        "cap": a.cap.map(|c| c.to_string()),
                        "spent": a.spent.to_string(),
                        "remaining": a.remaining().map(|c| c.to_string()),
                    })
                })
                .collect();
            let (policy, _) = o.policy()?;
            let limits = *policy.scoring_limits();
            let scoring: Vec<_> = duo::node::owner::scoring::scoring_usage(&o, &limits)?
                .into_iter()
                .map(|(principal, used)| {
                    serde_json::json!({
                        "principal": principal,
                        "runs": used.runs,
                        "bits": used.millibits as f64 / 1000.0,
                    })
                })
                .collect();
            let scoring = serde_json::json!({
                "window_days": limits.window_days,
                "max_runs": limits.max_runs,
                "max_bits": limits.max_bits,
                "by_fi": scoring,
            });
            if json.json {
                print_json(&serde_json::json!({
                    "measure": ledger.measure().name(), "accounts": accounts, "history": history,
                    "scoring": scoring,
                }))?;
            } else {
                println!(
                    "privacy budgets ({}; one unit of privacy protects what each dataset's privacy unit says)",
                    ledger.measure().name()
                );
                if ledger.accounts().is_empty() {
                    println!("  no budget set: dp requests are refused; set one with `duo owner budget set --epsilon 1`");
                }
                let zcdp = ledger.measure() == duo::policies::Measure::Zcdp;
                for (scope, a) in ledger.accounts() {
                    // On a zCDP node, also show what a rho means as (epsilon, delta) at delta = 1e-6.
                    let as_eps = |rho: duo::policies::Amount| {
                        duo::policies::zcdp_epsilon(rho, 1e-6).map_or_else(
                            |_| "?".to_string(),
                            |e| format!(" (eps {e} at delta 1e-6)"),
                        )
                    };
                    println!(
                        "  {:<40} cap {:<12} spent {:<12} remaining {}{}",
                        scope.to_string(),
                        a.cap.map_or("-".to_string(), |c| c.to_string()),
                        a.spent.to_string(),
                        a.remaining().map_or("-".to_string(), |c| c.to_string()),
                        match (zcdp, a.cap) {
                            (true, Some(cap)) => format!("; cap{}", as_eps(cap)),
                            _ => String::new(),
                        }
                    );
                }
                if !history.is_empty() {
                    println!("history:");
                    for h in &history {
                        println!(
                            "  request {} at {}: {} to {} on {}",
                            h["request"],
                            h["at"].as_str().unwrap_or(""),
                            h["amount"].as_str().unwrap_or(""),
                            h["principal"].as_str().unwrap_or(""),
                            h["datasets"]
                        );
                    }
                }
                println!(
                    "private scoring (2pc), last {} days: at most {} runs{} per FI",
                    limits.window_days,
                    limits.max_runs,
                    limits
                        .max_bits
                        .map_or(String::new(), |b| format!(" and {b} bits"))
                );
                let by_fi = scoring["by_fi"].as_array().cloned().unwrap_or_default();
                if by_fi.is_empty() {
                    println!("  no scoring runs in the window");
                }
                for f in by_fi {
                    println!(
                        "  {:<40} {} run(s), {} bit(s) revealed",
                        f["principal"].as_str().unwrap_or(""),
                        f["runs"],
                        f["bits"]
                    );
                }
            }
            Ok(0)
        }
        OwnerCmd::Forget { yes } => {
            let dir = ensure_owner(home)?;
            if !yes && !confirm("delete ALL loaded data on this node?")? {
                return Ok(1);
            }
            let mut o = open_owner(&dir)?;
            let names: Vec<String> = o
                .store()
                .datasets()?
                .into_iter()
                .map(|d| d.meta.name)
                .collect();
            for name in &names {
                o.store_mut().delete_dataset(name)?;
            }
            o.store().scrub()?;
            println!(
                "deleted {} dataset(s); the log, pairings and history are kept",
                names.len()
            );
            Ok(0)
        }
        OwnerCmd::Requests { json } => {
            let dir = ensure_owner(home)?;
            let o = open_owner(&dir)?;
            let views = o
                .pending_ids()?
                .into_iter()
                .map(|id| o.pending_view(id))
                .collect::<Result<Vec<_>, _>>()?;
            if json.json {
                print_json(&views)?;
            } else if views.is_empty() {
                println!("no requests are waiting for you");
            } else {
                for v in &views {
                    println!("{}", show::pending(v));
                }
            }
            Ok(0)
        }
        OwnerCmd::Approve {
            id,
            seen,
            yes: _,
            json,
        } => {
            let dir = ensure_owner(home)?;
            let mut o = open_owner(&dir)?;
            match o.approve(id, seen.as_deref()) {
                Ok(v) => {
                    emit(json, &v, |v| format!("released:\n{}", show::request(v)))?;
                    Ok(0)
                }
                Err(duo::node::Error::Stale { why, .. }) => {
                    let fresh = o.pending_view(id)?;
                    if json.json {
                        print_json(
                            &serde_json::json!({ "error": "stale", "why": why, "fresh": fresh }),
                        )?;
                    } else {
                        eprintln!("not approved: {why}\nhere is what approving would mean now:\n");
                        eprintln!("{}", show::pending(&fresh));
                    }
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        OwnerCmd::Deny { id, reason, json } => {
            let dir = ensure_owner(home)?;
            let mut o = open_owner(&dir)?;
            let v = o.deny(id, &reason)?;
            emit(json, &v, |v| format!("denied:\n{}", show::request(v)))?;
            Ok(0)
        }
        OwnerCmd::Log {
            verify,
            receipt,
            limit,
            json,
        } => {
            let dir = ensure_owner(home)?;
            let o = open_owner(&dir)?;
            if verify {
                let mut r = o.store().verify_log()?;
                if let Some(path) = receipt {
                    let receipt = read_receipt(&path)?;
                    let own = duo::node::owner::signer::NodeSigner::load_or_create(
                        &duo::node::owner::signer::signing_key_path(&dir),
                    )?;
                    if let Err(e) = receipt.verify(Some(&own.public_hex())) {
                        bail!("{}: not a receipt of this node: {e}", path.display());
                    }
                    match o.store().log_entry(receipt.log_seq)? {
                        Some(e) if e.hash == receipt.log_hash => {}
                        Some(_) => r.problems.push(store::LogProblem::Edited {
                            seq: receipt.log_seq,
                        }),
                        None => r.problems.push(store::LogProblem::Missing {
                            from: receipt.log_seq,
                            to: receipt.log_seq,
                        }),
                    }
                }
                if json.json {
                    print_json(&r)?;
                } else if r.problems.is_empty() {
                    println!("log verified: {} entries, head {}", r.entries, r.head_hash);
                } else {
                    println!(
                        "LOG TAMPERED: {} problem(s) in {} entries",
                        r.problems.len(),
                        r.entries
                    );
                    for p in &r.problems {
                        println!("  {p}");
                    }
                }
                return Ok(if r.problems.is_empty() { 0 } else { 1 });
            }
            let total = o.store().log_len()?;
            let after = total.saturating_sub(limit as u64);
            let entries = o.store().log_entries(after, limit)?;
            if json.json {
                print_json(&entries)?;
            } else {
                for e in entries {
                    println!("{}", show::log_entry(&e));
                }
            }
            Ok(0)
        }
        OwnerCmd::Policy(PolicyCmd::Check { file, json }) => {
            let path = match file {
                Some(f) => f,
                None => duo::node::owner::policy_path(&owner::owner_dir(home)),
            };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let problem = match Policy::parse(&text) {
                Ok(p) => p
                    .catalogue_names()
                    .into_iter()
                    .find(|(name, _)| name != "*" && duo::engine::catalogue::entry(name).is_none())
                    .map(|(name, line)| (line, 1, format!("unknown catalogue attribute `{name}`")))
                    .ok_or(p.rules().len()),
                Err(e) => Ok((e.line, e.column, e.message)),
            };
            match problem {
                Err(rules) => {
                    if json.json {
                        print_json(
                            &serde_json::json!({ "file": path, "ok": true, "rules": rules }),
                        )?;
                    } else {
                        println!("{}: ok, {rules} rule(s)", path.display());
                    }
                    Ok(0)
                }
                Ok((line, column, message)) => {
                    if json.json {
                        print_json(&serde_json::json!({
                            "file": path, "ok": false, "line": line, "column": column, "message": message,
                        }))?;
                    } else {
                        println!("{}:{line}:{column}: {message}", path.display());
                    }
                    Ok(1)
                }
            }
        }
    }
}

/// Read a receipt: a bare receipt, a request view that carries one, or a receipt-log entry.
fn read_receipt(path: &Path) -> Result<duo::node::proto::receipt::Receipt> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let inner = v.get("receipt").cloned().unwrap_or(v);
    serde_json::from_value(inner).with_context(|| format!("{} holds no receipt", path.display()))
}

/// Ask on the terminal; refuses (with how to proceed) when there is no terminal.
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!("{question} This cannot be undone; pass --yes to confirm");
    }
    eprint!("{question} This cannot be undone. Type yes to go on: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s % 86400 == 0 {
        format!("{} day(s)", s / 86400)
    } else if s % 3600 == 0 {
        format!("{} hour(s)", s / 3600)
    } else if s % 60 == 0 {
        format!("{} minute(s)", s / 60)
    } else {
        format!("{s} second(s)")
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn fi_cmd(cmd: FiCmd, home: &Path) -> Result<i32> {
    let fi = FiHome::new(&client::fi_dir(home));
    match cmd {
        FiCmd::Pair {
            url,
            code,
            name,
            json,
        } => {
            let rec = client::pair(&fi, &url, &code, &name).await?;
            if json.json {
                print_json(&rec)?;
            } else {
                println!(
                    "paired with {} as \"{}\" (owner key {} pinned; saved as `{}`)",
                    rec.url, rec.principal, rec.fingerprint, rec.name
                );
            }
            Ok(0)
        }
        FiCmd::Datasets { owner, json } => {
            let mut c = Client::connect(&fi, owner.as_deref()).await?;
            let ds = c.datasets().await?;
            c.close().await;
            emit(json, &ds, |d| show::datasets(d))?;
            Ok(0)
        }
        FiCmd::Catalogue { owner, json } => {
            let mut c = Client::connect(&fi, owner.as_deref()).await?;
            let cat = c.catalogue().await?;
            c.close().await;
            emit(json, &cat, |c| show::catalogue(c))?;
            Ok(0)
        }
        FiCmd::Cost {
            exprs,
            dp,
            owner,
            json,
        } => {
            let params = dp.params().ok_or_else(|| {
                anyhow!("state what to spend: --epsilon X, --rho X, or --alpha A [--beta B]")
            })?;
            let mut c = Client::connect(&fi, owner.as_deref()).await?;
            let mut rows = Vec::new();
            let mut total = duo::policies::Amount::from_nanos(0);
            let mut unit = String::new();
            for e in &exprs {
                let p = c.expr(e).await?;
                match c.cost(&p, params.clone()).await? {
                    duo::node::proto::ServerMsg::Cost {
                        cost,
                        measure,
                        accuracy95,
                        mechanism,
                    } => {
                        let amount: duo::policies::Amount =
                            cost.parse().map_err(|e| anyhow!("{e}"))?;
                        total = total
                            .checked_add(amount)
                            .ok_or_else(|| anyhow!("total overflows"))?;
                        unit = measure.clone();
                        rows.push(serde_json::json!({
                            "expr": e, "lineage": p.description, "cost": cost, "measure": measure,
                            "accuracy95": accuracy95, "mechanism": mechanism,
                        }));
                    }
                    other => bail!("unexpected reply {other:?}"),
                }
            }
            c.close().await;
            if json.json {
                print_json(
                    &serde_json::json!({ "releases": rows, "total": total.to_string(), "measure": unit }),
                )?;
            } else {
                for r in &rows {
                    println!(
                        "{}\n  cost {} {}; 95% of answers within {} of the exact value; {}",
                        r["lineage"].as_str().unwrap_or(""),
                        r["cost"].as_str().unwrap_or(""),
                        r["measure"].as_str().unwrap_or(""),
                        r["accuracy95"]
                            .as_f64()
                            .map_or("n/a".to_string(), |a| format!("±{a:.1}")),
                        r["mechanism"].as_str().unwrap_or("")
                    );
                }
                println!("total: {total} {unit} (nothing was charged)");
            }
            Ok(0)
        }
        FiCmd::Request {
            expr,
            reason,
            backend,
            dp,
            wait,
            owner,
            json,
        } => {
            let backend: Backend = backend
                .parse()
                .map_err(|_| anyhow!("unknown backend `{backend}`; use plaintext or dp"))?;
            let params = dp.params();
            if backend == Backend::Dp && params.is_none() {
                bail!("a dp request states what to spend: --epsilon X, --rho X, or --alpha A [--beta B]");
            }
            if backend != Backend::Dp && params.is_some() {
                bail!("--epsilon, --rho and --alpha go with --backend dp");
            }
            // Parse locally first so syntax errors point at the position without a round trip.
            if let Err(e) = duo::engine::parse::parse_expr(&expr) {
                eprintln!("{}", e.render(&expr));
                return Ok(2);
            }
            let mut c = Client::connect(&fi, owner.as_deref()).await?;
            let p = c.expr(&expr).await?;
            let mut v = match params {
                Some(params) => c.request_dp(&p, params, &reason).await?,
                None => c.request(&p, backend, &reason).await?,
            };
            if v.state == RequestState::Pending && wait > 0 {
                if !json.json {
                    eprintln!(
                        "request {} is waiting for the owner; waiting up to {wait}s",
                        v.id
                    );
                }
                v = c.status(v.id, Duration::from_secs(wait)).await?;
            }
            c.close().await;
            if json.json {
                print_json(&v)?;
            } else {
                print!("{}", show::request(&v));
                if v.state == RequestState::Pending {
                    println!("  (ask again later with `duo fi result {}`)", v.id);
                }
            }
            Ok(match v.state {
                RequestState::Denied => 1,
                _ => 0,
            })
        }
        FiCmd::Score {
            model,
            reason,
            reveal,
            wait,
            request,
            max_runs_per_owner,
            owner,
            json,
        } => {
            let text = std::fs::read_to_string(&model)
                .with_context(|| format!("reading the model file {}", model.display()))?;
            let m = duo::node::fi::ModelFile::parse(&text).map_err(|e| {
                anyhow!(
                    "{}: {e} (the README shows the model file's format)",
                    model.display()
                )
            })?;
            if max_runs_per_owner == 0 {
                bail!("--max-runs-per-owner must be at least 1");
            }
            // Refused here, before the owner hears of it: a model over the headroom, or bands without thresholds.
            if request.is_none() {
                m.encode(reveal)
                    .map_err(|e| anyhow!("{}: {e}", model.display()))?;
            }
            let mut c = Client::connect(&fi, owner.as_deref()).await?;
            c.set_score_limit(client::ScoreLimit {
                max_runs: max_runs_per_owner,
                window_days: client::ScoreLimit::default().window_days,
            });
            let mut progress = |what: &str| eprintln!("... {}", show::score_progress(what));
            let result = match request {
                // The owner checks that the request is this FI's, approved and not run yet.
                Some(id) => c.score_run(id, &m, &mut progress).await,
                None => {
                    let reason = reason.unwrap_or_default();
                    c.score(
                        &m,
                        reveal,
                        &reason,
                        Duration::from_secs(wait),
                        &mut progress,
                    )
                    .await
                }
            };
            let fi_name = c.principal().to_string();
            c.close().await;
            let report = match result {
                Ok(r) => r,
                Err(
                    e @ (duo::node::Error::Refused(_)
                    | duo::node::Error::Limit(_)
                    | duo::node::Error::Remote { .. }),
                ) => {
                    if json.json {
                        print_json(
                            &serde_json::json!({ "error": e.code(), "message": e.to_string() }),
                        )?;
                    } else {
                        eprintln!("not scored: {e}");
                    }
                    return Ok(1);
                }
                Err(e) => return Err(e.into()),
            };
            let opening = report.commitment.as_ref().map(|c| {
                client::fi_dir(home)
                    .join("models")
                    .join(format!("{c}.json"))
            });
            emit(json, &report, |r| {
                show::score_report(r, &fi_name, opening.as_deref().filter(|p| p.exists()))
            })?;
            Ok(0)
        }
        FiCmd::Receipts { verify, json } => {
            let entries = fi.receipts()?;
            if verify {
                let problems = fi.verify_receipts()?;
                if json.json {
                    print_json(
                        &serde_json::json!({ "entries": entries.len(), "problems": problems }),
                    )?;
                } else if problems.is_empty() {
                    println!("{} receipt(s); chain and signatures verify", entries.len());
                } else {
                    for p in &problems {
                        println!("{p}");
                    }
                }
                return Ok(if problems.is_empty() { 0 } else { 1 });
            }
            if json.json {
                print_json(&entries)?;
            } else if entries.is_empty() {
                println!("no receipts yet");
            } else {
                for e in entries {
                    println!(
                        "{:>4} {} request {} via {} at {} (owner log entry {})",
                        e.seq,
                        e.owner,
                        e.receipt.request,
                        e.receipt.backend,
                        e.receipt.issued_at,
                        e.receipt.log_seq
                    );
                }
            }
            Ok(0)
        }
        FiCmd::Result {
            id,
            wait,
            owner,
            json,
        } => {
            let mut c = Client::connect(&fi, owner.as_deref()).await?;
            let v = c.status(id, Duration::from_secs(wait)).await?;
            c.close().await;
            emit(json, &v, show::request)?;
            Ok(0)
        }
    }
}
