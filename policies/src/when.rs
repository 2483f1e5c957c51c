//! Time in policies: rate windows, hours of the day and days of the week.
//!
//! Rules see time only through the facts the node supplies: the node-local date and time of the request
//! ([`crate::RequestFacts::now`]) and, for `rate`, counts of earlier releases ([`RateCounts`]).

use chrono::{NaiveDateTime, Timelike, Weekday};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The sliding window of a `rate` condition: the last hour, day or 30 days before the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Window {
    /// The last 3 600 seconds.
    #[serde(rename = "hour")]
    Hour,
    /// The last 86 400 seconds.
    #[serde(rename = "day")]
    Day,
    /// The last 30 × 86 400 seconds.
    #[serde(rename = "30d")]
    Days30,
}

impl Window {
    /// Every window, in a fixed order.
    pub const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Days30];

    /// The policy-file name: `hour`, `day` or `30d`.
    pub fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Days30 => "30d",
        }
    }

    /// The window's length in seconds: releases at most this long before the request count.
    pub fn seconds(self) -> i64 {
        match self {
            Window::Hour => 3_600,
            Window::Day => 86_400,
            Window::Days30 => 30 * 86_400,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Window {
    type Err = crate::backend::UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Window::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| crate::backend::UnknownName::new("rate window", s, "hour, day, 30d"))
    }
}

/// A `rate` condition: the principal has had fewer than `max` releases matching the rule's other
/// conditions within the last `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    /// Releases allowed per window (at least 1).
    pub max: u64,
    /// The window.
    pub per: Window,
}

/// Counts of earlier releases to this request's principal, by rule and window, that the node supplies for
/// `rate` conditions.
///
/// The count for `(rule, window)` is the number of releases to the principal, within the window before
/// now, that matched every other condition of that rule when released. The node gets the pairs to
/// increment at each release from [`crate::Policy::rate_counters`].
pub trait RateCounts {
    /// The count for this rule and window.
    fn count(&self, rule: &str, window: Window) -> u64;
}

impl<F: Fn(&str, Window) -> u64> RateCounts for F {
    fn count(&self, rule: &str, window: Window) -> u64 {
        self(rule, window)
    }
}

/// Precomputed counts; a missing entry counts zero.
impl RateCounts for BTreeMap<(String, Window), u64> {
    fn count(&self, rule: &str, window: Window) -> u64 {
        self.get(&(rule.to_owned(), window)).copied().unwrap_or(0)
    }
}

/// An `hours` condition: a range of node-local times of day, `start` included, `end` excluded, in minutes
/// after midnight. When `start > end` the range wraps past midnight (`"22:00-06:00"`); `"00:00-24:00"` is
/// the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hours {
    /// First minute in the range (0 to 1439).
    pub start: u16,
    /// First minute after the range (1 to 1440; 1440 is `24:00`).
    pub end: u16,
}

