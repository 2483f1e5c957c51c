//! The report's plots, SVG by `plotters` (its SVG backend only: text is written as SVG `<text>` for the
//! viewer to render, so no font files or font libraries are needed to draw).

use super::super::load::LoadReport;
use super::super::score::ScoreReport;
use super::dp::{DpError, ThroughputPoint};
use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;

/// One line (or set of points) on a panel.
#[derive(Clone)]
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    /// Points with no line between them (observations), or a line with points (predictions, rates).
    dots_only: bool,
}

/// The colours, in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(90, 90, 90),
];

/// A panel's axes: titles, ranges and whether each is logarithmic.
struct Axes {
    title: String,
    x_desc: &'static str,
    y_desc: &'static str,
    x: Range<f64>,
    y: Range<f64>,
    log_y: bool,
    /// Where the legend goes.
    legend: SeriesLabelPosition,
}

/// The range covering every point's coordinate `pick`: on a log axis out to whole powers of ten (so that each
/// axis has labelled ticks), else widened by 5%.
fn span(series: &[Series], pick: fn(&(f64, f64)) -> f64, log: bool) -> Range<f64> {
    let vals = series.iter().flat_map(|s| s.points.iter().map(pick));
    let vals: Vec<f64> = vals
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return if log { 1.0..10.0 } else { 0.0..1.0 };
    }
    if log {
        let (a, b) = (lo.log10().floor(), hi.log10().ceil());
        10f64.powf(a)..10f64.powf(if b > a { b } else { a + 1.0 })
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-3);
        lo - pad..hi + pad
    }
}

