//! `duo._duo`: the Rust core of Duo's Python SDK.
//!
//! One implementation: every call goes through duo-node's FI client ([`duo_node::fi`]), so pairing, the Noise
//! transport, the wire messages and receipt checking are the CLI's own. This module is deliberately thin: it
//! hands structured results to Python as JSON text (the wire's own serde forms), and the pure-Python package
//! `duo` (python/duo/) turns them into objects, decimals and DataFrames.
//!
//! Network waits run with the GIL released, so other Python threads run meanwhile: a session's calls on the
//! session's own single-threaded tokio runtime, driven by the calling thread (no hand-off to another thread
//! per request), and the module's functions (pairing, portfolio batches) on a runtime owned by the module. Errors become the Python exceptions of `duo.errors`, chosen by the wire error code; nothing here
//! panics on what an owner node sends.

use duo_node::fi::{self, portfolio, Client, FiHome};
use duo_node::proto::request::DpParams;
use duo_node::Error;
use duo_policies::Backend;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The module's runtime, for pairing, probes and portfolio batches: two workers are plenty for one analyst.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("duo-sdk")
        .enable_all()
        .build()
        .map_err(|e| {
            raise(
                "internal",
                &format!("cannot start the network runtime: {e}"),
            )
        })?;
    Ok(RT.get_or_init(|| rt))
}

/// The Python exception for a wire error code: `duo.errors.from_code(code, message)` picks the class.
fn raise(code: &str, message: &str) -> PyErr {
    Python::with_gil(|py| {
        let made = py
            .import("duo.errors")
            .and_then(|m| m.getattr("from_code"))
            .and_then(|f| f.call1((code, message)));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            // The pure-Python package is missing (the extension imported on its own): a plain RuntimeError.
            Err(_) => pyo3::exceptions::PyRuntimeError::new_err(format!("{code}: {message}")),
        }
    })
}

/// A node error as a Python exception carrying its wire code.
fn err(e: Error) -> PyErr {
    let code = match &e {
        Error::Transport(_) | Error::Io(_) => "transport",
        e => e.reported_code(),
    };
    let message = match &e {
        Error::Remote { message, .. } => message.clone(),
        e => e.to_string(),
    };
    raise(code, &message)
}

/// JSON text of a serializable value.
fn json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| raise("internal", &format!("json: {e}")))
}

/// The FI home under a Duo home directory (`None`: the CLI's default, `$DUO_HOME` or the XDG data dir).
fn fi_home(home: Option<PathBuf>) -> FiHome {
    let home = home
        .or_else(|| std::env::var_os("DUO_HOME").map(PathBuf::from))
        .unwrap_or_else(duo_node::home::default_home);
    FiHome::new(&fi::fi_dir(&home))
}

/// How often a thread waiting on the network checks for Ctrl-C (and other signals Python handles).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Run a future on the module's runtime with the GIL released ([`block_in`]).
fn block<T: Send>(py: Python<'_>, f: impl Future<Output = T> + Send) -> PyResult<T> {
    block_in(py, runtime()?, f)
}

/// Run a future on `rt` with the GIL released, checking for signals every [`SIGNAL_CHECK`]: a pending Ctrl-C
/// stops the wait and raises `KeyboardInterrupt` (the future is dropped). Python runs signal handlers in the
/// main thread only, so in other threads the check finds nothing and the wait goes on.
fn block_in<T: Send>(
    py: Python<'_>,
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = T> + Send,
) -> PyResult<T> {
    py.allow_threads(|| {
        rt.block_on(async {
            tokio::pin!(f);
            // The first check comes one period in: a quick call never takes the GIL back.
            let start = tokio::time::Instant::now() + SIGNAL_CHECK;
            let mut tick = tokio::time::interval_at(start, SIGNAL_CHECK);
            loop {
                tokio::select! {
                    out = &mut f => return Ok(out),
                    _ = tick.tick() => Python::with_gil(|py| py.check_signals())?,
                }
            }
        })
    })
}

/// A session's own runtime: one thread's worth, driven by whichever Python thread is waiting on the session.
///
/// A request is a write and a read on one socket; on the module's multi-thread runtime each call was handed
/// to a worker and its answer handed back, two thread wake-ups per request that cost more than the SDK's
/// whole Python layer. Here the waiting thread drives the socket itself. Tokio lets several threads call
/// `block_on` on one current-thread runtime: one drives it and the others wait their turn.
fn session_runtime() -> PyResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            raise(
                "internal",
                &format!("cannot start the network runtime: {e}"),
            )
        })
}

