//! The report in words: `report.md` (each plot linked, with a paragraph reading it, the machine and the date)
//! and the summary `duo bench` prints.

use super::super::load::LoadReport;
use super::dp::{DpError, MechanismError, ThroughputPoint};
use super::{Report, PLOTS};
use std::fmt::Write;

/// `report.md`.
pub(super) fn report(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Duo: a researcher's report\n");
    let _ = writeln!(md, "{}\n", header(r));
    let _ = writeln!(
        md,
        "All figures are in [`report.json`](report.json) (one JSON object; its fields are documented in \
         `src/cli/bench/report/`). Produced by `duo bench report` ({} sizes).\n",
        r.sizes.name
    );
    let sections = [
        ("DP error against epsilon", dp_error_reading(&r.dp_error)),
        (
            "Coverage of the predicted 95% interval",
            coverage_reading(&r.dp_error),
        ),
        (
            "DP throughput beside OpenDP's pipeline",
            throughput_reading(&r.dp_throughput),
        ),
        ("Private scoring: latency and bytes", scoring_reading(r)),
        ("Request round trip and load", load_reading(&r.load_runs())),
    ];
    for ((title, reading), file) in sections.iter().zip(PLOTS) {
        let _ = writeln!(md, "## {title}\n\n![{title}]({file})\n\n{reading}\n");
    }
    md
}

/// The date, the machine and the run's wall time.
fn header(r: &Report) -> String {
    let m = &r.machine;
    let cpu = r
        .host
        .cpu
        .as_deref()
        .map_or(String::new(), |c| format!(" ({c})"));
    let kernel = r
        .host
        .kernel
        .as_deref()
        .map_or(String::new(), |k| format!(", kernel {k}"));
    format!(
        "Run on {}: {} CPUs{cpu}, {}{kernel}; {}{}. The whole run took {:.0} s.",
        r.date,
        m.cpus,
        r.host.os,
        if m.release_build {
            "release build"
        } else {
            "debug build (figures many times slower)"
        },
        m.load_avg_1m
            .map_or(String::new(), |l| format!(", load {l:.2} at start")),
        r.seconds
    )
}

/// A figure to one decimal, or to the unit from 100 up.
fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The mechanism's points at the smallest and largest epsilon.
fn ends(m: &MechanismError) -> Option<(&super::dp::ErrorPoint, &super::dp::ErrorPoint)> {
    Some((m.points.first()?, m.points.last()?))
}

fn dp_error_reading(e: &DpError) -> String {
    let mut s = format!(
        "Each point is {} releases on a column of {} rows (pure DP, event level). Lines are the half-width \
         the plan predicts before a release, dots the observed median and 95th-percentile absolute error. ",
        e.releases, e.rows
    );
    for m in &e.mechanisms {
        if let Some((a, b)) = ends(m) {
            let _ = write!(
                s,
                "The {} ({}): at epsilon {} the 95th percentile is {} against {} predicted, at epsilon {} {} \
                 against {} ({}). ",
                m.query,
                m.mechanism,
                a.epsilon,
                num(a.p95_abs_error),
                num(a.predicted95),
                b.epsilon,
                num(b.p95_abs_error),
                num(b.predicted95),
                m.unit
            );
        }
    }
    let ratios: Vec<f64> = e
        .mechanisms
        .iter()
        .filter(|m| m.query != "median")
        .flat_map(|m| &m.points)
        .filter(|p| p.predicted95 >= 2.0)
        .map(|p| p.p95_abs_error / p.predicted95)
        .collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() {
        let _ = write!(
            s,
            "Counts, sums and histogram bins get discrete Laplace noise of scale sensitivity / epsilon, so their \
             error falls as 1/epsilon; where the predicted half-width is 2 or more, the observed 95th percentile \
             is {lo:.2} to {hi:.2} times it. "
        );
    }
    s.push_str(
        "The median's prediction is a union bound over all 257 candidates (a candidate whose score is t above \
         the best is picked with probability at most exp(-t/b)), so it is loose. A zero error is not drawn on \
         the log scale.",
    );
    s
}

fn coverage_reading(e: &DpError) -> String {
    let all = e
        .mechanisms
        .iter()
        .flat_map(|m| m.points.iter().map(move |p| (m.query, p)));
    let (mut lo, mut hi, mut flagged) = ((1.0, "", 0.0), (0.0, "", 0.0), Vec::new());
    for (q, p) in all {
        let c = p.coverage.share;
        if c < lo.0 {
            lo = (c, q, p.epsilon);
        }
        if c > hi.0 {
            hi = (c, q, p.epsilon);
        }
        if !p.coverage.consistent {
            flagged.push(format!("{q} at epsilon {}", p.epsilon));
        }
    }
    let spread = 2.0 * (0.95f64 * 0.05 / e.releases as f64).sqrt();
    format!(
        "The share of errors strictly inside the predicted half-width, per mechanism and epsilon (histograms \
         count every bin of every release). It ranged from {} ({} at epsilon {}) to {} ({} at epsilon {}). \
         With {} releases the binomial standard error of a true 95% coverage is {} (two standard errors: \
         {}). {} The accuracy is a bound \
         (P(|error| >= a) <= 0.05), and discrete noise makes it conservative, so coverage at or above 95% is \
         what the claim predicts.",
        pct(lo.0),
        lo.1,
        lo.2,
        pct(hi.0),
        hi.1,
        hi.2,
        e.releases,
        pct(spread / 2.0),
        pct(spread),
        if flagged.is_empty() {
            "No point is below 95% by the one-sided binomial test at a 0.1% false-alarm rate.".to_string()
        } else {
            format!("Below 95% by the one-sided binomial test (0.1% false alarms): {}.", flagged.join(", "))
        }
    )
}

