//! Garbling against plaintext evaluation, the circuits against integer arithmetic, and tampering.

use super::aes_circuit::{aes128_circuit, bits_to_bytes, bytes_to_bits};
use super::builder::{
    band_bits, bands_circuit, bits_to_u64, decision_circuit, reasons_circuit, u64_to_bits,
    BandError, Thresholds,
};
use super::circuit::BATCH;
use super::garble::tweak_log;
use super::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Outputs of one honest run: (garbler's, evaluator's).
type Outs = (Vec<bool>, Vec<bool>);

/// Both parties, honest, with the ideal OT (the evaluator gets the labels of its bits).
fn run(
    c: &Circuit,
    g: &mut Garbler,
    gin: &[bool],
    ein: &[bool],
    rng: &mut ChaCha20Rng,
) -> Result<Outs, Error> {
    let garbling = g.garble(c, gin, rng)?;
    let elabels = garbling.evaluator_labels.select(ein);
    // The tables travel in chunks.
    let mut rx = TableReceiver::new(c);
    for chunk in garbling.tables.chunks(1000) {
        rx.push(chunk)?;
    }
    let tables = rx.finish()?;
    let (out_labels, awaiting) =
        Evaluator::new().evaluate(c, &garbling.header, &tables, &elabels)?;
    let accepted = garbling.pending.check(&out_labels)?;
    let eo = awaiting.decode(&accepted.decoding)?;
    Ok((accepted.garbler_outputs, eo))
}

fn random_bits(rng: &mut ChaCha20Rng, n: usize) -> Vec<bool> {
    (0..n).map(|_| rng.random()).collect()
}

/// A random circuit: `ng + ne` inputs, `gates` gates over earlier wires, random outputs for both parties.
fn random_circuit(rng: &mut ChaCha20Rng, ng: usize, ne: usize, gates: usize) -> Circuit {
    let mut list = Vec::with_capacity(gates);
    let mut n = (ng + ne) as u32;
    for _ in 0..gates {
        // Favour recent wires so the circuit gets deep, but reach back to inputs too.
        let pick = |rng: &mut ChaCha20Rng, n: u32| -> WireId {
            if rng.random_bool(0.5) {
                WireId(n - 1 - rng.random_range(0..n.min(8)))
            } else {
                WireId(rng.random_range(0..n))
            }
        };
        let a = pick(rng, n);
        let b = pick(rng, n);
        let out = WireId(n);
        list.push(match rng.random_range(0..10) {
            0..=4 => Gate::And { a, b, out },
            5..=8 => Gate::Xor { a, b, out },
            _ => Gate::Inv { a, out },
        });
        n += 1;
    }
    let go = (0..rng.random_range(1..6))
        .map(|_| WireId(rng.random_range(0..n)))
        .collect();
    let eo = (0..rng.random_range(0..6))
        .map(|_| WireId(rng.random_range(0..n)))
        .collect();
    Circuit::new(
        n as usize,
        (0..ng as u32).map(WireId).collect(),
        (ng as u32..(ng + ne) as u32).map(WireId).collect(),
        list,
        go,
        eo,
    )
    .unwrap()
}

#[test]
fn random_circuits_garbled_equal_plaintext() {
    let mut rng = ChaCha20Rng::seed_from_u64(2024);
    let mut garbler = Garbler::new(Delta::random(&mut rng));
    let mut checked = 0;
    for round in 0..40 {
        let ng = rng.random_range(1..10);
        let ne = rng.random_range(0..10);
        let gates = rng.random_range(1..400);
        let c = random_circuit(&mut rng, ng, ne, gates);
        // Half the circuits share a session Δ (tweaks keep counting), half get a fresh one.
        let mut fresh = Garbler::new(Delta::random(&mut rng));
        let g = if round % 2 == 0 {
            &mut garbler
        } else {
            &mut fresh
        };
        for _ in 0..25 {
            let gin = random_bits(&mut rng, ng);
            let ein = random_bits(&mut rng, ne);
            let plain = c.eval_plain(&gin, &ein).unwrap();
            let (go, eo) = run(&c, g, &gin, &ein, &mut rng).unwrap();
            assert_eq!(go, plain.garbler);
            assert_eq!(eo, plain.evaluator);
            checked += 1;
        }
    }
    assert_eq!(checked, 1000);
}

