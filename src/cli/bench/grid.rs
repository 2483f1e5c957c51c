//! `duo bench grid`: the grid at scale on loopback. One `duo relay` (a child process, so its memory is its own),
//! N owner nodes in this process (each with its own store, node key and relay link, on one tokio runtime), one
//! FI paired with every owner through the relay. It measures a private decision run to every owner, a DP
//! question to every owner (each owner's ledger checked), and a second DP question during which 10% of the
//! owners stop and the relay is killed and restarted, followed by the FI's rerun of what did not finish.

use super::load::rss_kib;
use crate::cli::out::errln;
use anyhow::{bail, Context, Result};
use clap::Args;
use duo::node::fi::{self as client, Client, FiHome};
use duo::node::owner::{self, RunningNode, ServeConfig};
use duo::node::proto::request::{DpParams, RequestState};
use duo::node::relay::RelayTarget;
use duo::node::store::prelude::*;
use duo::policies::{Amount, Reveal, Scope};
use duo_testkit::policy::GRID_POLICY;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;

/// The DP questions asked of every owner, and what each costs.
const QUESTIONS: [&str; 2] = [
    "count(filter(transactions, category == \"nsf_fee\"))",
    "sum(clamp(filter(transactions, category == \"income\").amount, 0, 500000))",
];
const EPSILON: f64 = 0.1;
/// The FI's name at every owner.
const FI_NAME: &str = "Grid Bank";

