use super::hostile::HostileOwner;
use super::*;
use crate::channel;
use crate::fixed::{Bounds, FixedModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

fn sid(tag: u8) -> SessionId {
    SessionId([tag; 32])
}

fn params(n: usize, reveal: Reveal, tag: u8) -> Params {
    Params {
        session: sid(tag),
        bounds: (0..n)
            .map(|i| Bounds::new(-(i as f64) - 1.0, 100.0 + i as f64))
            .collect(),
        reveal,
    }
}

fn random_model(rng: &mut ChaCha20Rng, p: &Params) -> FiModel {
    let weights: Vec<f64> = (0..p.n())
        .map(|_| match rng.random_range(0..5) {
            0 => 0.0,
            1 => -rng.random_range(0.0..50.0),
            _ => rng.random_range(-10.0..10.0),
        })
        .map(|w: f64| if w != 0.0 && w.abs() < 1e-4 { 0.0 } else { w })
        .collect();
    let bias = rng.random_range(-1000.0..1000.0);
    let threshold = rng.random_range(-1000.0..1000.0);
    let model = FixedModel::new(&p.bounds, &weights, bias, threshold).unwrap();
    let bands = match p.reveal {
        Reveal::Bands { .. } => {
            let thresholds = p.reveal.thresholds();
            let mut t: Vec<f64> = (0..thresholds)
                .map(|k| -2000.0 + 4000.0 * k as f64 / thresholds as f64)
                .collect();
            t.iter_mut().for_each(|x| *x += rng.random_range(0.0..10.0));
            t
        }
        _ => vec![],
    };
    FiModel::new(model, &bands).unwrap()
}

fn random_attrs(rng: &mut ChaCha20Rng, p: &Params) -> Vec<f64> {
    p.bounds
        .iter()
        .map(|b| match rng.random_range(0..6) {
            0 => b.lo,
            1 => b.hi,
            2 => b.hi + 1e6, // clamped
            3 => 0.0,
            _ => rng.random_range(b.lo..=b.hi),
        })
        .collect()
}

/// An honest cold run: the messages each side received, in order (the run must succeed).
fn honest_transcript(
    p: &Params,
    attrs: &[f64],
    model: &FiModel,
    seed: u64,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut to_owner, mut to_fi) = (Vec::new(), Vec::new());
    let (o, f) = drive(p, attrs, model, None, None, seed, |to_o, m| {
        if to_o {
            to_owner.push(m.clone())
        } else {
            to_fi.push(m.clone())
        }
    });
    assert!(matches!(o, Some(Ok(_))) && matches!(f, Some(Ok(_))));
    (to_owner, to_fi)
}

type OwnerResult = Option<Result<(Outcome, kos::Sender), Error>>;
type FiResult = Option<Result<(Outcome, kos::Receiver), Error>>;

/// Runs both sides in one thread, passing each message through `tamper(to_owner, message)`. A side that
/// errs stops; a side left waiting ends with `None`.
fn drive(
    p: &Params,
    attrs: &[f64],
    model: &FiModel,
    owner_ot: Option<kos::Sender>,
    fi_ot: Option<kos::Receiver>,
    seed: u64,
    tamper: impl FnMut(bool, &mut Vec<u8>),
) -> (OwnerResult, FiResult) {
    drive_with(p, attrs, model, owner_ot, fi_ot, seed, None, tamper)
}

/// [`drive`], the owner modified as `hostile` says (or honest).
#[allow(clippy::too_many_arguments)]
fn drive_with(
    p: &Params,
    attrs: &[f64],
    model: &FiModel,
    owner_ot: Option<kos::Sender>,
    fi_ot: Option<kos::Receiver>,
    seed: u64,
    hostile: Option<Arc<Mutex<HostileOwner>>>,
    mut tamper: impl FnMut(bool, &mut Vec<u8>),
) -> (OwnerResult, FiResult) {
    let mut ro = ChaCha20Rng::seed_from_u64(seed);
    let mut rf = ChaCha20Rng::seed_from_u64(seed ^ 0xf1);
    let mut to_owner = VecDeque::new();
    let mut to_fi = VecDeque::new();
    let (mut o, out) = OwnerRun::start(p, attrs, owner_ot, &mut ro).unwrap();
    o.hostile = hostile;
    to_fi.extend(out);
    let (f, out) = FiRun::start(p, model, fi_ot, &mut rf).unwrap();
    to_owner.extend(out);
    let (mut owner, mut fi) = (Some(o), Some(f));
    let (mut owner_res, mut fi_res): (OwnerResult, FiResult) = (None, None);
    loop {
        if let (Some(run), Some(mut m)) = (owner.as_ref(), to_owner.front().cloned()) {
            let _ = run;
            to_owner.pop_front();
            tamper(true, &mut m);
            match owner.take().unwrap().handle(m, &mut ro) {
                Ok(OwnerStep::Continue(next, out)) => {
                    to_fi.extend(out);
                    owner = Some(*next);
                }
                Ok(OwnerStep::Done { outcome, send, ot }) => {
                    to_fi.extend(send);
                    owner_res = Some(Ok((outcome, *ot)));
                }
                Err(e) => owner_res = Some(Err(e)),
            }
            continue;
        }
        if let (Some(_), Some(mut m)) = (fi.as_ref(), to_fi.front().cloned()) {
            to_fi.pop_front();
            tamper(false, &mut m);
            match fi.take().unwrap().handle(m, &mut rf) {
                Ok(FiStep::Continue(next, out)) => {
                    to_owner.extend(out);
                    fi = Some(*next);
                }
                Ok(FiStep::Done { outcome, ot }) => fi_res = Some(Ok((outcome, ot))),
                Err(e) => fi_res = Some(Err(e)),
            }
            continue;
        }
        break;
    }
    (owner_res, fi_res)
}

