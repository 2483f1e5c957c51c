//! What the benches share: the machine they ran on, timings over repetitions and latency percentiles, bytes
//! on the wire, the two parties on two threads over an in-memory channel, and the figures in words.
//!
//! Each party runs on its own thread and they talk over [`channel::pair`], the in-memory duplex that counts
//! the bytes each end sends: the owner is the OT-extension sender and the garbler, the FI the receiver and the
//! evaluator, as in a real run. Times are wall-clock medians over `--reps` repetitions; rates are computed
//! from the median. The same pieces have criterion benches in `benches/twopc.rs`.

use crate::cli::out::errln;
use anyhow::{anyhow, bail, Result};
use comfy_table::{presets, CellAlignment, ColumnConstraint, Table, Width};
use duo_protocols::channel::{self, End};
use duo_protocols::ot::SessionId;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::thread;
use std::time::Duration;

/// Where a measurement ran: to judge the figures (a busy machine or a debug build makes them slower).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// The one-minute load average when the run started (Linux only).
    pub load_avg_1m: Option<f64>,
    /// Whether this is an optimized build; debug builds are many times slower.
    pub release_build: bool,
}

impl Machine {
    pub(super) fn now() -> Machine {
        Machine {
            cpus: thread::available_parallelism().map_or(1, |n| n.get()),
            load_avg_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())),
            release_build: !cfg!(debug_assertions),
        }
    }

    pub(super) fn line(&self) -> String {
        let load = self
            .load_avg_1m
            .map_or(String::new(), |l| format!(", load {l:.2} at start"));
        let build = if self.release_build {
            "release build"
        } else {
            "DEBUG build (use --release for meaningful figures)"
        };
        format!("{build}, {} CPUs{load}", self.cpus)
    }
}

/// Wall-clock times of one measured operation over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Median (nearest rank: the lower middle run of an even number), milliseconds.
    pub median_ms: f64,
    /// Fastest, milliseconds.
    pub min_ms: f64,
    /// 90th percentile (nearest rank), milliseconds.
    pub p90_ms: f64,
    /// Repetitions measured.
    pub reps: usize,
}

impl Timing {
    /// The median, fastest and 90th percentile of `samples`, in milliseconds to the microsecond.
    pub(super) fn of(samples: Vec<Duration>) -> Timing {
        let mut micros = Micros::new();
        for d in &samples {
            micros.record(d);
        }
        let ms = |us: u64| us as f64 / 1e3;
        Timing {
            median_ms: ms(micros.quantile(0.5)),
            min_ms: ms(micros.quantile(0.0)),
            p90_ms: ms(micros.quantile(0.9)),
            reps: samples.len(),
        }
    }

    /// `count` items per median run, per second.
    pub(super) fn rate(&self, count: u64) -> f64 {
        if self.median_ms > 0.0 {
            (count as f64 / (self.median_ms / 1e3)).round()
        } else {
            0.0
        }
    }
}

/// Durations in whole microseconds, in an HDR histogram: exact up to 2 ms, within 0.1% above (three
/// significant digits), up to an hour (longer ones count as an hour), in the same small memory however many
/// are recorded. Percentiles are nearest-rank.
pub(super) struct Micros(Histogram<u64>);

/// The longest duration [`Micros`] tells apart: an hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

impl Micros {
    /// An empty histogram.
    pub(super) fn new() -> Micros {
        Micros(
            Histogram::new_with_max(MAX_MICROS, 3)
                .expect("an hour at three significant digits is a valid histogram"),
        )
    }

    /// Record `d`, rounded to the microsecond.
    pub(super) fn record(&mut self, d: &Duration) {
        let us = (d.as_nanos() + 500) / 1000;
        self.0
            .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
    }

    /// Add everything `other` recorded.
    pub(super) fn merge(&mut self, other: &Micros) {
        self.0
            .add(&other.0)
            .expect("histograms of the same range add up");
    }

    /// How many durations were recorded.
    pub(super) fn len(&self) -> u64 {
        self.0.len()
    }