/// Options of `duo bench grid`.
#[derive(Args, Debug)]
pub struct GridArgs {
    /// Owner nodes (in this process), each reachable only through the relay.
    #[arg(long, default_value_t = 200)]
    owners: usize,
    /// Owners the FI works with at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One fan-out over the owners.
#[derive(Debug, Default, Serialize)]
pub struct Phase {
    /// Owners that gave their result.
    pub done: usize,
    /// Owners that could not be reached (or whose session failed).
    pub unreachable: usize,
    /// Other refusals.
    pub refused: usize,
    /// Wall time, ms.
    pub millis: u128,
    /// Bytes the relay forwarded during the phase.
    pub relay_bytes: u64,
}

/// What `duo bench grid` measured.
#[derive(Debug, Serialize)]
pub struct GridReport {
    /// Owner nodes.
    pub owners: usize,
    /// Owners the FI worked with at once.
    pub concurrency: usize,
    /// Whether this binary is an optimized build.
    pub release_build: bool,
    /// Making the owners, starting their nodes and connecting them to the relay, ms.
    pub setup_ms: u128,
    /// Pairing the FI with every owner through the relay (invite codes), ms.
    pub pair_ms: u128,
    /// (a) A private decision run to every owner.
    pub decision: Phase,
    /// The relay's resident memory with no owner, KiB.
    pub relay_rss_idle_kib: u64,
    /// Its resident memory after the decision runs (all owners connected), KiB.
    pub relay_rss_kib: u64,
    /// (b) One DP question to every owner.
    pub dp: Phase,
    /// (b) Owners whose ledger holds exactly one charge of the question's epsilon.
    pub dp_ledgers_exact: usize,
    /// (c) The second DP question, during which some owners stop and the relay restarts.
    pub disrupted: Phase,
    /// (c) Owners stopped during it.
    pub stopped: usize,
    /// (c) Owners reconnected to the restarted relay, and how long that took, ms.
    pub reconnected: usize,
    /// (c) See `reconnected`.
    pub reconnect_ms: u128,
    /// (c) The FI's rerun over the owners without an answer.
    pub rerun: Phase,
    /// (c) Running owners whose ledgers hold exactly both charges, once each.
    pub ledgers_exact: usize,
    /// (c) Running owners with exactly one scoring run in their log (none run twice).
    pub one_scoring_run: usize,
    /// Running owners (not stopped).
    pub running: usize,
}

impl GridReport {
    /// Every owner answered (a) and (b) with exact ledgers; after (c) every running owner is back, answered, and
    /// holds both charges and one scoring run exactly.
    pub fn checks_pass(&self) -> bool {
        self.decision.done == self.owners
            && self.dp.done == self.owners
            && self.dp_ledgers_exact == self.owners
            && self.reconnected == self.running
            && self.ledgers_exact == self.running
            && self.one_scoring_run == self.running
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let p = |name: &str, ph: &Phase| {
            format!(
                "{name}: {} done, {} unreachable, {} refused in {} ms; {} bytes through the relay\n",
                ph.done, ph.unreachable, ph.refused, ph.millis, ph.relay_bytes
            )
        };
        format!(
            "{} owner nodes behind one relay, {} at once ({} build); set-up {} ms, pairing {} ms\n{}relay \
             memory: {} KiB idle, {} KiB with the owners connected\n{}  ledgers exact: {}/{}\n{}  {} owners \
             stopped; {} owners back on the restarted relay in {} ms\n{}  running owners with both charges \
             exactly once: {}/{}; with exactly one scoring run: {}/{}\n",
            self.owners,
            self.concurrency,
            if self.release_build { "release" } else { "debug" },
            self.setup_ms,
            self.pair_ms,
            p("(a) private decision to every owner", &self.decision),
            self.relay_rss_idle_kib,
            self.relay_rss_kib,
            p("(b) one DP question to every owner", &self.dp),
            self.dp_ledgers_exact,
            self.owners,
            p("(c) a second DP question, owners stopping and the relay restarting", &self.disrupted),
            self.stopped,
            self.reconnected,
            self.reconnect_ms,
            p("(c) the FI's rerun of the rest", &self.rerun),
            self.ledgers_exact,
            self.running,
            self.one_scoring_run,
            self.running,
        )
    }
}

/// `duo relay` as a child process, its last `--json` counts, and how to restart it on the same address.
struct RelayChild {
    home: PathBuf,
    listen: String,
    child: tokio::process::Child,
    pin: String,
    bytes: Arc<AtomicU64>,
    /// Owners connected, as of its last line of counts.
    owners: Arc<AtomicU64>,
    /// Bytes counted by relays that were stopped.
    before: u64,
}

impl RelayChild {
    async fn start(home: &Path, listen: &str, n: usize) -> Result<RelayChild> {
        let cap = (n + 16).to_string();
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--home")
            .arg(home)
            .args(["relay", "--listen", listen, "--every", "1", "--json"])
            .args(["--max-owners-per-source", &cap])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let out = child.stdout.take().context("the relay's output")?;
        let mut lines = tokio::io::BufReader::new(out).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the relay did not start within 10 s")??
            .context("the relay printed nothing")?;
        let first: serde_json::Value = serde_json::from_str(&first)?;
        let pin = first["relay"]
            .as_str()
            .context("the relay's pin")?
            .to_string();
        let bytes = Arc::new(AtomicU64::new(0));
        let owners = Arc::new(AtomicU64::new(0));
        let (counted, connected) = (bytes.clone(), owners.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    counted.store(v["bytes"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    connected.store(v["owners"].as_u64().unwrap_or(0), Ordering::Relaxed);
                }
            }
        });
        let listen = RelayTarget::parse(&pin)?.host_port().to_string();
        Ok(RelayChild {
            home: home.to_path_buf(),
            listen,
            child,
            pin,
            bytes,
            owners,
            before: 0,
        })
    }

    /// Bytes forwarded by this relay and the ones before it, as of its last line of counts (one a second).
    async fn bytes(&self) -> u64 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        self.before + self.bytes.load(Ordering::Relaxed)
    }

    fn rss(&self) -> u64 {
        self.child.id().map(rss_kib).unwrap_or(0)
    }

    /// `kill -9` the relay and start a new one on the same address with the same key.
    async fn restart(&mut self, n: usize) -> Result<()> {
        let counted = self.bytes.load(Ordering::Relaxed);
        self.child.kill().await?;
        let mut next = RelayChild::start(&self.home, &self.listen, n).await?;
        next.before = self.before + counted;
        *self = next;
        Ok(())
    }
}

