//! Tests of the OT stack: each protocol against its ideal version over many inputs with fixed seeds, strict
//! parsing, tampering with every message, and a receiver that cheats on its choice bits.

use super::kos::{self, padded_rows, Receiver, Sender, BASE_OTS};
use super::msgs::*;
use super::{
    base, ideal, matrix, ApiMisuse, CotReceiver, CotSender, Error, PeerMisbehaved, SessionId,
};
use crate::block::Block;
use crate::channel::{self, Channel};
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::traits::Identity;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SID: SessionId = SessionId([7; 32]);

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn random_bits(n: usize, rng: &mut impl RngCore) -> Vec<bool> {
    (0..n).map(|_| rng.random::<bool>()).collect()
}

fn is_peer(e: &Error, want: &PeerMisbehaved) -> bool {
    matches!(e, Error::Peer(p) if p == want)
}

// ----- relation checkers, used on real and ideal outputs alike ---------------------------------------------

fn assert_cot(s: &CotSender, r: &CotReceiver) {
    assert_eq!(s.len(), r.len());
    assert_eq!(s.first_index(), r.first_index());
    let d = s.delta();
    for (j, ((q, t), &c)) in s.q().iter().zip(r.t()).zip(r.choices()).enumerate() {
        assert_eq!(*q ^ *t, d.and_bit(c), "COT relation fails at {j}");
    }
}

fn assert_random_ot(pairs: &[[Block; 2]], got: &[Block], choices: &[bool]) {
    assert_eq!(pairs.len(), got.len());
    for (j, ((p, g), &c)) in pairs.iter().zip(got).zip(choices).enumerate() {
        assert_eq!(*g, p[c as usize], "random OT: wrong message at {j}");
        assert_ne!(
            *g,
            p[1 - c as usize],
            "random OT: both messages equal at {j}"
        );
    }
}

fn assert_chosen(msgs: &[[Block; 2]], got: &[Block], choices: &[bool]) {
    assert_eq!(msgs.len(), got.len());
    for (j, ((m, g), &c)) in msgs.iter().zip(got).zip(choices).enumerate() {
        assert_eq!(*g, m[c as usize], "chosen OT: wrong message at {j}");
    }
}

fn assert_u64(x: &[u64], y: &[u64], deltas: &[u64], choices: &[bool]) {
    assert_eq!(x.len(), y.len());
    for j in 0..x.len() {
        let want = if choices[j] {
            x[j].wrapping_add(deltas[j])
        } else {
            x[j]
        };
        assert_eq!(y[j], want, "Z_2^64 OT: wrong output at {j}");
    }
}

/// Checks every derived functionality on a COT batch (consumes it): random, chosen and Z_2^64 OT on three
/// parts of the batch.
fn assert_derived(s: CotSender, r: CotReceiver, rng: &mut impl RngCore) {
    let n = s.len();
    let (a, b) = (n / 3, 2 * n / 3);
    let (s1, rest) = s.split_at(a).unwrap();
    let (s2, s3) = rest.split_at(b - a).unwrap();
    let (r1, rest) = r.split_at(a).unwrap();
    let (r2, r3) = rest.split_at(b - a).unwrap();
    assert_eq!(
        (s2.first_index(), s3.first_index()),
        (s1.first_index() + a as u64, s1.first_index() + b as u64)
    );

    let c1 = r1.choices().to_vec();
    assert_random_ot(&s1.into_random(), &r1.into_random(), &c1);

    let msgs: Vec<[Block; 2]> = (0..s2.len())
        .map(|_| [Block::random(rng), Block::random(rng)])
        .collect();
    let c2 = r2.choices().to_vec();
    let wire = ChosenMsg::from_bytes(&s2.send_chosen(&msgs).unwrap().to_bytes()).unwrap();
    assert_chosen(&msgs, &r2.receive_chosen(&wire).unwrap(), &c2);

    let deltas: Vec<u64> = (0..s3.len()).map(|_| rng.next_u64()).collect();
    let c3 = r3.choices().to_vec();
    let (x, corr) = s3.send_correlated_u64(&deltas).unwrap();
    let wire = CorrectionsU64::from_bytes(&corr.to_bytes()).unwrap();
    assert_u64(&x, &r3.receive_correlated_u64(&wire).unwrap(), &deltas, &c3);
}

// ----- driving both parties by hand --------------------------------------------------------------------------

/// Which message to modify in transit.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Matrix,
    Challenge,
    Response,
}

type Tamper<'a> = &'a dyn Fn(Stage, &mut Vec<u8>);

fn no_tamper(_: Stage, _: &mut Vec<u8>) {}

/// One extension, every message through its byte encoding, optionally modified in transit.
fn extend_by_hand(
    sender: Sender,
    receiver: Receiver,
    choices: &[bool],
    seed: u64,
    tamper: Tamper,
) -> (Result<(Sender, CotSender), Error>, Receiver, CotReceiver) {
    let mut rng = rng(seed);
    let ext = sender.extend(choices.len()).unwrap();
    let (rext, u) = receiver.extend(choices, &mut rng).unwrap();
    let mut bytes = u.into_bytes();
    tamper(Stage::Matrix, &mut bytes);
    let u = match MatrixMsg::from_bytes(bytes) {
        Ok(u) => u,
        Err(e) => panic!("tampered matrix did not parse: {e}"),
    };
    let (mut check, ch) = match ext.receive_matrix(u, &mut rng) {
        Ok(x) => x,
        Err(e) => {
            let (r, _, cot) = rext.receive_challenge(&ChallengeMsg { seed: [0; 16] });
            return (Err(e), r, cot);
        }
    };
    let mut bytes = ch.to_bytes();
    tamper(Stage::Challenge, &mut bytes);
    let ch = ChallengeMsg::from_bytes(&bytes).unwrap();
    let (receiver, resp, cot_r) = rext.receive_challenge(&ch);
    check.precompute();
    let mut bytes = resp.to_bytes();
    tamper(Stage::Response, &mut bytes);
    let resp = ResponseMsg::from_bytes(&bytes).unwrap();
    (check.receive_response(&resp), receiver, cot_r)
}

