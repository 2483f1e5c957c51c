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

/// Check a receipt's signature: exit 0 if it verifies, 1 if not.
pub fn verify(args: VerifyArgs) -> Result<i32> {
    let receipt = read_receipt(&args.file)?;
    match receipt.verify(args.key.as_deref()) {
        Ok(()) => {
            outln!(
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
            )?;
            Ok(0)
        }
        Err(e) => {
            outln!("receipt does NOT verify: {e}")?;
            Ok(1)
        }
    }
}

/// Read a receipt: a bare receipt, a request view that carries one, or a receipt-log entry.
pub fn read_receipt(path: &Path) -> Result<Receipt> {
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