/// An owner made for the bench, and its node while it runs.
struct GridOwner {
    dir: PathBuf,
    node: Option<RunningNode>,
}

/// Make `n` owners: one with the sample data, copied (each copy gets its own node and signing keys).
fn make_owners(root: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let template = duo_testkit::sample_owner(
        &root.join("template"),
        GRID_POLICY,
        duo_testkit::owner::BENCH_SEED,
        duo::engine::sample::Profile::Reliable,
    )?;
    {
        let mut o = duo_testkit::owner::open_store(&template);
        let measure = o.store().ledger()?.measure();
        o.set_cap(&Scope::Global, "10".parse()?, measure)?;
    }
    let mut dirs = Vec::with_capacity(n);
    for i in 0..n {
        let dir = root.join(format!("o{i}")).join("owner");
        copy_dir(&template, &dir)?;
        for f in ["node.key", "signing.key", "serve.lock", "relay.url"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        owner::init(&dir, None)?;
        dirs.push(dir);
    }
    Ok(dirs)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    duo::node::home::private_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// How one owner answered in a fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Unreachable(String),
    Refused(String),
}

/// Run `job` for every owner in `which` with at most `limit` at once; the outcome per owner.
async fn fan_out<F, Fut>(which: &[usize], limit: usize, job: F) -> BTreeMap<usize, Outcome>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for &i in which {
        let sem = sem.clone();
        let fut = job(i);
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, o)) = done {
            out.insert(i, o);
        }
    }
    out
}

fn phase(outcomes: &BTreeMap<usize, Outcome>, millis: u128, relay_bytes: u64) -> Phase {
    let count = |f: fn(&Outcome) -> bool| outcomes.values().filter(|o| f(o)).count();
    Phase {
        done: count(|o| *o == Outcome::Done),
        unreachable: count(|o| matches!(o, Outcome::Unreachable(_))),
        refused: count(|o| matches!(o, Outcome::Refused(_))),
        millis,
        relay_bytes,
    }
}

fn name(i: usize) -> String {
    format!("owner-{i}")
}

