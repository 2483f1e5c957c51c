//! `duo bench ot`, `duo bench gc` and `duo bench score`: the two-party computation pieces, measured.
//!
//! Each party runs on its own thread and they talk over [`channel::pair`], the in-memory duplex that counts
//! the bytes each end sends: the owner is the OT-extension sender and the garbler, the FI the receiver and the
//! evaluator, as in a real run. Times are wall-clock medians over `--reps` repetitions; rates are computed
//! from the median. Progress goes to standard error, the report to standard output (one JSON object with
//! `--json`). The same pieces have criterion benches in `benches/twopc.rs`.

use anyhow::{anyhow, bail, Result};
use duo_protocols::block::Block;
use duo_protocols::channel::{self, End};
use duo_protocols::fixed::{Bounds, FixedModel};
use duo_protocols::gc::aes_circuit::aes128_circuit;
use duo_protocols::gc::{Bit, Circuit, CircuitBuilder, Delta, Evaluator, Garbler};
use duo_protocols::ot::{kos, SessionId};
use duo_protocols::score;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------------------

/// Where a measurement ran: to judge the figures (a busy machine or a debug build makes them slower).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// The one-minute load average when the run started (Linux only).
    pub load_avg_1m: Option<f64>,
    /// Whether this is an optimized build; debug builds are many times slower.
    pub release_build: bool,
}

impl Machine {
    fn now() -> Machine {
        Machine {
            cpus: thread::available_parallelism().map_or(1, |n| n.get()),
            load_avg_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())),
            release_build: !cfg!(debug_assertions),
        }
    }

    fn line(&self) -> String {
        let load = self
            .load_avg_1m
            .map_or(String::new(), |l| format!(", load {l:.2} at start"));
        let build = if self.release_build {
            "release build"
        } else {
            "DEBUG build (use --release for meaningful figures)"
        };
        format!("{build}, {} CPUs{load}", self.cpus)
    }
}

/// Wall-clock times of one measured operation over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Median, milliseconds.
    pub median_ms: f64,
    /// Fastest, milliseconds.
    pub min_ms: f64,
    /// 90th percentile (nearest rank), milliseconds.
    pub p90_ms: f64,
    /// Repetitions measured.
    pub reps: usize,
}

impl Timing {
    fn of(mut samples: Vec<Duration>) -> Timing {
        samples.sort_unstable();
        // Milliseconds, to the microsecond.
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e3);
        let n = samples.len();
        Timing {
            median_ms: if n > 0 && n % 2 == 0 {
                ((ms(samples.get(n / 2 - 1)) + ms(samples.get(n / 2))) * 500.0).round() / 1e3
            } else {
                ms(samples.get(n / 2))
            },
            min_ms: ms(samples.first()),
            p90_ms: ms(samples.get(((n * 9).div_ceil(10)).saturating_sub(1))),
            reps: n,
        }
    }

    /// `count` items per median run, per second.
    fn rate(&self, count: u64) -> f64 {
        if self.median_ms > 0.0 {
            (count as f64 / (self.median_ms / 1e3)).round()
        } else {
            0.0
        }
    }
}

/// Bytes both ways in one run, as the owner's end of the channel counted them (message payloads only).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Wire {
    /// Owner to FI.
    pub owner_to_fi: u64,
    /// FI to owner.
    pub fi_to_owner: u64,
    /// Messages both ways.
    pub messages: u64,
}

impl Wire {
    /// Both directions.
    pub fn total(&self) -> u64 {
        self.owner_to_fi + self.fi_to_owner
    }
}

/// Progress lines on standard error, unless quiet.
#[derive(Clone, Copy)]
struct Progress {
    quiet: bool,
}

impl Progress {
    fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }
}

/// Runs `owner` here and `fi` on a second thread, connected by a fresh in-memory channel. Each party's end is
/// dropped as soon as its side returns, so an error on one side ends the other's wait instead of hanging.
fn run_pair<A, B: Send>(
    owner: impl FnOnce(&mut End) -> Result<A>,
    fi: impl FnOnce(&mut End) -> Result<B> + Send,
) -> Result<(A, B, Wire)> {
    let (mut o, mut f) = channel::pair();
    thread::scope(|s| {
        let t = s.spawn(move || {
            let r = fi(&mut f);
            drop(f);
            r
        });
        let a = owner(&mut o);
        let wire = Wire {
            owner_to_fi: o.bytes_sent(),
            fi_to_owner: o.bytes_received(),
            messages: o.messages_sent() + o.messages_received(),
        };
        drop(o);
        let b = t.join().map_err(|_| anyhow!("the FI's thread panicked"))?;
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b, wire)),
            (Err(e), _) => Err(e.context("owner side")),
            (Ok(_), Err(e)) => Err(e.context("FI side")),
        }
    })
}

