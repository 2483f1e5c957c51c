//! `duo bench gc`: half-gates garbling and evaluation of a wide layer of AND gates and of AES-128 copies.

use super::measure::{bytes, check_reps, fresh_rng, ms, per_sec, table, Col};
use super::measure::{Machine, Progress, Timing};
use anyhow::{bail, Result};
use duo_protocols::block::Block;
use duo_protocols::gc::aes_circuit::aes128_circuit;
use duo_protocols::gc::{Bit, Circuit, CircuitBuilder, Delta, Evaluator, Garbler};
use rand::Rng;
use serde::Serialize;
use std::hint::black_box;
use std::time::Instant;

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
    /// Inputs of AND gates that feed several AND gates of their layer, over all AND inputs: the share of
    /// hashes whose first permutation is computed once per layer rather than per gate.
    pub shared_inputs: f64,
    /// Garbling into fresh tables.
    pub garble: GateTiming,
    /// Garbling streamed in chunks of at most 64 KiB to a sink that takes each chunk and keeps none (as a send
    /// does): memory bounded by one chunk, no garbled-table buffer at all.
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
        let mut s = format!(
            "duo bench gc: half-gates with free XOR, one thread; median of {} ({})\n",
            self.wide_layer.garble.time.reps,
            self.machine.line()
        );
        let cols = [Col::left(20), Col::right(10).gap(3), Col::right(14)];
        for c in [&self.wide_layer, &self.aes128] {
            let name = if c.copies > 1 {
                format!("{} x{} ({} AND each)", c.circuit, c.copies, c.and_gates)
            } else {
                format!("{} ({} AND)", c.circuit, c.and_gates)
            };
            s.push_str(&format!(
                "  {name}, tables {} per copy, {:.0}% of AND inputs shared\n",
                bytes(c.table_bytes),
                100.0 * c.shared_inputs
            ));
            let rows = [
                ("garble", &c.garble),
                ("garble, streamed", &c.garble_streaming),
                ("evaluate", &c.evaluate),
            ]
            .map(|(what, t)| vec![what.to_string(), ms(&t.time), per_sec(t.and_per_sec, "AND")]);
            s.push_str(&table(4, &cols, rows));
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
            let mut sent = 0usize;
            let out = garbler.garble_streaming(circuit, &gin, zero, &mut rng, |chunk| {
                sent += black_box(chunk).len()
            })?;
            if sent != circuit.table_bytes() {
                bail!(
                    "streamed {sent} bytes of tables, expected {}",
                    circuit.table_bytes()
                );
            }
            black_box(out);
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
        shared_inputs: circuit.shared_and_inputs() as f64 / (2 * circuit.and_count()).max(1) as f64,
        garble: timing(garble),
        garble_streaming: timing(streaming),
        evaluate: timing(evaluate),
    })
}

#[cfg(test)]
mod tests {
    use super::super::measure::fixtures::{machine, timing};
    use super::*;

    fn circuit(name: &'static str, and_gates: u64, copies: u64) -> CircuitReport {
        let gates = |median, rate| GateTiming {
            time: timing(median, median),
            and_per_sec: rate,
        };
        CircuitReport {
            circuit: name,
            and_gates,
            gates: and_gates * 3,
            copies,
            table_bytes: and_gates * 32,
            shared_inputs: if copies == 1 { 1.0 } else { 0.25 },
            garble: gates(0.455, 2_250_549.0),
            garble_streaming: gates(2.1, 3_120_000.0),
            evaluate: gates(0.021, 48_761_904.0),
        }
    }

    #[test]
    fn the_report_reads_as_a_table() {
        let report = GcReport {
            bench: "gc",
            machine: machine(),
            wide_layer: circuit("wide_layer", 1 << 20, 1),
            aes128: circuit("aes128", 6400, 164),
        };
        assert_eq!(
            report.text(),
        concat!(
            "duo bench gc: half-gates with free XOR, one thread; median of 5 (release build, 8 CPUs, load 0.25 at start)\n",
            "  wide_layer (1048576 AND), tables 32.00 MiB per copy, 100% of AND inputs shared\n",
            "    garble                 0.455 ms      2.3 M AND/s\n",
            "    garble, streamed         2.1 ms      3.1 M AND/s\n",
            "    evaluate               0.021 ms     48.8 M AND/s\n",
            "  aes128 x164 (6400 AND each), tables 200.0 KiB per copy, 25% of AND inputs shared\n",
            "    garble                 0.455 ms      2.3 M AND/s\n",
            "    garble, streamed         2.1 ms      3.1 M AND/s\n",
            "    evaluate               0.021 ms     48.8 M AND/s\n",
        )
        );
    }
}
