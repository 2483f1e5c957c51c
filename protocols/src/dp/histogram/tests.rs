//! Our bin counts against OpenDP's `make_find_bin >> make_count_by_categories` (fixed seeds).

use opendp::metrics::L1Distance;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

#[test]
fn equals_opendp_on_random_inputs() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for round in 0..200 {
        let n_edges = if round % 2 == 0 {
            rng.random_range(1..=32)
        } else {
            rng.random_range(33..200)
        };
        let mut edges: Vec<i64> = (0..n_edges).map(|_| rng.random_range(-500..500)).collect();
        edges.sort_unstable();
        edges.dedup();
        let values: Vec<i64> = (0..rng.random_range(0..3_000))
            .map(|_| rng.random_range(-600..600))
            .collect();
        let opendp = opendp_histogram::<L1Distance<i64>>(&edges)
            .unwrap()
            .invoke(&values)
            .unwrap();
        assert_eq!(bin_counts(&values, &edges), opendp);
    }
}

#[test]
fn bins_are_left_closed() {
    assert_eq!(
        bin_counts(&[-1, 0, 9, 10, 11, 100], &[0, 10]),
        vec![1, 2, 3]
    );
}
