//! `duo bench score`: private scoring runs, cold and warm, in memory and over the node's loopback WebSocket;
//! each outcome checked against the ideal one.

use super::measure::{bytes, check_reps, fresh_rng, session_id, table, Col};
use super::measure::{Machine, Progress, Timing, Wire};
use anyhow::{anyhow, bail, Result};
use duo_protocols::channel;
use duo_protocols::score;
use serde::Serialize;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
    /// What a run reveals: `decision` (1 bit), `bands:K` (K bands, 2 to 16), `decision+reasons:K` (the
    /// decision and K reasons, 1 to 4, for n up to 256) or `score` (the raw score).
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
    /// outcome. Over WebSocket: from the owner's go (where a node sends `score_start`, after the start is
    /// logged; the FI starts nothing before it) to the later of the two sides holding the outcome.
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
    /// Extension OTs one run uses (32 per attribute for the products, plus the FI's circuit inputs).
    pub ots: usize,
    /// AND gates of the garbled output circuit.
    pub and_gates: usize,
    /// With the 128 base OTs: the first run of a session pair.
    pub cold: ScorePhase,
    /// Base OTs done in an earlier run, their extension state reused.
    pub warm: ScorePhase,
    /// Over WebSocket only: the first run of a new session, continuing the state the last session left at rest
    /// on both sides (the owner's store, the FI home), as after pairing or between an FI's sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<ScorePhase>,
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
    /// Information each run revealed, in bits (for reasons, which depend on n: at the largest n).
    pub reveal_bits: f64,
    /// One entry per transport and n.
    pub runs: Vec<ScoreRun>,
}

impl ScoreReport {
    /// The report as a readable table.
    pub fn text(&self) -> String {
        let reps = self.runs.first().map_or(0, |r| r.warm.time.reps);
        let lat = |t: &Timing| format!("{:.3} ({:.3}) ms", t.median_ms, t.p90_ms);
        let header = [
            "transport",
            "n",
            "OTs",
            "cold",
            "cold wire",
            "warm",
            "warm wire",
            "warm with log",
            "new session with log",
        ];
        let rows = self.runs.iter().map(|r| {
            vec![
                r.transport.to_string(),
                r.n.to_string(),
                r.ots.to_string(),
                lat(&r.cold.time),
                bytes(r.cold.bytes),
                lat(&r.warm.time),
                bytes(r.warm.bytes),
                r.warm.with_log.as_ref().map_or("-".to_string(), lat),
                r.resumed
                    .as_ref()
                    .and_then(|p| p.with_log.as_ref())
                    .map_or("-".to_string(), lat),
            ]
        });
        let cols = [
            Col::left(9),
            Col::right(5),
            Col::right(7),
            Col::right(21),
            Col::right(11),
            Col::right(21),
            Col::right(11),
            Col::right(21),
            Col::right(21),
        ];
        format!(
            "duo bench score: reveal {} ({} bit{}); median (p90) of {reps} runs ({})\n{}",
            self.reveal,
            self.reveal_bits,
            if self.reveal_bits == 1.0 { "" } else { "s" },
            self.machine.line(),
            table(
                2,
                &cols,
                std::iter::once(header.map(String::from).to_vec()).chain(rows)
            )
        )
    }
}

/// Parses `--reveal` as `duo fi score` does ([`score::Reveal`]'s command-line form): `decision`, `bands:K`,
/// `decision+reasons:K` or `score`.
pub fn parse_reveal(s: &str) -> Result<score::Reveal> {
    s.trim()
        .parse::<score::Reveal>()
        .map_err(|e| anyhow!("--reveal: {e}"))
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
            let mut rng = fresh_rng();
            let session = session_id(&mut rng);
            let setup = ScoreSetup::random(n, reveal, session, &mut rng)?;
            let (cold, warm, resumed) = if transport == "ws" {
                score_ws(n, reveal, args.reps)?
            } else {
                let (cold, warm) = score_memory(&setup, args.reps)?;
                (cold, warm, None)
            };
            runs.push(ScoreRun {
                transport,
                n,
                ots: setup.params.ots(),
                and_gates: reveal.circuit(n).and_count(),
                cold,
                warm,
                resumed,
            });
        }
    }
    Ok(ScoreReport {
        bench: "score",
        machine,
        reveal: args.reveal.trim().to_string(),
        // Reasons reveal more of more attributes: the bits at the largest n.
        reveal_bits: reveal.bits(runs.iter().map(|r| r.n).max().unwrap_or(1)),
        runs,
    })
}

