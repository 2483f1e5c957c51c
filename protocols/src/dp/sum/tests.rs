//! Our fast clamped sum against OpenDP's transformation, on random and saturating inputs (fixed seeds).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

fn check(values: Vec<i64>, lo: i64, hi: i64) {
    let opendp = opendp_sum(lo, hi).unwrap().invoke(&values).unwrap();
    assert_eq!(
        clamped_sum(&values, lo, hi),
        opendp,
        "bounds [{lo}, {hi}], {} rows",
        values.len()
    );
}

#[test]
fn equals_opendp_on_random_inputs() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for round in 0..300 {
        let len = rng.random_range(0..2_000);
        let spread: i64 = [10, 1_000_000, i64::MAX / 4][round % 3];
        let values: Vec<i64> = (0..len)
            .map(|_| rng.random_range(-spread..=spread))
            .collect();
        let a = rng.random_range(-spread..=spread);
        let b = rng.random_range(-spread..=spread);
        check(values.clone(), a.min(b), a.max(b)); // mixed or one-sided bounds
        check(values.clone(), 0, a.abs()); // non-negative: OpenDP's monotonic sum
        check(values, -a.abs(), 0); // non-positive
    }
}

#[test]
fn equals_opendp_when_saturating() {
    // Partial sums leave i64 in both directions; OpenDP saturates each sign separately.
    let big = i64::MAX / 3;
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for _ in 0..100 {
        let len = rng.random_range(0..40);
        let values: Vec<i64> = (0..len)
            .map(|_| if rng.random() { big } else { -big })
            .collect();
        check(values, -big, big);
    }
    check(vec![i64::MAX; 5], -(i64::MAX), i64::MAX);
    check(vec![-i64::MAX; 5], -(i64::MAX), i64::MAX);
    check(
        vec![i64::MAX, i64::MAX, -i64::MAX, -i64::MAX, -i64::MAX],
        -(i64::MAX),
        i64::MAX,
    );
}