/// A tick label: at most three significant digits, with k, M or G for thousands, millions, billions.
fn short(v: &f64) -> String {
    let (x, unit) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (*v, ""),
    };
    let digits = if x.abs() >= 100.0 || x == x.trunc() {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{x:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    text + unit
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// Draws `series` on `area` with a log x axis. On a log y axis, points at or below zero (an error of zero) are
/// left out.
fn panel(area: &Area, axes: &Axes, series: &[Series]) -> Result<()> {
    let positive: Vec<Series>;
    let series = if axes.log_y {
        positive = series
            .iter()
            .map(|s| Series {
                points: s.points.iter().copied().filter(|p| p.1 > 0.0).collect(),
                ..s.clone()
            })
            .collect();
        &positive[..]
    } else {
        series
    };
    let mut b = ChartBuilder::on(area);
    b.caption(&axes.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(64);
    if axes.log_y {
        let chart = b
            .build_cartesian_2d(axes.x.clone().log_scale(), axes.y.clone().log_scale())
            .map_err(err)?;
        draw_chart(chart, axes, series)
    } else {
        let chart = b
            .build_cartesian_2d(axes.x.clone().log_scale(), axes.y.clone())
            .map_err(err)?;
        draw_chart(chart, axes, series)
    }
}

/// The mesh with the axes' descriptions, then the series and their legend (for either kind of y axis).
fn draw_chart<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    axes: &Axes,
    series: &[Series],
) -> Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .label_style(("sans-serif", 11))
        .x_label_formatter(&short)
        .y_label_formatter(&short)
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(err)?;
    draw_series(&mut chart, series, axes.legend.clone())
}

fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for s in series {
        let color = s.color;
        if !s.dots_only {
            chart
                .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                .map_err(err)?;
        }
        chart
            .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font(("sans-serif", 11))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// An SVG of `grid` (rows, columns) panels, the first `panels` of them drawn by `draw` with their index.
fn figure(
    size: (u32, u32),
    grid: (usize, usize),
    panels: usize,
    draw: impl Fn(usize, &Area) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (i, area) in root.split_evenly(grid).iter().enumerate().take(panels) {
            draw(i, area)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The DP error plot: per mechanism, the predicted 95% half-width and the observed median and 95th
/// percentile absolute error against epsilon (log-log).
pub(super) fn dp_error(e: &DpError) -> Result<String> {
    figure((960, 720), (2, 2), e.mechanisms.len(), |i, area| {
        let m = &e.mechanisms[i];
        let pts = |f: fn(&super::dp::ErrorPoint) -> f64| -> Vec<(f64, f64)> {
            m.points.iter().map(|p| (p.epsilon, f(p))).collect()
        };
        let series = vec![
            line("predicted 95%", pts(|p| p.predicted95), 0),
            dots("observed 95th percentile", pts(|p| p.p95_abs_error), 1),
            dots("observed median", pts(|p| p.median_abs_error), 2),
        ];
        let axes = Axes {
            title: format!("{} ({})", m.query, m.mechanism),
            x_desc: "epsilon",
            y_desc: "|error|",
            x: span(&series, |p| p.0, true),
            y: span(&series, |p| p.1, true),
            log_y: true,
            legend: SeriesLabelPosition::UpperRight,
        };
        panel(area, &axes, &series)
    })
}

/// The coverage plot: per mechanism, the share of errors inside the predicted 95% interval against epsilon.
pub(super) fn dp_coverage(e: &DpError) -> Result<String> {
    figure((800, 480), (1, 1), 1, |_, area| {
        let mut series: Vec<Series> = e
            .mechanisms
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let pts = m.points.iter().map(|p| (p.epsilon, p.coverage.share));
                line(m.query, pts.collect(), i)
            })
            .collect();
        let eps: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        let target = eps.iter().map(|&x| (x, 0.95)).collect();
        series.push(line("target 95%", target, 5));
        let y = span(&series, |p| p.1, false);
        let axes = Axes {
            title: format!(
                "share of {} releases inside the predicted 95% interval",
                e.releases
            ),
            x_desc: "epsilon",
            y_desc: "coverage",
            x: span(&series, |p| p.0, true),
            y: y.start.min(0.9)..1.005,
            log_y: false,
            legend: SeriesLabelPosition::LowerRight,
        };
        panel(area, &axes, &series)
    })
}

/// The throughput plot: per query, rows per second of the node's release, OpenDP's pipeline and the
/// non-private pass against rows (log-log).
pub(super) fn dp_throughput(t: &[ThroughputPoint]) -> Result<String> {
    let queries = ["sum", "histogram", "median"];
    figure((1200, 420), (1, 3), queries.len(), |i, area| {
        let of = |f: fn(&ThroughputPoint) -> f64| -> Vec<(f64, f64)> {
            t.iter()
                .filter(|p| p.query == queries[i])
                .map(|p| (p.rows as f64, f(p)))
                .collect()
        };
        let series = vec![
            line("duo DP release", of(|p| p.duo.rows_per_sec), 0),
            line("OpenDP pipeline", of(|p| p.opendp.rows_per_sec), 1),
            line("non-private", of(|p| p.non_private.rows_per_sec), 5),
        ];
        let axes = Axes {
            title: format!("DP {}", queries[i]),
            x_desc: "rows",
            y_desc: "rows per second",
            x: span(&series, |p| p.0, true),
            y: span(&series, |p| p.1, true),
            log_y: true,
            legend: SeriesLabelPosition::LowerRight,
        };
        panel(area, &axes, &series)
    })
}

/// The scoring plot: latency (median) and bytes of one run against the number of attributes, cold and warm,
/// in memory and over loopback WebSocket.
pub(super) fn scoring(s: &ScoreReport) -> Result<String> {
    figure((1100, 440), (1, 2), 2, |i, area| {
        let mut series = Vec::new();
        for (k, (transport, warm)) in [
            ("memory", false),
            ("memory", true),
            ("ws", false),
            ("ws", true),
        ]
        .into_iter()
        .enumerate()
        {
            let pts: Vec<(f64, f64)> = s
                .runs
                .iter()
                .filter(|r| r.transport == transport)
                .map(|r| {
                    let ph = if warm { &r.warm } else { &r.cold };
                    (
                        r.n as f64,
                        if i == 0 {
                            ph.time.median_ms
                        } else {
                            ph.bytes as f64
                        },
                    )
                })
                .collect();
            let label = format!("{transport} {}", if warm { "warm" } else { "cold" });
            if !pts.is_empty() && (i == 0 || transport == "memory") {
                series.push(line(&label, pts, k));
            }
        }
        let axes = Axes {
            title: if i == 0 {
                "scoring latency (median)"
            } else {
                "bytes per run"
            }
            .to_string(),
            x_desc: "attributes (n)",
            y_desc: if i == 0 { "milliseconds" } else { "bytes" },
            x: span(&series, |p| p.0, true),
            y: span(&series, |p| p.1, true),
            log_y: true,
            legend: SeriesLabelPosition::UpperLeft,
        };
        panel(area, &axes, &series)
    })
}

/// The load plot: releases per second, and p50 and p99 latency, against concurrent sessions (the round trip
/// is the one-session run).
pub(super) fn load(runs: &[&LoadReport]) -> Result<String> {
    figure((1100, 440), (1, 2), 2, |i, area| {
        let of = |f: fn(&LoadReport) -> f64| -> Vec<(f64, f64)> {
            runs.iter().map(|r| (r.sessions as f64, f(r))).collect()
        };
        let series = if i == 0 {
            vec![line("releases per second", of(|r| r.releases_per_sec), 0)]
        } else {
            vec![
                line("p50", of(|r| r.p50_us as f64 / 1e3), 2),
                line("p99", of(|r| r.p99_us as f64 / 1e3), 1),
            ]
        };
        let axes = Axes {
            title: if i == 0 {
                "throughput"
            } else {
                "request latency"
            }
            .to_string(),
            x_desc: "concurrent FI sessions",
            y_desc: if i == 0 {
                "releases per second"
            } else {
                "milliseconds"
            },
            x: span(&series, |p| p.0, true),
            y: span(&series, |p| p.1, true),
            log_y: true,
            legend: SeriesLabelPosition::UpperLeft,
        };
        panel(area, &axes, &series)
    })
}

fn line(label: &str, points: Vec<(f64, f64)>, color: usize) -> Series {
    Series {
        label: label.to_string(),
        points,
        color: PALETTE[color % PALETTE.len()],
        dots_only: false,
    }
}

fn dots(label: &str, points: Vec<(f64, f64)>, color: usize) -> Series {
    Series {
        dots_only: true,
        ..line(label, points, color)
    }
}