/// Sender and receiver from real base OTs run by hand, all messages through bytes.
fn setup_by_hand(seed: u64) -> (Sender, Receiver) {
    let mut rng = rng(seed);
    let (s_setup, to_fi) = Sender::setup(SID, &mut rng).unwrap();
    let (r_setup, to_owner) = Receiver::setup(SID, &mut rng).unwrap();
    let to_fi = BaseReceiverMsg::from_bytes(&to_fi.to_bytes()).unwrap();
    let to_owner = BaseSenderMsg::from_bytes(&to_owner.to_bytes()).unwrap();
    (s_setup.finish(&to_owner), r_setup.finish(&to_fi).unwrap())
}

/// Sender and receiver from ideal base OTs (fast; for the many-input tests).
fn setup_ideal(seed: u64) -> (Sender, Receiver, Vec<[Block; 2]>) {
    let mut rng = rng(seed);
    let delta = Block::random(&mut rng);
    let keys: Vec<[Block; 2]> = (0..BASE_OTS)
        .map(|_| [Block::random(&mut rng), Block::random(&mut rng)])
        .collect();
    let chosen: Vec<Block> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| k[((delta.0 >> i) & 1) as usize])
        .collect();
    (
        Sender::from_base(delta, &chosen).unwrap(),
        Receiver::from_base(&keys).unwrap(),
        keys,
    )
}

// ----- base OT -----------------------------------------------------------------------------------------------

#[test]
fn base_ot_matches_ideal_random_ot() {
    for seed in 0..4 {
        let mut rng = rng(100 + seed);
        let n = [1, 3, 128, 200][seed as usize];
        let choices = random_bits(n, &mut rng);
        let (s, a) = base::Sender::new(SID, n, &mut rng).unwrap();
        let (r, pairs) = base::Receiver::new(SID, &choices, &mut rng).unwrap();
        let pairs = BaseReceiverMsg::from_bytes(&pairs.to_bytes()).unwrap();
        let a = BaseSenderMsg::from_bytes(&a.to_bytes()).unwrap();
        let keys = s.finish(&pairs).unwrap();
        let got = r.finish(&a);
        assert_random_ot(&keys, &got, &choices);
        // The ideal functionality satisfies the same checker.
        let (ik, ig) = ideal::random_ot(&choices, &mut rng);
        assert_random_ot(&ik, &ig, &choices);
    }
}

#[test]
fn base_ot_keys_are_bound_to_the_session() {
    let mut rng = rng(5);
    let choices = random_bits(8, &mut rng);
    let (s, a) = base::Sender::new(SID, 8, &mut rng).unwrap();
    let (r, pairs) = base::Receiver::new(SessionId([8; 32]), &choices, &mut rng).unwrap();
    let keys = s.finish(&pairs).unwrap();
    let got = r.finish(&a);
    for ((k, g), &c) in keys.iter().zip(&got).zip(&choices) {
        assert_ne!(k[c as usize], *g);
    }
}

#[test]
fn base_ot_rejects_identity_non_canonical_and_wrong_lengths() {
    let identity = RistrettoPoint::identity().compress().to_bytes();
    assert_eq!(identity, [0u8; 32]);
    let what = "base-OT sender message";
    assert_eq!(
        BaseSenderMsg::from_bytes(&identity),
        Err(PeerMisbehaved::IdentityPoint { what, index: 0 })
    );
    // Non-canonical: a field element >= p, and a "negative" s (odd encoding), are both rejected.
    let mut too_big = [0xffu8; 32];
    too_big[31] = 0x7f;
    let mut odd = [0u8; 32];
    odd[0] = 1;
    for bad in [too_big, odd, [0xff; 32]] {
        assert_eq!(
            BaseSenderMsg::from_bytes(&bad),
            Err(PeerMisbehaved::NonCanonicalPoint { what, index: 0 })
        );
    }
    for len in [0, 31, 33, 64] {
        assert!(matches!(
            BaseSenderMsg::from_bytes(&vec![0u8; len]),
            Err(PeerMisbehaved::WrongLength { got, .. }) if got == len
        ));
    }

    // In the receiver's pairs: every position is checked, and reported.
    let mut rng = rng(6);
    let (_, pairs) = base::Receiver::new(SID, &random_bits(4, &mut rng), &mut rng).unwrap();
    let good = pairs.to_bytes();
    let what = "base-OT receiver message";
    for index in [0usize, 1, 6, 7] {
        let mut b = good.clone();
        b[32 * index..32 * (index + 1)].copy_from_slice(&identity);
        assert_eq!(
            BaseReceiverMsg::from_bytes(&b),
            Err(PeerMisbehaved::IdentityPoint { what, index })
        );
        b[32 * index..32 * (index + 1)].copy_from_slice(&too_big);
        assert_eq!(
            BaseReceiverMsg::from_bytes(&b),
            Err(PeerMisbehaved::NonCanonicalPoint { what, index })
        );
    }
    for len in [0, 32, 63, 65, good.len() - 1] {
        assert!(matches!(
            BaseReceiverMsg::from_bytes(&good[..len]),
            Err(PeerMisbehaved::WrongLength { .. })
        ));
    }

    // A count other than the sender's is refused by the state machine.
    let (s, _) = base::Sender::new(SID, 5, &mut rng).unwrap();
    let pairs = BaseReceiverMsg::from_bytes(&good).unwrap();
    assert!(matches!(
        s.finish(&pairs),
        Err(Error::Peer(PeerMisbehaved::WrongLength { .. }))
    ));
    assert!(matches!(
        base::Sender::new(SID, 0, &mut rng),
        Err(Error::Misuse(ApiMisuse::BadCount { .. }))
    ));
    assert!(matches!(
        base::Receiver::new(SID, &[], &mut rng),
        Err(Error::Misuse(ApiMisuse::BadCount { .. }))
    ));
}

