//! How long an invite code stays valid: parsed from `--ttl`, and said in words.

use anyhow::{anyhow, bail, Result};
use std::time::Duration;

/// The longest an invite code may stay valid.
const MAX_TTL: Duration = Duration::from_secs(30 * 86400);

/// Parse a duration with its unit, such as `30s`, `15m`, `2h`, `7d`, `1h 30m` or `1.5h`, to whole seconds.
///
/// A bare number is refused: it once meant minutes, and a unit makes the intent plain.
pub fn parse_ttl(s: &str) -> Result<Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("`{s}` has no unit; add one, e.g. {s}m for minutes (or {s}s, {s}h, {s}d)");
    }
    let d = humantime::parse_duration(s)
        .map_err(|_| anyhow!("`{s}` is not a duration; write e.g. 30s, 15m, 2h or 7d"))?;
    let d = Duration::from_secs(d.as_secs());
    if d.is_zero() || d > MAX_TTL {
        bail!("an invite may last from 1 second to 30 days");
    }
    Ok(d)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        parse_ttl(s).unwrap().as_secs()
    }

    fn refusal(s: &str) -> String {
        parse_ttl(s).unwrap_err().to_string()
    }

    #[test]
    fn durations_with_a_unit_parse() {
        assert_eq!(secs("30s"), 30);
        assert_eq!(secs("15m"), 900);
        assert_eq!(secs(" 2h "), 7200);
        assert_eq!(secs("7d"), 7 * 86400);
        assert_eq!(secs("30d"), 30 * 86400);
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("1500ms"), 1);
        assert_eq!(secs("1.5h"), 5400);
    }

    #[test]
    fn a_bare_number_asks_for_a_unit() {
        let e = refusal("45");
        assert!(e.contains("no unit") && e.contains("45m"), "{e}");
    }

    #[test]
    fn nonsense_and_out_of_range_are_refused() {
        for bad in ["", "5x", "m", "-5m", "15 minutes please"] {
            assert!(refusal(bad).contains("not a duration"), "{bad}");
        }
        for bad in ["0s", "500ms", "31d", "2months"] {
            assert!(refusal(bad).contains("1 second to 30 days"), "{bad}");
        }
    }

    #[test]
    fn words_use_the_largest_whole_unit() {
        assert_eq!(words(Duration::from_secs(900)), "15 minute(s)");
        assert_eq!(words(Duration::from_secs(7200)), "2 hour(s)");
        assert_eq!(words(Duration::from_secs(86400)), "1 day(s)");
        assert_eq!(words(Duration::from_secs(90)), "90 second(s)");
    }
}
