//! How long an invite code stays valid: parsed from `--ttl`, and said in words.

use anyhow::{anyhow, bail, Result};
use std::time::Duration;

/// Parse a duration like `30s`, `15m`, `2h` or `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration> {
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

/// A duration in words, in its largest whole unit: `15 minute(s)`, `2 day(s)`.
pub fn words(d: Duration) -> String {
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
