//! `duo fi request ... --owners` and `duo fi score ... --owners`: one question to a portfolio of owners (see
//! [`duo::node::fi::portfolio`]), with a progress bar on stderr and a table per owner at the end.

use super::super::{print_json, show, JsonFlag};
use crate::cli::out::{errln, outln};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use duo::node::fi::portfolio::{
    self, Batch, BatchAsk, BatchEvent, BatchOptions, Observer, OwnerOutcome,
};
use duo::node::fi::{FiHome, ScoreLimit};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// The exit code of a batch with owners that have not answered (pending, unreachable, failed, or unknown):
/// run it again with `--batch ID` to continue.
pub const EXIT_UNFINISHED: i32 = 3;

/// Options of a batch, shared by `duo fi request` and `duo fi score`.
#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    /// Ask several paired owners at once: `all`, a comma-separated list of pairing names, or @FILE (one name a
    /// line). Ends with a table per owner and the batch id; exit 0 when every owner answered (approved or
    /// denied), 3 when some did not (pending, unreachable, failed): run the same command with --batch ID (or
    /// --resume) to continue, which never asks an owner twice.
    #[arg(long, conflicts_with = "owner")]
    pub owners: Option<String>,
    /// Owners worked with at once.
    #[arg(long, default_value_t = portfolio::DEFAULT_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Continue this batch (its owners are the ones it was made with): owners that answered are not
    /// contacted, requests already made are polled, unreachable owners are tried again.
    #[arg(long, conflicts_with = "owner")]
    pub batch: Option<String>,
    /// Continue the newest unfinished batch that asked exactly this.
    #[arg(long, conflicts_with_all = ["owner", "batch"])]
    pub resume: bool,
}

impl BatchArgs {
    /// Whether the command is a batch.
    pub fn is_batch(&self) -> bool {
        self.owners.is_some() || self.batch.is_some() || self.resume
    }
}

/// Run (or continue) the batch the arguments name, asking `ask`; print the table (or JSON) and return the exit
/// code.
pub async fn run(
    fi: &FiHome,
    ask: BatchAsk,
    args: &BatchArgs,
    wait: u64,
    score_limit: ScoreLimit,
    json: JsonFlag,
) -> Result<i32> {
    let batch = pick(fi, ask, args, json)?;
    let opts = BatchOptions {
        concurrency: usize::from(args.concurrency),
        wait: Duration::from_secs(wait),
        score_limit,
        ..BatchOptions::default()
    };
    let todo = batch
        .owners
        .iter()
        .filter(|e| !e.outcome.answered())
        .count();
    let bar = progress_bar(todo as u64, json);
    let b2 = bar.clone();
    let observer: Observer = Arc::new(move |ev: &BatchEvent| match ev {
        BatchEvent::Started { owner } => b2.set_message(format!("asking {owner}")),
        BatchEvent::Finished { entry } => {
            b2.inc(1);
            b2.set_message(format!("{}: {}", entry.owner, entry.outcome.name()));
        }
    });
    let done = portfolio::run_batch(fi, &batch.id, &opts, Some(observer)).await;
    bar.finish_and_clear();
    let done = done?;
    if json.json {
        print_json(&done)?;
    } else {
        outln!("{}", table(&done))?;
    }
    Ok(if done.complete() { 0 } else { EXIT_UNFINISHED })
}

/// The batch to run: the one named, the newest unfinished one asking the same (`--resume`), or a new one.
fn pick(fi: &FiHome, ask: BatchAsk, args: &BatchArgs, json: JsonFlag) -> Result<Batch> {
    if let Some(id) = &args.batch {
        let b = portfolio::load_batch(fi, id)?;
        if b.ask != ask {
            bail!(
                "batch {id} asks something else ({}); run it with the command that made it",
                ask_words(&b.ask)
            );
        }
        return Ok(b);
    }
    if args.resume {
        return portfolio::latest_unfinished(fi, &ask)?.ok_or_else(|| {
            anyhow!(
                "no unfinished batch asks exactly this; drop --resume to start one with --owners"
            )
        });
    }
    let spec = args
        .owners
        .as_deref()
        .ok_or_else(|| anyhow!("say which owners: --owners all|NAME,NAME|@FILE"))?;
    let owners = portfolio::select_owners(fi, spec)?;
    if let Some(prev) = portfolio::latest_unfinished(fi, &ask)? {
        if !json.json {
            errln!(
                "note: batch {} asked the same and is unfinished; this starts a new batch (--batch {} continues \
                 that one without asking its owners again)",
                prev.id,
                prev.id
            );
        }
    }
    Ok(portfolio::new_batch(fi, ask, &owners)?)
}