fn fresh_rng() -> StdRng {
    StdRng::from_os_rng()
}

fn session_id(rng: &mut StdRng) -> SessionId {
    SessionId(rng.random())
}

fn check_reps(reps: usize) -> Result<()> {
    if reps == 0 || reps > 10_000 {
        bail!("--reps must be between 1 and 10000");
    }
    Ok(())
}

fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

/// `r` things per second, e.g. "19.2 M OT/s".
fn per_sec(r: f64, unit: &str) -> String {
    if r >= 1e6 {
        format!("{:.1} M {unit}/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k {unit}/s", r / 1e3)
    } else {
        format!("{r:.0} {unit}/s")
    }
}

fn ms(t: &Timing) -> String {
    if t.median_ms < 1.0 {
        format!("{:.3} ms", t.median_ms)
    } else {
        format!("{:.1} ms", t.median_ms)
    }
}

// ---------------------------------------------------------------------------------------------------------
// duo bench ot
// ---------------------------------------------------------------------------------------------------------

/// Options of `duo bench ot`.
#[derive(clap::Args, Debug, Clone)]
pub struct OtArgs {
    /// Extend 2^M correlated OTs per run (10 to 22).
    #[arg(long = "log2-m", value_name = "M", default_value_t = 20)]
    pub log2_m: u32,
    /// Repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The 128 Masny-Rindal base OTs that set up an extension.
#[derive(Debug, Clone, Serialize)]
pub struct BaseOtReport {
    /// Base OTs (the security parameter).
    pub count: usize,
    /// Time of the setup, both parties on their own thread.
    pub time: Timing,
    /// Bytes on the wire.
    pub wire: Wire,
}

/// One way of timing the extension.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionTiming {
    /// Time of one run.
    pub time: Timing,
    /// Correlated OTs per second (from the median).
    pub ots_per_sec: f64,
}

/// The KOS extension of 2^M correlated OTs.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionReport {
    /// log2 of the OTs per run.
    pub log2_m: u32,
    /// OTs per run.
    pub ots: u64,
    /// Rows of the matrix actually sent (OTs plus the consistency check's padding).
    pub padded_rows: u64,
    /// Whether the KOS consistency check ran (always: it protects the owner against a malicious FI).
    pub kos_check: bool,
    /// Extension alone, from base OTs done earlier (the sender and receiver reused from run to run).
    pub without_base_ots: ExtensionTiming,
    /// Base OTs and extension, from nothing.
    pub with_base_ots: ExtensionTiming,
    /// Bytes on the wire of the extension alone.
    pub wire: Wire,
    /// Bytes on the wire per OT (extension alone).
    pub bytes_per_ot: f64,
}

/// What `duo bench ot` measured.
#[derive(Debug, Clone, Serialize)]
pub struct OtReport {
    /// Always "ot".
    pub bench: &'static str,
    /// Always "memory": an in-memory channel, one thread per party.
    pub transport: &'static str,
    /// Where it ran.
    pub machine: Machine,
    /// Base OTs.
    pub base_ot: BaseOtReport,
    /// OT extension.
    pub extension: ExtensionReport,
}

impl OtReport {
    /// The report as a readable table.
    pub fn text(&self) -> String {
        let e = &self.extension;
        let b = &self.base_ot;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "duo bench ot: in memory, one thread per party; median of {} ({})",
            e.with_base_ots.time.reps,
            self.machine.line()
        );
        let _ = writeln!(
            s,
            "  {:<40} {:>10}   {:>14}   wire {} (owner->FI {}, FI->owner {})",
            format!("base OT x{} (Masny-Rindal)", b.count),
            ms(&b.time),
            "",
            bytes(b.wire.total()),
            bytes(b.wire.owner_to_fi),
            bytes(b.wire.fi_to_owner),
        );
        let _ = writeln!(
            s,
            "  {:<40} {:>10}   {:>14}   wire {} (owner->FI {}, FI->owner {}; {:.1} B/OT)",
            format!("KOS extension 2^{}, base OTs excluded", e.log2_m),
            ms(&e.without_base_ots.time),
            per_sec(e.without_base_ots.ots_per_sec, "OT"),
            bytes(e.wire.total()),
            bytes(e.wire.owner_to_fi),
            bytes(e.wire.fi_to_owner),
            e.bytes_per_ot,
        );
        let _ = writeln!(
            s,
            "  {:<40} {:>10}   {:>14}",
            format!("KOS extension 2^{}, with base OTs", e.log2_m),
            ms(&e.with_base_ots.time),
            per_sec(e.with_base_ots.ots_per_sec, "OT"),
        );
        s
    }
}