/// A base-OT message modified in transit either fails to parse or leaves the parties with keys that do not
/// match, which the extension's check then catches: never a silently wrong correlation.
#[test]
fn tampered_base_ot_messages_abort() {
    let mut rng0 = rng(9);
    let positions: Vec<usize> = (0..6).map(|_| rng0.random_range(0..8)).collect();
    for (case, bit) in positions.into_iter().enumerate() {
        for target in ["A", "pairs"] {
            let mut rng = rng(200 + case as u64);
            let (s_setup, to_fi) = Sender::setup(SID, &mut rng).unwrap();
            let (r_setup, to_owner) = Receiver::setup(SID, &mut rng).unwrap();
            let (mut a, mut p) = (to_owner.to_bytes(), to_fi.to_bytes());
            if target == "A" {
                a[case * 5] ^= 1 << bit;
            } else {
                let at = rng.random_range(0..p.len());
                p[at] ^= 1 << bit;
            }
            let parsed = BaseSenderMsg::from_bytes(&a)
                .and_then(|a| BaseReceiverMsg::from_bytes(&p).map(|p| (a, p)));
            let Ok((a, p)) = parsed else {
                continue; // rejected at parsing: an abort
            };
            let sender = s_setup.finish(&a);
            let receiver = match r_setup.finish(&p) {
                Ok(r) => r,
                Err(e) => {
                    assert!(matches!(
                        e,
                        Error::Peer(PeerMisbehaved::IdentityPoint { .. })
                    ));
                    continue;
                }
            };
            let choices = random_bits(300, &mut rng);
            let (res, _, _) = extend_by_hand(sender, receiver, &choices, case as u64, &no_tamper);
            assert!(
                is_peer(&res.unwrap_err(), &PeerMisbehaved::ConsistencyCheckFailed),
                "case {case} {target}"
            );
        }
    }
}

// ----- extension against the ideal functionality ------------------------------------------------------------

#[test]
fn extension_matches_ideal_cot_for_many_sizes_and_seeds() {
    let sizes = [
        1usize, 2, 63, 64, 65, 127, 128, 129, 1000, 2048, 2049, 4100, 10_000,
    ];
    for (k, &m) in sizes.iter().enumerate() {
        let seed = 1000 + k as u64;
        let (s, r, _) = setup_ideal(seed);
        let mut rng = rng(seed);
        let choices = random_bits(m, &mut rng);
        let (res, _, cot_r) = extend_by_hand(s, r, &choices, seed, &no_tamper);
        let (_, cot_s) = res.unwrap();
        assert_eq!(cot_r.choices(), &choices[..]);
        assert_cot(&cot_s, &cot_r);
        assert_derived(cot_s, cot_r, &mut rng);

        // Same checks on the ideal functionality with the same inputs.
        let (is, ir) = ideal::cot(Block::random(&mut rng), &choices, 0, &mut rng);
        assert_cot(&is, &ir);
        assert_derived(is, ir, &mut rng);
    }
}

#[test]
fn repeated_extensions_continue_indices_and_stay_correct() {
    let (mut s, mut r) = setup_by_hand(1);
    let mut rng = rng(2);
    let mut seen = std::collections::HashSet::new();
    let mut next = 0u64;
    for m in [100usize, 1, 3000, 128] {
        let choices = random_bits(m, &mut rng);
        let (res, r2, cot_r) = extend_by_hand(s, r, &choices, m as u64, &no_tamper);
        let (s2, cot_s) = res.unwrap();
        assert_eq!(cot_s.first_index(), next);
        next += m as u64;
        assert_eq!((s2.next_index(), r2.next_index()), (next, next));
        assert_cot(&cot_s, &cot_r);
        for q in cot_s.q() {
            assert!(seen.insert(q.0), "a correlation repeated across extensions");
        }
        assert_derived(cot_s, cot_r, &mut rng);
        (s, r) = (s2, r2);
    }
}

/// A state kept at rest between extensions continues exactly where it stopped: the same Δ, fresh indices and
/// fresh PRG blocks (no correlation repeats), the relations hold; a state of the other side's kind, or cut
/// short, or with bytes added, is refused rather than read.
#[test]
fn a_state_at_rest_continues_the_extension_where_it_stopped() {
    let (s, r) = setup_by_hand(11);
    let mut rng = rng(12);
    let choices = random_bits(700, &mut rng);
    let (res, r, cot_r) = extend_by_hand(s, r, &choices, 1, &no_tamper);
    let (s, cot_s) = res.unwrap();
    let mut seen: std::collections::HashSet<u128> = cot_s.q().iter().map(|q| q.0).collect();
    assert_cot(&cot_s, &cot_r);
    let (s_rest, r_rest) = (s.to_rest(), r.to_rest());
    let delta = s.delta();
    drop((s, r));
    let s = Sender::from_rest(&s_rest).unwrap();
    let r = Receiver::from_rest(&r_rest).unwrap();
    assert_eq!(
        (s.delta(), s.next_index(), r.next_index()),
        (delta, 700, 700)
    );
    // The restored pair's state at rest is the one it came from.
    assert_eq!((&*s.to_rest(), &*r.to_rest()), (&*s_rest, &*r_rest));
    let choices = random_bits(300, &mut rng);
    let (res, _, cot_r) = extend_by_hand(s, r, &choices, 2, &no_tamper);
    let (_, cot_s) = res.unwrap();
    assert_eq!(cot_s.first_index(), 700);
    assert_cot(&cot_s, &cot_r);
    for q in cot_s.q() {
        assert!(
            seen.insert(q.0),
            "a correlation repeated after a state at rest"
        );
    }
    assert!(Sender::from_rest(&r_rest).is_err() && Receiver::from_rest(&s_rest).is_err());
    assert!(Sender::from_rest(&s_rest[..s_rest.len() - 1]).is_err());
    let mut longer = s_rest.to_vec();
    longer.push(0);
    assert!(Sender::from_rest(&longer).is_err());
    assert!(Receiver::from_rest(&[]).is_err());
}