    /// The `q`-quantile (0 the fastest, 1 the slowest), nearest rank, in microseconds; 0 when empty.
    pub(super) fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        let v = self.0.value_at_quantile(q);
        // The histogram answers with the top of the value's bucket; the bucket's middle is closer.
        self.0.median_equivalent(v)
    }
}

/// Bytes both ways in one run, as the owner's end of the channel counted them (message payloads only).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Wire {
    /// Owner to FI.
    pub owner_to_fi: u64,
    /// FI to owner.
    pub fi_to_owner: u64,
    /// Messages both ways.
    pub messages: u64,
}

impl Wire {
    /// Both directions.
    pub fn total(&self) -> u64 {
        self.owner_to_fi + self.fi_to_owner
    }
}

/// One column of a report's table: at least `width` characters, aligned left or right, and `gap` spaces
/// before the next column.
#[derive(Debug, Clone, Copy)]
pub(super) struct Col {
    width: u16,
    right: bool,
    gap: u16,
}

impl Col {
    /// A left-aligned column, one space before the next.
    pub(super) const fn left(width: u16) -> Col {
        Col {
            width,
            right: false,
            gap: 1,
        }
    }

    /// A right-aligned column, one space before the next.
    pub(super) const fn right(width: u16) -> Col {
        Col {
            width,
            right: true,
            gap: 1,
        }
    }

    /// The same column with `gap` spaces before the next.
    pub(super) const fn gap(self, gap: u16) -> Col {
        Col { gap, ..self }
    }
}

/// Rows as the bench reports print them: no borders or rules, `indent` spaces before the first column, each
/// column as `cols` says (a row may have fewer cells than there are columns), no trailing spaces; one line per
/// row, each ending in a newline. A cell wider than its column widens the whole column.
pub(super) fn table(
    indent: u16,
    cols: &[Col],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    for row in rows {
        t.add_row(row);
    }
    let last = cols.len().saturating_sub(1);
    for (i, (column, col)) in t.column_iter_mut().zip(cols).enumerate() {
        let before = if i == 0 { indent } else { 0 };
        let after = if i == last { 0 } else { col.gap };
        column.set_padding((before, after));
        column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
            before + col.width + after,
        )));
        column.set_cell_alignment(if col.right {
            CellAlignment::Right
        } else {
            CellAlignment::Left
        });
    }
    let mut text = t.trim_fmt();
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// Progress lines on standard error, unless quiet.
#[derive(Clone, Copy)]
pub(super) struct Progress {
    /// No progress lines.
    pub quiet: bool,
}

impl Progress {
    pub(super) fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            errln!("{}", msg.as_ref());
        }
    }
}

/// Runs `owner` here and `fi` on a second thread, connected by a fresh in-memory channel. Each party's end is
/// dropped as soon as its side returns, so an error on one side ends the other's wait instead of hanging.
pub(super) fn run_pair<A, B: Send>(
    owner: impl FnOnce(&mut End) -> Result<A>,
    fi: impl FnOnce(&mut End) -> Result<B> + Send,
) -> Result<(A, B, Wire)> {
    let (mut o, mut f) = channel::pair();
    thread::scope(|s| {
        let t = s.spawn(move || {
            let r = fi(&mut f);
            drop(f);
            r
        });
        let a = owner(&mut o);
        let wire = Wire {
            owner_to_fi: o.bytes_sent(),
            fi_to_owner: o.bytes_received(),
            messages: o.messages_sent() + o.messages_received(),
        };
        drop(o);
        let b = t.join().map_err(|_| anyhow!("the FI's thread panicked"))?;
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b, wire)),
            (Err(e), _) => Err(e.context("owner side")),
            (Ok(_), Err(e)) => Err(e.context("FI side")),
        }
    })
}

pub(super) fn fresh_rng() -> StdRng {
    StdRng::from_os_rng()
}

pub(super) fn session_id(rng: &mut StdRng) -> SessionId {
    SessionId(rng.random())
}

pub(super) fn check_reps(reps: usize) -> Result<()> {
    if reps == 0 || reps > 10_000 {
        bail!("--reps must be between 1 and 10000");
    }
    Ok(())
}

pub(super) fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