#[test]
fn wide_layer_garbled_equals_plaintext() {
    // 3000 independent AND gates (many batches in one layer) and a few XORs of their outputs.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut b = CircuitBuilder::new();
    let x = b.garbler_inputs(64);
    let y = b.evaluator_inputs(64);
    let mut outs = Vec::new();
    for k in 0..3000 {
        outs.push(b.and(x[k % 64], y[(k / 64) % 64]));
    }
    for chunk in outs.chunks(100) {
        let mut acc = Bit::ZERO;
        for &o in chunk {
            acc = b.xor(acc, o);
        }
        b.garbler_output(acc);
        b.evaluator_output(acc);
    }
    b.garbler_output(outs[2999]);
    let c = b.build().unwrap();
    assert_eq!(c.and_count(), 3000);
    assert_eq!(c.and_depth(), 1);
    let mut g = Garbler::new(Delta::random(&mut rng));
    for _ in 0..10 {
        let gin = random_bits(&mut rng, 64);
        let ein = random_bits(&mut rng, 64);
        let plain = c.eval_plain(&gin, &ein).unwrap();
        assert_eq!(
            run(&c, &mut g, &gin, &ein, &mut rng).unwrap(),
            (plain.garbler, plain.evaluator)
        );
    }
}

#[test]
fn aes_circuit_garbled_matches_the_aes_crate() {
    use aes::cipher::{BlockEncrypt, KeyInit};
    let c = aes128_circuit();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut g = Garbler::new(Delta::random(&mut rng));
    for _ in 0..4 {
        let mut key = [0u8; 16];
        let mut pt = [0u8; 16];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut pt);
        let (go, eo) = run(
            &c,
            &mut g,
            &bytes_to_bits(&key),
            &bytes_to_bits(&pt),
            &mut rng,
        )
        .unwrap();
        assert!(go.is_empty());
        let mut blk = aes::Block::from(pt);
        aes::Aes128::new(&key.into()).encrypt_block(&mut blk);
        assert_eq!(bits_to_bytes(&eo), blk.to_vec());
    }
    assert_eq!(g.gates_garbled(), 4 * 6400);
}

/// Signed edge values and their neighbours.
fn edge_values() -> Vec<u64> {
    let base = [
        0i64,
        1,
        -1,
        2,
        -2,
        i64::MIN,
        i64::MAX,
        i64::MIN + 1,
        i64::MAX - 1,
        1 << 62,
        -(1 << 62),
        12345,
        -12345,
    ];
    base.iter().map(|&v| v as u64).collect()
}

fn plain_u64(c: &Circuit, g: u64, gw: usize, e: &[u64], ew: usize) -> Vec<bool> {
    let ein: Vec<bool> = e.iter().flat_map(|&v| u64_to_bits(v, ew)).collect();
    c.eval_plain(&u64_to_bits(g, gw), &ein).unwrap().evaluator
}