/// Pair with an owner node using its invite code; the pairing record as JSON.
#[pyfunction]
#[pyo3(signature = (url, code, home=None, name="owner"))]
fn pair(
    py: Python<'_>,
    url: &str,
    code: &str,
    home: Option<PathBuf>,
    name: &str,
) -> PyResult<String> {
    let fi = fi_home(home);
    // Refuse a second owner under a name in use before the code is spent, as `duo fi pair` does.
    let owner_key = duo_node::net::keys::InviteCode::parse(code)
        .map(|c| c.fingerprint)
        .map_err(|e| raise("refused", &format!("invite code: {e}")))?;
    if let Some(other) = fi.pairings().map_err(err)?.iter().find(|p| p.name == name) {
        if other.fingerprint != owner_key {
            return Err(raise(
                "refused",
                &format!(
                    "a pairing named `{name}` exists already, with another owner node ({}); pair this one \
                     under another name (owner=...)",
                    other.url
                ),
            ));
        }
    }
    let rec = block(py, fi::pair(&fi, url, code, name))?.map_err(err)?;
    json(&rec)
}

/// The pairings of an FI home, as JSON; with `probe` (seconds), each owner node is probed (all at once) and
/// the rows say whether it is reachable now.
#[pyfunction]
#[pyo3(signature = (home=None, probe=None))]
fn owners(py: Python<'_>, home: Option<PathBuf>, probe: Option<f64>) -> PyResult<String> {
    let fi = fi_home(home);
    let timeout = probe.map(|t| Duration::from_secs_f64(t.clamp(0.1, 600.0)));
    json(&block(py, portfolio::owners_status(&fi, timeout, 32))?.map_err(err)?)
}

/// Run a portfolio batch (see `duo_node::fi::portfolio`) and return it as JSON: a new one asking `ask` (JSON of
/// a `BatchAsk`) of `owners` (`all`, `a,b` or `@FILE`), or the batch `batch`, or (`resume`) the newest
/// unfinished batch asking exactly `ask`.
#[pyfunction]
#[pyo3(signature = (ask, owners=None, batch=None, resume=false, concurrency=8, wait=0.0, max_runs=None, home=None))]
#[allow(clippy::too_many_arguments)]
fn run_batch(
    py: Python<'_>,
    ask: &str,
    owners: Option<&str>,
    batch: Option<&str>,
    resume: bool,
    concurrency: usize,
    wait: f64,
    max_runs: Option<u32>,
    home: Option<PathBuf>,
) -> PyResult<String> {
    let fi = fi_home(home);
    let ask = batch_ask(ask)?;
    let b = match (batch, resume, owners) {
        (Some(id), _, _) => {
            let b = portfolio::load_batch(&fi, id).map_err(err)?;
            if b.ask != ask {
                return Err(raise(
                    "usage",
                    &format!("batch {id} asks something else; continue it with the question that made it"),
                ));
            }
            b
        }
        (None, true, _) => portfolio::latest_unfinished(&fi, &ask)
            .map_err(err)?
            .ok_or_else(|| raise("not_found", "no unfinished batch asks exactly this"))?,
        (None, false, Some(spec)) => {
            let names = portfolio::select_owners(&fi, spec).map_err(err)?;
            portfolio::new_batch(&fi, ask, &names).map_err(err)?
        }
        (None, false, None) => {
            return Err(raise(
                "usage",
                "say which owners: owners=\"all\", \"a,b\" or \"@FILE\"",
            ))
        }
    };
    let opts = portfolio::BatchOptions {
        concurrency: concurrency.clamp(1, 256),
        wait: Duration::from_secs_f64(wait.clamp(0.0, 3600.0)),
        score_limit: fi::ScoreLimit {
            max_runs: max_runs
                .unwrap_or(fi::ScoreLimit::default().max_runs)
                .max(1),
            ..fi::ScoreLimit::default()
        },
        ..portfolio::BatchOptions::default()
    };
    let done = block(py, portfolio::run_batch(&fi, &b.id, &opts, None))?.map_err(err)?;
    json(&done)
}