/// Runs `duo bench ot`.
pub fn ot(args: &OtArgs) -> Result<OtReport> {
    check_reps(args.reps)?;
    if !(10..=22).contains(&args.log2_m) {
        bail!("--log2-m must be between 10 and 22");
    }
    let p = Progress { quiet: args.quiet };
    let machine = Machine::now();
    let m = 1usize << args.log2_m;
    let mut rng = fresh_rng();
    let choices: Vec<bool> = (0..m).map(|_| rng.random()).collect();

    // Base OTs alone: the owner (extension sender) is the base-OT receiver.
    p.say(format!("base OTs: {} runs...", args.reps));
    let mut base_times = Vec::with_capacity(args.reps);
    let mut base_wire = Wire::default();
    for _ in 0..args.reps {
        let sid = session_id(&mut rng);
        let start = Instant::now();
        let (_, _, wire) = base_setup(sid)?;
        base_times.push(start.elapsed());
        base_wire = wire;
    }

    // Extension from base OTs done once, the sender and receiver carried from run to run.
    p.say(format!(
        "OT extension 2^{}, base OTs excluded: {} runs...",
        args.log2_m, args.reps
    ));
    let (mut sender, mut receiver, _) = base_setup(session_id(&mut rng))?;
    let mut ext_times = Vec::with_capacity(args.reps);
    let mut ext_wire = Wire::default();
    for _ in 0..args.reps {
        let start = Instant::now();
        let (s, r, wire) = run_pair(
            |ch| {
                let (s, cot) = kos::sender_extend_over(ch, sender, m, &mut fresh_rng())?;
                black_box(cot);
                Ok(s)
            },
            |ch| {
                let (r, cot) = kos::receiver_extend_over(ch, receiver, &choices, &mut fresh_rng())?;
                black_box(cot);
                Ok(r)
            },
        )?;
        ext_times.push(start.elapsed());
        (sender, receiver, ext_wire) = (s, r, wire);
    }

    p.say(format!(
        "OT extension 2^{} with base OTs: {} runs...",
        args.log2_m, args.reps
    ));
    let mut full_times = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        let sid = session_id(&mut rng);
        let start = Instant::now();
        run_pair(
            |ch| {
                let mut rng = fresh_rng();
                let s = kos::sender_setup_over(ch, sid, &mut rng)?;
                black_box(kos::sender_extend_over(ch, s, m, &mut rng)?);
                Ok(())
            },
            |ch| {
                let mut rng = fresh_rng();
                let r = kos::receiver_setup_over(ch, sid, &mut rng)?;
                black_box(kos::receiver_extend_over(ch, r, &choices, &mut rng)?);
                Ok(())
            },
        )?;
        full_times.push(start.elapsed());
    }

    let without = Timing::of(ext_times);
    let with = Timing::of(full_times);
    Ok(OtReport {
        bench: "ot",
        transport: "memory",
        machine,
        base_ot: BaseOtReport {
            count: kos::BASE_OTS,
            time: Timing::of(base_times),
            wire: base_wire,
        },
        extension: ExtensionReport {
            log2_m: args.log2_m,
            ots: m as u64,
            padded_rows: kos::padded_rows(m) as u64,
            kos_check: true,
            without_base_ots: ExtensionTiming {
                ots_per_sec: without.rate(m as u64),
                time: without,
            },
            with_base_ots: ExtensionTiming {
                ots_per_sec: with.rate(m as u64),
                time: with,
            },
            wire: ext_wire,
            bytes_per_ot: (ext_wire.total() as f64 / m as f64 * 1e3).round() / 1e3,
        },
    })
}

/// The extension's setup (128 base OTs) over a fresh channel: the owner's sender and the FI's receiver.
fn base_setup(sid: SessionId) -> Result<(kos::Sender, kos::Receiver, Wire)> {
    run_pair(
        |ch| Ok(kos::sender_setup_over(ch, sid, &mut fresh_rng())?),
        |ch| Ok(kos::receiver_setup_over(ch, sid, &mut fresh_rng())?),
    )
}