/// Review finding: a sender's state at rest continued twice (the owner's store restored from a backup) at the
/// same OT index, with other choices from the FI, gave the FI the owner's product input (the two runs'
/// corrections summed to `2x`). Each run is keyed for its own session id, so the two extensions draw unrelated
/// streams and the sum tells nothing; without the per-run keying it is exactly `2x` (checked first).
#[test]
fn a_state_continued_twice_reveals_nothing_when_each_run_has_its_own_stream() {
    let x: u64 = 123_456_789;
    let deltas: Vec<u64> = (0..64).map(|j| x << j).collect();
    let twice = |keyed: bool| {
        let (s, r) = setup_by_hand(21);
        let (s_rest, r_rest) = (s.to_rest(), r.to_rest());
        let mut sum = 0u64;
        for (run, choice) in [(1u8, false), (2u8, true)] {
            let (s, r) = (
                Sender::from_rest(&s_rest).unwrap(),
                Receiver::from_rest(&r_rest).unwrap(),
            );
            let sid = SessionId([run; 32]);
            let (s, r) = if keyed {
                (s.for_run(&sid), r.for_run(&sid))
            } else {
                (s, r)
            };
            let (res, _, cot_r) = extend_by_hand(s, r, &[choice; 64], u64::from(run), &no_tamper);
            let (_, cot_s) = res.expect("an honest extension passes the check");
            assert_cot(&cot_s, &cot_r);
            let (_, y) = cot_s.send_correlated_u64(&deltas).unwrap();
            sum = sum.wrapping_add(y.values().next().unwrap());
        }
        sum
    };
    assert_eq!(twice(false), 2 * x, "the attack this test guards against");
    assert_ne!(twice(true), 2 * x);
}

#[test]
fn ideal_functionalities_hold_their_relations_and_refuse_misuse() {
    let mut rng = rng(3);
    for n in [0usize, 1, 17, 500] {
        let choices = random_bits(n, &mut rng);
        let msgs: Vec<[Block; 2]> = (0..n)
            .map(|_| [Block::random(&mut rng), Block::random(&mut rng)])
            .collect();
        assert_chosen(&msgs, &ideal::chosen_ot(&msgs, &choices).unwrap(), &choices);
        let deltas: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
        let (x, y) = ideal::correlated_u64(&deltas, &choices, &mut rng).unwrap();
        assert_u64(&x, &y, &deltas, &choices);
    }
    assert!(matches!(
        ideal::chosen_ot(&[[Block::ZERO; 2]], &[]),
        Err(Error::Misuse(ApiMisuse::LengthMismatch { .. }))
    ));
    assert!(matches!(
        ideal::correlated_u64(&[1, 2], &[true], &mut rng),
        Err(Error::Misuse(ApiMisuse::LengthMismatch { .. }))
    ));
}

#[test]
fn api_misuse_is_an_error_not_a_panic() {
    let (s, r, keys) = setup_ideal(4);
    let mut rng = rng(4);
    assert!(matches!(
        Sender::from_base(Block::ZERO, &[Block::ZERO; 3]),
        Err(Error::Misuse(_))
    ));
    assert!(matches!(
        Receiver::from_base(&keys[..127]),
        Err(Error::Misuse(_))
    ));
    assert!(matches!(
        s.extend(0),
        Err(Error::Misuse(ApiMisuse::BadCount { .. }))
    ));
    assert!(matches!(
        r.extend(&[], &mut rng),
        Err(Error::Misuse(ApiMisuse::BadCount { .. }))
    ));
    let (s, r, _) = setup_ideal(4);
    assert!(matches!(
        s.extend(kos::MAX_OTS + 1),
        Err(Error::Misuse(ApiMisuse::BadCount { .. }))
    ));
    drop(r);

    let (cs, cr) = ideal::cot(Block(5), &random_bits(10, &mut rng), 0, &mut rng);
    assert!(matches!(cs.split_at(11), Err(Error::Misuse(_))));
    let (cs, _) = ideal::cot(Block(5), &random_bits(10, &mut rng), 0, &mut rng);
    assert!(matches!(
        cs.send_chosen(&[[Block::ZERO; 2]; 9]),
        Err(Error::Misuse(_))
    ));
    let (cs, _) = ideal::cot(Block(5), &random_bits(10, &mut rng), 0, &mut rng);
    assert!(matches!(
        cs.send_correlated_u64(&[0; 11]),
        Err(Error::Misuse(_))
    ));
    // A correction message with the wrong count is the peer's fault.
    let short = ChosenMsg::from_bytes(&[0u8; 32 * 9]).unwrap();
    assert!(matches!(
        cr.receive_chosen(&short),
        Err(Error::Peer(PeerMisbehaved::WrongLength { .. }))
    ));
    let (_, cr) = ideal::cot(Block(5), &random_bits(10, &mut rng), 0, &mut rng);
    let long = CorrectionsU64::from_bytes(&[0u8; 8 * 11]).unwrap();
    assert!(matches!(
        cr.receive_correlated_u64(&long),
        Err(Error::Peer(PeerMisbehaved::WrongLength { .. }))
    ));
}