fn both_ok(r: (OwnerResult, FiResult)) -> (Outcome, kos::Sender, Outcome, kos::Receiver) {
    let (o, f) = r;
    let (oo, os) = o.expect("owner finished").expect("owner ok");
    let (fo, fs) = f.expect("FI finished").expect("FI ok");
    (oo, os, fo, fs)
}

#[test]
fn runs_equal_the_ideal_functionality_cold_and_warm() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for (k, reveal) in [
        Reveal::Decision,
        Reveal::Bands { k: 4 },
        Reveal::Bands { k: 2 },
        Reveal::Score,
    ]
    .into_iter()
    .enumerate()
    {
        for n in [1usize, 3, 8, 33] {
            let p = params(n, reveal, k as u8);
            let (mut os, mut fs) = (None, None);
            // Five runs on one extension state: the first cold, the rest warm.
            for run in 0..5 {
                let model = random_model(&mut rng, &p);
                let attrs = random_attrs(&mut rng, &p);
                let want = ideal(&p, &attrs, &model).unwrap();
                let (oo, o_ot, fo, f_ot) = both_ok(drive(
                    &p,
                    &attrs,
                    &model,
                    os.take(),
                    fs.take(),
                    rng.random(),
                    |_, _| {},
                ));
                assert_eq!(oo, want, "owner, {reveal:?}, n = {n}, run {run}");
                assert_eq!(fo, want, "FI, {reveal:?}, n = {n}, run {run}");
                (os, fs) = (Some(o_ot), Some(f_ot));
            }
        }
    }
}

#[test]
fn decisions_match_the_fixed_point_reference_on_edges() {
    // Negative weights, a zero weight, attributes at and beyond the clamp bounds, and scores exactly at,
    // just above and just below the threshold.
    let p = params(4, Reveal::Decision, 40);
    let weights = [2.5, -1.25, 0.0, 0.5];
    let at = |attrs: &[f64]| {
        let dot: f64 = attrs
            .iter()
            .zip(&p.bounds)
            .zip(&weights)
            .map(|((&x, b), w)| x.clamp(b.lo, b.hi) * w)
            .sum();
        dot
    };
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let cases: [[f64; 4]; 5] = [
        [10.0, 4.0, 7.0, 2.0],
        [-1.0, 101.0, 0.0, 103.0], // every attribute at a bound
        [-50.0, 1e9, -1e9, 1e9],   // clamped
        [0.0, 0.0, 0.0, 0.0],
        [100.0, -2.0, 3.0, -4.0],
    ];
    for attrs in cases {
        let score = at(&attrs);
        // Exactly at the threshold (bias 1.0 so the threshold is score + 1.0): reaches it.
        for (delta, want) in [
            (0.0, true),
            (2f64.powi(-32), false),
            (-(2f64.powi(-32)), true),
        ] {
            let model = FixedModel::new(&p.bounds, &weights, 1.0, score + 1.0 + delta).unwrap();
            let reference = model.score_reference(&attrs).unwrap();
            assert_eq!(reference.decision, want, "reference, {attrs:?}, {delta}");
            let fi = FiModel::new(model, &[]).unwrap();
            let (oo, _, fo, _) =
                both_ok(drive(&p, &attrs, &fi, None, None, rng.random(), |_, _| {}));
            assert_eq!(oo, Outcome::Decision(want), "{attrs:?}, {delta}");
            assert_eq!(fo, Outcome::Decision(want));
        }
        // The raw score equals the reference score bit for bit.
        let sp = Params {
            reveal: Reveal::Score,
            ..p.clone()
        };
        let model = FixedModel::new(&p.bounds, &weights, -3.75, 0.0).unwrap();
        let reference = model.score_reference(&attrs).unwrap();
        let fi = FiModel::new(model, &[]).unwrap();
        let (oo, _, fo, _) = both_ok(drive(&sp, &attrs, &fi, None, None, rng.random(), |_, _| {}));
        assert_eq!(oo, Outcome::Score(reference.score));
        assert_eq!(fo, Outcome::Score(reference.score));
    }
}

#[test]
fn drivers_over_a_channel_agree_and_count_bytes() {
    let p = params(32, Reveal::Decision, 50);
    let mut rng = ChaCha20Rng::seed_from_u64(51);
    let model = random_model(&mut rng, &p);
    let attrs = random_attrs(&mut rng, &p);
    let want = ideal(&p, &attrs, &model).unwrap();
    let (mut a, mut b) = channel::pair();
    let p2 = p.clone();
    let t = std::thread::spawn(move || {
        let mut r = ChaCha20Rng::seed_from_u64(52);
        let (first, ot) = fi_over(&mut b, &p2, &model, None, &mut r).unwrap();
        let (second, _) = fi_over(&mut b, &p2, &model, Some(ot), &mut r).unwrap();
        (first, second)
    });
    let mut r = ChaCha20Rng::seed_from_u64(53);
    let (first, ot) = owner_over(&mut a, &p, &attrs, None, &mut r).unwrap();
    let cold = a.bytes_sent() + a.bytes_received();
    let (second, _) = owner_over(&mut a, &p, &attrs, Some(ot), &mut r).unwrap();
    let warm = a.bytes_sent() + a.bytes_received() - cold;
    assert_eq!(t.join().unwrap(), (want, want));
    assert_eq!((first, second), (want, want));
    // Warm: the matrix (16 bytes per padded OT) and the corrections (8 per product OT) dominate.
    let ots = p.ots();
    let floor = (16 * ots + 8 * 64 * 32) as u64;
    assert!(
        warm >= floor && warm < floor + 16 * 1024,
        "warm bytes {warm}"
    );
    // Cold adds the base OTs: 32 bytes from the FI, 64 per base OT from the owner.
    assert!(cold >= warm + 32 + 64 * 128, "cold {cold}, warm {warm}");
}