// ---------------------------------------------------------------------------------------------------------
// duo bench gc
// ---------------------------------------------------------------------------------------------------------

/// Options of `duo bench gc`.
#[derive(clap::Args, Debug, Clone)]
pub struct GcArgs {
    /// AND gates per measured run: the width of the wide layer, and (rounded up to whole circuits) the AND gates
    /// of the AES-128 copies garbled back to back (1024 to 4194304).
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub and_gates: usize,
    /// Repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One way of timing garbling or evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct GateTiming {
    /// Time of one run (all copies).
    pub time: Timing,
    /// AND gates per second (from the median); the free XOR gates are done in the same time.
    pub and_per_sec: f64,
}

/// One circuit, garbled and evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitReport {
    /// "wide_layer" or "aes128".
    pub circuit: &'static str,
    /// AND gates of one copy.
    pub and_gates: u64,
    /// Gates of one copy in all (AND, XOR, NOT).
    pub gates: u64,
    /// Copies garbled (or evaluated) per run.
    pub copies: u64,
    /// Garbled-table bytes of one copy (32 per AND gate, half-gates).
    pub table_bytes: u64,
    /// Garbling into fresh tables.
    pub garble: GateTiming,
    /// Garbling streamed in chunks into a reused buffer (how the node sends tables).
    pub garble_streaming: GateTiming,
    /// Evaluation.
    pub evaluate: GateTiming,
}

/// What `duo bench gc` measured.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// Always "gc".
    pub bench: &'static str,
    /// Where it ran.
    pub machine: Machine,
    /// Many independent AND gates (every garbler input with every evaluator input), one thread.
    pub wide_layer: CircuitReport,
    /// The AES-128 circuit (6400 AND), copies garbled back to back under one Δ, one thread.
    pub aes128: CircuitReport,
}

impl GcReport {
    /// The report as a readable table.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "duo bench gc: half-gates with free XOR, one thread; median of {} ({})",
            self.wide_layer.garble.time.reps,
            self.machine.line()
        );
        for c in [&self.wide_layer, &self.aes128] {
            let name = if c.copies > 1 {
                format!("{} x{} ({} AND each)", c.circuit, c.copies, c.and_gates)
            } else {
                format!("{} ({} AND)", c.circuit, c.and_gates)
            };
            let _ = writeln!(s, "  {name}, tables {} per copy", bytes(c.table_bytes));
            for (what, t) in [
                ("garble", &c.garble),
                ("garble, streamed", &c.garble_streaming),
                ("evaluate", &c.evaluate),
            ] {
                let _ = writeln!(
                    s,
                    "    {what:<20} {:>10}   {:>14}",
                    ms(&t.time),
                    per_sec(t.and_per_sec, "AND")
                );
            }
        }
        s
    }
}

/// Runs `duo bench gc`.
pub fn gc(args: &GcArgs) -> Result<GcReport> {
    check_reps(args.reps)?;
    if !(1024..=1 << 22).contains(&args.and_gates) {
        bail!("--and-gates must be between 1024 and 4194304");
    }
    let p = Progress { quiet: args.quiet };
    let machine = Machine::now();
    p.say(format!(
        "wide layer of {} AND gates: building, then {} runs each of garbling and evaluation...",
        args.and_gates, args.reps
    ));
    let wide = wide_layer(args.and_gates)?;
    let wide = measure_circuit("wide_layer", &wide, 1, args.reps)?;
    let aes = aes128_circuit();
    let copies = args.and_gates.div_ceil(aes.and_count().max(1)).max(1);
    p.say(format!(
        "AES-128 x{copies}: {} runs each of garbling and evaluation...",
        args.reps
    ));
    let aes = measure_circuit("aes128", &aes, copies, args.reps)?;
    Ok(GcReport {
        bench: "gc",
        machine,
        wide_layer: wide,
        aes128: aes,
    })
}