/// A batch's question from the package's JSON: a release (`kind` `release`: `expr`, `backend`, `dp`, `reason`)
/// or a scoring run (`kind` `score`: `model_toml`, the model file's text, `reveal` as `duo fi score --reveal`
/// takes it, and `reason`).
fn batch_ask(text: &str) -> PyResult<portfolio::BatchAsk> {
    let usage = |e: String| raise("usage", &format!("batch question: {e}"));
    let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| usage(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        if let Some(serde_json::Value::String(toml)) = obj.remove("model_toml") {
            let model =
                fi::ModelFile::parse(&toml).map_err(|e| raise("usage", &format!("model: {e}")))?;
            obj.insert(
                "model".into(),
                serde_json::to_value(model).map_err(|e| usage(e.to_string()))?,
            );
        }
        if let Some(serde_json::Value::String(r)) = obj.get("reveal").cloned() {
            let reveal: duo_policies::Reveal = r
                .parse()
                .map_err(|e| raise("usage", &format!("reveal `{r}`: {e}")))?;
            obj.insert(
                "reveal".into(),
                serde_json::to_value(reveal).map_err(|e| usage(e.to_string()))?,
            );
        }
    }
    let ask: portfolio::BatchAsk = serde_json::from_value(v).map_err(|e| usage(e.to_string()))?;
    if let portfolio::BatchAsk::Score { model, reveal, .. } = &ask {
        model
            .encode(*reveal)
            .map_err(|e| raise("usage", &format!("model: {e}")))?;
    }
    if let portfolio::BatchAsk::Release { expr, .. } = &ask {
        parse(expr)?;
    }
    Ok(ask)
}

/// The batches of an FI home, oldest first, as JSON.
#[pyfunction]
#[pyo3(signature = (home=None))]
fn batches(home: Option<PathBuf>) -> PyResult<String> {
    json(&portfolio::batches(&fi_home(home)).map_err(err)?)
}

/// The FI home's receipt log, as JSON.
#[pyfunction]
#[pyo3(signature = (home=None))]
fn receipts(home: Option<PathBuf>) -> PyResult<String> {
    json(&fi_home(home).receipts().map_err(err)?)
}

/// The problems found checking the receipt log's chain and signatures (empty: all verify), as JSON.
#[pyfunction]
#[pyo3(signature = (home=None))]
fn verify_receipts(home: Option<PathBuf>) -> PyResult<String> {
    json(&fi_home(home).verify_receipts().map_err(err)?)
}

/// The requests this FI made, as last seen, as JSON.
#[pyfunction]
#[pyo3(signature = (home=None))]
fn requests(home: Option<PathBuf>) -> PyResult<String> {
    json(&fi_home(home).requests().map_err(err)?)
}

/// Check one receipt (JSON) against a hex signing key; raises `duo.Integrity`-like errors when it does not.
#[pyfunction]
fn verify_receipt(receipt: &str, key: &str) -> PyResult<()> {
    let r: duo_node::proto::receipt::Receipt = serde_json::from_str(receipt)
        .map_err(|e| raise("malformed", &format!("not a receipt: {e}")))?;
    r.verify(Some(key)).map_err(err)
}

/// Parse an expression locally; raises `duo.ParseError` pointing at the position.
#[pyfunction]
fn parse(src: &str) -> PyResult<()> {
    duo_engine::parse::parse_expr(src)
        .map(|_| ())
        .map_err(|e| raise("parse", &e.render(src)))
}

/// A session with one paired owner node. Calls from several threads take turns on it.
#[pyclass(module = "duo._duo")]
struct Session {
    /// The session, behind a fair (first come, first served) lock: a thread waiting on the owner in short calls
    /// cannot starve the others.
    client: Arc<tokio::sync::Mutex<Option<Client>>>,
    /// This session's pointers by id (the node numbers them; requests name them by id).
    pointers: Mutex<HashMap<u64, fi::Pointer>>,
    principal: String,
    owner: String,
    /// The session's runtime ([`session_runtime`]), which owns its socket. Declared last: dropped after the
    /// client.
    rt: tokio::runtime::Runtime,
}

/// What a session call runs: a future borrowing the open client.
type Call<'c, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'c>>;

impl Session {
    /// Run `f` on the open client with the GIL released, one call at a time.
    ///
    /// The call runs as a task of the session's runtime, which holds the session's lock until the node's reply
    /// is read. So Ctrl-C ([`block_in`]) returns to Python at once and leaves the task where it is: the session
    /// never drops a message half sent or half read, and the next call on it, driving the runtime while it
    /// waits for the lock, first finishes that call (the SDK's own waits are at most about a second per call).
    fn with<T: Send + 'static>(
        &self,
        py: Python<'_>,
        f: impl for<'c> FnOnce(&'c mut Client) -> Call<'c, T> + Send + 'static,
    ) -> PyResult<T> {
        let client = self.client.clone();
        let task = self.rt.spawn(async move {
            let mut guard = client.lock_owned().await;
            let client = guard.as_mut().ok_or_else(|| {
                Error::NotFound("this session is closed; make a new duo.Client".into())
            })?;
            f(client).await
        });
        match block_in(py, &self.rt, task)? {
            Ok(out) => out.map_err(err),
            Err(e) => Err(raise(
                "internal",
                &format!("the call stopped unexpectedly: {e}"),
            )),
        }
    }

    /// A pointer of this session by id.
    fn pointer(&self, id: u64) -> PyResult<fi::Pointer> {
        self.pointers
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned())
            .ok_or_else(|| {
                raise(
                    "not_found",
                    &format!("pointer {id} is not one of this session's pointers"),
                )
            })
    }
}