/// Flips one bit of the `index`-th message of type `tag` (in either direction).
fn flip(tag: Tag, byte: usize) -> impl FnMut(bool, &mut Vec<u8>) {
    let mut done = false;
    move |_, m: &mut Vec<u8>| {
        if !done && m.last() == Some(&(tag as u8)) {
            // Within the body (the type byte is last).
            let i = byte.min(m.len().saturating_sub(2));
            m[i] ^= 0x10;
            done = true;
        }
    }
}

#[test]
fn every_tampered_message_type_aborts_or_changes_nothing() {
    let mut rng = ChaCha20Rng::seed_from_u64(60);
    let tags = [
        Tag::BaseSender,
        Tag::BaseReceiver,
        Tag::Matrix,
        Tag::Challenge,
        Tag::Response,
        Tag::Corrections,
        Tag::Garbled,
        Tag::Flips,
        Tag::Labels,
        Tag::OutputLabels,
        Tag::Decoding,
    ];
    for reveal in [
        Reveal::Decision,
        Reveal::Bands { k: 4 },
        Reveal::DecisionReasons { k: 2 },
    ] {
        let p = params(5, reveal, 61);
        for tag in tags {
            let mut aborted = 0;
            for trial in 0..12 {
                let model = random_model(&mut rng, &p);
                let attrs = random_attrs(&mut rng, &p);
                let want = ideal(&p, &attrs, &model).unwrap();
                let byte = rng.random_range(0..64usize) + trial;
                let (o, f) = drive(
                    &p,
                    &attrs,
                    &model,
                    None,
                    None,
                    rng.random(),
                    flip(tag, byte),
                );
                // Never a wrong output, on either side.
                if let Some(Ok((out, _))) = &o {
                    assert_eq!(*out, want, "owner accepted a wrong output, {tag:?}");
                }
                if let Some(Ok((out, _))) = &f {
                    assert_eq!(*out, want, "FI accepted a wrong output, {tag:?}");
                }
                let ok = matches!(o, Some(Ok(_))) && matches!(f, Some(Ok(_)));
                if !ok {
                    aborted += 1;
                }
            }
            // Every type but the matrix is covered by a check that always fires; a matrix bit in a column where
            // Δ is 0 changes nothing, so about half of those runs complete (correctly).
            if tag == Tag::Matrix {
                assert!(aborted > 0, "matrix tampering never detected");
            } else {
                assert_eq!(aborted, 12, "{tag:?} tampering went unnoticed");
            }
        }
    }
}

#[test]
fn a_modified_output_label_is_rejected_by_the_owner() {
    let p = params(3, Reveal::Decision, 70);
    let mut rng = ChaCha20Rng::seed_from_u64(71);
    let model = random_model(&mut rng, &p);
    let attrs = random_attrs(&mut rng, &p);
    // Bytes 32..48 of the body are the owner's output label.
    let (o, f) = drive(
        &p,
        &attrs,
        &model,
        None,
        None,
        72,
        flip(Tag::OutputLabels, 35),
    );
    match o {
        Some(Err(Error::Gc(gc::Error::Peer(gc::PeerMisbehaved::InvalidOutputLabel {
            index: 0,
        })))) => {}
        other => panic!("expected the label check to fail, got {other:?}"),
    }
    // The FI never got its decoding bits.
    assert!(f.is_none());
}

