//! One FI working with many owners: a **batch** asks the same question (a release of an expression, plaintext or
//! DP, or a private scoring run) of a selection of paired owner nodes, concurrently up to a bound, and keeps
//! each owner's outcome in the FI home.
//!
//! # The batch record
//!
//! A batch lives in `batches/ID.json` in the FI home: what it asks, and per owner (by pairing name) the request
//! id the owner gave it, whether the request went out, and the outcome as last seen. The file is replaced whole
//! (written to a temporary file, then renamed) after every change of an owner's state, so a batch stopped at any
//! point (Ctrl-C, a crash, a lost network) is on disk as far as it got. While a batch runs, the process holds
//! an exclusive lock on `batches/ID.lock`; a second run of the same batch (another process, or another task)
//! is refused until the first ends.
//!
//! # Running a batch again
//!
//! [`run_batch`] continues where the batch stopped and **never asks an owner twice**:
//!
//! - an owner whose request was answered (approved, denied, over budget) is not contacted;
//! - an owner with a request id on record (pending, or unreachable after it was asked) gets a status poll of
//!   that request, never a new one (an approved scoring request not yet run is run);
//! - an owner the batch never reached (unreachable, or a failure before the request went out) is asked;
//! - an owner whose release request went out but whose reply was lost (the connection dropped between the
//!   two) is first looked for on the owner: request ids are this FI's own numbering there, so the request is
//!   the first one after the last id this FI saw with the batch's backend, reason and lineage. Found, it is
//!   polled; not there (it never arrived), it is asked;
//! - an owner whose *scoring* request went out but whose reply was lost ([`OwnerOutcome::Unknown`]) is not
//!   asked again: the owner may hold the request, and the commitment's salt that a run needs went with the
//!   lost reply. The outcome says so; `duo fi requests --owner NAME` and `duo fi result ID` find it.
//!
//! Receipts are verified and kept per owner by [`Client`] as for a single request.

use crate::error::Error;
use crate::fi::client::{Client, ScoreLimit};
use crate::fi::home::FiHome;
use crate::fi::model::ModelFile;
use crate::proto::request::{DpParams, RequestState, RequestView};
use crate::proto::scoring::ScoreOutcome;
use duo_engine::Answer;
use duo_policies::{Backend, Reveal};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The default bound on owners worked with at once.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The default time to wait for an owner node to accept a session before calling it unreachable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a batch asks of every owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchAsk {
    /// The release of an expression (the syntax of `duo fi request`).
    Release {
        /// The expression.
        expr: String,
        /// `plaintext` or `dp`.
        backend: Backend,
        /// For `dp`: what to spend.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dp: Option<DpParams>,
        /// Why (the owner sees it).
        reason: String,
    },
    /// A private scoring run of a model.
    Score {
        /// The model (kept in the FI home, as the commitments' openings are).
        model: ModelFile,
        /// What a run reveals.
        reveal: Reveal,
        /// Why (the owner sees it).
        reason: String,
    },
}

/// An owner's outcome in a batch, as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OwnerOutcome {
    /// Not asked yet.
    NotAsked,
    /// Approved: the answer of a release, or the output of a scoring run (its receipt is in the FI's log).
    Approved {
        /// A release's answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<Answer>,
        /// A scoring run's output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<ScoreOutcome>,
        /// The answer's static type (for showing it: money in dollars).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ty: Option<duo_engine::Type>,
    },
    /// Waiting for the owner's decision.
    Pending,
    /// Denied, with the owner's (or the policy's) reason.
    Denied {
        /// Why.
        reason: String,
    },
    /// Denied because a privacy budget would be exceeded (or none is set), with the numbers when the owner gave
    /// them.
    OverBudget {
        /// The owner node's words.
        reason: String,
        /// What was asked for, in the owner's measure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested: Option<String>,
        /// What was left under the binding cap.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remaining: Option<String>,
    },
    /// The owner node could not be reached (tried again when the batch runs again).
    Unreachable {
        /// The connection's error.
        error: String,
    },
    /// Something other than the owner's decision stopped it (an expression the owner's data does not have, a
    /// limit, a refused session); tried again when the batch runs again if no request went out.
    Failed {
        /// What happened.
        error: String,
    },
    /// The request went out but its reply was lost: the owner may hold it. Not asked again.
    Unknown {
        /// What happened.
        error: String,
    },
}

