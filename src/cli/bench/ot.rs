//! `duo bench ot`: 128 base OTs, and the KOS extension of 2^M correlated OTs with and without them.

use super::measure::{bytes, check_reps, fresh_rng, ms, per_sec, run_pair, session_id};
use super::measure::{table, Col, Machine, Progress, Timing, Wire};
use anyhow::{bail, Result};
use duo_protocols::ot::{kos, SessionId};
use rand::Rng;
use serde::Serialize;
use std::hint::black_box;
use std::time::Instant;

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
    /// Always 2: each party on its own thread over the in-memory channel, so the time is the wall time of the
    /// setup with the parties overlapping (the criterion bench `base_ot_one_thread` sums both parties' work on
    /// one thread instead, a different figure).
    pub threads: u32,
    /// Wall time of the setup, both parties on their own thread.
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
    /// Extension alone, from base OTs done earlier (the sender and receiver reused from run to run, each run's
    /// output buffers recycled into the next; the matrix sent in parts of 512 KiB).
    pub without_base_ots: ExtensionTiming,
    /// Base OTs and extension, from nothing (fresh buffers).
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
    /// Always "memory": an in-memory channel, one thread per party (the FI's check pass split over the cores
    /// from 2^17 OTs on).
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
        let wire = |w: &Wire| {
            format!(
                "wire {} (owner->FI {}, FI->owner {}",
                bytes(w.total()),
                bytes(w.owner_to_fi),
                bytes(w.fi_to_owner)
            )
        };
        let rows = [
            vec![
                format!("base OT x{} (Masny-Rindal), 2 threads", b.count),
                ms(&b.time),
                String::new(),
                format!("{})", wire(&b.wire)),
            ],
            vec![
                format!("KOS extension 2^{}, base OTs excluded", e.log2_m),
                ms(&e.without_base_ots.time),
                per_sec(e.without_base_ots.ots_per_sec, "OT"),
                format!("{}; {:.1} B/OT)", wire(&e.wire), e.bytes_per_ot),
            ],
            vec![
                format!("KOS extension 2^{}, with base OTs", e.log2_m),
                ms(&e.with_base_ots.time),
                per_sec(e.with_base_ots.ots_per_sec, "OT"),
            ],
        ];
        let cols = [
            Col::left(40),
            Col::right(10).gap(3),
            Col::right(14).gap(3),
            Col::left(0),
        ];
        format!(
            "duo bench ot: in memory, one thread per party (the FI's check pass split over the cores); median of {} ({})\n{}",
            e.with_base_ots.time.reps,
            self.machine.line(),
            table(2, &cols, rows)
        )
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

    // Extension from base OTs done once, the sender and receiver carried from run to run; each run's outputs
    // are handed back to them once used, so the next run writes into memory already mapped.
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
                let (mut s, cot) = kos::sender_extend_over(ch, sender, m, &mut fresh_rng())?;
                s.recycle(black_box(cot));
                Ok(s)
            },
            |ch| {
                let (mut r, cot) =
                    kos::receiver_extend_over(ch, receiver, &choices, &mut fresh_rng())?;
                r.recycle(black_box(cot));
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
            threads: 2,
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

#[cfg(test)]
mod tests {
    use super::super::measure::fixtures::{machine, timing, wire};
    use super::*;

    #[test]
    fn the_report_reads_as_a_table() {
        let report = OtReport {
            bench: "ot",
            transport: "memory",
            machine: machine(),
            base_ot: BaseOtReport {
                count: 128,
                threads: 2,
                time: timing(27.04, 30.0),
                wire: wire(8192, 32),
            },
            extension: ExtensionReport {
                log2_m: 20,
                ots: 1 << 20,
                padded_rows: (1 << 20) + 256,
                kos_check: true,
                without_base_ots: ExtensionTiming {
                    time: timing(0.665, 0.7),
                    ots_per_sec: 1_576_806.0,
                },
                with_base_ots: ExtensionTiming {
                    time: timing(33.6, 35.0),
                    ots_per_sec: 31_207_619.0,
                },
                wire: wire(16, 16_781_312),
                bytes_per_ot: 16.004,
            },
        };
        assert_eq!(
            report.text(),
        concat!(
            "duo bench ot: in memory, one thread per party (the FI's check pass split over the cores); median of 5 (release build, 8 CPUs, load 0.25 at start)\n",
            "  base OT x128 (Masny-Rindal), 2 threads      27.0 ms                    wire 8.0 KiB (owner->FI 8.0 KiB, FI->owner 32 B)\n",
            "  KOS extension 2^20, base OTs excluded      0.665 ms       1.6 M OT/s   wire 16.00 MiB (owner->FI 16 B, FI->owner 16.00 MiB; 16.0 B/OT)\n",
            "  KOS extension 2^20, with base OTs           33.6 ms      31.2 M OT/s\n",
        )
        );
    }
}