#[test]
fn arithmetic_circuits_match_integers() {
    let mut b = CircuitBuilder::new();
    let x = b.garbler_inputs(64);
    let y = b.evaluator_inputs(64);
    let outs: Vec<Vec<Bit>> = {
        let sum = b.add(&x, &y);
        let diff = b.sub(&x, &y);
        let sign = vec![b.sign_of_sum(&x, &y)];
        let ges = vec![b.ge_signed(&x, &y)];
        let geu = vec![b.ge_unsigned(&x, &y)];
        let lts = vec![b.lt_signed(&x, &y)];
        let eq = vec![b.eq(&x, &y)];
        let sel = b.mux_word(x[0], &x, &y);
        let c7 = b.constant(7u64.wrapping_neg(), 64);
        let ge_c = vec![b.ge_signed(&x, &c7)];
        vec![sum, diff, sign, ges, geu, lts, eq, sel, ge_c]
    };
    for o in &outs {
        for &bit in o {
            b.evaluator_output(bit);
        }
    }
    let c = b.build().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for &a in &edge_values() {
        for &bb in &edge_values() {
            pairs.push((a, bb));
        }
    }
    for _ in 0..300 {
        let a = rng.next_u64();
        // Sometimes equal, sometimes close.
        let bb = match rng.random_range(0..3) {
            0 => a,
            1 => a.wrapping_add(rng.random_range(0..3)),
            _ => rng.next_u64(),
        };
        pairs.push((a, bb));
    }
    pairs.push((7u64.wrapping_neg(), 0));
    pairs.push((6u64.wrapping_neg(), 0));
    pairs.push((8u64.wrapping_neg(), 0));
    for (a, bb) in pairs {
        let out = plain_u64(&c, a, 64, &[bb], 64);
        let (sa, sb) = (a as i64, bb as i64);
        let mut i = 0;
        let mut take = |w: usize| {
            let r = bits_to_u64(&out[i..i + w]);
            i += w;
            r
        };
        assert_eq!(take(64), a.wrapping_add(bb), "add {a} {bb}");
        assert_eq!(take(64), a.wrapping_sub(bb), "sub");
        assert_eq!(take(1) == 1, (a.wrapping_add(bb) as i64) < 0, "sign of sum");
        assert_eq!(take(1) == 1, sa >= sb, "ge_signed");
        assert_eq!(take(1) == 1, a >= bb, "ge_unsigned");
        assert_eq!(take(1) == 1, sa < sb, "lt_signed");
        assert_eq!(take(1) == 1, a == bb, "eq");
        assert_eq!(take(64), if a & 1 == 1 { bb } else { a }, "mux");
        assert_eq!(take(1) == 1, sa >= -7, "ge const");
    }
}

#[test]
fn gate_counts_are_as_documented() {
    let mut b = CircuitBuilder::new();
    let x = b.garbler_inputs(64);
    let y = b.evaluator_inputs(64);
    b.sign_of_sum(&x, &y);
    assert_eq!(b.and_count(), 63);
    let _ = b.add(&x, &y);
    assert_eq!(b.and_count(), 126);
    b.ge_signed(&x, &y);
    assert_eq!(b.and_count(), 190);
    b.eq(&x, &y);
    assert_eq!(b.and_count(), 253);
    assert_eq!(decision_circuit().and_count(), 63);
    assert_eq!(band_bits(2), 1);
    assert_eq!(band_bits(3), 2);
    assert_eq!(band_bits(4), 2);
    assert_eq!(band_bits(5), 3);
    assert_eq!(band_bits(8), 3);
}

#[test]
fn decision_circuit_garbled_on_edge_cases() {
    let c = decision_circuit();
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let mut g = Garbler::new(Delta::random(&mut rng));
    let mut cases: Vec<(u64, u64)> = Vec::new();
    for &a in &edge_values() {
        for &s in &edge_values() {
            // Shares of the sum s: owner a, FI s − a.
            cases.push((a, s.wrapping_sub(a)));
        }
    }
    for _ in 0..100 {
        cases.push((rng.next_u64(), rng.next_u64()));
    }
    for (a, f) in cases {
        let (go, eo) = run(
            &c,
            &mut g,
            &u64_to_bits(a, 64),
            &u64_to_bits(f, 64),
            &mut rng,
        )
        .unwrap();
        let want = (a.wrapping_add(f) as i64) >= 0;
        assert_eq!(go, vec![want]);
        assert_eq!(eo, vec![want]);
    }
}

fn band_reference(score: i64, thresholds: &[i64]) -> u64 {
    thresholds.iter().filter(|&&t| score >= t).count() as u64
}