impl OwnerOutcome {
    /// The outcome's name: `not_asked`, `approved`, `pending`, `denied`, `over_budget`, `unreachable`,
    /// `failed` or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            OwnerOutcome::NotAsked => "not_asked",
            OwnerOutcome::Approved { .. } => "approved",
            OwnerOutcome::Pending => "pending",
            OwnerOutcome::Denied { .. } => "denied",
            OwnerOutcome::OverBudget { .. } => "over_budget",
            OwnerOutcome::Unreachable { .. } => "unreachable",
            OwnerOutcome::Failed { .. } => "failed",
            OwnerOutcome::Unknown { .. } => "unknown",
        }
    }

    /// Whether the owner answered (approved, denied, over budget): nothing is left to do for it.
    pub fn answered(&self) -> bool {
        matches!(
            self,
            OwnerOutcome::Approved { .. }
                | OwnerOutcome::Denied { .. }
                | OwnerOutcome::OverBudget { .. }
        )
    }
}

/// One owner's line of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerEntry {
    /// The pairing's name.
    pub owner: String,
    /// The request id the owner gave this batch's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    /// Whether the request went out (set before it is sent).
    #[serde(default)]
    pub sent: bool,
    /// The outcome as last seen.
    #[serde(flatten)]
    pub outcome: OwnerOutcome,
    /// How many times this owner was worked with (sessions tried).
    #[serde(default)]
    pub attempts: u32,
    /// When its state last changed (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

/// A batch as kept in the FI home.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The batch id (`duo fi request ... --batch ID`).
    pub id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// What it asks.
    pub ask: BatchAsk,
    /// Per owner, in the order selected.
    pub owners: Vec<OwnerEntry>,
}

impl Batch {
    /// Whether every owner answered.
    pub fn complete(&self) -> bool {
        self.owners.iter().all(|o| o.outcome.answered())
    }

    /// How many owners have each outcome, by name, in a fixed order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let names = [
            "approved",
            "denied",
            "over_budget",
            "pending",
            "unreachable",
            "failed",
            "unknown",
            "not_asked",
        ];
        names
            .iter()
            .map(|n| {
                let k = self
                    .owners
                    .iter()
                    .filter(|o| o.outcome.name() == *n)
                    .count();
                (*n, k)
            })
            .filter(|(_, k)| *k > 0)
            .collect()
    }
}

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Owners worked with at once (at least 1).
    pub concurrency: usize,
    /// How long to wait for each owner's decision of a request that goes to the owner.
    pub wait: Duration,
    /// How long to wait for an owner node to accept a session.
    pub connect_timeout: Duration,
    /// This FI's own limit on scoring runs per owner.
    pub score_limit: ScoreLimit,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            concurrency: DEFAULT_CONCURRENCY,
            wait: Duration::ZERO,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            score_limit: ScoreLimit::default(),
        }
    }
}

/// What a running batch reports, for a progress bar.
#[derive(Debug, Clone)]
pub enum BatchEvent {
    /// Work with this owner started (a session is being opened).
    Started {
        /// The pairing's name.
        owner: String,
    },
    /// Work with this owner ended, with this outcome.
    Finished {
        /// Its entry as now kept.
        entry: OwnerEntry,
    },
}

/// Something that watches a batch run (called from several tasks).
pub type Observer = Arc<dyn Fn(&BatchEvent) + Send + Sync>;