/// A random model and random attributes of `n` attributes in `[0, 100]`, and the outcome a run must give (the
/// session id is replaced run by run).
type ScoreSetup = duo_testkit::scoring::Instance;

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
/// ([`duo::node::loopback::loopback_runs`]): `reps` cold runs (each on a new session, after one untimed), then
/// one session of `2 + reps` runs whose first (cold) and second (warm-up) are not timed, then `reps` new
/// sessions of one run each continuing the states at rest (after one untimed that makes them). Every run
/// writes its start and end to a scratch owner log with `synchronous=FULL`.
fn score_ws(
    n: usize,
    reveal: score::Reveal,
    reps: usize,
) -> Result<(ScorePhase, ScorePhase, Option<ScorePhase>)> {
    use duo::node::loopback::{loopback_runs, loopback_runs_at_rest, LoopbackRun};
    use duo::node::store::Sync;
    let tmp = tempfile::Builder::new()
        .prefix("duo-bench-score-")
        .tempdir()?;
    let log = tmp.path().join("owner");
    let rest = tmp.path().join("rest");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (cold, warm, resumed) = rt.block_on(async {
        let mut cold = Vec::with_capacity(reps);
        for i in 0..=reps {
            let runs = loopback_runs(n, reveal, 1, Some(&log), Sync::Full).await?;
            if i > 0 {
                cold.extend(runs);
            }
        }
        let warm = loopback_runs(n, reveal, 2 + reps, Some(&log), Sync::Full).await?;
        let mut resumed = Vec::with_capacity(reps);
        for i in 0..=reps {
            let runs =
                loopback_runs_at_rest(n, reveal, 1, Some(&log), Sync::Full, Some(&rest)).await?;
            if i > 0 {
                if runs.iter().any(|r| r.cold) {
                    bail!("a new session did not continue the states at rest");
                }
                resumed.extend(runs);
            }
        }
        Ok::<_, anyhow::Error>((cold, warm.into_iter().skip(2).collect::<Vec<_>>(), resumed))
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
    Ok((phase(&cold), phase(&warm), Some(phase(&resumed))))
}

#[cfg(test)]
mod tests {
    use super::super::measure::fixtures::{machine, timing, wire};
    use super::*;

    fn run(transport: &'static str, n: usize, ws: bool) -> ScoreRun {
        let phase = |median, p90, bytes| ScorePhase {
            time: timing(median, p90),
            with_log: ws.then(|| timing(median * 2.0, p90 * 2.0)),
            bytes,
            wire: (!ws).then(|| wire(bytes / 2, bytes - bytes / 2)),
        };
        ScoreRun {
            transport,
            n,
            ots: 32 * n + 64,
            and_gates: 63,
            cold: phase(26.219, 41.796, 31_948),
            warm: phase(0.684, 0.707, 23_756),
            resumed: ws.then(|| phase(0.9, 1.0, 23_756)),
        }
    }

    #[test]
    fn the_report_reads_as_a_table() {
        let report = ScoreReport {
            bench: "score",
            machine: machine(),
            reveal: "bands:4".into(),
            reveal_bits: 2.0,
            runs: vec![
                run("memory", 8, false),
                run("memory", 1000, false),
                run("ws", 8, true),
            ],
        };
        assert_eq!(
            report.text(),
        concat!(
            "duo bench score: reveal bands:4 (2 bits); median (p90) of 5 runs (release build, 8 CPUs, load 0.25 at start)\n",
            "  transport     n     OTs                  cold   cold wire                  warm   warm wire         warm with log  new session with log\n",
            "  memory        8     320    26.219 (41.796) ms    31.2 KiB      0.684 (0.707) ms    23.2 KiB                     -                     -\n",
            "  memory     1000   32064    26.219 (41.796) ms    31.2 KiB      0.684 (0.707) ms    23.2 KiB                     -                     -\n",
            "  ws            8     320    26.219 (41.796) ms    31.2 KiB      0.684 (0.707) ms    23.2 KiB      1.368 (1.414) ms      1.800 (2.000) ms\n",
        )
        );
    }
}
