//! `duo sample`: realistic sample data for trying Duo out.

use super::{print_json, JsonFlag};
use crate::cli::out::outln;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use duo::engine::sample::{self, SampleConfig};
use std::path::PathBuf;

/// Options of `duo sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
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
}

/// Write the CSV files and their metadata files; print their paths.
pub fn run(args: SampleArgs) -> Result<i32> {
    let end_month = match args.end_month {
        Some(m) => parse_month(&m)?,
        None => sample::last_full_month(chrono::Utc::now().date_naive()),
    };
    let cfg = SampleConfig {
        seed: args.seed,
        profile: args.profile.parse().map_err(|e| anyhow!("{e:?}"))?,
        end_month,
        months: args.months,
    };
    let files = sample::generate(&cfg);
    let paths = sample::write_dir(&args.out, &files)
        .with_context(|| format!("writing to {}", args.out.display()))?;
    if args.json.json {
        print_json(&paths)?;
    } else {
        for p in paths {
            outln!("{}", p.display())?;
        }
    }
    Ok(0)
}

/// `YYYY-MM` as (year, month).
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
