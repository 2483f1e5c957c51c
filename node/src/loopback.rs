//! Private scoring runs over a real loopback WebSocket and Noise session, both sides in one process, for
//! `duo bench score` and the benches (not part of the node's API).

use crate::error::Error;
use crate::fi::run::drive_fi;
use crate::net::run::send_msg;
use crate::owner::scoring::{drive_owner, RunGuard};
use crate::proto::scoring::session_id;
use crate::store::{self, Log, OtAtRest, ScoringRuns, Store};
use duo_protocols::fixed::{Bounds, FixedModel};
use duo_protocols::score::{self, FiModel, Params};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What the owner sends to start each run, in place of a node's `score_start`.
const GO: &[u8] = b"go";

/// One run of [`loopback_runs`], as the owner's side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoopbackRun {
    /// Whether the run included the base OTs.
    pub cold: bool,
    /// Milliseconds from the start of the run (its log write, if any) to the end (its log write, if any, or the
    /// FI's outcome if later).
    pub millis: f64,
    /// Milliseconds of the protocol alone: from the owner's go to when both sides hold the outcome.
    pub protocol_millis: f64,
    /// Protocol bytes sent and received by the owner.
    pub bytes: u64,
}

/// Runs `runs` private scorings with `n` random attributes over a real loopback WebSocket and its Noise
/// session, both sides in this process: the first run cold, the rest warm, as in one FI session. With
/// `log_dir`, each run also commits its start and its end to a hash-chained log in a scratch owner store
/// there, with `sync` as the node would (the durable log write of a real run). For `duo bench`.
pub async fn loopback_runs(
    n: usize,
    reveal: score::Reveal,
    runs: usize,
    log_dir: Option<&std::path::Path>,
    sync: store::Sync,
) -> Result<Vec<LoopbackRun>, Error> {
    loopback_runs_at_rest(n, reveal, runs, log_dir, sync, None).await
}

