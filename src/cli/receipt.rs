//! `duo verify-receipt`, and reading a receipt file (also for `duo owner log --verify --receipt`).

use crate::cli::out::outln;
use anyhow::{Context, Result};
use clap::Args;
use duo::node::proto::receipt::Receipt;
use std::path::{Path, PathBuf};

/// Options of `duo verify-receipt`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The receipt file (`-` for standard input).
    file: PathBuf,
    /// The node's signing key (hex). Without it, the key the receipt names is used, which proves only that
    /// the receipt was not altered.
    #[arg(long)]
    key: Option<String>,
}

/// Check the signature of a receipt, or of every receipt in a list (what `duo fi receipts --json` prints):
/// exit 0 if all verify, 1 if any does not.
pub fn verify(args: VerifyArgs) -> Result<i32> {
    let mut status = 0;
    for receipt in read_receipts(&args.file)? {
        match receipt.verify(args.key.as_deref()) {
            Ok(()) => outln!(
                "receipt verifies: request {} released to \"{}\" via {} (log entry {}, node key {}){}",
                receipt.request,
                receipt.principal,
                receipt.backend,
                receipt.log_seq,
                receipt.node_key,
                if args.key.is_none() {
                    "; pass --key to check it is this node's key"
                } else {
                    ""
                }
            )?,
            Err(e) => {
                outln!("receipt for request {} does NOT verify: {e}", receipt.request)?;
                status = 1;
            }
        }
    }
    Ok(status)
}

/// Read one receipt: a bare receipt, a request view that carries one, or a receipt-log entry (a list of
/// exactly one of those too).
pub fn read_receipt(path: &Path) -> Result<Receipt> {
    let mut all = read_receipts(path)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => anyhow::bail!(
            "{} holds {n} receipts; give one (for example one entry of `duo fi receipts --json`)",
            path.display()
        ),
    }
}

/// Read receipts: one (a bare receipt, a request view that carries one, or a receipt-log entry) or a list of
/// them, as `duo fi receipts --json` prints.
pub fn read_receipts(path: &Path) -> Result<Vec<Receipt>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let items = match v {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let inner = item.get("receipt").cloned().unwrap_or(item);
            serde_json::from_value(inner)
                .with_context(|| format!("{}: item {} holds no receipt", path.display(), i + 1))
        })
        .collect()
}