#[test]
fn extension_messages_parse_strictly() {
    for len in [0usize, 1, 2047, 2049, 4095] {
        assert!(matches!(
            MatrixMsg::from_bytes(vec![0; len]),
            Err(PeerMisbehaved::WrongLength { .. })
        ));
    }
    assert_eq!(MatrixMsg::from_bytes(vec![0; 4096]).unwrap().rows(), 256);
    for len in [0usize, 15, 17] {
        assert!(matches!(
            ChallengeMsg::from_bytes(&vec![0; len]),
            Err(PeerMisbehaved::WrongLength { .. })
        ));
    }
    for len in [
        0usize,
        RESPONSE_BYTES - 1,
        RESPONSE_BYTES + 1,
        RESPONSE_BYTES + 16,
    ] {
        assert!(matches!(
            ResponseMsg::from_bytes(&vec![0; len]),
            Err(PeerMisbehaved::WrongLength { .. })
        ));
    }
    for len in [1usize, 31, 33] {
        assert!(ChosenMsg::from_bytes(&vec![0; len]).is_err());
    }
    for len in [1usize, 7, 9] {
        assert!(CorrectionsU64::from_bytes(&vec![0; len]).is_err());
    }
    // Round trips.
    let mut rng = rng(8);
    let mut bytes = vec![0u8; RESPONSE_BYTES];
    rng.fill_bytes(&mut bytes);
    assert_eq!(ResponseMsg::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    let mut bytes = vec![0u8; 96];
    rng.fill_bytes(&mut bytes);
    assert_eq!(ChosenMsg::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    assert_eq!(
        CorrectionsU64::from_bytes(&bytes).unwrap().to_bytes(),
        bytes
    );

    // A matrix of a well-formed size but for a different extension size is refused.
    let (s, _, _) = setup_ideal(8);
    let ext = s.extend(1000).unwrap();
    let wrong = MatrixMsg::from_bytes(vec![0u8; 16 * (padded_rows(1000) + 128)]).unwrap();
    assert!(matches!(
        ext.receive_matrix(wrong, &mut rng),
        Err(Error::Peer(PeerMisbehaved::WrongLength { .. }))
    ));
}

// ----- tampering with the extension's messages ---------------------------------------------------------------

/// Flips one bit of the matrix in column `i`. Where `Δ_i = 1` the check must fail; where `Δ_i = 0` the sender
/// does not use column `i` at all (`q^i = G(k_i^0)`), so by design nothing changes and the outputs must still
/// be correct (never a wrong output).
#[test]
fn flipped_matrix_bit_aborts_or_changes_nothing() {
    let m = 3000;
    let mut aborted = 0;
    for case in 0..12u64 {
        let (s, r, _) = setup_ideal(300 + case);
        let delta = s.delta();
        let mut rng = rng(300 + case);
        let column = rng.random_range(0..BASE_OTS);
        let row = rng.random_range(0..padded_rows(m));
        let words = padded_rows(m) / 64;
        let choices = random_bits(m, &mut rng);
        let flip = move |stage: Stage, b: &mut Vec<u8>| {
            if let Stage::Matrix = stage {
                b[8 * matrix::word_index(words, column, row / 64) + (row % 64) / 8] ^=
                    1 << (row % 8);
            }
        };
        let (res, _, cot_r) = extend_by_hand(s, r, &choices, case, &flip);
        if (delta.0 >> column) & 1 == 1 {
            assert!(is_peer(
                &res.unwrap_err(),
                &PeerMisbehaved::ConsistencyCheckFailed
            ));
            aborted += 1;
        } else {
            let (_, cot_s) = res.expect("a flip in a column with Δ_i = 0 is invisible");
            assert_cot(&cot_s, &cot_r);
        }
    }
    assert!(aborted > 0, "the fixed seeds must exercise the abort path");
}

#[test]
fn flipped_challenge_or_response_bit_aborts() {
    let m = 1500;
    let cases: Vec<(Stage, usize)> = vec![
        (Stage::Challenge, 0),
        (Stage::Challenge, 77),
        (Stage::Challenge, 127),
        (Stage::Response, 0),             // x
        (Stage::Response, 127),           // x
        (Stage::Response, 128),           // t_0
        (Stage::Response, 128 * 64 + 5),  // t_63
        (Stage::Response, 129 * 128 - 1), // t_127
    ];
    for (k, (target, bit)) in cases.into_iter().enumerate() {
        let (s, r, _) = setup_ideal(400 + k as u64);
        let mut rng = rng(400 + k as u64);
        let choices = random_bits(m, &mut rng);
        let flip = move |stage: Stage, b: &mut Vec<u8>| {
            if std::mem::discriminant(&stage) == std::mem::discriminant(&target) {
                b[bit / 8] ^= 1 << (bit % 8);
            }
        };
        let (res, _, _) = extend_by_hand(s, r, &choices, k as u64, &flip);
        // Flipping a bit of x is caught in every column with Δ_i = 1 (Δ = 0 has probability 2^-128).
        assert!(
            is_peer(&res.unwrap_err(), &PeerMisbehaved::ConsistencyCheckFailed),
            "{target:?} bit {bit}"
        );
    }
}

/// An extension long enough that the receiver splits its pass after the challenge over threads
/// ([`kos::PARALLEL_CHECK_CHUNKS`] chunks and more, the last one ragged): the parts' check hashes add up to the
/// sender's, the correlation matches, and a flipped challenge bit, which changes every part's keys, still aborts.
/// (On a machine with one core the pass is not split, and this is the single-thread case again.)
#[test]
fn a_check_hashed_on_several_threads_still_verifies() {
    let m = kos::PARALLEL_CHECK_CHUNKS * 2048 + 5000;
    let (s, r, _) = setup_ideal(880);
    let mut rng = rng(880);
    let choices = random_bits(m, &mut rng);
    let (res, r, cot_r) = extend_by_hand(s, r, &choices, 880, &no_tamper);
    let (s, cot_s) = res.unwrap();
    assert_cot(&cot_s, &cot_r);
    let flip = |stage: Stage, b: &mut Vec<u8>| {
        if let Stage::Challenge = stage {
            b[3] ^= 0x10;
        }
    };
    let (res, _, _) = extend_by_hand(s, r, &choices, 881, &flip);
    assert!(is_peer(
        &res.unwrap_err(),
        &PeerMisbehaved::ConsistencyCheckFailed
    ));
}

/// Shifted correlations made on the fly are the listed ones: `x_i·2^j` on OT `i·bits + j`, summed per `i`; and
/// the receiver gets `x_j + r_j·δ_j` from them.
#[test]
fn shifted_correlations_are_the_listed_ones() {
    let (s, r, _) = setup_ideal(890);
    let mut rng = rng(890);
    let (x, bits) = ([7u64, u64::MAX, 1 << 40], 32);
    let n = x.len() * bits;
    let choices = random_bits(n + 9, &mut rng);
    let ext = s.extend(choices.len()).unwrap();
    let (rext, u) = r.extend(&choices, &mut rng).unwrap();
    let (mut check, ch) = ext.receive_matrix(u, &mut rng).unwrap();
    let deltas: Vec<u64> = x
        .iter()
        .flat_map(|&x| (0..bits).map(move |j| x << j))
        .collect();
    let listed = check.prepare_correlated_u64(&deltas, bits).unwrap();
    let shifted = check.prepare_shifted_u64(&x, bits).unwrap();
    assert!(
        check.prepare_shifted_u64(&[0; 4], bits).is_err(),
        "more OTs than the extension has"
    );
    assert!(
        check.prepare_shifted_u64(&x, 0).is_err()
            && check.prepare_shifted_u64(&x[..1], 65).is_err()
    );
    let (_, resp, cot_r) = rext.receive_challenge(&ch);
    let (_, cot_s) = check.receive_response(&resp).unwrap();
    let (cot_s, _) = cot_s.split_at(n).unwrap();
    let (sums, corrections) = shifted.send(&cot_s).unwrap();
    assert_eq!(
        listed.send(&cot_s).unwrap(),
        (sums.clone(), corrections.clone())
    );
    let (products, _) = cot_r.split_at(n).unwrap();
    let got = products
        .pads_u64(n)
        .receive_sums_u64(&corrections, bits)
        .unwrap();
    for (i, (&x, (&mine, &theirs))) in x.iter().zip(sums.iter().zip(&got)).enumerate() {
        let chosen = (0..bits)
            .filter(|&j| choices[i * bits + j])
            .fold(0u64, |acc, j| acc.wrapping_add(x << j));
        assert_eq!(theirs, mine.wrapping_add(chosen), "attribute {i}");
    }
}

// ----- a receiver that cheats on its choice bits -------------------------------------------------------------

/// A malicious receiver with both base-OT keys of every column. Column `i` uses its own choice vector
/// `x^i` (`words` words incl. padding); the response claims `x* = h(claimed)` and, for each column, answers as
/// if `Δ_i = guess[i]`: `t_i = h(t^i) ⊕ guess_i·(h(x^i) ⊕ x*)`, which passes column `i` iff
/// `guess_i = Δ_i` or `h(x^i) = x*`.
fn cheating_extension(
    sender: Sender,
    keys: &[[Block; 2]],
    m: usize,
    columns: &[Vec<u64>],
    claimed: &[u64],
    guess: &[bool],
    seed: u64,
) -> Result<(Sender, CotSender), Error> {
    let mut rng = rng(seed);
    let rows = padded_rows(m);
    let words = rows / 64;
    let mut bytes = vec![0u8; 16 * rows];
    let mut t_cols = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let (g0, g1) = (matrix::Prg::new(k[0]), matrix::Prg::new(k[1]));
        let (mut t0, mut t1) = (vec![0u64; words], vec![0u64; words]);
        g0.fill(0, &mut t0);
        g1.fill(0, &mut t1);
        for w in 0..words {
            let at = 8 * matrix::word_index(words, i, w);
            bytes[at..at + 8].copy_from_slice(&(t0[w] ^ t1[w] ^ columns[i][w]).to_le_bytes());
        }
        t_cols.push(t0);
    }
    let ext = sender.extend(m)?;
    let (check, ch) = ext.receive_matrix(MatrixMsg::from_bytes(bytes)?, &mut rng)?;
    let chis = matrix::check_keys(ch.seed, matrix::chunks(words));
    let hasher = matrix::ColumnHasher::new(rows / 128);
    let x_star = hasher.words(claimed, &chis);
    let mut t = Box::new([0u128; BASE_OTS]);
    for i in 0..BASE_OTS {
        let hx = hasher.words(&columns[i], &chis);
        let mask = 0u128.wrapping_sub(guess[i] as u128);
        t[i] = hasher.words(&t_cols[i], &chis) ^ ((hx ^ x_star) & mask);
    }
    check.receive_response(&ResponseMsg { x: x_star, t })
}

fn random_words(words: usize, rng: &mut impl RngCore) -> Vec<u64> {
    (0..words).map(|_| rng.next_u64()).collect()
}

/// The cheater's machinery is right: used honestly (same vector in every column) it passes.
#[test]
fn cheating_receiver_harness_passes_when_honest() {
    let m = 700;
    let (s, _, keys) = setup_ideal(500);
    let mut rng = rng(500);
    let r = random_words(padded_rows(m) / 64, &mut rng);
    let columns = vec![r.clone(); BASE_OTS];
    let guess = random_bits(BASE_OTS, &mut rng);
    let (_, cot) = cheating_extension(s, &keys, m, &columns, &r, &guess, 1).unwrap();
    assert_eq!(cot.len(), m);
}

/// Inconsistent choice bits in one column where `Δ_i = 1`, answered as an honest receiver would (guessing
/// `Δ_i = 0`): always caught (up to the 2^-128 chance that the hash of the difference vanishes).
#[test]
fn inconsistent_column_is_caught_when_the_guess_is_wrong() {
    let m = 2000;
    for case in 0..8u64 {
        let (s, _, keys) = setup_ideal(600 + case);
        let delta = s.delta();
        let mut rng = rng(600 + case);
        let r = random_words(padded_rows(m) / 64, &mut rng);
        let mut columns = vec![r.clone(); BASE_OTS];
        let col = (0..BASE_OTS).find(|&i| (delta.0 >> i) & 1 == 1).unwrap();
        let row = rng.random_range(0..m);
        columns[col][row / 64] ^= 1 << (row % 64);
        let res = cheating_extension(s, &keys, m, &columns, &r, &[false; BASE_OTS], case);
        assert!(is_peer(
            &res.unwrap_err(),
            &PeerMisbehaved::ConsistencyCheckFailed
        ));
    }
}

/// Inconsistent choice vectors in 64 columns, with a uniformly random guess of `Δ_i` for each: the cheater
/// passes only if all 64 guesses are right, probability 2^-64 per trial (plus 2^-111 for hash collisions).
/// Over 16 trials with fixed seeds every one must fail; the chance this test fails spuriously is below
/// 16 · 2^-64. (The bound is tight: see the next test, where a right guess passes.)
#[test]
fn inconsistent_choices_in_many_columns_fail_with_overwhelming_probability() {
    let m = 1024;
    for trial in 0..16u64 {
        let (s, _, keys) = setup_ideal(700 + trial);
        let mut rng = rng(700 + trial);
        let words = padded_rows(m) / 64;
        let r = random_words(words, &mut rng);
        let mut columns = vec![r.clone(); BASE_OTS];
        let mut cols: Vec<usize> = (0..BASE_OTS).collect();
        for k in 0..64 {
            let j = rng.random_range(k..BASE_OTS);
            cols.swap(k, j);
        }
        for &c in &cols[..64] {
            columns[c] = random_words(words, &mut rng);
        }
        let guess = random_bits(BASE_OTS, &mut rng);
        let res = cheating_extension(s, &keys, m, &columns, &r, &guess, trial);
        assert!(
            is_peer(&res.unwrap_err(), &PeerMisbehaved::ConsistencyCheckFailed),
            "trial {trial}"
        );
    }
}

/// The leakage the analysis allows, made concrete: a cheater inconsistent in one column passes exactly when its
/// guess of that `Δ_i` is right (probability 1/2 for a real cheater, who does not know `Δ`). Passing thus
/// "confirms" one bit of `Δ`, an event of probability 2^-1; that is the KOS/SoftSpokenOT accounting.
#[test]
fn passing_with_an_inconsistent_column_requires_guessing_delta() {
    let m = 900;
    for case in 0..6u64 {
        let (s, _, keys) = setup_ideal(800 + case);
        let delta = s.delta();
        let mut rng = rng(800 + case);
        let words = padded_rows(m) / 64;
        let r = random_words(words, &mut rng);
        let mut columns = vec![r.clone(); BASE_OTS];
        let col = rng.random_range(0..BASE_OTS);
        columns[col] = random_words(words, &mut rng);
        let mut guess = [false; BASE_OTS];
        let right = case % 2 == 0;
        guess[col] = ((delta.0 >> col) & 1 == 1) == right;
        let res = cheating_extension(s, &keys, m, &columns, &r, &guess, case);
        assert_eq!(res.is_ok(), right, "case {case}");
    }
}

// ----- over the in-memory channel, two threads ---------------------------------------------------------------

#[test]
fn full_extension_round_trips_through_the_channel_with_two_threads() {
    let m = 1 << 16;
    let (mut owner, mut fi) = channel::pair();
    let owner_thread = std::thread::spawn(move || {
        let mut rng = rng(900);
        let sender = kos::sender_setup_over(&mut owner, SID, &mut rng)?;
        let (sender, cot) = kos::sender_extend_over(&mut owner, sender, m, &mut rng)?;
        // Send chosen messages over the first 1000 OTs, keep the COTs for checking.
        let msgs: Vec<[Block; 2]> = (0..1000)
            .map(|_| [Block::random(&mut rng), Block::random(&mut rng)])
            .collect();
        let q = cot.q().to_vec();
        let delta = cot.delta();
        let (first, _) = cot.split_at(1000)?;
        owner.send(first.send_chosen(&msgs)?.to_bytes())?;
        Ok::<_, Error>((
            sender.next_index(),
            delta,
            q,
            msgs,
            owner.bytes_sent(),
            owner.bytes_received(),
        ))
    });
    let mut rng = rng(901);
    let receiver = kos::receiver_setup_over(&mut fi, SID, &mut rng).unwrap();
    let choices = random_bits(m, &mut rng);
    let (receiver, cot) = kos::receiver_extend_over(&mut fi, receiver, &choices, &mut rng).unwrap();
    let t = cot.t().to_vec();
    let (first, _) = cot.split_at(1000).unwrap();
    let chosen = ChosenMsg::from_bytes(&fi.recv().unwrap()).unwrap();
    let got = first.receive_chosen(&chosen).unwrap();

    let (next, delta, q, msgs, sent, received) = owner_thread.join().unwrap().unwrap();
    assert_eq!((next, receiver.next_index()), (m as u64, m as u64));
    for j in 0..m {
        assert_eq!(
            q[j] ^ t[j],
            delta.and_bit(choices[j]),
            "COT relation at {j}"
        );
    }
    assert_chosen(&msgs, &got, &choices[..1000]);
    // Bytes on the wire: base OTs (128 pairs, one point), the matrix, the challenge, the response, corrections.
    assert_eq!(sent, (128 * PAIR_BYTES + 16 + 32 * 1000) as u64);
    assert_eq!(
        received,
        (POINT_BYTES + 16 * padded_rows(m) + RESPONSE_BYTES) as u64
    );
    assert_eq!((fi.bytes_sent(), fi.bytes_received()), (received, sent));
}

#[test]
fn a_vanished_peer_is_a_channel_error() {
    let (mut owner, fi) = channel::pair();
    drop(fi);
    let mut rng = rng(902);
    assert!(matches!(
        kos::sender_setup_over(&mut owner, SID, &mut rng),
        Err(Error::Channel(_))
    ));
}

// ----- the matrix in parts, and recycled buffers -------------------------------------------------------------

/// What [`extend_in_parts_by_hand`] returns: the sender's result, the receiver, its outputs, the part sizes.
type InParts = (
    Result<(Sender, CotSender), Error>,
    Receiver,
    CotReceiver,
    Vec<usize>,
);

/// One extension with the matrix sent in parts of `part_chunks` chunks, every part through its bytes; `flip`
/// (column, row) flips one bit of the matrix in transit. Returns the part sizes too.
fn extend_in_parts_by_hand(
    sender: Sender,
    receiver: Receiver,
    choices: &[bool],
    seed: u64,
    part_chunks: usize,
    flip: Option<(usize, usize)>,
) -> InParts {
    let mut rng = rng(seed);
    let mut ext = sender.extend(choices.len()).unwrap();
    let mut parts = receiver.extend_in_parts(choices, &mut rng).unwrap();
    let mut whole = Vec::new();
    let mut sizes = Vec::new();
    while let Some(u) = parts.next_part(part_chunks) {
        let b = u.into_bytes();
        sizes.push(b.len());
        whole.extend_from_slice(&b);
    }
    let rext = parts.finish().unwrap();
    if let Some((column, row)) = flip {
        let words = padded_rows(choices.len()) / 64;
        whole[8 * matrix::word_index(words, column, row / 64) + (row % 64) / 8] ^= 1 << (row % 8);
    }
    let mut at = 0;
    let mut done = None;
    for (k, &len) in sizes.iter().enumerate() {
        let u = MatrixMsg::from_bytes(whole[at..at + len].to_vec()).unwrap();
        at += len;
        match ext.receive_part(u, &mut rng).unwrap() {
            kos::SenderPart::More(next) => {
                assert!(
                    k + 1 < sizes.len(),
                    "the last part must complete the matrix"
                );
                ext = next;
            }
            kos::SenderPart::Complete(check, ch) => {
                assert_eq!(
                    k + 1,
                    sizes.len(),
                    "only the last part completes the matrix"
                );
                done = Some((check, ch));
                break;
            }
        }
    }
    let (mut check, ch) = done.expect("the parts complete the matrix");
    let ch = ChallengeMsg::from_bytes(&ch.to_bytes()).unwrap();
    let (receiver, resp, cot_r) = rext.receive_challenge(&ch);
    check.precompute();
    let resp = ResponseMsg::from_bytes(&resp.to_bytes()).unwrap();
    (check.receive_response(&resp), receiver, cot_r, sizes)
}

#[test]
fn the_matrix_in_parts_is_the_whole_matrix_and_gives_the_same_correlation() {
    // 40_000 OTs: 40_192 rows with the padding, 628 words per column, 20 chunks (19 whole, one of 20 words).
    let m = 40_000;
    for part_chunks in [1usize, 3, kos::PART_CHUNKS, usize::MAX] {
        let (s, r, _) = setup_ideal(700);
        let mut rng_a = rng(701);
        let choices = random_bits(m, &mut rng_a);
        let (res, _, cot_r, sizes) =
            extend_in_parts_by_hand(s, r, &choices, 702, part_chunks, None);
        let (_, cot_s) = res.unwrap();
        assert_eq!(cot_r.choices(), &choices[..]);
        assert_cot(&cot_s, &cot_r);
        let chunks = 20usize;
        assert_eq!(sizes.len(), chunks.div_ceil(part_chunks.min(chunks)));
        assert_eq!(sizes.iter().sum::<usize>(), 16 * padded_rows(m));

        // The same receiver state and randomness sending the matrix whole: the same bytes, the same outputs.
        let (s, r, _) = setup_ideal(700);
        let (res, _, cot_r2) = extend_by_hand(s, r, &choices, 702, &no_tamper);
        let (_, cot_s2) = res.unwrap();
        assert_eq!(cot_s2.q(), cot_s.q(), "parts of {part_chunks} chunks");
        assert_eq!(cot_r2.t(), cot_r.t());
    }
}

#[test]
fn a_part_that_splits_a_chunk_or_overruns_the_matrix_is_refused() {
    let m = 40_000; // 20 chunks per column, the last of 20 words
    let (s, _, _) = setup_ideal(710);
    let mut rng = rng(711);
    let chunk = 8 * BASE_OTS * 32;
    // Half a chunk more than one chunk.
    let ext = s.extend(m).unwrap();
    let e = ext
        .receive_part(
            MatrixMsg::from_bytes(vec![0; chunk + 2048]).unwrap(),
            &mut rng,
        )
        .unwrap_err();
    assert!(is_peer(
        &e,
        &PeerMisbehaved::WrongLength {
            what: "extension matrix part",
            expected: chunk,
            got: chunk + 2048,
        }
    ));
    // 19 whole chunks, then another whole one where only 20 words per column remain.
    let (s, _, _) = setup_ideal(710);
    let ext = s.extend(m).unwrap();
    let kos::SenderPart::More(ext) = ext
        .receive_part(
            MatrixMsg::from_bytes(vec![0; 19 * chunk]).unwrap(),
            &mut rng,
        )
        .unwrap()
    else {
        panic!("19 of 20 chunks do not complete the matrix");
    };
    let e = ext
        .receive_part(MatrixMsg::from_bytes(vec![0; chunk]).unwrap(), &mut rng)
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Peer(PeerMisbehaved::WrongLength { what: "extension matrix part", expected, got })
            if expected == 8 * BASE_OTS * 20 && got == chunk
    ));
    // The whole-matrix entry point still wants exactly the whole matrix.
    let (s, _, _) = setup_ideal(710);
    let e = s
        .extend(m)
        .unwrap()
        .receive_matrix(
            MatrixMsg::from_bytes(vec![0; 19 * chunk]).unwrap(),
            &mut rng,
        )
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Peer(PeerMisbehaved::WrongLength {
            what: "extension matrix",
            ..
        })
    ));
    // The receiver may not go on to the challenge with parts unsent.
    let (_, r, _) = setup_ideal(710);
    let choices = random_bits(m, &mut rng);
    let mut parts = r.extend_in_parts(&choices, &mut rng).unwrap();
    assert!(parts.next_part(1).is_some());
    assert!(matches!(
        parts.finish(),
        Err(Error::Misuse(ApiMisuse::MatrixNotSent))
    ));
}