fn throughput_reading(t: &[ThroughputPoint]) -> String {
    let mut s = String::from(
        "Rows per second at the median call, per query and column size, epsilon 1: the node's release \
         (`Plan::release`: our exact aggregation, then OpenDP's noise), OpenDP's own pipeline for the same query \
         (`Plan::release_via_opendp`) and the best non-private pass. ",
    );
    for q in ["sum", "histogram", "median"] {
        if let Some(p) = t.iter().filter(|p| p.query == q).max_by_key(|p| p.rows) {
            let _ = write!(
                s,
                "The {q} at {} rows: {:.1} us a release, {:.1} times the speed of OpenDP's pipeline, {:.1} times the \
                 non-private pass's time. ",
                p.rows,
                p.duo.median_us,
                p.duo.rows_per_sec / p.opendp.rows_per_sec.max(1e-9),
                p.non_private.rows_per_sec / p.duo.rows_per_sec.max(1e-9)
            );
        }
    }
    s.push_str(
        "At small columns both pay the fixed cost of building the noise measurement (the node also re-checks \
         its privacy map), so the two are close; at large columns the pass over the rows decides.",
    );
    s
}

fn scoring_reading(r: &Report) -> String {
    let runs = &r.scoring.runs;
    let at = |t: &'static str| runs.iter().filter(move |x| x.transport == t);
    let mut s = format!(
        "One private scoring run (reveal {}), median of {} runs, against the number of attributes. Cold runs do \
         the 128 base OTs; warm runs reuse the extension state of an earlier run. Bytes are the protocol's \
         payloads both ways (in memory, where the channel counts them; over WebSocket the same messages are \
         framed and encrypted). Over WebSocket each side has a runtime and thread of its own, as in two \
         processes, and a run is timed from the owner's go (a node's `score_start`) to when both sides hold the \
         outcome. ",
        r.scoring.reveal, r.sizes.score_reps
    );
    for t in ["memory", "ws"] {
        if let Some(x) = at(t).max_by_key(|x| x.n) {
            let _ = write!(
                s,
                "{} at n = {}: cold {:.2} ms, warm {:.2} ms, {} bytes warm. ",
                if t == "ws" {
                    "Over loopback WebSocket"
                } else {
                    "In memory"
                },
                x.n,
                x.cold.time.median_ms,
                x.warm.time.median_ms,
                x.warm.bytes
            );
        }
    }
    s.push_str("Bytes grow linearly in n (32 extension OTs per attribute, one per weight bit); the cold run's extra time is the base OTs.");
    s
}

fn load_reading(runs: &[&LoadReport]) -> String {
    let mut s = String::from(
        "Auto-approved releases answered from the owner's store (each with its request, decision, log entries \
         and signed receipt), the owner node in its own process on loopback, as `duo bench load` runs them. The \
         one-session run is the request round trip. ",
    );
    for r in runs {
        let _ = write!(
            s,
            "{} session{}: {:.0} releases/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, owner memory at most {} KiB. ",
            r.sessions,
            if r.sessions == 1 { "" } else { "s" },
            r.releases_per_sec,
            r.p50_us as f64 / 1e3,
            r.p99_us as f64 / 1e3,
            r.errors,
            r.owner_rss_kib.iter().max().copied().unwrap_or(0)
        );
    }
    if let (Some(a), Some(b)) = (runs.first(), runs.last()) {
        if b.sessions > a.sessions {
            let _ = write!(
                s,
                "From {} to {} sessions throughput changed {:.2} times and the median latency {:.2} times.",
                a.sessions,
                b.sessions,
                b.releases_per_sec / a.releases_per_sec.max(1e-9),
                b.p50_us as f64 / (a.p50_us as f64).max(1.0)
            );
        }
    }
    s
}

/// What `duo bench` prints: a few lines per part.
pub(super) fn summary(r: &Report) -> String {
    let mut s = format!(
        "duo bench: {} sizes, {:.0} s ({})\n",
        r.sizes.name,
        r.seconds,
        r.machine.line()
    );
    let _ = writeln!(
        s,
        "DP error, {} releases per point (coverage of the predicted 95% interval):",
        r.dp_error.releases
    );
    for m in &r.dp_error.mechanisms {
        let cov: Vec<String> = m
            .points
            .iter()
            .map(|p| format!("eps {}: {}", p.epsilon, pct(p.coverage.share)))
            .collect();
        let _ = writeln!(s, "  {:<10} {}", m.query, cov.join(", "));
    }
    let _ = writeln!(s, "DP throughput (rows/s, duo / OpenDP pipeline):");
    for p in &r.dp_throughput {
        let _ = writeln!(
            s,
            "  {:<10} {:>9} rows  {:>14.0} / {:>14.0}",
            p.query, p.rows, p.duo.rows_per_sec, p.opendp.rows_per_sec
        );
    }
    let _ = writeln!(s, "Scoring (median ms, cold / warm; bytes warm):");
    for x in &r.scoring.runs {
        let _ = writeln!(
            s,
            "  {:<10} n = {:<5} {:>9.2} / {:>9.2}  {:>9}",
            x.transport, x.n, x.cold.time.median_ms, x.warm.time.median_ms, x.warm.bytes
        );
    }
    let _ = writeln!(s, "Round trip and load (releases/s, p50 / p99 ms, errors):");
    for l in r.load_runs() {
        let _ = writeln!(
            s,
            "  {:>4} session(s) {:>8.0}  {:>8.2} / {:>8.2}  {}",
            l.sessions,
            l.releases_per_sec,
            l.p50_us as f64 / 1e3,
            l.p99_us as f64 / 1e3,
            l.errors
        );
    }
    s
}
