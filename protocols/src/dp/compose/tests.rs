use super::*;
use proptest::prelude::*;

#[test]
fn known_parts_give_known_answers() {
    // Values 2, 4, 4, 4, 5, 5, 7, 9: sum 40, sum of squares 232, mean 5, variance 4, CV 0.4.
    assert_eq!(mean(40, 8), Some(5.0));
    assert_eq!(variance(40, 232, 8, 0, 10), Some(4.0));
    assert_eq!(coefficient_of_variation(40, 232, 8, 0, 10), Some(0.4));
    assert_eq!(stdev(40, 232, 8, 0, 10), Some(2.0));
    assert_eq!(stdev(40, 232, 0, 0, 10), None);
    // The clamped variance's root: at most half the range.
    assert_eq!(stdev(1, 1000, 1, 0, 10), Some(5.0));
    assert_eq!(stdev(50, 100, 10, 0, 10), Some(0.0));
    // A public denominator larger than the rows works the same way.
    assert_eq!(mean(-30, 4), Some(-7.5));
    // A single value, or all values equal: no variability.
    assert_eq!(variance(7, 49, 1, 0, 10), Some(0.0));
    assert_eq!(coefficient_of_variation(21, 147, 3, 0, 10), Some(0.0));
}

#[test]
fn a_negative_noisy_variance_clamps_to_zero() {
    // S2 / n - (S / n)^2 = 10 - 25 < 0.
    assert_eq!(variance(50, 100, 10, 0, 10), Some(0.0));
    assert_eq!(coefficient_of_variation(50, 100, 10, 0, 10), Some(0.0));
}

#[test]
fn a_noisy_variance_past_the_range_clamps_to_its_bound() {
    // Values in [0, 10] have a variance of at most 5^2 = 25; 1000 - 1 = 999 clamps to 25.
    assert_eq!(variance(1, 1000, 1, 0, 10), Some(25.0));
    assert_eq!(coefficient_of_variation(1, 1000, 1, 0, 10), Some(5.0));
    // The bound is reached: half the values at each end.
    assert_eq!(variance(20, 200, 4, 0, 10), Some(25.0));
    // Bounds of mixed sign: [-4, 6] allows 25.
    assert_eq!(variance(0, 400, 4, -4, 6), Some(25.0));
    // Equal bounds allow no variance at all.
    assert_eq!(variance(30, 1000, 3, 10, 10), Some(0.0));
}

#[test]
fn a_count_below_one_gives_no_value() {
    for n in [0, -1, i64::MIN] {
        assert_eq!(mean(10, n), None, "{n}");
        assert_eq!(variance(10, 100, n, 0, 10), None, "{n}");
        assert_eq!(coefficient_of_variation(10, 100, n, 0, 10), None, "{n}");
    }
}

#[test]
fn a_mean_at_or_below_zero_gives_no_coefficient_of_variation() {
    assert_eq!(coefficient_of_variation(0, 100, 10, 0, 10), None);
    assert_eq!(coefficient_of_variation(-5, 100, 10, 0, 10), None);
    // The mean itself is still a value.
    assert_eq!(mean(-5, 10), Some(-0.5));
}

proptest! {
    /// Whatever the noise did, a variance is a value in its range (or none), and the CV is consistent
    /// with it.
    #[test]
    fn variances_stay_in_range(
        s in any::<i64>(),
        s2 in any::<i64>(),
        n in any::<i64>(),
        lo in -1_000_000i64..1_000_000,
        width in 0i64..2_000_000,
    ) {
        let hi = lo + width;
        let half = width as f64 / 2.0;
        match variance(s, s2, n, lo, hi) {
            None => prop_assert!(n < 1),
            Some(v) => {
                prop_assert!(n >= 1);
                prop_assert!((0.0..=half * half).contains(&v), "{v}");
                let cv = coefficient_of_variation(s, s2, n, lo, hi);
                let m = mean(s, n).unwrap();
                prop_assert_eq!(cv, (m > 0.0).then(|| v.sqrt() / m));
            }
        }
    }
}
