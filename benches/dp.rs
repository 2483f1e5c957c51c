//! DP releases over an in-memory `i64` column (warm): bounded sum, histogram and median at 1e3 to 1e7 rows,
//! each beside the best non-private pass over the same `Vec<i64>` and beside OpenDP's own pipeline for the
//! same query. Goal: the DP sum within 2x of the non-private clamp-and-sum at 1e7 rows; under 1 ms at 1e3 to
//! 1e4 rows. (Loading a column from SQLite is measured separately, in the node's benches.)
//!
//! `grouped_sum`: a DP sum per month over 24 public months at 1e6 rows (`Plan::release_grouped`), beside the
//! ungrouped DP sum over the same rows. Goal: within 2x of the ungrouped sum.
//!
//! `zcdp_preview`: the cost preview of `avg_daily_balance_3m()` under zCDP (a sum with sensitivity
//! $10,000 x 92 days; at rho 1 its noise scale is 6.5e7), planned and its 95% accuracy computed, at rho 1, 10
//! and 100, beside OpenDP's term-by-term discrete Gaussian accuracy at scales it can still reach (1e4, 1e5;
//! its work is linear in the scale, so 6.5e7 takes hundreds of times the 1e5 figure).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use duo_protocols::dp::{accuracy, plan, Budget, Contribution, Measure, Query};

const SIZES: [usize; 4] = [1_000, 10_000, 1_000_000, 10_000_000];
const LO: i64 = -50_000; // cents
const HI: i64 = 500_000;

/// A fixed pseudo-random column (SplitMix64) of amounts in [-$1,000, $10,000).
fn column(rows: usize) -> Vec<i64> {
    let mut state = rows as u64;
    (0..rows)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z % 1_100_000) as i64 - 100_000
        })
        .collect()
}

/// The group's defaults: 10 samples, 300 ms of warm-up, 2 s of measurement. They are set on the `Criterion`
/// of `criterion_group!` (below), which then applies the command line, so `--sample-size`, `--warm-up-time` and
/// `--measurement-time` win; a group must not set them itself (a group's setting overrides the command line).
fn defaults() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

fn sum(c: &mut Criterion) {
    let mut group = c.benchmark_group("dp_sum");
    let p = plan(
        Query::Sum { lo: LO, hi: HI },
        Contribution::EVENT,
        Measure::PureEpsilon,
        Budget::Epsilon(1.0),
    )
    .unwrap();
    for rows in SIZES {
        let data = column(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(
            BenchmarkId::new("non_private_clamp_sum", rows),
            &data,
            |b, d| b.iter(|| black_box(d).iter().map(|x| (*x).clamp(LO, HI)).sum::<i64>()),
        );
        group.bench_with_input(BenchmarkId::new("duo_dp", rows), &data, |b, d| {
            b.iter(|| p.release(black_box(d)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("opendp_pipeline", rows), &data, |b, d| {
            b.iter(|| p.release_via_opendp(black_box(d)).unwrap())
        });
    }
    group.finish();
}

fn histogram(c: &mut Criterion) {
    let mut group = c.benchmark_group("dp_histogram");
    let edges: Vec<i64> = (0..=10).map(|i| i * 100_000).collect();
    let p = plan(
        Query::Histogram {
            edges: edges.clone(),
        },
        Contribution::EVENT,
        Measure::PureEpsilon,
        Budget::Epsilon(1.0),
    )
    .unwrap();
    for rows in SIZES {
        let data = column(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(
            BenchmarkId::new("non_private_counts", rows),
            &data,
            |b, d| {
                b.iter(|| {
                    let mut counts = vec![0u64; edges.len() + 1];
                    for v in black_box(d) {
                        counts[edges.partition_point(|e| *e <= *v)] += 1;
                    }
                    counts
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("duo_dp", rows), &data, |b, d| {
            b.iter(|| p.release(black_box(d)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("opendp_pipeline", rows), &data, |b, d| {
            b.iter(|| p.release_via_opendp(black_box(d)).unwrap())
        });
    }
    group.finish();
}

fn median(c: &mut Criterion) {
    let mut group = c.benchmark_group("dp_median");
    // 257 evenly spaced candidates from -$500 to $5,000: the grid the node uses for a dp quantile (at most 256
    // steps between the public bounds).
    let p = plan(
        Query::median_grid(LO, HI, 256).unwrap(),
        Contribution::EVENT,
        Measure::PureEpsilon,
        Budget::Epsilon(1.0),
    )
    .unwrap();
    for rows in SIZES {
        let data = column(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(
            BenchmarkId::new("non_private_select_nth", rows),
            &data,
            |b, d| {
                b.iter(|| {
                    let mut v = black_box(d).clone();
                    let mid = v.len() / 2;
                    *v.select_nth_unstable(mid).1
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("duo_dp", rows), &data, |b, d| {
            b.iter(|| p.release(black_box(d)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("opendp_pipeline", rows), &data, |b, d| {
            b.iter(|| p.release_via_opendp(black_box(d)).unwrap())
        });
    }
    group.finish();
}

fn grouped_sum(c: &mut Criterion) {
    let mut group = c.benchmark_group("dp_grouped_sum");
    let rows = 1_000_000;
    let data = column(rows);
    // Each row's month among 24, in date order as a time column would give (about 41,667 rows a month).
    let keys: Vec<u32> = (0..rows).map(|i| (i * 24 / rows) as u32).collect();
    let budget = Budget::Epsilon(1.0);
    let sum = plan(
        Query::Sum { lo: LO, hi: HI },
        Contribution::EVENT,
        Measure::PureEpsilon,
        budget,
    )
    .unwrap();
    let by_month = plan(
        Query::GroupedSum {
            lo: LO,
            hi: HI,
            groups: 24,
        },
        Contribution::EVENT,
        Measure::PureEpsilon,
        budget,
    )
    .unwrap();
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(BenchmarkId::new("ungrouped_sum", rows), |b| {
        b.iter(|| sum.release(black_box(&data)).unwrap())
    });
    group.bench_function(BenchmarkId::new("sum_by_24_months", rows), |b| {
        b.iter(|| {
            by_month
                .release_grouped(black_box(&keys), black_box(&data))
                .unwrap()
        })
    });
    group.finish();
}

fn zcdp_preview(c: &mut Criterion) {
    let mut group = c.benchmark_group("dp_zcdp_preview");
    let bound = 1_000_000 * 92;
    for rho in [1.0, 10.0, 100.0] {
        group.bench_with_input(
            BenchmarkId::new("avg_daily_balance_3m", rho),
            &rho,
            |b, r| {
                b.iter(|| {
                    let p = plan(
                        Query::Sum {
                            lo: -bound,
                            hi: bound,
                        },
                        Contribution::EVENT,
                        Measure::Zcdp,
                        Budget::Rho(black_box(*r)),
                    )
                    .unwrap();
                    p.accuracy95().unwrap()
                })
            },
        );
    }
    for scale in [1e4, 1e5] {
        group.bench_with_input(
            BenchmarkId::new("opendp_exact_accuracy", scale),
            &scale,
            |b, s| {
                b.iter(|| {
                    opendp::accuracy::discrete_gaussian_scale_to_accuracy(black_box(*s), 0.05)
                        .unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("bound_accuracy", scale), &scale, |b, s| {
            b.iter(|| accuracy::discrete_gaussian_accuracy_bound(black_box(*s), 0.05).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = defaults();
    targets = sum, histogram, median, grouped_sum, zcdp_preview
}
criterion_main!(benches);
