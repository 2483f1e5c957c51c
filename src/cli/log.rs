//! `duo owner log`: the audit log in words, or a check that nobody has tampered with it or with the state it
//! commits to.

use super::receipt::read_receipt;
use super::{ensure_owner, open_owner, print_json, show, JsonFlag};
use crate::cli::out::outln;
use anyhow::{bail, Result};
use clap::Args;
use duo::node::owner::signer::{signing_key_path, NodeSigner};
use duo::node::owner::Owner;
use duo::node::store::prelude::*;
use duo::node::store::{LogProblem, LogReport};
use std::path::{Path, PathBuf};

/// Options of `duo owner log`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Check every entry's hash and link, and that the privacy ledger, every decision and stored answer and
    /// every pairing are what the log committed to (the ledger is replayed from the logged caps and charges);
    /// exit 1 if anything was edited, removed or reordered, in the log or around it.
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
}

/// Show the last entries, or verify the log (exit 1 on any problem).
pub fn run(home: &Path, args: LogArgs) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let o = open_owner(&dir)?;
    if args.verify {
        return verify(&dir, &o, args.receipt.as_deref(), args.json);
    }
    let entries = o.store().log_tail(args.limit)?;
    if args.json.json {
        print_json(&entries)?;
    } else {
        let shown = entries.len();
        for e in entries {
            let ty = show::release_type(o.store(), &e);
            outln!("{}", show::log_entry(&e, ty.as_ref()))?;
        }
        if shown == args.limit {
            outln!(
                "(the last {shown} entries; `--limit N` shows more, `--json` prints them for a program)"
            )?;
        }
    }
    Ok(0)
}

/// `--verify`: the hash chain, and with `receipt` the entry an FI's receipt names.
fn verify(dir: &Path, o: &Owner, receipt: Option<&Path>, json: JsonFlag) -> Result<i32> {
    let mut r = o.store().verify_log()?;
    if let Some(path) = receipt {
        check_receipt(dir, o, path, &mut r)?;
    }
    if json.json {
        print_json(&r)?;
    } else if r.problems.is_empty() {
        outln!("log verified: {} entries, head {}", r.entries, r.head_hash)?;
    } else {
        outln!(
            "LOG TAMPERED: {} problem(s) in {} entries",
            r.problems.len(),
            r.entries
        )?;
        for p in &r.problems {
            outln!("  {p}")?;
        }
        if r.problems
            .iter()
            .any(|p| matches!(p, LogProblem::StateEdited { .. }))
        {
            outln!(
                "The node refuses to use state that does not match the log (FIs get the error `integrity`). \
                 Put back what was changed, from a backup of the owner directory, or revoke and re-invite a \
                 pairing that was edited."
            )?;
        }
    }
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}

/// The receipt in `path` must be this node's, and the entry it names still in the log with the same hash;
/// a missing or changed entry is added to the report's problems.
fn check_receipt(dir: &Path, o: &Owner, path: &Path, report: &mut LogReport) -> Result<()> {
    let receipt = read_receipt(path)?;
    let own = NodeSigner::load_or_create(&signing_key_path(dir))?;
    if let Err(e) = receipt.verify(Some(&own.public_hex())) {
        bail!("{}: not a receipt of this node: {e}", path.display());
    }
    match o.store().log_entry(receipt.log_seq)? {
        Some(e) if e.hash == receipt.log_hash => {}
        Some(_) => report.problems.push(LogProblem::Edited {
            seq: receipt.log_seq,
        }),
        None => report.problems.push(LogProblem::Missing {
            from: receipt.log_seq,
            to: receipt.log_seq,
        }),
    }
    Ok(())
}