/// The progress bar on stderr: hidden when stderr is not a terminal or the output is JSON.
fn progress_bar(len: u64, json: JsonFlag) -> ProgressBar {
    if json.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} owners  {elapsed}  {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `duo fi batches`: the kept batches, oldest first.
pub fn list(fi: &FiHome, json: JsonFlag) -> Result<i32> {
    let all = portfolio::batches(fi)?;
    if json.json {
        print_json(&all)?;
    } else if all.is_empty() {
        outln!("no batches yet; ask several owners with `duo fi request EXPR --reason WHY --owners all`")?;
    } else {
        for b in &all {
            let counts = b
                .counts()
                .iter()
                .map(|(n, k)| format!("{k} {}", n.replace('_', " ")))
                .collect::<Vec<_>>()
                .join(", ");
            outln!(
                "{}  {}\n  {} owner(s): {counts}",
                b.id,
                ask_words(&b.ask),
                b.owners.len()
            )?;
        }
    }
    Ok(0)
}

/// What a batch asks, in a few words.
fn ask_words(ask: &BatchAsk) -> String {
    match ask {
        BatchAsk::Release {
            expr,
            backend,
            reason,
            ..
        } => format!("{} release of {expr}, reason \"{reason}\"", backend.name()),
        BatchAsk::Score { reveal, reason, .. } => {
            format!("private scoring revealing {reveal}, reason \"{reason}\"")
        }
    }
}

/// One owner's outcome in a few words: the answer, the reason, or the numbers.
pub fn outcome_words(o: &OwnerOutcome) -> String {
    match o {
        OwnerOutcome::Approved {
            answer: Some(a),
            ty: Some(ty),
            ..
        } => show::answer(a, ty),
        OwnerOutcome::Approved {
            answer: Some(a), ..
        } => serde_json::to_string(a).unwrap_or_default(),
        OwnerOutcome::Approved { score: Some(s), .. } => s.to_string(),
        OwnerOutcome::Approved { .. } => String::new(),
        OwnerOutcome::NotAsked => "not asked yet".into(),
        OwnerOutcome::Pending => "waits for the owner's decision".into(),
        OwnerOutcome::Denied { reason } => reason.clone(),
        OwnerOutcome::OverBudget {
            requested: Some(r),
            remaining: Some(l),
            ..
        } => format!("requested {r}, remaining {l}"),
        OwnerOutcome::OverBudget { reason, .. } => reason.clone(),
        OwnerOutcome::Unreachable { error }
        | OwnerOutcome::Failed { error }
        | OwnerOutcome::Unknown { error } => error.clone(),
    }
}

/// The per-owner table, the counts, and how to continue.
pub fn table(b: &Batch) -> String {
    let w_owner = b
        .owners
        .iter()
        .map(|e| e.owner.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let w_out = 11;
    let mut s = format!(
        "{:<w_owner$}  {:<w_out$}  {:>7}  answer / reason\n",
        "owner", "outcome", "request"
    );
    for e in &b.owners {
        let req = e.request.map_or_else(|| "-".to_string(), |r| r.to_string());
        let words = outcome_words(&e.outcome).replace('\n', " ");
        s.push_str(&format!(
            "{:<w_owner$}  {:<w_out$}  {:>7}  {}\n",
            e.owner,
            e.outcome.name().replace('_', " "),
            req,
            words
        ));
    }
    let counts = b
        .counts()
        .iter()
        .map(|(n, k)| format!("{k} {}", n.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ");
    s.push_str(&format!("batch {}: {counts}", b.id));
    if !b.complete() {
        s.push_str(&format!(
            "\n(run the same command with --batch {} to continue: answered owners are not asked again)",
            b.id
        ));
    }
    s
}