/// The DP parameters given, if any.
fn dp_params(
    epsilon: Option<f64>,
    rho: Option<f64>,
    alpha: Option<f64>,
    beta: Option<f64>,
) -> Option<DpParams> {
    (epsilon.is_some() || rho.is_some() || alpha.is_some()).then_some(DpParams {
        epsilon,
        rho,
        alpha,
        beta,
    })
}

#[pymethods]
impl Session {
    /// Open a session with the paired owner node `owner` (default: the most recent pairing).
    #[new]
    #[pyo3(signature = (home=None, owner=None))]
    fn new(py: Python<'_>, home: Option<PathBuf>, owner: Option<String>) -> PyResult<Self> {
        let fi = fi_home(home);
        let name = match &owner {
            Some(n) => n.clone(),
            None => fi.pairing(None).map_err(err)?.name,
        };
        let rt = session_runtime()?;
        let client = block_in(py, &rt, Client::connect(&fi, Some(&name)))?.map_err(err)?;
        Ok(Session {
            rt,
            principal: client.principal().to_string(),
            client: Arc::new(tokio::sync::Mutex::new(Some(client))),
            pointers: Mutex::new(HashMap::new()),
            owner: name,
        })
    }

    /// The name the owner gave this FI.
    #[getter]
    fn principal(&self) -> &str {
        &self.principal
    }

    /// The local name of the paired owner node.
    #[getter]
    fn owner(&self) -> &str {
        &self.owner
    }

    /// The owner's published datasets, as JSON.
    fn datasets(&self, py: Python<'_>) -> PyResult<String> {
        json(&self.with(py, |c| Box::pin(c.datasets()))?)
    }

    /// The catalogue of named attributes, as JSON.
    fn catalogue(&self, py: Python<'_>) -> PyResult<String> {
        json(&self.with(py, |c| Box::pin(c.catalogue()))?)
    }

    /// A pointer from an expression: (id, type as JSON, lineage in words). Parse errors raise before anything
    /// is sent; type errors come from the owner's node, which checks against its published metadata.
    fn expr(&self, py: Python<'_>, src: &str) -> PyResult<Py<PyTuple>> {
        parse(src)?;
        let src = src.to_string();
        let p = self.with(py, move |c| Box::pin(async move { c.expr(&src).await }))?;
        let ty = json(&p.ty)?;
        let out = (p.id, ty, p.description.clone())
            .into_pyobject(py)?
            .unbind();
        if let Ok(mut m) = self.pointers.lock() {
            m.insert(p.id, p);
        }
        Ok(out)
    }

    /// A DP release's cost and expected error, as JSON; nothing is charged.
    #[pyo3(signature = (pointer, epsilon=None, rho=None, alpha=None, beta=None))]
    fn cost(
        &self,
        py: Python<'_>,
        pointer: u64,
        epsilon: Option<f64>,
        rho: Option<f64>,
        alpha: Option<f64>,
        beta: Option<f64>,
    ) -> PyResult<String> {
        let params = dp_params(epsilon, rho, alpha, beta).ok_or_else(|| {
            raise(
                "usage",
                "state what to spend: epsilon=X, rho=X, or alpha=A (and beta=B)",
            )
        })?;
        let p = self.pointer(pointer)?;
        json(&self.with(py, move |c| {
            Box::pin(async move { c.cost(&p, params).await })
        })?)
    }