#[test]
fn a_failed_consistency_check_aborts_the_owner() {
    let p = params(2, Reveal::Decision, 80);
    let mut rng = ChaCha20Rng::seed_from_u64(81);
    let model = random_model(&mut rng, &p);
    let attrs = random_attrs(&mut rng, &p);
    let (o, _) = drive(&p, &attrs, &model, None, None, 82, flip(Tag::Response, 3));
    assert!(matches!(
        o,
        Some(Err(Error::Ot(ot::Error::Peer(
            ot::PeerMisbehaved::ConsistencyCheckFailed
        ))))
    ));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn attribute_values_and_weights_are_absent_from_what_the_peer_receives() {
    let p = params(4, Reveal::Decision, 90);
    let attrs = [37.123_456, 91.5, 12.25, 3.0625];
    let weights = [3.251_7, -2.619_3, 1.477_1, 0.533_9];
    let model = FiModel::new(FixedModel::new(&p.bounds, &weights, 5.0, 1.0).unwrap(), &[]).unwrap();
    let (to_owner, to_fi) = honest_transcript(&p, &attrs, &model, 91);
    let fi_view: Vec<u8> = to_fi.concat();
    let owner_view: Vec<u8> = to_owner.concat();
    for (x, b) in attrs.iter().zip(&p.bounds) {
        let enc = fixed::encode_attribute(*x, *b).unwrap() as u64;
        for j in 0..64 {
            let v = enc << j;
            if v.trailing_zeros() < 40 {
                assert!(
                    !contains(&fi_view, &v.to_le_bytes()),
                    "attribute {x} << {j}"
                );
            }
        }
        assert!(!contains(&fi_view, &x.to_le_bytes()));
    }
    for w in model.model().weights() {
        assert!(!contains(&owner_view, &w.to_le_bytes()), "weight {w}");
        assert!(
            !contains(&owner_view, &(*w as i32).to_le_bytes()),
            "weight {w}"
        );
    }
    for w in weights {
        assert!(!contains(&owner_view, &w.to_le_bytes()));
    }
}

#[test]
fn messages_out_of_order_or_malformed_are_refused() {
    let p = params(2, Reveal::Decision, 100);
    let mut rng = ChaCha20Rng::seed_from_u64(101);
    let model = random_model(&mut rng, &p);
    let attrs = random_attrs(&mut rng, &p);
    for bad in [
        vec![],
        vec![0u8],
        vec![1, 2, 99],
        vec![Tag::Decoding as u8; 40],
    ] {
        let (o, _) = OwnerRun::start(&p, &attrs, None, &mut rng).unwrap();
        let e = o.handle(bad.clone(), &mut rng).unwrap_err();
        assert!(e.is_peer(), "{e}");
        assert!(
            matches!(e, Error::Peer(PeerMisbehaved::Unexpected { .. })),
            "{e}"
        );
        let (f, _) = FiRun::start(&p, &model, None, &mut rng).unwrap();
        let e = f.handle(bad, &mut rng).unwrap_err();
        assert!(
            matches!(e, Error::Peer(PeerMisbehaved::Unexpected { .. })),
            "{e}"
        );
    }
    // A base-OT message of the wrong length.
    let (o, _) = OwnerRun::start(&p, &attrs, None, &mut rng).unwrap();
    let e = o
        .handle(vec![1, 2, 3, Tag::BaseSender as u8], &mut rng)
        .unwrap_err();
    assert!(e.is_peer());
}

#[test]
fn bad_parameters_and_models_are_refused_before_any_message() {
    let mut rng = ChaCha20Rng::seed_from_u64(110);
    let p = params(2, Reveal::Bands { k: 3 }, 111);
    let model = FixedModel::new(&p.bounds, &[1.0, 2.0], 0.0, 0.0).unwrap();
    // Bands need exactly the announced number of ascending thresholds.
    assert!(matches!(
        FiRun::start(
            &p,
            &FiModel::new(model.clone(), &[1.0]).unwrap(),
            None,
            &mut rng
        ),
        Err(Error::Misuse(ApiMisuse::BandCount { got: 1 }))
    ));
    assert!(matches!(
        FiModel::new(model.clone(), &[2.0, 2.0]),
        Err(Error::Misuse(ApiMisuse::BandsNotAscending { index: 1 }))
    ));
    // A model encoded for other bounds.
    let other = params(2, Reveal::Decision, 112);
    let wrong = FixedModel::new(&[Bounds::new(0.0, 1.0); 2], &[1.0, 1.0], 0.0, 0.0).unwrap();
    assert!(matches!(
        FiRun::start(&other, &FiModel::new(wrong, &[]).unwrap(), None, &mut rng),
        Err(Error::Misuse(ApiMisuse::ModelBounds))
    ));
    // Attribute counts and values.
    assert!(matches!(
        OwnerRun::start(&other, &[1.0], None, &mut rng),
        Err(Error::Misuse(ApiMisuse::AttributeCount { got: 1 }))
    ));
    assert!(matches!(
        OwnerRun::start(&other, &[1.0, f64::NAN], None, &mut rng),
        Err(Error::Fixed(_))
    ));
    let none = Params {
        bounds: vec![],
        ..other.clone()
    };
    assert!(none.validate().is_err());
    let many = Params {
        reveal: Reveal::Bands { k: 17 },
        ..other
    };
    assert!(matches!(
        many.validate(),
        Err(Error::Misuse(ApiMisuse::BandCount { got: 16 }))
    ));
}

#[test]
fn bits_revealed() {
    assert_eq!(Reveal::Decision.bits(3), 1.0);
    assert_eq!(Reveal::Bands { k: 4 }.bits(3), 2.0);
    assert_eq!(Reveal::Score.bits(3), 64.0);
    // 3 of 8 attributes: 336 ordered choices, 9 bits, plus the decision.
    assert_eq!(Reveal::DecisionReasons { k: 3 }.bits(8), 10.0);
    // The circuit's output wires: the decision and 3 indices of 4 bits.
    let c = Reveal::DecisionReasons { k: 3 }.circuit(8);
    assert_eq!(c.garbler_outputs().len(), 1 + 3 * 4);
    assert_eq!(c.evaluator_outputs().len(), 1 + 3 * 4);
    assert_eq!(decision_circuit().garbler_outputs().len(), 1);
    assert_eq!(score_circuit().garbler_outputs().len(), 64);
    assert_eq!(score_circuit().and_count(), 63);
}

/// Every state of both sides, fed random messages (random lengths, every type byte, and mutations of the honest
/// message of that step): an error or a step, never a panic.
#[test]
fn random_messages_at_every_step_never_panic() {
    let mut rng = ChaCha20Rng::seed_from_u64(120);
    for reveal in [
        Reveal::Decision,
        Reveal::Bands { k: 3 },
        Reveal::Score,
        Reveal::DecisionReasons { k: 2 },
    ] {
        let p = params(3, reveal, 121);
        let model = random_model(&mut rng, &p);
        let attrs = random_attrs(&mut rng, &p);
        // Record the honest transcript, in the order each side receives it.
        let (to_owner, to_fi) = honest_transcript(&p, &attrs, &model, 122);
        for side_is_owner in [true, false] {
            let honest = if side_is_owner { &to_owner } else { &to_fi };
            for step in 0..honest.len() {
                for trial in 0..24 {
                    let mut bad = match trial % 3 {
                        // Random bytes of a random length, ending in a random type byte.
                        0 => {
                            let len = rng.random_range(0..4096);
                            let mut v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                            v.push(rng.random_range(0..13));
                            v
                        }
                        // The honest message, truncated or extended.
                        1 => {
                            let mut v = honest[step].clone();
                            let tag = v.pop().unwrap_or(0);
                            let keep = rng.random_range(0..=v.len());
                            v.truncate(keep);
                            if rng.random() {
                                v.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>()));
                            }
                            v.push(tag);
                            v
                        }
                        // The honest message with a few random bytes changed.
                        _ => {
                            let mut v = honest[step].clone();
                            for _ in 0..rng.random_range(1..8) {
                                let i = rng.random_range(0..v.len());
                                v[i] = rng.random();
                            }
                            v
                        }
                    };
                    if bad.is_empty() {
                        bad.push(0);
                    }
                    // Replay the honest messages before `step`, then the bad one.
                    let mut r = ChaCha20Rng::seed_from_u64(122);
                    let mut rf = ChaCha20Rng::seed_from_u64(122 ^ 0xf1);
                    if side_is_owner {
                        let (run, _) = OwnerRun::start(&p, &attrs, None, &mut r).unwrap();
                        let mut run = Some(run);
                        for m in &honest[..step] {
                            run = match run.take().map(|x| x.handle(m.clone(), &mut r)) {
                                Some(Ok(OwnerStep::Continue(next, _))) => Some(*next),
                                _ => None,
                            };
                        }
                        let run = run.expect("the honest prefix is accepted");
                        let _ = run.handle(bad, &mut r);
                    } else {
                        let (run, _) = FiRun::start(&p, &model, None, &mut rf).unwrap();
                        let mut run = Some(run);
                        for m in &honest[..step] {
                            run = match run.take().map(|x| x.handle(m.clone(), &mut rf)) {
                                Some(Ok(FiStep::Continue(next, _))) => Some(*next),
                                _ => None,
                            };
                        }
                        let run = run.expect("the honest prefix is accepted");
                        let _ = run.handle(bad, &mut rf);
                    }
                }
            }
        }
    }
}