#[test]
fn band_circuits_match_the_reference() {
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let mut g = Garbler::new(Delta::random(&mut rng));
    for k in 2..=9usize {
        let mut ts: Vec<i64> = (0..k - 1)
            .map(|_| rng.random_range(-1_000_000i64..1_000_000))
            .collect();
        ts.sort();
        ts.dedup();
        let public = bands_circuit(&Thresholds::Public(ts.clone())).unwrap();
        let private = bands_circuit(&Thresholds::Private { count: ts.len() }).unwrap();
        let bits = band_bits(ts.len() + 1);
        let mut scores: Vec<i64> = vec![0, -1, 1, i64::MIN, i64::MAX];
        for &t in &ts {
            scores.extend([t - 1, t, t + 1]);
        }
        for _ in 0..20 {
            scores.push(rng.random_range(-2_000_000..2_000_000));
        }
        let tvals: Vec<u64> = ts.iter().map(|&t| t as u64).collect();
        for s in scores {
            let a = rng.next_u64();
            let f = (s as u64).wrapping_sub(a);
            let want = band_reference(s, &ts);
            let out = public
                .eval_plain(&u64_to_bits(a, 64), &u64_to_bits(f, 64))
                .unwrap();
            assert_eq!(bits_to_u64(&out.evaluator), want, "public k={k} s={s}");
            assert_eq!(out.evaluator.len(), bits);
            let mut ein = u64_to_bits(f, 64);
            ein.extend(tvals.iter().flat_map(|&t| u64_to_bits(t, 64)));
            let (go, eo) = run(&private, &mut g, &u64_to_bits(a, 64), &ein, &mut rng).unwrap();
            assert_eq!(bits_to_u64(&eo), want, "private k={k} s={s}");
            assert_eq!(go, eo);
        }
    }
    assert_eq!(
        bands_circuit(&Thresholds::Public(vec![5, 5])).unwrap_err(),
        BandError::NotAscending { index: 1 }
    );
}

#[test]
fn tweaks_are_never_reused_under_one_delta() {
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    let mut g = Garbler::new(Delta::random(&mut rng));
    let _ = tweak_log::take();
    let circuits = [
        decision_circuit(),
        aes128_circuit(),
        random_circuit(&mut rng, 5, 5, 300),
        decision_circuit(),
    ];
    let mut total_and = 0u64;
    for c in &circuits {
        let gin = random_bits(&mut rng, c.garbler_inputs().len());
        let garbling = g.garble(c, &gin, &mut rng).unwrap();
        assert_eq!(garbling.header.tweak_base, total_and);
        total_and += c.and_count() as u64;
    }
    let log = tweak_log::take();
    // One hashed block per label: each tweak used for exactly one pair {x, x ⊕ Δ}.
    assert_eq!(log.len() as u64, 4 * total_and);
    let mut counts = std::collections::HashMap::new();
    for t in log {
        *counts.entry(t).or_insert(0u32) += 1;
    }
    assert_eq!(
        counts.len() as u64,
        2 * total_and,
        "every AND gate has two fresh tweaks"
    );
    assert!(
        counts.values().all(|&n| n == 2),
        "a tweak was used for more than one pair"
    );
    assert!(counts.keys().all(|&t| t < 2 * total_and as u128));
}

#[test]
fn tampered_tables_never_give_the_owner_a_wrong_output() {
    let c = decision_circuit();
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let mut g = Garbler::new(Delta::random(&mut rng));
    let mut rejected = 0;
    let trials = 400;
    for _ in 0..trials {
        let (a, f) = (rng.next_u64(), rng.next_u64());
        let want = (a.wrapping_add(f) as i64) >= 0;
        let mut garbling = g.garble(&c, &u64_to_bits(a, 64), &mut rng).unwrap();
        garbling
            .tables
            .flip_bit(rng.random_range(0..c.table_bytes() * 8));
        let el = garbling.evaluator_labels.select(&u64_to_bits(f, 64));
        let (labels, _) = Evaluator::new()
            .evaluate(&c, &garbling.header, &garbling.tables, &el)
            .unwrap();
        match garbling.pending.check(&labels) {
            Ok(acc) => assert_eq!(acc.garbler_outputs, vec![want], "accepted a wrong output"),
            Err(e) => {
                assert_eq!(
                    e,
                    Error::Peer(PeerMisbehaved::InvalidOutputLabel { index: 0 })
                );
                rejected += 1;
            }
        }
    }
    // A flipped row is used about half the time; the rest must be rejected, not silently wrong.
    assert!(
        rejected > trials / 4,
        "only {rejected} of {trials} tamperings were detected"
    );
}

