//! Two-party computation building blocks (issue 4, items 5 and 7): 128 Masny-Rindal base OTs with both parties
//! on one thread (`base_ot_one_thread`: their summed computation, unlike `duo bench ot`); KOS correlated OT
//! extension at 2^20 with its consistency check, over the in-memory channel on two threads, with and without
//! the base OTs; half-gates garbling and evaluation of a wide layer of 2^18 independent AND gates and of the
//! AES-128 circuit (6400 AND); private scoring (decision) in memory on two threads, warm at n = 32 and
//! n = 1000 attributes and cold (with base OTs) at n = 32. Goals: >= 60 M correlated OTs/s at 2^20 with base
//! OTs excluded (the matrix in parts, output buffers recycled); garbling streamed >= 60 M AND/s on the wide
//! layer; scoring n = 32 warm <= 0.3 ms for the protocol alone, n = 1000 warm <= 2 ms, n = 32 cold <= 6 ms.
//! `duo bench ot|gc|score` measures the same without criterion, except the base OTs, which it times on two
//! threads.
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use duo_protocols::block::Block;
use duo_protocols::channel::{self, Channel};
use duo_protocols::gc::aes_circuit::aes128_circuit;
use duo_protocols::gc::{Bit, Circuit, CircuitBuilder, Delta, Evaluator, Garbler};
use duo_protocols::ot::{base, kos, SessionId};
use duo_protocols::score::{self, Reveal};
use duo_testkit::scoring::Instance;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const EXT_LOG: u32 = 20;
const EXT_OTS: usize = 1 << EXT_LOG;
const WIDE_SIDE: usize = 512; // WIDE_SIDE^2 = 2^18 AND gates
const WIDE_OUTPUTS: usize = 64;

/// The group's defaults: 10 samples, 500 ms of warm-up, 4 s of measurement. They are set on the `Criterion`
/// of `criterion_group!` (below), which then applies the command line, so `--sample-size`, `--warm-up-time` and
/// `--measurement-time` win; a group must not set them itself (a group's setting overrides the command line).
fn defaults() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
}

fn sid(tag: u8) -> SessionId {
    SessionId([tag; 32])
}

fn random_bits(rng: &mut StdRng, n: usize) -> Vec<bool> {
    (0..n).map(|_| rng.random()).collect()
}

/// 128 base OTs, both parties driven by hand in one thread, messages passed as serialized bytes: the sum of
/// both parties' computation, with no overlap and no channel. `duo bench ot` times the same OTs on two threads
/// over a channel (wall time, the parties overlapping), a different figure: hence the names `one_thread` here
/// and "two threads" there.
fn base_ot(c: &mut Criterion) {
    let mut group = c.benchmark_group("base_ot_one_thread");
    let mut rng = StdRng::seed_from_u64(1);
    let choices = random_bits(&mut rng, kos::BASE_OTS);
    group.throughput(Throughput::Elements(kos::BASE_OTS as u64));
    group.bench_function("masny_rindal_128_both_parties", |b| {
        b.iter(|| {
            let (sender, a) = base::Sender::new(sid(1), kos::BASE_OTS, &mut rng).unwrap();
            let a = duo_protocols::ot::msgs::BaseSenderMsg::from_bytes(&a.to_bytes()).unwrap();
            let (receiver, pairs) = base::Receiver::new(sid(1), &choices, &mut rng).unwrap();
            let pairs =
                duo_protocols::ot::msgs::BaseReceiverMsg::from_bytes(&pairs.to_bytes()).unwrap();
            let keys = sender.finish(&pairs).unwrap();
            let chosen = receiver.finish(&a);
            black_box((keys, chosen))
        })
    });
    group.finish();
}

/// One KOS extension of `choices.len()` OTs on two threads over the in-memory channel (the matrix in parts),
/// continuing `state`'s sender and receiver; the outputs are recycled into them, so the next extension writes
/// into memory already mapped.
fn extend_once(state: &mut Option<(kos::Sender, kos::Receiver)>, choices: &[bool], seed: u64) {
    let (sender, receiver) = state.take().expect("a sender and a receiver");
    let (mut ch_s, mut ch_r) = channel::pair();
    *state = Some(thread::scope(|s| {
        let t = s.spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            let (mut r, cot) =
                kos::receiver_extend_over(&mut ch_r, receiver, choices, &mut rng).unwrap();
            r.recycle(black_box(cot));
            r
        });
        let mut rng = StdRng::seed_from_u64(seed ^ 1);
        let (mut s, cot) =
            kos::sender_extend_over(&mut ch_s, sender, choices.len(), &mut rng).unwrap();
        s.recycle(black_box(cot));
        (s, t.join().unwrap())
    }));
}