/// [`loopback_runs`], with each side's OT-extension state kept at rest between calls as the node and the FI
/// keep it: with `rest` (and `log_dir`), the first run continues the state an earlier call left (warm, if
/// there is one: the owner takes it out of its store in the run's start transaction, the FI out of an FI home
/// in `rest`), and the last run's state is put back (the owner in the end transaction).
pub async fn loopback_runs_at_rest(
    n: usize,
    reveal: score::Reveal,
    runs: usize,
    log_dir: Option<&std::path::Path>,
    sync: store::Sync,
    rest: Option<&std::path::Path>,
) -> Result<Vec<LoopbackRun>, Error> {
    use crate::net::keys::{fingerprint, Keypair};
    use crate::net::transport::{self, Limits};
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(n as u64);
    let bounds: Vec<Bounds> = (0..n).map(|_| Bounds::new(-10.0, 10.0)).collect();
    let weights: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let attrs: Vec<f64> = (0..n).map(|_| rng.random_range(-10.0..10.0)).collect();
    let fixed =
        FixedModel::new(&bounds, &weights, 0.5, 0.0).map_err(|e| Error::Refused(e.to_string()))?;
    let bands: Vec<f64> = match reveal {
        score::Reveal::Bands { .. } => (0..reveal.thresholds()).map(|i| i as f64).collect(),
        _ => Vec::new(),
    };
    let model = FiModel::new(fixed, &bands).map_err(|e| Error::Refused(e.to_string()))?;
    let server_key = Keypair::generate();
    let client_key = Keypair::generate();
    let owner_fp = fingerprint(&server_key.public);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}", listener.local_addr()?);
    let limits = Limits::default();
    let conn = match log_dir {
        Some(dir) => Some(Store::open(dir, sync)?),
        None => None,
    };
    let fi_home = rest.map(|d| crate::fi::FiHome::new(&d.join("fi")));
    let fi = run_apart(fi_side(
        url,
        client_key,
        owner_fp,
        limits.clone(),
        bounds.clone(),
        model,
        reveal,
        runs,
        fi_home,
    ))?;
    let (tcp, _) = listener.accept().await?;
    let _ = tcp.set_nodelay(true);
    let (mut chan, _) = transport::accept(
        tcp,
        &server_key,
        |_| None,
        |_| String::new(),
        |_, _| Ok(()),
        |_: &str| {},
        &limits,
    )
    .await
    .map_err(|e| Error::Transport(e.to_string()))?;
    let mut conn = conn;
    let at_rest = rest.is_some();
    // A run's start or end in the log; with a state at rest, the first start takes it and the last end puts
    // back the next one, in the same transaction (as the node does).
    let mut log =
        |kind: &str, run: usize, put: Option<&OtAtRest>| -> Result<Option<OtAtRest>, Error> {
            let Some(c) = conn.as_mut() else {
                return Ok(None);
            };
            let tx = c.write()?;
            tx.append_log(
                kind,
                Some("bench"),
                &serde_json::json!({ "run": run, "n": n }),
            )?;
            let taken = if at_rest && kind == "scoring-start" && run == 0 {
                tx.take_ot_state("bench")?
            } else {
                None
            };
            if let Some(next) = put {
                tx.put_ot_state("bench", next)?;
            }
            tx.commit()?;
            Ok(taken)
        };
    let mut warm = None;
    let mut ot_id = String::new();
    let mut out = Vec::with_capacity(runs);
    for run in 0..runs {
        let began = Instant::now();
        if let Some(saved) = log("scoring-start", run, None)? {
            warm = Some(
                duo_protocols::ot::kos::Sender::from_rest(&saved.state)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            );
            ot_id = saved.id;
        }
        let params = Params {
            session: session_id(chan.handshake_hash(), 0, run as u64),
            bounds: bounds.clone(),
            reveal,
        };
        let cold = warm.is_none();
        if cold {
            ot_id = crate::proto::scoring::ot_state_id(&params.session);
        }
        // As `score_start` does on a node, the owner's go starts the FI's run once the start is logged: the FI
        // computes nothing of a run before it (so none of its work hides in the owner's log write).
        let p0 = Instant::now();
        chan.send(GO)
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let mut guard = RunGuard {
            changes: None,
            still_paired: &|| true,
        };
        let done = drive_owner(&mut chan, &params, &attrs, warm.take(), &mut guard, "bench")
            .await
            .map_err(|e| Error::Refused(e.to_string()))?;
        let (ot, mut bytes) = (done.ot, done.bytes);
        for m in &done.release {
            send_msg(&mut chan, m, &mut bytes)
                .await
                .map_err(|e| Error::Refused(e.to_string()))?;
        }
        let owner_end = Instant::now();
        let next = (at_rest && run + 1 == runs).then(|| OtAtRest {
            id: ot_id.clone(),
            next_index: ot.next_index(),
            state: ot.to_rest(),
        });
        log("scoring-end", run, next.as_ref())?;
        warm = Some(ot);
        out.push((
            LoopbackRun {
                cold,
                millis: 0.0,
                protocol_millis: 0.0,
                bytes: bytes.sent + bytes.received,
            },
            [began, p0, owner_end, Instant::now()],
        ));
    }
    // Close this end while the FI closes its own, so neither waits out the other's close grace.
    let (_, fi) = tokio::join!(chan.close(), fi);
    let fi_ends =
        fi.map_err(|_| Error::Internal("the FI's thread ended without a result".into()))??;
    with_fi_ends(out, fi_ends)
}

/// The runs as the owner timed them (`[began, go, owner's end, end logged]`), each ended instead when both
/// sides held its outcome: the later of the owner's end and the FI's (`fi_ends`, one per run).
fn with_fi_ends(
    out: Vec<(LoopbackRun, [Instant; 4])>,
    fi_ends: Vec<Instant>,
) -> Result<Vec<LoopbackRun>, Error> {
    if fi_ends.len() != out.len() {
        return Err(Error::Internal(format!(
            "the FI finished {} runs of {}",
            fi_ends.len(),
            out.len()
        )));
    }
    // A run ends when both sides hold its outcome: the later of the owner's end and the FI's.
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
    Ok(out
        .into_iter()
        .zip(fi_ends)
        .map(
            |((run, [began, p0, owner_end, logged]), fi_end)| LoopbackRun {
                millis: ms(began, logged.max(fi_end)),
                protocol_millis: ms(p0, owner_end.max(fi_end)),
                ..run
            },
        )
        .collect())
}