#[test]
fn tampered_header_is_refused_or_rejected() {
    let c = decision_circuit();
    let mut rng = ChaCha20Rng::seed_from_u64(43);
    let mut g = Garbler::new(Delta::random(&mut rng));
    let mut ev = Evaluator::new();
    for case in 0..5 {
        let garbling = g
            .garble(&c, &u64_to_bits(rng.next_u64(), 64), &mut rng)
            .unwrap();
        let el = garbling
            .evaluator_labels
            .select(&u64_to_bits(rng.next_u64(), 64));
        let mut h = garbling.header.clone();
        let res = match case {
            0 => {
                h.circuit_digest[0] ^= 1;
                ev.evaluate(&c, &h, &garbling.tables, &el).map(|_| ())
            }
            1 => {
                h.garbler_labels.pop();
                ev.evaluate(&c, &h, &garbling.tables, &el).map(|_| ())
            }
            2 => {
                h.tweak_base = u64::MAX - 3;
                ev.evaluate(&c, &h, &garbling.tables, &el).map(|_| ())
            }
            3 => {
                // A shifted tweak base: evaluation runs but the owner rejects the label.
                h.tweak_base += 1;
                let (labels, _) = ev.evaluate(&c, &h, &garbling.tables, &el).unwrap();
                garbling.pending.check(&labels).map(|_| ())
            }
            _ => {
                // A flipped bit in the owner's sign-bit input label.
                h.garbler_labels[63].0 ^= 1 << 77;
                let (labels, _) = ev.evaluate(&c, &h, &garbling.tables, &el).unwrap();
                garbling.pending.check(&labels).map(|_| ())
            }
        };
        let e = res.unwrap_err();
        assert!(matches!(e, Error::Peer(_)), "case {case}: {e}");
    }
    // Tables of the wrong length.
    assert!(matches!(
        GarbledTables::from_bytes(&c, vec![0u8; c.table_bytes() - 32]),
        Err(Error::Peer(PeerMisbehaved::TableLength { .. }))
    ));
    let mut rx = TableReceiver::new(&c);
    rx.push(&vec![0u8; c.table_bytes() - 1]).unwrap();
    assert!(rx.push(&[0, 0]).is_err());
    assert_eq!(rx.remaining(), 1);
    assert!(matches!(
        rx.finish(),
        Err(Error::Peer(PeerMisbehaved::TableLength { .. }))
    ));
}

#[test]
fn modified_output_labels_are_rejected() {
    let c = decision_circuit();
    let mut rng = ChaCha20Rng::seed_from_u64(47);
    let mut g = Garbler::new(Delta::random(&mut rng));
    let mut ev = Evaluator::new();
    for bit in 0..128 {
        let garbling = g
            .garble(&c, &u64_to_bits(rng.next_u64(), 64), &mut rng)
            .unwrap();
        let el = garbling
            .evaluator_labels
            .select(&u64_to_bits(rng.next_u64(), 64));
        let (mut labels, awaiting) = ev
            .evaluate(&c, &garbling.header, &garbling.tables, &el)
            .unwrap();
        labels.labels[0].0 ^= 1u128 << bit;
        assert_eq!(
            garbling.pending.check(&labels).unwrap_err(),
            Error::Peer(PeerMisbehaved::InvalidOutputLabel { index: 0 })
        );
        drop(awaiting);
    }
    // Another input's label, a random label, a wrong count, another circuit.
    for case in 0..4 {
        let garbling = g
            .garble(&c, &u64_to_bits(rng.next_u64(), 64), &mut rng)
            .unwrap();
        let el = garbling
            .evaluator_labels
            .select(&u64_to_bits(rng.next_u64(), 64));
        let (mut labels, _) = ev
            .evaluate(&c, &garbling.header, &garbling.tables, &el)
            .unwrap();
        match case {
            0 => labels.labels[0] = garbling.header.garbler_labels[5],
            1 => labels.labels[0] = Block::random(&mut rng),
            2 => labels.labels.push(labels.labels[0]),
            _ => labels.circuit_digest = aes128_circuit().digest(),
        }
        let e = garbling.pending.check(&labels).unwrap_err();
        assert!(matches!(e, Error::Peer(_)), "case {case}: {e}");
    }
}