/// `r` things per second, e.g. "19.2 M OT/s".
pub(super) fn per_sec(r: f64, unit: &str) -> String {
    if r >= 1e6 {
        format!("{:.1} M {unit}/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k {unit}/s", r / 1e3)
    } else {
        format!("{r:.0} {unit}/s")
    }
}

pub(super) fn ms(t: &Timing) -> String {
    if t.median_ms < 1.0 {
        format!("{:.3} ms", t.median_ms)
    } else {
        format!("{:.1} ms", t.median_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn tables_print_as_padded_format_strings_would() {
        let cols = [
            Col::left(6),
            Col::right(5).gap(3),
            Col::right(4),
            Col::left(0),
        ];
        let rows = [
            ["name", "n", "ms", "note"],
            ["memory", "8", "0.5", ""],
            ["ws", "12345", "10.25", "over its column"],
        ];
        // The third column is 4 wide, but "10.25" widens it to 5 for every row (format! would widen only the
        // row it is in).
        let want: String = rows
            .iter()
            .map(|r| {
                let line = format!("  {:<6} {:>5}   {:>5} {}", r[0], r[1], r[2], r[3]);
                format!("{}\n", line.trim_end())
            })
            .collect();
        let got = table(2, &cols, rows.iter().map(|r| strings(r)));
        assert_eq!(got, want);
        let short = table(4, &[Col::left(3), Col::right(3)], [strings(&["a"])]);
        assert_eq!(short, "    a\n");
        assert_eq!(table(2, &cols, Vec::<Vec<String>>::new()), "");
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn timings_are_nearest_rank_percentiles() {
        let t = Timing::of((1..=10).rev().map(|k| us(k * 100)).collect());
        assert_eq!(
            (t.min_ms, t.median_ms, t.p90_ms, t.reps),
            (0.1, 0.5, 0.9, 10)
        );
        let t = Timing::of(vec![us(7), us(3), us(5)]);
        assert_eq!((t.min_ms, t.median_ms, t.p90_ms), (0.003, 0.005, 0.007));
        let t = Timing::of(Vec::new());
        assert_eq!(
            (t.min_ms, t.median_ms, t.p90_ms, t.reps),
            (0.0, 0.0, 0.0, 0)
        );
    }

    #[test]
    fn long_durations_are_within_a_thousandth() {
        let mut m = Micros::new();
        for ms in [250, 1_250, 40_000] {
            m.record(&Duration::from_millis(ms));
        }
        for (q, want) in [(0.0, 250_000.0), (0.5, 1_250_000.0), (1.0, 40_000_000.0)] {
            let got = m.quantile(q) as f64;
            assert!((got - want).abs() <= want / 1000.0, "{q}: {got} vs {want}");
        }
        let mut all = Micros::new();
        all.merge(&m);
        all.merge(&m);
        assert_eq!(all.len(), 6);
        // Over an hour counts as an hour; under a microsecond rounds to the nearest.
        all.record(&Duration::from_secs(7200));
        assert!(all.quantile(1.0) as f64 >= MAX_MICROS as f64 * 0.999);
        let mut small = Micros::new();
        small.record(&Duration::from_nanos(1_499));
        small.record(&Duration::from_nanos(1_500));
        assert_eq!((small.quantile(0.0), small.quantile(1.0)), (1, 2));
    }
}

/// Fixed figures for the reports' text tests.
#[cfg(test)]
pub(super) mod fixtures {
    use super::{Machine, Timing, Wire};

    /// A release build on 8 CPUs at load 0.25.
    pub fn machine() -> Machine {
        Machine {
            cpus: 8,
            load_avg_1m: Some(0.25),
            release_build: true,
        }
    }

    /// A timing with this median and p90 (milliseconds) over 5 runs.
    pub fn timing(median_ms: f64, p90_ms: f64) -> Timing {
        Timing {
            median_ms,
            min_ms: median_ms / 2.0,
            p90_ms,
            reps: 5,
        }
    }

    /// Bytes each way, in 4 messages.
    pub fn wire(owner_to_fi: u64, fi_to_owner: u64) -> Wire {
        Wire {
            owner_to_fi,
            fi_to_owner,
            messages: 4,
        }
    }
}