/// Runs the FI's side on a runtime of its own in a thread of its own, as it would run in its own process: on a
/// runtime shared with the owner, a side busy making its matrix parts can hold the one thread that polls the
/// sockets, and the owner then receives nothing until the FI waits. The receiver gives its result.
fn run_apart<T: Send + 'static>(
    fi: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<Result<T, Error>>, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("duo-loopback-fi".into())
        .spawn(move || {
            let done = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(fi),
                Err(e) => Err(Error::Internal(format!("the FI's runtime: {e}"))),
            };
            let _ = tx.send(done);
        })?;
    Ok(rx)
}

/// The FI's side of [`loopback_runs`]: `runs` runs on one session, the first cold unless `rest` holds the
/// state of an earlier call (taken out of it before the first run; the last run's put back).
#[allow(clippy::too_many_arguments)]
async fn fi_side(
    url: String,
    key: crate::net::keys::Keypair,
    owner_fp: String,
    limits: crate::net::transport::Limits,
    bounds: Vec<Bounds>,
    model: FiModel,
    reveal: score::Reveal,
    runs: usize,
    rest: Option<crate::fi::FiHome>,
) -> Result<Vec<Instant>, Error> {
    use crate::net::transport::{self, Mode};
    let mut chan = transport::connect(&url, &key, Mode::Session, None, &owner_fp, &limits)
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    let (mut warm, mut ot_id) = match &rest {
        Some(home) => match home.take_ot_state("bench")? {
            Some((ot, id)) => (Some(ot), id),
            None => (None, String::new()),
        },
        None => (None, String::new()),
    };
    let mut ends = Vec::with_capacity(runs);
    for run in 0..runs {
        match chan.recv().await {
            Ok(Some(go)) if go == GO => {}
            other => {
                return Err(Error::Internal(format!(
                    "the FI expected the owner's go for run {run}, got {other:?}"
                )))
            }
        }
        let params = Params {
            session: session_id(chan.handshake_hash(), 0, run as u64),
            bounds: bounds.clone(),
            reveal,
        };
        if warm.is_none() {
            ot_id = crate::proto::scoring::ot_state_id(&params.session);
        }
        let (_, ot, _) = drive_fi(&mut chan, &params, &model, warm.take(), &mut |_| {})
            .await
            .map_err(|e| Error::Refused(e.to_string()))?;
        ends.push(Instant::now());
        warm = Some(ot);
    }
    if let (Some(home), Some(ot)) = (&rest, &warm) {
        home.put_ot_state("bench", &ot_id, ot)?;
    }
    chan.close().await;
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_runs_go_cold_then_warm_and_log_each_run() {
        let dir = tempfile::tempdir().unwrap();
        let runs = loopback_runs(
            8,
            score::Reveal::Decision,
            3,
            Some(dir.path()),
            store::Sync::Normal,
        )
        .await
        .unwrap();
        assert_eq!(runs.len(), 3);
        assert!(runs[0].cold && !runs[1].cold && !runs[2].cold);
        // Warm runs skip the base OTs: 32 bytes from the FI and 64 per base OT from the owner, at least.
        assert!(runs[0].bytes >= runs[1].bytes + 32 + 64 * 128);
        assert_eq!(runs[1].bytes, runs[2].bytes);
        let conn = Store::open(dir.path(), store::Sync::Normal).unwrap();
        let kinds: Vec<String> = conn
            .log_entries(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .filter(|k| k != store::integrity::STATE_BOUND)
            .collect();
        assert_eq!(
            kinds,
            ["scoring-start", "scoring-end"].repeat(3),
            "one durable start and end per run"
        );
    }

    /// With both sides' states at rest, a later call (a new session) starts warm where the last one stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_session_continues_from_the_states_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (log, rest) = (dir.path().join("owner"), dir.path().join("rest"));
        let run = || {
            loopback_runs_at_rest(
                8,
                score::Reveal::Decision,
                1,
                Some(&log),
                store::Sync::Normal,
                Some(&rest),
            )
        };
        let first = run().await.unwrap();
        let later = run().await.unwrap();
        let again = run().await.unwrap();
        assert!(first[0].cold && !later[0].cold && !again[0].cold);
        assert_eq!(later[0].bytes, again[0].bytes);
        assert!(first[0].bytes > later[0].bytes);
    }
}