/// The owners a selection names: `all` (every pairing, in pairing order), a comma-separated list of pairing
/// names, or `@FILE` (one name a line; blank lines and lines starting with `#` skipped). Every name must be a
/// pairing of this home; a name given twice counts once.
pub fn select_owners(home: &FiHome, spec: &str) -> Result<Vec<String>, Error> {
    let pairings = home.pairings()?;
    let names: Vec<String> = if spec.trim() == "all" {
        pairings.iter().map(|p| p.name.clone()).collect()
    } else if let Some(file) = spec.strip_prefix('@') {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::NotFound(format!(
                "the owners file {file}: {e}; give one pairing name a line"
            ))
        })?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    } else {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    let mut unknown = Vec::new();
    for n in names {
        if out.contains(&n) {
            continue;
        }
        if !pairings.iter().any(|p| p.name == n) {
            unknown.push(n);
        } else {
            out.push(n);
        }
    }
    if !unknown.is_empty() {
        return Err(Error::NotFound(format!(
            "no pairing named {}; `duo fi owners` lists this FI's owners",
            unknown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if out.is_empty() {
        return Err(Error::NotFound(
            "the selection names no owner; pair with `duo fi pair URL CODE --name NAME` first"
                .into(),
        ));
    }
    Ok(out)
}

fn batches_dir(home: &FiHome) -> PathBuf {
    home.dir().join("batches")
}

fn batch_path(home: &FiHome, id: &str) -> PathBuf {
    batches_dir(home).join(format!("{id}.json"))
}

/// A batch id is made here: letters, digits and `-` only (it names files).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Make a new batch asking `ask` of `owners` (pairing names, as [`select_owners`] gives them), and keep it.
pub fn new_batch(home: &FiHome, ask: BatchAsk, owners: &[String]) -> Result<Batch, Error> {
    let now = chrono::Utc::now();
    let id = format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%S"),
        rand::random::<u16>()
    );
    let batch = Batch {
        id,
        created_at: crate::proto::now_text(),
        ask,
        owners: owners
            .iter()
            .map(|o| OwnerEntry {
                owner: o.clone(),
                request: None,
                sent: false,
                outcome: OwnerOutcome::NotAsked,
                attempts: 0,
                updated_at: crate::proto::now_text(),
            })
            .collect(),
    };
    write_batch(home, &batch)?;
    Ok(batch)
}

/// The batch with this id.
pub fn load_batch(home: &FiHome, id: &str) -> Result<Batch, Error> {
    if !valid_id(id) {
        return Err(Error::NotFound(format!("no batch `{id}`")));
    }
    match std::fs::read(batch_path(home, id)) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!(
            "no batch `{id}` in this FI home; `duo fi batches` lists them"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Every batch in the FI home, oldest first.
pub fn batches(home: &FiHome) -> Result<Vec<Batch>, Error> {
    let dir = batches_dir(home);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in rd {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            out.push(serde_json::from_slice::<Batch>(&std::fs::read(&path)?)?);
        }
    }
    out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(out)
}

/// The newest batch asking exactly `ask` that has owners left to finish: what `--resume` continues.
pub fn latest_unfinished(home: &FiHome, ask: &BatchAsk) -> Result<Option<Batch>, Error> {
    Ok(batches(home)?
        .into_iter()
        .rev()
        .find(|b| &b.ask == ask && !b.complete()))
}

fn write_batch(home: &FiHome, batch: &Batch) -> Result<(), Error> {
    let dir = batches_dir(home);
    crate::home::private_dir(home.dir())?;
    crate::home::private_dir(&dir)?;
    crate::home::write_private(
        &batch_path(home, &batch.id),
        &serde_json::to_vec_pretty(batch)?,
    )?;
    Ok(())
}

/// The lock a running batch holds on `batches/ID.lock`, released when dropped.
struct BatchLock {
    file: std::fs::File,
}

impl BatchLock {
    fn take(home: &FiHome, id: &str) -> Result<BatchLock, Error> {
        let path = batches_dir(home).join(format!("{id}.lock"));
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(BatchLock { file }),
            Err(fs4::TryLockError::WouldBlock) => Err(Error::Refused(format!(
                "batch {id} is running in another process; wait for it to end, then run it again to continue"
            ))),
            Err(fs4::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

impl Drop for BatchLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

/// The batch as it runs: the record, written whole after every change.
struct Shared {
    home: FiHome,
    batch: Mutex<Batch>,
}

impl Shared {
    /// Replace this owner's entry and write the batch.
    fn update(&self, entry: &OwnerEntry) -> Result<(), Error> {
        let mut b = self
            .batch
            .lock()
            .map_err(|_| Error::Internal("batch lock poisoned".into()))?;
        if let Some(e) = b.owners.iter_mut().find(|e| e.owner == entry.owner) {
            *e = entry.clone();
            e.updated_at = crate::proto::now_text();
        }
        write_batch(&self.home, &b)
    }
}

/// Run (or continue) batch `id`: every owner not yet answered is worked with, at most `opts.concurrency` at
/// once (see the [module docs](self) for what is asked again and what is not). Returns the batch as kept.
/// Errors are the batch's own (no such batch, running elsewhere, the record cannot be written); an owner's
/// trouble is its outcome.
pub async fn run_batch(
    home: &FiHome,
    id: &str,
    opts: &BatchOptions,
    observer: Option<Observer>,
) -> Result<Batch, Error> {
    let _lock = BatchLock::take(home, id)?;
    let batch = load_batch(home, id)?;
    let todo: Vec<OwnerEntry> = batch
        .owners
        .iter()
        .filter(|e| !e.outcome.answered())
        .cloned()
        .collect();
    let ask = Arc::new(batch.ask.clone());
    let shared = Arc::new(Shared {
        home: home.clone(),
        batch: Mutex::new(batch),
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for entry in todo {
        let (ask, shared, permits) = (ask.clone(), shared.clone(), permits.clone());
        let (opts, observer) = (opts.clone(), observer.clone());
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| Error::Internal("batch semaphore closed".into()))?;
            if let Some(o) = &observer {
                o(&BatchEvent::Started {
                    owner: entry.owner.clone(),
                });
            }
            let done = work_with(&shared, &ask, entry, &opts).await?;
            if let Some(o) = &observer {
                o(&BatchEvent::Finished { entry: done });
            }
            Ok::<(), Error>(())
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(|e| Error::Internal(format!("a batch task failed: {e}")));
        if let Err(e) = r.and_then(|x| x) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let b = shared
        .batch
        .lock()
        .map_err(|_| Error::Internal("batch lock poisoned".into()))?
        .clone();
    Ok(b)
}

/// Whether an error means the owner node was not reached (so nothing was asked of it).
fn is_unreachable(e: &Error) -> bool {
    matches!(e, Error::Transport(_) | Error::Io(_))
}

/// One owner's part of a batch: its new entry, kept in the record.
async fn work_with(
    shared: &Shared,
    ask: &BatchAsk,
    mut e: OwnerEntry,
    opts: &BatchOptions,
) -> Result<OwnerEntry, Error> {
    if e.sent && e.request.is_none() && matches!(ask, BatchAsk::Score { .. }) {
        // A scoring request asked, its reply lost: never asked again (module docs).
        if !matches!(e.outcome, OwnerOutcome::Unknown { .. }) {
            e.outcome = OwnerOutcome::Unknown {
                error: "the request went out but its reply was lost".into(),
            };
            shared.update(&e)?;
        }
        return Ok(e);
    }
    e.attempts += 1;
    let connect = Client::connect(&shared.home, Some(&e.owner));
    let mut c = match tokio::time::timeout(opts.connect_timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(err)) => {
            e.outcome = if is_unreachable(&err) {
                OwnerOutcome::Unreachable {
                    error: err.to_string(),
                }
            } else {
                OwnerOutcome::Failed {
                    error: err.to_string(),
                }
            };
            shared.update(&e)?;
            return Ok(e);
        }
        Err(_) => {
            e.outcome = OwnerOutcome::Unreachable {
                error: format!("no session within {}s", opts.connect_timeout.as_secs_f64()),
            };
            shared.update(&e)?;
            return Ok(e);
        }
    };
    c.set_score_limit(opts.score_limit);
    let r = match ask {
        BatchAsk::Release {
            expr,
            backend,
            dp,
            reason,
        } => release(shared, &mut c, &mut e, expr, *backend, dp, reason, opts).await,
        BatchAsk::Score {
            model,
            reveal,
            reason,
        } => score(shared, &mut c, &mut e, model, *reveal, reason, opts).await,
    };
    c.close().await;
    if let Err(err) = r {
        e.outcome = match (&err, e.request, e.sent) {
            // The request went out and no id came back: the owner may hold it.
            (_, None, true) if is_unreachable(&err) => OwnerOutcome::Unknown {
                error: err.to_string(),
            },
            _ if is_unreachable(&err) => OwnerOutcome::Unreachable {
                error: err.to_string(),
            },
            _ => OwnerOutcome::Failed {
                error: err.to_string(),
            },
        };
    }
    shared.update(&e)?;
    Ok(e)
}

/// Mark the request as going out, in the record, before it is sent.
fn mark_sent(shared: &Shared, e: &mut OwnerEntry) -> Result<(), Error> {
    e.sent = true;
    shared.update(e)
}

#[allow(clippy::too_many_arguments)]
async fn release(
    shared: &Shared,
    c: &mut Client,
    e: &mut OwnerEntry,
    expr: &str,
    backend: Backend,
    dp: &Option<DpParams>,
    reason: &str,
    opts: &BatchOptions,
) -> Result<(), Error> {
    let view = match e.request {
        Some(id) => c.status(id, opts.wait).await?,
        None => {
            let p = c.expr(expr).await?;
            let lost = if e.sent {
                find_lost(shared, c, &e.owner, &p, backend, reason).await?
            } else {
                None
            };
            if let Some(v) = lost {
                e.request = Some(v.id);
                shared.update(e)?;
                if v.state == RequestState::Pending && !opts.wait.is_zero() {
                    c.status(v.id, opts.wait).await?
                } else {
                    v
                }
            } else {
                ask_release(shared, c, e, &p, backend, dp, reason, opts).await?
            }
        }
    };
    e.request = Some(view.id);
    e.outcome = classify(&view, None);
    Ok(())
}

/// How many request ids past the last one this FI saw are looked at for a request whose reply was lost.
const LOST_SCAN: u64 = 64;

/// A release request this batch sent to `owner` whose reply was lost, found on the owner node: request ids are
/// this FI's own numbering there (1, 2, 3, ...), so a request it never saw the reply of has an id after the
/// last one it saw; the first of those with this backend, reason and lineage is it. `None` when the owner
/// holds no such request (it never arrived): then asking is asking once.
async fn find_lost(
    shared: &Shared,
    c: &mut Client,
    owner: &str,
    p: &crate::fi::client::Pointer,
    backend: Backend,
    reason: &str,
) -> Result<Option<RequestView>, Error> {
    let seen = shared
        .home
        .requests()?
        .iter()
        .filter(|r| r.owner == owner)
        .map(|r| r.id)
        .max()
        .unwrap_or(0);
    for id in seen + 1..=seen + LOST_SCAN {
        match c.status(id, Duration::ZERO).await {
            Ok(v)
                if v.backend == backend && v.reason == reason && v.description == p.description =>
            {
                return Ok(Some(v));
            }
            Ok(_) => continue,
            Err(Error::Remote { code, .. }) if code == "not_found" => return Ok(None),
            Err(err) => return Err(err),
        }
    }
    Err(Error::Refused(format!(
        "more than {LOST_SCAN} requests of this FI on `{owner}` were never seen here; find this batch's with \
         `duo fi requests --owner {owner}` and `duo fi result ID --owner {owner}`"
    )))
}

/// Send the release request (marked as sent in the record first) and read the owner's reply.
#[allow(clippy::too_many_arguments)]
async fn ask_release(
    shared: &Shared,
    c: &mut Client,
    e: &mut OwnerEntry,
    p: &crate::fi::client::Pointer,
    backend: Backend,
    dp: &Option<DpParams>,
    reason: &str,
    opts: &BatchOptions,
) -> Result<RequestView, Error> {
    mark_sent(shared, e)?;
    let asked = match dp {
        Some(params) => c.request_dp(p, params.clone(), reason).await,
        None => c.request(p, backend, reason).await,
    };
    let v = match asked {
        Ok(v) => v,
        // The owner refused to take the request (a limit, a bad parameter): none was made.
        Err(err @ Error::Remote { .. }) => {
            e.sent = false;
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    e.request = Some(v.id);
    shared.update(e)?;
    if v.state == RequestState::Pending && !opts.wait.is_zero() {
        c.status(v.id, opts.wait).await
    } else {
        Ok(v)
    }
}

async fn score(
    shared: &Shared,
    c: &mut Client,
    e: &mut OwnerEntry,
    model: &ModelFile,
    reveal: Reveal,
    reason: &str,
    opts: &BatchOptions,
) -> Result<(), Error> {
    let view = match e.request {
        Some(id) => c.status(id, opts.wait).await?,
        None => {
            mark_sent(shared, e)?;
            let v = match c.ask_score(model, reveal, reason).await {
                Ok(v) => v,
                Err(err @ (Error::Remote { .. } | Error::Refused(_) | Error::Limit(_))) => {
                    // Refused before or by the owner without a request made.
                    e.sent = false;
                    return Err(err);
                }
                Err(err) => return Err(err),
            };
            e.request = Some(v.id);
            shared.update(e)?;
            if v.state == RequestState::Pending && !opts.wait.is_zero() {
                c.status(v.id, opts.wait).await?
            } else {
                v
            }
        }
    };
    if view.state != RequestState::Approved {
        e.outcome = classify(&view, None);
        return Ok(());
    }
    let report = c.score_run(view.id, model, &mut |_| {}).await?;
    e.outcome = classify(&view, Some(report.outcome));
    Ok(())
}

/// An owner's reply as a batch outcome. A denial for budget is told apart by the view's budget numbers
/// (`RequestView::budget`); from nodes that predate them, by the owner's words (the ledger's refusal: "... would
/// be exceeded: requested X, remaining Y ..." or "no privacy budget is set").
fn classify(v: &RequestView, score: Option<ScoreOutcome>) -> OwnerOutcome {
    match v.state {
        RequestState::Approved => OwnerOutcome::Approved {
            answer: v.answer.clone(),
            ty: v.answer.as_ref().map(|_| v.ty.clone()),
            score,
        },
        RequestState::Pending => OwnerOutcome::Pending,
        RequestState::Denied => {
            let reason = v.why.clone().unwrap_or_default();
            if let Some(b) = &v.budget {
                OwnerOutcome::OverBudget {
                    requested: Some(b.requested.clone()),
                    remaining: Some(b.remaining.clone()),
                    reason,
                }
            } else if reason.contains("would be exceeded")
                || reason.contains("no privacy budget is set")
            {
                OwnerOutcome::OverBudget {
                    requested: word_after(&reason, "requested "),
                    remaining: word_after(&reason, "remaining "),
                    reason,
                }
            } else {
                OwnerOutcome::Denied { reason }
            }
        }
    }
}

/// The word after `key` in `text`, without a trailing comma.
fn word_after(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(key)? + key.len()..];
    let w = rest
        .split_whitespace()
        .next()?
        .trim_end_matches([',', ')', ';']);
    (!w.is_empty()).then(|| w.to_string())
}

/// Where batch records are kept in an FI home directory (for the docs and tests).
pub fn batch_file(fi_dir: &Path, id: &str) -> PathBuf {
    fi_dir.join("batches").join(format!("{id}.json"))
}

/// The default time a probe of an owner node waits for a session.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pairing as `duo fi owners` lists it: the record, and whether the owner node answered a probe now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerStatus {
    /// The pairing (name, address, key fingerprint, principal, paired since, last seen).
    #[serde(flatten)]
    pub pairing: crate::fi::home::PairingRecord,
    /// When the pairing expires: not known to the FI (the owner node does not say), so always absent today.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Whether a session opened within the probe's timeout (`None`: not probed).
    #[serde(default)]
    pub reachable: Option<bool>,
    /// Why the probe failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_error: Option<String>,
}

/// Every pairing of the home, each probed (when `timeout` is given) by opening a session and closing it, all at
/// once (at most `concurrency` at a time), each within `timeout`. A probe that opens a session records it as
/// the pairing's `last_seen`.
pub async fn owners_status(
    home: &FiHome,
    timeout: Option<Duration>,
    concurrency: usize,
) -> Result<Vec<OwnerStatus>, Error> {
    let pairings = home.pairings()?;
    let Some(timeout) = timeout else {
        return Ok(pairings
            .into_iter()
            .map(|p| OwnerStatus {
                pairing: p,
                expires_at: None,
                reachable: None,
                probe_error: None,
            })
            .collect());
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, p) in pairings.iter().enumerate() {
        let (home, name, permits) = (home.clone(), p.name.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let r = match tokio::time::timeout(timeout, Client::connect(&home, Some(&name))).await {
                Ok(Ok(c)) => {
                    c.close().await;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no session within {}s", timeout.as_secs_f64())),
            };
            (i, r)
        });
    }
    let mut results: Vec<Option<Result<(), String>>> = vec![None; pairings.len()];
    while let Some(r) = tasks.join_next().await {
        if let Ok((i, r)) = r {
            results[i] = Some(r);
        }
    }
    // Read again: the probes wrote `last_seen`.
    let fresh = home.pairings()?;
    Ok(pairings
        .into_iter()
        .zip(results)
        .map(|(p, r)| {
            let p = fresh
                .iter()
                .find(|f| f.name == p.name)
                .cloned()
                .unwrap_or(p);
            let r = r.unwrap_or_else(|| Err("the probe did not finish".into()));
            OwnerStatus {
                pairing: p,
                expires_at: None,
                reachable: Some(r.is_ok()),
                probe_error: r.err(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fi::home::PairingRecord;

    fn home_with(names: &[&str]) -> (tempfile::TempDir, FiHome) {
        let dir = tempfile::tempdir().unwrap();
        let home = FiHome::new(dir.path());
        for n in names {
            home.save(PairingRecord {
                name: (*n).into(),
                url: "ws://127.0.0.1:1".into(),
                fingerprint: "ab".repeat(32),
                principal: "Acme".into(),
                paired_at: "2025-01-01T00:00:00Z".into(),
                signing_key: None,
                last_seen: None,
            })
            .unwrap();
        }
        (dir, home)
    }

    #[test]
    fn a_selection_is_all_a_list_or_a_file_of_known_names() {
        let (dir, home) = home_with(&["a", "b", "c"]);
        assert_eq!(select_owners(&home, "all").unwrap(), ["a", "b", "c"]);
        assert_eq!(select_owners(&home, "c, a,c").unwrap(), ["c", "a"]);
        let file = dir.path().join("owners.txt");
        std::fs::write(&file, "# mine\nb\n\n a \n").unwrap();
        assert_eq!(
            select_owners(&home, &format!("@{}", file.display())).unwrap(),
            ["b", "a"]
        );
        let err = select_owners(&home, "a,zz").unwrap_err().to_string();
        assert!(err.contains("`zz`"), "{err}");
        assert!(select_owners(&home, " , ").is_err());
    }

    #[test]
    fn a_budget_denial_is_told_apart_with_its_numbers() {
        let view = |why: &str| RequestView {
            id: 3,
            state: RequestState::Denied,
            backend: Backend::Dp,
            reason: "r".into(),
            description: "d".into(),
            answer: None,
            why: Some(why.into()),
            decided_by: Some("policy".into()),
            ty: duo_engine::Type::Scalar {
                dtype: duo_engine::DataType::I64,
                bounds: None,
            },
            receipt: None,
            cost: None,
            accuracy95: None,
            budget: None,
            items: Vec::new(),
        };
        let over = classify(
            &view("the global budget would be exceeded: requested 0.2, remaining 0.1 (spent 0.9 of 1 epsilon)"),
            None,
        );
        assert_eq!(
            over,
            OwnerOutcome::OverBudget {
                reason: "the global budget would be exceeded: requested 0.2, remaining 0.1 (spent 0.9 of 1 epsilon)"
                    .into(),
                requested: Some("0.2".into()),
                remaining: Some("0.1".into()),
            }
        );
        // The numbers on the wire win over the words, whatever the words say.
        let mut numbered = view("refused");
        numbered.budget = Some(crate::proto::request::BudgetShortfall {
            scope: "global".into(),
            name: None,
            measure: "epsilon".into(),
            cap: "1".into(),
            spent: "0.9".into(),
            requested: "0.2".into(),
            remaining: "0.1".into(),
        });
        assert_eq!(
            classify(&numbered, None),
            OwnerOutcome::OverBudget {
                reason: "refused".into(),
                requested: Some("0.2".into()),
                remaining: Some("0.1".into()),
            }
        );
        assert_eq!(
            classify(&view("subscriptions are private"), None).name(),
            "denied"
        );
    }

    /// An owner whose scoring request went out without a reply coming back is not contacted again (the
    /// commitment's salt went with the lost reply): its pairing cannot be connected to, so any attempt would
    /// make it `unreachable`, not `unknown`.
    #[tokio::test]
    async fn an_owner_asked_to_score_without_a_reply_is_not_asked_again() {
        let (_dir, home) = home_with(&["a", "b"]);
        let model = ModelFile::parse(
            "bias = 0.0\nthreshold = 0.5\n[weights]\nrent_on_time_ratio_12m = 1.0\n",
        )
        .unwrap();
        let ask = BatchAsk::Score {
            model,
            reveal: Reveal::Decision,
            reason: "r".into(),
        };
        let mut b = new_batch(&home, ask, &["a".into(), "b".into()]).unwrap();
        b.owners[0].sent = true;
        b.owners[0].attempts = 1;
        write_batch(&home, &b).unwrap();
        let opts = BatchOptions {
            connect_timeout: Duration::from_secs(2),
            ..BatchOptions::default()
        };
        let done = run_batch(&home, &b.id, &opts, None).await.unwrap();
        assert_eq!(done.owners[0].outcome.name(), "unknown", "{done:?}");
        assert_eq!(done.owners[0].attempts, 1);
        assert_eq!(done.owners[1].outcome.name(), "unreachable", "{done:?}");
        assert_eq!(done.owners[1].attempts, 1);
    }

    #[test]
    fn a_batch_runs_in_one_process_at_a_time() {
        let (_dir, home) = home_with(&["a"]);
        let b = new_batch(
            &home,
            BatchAsk::Release {
                expr: "x".into(),
                backend: Backend::Plaintext,
                dp: None,
                reason: "r".into(),
            },
            &["a".into()],
        )
        .unwrap();
        let held = BatchLock::take(&home, &b.id).unwrap();
        let err = BatchLock::take(&home, &b.id).err().unwrap().to_string();
        assert!(err.contains("running in another process"), "{err}");
        drop(held);
        BatchLock::take(&home, &b.id).unwrap();
        assert_eq!(load_batch(&home, &b.id).unwrap(), b);
        assert!(load_batch(&home, "../x").is_err());
    }
}