impl Hours {
    /// Whether this time of day falls in the range.
    pub fn contains(&self, at: NaiveDateTime) -> bool {
        // `hour` < 24 and `minute` < 60, so this is below 1440.
        let minute = (at.hour() * 60 + at.minute()) as u16;
        if self.start < self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl FromStr for Hours {
    type Err = String;

    /// `"HH:MM-HH:MM"`, 24-hour clock; the end may be `24:00`; the two ends differ (`"10:00-10:00"` would
    /// be ambiguous).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a time range; write it like \"09:00-17:00\"");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = minute_of_day(a).ok_or_else(bad)?;
        let end = minute_of_day(b).ok_or_else(bad)?;
        if start == 1440 {
            return Err(format!("`{s}`: a range cannot start at 24:00; write 00:00"));
        }
        if start == end {
            return Err(format!(
                "`{s}` is empty; leave `hours` out to match at any time"
            ));
        }
        Ok(Hours { start, end })
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// `HH:MM` (two digits each) as minutes after midnight, `24:00` included.
fn minute_of_day(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// The policy-file names of the days of the week, Monday first.
pub const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A day of the week from its policy-file name (`mon` … `sun`).
pub fn weekday_from_name(name: &str) -> Option<Weekday> {
    let i = WEEKDAY_NAMES.iter().position(|n| *n == name)?;
    // `i` < 7.
    Some(Weekday::Mon.succ_n(i))
}

/// Extension for `Weekday::succ` repeated, without indexing.
trait SuccN {
    fn succ_n(self, n: usize) -> Self;
}

impl SuccN for Weekday {
    fn succ_n(self, n: usize) -> Self {
        (0..n).fold(self, |d, _| d.succ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2025, 6, 2)
            .unwrap()
            .and_hms_opt(h, m, 59)
            .unwrap()
    }

    #[test]
    fn hour_ranges_include_start_exclude_end_and_wrap() {
        let day: Hours = "09:00-17:00".parse().unwrap();
        assert_eq!(
            day,
            Hours {
                start: 540,
                end: 1020
            }
        );
        assert_eq!(day.to_string(), "09:00-17:00");
        assert!(!day.contains(at(8, 59)));
        assert!(day.contains(at(9, 0)));
        assert!(day.contains(at(16, 59)));
        assert!(!day.contains(at(17, 0)));

        let night: Hours = "22:30-06:00".parse().unwrap();
        assert!(night.contains(at(23, 0)));
        assert!(night.contains(at(0, 0)));
        assert!(night.contains(at(5, 59)));
        assert!(!night.contains(at(6, 0)));
        assert!(!night.contains(at(22, 29)));

        let evening: Hours = "18:00-24:00".parse().unwrap();
        assert!(evening.contains(at(23, 59)));
        assert!(!evening.contains(at(0, 0)));
        let all_but: Hours = "00:00-23:59".parse().unwrap();
        assert!(!all_but.contains(at(23, 59)));
    }

    #[test]
    fn bad_hour_ranges_are_refused() {
        for bad in [
            "",
            "9:00-17:00",
            "09:00",
            "09:00-17",
            "24:01-01:00",
            "09:60-10:00",
            "25:00-01:00",
            "09:00 - 17:00",
            "ab:cd-ef:gh",
            "+9:00-17:00",
            "09:00-17:00-18:00",
        ] {
            assert!(bad.parse::<Hours>().is_err(), "{bad:?} parsed");
        }
        assert!("09:00-09:00"
            .parse::<Hours>()
            .unwrap_err()
            .contains("empty"));
        assert!("00:00-00:00"
            .parse::<Hours>()
            .unwrap_err()
            .contains("empty"));
        let whole: Hours = "00:00-24:00".parse().unwrap();
        assert!(whole.contains(at(0, 0)) && whole.contains(at(23, 59)));
        assert!("24:00-01:00"
            .parse::<Hours>()
            .unwrap_err()
            .contains("24:00"));
    }

    #[test]
    fn windows_and_weekdays_have_names() {
        for w in Window::ALL {
            assert_eq!(w.name().parse::<Window>(), Ok(w));
            assert_eq!(
                serde_json::to_string(&w).unwrap(),
                format!("\"{}\"", w.name())
            );
        }
        assert_eq!(Window::Days30.seconds(), 2_592_000);
        assert!("week".parse::<Window>().is_err());
        assert_eq!(weekday_from_name("mon"), Some(Weekday::Mon));
        assert_eq!(weekday_from_name("sun"), Some(Weekday::Sun));
        assert_eq!(weekday_from_name("Mon"), None);
        for (i, n) in WEEKDAY_NAMES.iter().enumerate() {
            let d = weekday_from_name(n).unwrap();
            assert_eq!(d.num_days_from_monday() as usize, i);
        }
    }

    #[test]
    fn rate_counts_from_maps_and_closures() {
        let mut map = BTreeMap::new();
        map.insert(("small-dp".to_owned(), Window::Day), 2);
        assert_eq!(map.count("small-dp", Window::Day), 2);
        assert_eq!(map.count("small-dp", Window::Hour), 0);
        let f = |rule: &str, w: Window| {
            if rule == "r" && w == Window::Hour {
                7
            } else {
                1
            }
        };
        assert_eq!(f.count("r", Window::Hour), 7);
        assert_eq!(f.count("r", Window::Day), 1);
    }
}