/// Base OTs plus one extension of `choices.len()` OTs, both on two threads over one in-memory channel.
fn setup_and_extend_once(choices: &[bool], seed: u64) {
    let (mut ch_s, mut ch_r) = channel::pair();
    thread::scope(|s| {
        let t = s.spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            let receiver = kos::receiver_setup_over(&mut ch_r, sid(2), &mut rng).unwrap();
            kos::receiver_extend_over(&mut ch_r, receiver, choices, &mut rng).unwrap()
        });
        let mut rng = StdRng::seed_from_u64(seed ^ 1);
        let sender = kos::sender_setup_over(&mut ch_s, sid(2), &mut rng).unwrap();
        let out = kos::sender_extend_over(&mut ch_s, sender, choices.len(), &mut rng).unwrap();
        black_box((out, t.join().unwrap()));
    });
}

fn ot_extension(c: &mut Criterion) {
    let mut group = c.benchmark_group("kos_cot");
    let mut rng = StdRng::seed_from_u64(2);
    let choices = random_bits(&mut rng, EXT_OTS);

    // Base OTs once, outside the timed loop: the sender (owner) is the base-OT receiver with choices Δ.
    let delta = Block::random(&mut rng);
    let delta_bits: Vec<bool> = (0..kos::BASE_OTS)
        .map(|i| (delta.0 >> i) & 1 == 1)
        .collect();
    let (bs, a) = base::Sender::new(sid(3), kos::BASE_OTS, &mut rng).unwrap();
    let (br, pairs) = base::Receiver::new(sid(3), &delta_bits, &mut rng).unwrap();
    let receiver_keys = bs.finish(&pairs).unwrap();
    let sender_keys = br.finish(&a);

    let mut state = Some((
        kos::Sender::from_base(delta, &sender_keys).unwrap(),
        kos::Receiver::from_base(&receiver_keys).unwrap(),
    ));
    group.throughput(Throughput::Elements(EXT_OTS as u64));
    let mut seed = 0u64;
    group.bench_function(format!("extend_2^{EXT_LOG}_no_base"), |b| {
        b.iter(|| {
            seed += 2;
            extend_once(&mut state, &choices, seed)
        })
    });
    group.bench_function(format!("extend_2^{EXT_LOG}_with_base"), |b| {
        b.iter(|| {
            seed += 2;
            setup_and_extend_once(&choices, seed)
        })
    });
    group.finish();
}

/// 2^18 independent AND gates (every garbler input with every evaluator input), XOR-folded into 64 evaluator
/// outputs so that the gates are live; the XORs are free gates but are included in the time.
fn wide_layer() -> Circuit {
    let mut b = CircuitBuilder::new();
    let x = b.garbler_inputs(WIDE_SIDE);
    let y = b.evaluator_inputs(WIDE_SIDE);
    let mut acc = vec![Bit::ZERO; WIDE_OUTPUTS];
    let mut k = 0;
    for &xi in &x {
        for &yj in &y {
            let z = b.and(xi, yj);
            acc[k % WIDE_OUTPUTS] = b.xor(acc[k % WIDE_OUTPUTS], z);
            k += 1;
        }
    }
    for a in acc {
        b.evaluator_output(a);
    }
    b.build().unwrap()
}