    /// Ask for a release; the request's view (state, answer, verified receipt) as JSON.
    #[pyo3(signature = (pointer, reason, backend="plaintext", epsilon=None, rho=None, alpha=None, beta=None))]
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        py: Python<'_>,
        pointer: u64,
        reason: &str,
        backend: &str,
        epsilon: Option<f64>,
        rho: Option<f64>,
        alpha: Option<f64>,
        beta: Option<f64>,
    ) -> PyResult<String> {
        let backend: Backend = match backend {
            "plaintext" => Backend::Plaintext,
            "dp" => Backend::Dp,
            other => {
                return Err(raise(
                    "usage",
                    &format!("unknown backend `{other}`; use \"plaintext\" or \"dp\""),
                ))
            }
        };
        let params = dp_params(epsilon, rho, alpha, beta);
        match (backend, &params) {
            (Backend::Dp, None) => {
                return Err(raise(
                    "usage",
                    "a dp request states what to spend: epsilon=X, rho=X, or alpha=A (and beta=B)",
                ))
            }
            (Backend::Plaintext, Some(_)) => {
                return Err(raise(
                    "usage",
                    "epsilon, rho and alpha go with backend=\"dp\"",
                ))
            }
            _ => {}
        }
        let p = self.pointer(pointer)?;
        let reason = reason.to_string();
        let v = self.with(py, move |c| {
            Box::pin(async move {
                match params {
                    Some(params) => c.request_dp(&p, params, &reason).await,
                    None => c.request(&p, backend, &reason).await,
                }
            })
        })?;
        json(&v)
    }

    /// A request's state, waiting up to `wait` seconds for a decision, as JSON.
    #[pyo3(signature = (request, wait=0.0))]
    fn status(&self, py: Python<'_>, request: u64, wait: f64) -> PyResult<String> {
        let wait = Duration::from_secs_f64(wait.clamp(0.0, 3600.0));
        json(&self.with(py, move |c| {
            Box::pin(async move { c.status(request, wait).await })
        })?)
    }

    /// Score the owner privately (2PC) with a model file's TOML text: ask (with `reason`, revealing `reveal`)
    /// and run once approved, waiting up to `wait` seconds for the owner; or run the approved scoring request
    /// `request`. The run's report as JSON, or `{"state": "pending", "request": ID}` when the owner has not
    /// decided yet. `max_runs` is this FI's own limit on runs against this owner per 30 days.
    #[pyo3(signature = (model, reason=None, reveal="decision", wait=0.0, request=None, max_runs=None))]
    #[allow(clippy::too_many_arguments)]
    fn score(
        &self,
        py: Python<'_>,
        model: &str,
        reason: Option<String>,
        reveal: &str,
        wait: f64,
        request: Option<u64>,
        max_runs: Option<u32>,
    ) -> PyResult<String> {
        let model =
            fi::ModelFile::parse(model).map_err(|e| raise("usage", &format!("model: {e}")))?;
        let reveal: duo_policies::Reveal = reveal
            .parse()
            .map_err(|e| raise("usage", &format!("reveal `{reveal}`: {e}")))?;
        if request.is_none() {
            model
                .encode(reveal)
                .map_err(|e| raise("usage", &format!("model: {e}")))?;
        }
        let limit = fi::ScoreLimit {
            max_runs: max_runs
                .unwrap_or(fi::ScoreLimit::default().max_runs)
                .max(1),
            ..fi::ScoreLimit::default()
        };
        let wait = Duration::from_secs_f64(wait.clamp(0.0, 3600.0));
        let reason = reason.unwrap_or_default();
        let out = self.with(py, move |c| {
            Box::pin(async move {
                c.set_score_limit(limit);
                let mut quiet = |_: &str| {};
                let run = match request {
                    Some(id) => c.score_run(id, &model, &mut quiet).await,
                    None => c.score(&model, reveal, &reason, wait, &mut quiet).await,
                };
                match run {
                    Ok(report) => Ok(serde_json::to_value(report)?),
                    Err(Error::Pending(id)) => {
                        Ok(serde_json::json!({ "state": "pending", "request": id }))
                    }
                    Err(e) => Err(e),
                }
            })
        })?;
        json(&out)
    }

    /// Close the session (later calls raise `duo.DuoError` with code `closed`).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        block_in(py, &self.rt, async {
            if let Some(c) = self.client.lock().await.take() {
                c.close().await;
            }
        })
    }
}

/// The Rust core of the `duo` package.
#[pymodule]
fn _duo(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pair, m)?)?;
    m.add_function(wrap_pyfunction!(owners, m)?)?;
    m.add_function(wrap_pyfunction!(run_batch, m)?)?;
    m.add_function(wrap_pyfunction!(batches, m)?)?;
    m.add_function(wrap_pyfunction!(receipts, m)?)?;
    m.add_function(wrap_pyfunction!(verify_receipts, m)?)?;
    m.add_function(wrap_pyfunction!(requests, m)?)?;
    m.add_function(wrap_pyfunction!(verify_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(parse, m)?)?;
    m.add_class::<Session>()?;
    Ok(())
}