/// `n` independent AND gates, each a garbler input with an evaluator input, XOR-folded into at most 64
/// evaluator outputs so that every gate is live.
fn wide_layer(n: usize) -> Result<Circuit> {
    const OUTPUTS: usize = 64;
    let side_e = (n as f64).sqrt().ceil() as usize;
    let side_g = n.div_ceil(side_e);
    let mut b = CircuitBuilder::new();
    let x = b.garbler_inputs(side_g);
    let y = b.evaluator_inputs(side_e);
    let mut acc = vec![Bit::ZERO; OUTPUTS.min(n)];
    let width = acc.len();
    let mut k = 0;
    'outer: for &xi in &x {
        for &yj in &y {
            if k == n {
                break 'outer;
            }
            let z = b.and(xi, yj);
            acc[k % width] = b.xor(acc[k % width], z);
            k += 1;
        }
    }
    for a in acc {
        b.evaluator_output(a);
    }
    Ok(b.build()?)
}

fn measure_circuit(
    name: &'static str,
    circuit: &Circuit,
    copies: usize,
    reps: usize,
) -> Result<CircuitReport> {
    let mut rng = fresh_rng();
    let gin: Vec<bool> = (0..circuit.garbler_inputs().len())
        .map(|_| rng.random())
        .collect();
    let ein: Vec<bool> = (0..circuit.evaluator_inputs().len())
        .map(|_| rng.random())
        .collect();
    let mut garbler = Garbler::new(Delta::random(&mut rng));
    let ands = (circuit.and_count() * copies) as u64;

    let mut garble = Vec::with_capacity(reps);
    let mut streaming = Vec::with_capacity(reps);
    let mut evaluate = Vec::with_capacity(reps);
    let mut sink: Vec<u8> = Vec::with_capacity(circuit.table_bytes());
    let mut evaluator = Evaluator::new();
    for _ in 0..reps {
        let start = Instant::now();
        for _ in 0..copies {
            black_box(garbler.garble(circuit, &gin, &mut rng)?);
        }
        garble.push(start.elapsed());

        let zeros: Vec<Vec<Block>> = (0..copies)
            .map(|_| (0..ein.len()).map(|_| Block::random(&mut rng)).collect())
            .collect();
        let start = Instant::now();
        for zero in zeros {
            sink.clear();
            let out = garbler.garble_streaming(circuit, &gin, zero, &mut rng, |chunk| {
                sink.extend_from_slice(chunk)
            })?;
            black_box((out, &sink));
        }
        streaming.push(start.elapsed());

        let garbling = garbler.garble(circuit, &gin, &mut rng)?;
        let labels = garbling.evaluator_labels.select(&ein);
        let start = Instant::now();
        for _ in 0..copies {
            black_box(evaluator.evaluate(circuit, &garbling.header, &garbling.tables, &labels)?);
        }
        evaluate.push(start.elapsed());
    }
    let timing = |samples| {
        let time = Timing::of(samples);
        GateTiming {
            and_per_sec: time.rate(ands),
            time,
        }
    };
    Ok(CircuitReport {
        circuit: name,
        and_gates: circuit.and_count() as u64,
        gates: circuit.gates().len() as u64,
        copies: copies as u64,
        table_bytes: circuit.table_bytes() as u64,
        garble: timing(garble),
        garble_streaming: timing(streaming),
        evaluate: timing(evaluate),
    })
}

// ---------------------------------------------------------------------------------------------------------
// duo bench score
// ---------------------------------------------------------------------------------------------------------

/// Options of `duo bench score`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {
    /// Numbers of attributes to score, comma-separated (1 to 4096 each).
    #[arg(long, value_delimiter = ',', default_value = "8,32,128,1000")]
    pub n: Vec<usize>,
    /// Timed runs of each kind (cold and warm) per n; the median is reported.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Where the two parties talk: `memory` (in-process channel, one thread per party), `ws` (the node's
    /// Noise session over loopback WebSocket, with the durable log writes of a real run) or `both`.
    #[arg(long, default_value = "memory", value_parser = ["memory", "ws", "both"])]
    pub transport: String,
    /// What a run reveals: `decision` (1 bit), `bands:K` (K bands, 2 to 16) or `score` (the raw score).
    #[arg(long, default_value = "decision")]
    pub reveal: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One kind of run (cold or warm), timed.
#[derive(Debug, Clone, Serialize)]
pub struct ScorePhase {
    /// Latency of the protocol alone. In memory: from the first party starting to the last party holding the
    /// outcome. Over WebSocket: the owner's side, from its first message to its last.
    pub time: Timing,
    /// Over WebSocket only: latency including the durable log writes that start and end a run (the owner's
    /// store with `synchronous=FULL`), as a real run on the node pays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with_log: Option<Timing>,
    /// Protocol bytes of one run, both directions (message payloads, before framing and encryption).
    pub bytes: u64,
    /// The same per direction, where the transport counts them (in memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire: Option<Wire>,
}