/// Issue 10, item 8: a modified owner that shifts the labels of its share's top 16 bits and sets its Gilboa
/// input to `2^48` reads a 16-bit weight from the output label of one decision run (65 536 trial evaluations),
/// and makes the FI accept the decision it chose. With the output-label commitments the FI refuses the
/// label (it is neither committed label) before returning it: the run aborts and the owner reads nothing.
#[test]
fn the_extreme_weights_score_exactly() {
    // The largest and the most negative weight the 32-bit range holds, with attributes at their bounds, where
    // the owner's offset correction matters most.
    let top = 2f64.powi(15);
    let weights = [top - 2f64.powi(-16), -top, 1.0];
    let p = params(3, Reveal::Score, 42);
    let model = FixedModel::new(&p.bounds, &weights, 0.25, 0.0).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(43);
    for attrs in [
        [100.0, 100.0, 100.0],
        [0.0, 100.0, 3.5],
        [100.0, 0.0, 0.0],
        [-5.0, 0.0, 7.0],
    ] {
        let reference = model.score_reference(&attrs).unwrap();
        let fi = FiModel::new(model.clone(), &[]).unwrap();
        let (oo, _, fo, _) = both_ok(drive(&p, &attrs, &fi, None, None, rng.random(), |_, _| {}));
        assert_eq!(oo, Outcome::Score(reference.score), "{attrs:?}");
        assert_eq!(fo, Outcome::Score(reference.score), "{attrs:?}");
    }
    // With reasons too (per-attribute shares carry the correction).
    let rp = params(3, Reveal::DecisionReasons { k: 2 }, 44);
    let declined = FixedModel::new(&rp.bounds, &weights, 0.0, 1e9).unwrap();
    let attrs = [10.0, 90.0, 50.0];
    let want = reference_reasons(&declined, &rp, &attrs, 2);
    let fi = FiModel::new(declined, &[]).unwrap();
    let (oo, _, fo, _) = both_ok(drive(&rp, &attrs, &fi, None, None, 45, |_, _| {}));
    assert_eq!((oo, fo), (want, want));
}

#[test]
fn a_modified_owner_cannot_read_a_weight_from_the_output_label() {
    const BITS: usize = 16;
    let p = Params {
        session: sid(90),
        bounds: vec![Bounds::new(0.0, 1.0)],
        reveal: Reveal::Decision,
    };
    // Weight 0.8125 (53 248 at scale 2^16); bias = threshold, so the FI's share is u + w·2^48 exactly.
    let weight = 0.8125;
    let model = FiModel::new(
        FixedModel::new(&p.bounds, &[weight], 0.5, 0.5).unwrap(),
        &[],
    )
    .unwrap();
    let w = model.model().weights()[0] as u64;
    assert_eq!(w, 53_248);
    // The honest decision is "approve" (0.8125 · 1 + 0.5 ≥ 0.5); the owner makes it "decline".
    let hostile = Arc::new(Mutex::new(HostileOwner::new(BITS, false)));
    let (o, f) = drive_with(
        &p,
        &[1.0],
        &model,
        None,
        None,
        91,
        Some(hostile.clone()),
        |_, _| {},
    );
    let h = hostile.lock().unwrap();
    let read = h.recover(&p.circuit());
    let fi = f.map(|r| r.map(|(outcome, _)| outcome));
    let fi_refused = matches!(&fi, Some(Err(Error::AfterFiInputs(e)))
        if matches!(**e, Error::Gc(gc::Error::Peer(gc::PeerMisbehaved::UncommittedOutputLabel { index: 0 }))));
    assert!(
        fi_refused && h.returned.is_none() && read.is_empty() && !matches!(o, Some(Ok(_))),
        "a modified owner read weights {read:?} (the FI's weight is {w}) from one decision run; the FI \
         returned a label: {}, and its run ended with {fi:?}",
        h.returned.is_some()
    );
}

// ---------------------------------------------------------------------------------------------------------
// Reasons
// ---------------------------------------------------------------------------------------------------------