/// A private decision with the test model, as the FI, with owner `i`.
async fn decide(home: Arc<FiHome>, i: usize) -> Outcome {
    let mut c = match Client::connect(&home, Some(&name(i))).await {
        Ok(c) => c,
        Err(e) => return Outcome::Unreachable(e.to_string()),
    };
    let model = duo_testkit::scoring::test_model(-1.0, 0.5, &[]);
    let quiet = &mut |_: &str| {};
    let r = c
        .score(
            &model,
            Reveal::Decision,
            "grid bench",
            Duration::from_secs(5),
            quiet,
        )
        .await;
    c.close().await;
    match r {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

/// DP question `q` to owner `i`.
async fn ask(home: Arc<FiHome>, i: usize, q: usize) -> Outcome {
    let mut c = match Client::connect(&home, Some(&name(i))).await {
        Ok(c) => c,
        Err(e) => return Outcome::Unreachable(e.to_string()),
    };
    let params = DpParams {
        epsilon: Some(EPSILON),
        ..DpParams::default()
    };
    let r = match c.expr(QUESTIONS[q]).await {
        Ok(p) => c.request_dp(&p, params, "grid bench").await,
        Err(e) => Err(e),
    };
    c.close().await;
    match r {
        Ok(v) if v.state == RequestState::Approved => Outcome::Done,
        Ok(v) => Outcome::Refused(format!("{:?}: {:?}", v.state, v.why)),
        // A session cut by the relay going away: the FI asks again later.
        Err(e) => Outcome::Unreachable(e.to_string()),
    }
}

fn spent(dir: &Path) -> Option<Amount> {
    let o = duo_testkit::owner::open_store(dir);
    Some(o.store().ledger().ok()?.account(&Scope::Global).spent)
}

fn scoring_runs(dir: &Path) -> usize {
    let o = duo_testkit::owner::open_store(dir);
    duo_testkit::owner::log_kinds(&o)
        .iter()
        .filter(|k| *k == "scoring-start")
        .count()
}

/// Start every owner's node through the relay and wait until all are connected to it.
async fn start_owners(dirs: &[PathBuf], pin: &str) -> Result<Vec<GridOwner>> {
    let target = RelayTarget::parse(pin)?;
    let mut owners = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let mut cfg = ServeConfig::new(dir);
        cfg.relay = Some(target.clone());
        let node = owner::spawn(cfg, duo_testkit::owner::loopback()).await?;
        owners.push(GridOwner {
            dir: dir.clone(),
            node: Some(node),
        });
    }
    for (i, o) in owners.iter().enumerate() {
        if let Some(node) = &o.node {
            if let Err(why) = node.relay_ready(Duration::from_secs(60)).await {
                bail!("owner {i} did not connect to the relay: {why}");
            }
        }
    }
    Ok(owners)
}

/// Pair the FI with every owner through the relay, `limit` at once.
async fn pair_all(home: &Arc<FiHome>, owners: &[GridOwner], limit: usize) -> Result<()> {
    let all: Vec<usize> = (0..owners.len()).collect();
    let urls: Vec<(PathBuf, String)> = owners
        .iter()
        .map(|o| {
            let url = o
                .node
                .as_ref()
                .and_then(RunningNode::relay_url)
                .unwrap_or_default();
            (o.dir.clone(), url)
        })
        .collect();
    let urls = Arc::new(urls);
    let paired = fan_out(&all, limit, |i| {
        let (home, urls) = (home.clone(), urls.clone());
        async move {
            let (dir, url) = &urls[i];
            let code = match owner::invite(dir, FI_NAME, Duration::from_secs(600)) {
                Ok(c) => c,
                Err(e) => return Outcome::Refused(e.to_string()),
            };
            match client::pair(&home, url, &code.to_string(), &name(i)).await {
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::Unreachable(e.to_string()),
            }
        }
    })
    .await;
    if let Some((i, o)) = paired.iter().find(|(_, o)| **o != Outcome::Done) {
        bail!("pairing with owner {i} through the relay failed: {o:?}");
    }
    Ok(())
}

/// Run the bench.
pub async fn grid(args: GridArgs) -> Result<GridReport> {
    if args.owners < 10 || args.owners > 1000 {
        bail!("--owners must be between 10 and 1000");
    }
    let n = args.owners;
    let k = args.concurrency.max(1);
    let tmp = tempfile::Builder::new().prefix("duo-grid-").tempdir()?;
    let start = Instant::now();
    let mut relay = RelayChild::start(&tmp.path().join("relay"), "127.0.0.1:0", n).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relay_rss_idle_kib = relay.rss();
    errln!("making {n} owners");
    let root = tmp.path().to_path_buf();
    let dirs = tokio::task::spawn_blocking(move || make_owners(&root, n)).await??;
    let mut owners = start_owners(&dirs, &relay.pin).await?;
    let setup_ms = start.elapsed().as_millis();
    errln!("{n} owners connected to the relay in {setup_ms} ms; pairing");
    let home = Arc::new(FiHome::new(&tmp.path().join("fi")));
    let t = Instant::now();
    pair_all(&home, &owners, k).await?;
    let pair_ms = t.elapsed().as_millis();
    let all: Vec<usize> = (0..n).collect();

    errln!("(a) a private decision to each owner");
    let (b0, t) = (relay.bytes().await, Instant::now());
    let out = fan_out(&all, k, |i| decide(home.clone(), i)).await;
    let millis = t.elapsed().as_millis();
    let decision = phase(&out, millis, relay.bytes().await.saturating_sub(b0));
    let relay_rss_kib = relay.rss();

    errln!("(b) one DP question to each owner");
    let (b0, t) = (relay.bytes().await, Instant::now());
    let out = fan_out(&all, k, |i| ask(home.clone(), i, 0)).await;
    let millis = t.elapsed().as_millis();
    let dp = phase(&out, millis, relay.bytes().await.saturating_sub(b0));
    let one: Amount = EPSILON.to_string().parse()?;
    let dp_ledgers_exact = dirs.iter().filter(|d| spent(d) == Some(one)).count();

    errln!("(c) a second DP question; 10% of owners stop and the relay restarts during it");
    let (b0, t) = (relay.bytes().await, Instant::now());
    let stopping: Vec<usize> = (0..n).filter(|i| i % 10 == 9).collect();
    let done = Arc::new(AtomicU64::new(0));
    let counted = done.clone();
    let job = |i| {
        let (home, done) = (home.clone(), counted.clone());
        async move {
            let o = ask(home, i, 1).await;
            done.fetch_add(1, Ordering::Relaxed);
            o
        }
    };
    let run = fan_out(&all, k, job);
    let disrupt = disrupt(&mut owners, &mut relay, &stopping, &done, n);
    let (out, reconnect) = tokio::join!(run, disrupt);
    let (reconnected, reconnect_ms) = reconnect?;
    let millis = t.elapsed().as_millis();
    let disrupted = phase(&out, millis, relay.bytes().await.saturating_sub(b0));

    errln!("(c) the FI's rerun of the owners without an answer");
    let rest: Vec<usize> = out
        .iter()
        .filter(|(_, o)| **o != Outcome::Done)
        .map(|(i, _)| *i)
        .collect();
    let (b0, t) = (relay.bytes().await, Instant::now());
    let again = fan_out(&rest, k, |i| ask(home.clone(), i, 1)).await;
    let rerun = phase(
        &again,
        t.elapsed().as_millis(),
        relay.bytes().await.saturating_sub(b0),
    );
    let two: Amount = (2.0 * EPSILON).to_string().parse()?;
    let running: Vec<&GridOwner> = owners.iter().filter(|o| o.node.is_some()).collect();
    let ledgers_exact = running
        .iter()
        .filter(|o| spent(&o.dir) == Some(two))
        .count();
    let one_scoring_run = running.iter().filter(|o| scoring_runs(&o.dir) == 1).count();
    let report = GridReport {
        owners: n,
        concurrency: k,
        release_build: !cfg!(debug_assertions),
        setup_ms,
        pair_ms,
        decision,
        relay_rss_idle_kib,
        relay_rss_kib,
        dp,
        dp_ledgers_exact,
        disrupted,
        stopped: stopping.len(),
        reconnected,
        reconnect_ms,
        rerun,
        ledgers_exact,
        one_scoring_run,
        running: running.len(),
    };
    for o in owners.iter_mut() {
        if let Some(node) = o.node.take() {
            node.shutdown().await;
        }
    }
    Ok(report)
}

/// During a fan-out: stop the owners in `stopping` once a quarter of the owners answered, and kill and restart
/// the relay once half did; then wait for the running owners to be back on it. How many came back, and when.
async fn disrupt(
    owners: &mut [GridOwner],
    relay: &mut RelayChild,
    stopping: &[usize],
    done: &AtomicU64,
    n: usize,
) -> Result<(usize, u128)> {
    let until = |share: usize| async move {
        while (done.load(Ordering::Relaxed) as usize) < n / share {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    until(4).await;
    for &i in stopping {
        if let Some(node) = owners.get_mut(i).and_then(|o| o.node.take()) {
            node.shutdown().await;
        }
    }
    until(2).await;
    relay.restart(n).await?;
    let t = Instant::now();
    let running = owners.iter().filter(|o| o.node.is_some()).count();
    let deadline = t + Duration::from_secs(90);
    while (relay.owners.load(Ordering::Relaxed) as usize) < running && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = relay.owners.load(Ordering::Relaxed) as usize;
    Ok((back, t.elapsed().as_millis()))
}