/// Secure scoring at one size over one transport.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreRun {
    /// "memory" or "ws".
    pub transport: &'static str,
    /// Attributes.
    pub n: usize,
    /// Extension OTs one run uses (64 per attribute for the products, plus the FI's circuit inputs).
    pub ots: usize,
    /// AND gates of the garbled output circuit.
    pub and_gates: usize,
    /// With the 128 base OTs: the first run of a session pair.
    pub cold: ScorePhase,
    /// Base OTs done in an earlier run, their extension state reused.
    pub warm: ScorePhase,
}

/// What `duo bench score` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    /// Always "score".
    pub bench: &'static str,
    /// Where it ran.
    pub machine: Machine,
    /// What each run revealed, as given to `--reveal`.
    pub reveal: String,
    /// Information each run revealed, in bits.
    pub reveal_bits: f64,
    /// One entry per transport and n.
    pub runs: Vec<ScoreRun>,
}

impl ScoreReport {
    /// The report as a readable table.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let reps = self.runs.first().map_or(0, |r| r.warm.time.reps);
        let _ = writeln!(
            s,
            "duo bench score: reveal {} ({} bit{}); median (p90) of {reps} runs ({})",
            self.reveal,
            self.reveal_bits,
            if self.reveal_bits == 1.0 { "" } else { "s" },
            self.machine.line()
        );
        let _ = writeln!(
            s,
            "  {:<9} {:>5} {:>7} {:>21} {:>11} {:>21} {:>11} {:>21}",
            "transport", "n", "OTs", "cold", "cold wire", "warm", "warm wire", "warm with log"
        );
        for r in &self.runs {
            let lat = |t: &Timing| format!("{:.3} ({:.3}) ms", t.median_ms, t.p90_ms);
            let _ = writeln!(
                s,
                "  {:<9} {:>5} {:>7} {:>21} {:>11} {:>21} {:>11} {:>21}",
                r.transport,
                r.n,
                r.ots,
                lat(&r.cold.time),
                bytes(r.cold.bytes),
                lat(&r.warm.time),
                bytes(r.warm.bytes),
                r.warm.with_log.as_ref().map_or("-".to_string(), lat),
            );
        }
        s
    }
}

/// Parses `--reveal`: `decision`, `bands:K` (K bands) or `score`.
pub fn parse_reveal(s: &str) -> Result<score::Reveal> {
    let s = s.trim();
    match s {
        "decision" => return Ok(score::Reveal::Decision),
        "score" => return Ok(score::Reveal::Score),
        _ => {}
    }
    let bands = s
        .strip_prefix("bands:")
        .and_then(|k| k.parse::<usize>().ok())
        .ok_or_else(|| anyhow!("--reveal must be decision, bands:K or score, not `{s}`"))?;
    if !(2..=score::MAX_BAND_THRESHOLDS + 1).contains(&bands) {
        bail!(
            "--reveal bands:K needs 2 to {} bands",
            score::MAX_BAND_THRESHOLDS + 1
        );
    }
    Ok(score::Reveal::Bands { k: bands as u32 })
}

/// Runs `duo bench score`.
pub fn score(args: &ScoreArgs) -> Result<ScoreReport> {
    check_reps(args.reps)?;
    let reveal = parse_reveal(&args.reveal)?;
    if args.n.is_empty() {
        bail!("--n needs at least one number of attributes");
    }
    if let Some(&bad) = args
        .n
        .iter()
        .find(|&&n| n == 0 || n > score::MAX_ATTRIBUTES)
    {
        bail!(
            "--n {bad}: each number of attributes must be between 1 and {}",
            score::MAX_ATTRIBUTES
        );
    }
    let transports: &[&'static str] = match args.transport.as_str() {
        "memory" => &["memory"],
        "ws" => &["ws"],
        _ => &["memory", "ws"],
    };
    let p = Progress { quiet: args.quiet };
    let machine = Machine::now();
    let mut runs = Vec::new();
    for &transport in transports {
        for &n in &args.n {
            p.say(format!(
                "n = {n}, {}: {} cold and {} warm runs...",
                if transport == "ws" {
                    "loopback WebSocket"
                } else {
                    "in memory"
                },
                args.reps,
                args.reps
            ));
            let setup = ScoreSetup::new(n, reveal)?;
            let (cold, warm) = if transport == "ws" {
                score_ws(n, reveal, args.reps)?
            } else {
                score_memory(&setup, args.reps)?
            };
            runs.push(ScoreRun {
                transport,
                n,
                ots: setup.params.ots(),
                and_gates: reveal.circuit().and_count(),
                cold,
                warm,
            });
        }
    }
    Ok(ScoreReport {
        bench: "score",
        machine,
        reveal: args.reveal.trim().to_string(),
        reveal_bits: reveal.bits(),
        runs,
    })
}

