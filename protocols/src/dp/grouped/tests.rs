//! Grouped counts and sums: OpenDP's transformation, the stability claimed, and the charge.

use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::dp::{plan, Amount, Answer, Budget, Contribution, Measure, Query};

fn rows(k: u32) -> Contribution {
    Contribution {
        max_rows_per_unit: k,
    }
}

#[test]
fn group_counts_equal_opendp_count_by_categories() {
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    for _ in 0..50 {
        let groups = rng.random_range(1..40u32);
        let keys: Vec<u32> = (0..rng.random_range(0..3_000))
            .map(|_| rng.random_range(0..groups + 3))
            .collect();
        let t = opendp_group_counts::<L1Distance<i64>>(groups).unwrap();
        let wide: Vec<i64> = keys.iter().map(|k| i64::from(*k)).collect();
        assert_eq!(group_counts(&keys, groups), t.invoke(&wide).unwrap());
    }
}

/// The stability map claimed for grouped sums holds on random neighbours: removing any `k` rows (all in one
/// group, as a month unit grouped by month; or spread over several, as a month unit grouped by category)
/// moves the vector of clamped sums by at most `k * max(|lo|, |hi|)` in L1 (and so in L2), and the map says
/// exactly that bound.
#[test]
fn grouped_sums_move_at_most_the_claimed_sensitivity() {
    let mut rng = ChaCha20Rng::seed_from_u64(32);
    let (lo, hi) = (-5_000i64, 20_000i64);
    let t = opendp_group_sums::<L1Distance<i64>>(lo, hi, 24).unwrap();
    for k in [1u32, 3, 31] {
        assert_eq!(t.map(&k).unwrap(), i64::from(k) * 20_000);
        for round in 0..200 {
            let mut data: Vec<Vec<i64>> = (0..rng.random_range(k as usize..500))
                .map(|_| vec![rng.random_range(0..26), rng.random_range(-9_000..30_000)])
                .collect();
            // The unit's k rows: the first k, all in one group (a month unit grouped by month) on even
            // rounds, wherever they fell (grouped by category) on odd ones.
            let g = rng.random_range(0..24);
            if round % 2 == 0 {
                for r in data.iter_mut().take(k as usize) {
                    r[0] = g;
                }
            }
            let neighbour = data[k as usize..].to_vec();
            let a = t.invoke(&data).unwrap();
            let b = t.invoke(&neighbour).unwrap();
            let l1: i64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
            assert!(l1 <= i64::from(k) * 20_000, "k {k}: {l1}");
            // And in L2 (the Gaussian's metric), which never exceeds L1.
            let l2 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(l2 <= f64::from(k) * 20_000.0, "k {k}: {l2}");
        }
    }
}

/// The charge of a grouped count or sum is OpenDP's privacy map of the chain (OpenDP's count by categories or
/// our grouped sum, then OpenDP's vector noise), rounded up, and equals the ungrouped release's charge at the
/// same budget and contribution bound, for 1, 24 and 1,000 groups, event (k = 1) and month (k = 3, 31)
/// units, both ledgers: the groups compose in parallel.
#[test]
fn a_grouped_release_costs_one_ungrouped_release() {
    for k in [1u32, 3, 31] {
        for groups in [1u32, 24, 1_000] {
            for (measure, budget) in [
                (Measure::PureEpsilon, Budget::Epsilon(0.7)),
                (Measure::Zcdp, Budget::Rho(0.05)),
                (Measure::Zcdp, Budget::Epsilon(0.7)),
            ] {
                let count = plan(Query::Count, rows(k), measure, budget).unwrap();
                let gc = plan(Query::GroupedCount { groups }, rows(k), measure, budget).unwrap();
                assert_eq!(gc.cost(), count.cost());
                assert_eq!(gc.scale(), count.scale());
                assert_eq!(gc.accuracy95(), count.accuracy95());
                let sum = plan(
                    Query::Sum {
                        lo: -100,
                        hi: 300_000,
                    },
                    rows(k),
                    measure,
                    budget,
                )
                .unwrap();
                let gs = plan(
                    Query::GroupedSum {
                        lo: -100,
                        hi: 300_000,
                        groups,
                    },
                    rows(k),
                    measure,
                    budget,
                )
                .unwrap();
                assert_eq!(gs.cost(), sum.cost());
                assert_eq!(gs.scale(), sum.scale());
                if measure == Measure::Zcdp && matches!(budget, Budget::Rho(_)) {
                    let t = opendp_group_sums::<L2Distance<i64>>(-100, 300_000, groups).unwrap();
                    let noise = make_gaussian::<_, _, ZeroConcentratedDivergence>(
                        t.output_domain.clone(),
                        L2Distance::default(),
                        gs.scale(),
                        None,
                    )
                    .unwrap();
                    let map = (t >> noise).unwrap().map(&k).unwrap();
                    assert!(Amount::charge_of_map(map).unwrap() == gs.cost());
                } else if measure == Measure::PureEpsilon {
                    let t = opendp_group_counts::<L1Distance<i64>>(groups).unwrap();
                    let noise = make_laplace::<_, _, MaxDivergence>(
                        t.output_domain.clone(),
                        L1Distance::default(),
                        gc.scale(),
                        None,
                    )
                    .unwrap();
                    let map = (t >> noise).unwrap().map(&k).unwrap();
                    assert!(Amount::charge_of_map(map).unwrap() == gc.cost());
                    assert_eq!(gc.cost(), Amount::from_units(0.7).unwrap());
                }
            }
        }
    }
}

/// Under negligible noise (every scale below 0.1: P(noise != 0) < 1e-40 per entry) the release is the exact
/// vector, one entry per group; rows whose key is past the groups count nowhere; `release` refuses a grouped
/// plan and `release_grouped` an ungrouped one.
#[test]
fn grouped_releases_are_exact_under_negligible_noise() {
    let keys = [0u32, 1, 1, 3, 3, 3, 9];
    let values = [10i64, -5, 400, 7, 7, 1_000_000, 50];
    for (measure, budget) in [
        (Measure::PureEpsilon, Budget::Epsilon(1e6)),
        (Measure::Zcdp, Budget::Rho(4e6)),
    ] {
        let p = plan(Query::GroupedCount { groups: 4 }, rows(1), measure, budget).unwrap();
        assert_eq!(
            p.release_grouped(&keys, &values).unwrap(),
            Answer::Counts(vec![1, 2, 0, 3])
        );
        assert!(p.release(&values).is_err());
        let p = plan(
            Query::GroupedSum {
                lo: 0,
                hi: 100,
                groups: 4,
            },
            rows(1),
            measure,
            budget,
        )
        .unwrap();
        assert!(p.scale() < 0.1, "{}", p.scale());
        assert_eq!(
            p.release_grouped(&keys, &values).unwrap(),
            Answer::Counts(vec![10, 100, 0, 114])
        );
        let p = plan(Query::Count, rows(1), measure, budget).unwrap();
        assert!(p.release_grouped(&keys, &values).is_err());
    }
    assert!(plan(
        Query::GroupedCount { groups: 0 },
        rows(1),
        Measure::PureEpsilon,
        Budget::Epsilon(1.0)
    )
    .is_err());
}
