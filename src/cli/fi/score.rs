//! `duo fi score`: private credit scoring (2PC) with the FI's model file.

use super::super::{emit, print_json, show, JsonFlag};
use crate::cli::out::{errln, outln};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use duo::node::fi::ModelFile;
use duo::node::fi::{self as client, Client, FiHome, ScoreLimit, ScoreReport};
use duo::policies::Reveal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `duo fi score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The model file (TOML): `bias`, `threshold`, optional `name` and `bands`, and a `[weights]` table
    /// of catalogue attribute = weight. See the README.
    #[arg(long)]
    model: PathBuf,
    /// Why you need it (the owner sees it).
    #[arg(long, required_unless_present = "request")]
    reason: Option<String>,
    /// What the run reveals: decision (1 bit), bands:K (log2 K bits) or score (64 bits).
    #[arg(long, default_value = "decision")]
    reveal: Reveal,
    /// Wait up to this many seconds for the owner's decision (for a request that goes to the owner);
    /// without it, a request the owner must decide is left pending: run it later with --request.
    #[arg(long, default_value_t = 0, conflicts_with = "request")]
    wait: u64,
    /// Run this already approved scoring request (made earlier by `duo fi score`) instead of asking
    /// again; pass the same model file. Each approved request allows one run.
    #[arg(long, conflicts_with = "reason")]
    request: Option<u64>,
    /// This FI's own limit: scoring runs against one owner per 30 days.
    #[arg(long, default_value_t = ScoreLimit::default().max_runs)]
    max_runs_per_owner: u32,
    /// Score this owner again although one of its runs aborted after this FI's inputs had entered the circuit
    /// (a check only a modified owner node fails, whose abort may have told it a bit of the model). Clears that
    /// record for this owner; without it this FI refuses to score the owner again.
    #[arg(long)]
    allow_after_abort: bool,
    /// Which paired owner.
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    batch: super::batch::BatchArgs,
    #[command(flatten)]
    json: JsonFlag,
}

/// Ask for a scoring run (or run an approved request) and print what it revealed; exit 1 when the owner's
/// node refused or limited it. With `--owners` (or `--batch`, `--resume`), a batch: exit 0 when every owner
/// answered, 3 when some did not.
pub async fn score(fi: &FiHome, home: &Path, args: ScoreArgs) -> Result<i32> {
    let model = read_model(&args)?;
    let limit = ScoreLimit {
        max_runs: args.max_runs_per_owner,
        window_days: ScoreLimit::default().window_days,
    };
    if args.batch.is_batch() {
        if args.request.is_some() || args.allow_after_abort {
            bail!(
                "--request and --allow-after-abort work with one owner (--owner NAME), not a batch"
            );
        }
        let ask = duo::node::fi::portfolio::BatchAsk::Score {
            model,
            reveal: args.reveal,
            reason: args.reason.clone().unwrap_or_default(),
        };
        return super::batch::run(fi, ask, &args.batch, args.wait, limit, args.json).await;
    }
    let mut c = Client::connect(fi, args.owner.as_deref()).await?;
    c.set_score_limit(limit);
    if args.allow_after_abort {
        for a in c.allow_after_abort()? {
            errln!(
                "note: scoring `{}` again although its run {} (request {}) aborted after this FI's inputs had \
                 entered the circuit ({})",
                a.applicant,
                a.run,
                a.request,
                a.why
            );
        }
    }
    let mut progress = |what: &str| errln!("... {}", show::score_progress(what));
    let result = match args.request {
        // The owner checks that the request is this FI's, approved and not run yet.
        Some(id) => c.score_run(id, &model, &mut progress).await,
        None => {
            let reason = args.reason.unwrap_or_default();
            let wait = Duration::from_secs(args.wait);
            c.score(&model, args.reveal, &reason, wait, &mut progress)
                .await
        }
    };
    let fi_name = c.principal().to_string();
    c.close().await;
    let report = match result {
        Ok(r) => r,
        // Not an error: the request is made and waits for the owner.
        Err(duo::node::Error::Pending(id)) => {
            if args.json.json {
                print_json(&serde_json::json!({ "request": id, "state": "pending" }))?;
            } else {
                outln!(
                    "scoring request {id} waits for the owner; once it is approved, run it with \
                     `duo fi score --request {id} --model {}`",
                    args.model.display()
                )?;
            }
            return Ok(0);
        }
        Err(
            e @ (duo::node::Error::Refused(_)
            | duo::node::Error::Limit(_)
            | duo::node::Error::Remote { .. }),
        ) => {
            if args.json.json {
                print_json(
                    &serde_json::json!({ "error": e.reported_code(), "message": e.to_string() }),
                )?;
            } else {
                errln!("not scored: {e}");
            }
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    print_report(home, &report, &fi_name, args.json)?;
    Ok(0)
}

/// The model file, checked before the owner hears of it: it parses, and (for a new request) it fits the
/// fixed-point headroom and has the thresholds its reveal needs.
fn read_model(args: &ScoreArgs) -> Result<ModelFile> {
    let path = &args.model;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the model file {}", path.display()))?;
    let model = ModelFile::parse(&text).map_err(|e| {
        anyhow!(
            "{}: {e} (the README shows the model file's format)",
            path.display()
        )
    })?;
    if args.max_runs_per_owner == 0 {
        bail!("--max-runs-per-owner must be at least 1");
    }
    if args.request.is_none() {
        model
            .encode(args.reveal)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    Ok(model)
}

/// The run's report, naming where the commitment's opening is kept when it is there.
fn print_report(home: &Path, report: &ScoreReport, fi_name: &str, json: JsonFlag) -> Result<()> {
    let opening = report.commitment.as_ref().map(|c| {
        client::fi_dir(home)
            .join("models")
            .join(format!("{c}.json"))
    });
    emit(json, report, |r| {
        show::score_report(r, fi_name, opening.as_deref().filter(|p| p.exists()))
    })
}
