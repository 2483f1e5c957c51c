//! `duo owner policy ...`: checking a policy file.

use super::{print_json, JsonFlag};
use crate::cli::out::outln;
use anyhow::{Context, Result};
use clap::Subcommand;
use duo::policies::Policy;
use std::path::{Path, PathBuf};

/// `duo owner policy ...`.
#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Check a policy file (default: the node's) and point at the line of any error.
    Check {
        /// The file to check.
        file: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Run one policy command.
pub fn run(cmd: PolicyCmd, home: &Path) -> Result<i32> {
    match cmd {
        PolicyCmd::Check { file, json } => check(home, file, json),
    }
}

/// `duo owner policy check`: exit 0 with the number of rules, or 1 with `FILE:LINE:COLUMN: message`.
fn check(home: &Path, file: Option<PathBuf>, json: JsonFlag) -> Result<i32> {
    let path = match file {
        Some(f) => f,
        None => duo::node::owner::policy_path(&duo::node::owner::owner_dir(home)),
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    match rules(&text) {
        Ok((rules, min_group_count)) => {
            if json.json {
                print_json(&serde_json::json!({
                    "file": path, "ok": true, "rules": rules, "min_group_count": min_group_count,
                }))?;
            } else {
                let suppression = min_group_count.map_or_else(
                    || "every group of a grouped DP release is shown".to_string(),
                    |n| format!("groups with a noisy count below {n} are withheld"),
                );
                outln!("{}: ok, {rules} rule(s); {suppression}", path.display())?;
            }
            Ok(0)
        }
        Err((line, column, message)) => {
            if json.json {
                print_json(&serde_json::json!({
                    "file": path, "ok": false, "line": line, "column": column, "message": message,
                }))?;
            } else {
                outln!("{}:{line}:{column}: {message}", path.display())?;
            }
            Ok(1)
        }
    }
}

/// A policy text's number of rules and its small-count suppression threshold, or its first problem as (line,
/// column, message): a syntax or rule error, or an attribute the catalogue does not have.
fn rules(text: &str) -> Result<(usize, Option<u32>), (usize, usize, String)> {
    let p = Policy::parse(text).map_err(|e| (e.line, e.column, e.message))?;
    match p
        .catalogue_names()
        .into_iter()
        .find(|(name, _)| name != "*" && duo::engine::catalogue::entry(name).is_none())
    {
        Some((name, line)) => Err((line, 1, format!("unknown catalogue attribute `{name}`"))),
        None => Ok((p.rules().len(), p.min_group_count())),
    }
}
