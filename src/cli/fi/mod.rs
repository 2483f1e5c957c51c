//! `duo fi ...`: the financial institution's commands. Each connects to a paired owner node (all but `pair`
//! and `receipts`), does one thing and closes the session.

mod batch;
mod release;
mod score;
pub mod ui;

use super::{emit, print_json, runtime, show, JsonFlag};
use anyhow::Result;
use clap::Subcommand;
use duo::node::fi::{self as client, Client, FiHome};
use std::path::Path;
use std::time::Duration;

use crate::cli::out::outln;
pub use release::{CostArgs, RequestArgs};
pub use score::ScoreArgs;

/// The FI's commands.
#[derive(Subcommand, Debug)]
pub enum FiCmd {
    /// Preview, without charging anything, what DP releases would cost and how accurate they would be.
    Cost(CostArgs),
    /// Pair with an owner node using the invite code the owner gave you.
    Pair {
        /// The owner node's address, e.g. ws://127.0.0.1:7878.
        url: String,
        /// The invite code (duo1-...).
        code: String,
        /// Local name for this owner node (the other commands' --owner).
        #[arg(long, default_value = "owner")]
        name: String,
        /// Replace a pairing of that name with another owner node (without it, pairing a second owner under a
        /// name already in use is refused, so the first pairing is not lost).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The owner nodes this FI is paired with: name, address, pinned key, principal, paired since, last seen,
    /// and whether each answers now (all probed at once, each within --timeout seconds).
    Owners {
        /// Do not contact the owner nodes (no "reachable now" column).
        #[arg(long)]
        no_probe: bool,
        /// Seconds each probe waits for a session.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The requests this FI made, as each was last seen (`duo fi result ID` asks again).
    Requests {
        /// Only those of this paired owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The batches this FI ran (`duo fi request|score --owners`), oldest first: id, question, outcomes.
    Batches {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Model files for `duo fi score`.
    #[command(subcommand)]
    Model(ModelCmd),
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
    Request(RequestArgs),
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
    ///   decision+reasons:K
    ///             the decision and, only on a decline, the K attributes (1 to 4) whose contributions fell
    ///             furthest below their best within the public bounds, worst first, each in plain words:
    ///             ceil(log2(n!/(n-K)!)) + 1 bits for n attributes; owners' policies refuse it unless a rule
    ///             lists "decision+reasons";
    ///
    ///   score     the raw score: 64 bits, which can reveal an attribute outright; owners' policies refuse it
    ///             unless a rule allows it.
    ///
    /// A logistic model may give `probability = P` instead of `threshold`: it is converted exactly to the
    /// linear-score threshold ln(P/(1-P)), rounded up to the score's fixed point.
    ///
    /// The owner's policy limits the runs and bits per FI and window; this FI also limits its own runs per
    /// owner, counted under the name it paired the owner with (--max-runs-per-owner), since an owner who
    /// controls its inputs could probe the model.
    ///
    /// A modified owner node can make the FI's output anything it likes (the owner chooses how the FI decodes
    /// it), and can try to read the model: this FI returns only output labels the owner committed to, and after
    /// a run aborts on that check it scores that owner no more until you pass --allow-after-abort.
    #[command(verbatim_doc_comment)]
    Score(ScoreArgs),
    /// The receipts this FI has kept, each verified when it arrived; --verify checks them all again.
    Receipts {
        /// Check the log's chain and every signature against the pinned keys; exit 1 on any problem.
        #[arg(long)]
        verify: bool,
        /// List only the receipts of this paired owner (--verify still checks the whole chain).
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Serve this FI's web UI on this computer until Ctrl-C: connect to a host, requests, private scoring.
    /// Prints the address to open (with this launch's secret); it is also kept in the FI home's ui.url.
    Ui {
        /// Where to listen: 127.0.0.1 or [::1] only (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
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

/// `duo fi model`: model files.
#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Write the example thin-file model (four catalogue attributes, commented) to start from.
    Init {
        /// Where to write it.
        #[arg(default_value = "model.toml")]
        path: std::path::PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// The example model, as `examples/model.toml` in the source holds it.
const EXAMPLE_MODEL: &str = include_str!("../../../examples/model.toml");

/// Run one FI command.
pub fn run(cmd: FiCmd, home: &Path) -> Result<i32> {
    runtime()?.block_on(run_async(cmd, home))
}

async fn run_async(cmd: FiCmd, home: &Path) -> Result<i32> {
    let fi = FiHome::new(&client::fi_dir(home));
    match cmd {
        FiCmd::Pair {
            url,
            code,
            name,
            replace,
            json,
        } => pair(&fi, &url, &code, &name, replace, json).await,
        FiCmd::Owners {
            no_probe,
            timeout,
            json,
        } => owners(&fi, (!no_probe).then(|| Duration::from_secs(timeout)), json).await,
        FiCmd::Requests { owner, json } => requests(&fi, owner.as_deref(), json),
        FiCmd::Batches { json } => batch::list(&fi, json),
        FiCmd::Model(ModelCmd::Init { path, force }) => model_init(&path, force),
        FiCmd::Datasets { owner, json } => datasets(&fi, owner.as_deref(), json).await,
        FiCmd::Catalogue { owner, json } => catalogue(&fi, owner.as_deref(), json).await,
        FiCmd::Cost(args) => release::cost(&fi, args).await,
        FiCmd::Request(args) => release::request(&fi, args).await,
        FiCmd::Score(args) => score::score(&fi, home, args).await,
        FiCmd::Receipts {
            verify,
            owner,
            json,
        } => receipts(&fi, verify, owner.as_deref(), json),
        FiCmd::Ui { listen } => ui::run(home, listen).await,
        FiCmd::Result {
            id,
            wait,
            owner,
            json,
        } => result(&fi, id, wait, owner.as_deref(), json).await,
    }
}

/// `duo fi pair`: pin the owner's key and register this FI's.
async fn pair(
    fi: &FiHome,
    url: &str,
    code: &str,
    name: &str,
    replace: bool,
    json: JsonFlag,
) -> Result<i32> {
    // Refused before the code is used, so a refusal costs the invite nothing.
    if let Some(other) = client::pairing_conflict(fi, code, name)? {
        if !replace {
            anyhow::bail!(
                "a pairing named `{name}` exists already, with another owner node ({} at {}); pair this one under \
                 another name with --name NAME (the other commands take --owner NAME), or pass --replace to \
                 replace that pairing",
                other.fingerprint,
                other.url
            );
        }
    }
    let rec = client::pair(fi, url, code, name).await?;
    if json.json {
        print_json(&rec)?;
    } else {
        outln!("{}", paired_words(&rec))?;
    }
    Ok(0)
}

/// A new pairing in words.
pub fn paired_words(rec: &client::PairingRecord) -> String {
    format!(
        "paired with {} as \"{}\" (owner key {} pinned; saved as `{}`)",
        rec.url, rec.principal, rec.fingerprint, rec.name
    )
}

/// `duo fi owners`: the pairings this FI holds, each probed unless `probe` is `None`.
async fn owners(fi: &FiHome, probe: Option<Duration>, json: JsonFlag) -> Result<i32> {
    let list = client::portfolio::owners_status(fi, probe, 32).await?;
    if json.json {
        print_json(&list)?;
    } else if list.is_empty() {
        outln!("no owner node is paired; pair with `duo fi pair URL CODE --name NAME`")?;
    } else {
        for o in list {
            let p = &o.pairing;
            let now = match (o.reachable, &o.probe_error) {
                (None, _) => String::new(),
                (Some(true), _) => "; reachable now".into(),
                (Some(false), Some(e)) => format!("; not reachable now: {e}"),
                (Some(false), None) => "; not reachable now".into(),
            };
            outln!(
                "{}  {}\n  paired as \"{}\" on {}; owner key {}\n  last seen {}; expiry not known to this FI{now}",
                p.name,
                p.url,
                p.principal,
                p.paired_at,
                p.fingerprint,
                p.last_seen.as_deref().unwrap_or("never")
            )?;
        }
    }
    Ok(0)
}

/// `duo fi requests`: this FI's requests as last seen, newest last.
fn requests(fi: &FiHome, owner: Option<&str>, json: JsonFlag) -> Result<i32> {
    let list: Vec<_> = fi
        .requests()?
        .into_iter()
        .filter(|r| owner.is_none_or(|o| r.owner == o))
        .collect();
    if json.json {
        print_json(&list)?;
    } else if list.is_empty() {
        outln!("no requests yet; ask with `duo fi request EXPR --reason WHY`")?;
    } else {
        for r in list {
            outln!(
                "{:>4} {}  [{}]  {}: {}\n       reason: {}; asked {}, last seen {}",
                r.id,
                r.owner,
                r.state,
                r.backend,
                r.description,
                r.reason,
                r.asked_at,
                r.seen_at
            )?;
        }
        outln!("(`duo fi result ID` asks the owner node for a request's state now)")?;
    }
    Ok(0)
}

/// `duo fi model init`: the example model, to edit.
fn model_init(path: &Path, force: bool) -> Result<i32> {
    if path.exists() && !force {
        anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(path, EXAMPLE_MODEL)?;
    outln!(
        "wrote the example model to {}: edit its weights, then `duo fi score --model {} --reason WHY`",
        path.display(),
        path.display()
    )?;
    Ok(0)
}

/// `duo fi datasets`: the owner's published metadata.
async fn datasets(fi: &FiHome, owner: Option<&str>, json: JsonFlag) -> Result<i32> {
    let mut c = Client::connect(fi, owner).await?;
    let ds = c.datasets().await?;
    c.close().await;
    emit(json, &ds, |d| show::datasets(d))?;
    Ok(0)
}

/// `duo fi catalogue`: the named attributes.
async fn catalogue(fi: &FiHome, owner: Option<&str>, json: JsonFlag) -> Result<i32> {
    let mut c = Client::connect(fi, owner).await?;
    let cat = c.catalogue().await?;
    c.close().await;
    if json.json {
        // Each attribute with the plain words a decline with reasons gives for it (this client's catalogue).
        let rows = cat
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e)?;
                v["reason"] = duo::node::proto::scoring::reason_words(&e.name).into();
                Ok(v)
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        print_json(&rows)?;
    } else {
        emit(json, &cat, |c| show::catalogue(c))?;
    }
    Ok(0)
}

/// `duo fi receipts`: the kept receipts, or (`verify`) a check of them all; exit 1 on any problem.
fn receipts(fi: &FiHome, verify: bool, owner: Option<&str>, json: JsonFlag) -> Result<i32> {
    let mut entries = fi.receipts()?;
    if let Some(o) = owner {
        entries.retain(|e| e.owner == o);
    }
    if verify {
        let problems = fi.verify_receipts()?;
        if json.json {
            print_json(&serde_json::json!({ "entries": entries.len(), "problems": problems }))?;
        } else if problems.is_empty() {
            outln!("{} receipt(s); chain and signatures verify", entries.len())?;
        } else {
            for p in &problems {
                outln!("{p}")?;
            }
        }
        return Ok(if problems.is_empty() { 0 } else { 1 });
    }
    if json.json {
        print_json(&entries)?;
    } else if entries.is_empty() {
        outln!("no receipts yet")?;
    } else {
        for e in entries {
            outln!(
                "{:>4} {} request {} via {} at {} (owner log entry {})",
                e.seq,
                e.owner,
                e.receipt.request,
                e.receipt.backend,
                e.receipt.issued_at,
                e.receipt.log_seq
            )?;
        }
    }
    Ok(0)
}

/// `duo fi result`: an earlier request's state, waiting up to `wait` seconds for a decision.
async fn result(
    fi: &FiHome,
    id: u64,
    wait: u64,
    owner: Option<&str>,
    json: JsonFlag,
) -> Result<i32> {
    let mut c = Client::connect(fi, owner).await?;
    let v = c.status(id, Duration::from_secs(wait)).await?;
    c.close().await;
    emit(json, &v, show::request)?;
    Ok(0)
}