/// A random model and random attributes of `n` attributes in `[0, 100]`, and the outcome a run must give.
pub struct ScoreSetup {
    /// The public parameters (the session id is replaced run by run).
    pub params: score::Params,
    /// The FI's model.
    pub model: score::FiModel,
    /// The owner's attributes.
    pub attrs: Vec<f64>,
    /// The ideal outcome.
    pub want: score::Outcome,
}

impl ScoreSetup {
    /// A random instance with `n` attributes revealing `reveal`.
    pub fn new(n: usize, reveal: score::Reveal) -> Result<ScoreSetup> {
        let mut rng = fresh_rng();
        let params = score::Params {
            session: session_id(&mut rng),
            bounds: vec![Bounds::new(0.0, 100.0); n],
            reveal,
        };
        let weights: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let fixed = FixedModel::new(&params.bounds, &weights, 1.5, 0.0)?;
        let bands: Vec<f64> = match reveal {
            score::Reveal::Bands { .. } => {
                let thresholds = reveal.thresholds();
                (0..thresholds)
                    .map(|k| (k as f64 - thresholds as f64 / 2.0) * 10.0 * (n as f64).sqrt())
                    .collect()
            }
            _ => Vec::new(),
        };
        let model = score::FiModel::new(fixed, &bands)?;
        let attrs: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..=100.0)).collect();
        let want = score::ideal(&params, &attrs, &model)?;
        Ok(ScoreSetup {
            params,
            model,
            attrs,
            want,
        })
    }
}

/// A barrier that either party can open for good when it stops, so the other never waits for a run that
/// will not come.
struct StartGate {
    state: Mutex<(u64, usize, bool)>,
    cv: Condvar,
}

impl StartGate {
    fn new() -> StartGate {
        StartGate {
            state: Mutex::new((0, 0, false)),
            cv: Condvar::new(),
        }
    }

    /// Waits for the other party; false if it has stopped.
    fn wait(&self) -> bool {
        let Ok(mut g) = self.state.lock() else {
            return false;
        };
        if g.2 {
            return false;
        }
        g.1 += 1;
        if g.1 == 2 {
            g.0 += 1;
            g.1 = 0;
            self.cv.notify_all();
            return true;
        }
        let generation = g.0;
        while g.0 == generation && !g.2 {
            g = match self.cv.wait(g) {
                Ok(g) => g,
                Err(_) => return false,
            };
        }
        g.0 != generation
    }

    fn stop(&self) {
        if let Ok(mut g) = self.state.lock() {
            g.2 = true;
        }
        self.cv.notify_all();
    }
}

/// Stops the gate when a party's thread ends, however it ends.
struct StopOnDrop<'a>(&'a StartGate);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// What one party saw of one run: when it started and when it held the outcome.
type Span = (Instant, Instant);