fn garbling_group(c: &mut Criterion, name: &str, circuit: &Circuit) {
    let mut group = c.benchmark_group(name);
    let mut rng = StdRng::seed_from_u64(4);
    let gin = random_bits(&mut rng, circuit.garbler_inputs().len());
    let ein = random_bits(&mut rng, circuit.evaluator_inputs().len());
    let mut garbler = Garbler::new(Delta::random(&mut rng));
    group.throughput(Throughput::Elements(circuit.and_count() as u64));

    group.bench_function("garble", |b| {
        b.iter(|| black_box(garbler.garble(circuit, &gin, &mut rng).unwrap()))
    });

    // The same garbling streamed in 64 KiB chunks to a sink that keeps none (as a send does): no table buffer,
    // so no fresh allocation (and page faults) per run and memory bounded by one chunk.
    group.bench_function("garble_streaming", |b| {
        b.iter(|| {
            let zero: Vec<Block> = (0..ein.len()).map(|_| Block::random(&mut rng)).collect();
            let mut sent = 0usize;
            let out = garbler
                .garble_streaming(circuit, &gin, zero, &mut rng, |chunk| {
                    sent += black_box(chunk).len()
                })
                .unwrap();
            assert_eq!(sent, circuit.table_bytes());
            black_box(out);
        })
    });

    let garbling = garbler.garble(circuit, &gin, &mut rng).unwrap();
    let labels = garbling.evaluator_labels.select(&ein);
    let mut evaluator = Evaluator::new();
    group.bench_function("evaluate", |b| {
        b.iter(|| {
            black_box(
                evaluator
                    .evaluate(circuit, &garbling.header, &garbling.tables, &labels)
                    .unwrap(),
            )
        })
    });
    group.finish();
}

fn garbled_circuits(c: &mut Criterion) {
    let wide = wide_layer();
    assert_eq!(wide.and_count(), WIDE_SIDE * WIDE_SIDE);
    garbling_group(c, "gc_wide_layer_2^18", &wide);
    let aes = aes128_circuit();
    assert_eq!(aes.and_count(), 6400);
    garbling_group(c, "gc_aes128", &aes);
}

/// A decision over `n` attributes in `[0, 100]` with random weights in `[-1, 1]`.
fn scoring_instance(n: usize, rng: &mut StdRng) -> Instance {
    Instance::random(n, Reveal::Decision, sid(5), rng).unwrap()
}

/// Extension state carried from one batch of warm runs to the next.
type OtState = (Option<kos::Sender>, Option<kos::Receiver>);

/// `iters` scoring runs back to back over one in-memory channel, the FI on a second thread; cold runs do
/// their base OTs, warm runs take the extension state from `state` (cold ones if it is empty) and leave it
/// there. The FI acknowledges each outcome before the owner starts the next run, so the time per run is its
/// latency (plus one message), not the throughput of overlapping runs. Returns the time from the owner's first
/// run to the FI's last acknowledgement.
fn scoring_runs(inst: &Instance, iters: u64, cold: bool, state: &mut OtState) -> Duration {
    let Instance {
        params,
        model,
        attrs,
        ..
    } = inst;
    let (mut ch_o, mut ch_f) = channel::pair();
    let (mut ot_o, ot_f) = (state.0.take(), state.1.take());
    thread::scope(|s| {
        let t = s.spawn(move || {
            let mut rng = StdRng::seed_from_u64(6);
            let mut ot = ot_f;
            for _ in 0..iters {
                let st = if cold { None } else { ot.take() };
                let (outcome, r) = score::fi_over(&mut ch_f, params, model, st, &mut rng).unwrap();
                black_box(outcome);
                ot = Some(r);
                // Done: the owner starts the next run only now, so runs never overlap (latency, not throughput).
                ch_f.send(Vec::new()).unwrap();
            }
            ot
        });
        let mut rng = StdRng::seed_from_u64(7);
        let start = Instant::now();
        for _ in 0..iters {
            let st = if cold { None } else { ot_o.take() };
            let (outcome, s) = score::owner_over(&mut ch_o, params, attrs, st, &mut rng).unwrap();
            black_box(outcome);
            ot_o = Some(s);
            ch_o.recv().unwrap();
        }
        let ot_f = t.join().unwrap();
        let elapsed = start.elapsed();
        *state = (ot_o, ot_f);
        elapsed
    })
}

fn scoring(c: &mut Criterion) {
    let mut group = c.benchmark_group("scoring");
    let mut rng = StdRng::seed_from_u64(8);
    for n in [32usize, 1000] {
        let inst = scoring_instance(n, &mut rng);
        let mut state: OtState = (None, None);
        group.bench_function(format!("warm_n{n}"), |b| {
            b.iter_custom(|iters| scoring_runs(&inst, iters, false, &mut state))
        });
    }
    let inst = scoring_instance(32, &mut rng);
    let mut state: OtState = (None, None);
    group.bench_function("cold_n32", |b| {
        b.iter_custom(|iters| scoring_runs(&inst, iters, true, &mut state))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = defaults();
    targets = base_ot, ot_extension, garbled_circuits, scoring
}
criterion_main!(benches);
