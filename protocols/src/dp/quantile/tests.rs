//! Our candidate scores against OpenDP's `make_quantile_score_candidates` (fixed seeds).

use opendp::transformations::make_quantile_score_candidates;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

#[test]
fn scores_equal_opendp_on_random_inputs() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let qs = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0 / 3.0, 0.75, 0.99999, 1.0];
    for round in 0..200 {
        let q = qs[round % qs.len()];
        let mut candidates: Vec<i64> = (0..rng.random_range(1..100))
            .map(|_| rng.random_range(-300..300))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        // Few distinct values, so ties with candidates are common.
        let values: Vec<i64> = (0..rng.random_range(0..2_000))
            .map(|_| rng.random_range(-350..350))
            .collect();
        let t = make_quantile_score_candidates(
            VectorDomain::new(AtomDomain::default()),
            SymmetricDistance,
            candidates.clone(),
            q,
        )
        .unwrap();
        assert_eq!(
            scores(&values, &candidates, q),
            t.invoke(&values).unwrap(),
            "q = {q}"
        );
    }
}

#[test]
fn constants_are_exact_for_dyadic_q() {
    assert_eq!(constants(0.5).0, 1);
    assert_eq!(constants(0.5).1, 2);
    assert_eq!(constants(0.9).1, 10_000);
    assert_eq!(constants(0.9).0, 9_000);
    assert_eq!(constants(0.0).1, 1);
}