/// One untimed cold run to warm up, `reps` timed cold runs, then `reps` timed warm runs on the extension state
/// the cold runs leave, each on a fresh session id, both parties on their own thread over one in-memory
/// channel. Every outcome is checked against the ideal one.
fn score_memory(setup: &ScoreSetup, reps: usize) -> Result<(ScorePhase, ScorePhase)> {
    let total = 1 + 2 * reps;
    let mut rng = fresh_rng();
    let sessions: Vec<score::Params> = (0..total)
        .map(|_| score::Params {
            session: session_id(&mut rng),
            ..setup.params.clone()
        })
        .collect();
    let cold_run = |k: usize| k <= reps;
    let gate = StartGate::new();
    let (o, f) = channel::pair();
    let (owner, fi) = thread::scope(|s| {
        let fi = s.spawn(|| -> Result<Vec<Span>> {
            let _stop = StopOnDrop(&gate);
            let mut f = f;
            let mut rng = fresh_rng();
            let mut ot = None;
            let mut spans = Vec::with_capacity(total);
            for (k, params) in sessions.iter().enumerate() {
                let state = if cold_run(k) { None } else { ot.take() };
                if !gate.wait() {
                    bail!("the owner stopped");
                }
                let start = Instant::now();
                let (outcome, state) =
                    score::fi_over(&mut f, params, &setup.model, state, &mut rng)?;
                spans.push((start, Instant::now()));
                if outcome != setup.want {
                    bail!("the FI got {outcome:?}, not the ideal {:?}", setup.want);
                }
                ot = Some(state);
            }
            Ok(spans)
        });
        let owner = (|| -> Result<(Vec<Span>, Vec<Wire>)> {
            let _stop = StopOnDrop(&gate);
            let mut o = o;
            let mut ot = None;
            let mut spans = Vec::with_capacity(total);
            let mut wires = Vec::with_capacity(total);
            for (k, params) in sessions.iter().enumerate() {
                let state = if cold_run(k) { None } else { ot.take() };
                let before = (
                    o.bytes_sent(),
                    o.bytes_received(),
                    o.messages_sent() + o.messages_received(),
                );
                if !gate.wait() {
                    bail!("the FI stopped");
                }
                let start = Instant::now();
                let (outcome, state) =
                    score::owner_over(&mut o, params, &setup.attrs, state, &mut rng)?;
                spans.push((start, Instant::now()));
                wires.push(Wire {
                    owner_to_fi: o.bytes_sent() - before.0,
                    fi_to_owner: o.bytes_received() - before.1,
                    messages: o.messages_sent() + o.messages_received() - before.2,
                });
                if outcome != setup.want {
                    bail!("the owner got {outcome:?}, not the ideal {:?}", setup.want);
                }
                ot = Some(state);
            }
            Ok((spans, wires))
        })();
        let fi = fi.join().map_err(|_| anyhow!("the FI's thread panicked"));
        (owner, fi)
    });
    let (owner, wires) = owner.map_err(|e| e.context("owner side"))?;
    let fi = fi?.map_err(|e| e.context("FI side"))?;
    let latency: Vec<Duration> = owner
        .iter()
        .zip(&fi)
        .map(|(o, f)| o.1.max(f.1) - o.0.min(f.0))
        .collect();
    let phase = |range: std::ops::Range<usize>| {
        let wire = wires
            .get(range.end.saturating_sub(1))
            .copied()
            .unwrap_or_default();
        ScorePhase {
            time: Timing::of(latency.get(range).unwrap_or_default().to_vec()),
            with_log: None,
            bytes: wire.total(),
            wire: Some(wire),
        }
    };
    Ok((phase(1..1 + reps), phase(1 + reps..total)))
}

/// Scoring over a real loopback WebSocket and Noise session, through the node
/// ([`crate::node::scoring::loopback_runs`]): `reps` cold runs (each on a new session, after one untimed), then
/// one session of `2 + reps` runs whose first (cold) and second (warm-up) are not timed. Every run writes its
/// start and end to a scratch owner log with `synchronous=FULL`.
fn score_ws(n: usize, reveal: score::Reveal, reps: usize) -> Result<(ScorePhase, ScorePhase)> {
    use crate::node::scoring::{loopback_runs, LoopbackRun};
    use crate::node::store::Sync;
    let tmp = tempfile::Builder::new()
        .prefix("duo-bench-score-")
        .tempdir()?;
    let log = tmp.path().join("owner");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (cold, warm) = rt.block_on(async {
        let mut cold = Vec::with_capacity(reps);
        for i in 0..=reps {
            let runs = loopback_runs(n, reveal, 1, Some(&log), Sync::Full).await?;
            if i > 0 {
                cold.extend(runs);
            }
        }
        let warm = loopback_runs(n, reveal, 2 + reps, Some(&log), Sync::Full).await?;
        Ok::<_, anyhow::Error>((cold, warm.into_iter().skip(2).collect::<Vec<_>>()))
    })?;
    let phase = |runs: &[LoopbackRun]| {
        let ms = |f: fn(&LoopbackRun) -> f64| {
            runs.iter()
                .map(|r| Duration::from_secs_f64(f(r).max(0.0) / 1e3))
                .collect::<Vec<_>>()
        };
        ScorePhase {
            time: Timing::of(ms(|r| r.protocol_millis)),
            with_log: Some(Timing::of(ms(|r| r.millis))),
            bytes: runs.last().map_or(0, |r| r.bytes),
            wire: None,
        }
    };
    Ok((phase(&cold), phase(&warm)))
}