/// A bit flipped in a part other than the last (processed as it arrives, before the challenge is sent) aborts
/// where `Δ_i = 1` and changes nothing where `Δ_i = 0`, as for the whole matrix.
#[test]
fn flipped_bit_in_an_early_part_aborts_or_changes_nothing() {
    let m = 40_000;
    let mut aborted = 0;
    for case in 0..12u64 {
        let (s, r, _) = setup_ideal(720 + case);
        let delta = s.delta();
        let mut rng = rng(720 + case);
        let column = rng.random_range(0..BASE_OTS);
        let row = rng.random_range(0..32_768); // within the first two parts of 8 chunks
        let choices = random_bits(m, &mut rng);
        let (res, _, cot_r, sizes) =
            extend_in_parts_by_hand(s, r, &choices, case, 8, Some((column, row)));
        assert_eq!(sizes.len(), 3);
        if (delta.0 >> column) & 1 == 1 {
            assert!(is_peer(
                &res.unwrap_err(),
                &PeerMisbehaved::ConsistencyCheckFailed
            ));
            aborted += 1;
        } else {
            let (_, cot_s) = res.expect("a flip in a column with Δ_i = 0 is invisible");
            assert_cot(&cot_s, &cot_r);
        }
    }
    assert!(aborted > 0, "the fixed seeds must exercise the abort path");
}

#[test]
fn recycled_buffers_are_reused_and_the_next_extension_is_still_correct() {
    let (mut s, mut r) = setup_by_hand(730);
    let mut rng = rng(731);
    let mut next = 0u64;
    let mut buffers: Option<(*const Block, *const Block)> = None;
    for (k, m) in [50_000usize, 50_000, 20_000, 50_000]
        .into_iter()
        .enumerate()
    {
        let choices = random_bits(m, &mut rng);
        let (res, mut r2, cot_r, _) =
            extend_in_parts_by_hand(s, r, &choices, 732 + k as u64, 4, None);
        let (mut s2, cot_s) = res.unwrap();
        assert_eq!((cot_s.first_index(), cot_r.first_index()), (next, next));
        next += m as u64;
        assert_cot(&cot_s, &cot_r);
        let here = (cot_s.q().as_ptr(), cot_r.t().as_ptr());
        if let Some(before) = buffers {
            // Every batch here fits the first one's buffers, so they are the ones written.
            assert_eq!(here, before, "extension {k} wrote into fresh buffers");
        }
        buffers = Some(here);
        s2.recycle(cot_s);
        r2.recycle(cot_r);
        (s, r) = (s2, r2);
    }
}