/// The reasons of a decline, computed here independently of `fixed` and of the circuit: contributions and
/// best contributions in `i128` from the encoded weights and attributes, sorted by shortfall (largest
/// first), ties to the lower index.
fn reference_reasons(model: &FixedModel, p: &Params, attrs: &[f64], k: usize) -> Outcome {
    let reference = model.score_reference(attrs).unwrap();
    if reference.decision {
        return Outcome::DecisionReasons {
            approve: true,
            reasons: Reasons::default(),
        };
    }
    let mut ranked: Vec<(i128, usize)> = (0..p.n())
        .map(|i| {
            let b = p.bounds[i];
            let w = model.weights()[i] as i128;
            let x = fixed::encode_attribute(attrs[i], b).unwrap() as i128;
            let lo = fixed::encode_attribute(b.lo, b).unwrap() as i128;
            let hi = fixed::encode_attribute(b.hi, b).unwrap() as i128;
            let shortfall = (w * lo).max(w * hi) - w * x;
            assert!(shortfall >= 0);
            (shortfall, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let indices: Vec<usize> = ranked.iter().take(k).map(|&(_, i)| i).collect();
    Outcome::DecisionReasons {
        approve: false,
        reasons: Reasons::new(&indices).unwrap(),
    }
}

/// A model and attributes with many ties: weights and attributes from a few values, so equal shortfalls
/// are common; the threshold near the score, so about half the runs decline.
fn tied_case(rng: &mut ChaCha20Rng, p: &Params) -> (FixedModel, Vec<f64>) {
    let weights: Vec<f64> = (0..p.n())
        .map(|_| [-2.0, -1.0, 0.0, 1.0, 1.0, 2.0][rng.random_range(0..6)])
        .collect();
    let attrs: Vec<f64> = p
        .bounds
        .iter()
        .map(|b| match rng.random_range(0..4) {
            0 => b.lo,
            1 => b.hi,
            2 => 0.0,
            _ => rng.random_range(0..4) as f64,
        })
        .collect();
    let score: f64 = weights.iter().zip(&attrs).map(|(w, x)| w * x).sum();
    let threshold = score + rng.random_range(-3..=3) as f64;
    (
        FixedModel::new(&p.bounds, &weights, 0.0, threshold).unwrap(),
        attrs,
    )
}

#[test]
fn reasons_equal_the_plaintext_reference_ties_included() {
    let mut rng = ChaCha20Rng::seed_from_u64(200);
    let (mut declines, mut ties) = (0, 0);
    for trial in 0..120u32 {
        let n = [1usize, 2, 3, 5, 8, 17][trial as usize % 6];
        let k = rng.random_range(1..=n.min(4)) as u32;
        let p = params(n, Reveal::DecisionReasons { k }, 201);
        let (model, attrs) = if trial % 3 == 0 {
            let m = random_model(&mut rng, &p);
            (m.model().clone(), random_attrs(&mut rng, &p))
        } else {
            tied_case(&mut rng, &p)
        };
        let want = reference_reasons(&model, &p, &attrs, k as usize);
        let fi = FiModel::new(model.clone(), &[]).unwrap();
        assert_eq!(
            ideal(&p, &attrs, &fi).unwrap(),
            want,
            "ideal, trial {trial}"
        );
        let (oo, _, fo, _) = both_ok(drive(&p, &attrs, &fi, None, None, rng.random(), |_, _| {}));
        assert_eq!(oo, want, "owner, trial {trial}");
        assert_eq!(fo, want, "FI, trial {trial}");
        if let Outcome::DecisionReasons {
            approve: false,
            reasons,
        } = want
        {
            declines += 1;
            let x = model.encode_attributes(&attrs).unwrap();
            let s = fixed::shortfalls(&model, &x);
            let mut sorted = s.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                ties += 1;
            }
            assert_eq!(reasons.indices().len(), k as usize);
        }
    }
    // The cases exercise what they claim to.
    assert!(
        declines >= 30 && ties >= 15,
        "declines {declines}, ties {ties}"
    );
}

#[test]
fn reasons_runs_equal_the_ideal_functionality_cold_and_warm() {
    let mut rng = ChaCha20Rng::seed_from_u64(210);
    for (n, k) in [(1usize, 1u32), (4, 4), (9, 2), (33, 3)] {
        let p = params(n, Reveal::DecisionReasons { k }, 211);
        let (mut os, mut fs) = (None, None);
        for run in 0..4 {
            let model = random_model(&mut rng, &p);
            let attrs = random_attrs(&mut rng, &p);
            let want = ideal(&p, &attrs, &model).unwrap();
            let (oo, o_ot, fo, f_ot) = both_ok(drive(
                &p,
                &attrs,
                &model,
                os.take(),
                fs.take(),
                rng.random(),
                |_, _| {},
            ));
            assert_eq!(oo, want, "owner, n = {n}, k = {k}, run {run}");
            assert_eq!(fo, want, "FI, n = {n}, k = {k}, run {run}");
            (os, fs) = (Some(o_ot), Some(f_ot));
        }
    }
}

/// On an approval every reason wire decodes to all ones, whatever the ranking would have been: two
/// approvals with opposite rankings give the FI (and the owner) the same output bits.
#[test]
fn an_approval_reveals_no_reasons() {
    let n = 5;
    let k = 3;
    let c = reasons_circuit(n, k);
    let mut rng = ChaCha20Rng::seed_from_u64(220);
    let mut seen: Option<Vec<bool>> = None;
    for trial in 0..200 {
        // Random shares of the decision sum with a non-negative sum (an approval), random shortfalls.
        let sum = rng.random_range(0..(1u64 << 62));
        let a: u64 = rng.random();
        let b = sum.wrapping_sub(a);
        let mut garbler = u64_to_bits(a, 64);
        let mut evaluator = u64_to_bits(b, 64);
        for _ in 0..n {
            let (ai, si): (u64, u64) = (rng.random(), rng.random_range(0..1 << (trial % 60 + 1)));
            garbler.extend(u64_to_bits(ai, 64));
            evaluator.extend(u64_to_bits(si.wrapping_add(ai), 64));
        }
        let out = c.eval_plain(&garbler, &evaluator).unwrap();
        assert_eq!(out.garbler, out.evaluator);
        assert!(out.evaluator.iter().all(|&bit| bit), "trial {trial}");
        assert_eq!(seen.get_or_insert(out.evaluator.clone()), &out.evaluator);
    }
    // And through the protocol: an approval's outcome names nothing.
    let p = params(4, Reveal::DecisionReasons { k: 2 }, 221);
    let model = FixedModel::new(&p.bounds, &[1.0, -1.0, 2.0, 0.5], 10.0, -1e6).unwrap();
    let fi = FiModel::new(model, &[]).unwrap();
    let attrs = [0.0, 50.0, -1.0, 3.0];
    let (oo, _, fo, _) = both_ok(drive(&p, &attrs, &fi, None, None, 222, |_, _| {}));
    let approval = Outcome::DecisionReasons {
        approve: true,
        reasons: Reasons::default(),
    };
    assert_eq!((oo, fo), (approval, approval));
}

/// Whatever the FI inputs (any shares, any "shortfalls"), the circuit's output is an approval with all-ones
/// reasons or a decline naming `k` distinct attributes: so the run reveals at most the counted bits.
#[test]
fn the_reasons_circuit_names_distinct_attributes_for_any_fi_input() {
    let mut rng = ChaCha20Rng::seed_from_u64(230);
    for (n, k) in [(1usize, 1usize), (2, 2), (3, 2), (7, 4), (16, 4), (17, 3)] {
        let c = reasons_circuit(n, k);
        let width = reason_index_bits(n);
        for trial in 0..60 {
            let garbler: Vec<bool> = (0..c.garbler_inputs().len())
                .map(|_| rng.random())
                .collect();
            // Random words, and words drawn from a few values so that ties are frequent.
            let evaluator: Vec<bool> = if trial % 2 == 0 {
                (0..c.evaluator_inputs().len())
                    .map(|_| rng.random())
                    .collect()
            } else {
                (0..1 + n)
                    .flat_map(|_| u64_to_bits(rng.random_range(0..3u64) << 63, 64))
                    .collect()
            };
            let out = c.eval_plain(&garbler, &evaluator).unwrap().evaluator;
            let outcome = Outcome::from_bits(Reveal::DecisionReasons { k: k as u32 }, n, &out)
                .expect("always well formed");
            // And equal to the plaintext definition on the same words.
            let word = |bits: &[bool], i: usize| bits_to_u64(&bits[64 * i..64 * (i + 1)]);
            let approve =
                fixed::decision_of_sum(word(&garbler, 0).wrapping_add(word(&evaluator, 0)));
            let shortfalls: Vec<u64> = (1..=n)
                .map(|i| word(&evaluator, i).wrapping_sub(word(&garbler, i)))
                .collect();
            let want = if approve {
                Reasons::default()
            } else {
                Reasons::new(&fixed::worst_reasons(&shortfalls, k)).unwrap()
            };
            assert_eq!(
                outcome,
                Outcome::DecisionReasons {
                    approve,
                    reasons: want
                },
                "n = {n}, k = {k}, width {width}"
            );
        }
    }
}

#[test]
fn reason_counts_and_sizes_are_checked() {
    let mut rng = ChaCha20Rng::seed_from_u64(240);
    for (n, k) in [
        (2usize, 3u32),
        (3, 5),
        (3, 0),
        (MAX_REASON_ATTRIBUTES + 1, 1),
    ] {
        let p = params(n, Reveal::DecisionReasons { k }, 241);
        assert!(
            matches!(
                p.validate(),
                Err(Error::Misuse(ApiMisuse::ReasonCount { .. }))
            ),
            "{k} of {n}"
        );
        let attrs = vec![0.0; n];
        assert!(OwnerRun::start(&p, &attrs, None, &mut rng).is_err());
    }
    // The largest garbled message fits the transport limit the parameters give.
    for (n, k) in [(1usize, 1u32), (8, 4), (MAX_REASON_ATTRIBUTES, 4)] {
        let p = params(n, Reveal::DecisionReasons { k }, 242);
        let c = p.circuit();
        let garbled = 32
            + 8
            + 16 * c.garbler_inputs().len()
            + 64 * c.garbler_outputs().len()
            + 32 * c.and_count();
        assert!(garbled < p.max_message_bytes(), "{k} of {n}");
    }
    // Reasons indices: at most four, distinct.
    assert!(Reasons::new(&[1, 2, 3, 4, 5]).is_none());
    assert!(Reasons::new(&[1, 1]).is_none());
    assert_eq!(Reasons::new(&[3, 0]).unwrap().indices(), &[3, 0]);
}

/// A modified owner that flips the FI's decoding bits: an approval with reasons or a repeated or
/// out-of-range attribute is refused (after the FI's inputs: the FI flags the owner), but a well-formed
/// change goes through, as for any output: the FI has no output integrity against the owner. The owner's
/// own outcome stays the circuit's.
#[test]
fn a_modified_owner_cannot_make_the_fi_accept_malformed_reasons() {
    let p = params(3, Reveal::DecisionReasons { k: 2 }, 250);
    // Weights 1, 1, 1; attributes 0, 10, 5 within [-i-1, 100+i]: a decline, shortfalls 100, 91, 97.
    let model = FixedModel::new(&p.bounds, &[1.0, 1.0, 1.0], 0.0, 1000.0).unwrap();
    let fi = FiModel::new(model, &[]).unwrap();
    let attrs = [0.0, 10.0, 5.0];
    let want = Outcome::DecisionReasons {
        approve: false,
        reasons: Reasons::new(&[0, 2]).unwrap(),
    };
    // Outputs: decision, then two 2-bit indices (0 = 00, 2 = 01 LSB first).
    let run = |flip: Vec<bool>| {
        let mut ro = ChaCha20Rng::seed_from_u64(251);
        let mut rf = ChaCha20Rng::seed_from_u64(252);
        let (mut o, to_fi) = OwnerRun::start(&p, &attrs, None, &mut ro).unwrap();
        o.flip_decoding = flip;
        let (f, to_owner) = FiRun::start(&p, &fi, None, &mut rf).unwrap();
        let (mut owner, mut fi) = (Some(o), Some(f));
        let (mut to_owner, mut to_fi) = (VecDeque::from(to_owner), VecDeque::from(to_fi));
        let (mut oo, mut fo) = (None, None);
        while let Some(m) = to_owner.pop_front() {
            match owner.take().unwrap().handle(m, &mut ro).unwrap() {
                OwnerStep::Continue(next, out) => {
                    to_fi.extend(out);
                    owner = Some(*next);
                }
                OwnerStep::Done { outcome, send, .. } => {
                    to_fi.extend(send);
                    oo = Some(outcome);
                }
            }
            while let Some(m) = to_fi.pop_front() {
                match fi.take().unwrap().handle(m, &mut rf) {
                    Ok(FiStep::Continue(next, out)) => {
                        to_owner.extend(out);
                        fi = Some(*next);
                    }
                    Ok(FiStep::Done { outcome, .. }) => fo = Some(Ok(outcome)),
                    Err(e) => fo = Some(Err(e)),
                }
            }
        }
        (oo.unwrap(), fo.unwrap())
    };
    let (oo, fo) = run(vec![]);
    assert_eq!((oo, fo.unwrap()), (want, want));
    let malformed = |r: Result<Outcome, Error>| matches!(r, Err(Error::AfterFiInputs(e)) if matches!(*e, Error::Peer(PeerMisbehaved::MalformedReasons)));
    // Flip the decision only: an "approval" whose reasons are not all ones.
    let (oo, fo) = run(vec![true]);
    assert_eq!(oo, want);
    assert!(malformed(fo), "an approval with reasons was accepted");
    // Make the second reason 0 too (01 -> 00): attribute 0 twice.
    let (_, fo) = run(vec![false, false, false, true, false]);
    assert!(malformed(fo), "a repeated reason was accepted");
    // Make the first reason 3 (00 -> 11): not one of the 3 attributes.
    let (_, fo) = run(vec![false, true, true, false, false]);
    assert!(malformed(fo), "an out-of-range reason was accepted");
    // Swap the reasons (00,01 -> 01,00): well formed, so the FI cannot tell.
    let (oo, fo) = run(vec![false, false, true, false, true]);
    assert_eq!(oo, want);
    assert_eq!(
        fo.unwrap(),
        Outcome::DecisionReasons {
            approve: false,
            reasons: Reasons::new(&[2, 0]).unwrap()
        }
    );
}

/// The FI refuses to return an output label on a reason wire that is not a committed one, and the owner
/// refuses a changed label on any reason wire.
#[test]
fn reason_wire_labels_are_checked_both_ways() {
    let p = params(4, Reveal::DecisionReasons { k: 2 }, 199);
    let mut rng = ChaCha20Rng::seed_from_u64(261);
    let outputs = p.circuit().garbler_outputs().len();
    assert_eq!(outputs, 1 + 2 * 3);
    for wire in 1..outputs {
        let model = random_model(&mut rng, &p);
        let attrs = random_attrs(&mut rng, &p);
        // Owner side: bytes 32 + 16·wire.. of the output-label message are the label of that wire.
        let (o, f) = drive(
            &p,
            &attrs,
            &model,
            None,
            None,
            rng.random(),
            flip(Tag::OutputLabels, 32 + 16 * wire + 3),
        );
        match o {
            Some(Err(Error::Gc(gc::Error::Peer(gc::PeerMisbehaved::InvalidOutputLabel {
                index,
            })))) => assert_eq!(index, wire),
            other => panic!("wire {wire}: expected the label check to fail, got {other:?}"),
        }
        assert!(f.is_none());
        // FI side: a changed commitment of that wire (in the garbled message, after the digest, tweak
        // and the owner's input labels) makes the FI refuse to return the label.
        // Both hashes of the wire change, so whichever label the FI gets is uncommitted.
        let c = p.circuit();
        let at = 32 + 8 + 16 * c.garbler_inputs().len() + 64 * wire;
        let (o, f) = drive(
            &p,
            &attrs,
            &model,
            None,
            None,
            rng.random(),
            |_, m: &mut Vec<u8>| {
                if m.last() == Some(&(Tag::Garbled as u8)) {
                    m[at + 5] ^= 0x10;
                    m[at + 32 + 5] ^= 0x10;
                }
            },
        );
        assert!(!matches!(o, Some(Ok(_))));
        match f {
            Some(Err(Error::AfterFiInputs(e))) => assert!(
                matches!(
                    *e,
                    Error::Gc(gc::Error::Peer(
                        gc::PeerMisbehaved::UncommittedOutputLabel { .. }
                    ))
                ),
                "wire {wire}: {e}"
            ),
            other => panic!("wire {wire}: expected the FI to refuse, got {other:?}"),
        }
    }
}

#[test]
fn a_runs_circuit_is_built_once_and_the_least_recent_is_dropped() {
    // The kept circuit is the one the reveal builds.
    let r = Reveal::DecisionReasons { k: 2 };
    assert_eq!(super::circuit_for(r, 9).digest(), r.circuit(9).digest());
    assert_ne!(
        super::circuit_for(r, 9).digest(),
        super::circuit_for(r, 10).digest()
    );
    // The policy, on a private instance (the process-wide one is shared with other tests).
    let mut kept = super::Recent::new();
    for k in 0..3 {
        kept.put(k, k * 10, 3);
    }
    assert_eq!(kept.get(&0), Some(0));
    kept.put(3, 30, 3);
    assert_eq!(kept.get(&1), None, "the least recently used went");
    assert_eq!(
        (kept.get(&0), kept.get(&2), kept.get(&3)),
        (Some(0), Some(20), Some(30))
    );
    kept.put(2, 21, 3);
    assert_eq!(kept.get(&2), Some(21));
}