#[test]
fn decoding_is_checked_and_sent_only_after_acceptance() {
    let c = decision_circuit();
    let mut rng = ChaCha20Rng::seed_from_u64(53);
    let mut g = Garbler::new(Delta::random(&mut rng));
    let garbling = g.garble(&c, &u64_to_bits(5, 64), &mut rng).unwrap();
    let el = garbling
        .evaluator_labels
        .select(&u64_to_bits(3u64.wrapping_neg(), 64));
    let (labels, awaiting) = Evaluator::new()
        .evaluate(&c, &garbling.header, &garbling.tables, &el)
        .unwrap();
    let accepted = garbling.pending.check(&labels).unwrap();
    assert_eq!(accepted.garbler_outputs, vec![true]);
    let mut short = accepted.decoding.clone();
    short.bits.clear();
    // decode consumes its state; check the failure on a second evaluation.
    let garbling2 = g.garble(&c, &u64_to_bits(5, 64), &mut rng).unwrap();
    let el2 = garbling2
        .evaluator_labels
        .select(&u64_to_bits(3u64.wrapping_neg(), 64));
    let (_, awaiting2) = Evaluator::new()
        .evaluate(&c, &garbling2.header, &garbling2.tables, &el2)
        .unwrap();
    assert_eq!(
        awaiting2.decode(&short).unwrap_err(),
        Error::Peer(PeerMisbehaved::DecodingLength {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(awaiting.decode(&accepted.decoding).unwrap(), vec![true]);
}

#[test]
fn api_misuse_is_typed() {
    let c = decision_circuit();
    let mut rng = ChaCha20Rng::seed_from_u64(59);
    assert_eq!(
        Delta::new(Block(2)).unwrap_err(),
        Error::Misuse(ApiMisuse::DeltaLsbZero)
    );
    let mut g = Garbler::new(Delta::new(Block(3)).unwrap());
    assert!(matches!(
        g.garble(&c, &[true; 3], &mut rng),
        Err(Error::Misuse(ApiMisuse::InputLength { .. }))
    ));
    assert!(matches!(
        g.garble_with_evaluator_labels(&c, &[false; 64], vec![Block::ZERO; 2], &mut rng),
        Err(Error::Misuse(ApiMisuse::InputLength { .. }))
    ));
    // No gate numbers were consumed by refused calls.
    assert_eq!(g.gates_garbled(), 0);
    let garbling = g.garble(&c, &[false; 64], &mut rng).unwrap();
    assert!(matches!(
        Evaluator::new().evaluate(&c, &garbling.header, &garbling.tables, &[]),
        Err(Error::Misuse(ApiMisuse::InputLength { .. }))
    ));
    assert_eq!(format!("{:?}", Delta::random(&mut rng)), "Delta(..)");
    assert!(!format!("{:?}", garbling.evaluator_labels).contains("Block("));
}

#[test]
fn constant_outputs_are_materialized() {
    let mut b = CircuitBuilder::new();
    let x = b.garbler_input();
    let y = b.evaluator_input();
    let z = b.and(x, Bit::ZERO);
    b.garbler_output(z);
    b.garbler_output(Bit::ONE);
    let o = b.or(x, y);
    b.evaluator_output(o);
    let c = b.build().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(61);
    let mut g = Garbler::new(Delta::random(&mut rng));
    for (x, y) in [(false, false), (true, false), (false, true), (true, true)] {
        assert_eq!(
            run(&c, &mut g, &[x], &[y], &mut rng).unwrap(),
            (vec![false, true], vec![x | y])
        );
    }
    let mut empty = CircuitBuilder::new();
    empty.garbler_output(Bit::ONE);
    assert_eq!(
        empty.build().unwrap_err(),
        CircuitError::ConstantWithoutInputs
    );
}

#[test]
fn streamed_tables_equal_stored_tables() {
    let c = aes128_circuit();
    let mut outs = Vec::new();
    for stream in [false, true] {
        let mut rng = ChaCha20Rng::seed_from_u64(67);
        let mut g = Garbler::new(Delta::random(&mut rng));
        let gin = random_bits(&mut rng, 128);
        let zero: Vec<Block> = (0..128).map(|_| Block::random(&mut rng)).collect();
        if stream {
            let mut bytes = Vec::new();
            let mut chunks = 0;
            let s = g
                .garble_streaming(&c, &gin, zero, &mut rng, |ch| {
                    assert!(ch.len() % 32 == 0 && ch.len() <= garble::STREAM_CHUNK);
                    chunks += 1;
                    bytes.extend_from_slice(ch)
                })
                .unwrap();
            assert_eq!(chunks, c.table_bytes().div_ceil(garble::STREAM_CHUNK));
            outs.push((s.header, bytes));
        } else {
            let gb = g
                .garble_with_evaluator_labels(&c, &gin, zero, &mut rng)
                .unwrap();
            outs.push((gb.header, gb.tables.as_bytes().to_vec()));
        }
    }
    assert_eq!(outs[0], outs[1]);
}

/// Half-gates garbling written out gate by gate from its definition, from the circuit's gate list and not its
/// schedule: one `Tccr::hash` per hashed label, no batching, no shared first halves, one label per wire. AND
/// gate tweaks follow the documented order (by AND depth, list order within a depth). Returns the tables, from
/// the zero labels of the inputs.
fn reference_garbling(
    c: &Circuit,
    delta: Block,
    tweak_base: u64,
    garbler_zero: &[Block],
    evaluator_zero: &[Block],
) -> Vec<u8> {
    use super::hash::{gate_tweaks, Tccr};
    let h = Tccr::new();
    let d = delta.0;
    let mut labels = vec![Block::ZERO; c.num_wires()];
    let mut depth = vec![0usize; c.num_wires()];
    for (w, &z) in c.garbler_inputs().iter().zip(garbler_zero) {
        labels[w.index()] = z;
    }
    for (w, &z) in c.evaluator_inputs().iter().zip(evaluator_zero) {
        labels[w.index()] = z;
    }
    // The position of each AND gate in the documented order.
    let mut ands: Vec<(usize, usize)> = Vec::new();
    for (i, g) in c.gates().iter().enumerate() {
        let (dg, out) = match *g {
            Gate::And { a, b, out } => (depth[a.index()].max(depth[b.index()]) + 1, out),
            Gate::Xor { a, b, out } => (depth[a.index()].max(depth[b.index()]), out),
            Gate::Inv { a, out } => (depth[a.index()], out),
        };
        depth[out.index()] = dg;
        if matches!(g, Gate::And { .. }) {
            ands.push((dg, i));
        }
    }
    ands.sort();
    let mut position = std::collections::HashMap::new();
    for (k, &(_, i)) in ands.iter().enumerate() {
        position.insert(i, k);
    }
    let mut tables = vec![0u8; c.table_bytes()];
    for (i, g) in c.gates().iter().enumerate() {
        match *g {
            Gate::And { a, b, out } => {
                let k = position[&i];
                let (ta, tb) = gate_tweaks(tweak_base + k as u64);
                let (a0, b0) = (labels[a.index()], labels[b.index()]);
                let (pa, pb) = (a0.lsb(), b0.lsb());
                let (ha0, ha1) = (h.hash(a0, ta).0, h.hash(Block(a0.0 ^ d), ta).0);
                let (hb0, hb1) = (h.hash(b0, tb).0, h.hash(Block(b0.0 ^ d), tb).0);
                let tg = ha0 ^ ha1 ^ if pb { d } else { 0 };
                let wg = ha0 ^ if pa { tg } else { 0 };
                let te = hb0 ^ hb1 ^ a0.0;
                let we = hb0 ^ if pb { te ^ a0.0 } else { 0 };
                labels[out.index()] = Block(wg ^ we);
                tables[32 * k..32 * k + 16].copy_from_slice(&tg.to_le_bytes());
                tables[32 * k + 16..32 * k + 32].copy_from_slice(&te.to_le_bytes());
            }
            Gate::Xor { a, b, out } => labels[out.index()] = labels[a.index()] ^ labels[b.index()],
            Gate::Inv { a, out } => labels[out.index()] = Block(labels[a.index()].0 ^ d),
        }
    }
    tables
}

/// A wide layer of `n` AND gates over 256 garbler and 256 evaluator inputs (each input feeds many gates), and
/// 64 more AND gates in the same layer whose inputs feed only them, XOR-folded into 16 outputs for each party.
fn shared_wide_layer(n: usize) -> Circuit {
    let mut b = CircuitBuilder::new();
    let x = b.garbler_inputs(256);
    let y = b.evaluator_inputs(256);
    let once_x = b.garbler_inputs(64);
    let once_y = b.evaluator_inputs(64);
    let mut acc = vec![Bit::ZERO; 16];
    let ands = (0..n)
        .map(|k| (x[k % 256], y[(k / 256 + k) % 256]))
        .chain(once_x.iter().copied().zip(once_y.iter().copied()));
    for (k, (xi, yj)) in ands.enumerate() {
        let z = b.and(xi, yj);
        acc[k % 16] = b.xor(acc[k % 16], z);
    }
    for &a in &acc {
        b.garbler_output(a);
        b.evaluator_output(a);
    }
    b.build().unwrap()
}

#[test]
fn tables_equal_the_half_gates_definition_gate_by_gate() {
    use super::circuit::SHARED;
    let mut rng = ChaCha20Rng::seed_from_u64(71);
    let mut circuits: Vec<Circuit> = (0..30)
        .map(|_| random_circuit(&mut rng, 6, 6, 300))
        .collect();
    circuits.push(aes128_circuit());
    circuits.push(decision_circuit());
    circuits.push(reasons_circuit(12, 3));
    circuits.push(shared_wide_layer(5000));
    // Both ways of hashing an input are exercised: first halves shared across gates and computed per gate.
    let inputs = circuits
        .iter()
        .flat_map(|c| c.and_gates.iter().flat_map(|g| [g.a, g.b]));
    assert!(inputs.clone().any(|x| x & SHARED != 0));
    assert!(inputs.clone().any(|x| x & SHARED == 0));
    // Including both in one layer (the wide one).
    let wide = circuits.last().unwrap();
    assert_eq!(wide.layers.iter().filter(|l| l.and_end > 0).count(), 1);
    assert_eq!(
        wide.shared_and_inputs(),
        2 * wide.and_count() - 128,
        "all but the 64 gates' own inputs are shared"
    );
    // Its labels fit in few slots: each batch's AND outputs are folded into the XOR chains right after the
    // batch, and their slots are taken again by the next batch.
    assert!(
        (wide.slots.count as usize) < 640 + 4 * BATCH,
        "{} slots for {} wires",
        wide.slots.count,
        wide.num_wires()
    );
    {
        let delta = Delta::random(&mut rng);
        let d = delta.block();
        let mut g = Garbler::new(delta);
        for c in &circuits {
            let gin = random_bits(&mut rng, c.garbler_inputs().len());
            let ein = random_bits(&mut rng, c.evaluator_inputs().len());
            let zero: Vec<Block> = (0..ein.len()).map(|_| Block::random(&mut rng)).collect();
            let mut streamed = Vec::new();
            let s = g
                .garble_streaming(c, &gin, zero.clone(), &mut rng, |ch| {
                    streamed.extend_from_slice(ch)
                })
                .unwrap();
            // The garbler's zero labels, from the labels of its inputs in the header.
            let garbler_zero = |h: &GarbledHeader| -> Vec<Block> {
                h.garbler_labels
                    .iter()
                    .zip(&gin)
                    .map(|(&l, &x)| l ^ d.and_bit(x))
                    .collect()
            };
            let tables =
                reference_garbling(c, d, s.header.tweak_base, &garbler_zero(&s.header), &zero);
            assert!(
                streamed == tables,
                "streamed tables differ from the definition"
            );
            let stored = g
                .garble_with_evaluator_labels(c, &gin, zero, &mut rng)
                .unwrap();
            let evaluator_zero: Vec<Block> = (0..ein.len())
                .map(|i| stored.evaluator_labels.pair(i).0)
                .collect();
            let tables = reference_garbling(
                c,
                d,
                stored.header.tweak_base,
                &garbler_zero(&stored.header),
                &evaluator_zero,
            );
            assert!(
                stored.tables.as_bytes() == tables,
                "stored tables differ from the definition"
            );
            // And the evaluator, sharing first halves the same way, gets the right outputs.
            let (go, eo) = {
                let elabels = stored.evaluator_labels.select(&ein);
                let (out, awaiting) = Evaluator::new()
                    .evaluate(c, &stored.header, &stored.tables, &elabels)
                    .unwrap();
                let accepted = stored.pending.check(&out).unwrap();
                (
                    accepted.garbler_outputs,
                    awaiting.decode(&accepted.decoding).unwrap(),
                )
            };
            let plain = c.eval_plain(&gin, &ein).unwrap();
            assert_eq!((go, eo), (plain.garbler, plain.evaluator));
        }
    }
}
