//! The FI's screens. Each action is what the FI command does: open a session with the paired owner node
//! ([`Client::connect`]), make one call, close it; the words are the command's ([`FiWords`]).

use super::super::common::{
    csrf_refusal, error_status, facts, fi_script, html, shown, style, when, Fact,
};
use super::super::guard::{self, Keys};
use super::{FiUiConfig, FiWords};
use crate::error::Error;
use crate::fi::{self as client, Client, FiHome, ModelFile, PairingRecord};
use crate::proto::request::{DpParams, RequestState, RequestView};
use crate::proto::PublishedDataset;
use askama::Template;
use axum::extract::{DefaultBodyLimit, Form, Query, State as Ext};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use duo_engine::catalogue::CatalogueInfo;
use duo_engine::ingest::dollars;
use duo_engine::meta::Bounds;
use duo_engine::value::DataType;
use duo_policies::{Backend, Reveal};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest form body accepted (a connect form, a request form).
const MAX_BODY: usize = 16 * 1024;
/// Largest scoring form (it carries the model file's text).
const MAX_MODEL_BODY: usize = 64 * 1024;
/// How long a fetched catalogue serves the New request form.
const CATALOGUE_TTL: Duration = Duration::from_secs(300);
/// Requests shown on the Requests screen (the newest).
const SHOWN_REQUESTS: usize = 50;

/// A scoring run started from the UI: its progress lines and, once it ended, its outcome.
struct Job {
    owner: String,
    /// The model file's text (a run of an approved request needs the same model).
    model: String,
    lines: Vec<String>,
    outcome: Option<Outcome>,
}

#[derive(Clone)]
enum Outcome {
    /// What the run gave, in the words of `duo fi score`.
    Done(String),
    /// The request waits for the owner's decision.
    Pending(u64),
    /// Not scored, and why.
    Refused(String),
}

/// What every handler shares.
pub(crate) struct State {
    cfg: FiUiConfig,
    home: FiHome,
    keys: Arc<Keys>,
    jobs: Mutex<Vec<Job>>,
    /// The expressions asked through this UI, by (owner, request id): "ask again" fills them in.
    asked: Mutex<HashMap<(String, u64), String>>,
    /// Decided requests as last fetched (a decision never changes), by (owner, request id).
    decided: Mutex<HashMap<(String, u64), RequestView>>,
    /// Each owner's catalogue as Home or New request last fetched it, for the New request form: the owner logs
    /// every listing, so the form does not ask again at each render.
    catalogues: Mutex<HashMap<String, (Instant, Vec<CatalogueInfo>)>>,
}

impl State {
    pub(crate) fn new(cfg: FiUiConfig, keys: Keys) -> State {
        State {
            home: FiHome::new(&cfg.fi_dir),
            cfg,
            keys: Arc::new(keys),
            jobs: Mutex::new(Vec::new()),
            asked: Mutex::new(HashMap::new()),
            decided: Mutex::new(HashMap::new()),
            catalogues: Mutex::new(HashMap::new()),
        }
    }

    fn words(&self) -> FiWords {
        self.cfg.words
    }
}

type St = Arc<State>;

/// The routes, behind the guard and the security headers.
pub(crate) fn router(state: St) -> Router {
    let keys = state.keys.clone();
    Router::new()
        .route("/", get(home))
        .route("/connect", get(connect_page).post(connect))
        .route("/new", get(new_page).post(new_request))
        .route("/check", get(check))
        .route("/requests", get(requests))
        .route("/requests/list", get(requests_list))
        .route(
            "/score",
            get(score_page)
                .post(score_start)
                .layer(DefaultBodyLimit::max(MAX_MODEL_BODY)),
        )
        .route("/score/run", post(score_run))
        .route("/score/job", get(job_page))
        .route("/score/job/part", get(job_part))
        .route("/static/fi.js", get(fi_script))
        .route("/static/style.css", get(style))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(keys, guard::check))
        .layer(axum::middleware::from_fn(guard::headers))
        .with_state(state)
}

// ---- Frame, errors, helpers --------------------------------------------------------------------------------------

/// What every page's frame needs.
struct Chrome {
    csrf: String,
    title: &'static str,
    nav: &'static str,
}

fn chrome(st: &State, title: &'static str, nav: &'static str) -> Chrome {
    Chrome {
        csrf: st.keys.csrf.clone(),
        title,
        nav,
    }
}

/// A page that could not be shown: its status and what to do, in words.
pub(crate) struct PageError(StatusCode, String);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(error_status(&e), e.to_string())
    }
}

#[derive(Template)]
#[template(path = "fi/error.html")]
struct ErrorPage {
    c: Chrome,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            c: Chrome {
                csrf: String::new(),
                title: "Something went wrong",
                nav: "",
            },
            message: shown(&self.1),
        };
        (self.0, html(&page)).into_response()
    }
}

type Page = Result<Response, PageError>;

/// A form's CSRF token must be this launch's.
fn csrf_ok(st: &State, token: &str) -> Result<(), PageError> {
    match csrf_refusal(&st.keys, token) {
        None => Ok(()),
        Some(why) => Err(PageError(StatusCode::FORBIDDEN, why.into())),
    }
}

/// Run blocking work on the FI home off the async threads.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, Error> + Send + 'static,
) -> Result<R, PageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(PageError::from)
}

async fn pairings(st: &St) -> Result<Vec<PairingRecord>, PageError> {
    let home = st.home.clone();
    blocking(move || home.pairings()).await
}

/// The owner pairing names, the chosen one first.
fn owner_names(all: &[PairingRecord], chosen: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = all.iter().rev().map(|p| p.name.clone()).collect();
    if let Some(i) = chosen.and_then(|c| names.iter().position(|n| n == c)) {
        let n = names.remove(i);
        names.insert(0, n);
    }
    names
}

// ---- Connect to a host -------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "fi/connect.html")]
struct ConnectPage {
    c: Chrome,
    url: String,
    name: String,
    error: Option<String>,
    paired: Option<(String, String)>,
}

async fn connect_page(Ext(st): Ext<St>) -> Page {
    let first = pairings(&st).await?.is_empty();
    Ok(html(&ConnectPage {
        c: chrome(&st, "Connect to a host", "connect"),
        url: String::new(),
        name: if first { "owner".into() } else { String::new() },
        error: None,
        paired: None,
    }))
}

#[derive(Deserialize)]
struct ConnectForm {
    csrf: String,
    url: String,
    code: String,
    name: String,
}

/// `duo fi pair`: pin the owner's key and register this FI's, under a name not used by another owner.
async fn connect(Ext(st): Ext<St>, Form(f): Form<ConnectForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let (url, code, name) = (f.url.trim(), f.code.trim(), f.name.trim());
    let name = if name.is_empty() { "owner" } else { name };
    let mut page = ConnectPage {
        c: chrome(&st, "Connect to a host", "connect"),
        url: url.to_string(),
        name: name.to_string(),
        error: None,
        paired: None,
    };
    let result = match client::pairing_conflict(&st.home, code, name) {
        Ok(Some(other)) => Err(format!(
            "the name \"{name}\" is used for another owner node already ({} at {}): choose another name",
            other.fingerprint, other.url
        )),
        Ok(None) => client::pair(&st.home, url, code, name)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let status = match result {
        Ok(rec) => {
            page.paired = Some((shown(&(st.words().paired)(&rec)), rec.fingerprint));
            StatusCode::OK
        }
        Err(e) => {
            page.error = Some(shown(&format!("Not connected: {e}")));
            StatusCode::CONFLICT
        }
    };
    Ok((status, html(&page)).into_response())
}

// ---- Home ----------------------------------------------------------------------------------------------------

struct OwnerLine {
    name: String,
    url: String,
    principal: String,
    paired: String,
    fingerprint: String,
    datasets: Vec<DatasetTable>,
    catalogue: Vec<AttrRow>,
    error: Option<String>,
    /// The New request page for this owner.
    ask: String,
}

/// A published dataset as a table of its columns.
struct DatasetTable {
    name: String,
    version: u64,
    description: String,
    /// The privacy unit, the row bound and the window, in a sentence.
    facts: String,
    columns: Vec<ColumnRow>,
}

struct ColumnRow {
    name: String,
    kind: &'static str,
    meaning: String,
    range: String,
}

/// A catalogue attribute as a row.
struct AttrRow {
    name: String,
    meaning: String,
    gives: String,
    window: String,
    reads: String,
}

/// A column's or an attribute's type, for a person.
fn kind_words(t: DataType) -> &'static str {
    match t {
        DataType::I64 => "whole number",
        DataType::F64 => "number",
        DataType::Bool => "yes or no",
        DataType::Date => "date",
        DataType::Category => "category",
        DataType::Money => "money",
    }
}

/// Public bounds as a range, money in dollars.
fn range_words(t: DataType, b: &Bounds) -> String {
    if t == DataType::Money && b.lo.abs() < 9e15 && b.hi.abs() < 9e15 {
        format!("{} to {}", dollars(b.lo as i64), dollars(b.hi as i64))
    } else {
        format!("{} to {}", b.lo, b.hi)
    }
}

fn dataset_tables(ds: &[PublishedDataset]) -> Vec<DatasetTable> {
    ds.iter()
        .map(|d| {
            let m = &d.meta;
            let window = m
                .window
                .map(|w| {
                    format!(
                        "; covers {} to {}",
                        w.start.format("%-d %B %Y"),
                        w.end.format("%-d %B %Y")
                    )
                })
                .unwrap_or_default();
            let columns = m
                .columns
                .iter()
                .map(|c| ColumnRow {
                    name: shown(&c.name),
                    kind: kind_words(c.dtype),
                    meaning: shown(&c.description),
                    range: match (&c.bounds, &c.categories) {
                        (Some(b), _) => range_words(c.dtype, b),
                        (None, Some(cats)) if !cats.is_empty() => {
                            shown(&format!("one of: {}", cats.join(", ")))
                        }
                        _ => String::new(),
                    },
                })
                .collect();
            DatasetTable {
                name: shown(&m.name),
                version: d.version,
                description: shown(&m.description),
                facts: format!(
                    "One unit of privacy: {}; at most {} rows{window}.",
                    m.privacy_unit.describe(),
                    m.max_rows
                ),
                columns,
            }
        })
        .collect()
}

fn attr_rows(cat: &[CatalogueInfo]) -> Vec<AttrRow> {
    cat.iter()
        .map(|e| AttrRow {
            name: shown(&e.name),
            meaning: shown(&e.description),
            gives: format!(
                "{}, {} {}",
                kind_words(e.output),
                range_words(e.output, &e.bounds),
                if e.output == DataType::Money {
                    ""
                } else {
                    e.unit.as_str()
                }
            )
            .trim_end()
            .to_string(),
            window: shown(&e.window),
            reads: shown(&e.inputs.join(", ")),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "fi/home.html")]
struct HomePage {
    c: Chrome,
    owners: Vec<OwnerLine>,
}

/// `duo fi owners`, `duo fi datasets` and `duo fi catalogue` for every paired owner.
async fn home(Ext(st): Ext<St>) -> Page {
    let all = pairings(&st).await?;
    if all.is_empty() {
        return Ok(Redirect::to("/connect").into_response());
    }
    let mut owners = Vec::new();
    for p in all.into_iter().rev() {
        let mut line = OwnerLine {
            name: shown(&p.name),
            url: shown(&p.url),
            principal: shown(&p.principal),
            paired: when(&p.paired_at),
            fingerprint: p.fingerprint.clone(),
            datasets: Vec::new(),
            catalogue: Vec::new(),
            error: None,
            ask: format!("/new?owner={}", percent(&p.name)),
        };
        match published(&st.home, &p.name).await {
            Ok((ds, cat)) => {
                line.datasets = dataset_tables(&ds);
                line.catalogue = attr_rows(&cat);
                if let Ok(mut c) = st.catalogues.lock() {
                    c.insert(p.name.clone(), (Instant::now(), cat));
                }
            }
            Err(e) => {
                line.error = Some(shown(&format!("The owner node cannot be reached now: {e}")))
            }
        }
        owners.push(line);
    }
    Ok(html(&HomePage {
        c: chrome(&st, "Home", "home"),
        owners,
    }))
}

type Published = (Vec<crate::proto::PublishedDataset>, Vec<CatalogueInfo>);

async fn published(home: &FiHome, owner: &str) -> Result<Published, Error> {
    let mut c = Client::connect(home, Some(owner)).await?;
    let r = async { Ok((c.datasets().await?, c.catalogue().await?)) }.await;
    c.close().await;
    r
}

// ---- New request ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct NewQuery {
    owner: Option<String>,
    expr: Option<String>,
    reason: Option<String>,
    backend: Option<String>,
}

#[derive(Deserialize, Default)]
struct NewForm {
    csrf: String,
    owner: String,
    expr: String,
    reason: String,
    backend: String,
    /// `epsilon`, `rho` or `alpha`.
    #[serde(default)]
    spend: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    beta: String,
    /// `preview` or `send`.
    action: String,
}

#[derive(Template)]
#[template(path = "fi/new.html")]
struct NewPage {
    c: Chrome,
    owners: Vec<String>,
    attributes: Vec<(String, String)>,
    f: NewForm,
    error: Option<String>,
    preview: Option<String>,
    sent: Option<Sent>,
}

/// A request just made: its words, and whether its answer came with a verified receipt.
struct Sent {
    state: &'static str,
    facts: Vec<Fact>,
    receipt: bool,
    denied: bool,
    id: u64,
}

async fn new_form_page(st: &St, f: NewForm) -> Result<NewPage, PageError> {
    let all = pairings(st).await?;
    let owners = owner_names(&all, Some(&f.owner));
    // The catalogue of the chosen owner, to pick from; the form works without it.
    let attributes = match owners.first() {
        Some(o) => catalogue(st, o)
            .await
            .into_iter()
            .map(|a| (a.name.clone(), shown(&a.description)))
            .collect(),
        None => Vec::new(),
    };
    Ok(NewPage {
        c: chrome(st, "New request", "new"),
        owners,
        attributes,
        f,
        error: None,
        preview: None,
        sent: None,
    })
}

/// An owner's catalogue, fetched at most every [`CATALOGUE_TTL`]; empty when the owner cannot be reached.
async fn catalogue(st: &St, owner: &str) -> Vec<CatalogueInfo> {
    let fresh = st.catalogues.lock().ok().and_then(|c| {
        c.get(owner)
            .filter(|(at, _)| at.elapsed() < CATALOGUE_TTL)
            .map(|(_, cat)| cat.clone())
    });
    if let Some(cat) = fresh {
        return cat;
    }
    let Ok(mut c) = Client::connect(&st.home, Some(owner)).await else {
        return Vec::new();
    };
    let cat = c.catalogue().await;
    c.close().await;
    let Ok(cat) = cat else { return Vec::new() };
    if let Ok(mut all) = st.catalogues.lock() {
        all.insert(owner.to_string(), (Instant::now(), cat.clone()));
    }
    cat
}

async fn new_page(Ext(st): Ext<St>, Query(q): Query<NewQuery>) -> Page {
    if pairings(&st).await?.is_empty() {
        return Ok(Redirect::to("/connect").into_response());
    }
    let f = NewForm {
        owner: q.owner.unwrap_or_default(),
        expr: q.expr.unwrap_or_default(),
        reason: q.reason.unwrap_or_default(),
        backend: q.backend.unwrap_or_else(|| "plaintext".into()),
        spend: "epsilon".into(),
        ..NewForm::default()
    };
    Ok(html(&new_form_page(&st, f).await?))
}

/// The DP parameters of the form, as `duo fi request --backend dp` takes them.
fn dp_params(f: &NewForm) -> Result<Option<DpParams>, String> {
    if f.backend != "dp" {
        return Ok(None);
    }
    let number = |s: &str, what: &str| -> Result<Option<f64>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .map(Some)
            .ok_or_else(|| format!("{what} must be a positive number, not `{s}`"))
    };
    let amount = number(&f.amount, "the amount to spend")?
        .ok_or("a noisy (dp) request states what to spend: an epsilon, a rho or an accuracy")?;
    let mut p = DpParams {
        epsilon: None,
        rho: None,
        alpha: None,
        beta: None,
    };
    match f.spend.as_str() {
        "epsilon" => p.epsilon = Some(amount),
        "rho" => p.rho = Some(amount),
        "alpha" => {
            p.alpha = Some(amount);
            p.beta = number(&f.beta, "the chance of a larger error")?;
        }
        other => return Err(format!("unknown way to spend `{other}`")),
    }
    Ok(Some(p))
}

/// Preview (`duo fi cost`) or send (`duo fi request`) the request.
async fn new_request(Ext(st): Ext<St>, Form(f): Form<NewForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let action = f.action.clone();
    let mut page = new_form_page(&st, f).await?;
    let f = &page.f;
    let outcome = match (dp_params(f), duo_engine::parse::parse_expr(&f.expr)) {
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(format!(
            "The expression does not read:\n{}",
            e.render(&f.expr)
        )),
        (Ok(params), Ok(_)) if action == "preview" => match params {
            None => Err("a preview shows what a noisy (dp) answer would cost; choose dp".into()),
            Some(params) => preview(&st, &f.owner, &f.expr, params).await.map(|p| {
                page.preview = Some(shown(&p));
            }),
        },
        (Ok(params), Ok(_)) => send(&st, f, params).await.map(|s| {
            page.sent = Some(s);
        }),
    };
    let status = match outcome {
        Ok(()) => StatusCode::OK,
        Err(e) => {
            page.error = Some(shown(&e));
            StatusCode::CONFLICT
        }
    };
    Ok((status, html(&page)).into_response())
}

async fn preview(st: &St, owner: &str, expr: &str, params: DpParams) -> Result<String, String> {
    let words = st.words();
    let mut c = Client::connect(&st.home, Some(owner))
        .await
        .map_err(|e| e.to_string())?;
    let r = async {
        let p = c.expr(expr).await?;
        let m = c.cost(&p, params).await?;
        Ok::<_, Error>((words.cost)(&p, &m))
    }
    .await;
    c.close().await;
    r.map(|s| format!("{s}\nNothing was charged: this is a preview."))
        .map_err(|e| e.to_string())
}

async fn send(st: &St, f: &NewForm, params: Option<DpParams>) -> Result<Sent, String> {
    if f.reason.trim().is_empty() {
        return Err("say why you need it: the owner reads your reason before deciding".into());
    }
    let backend: Backend = if f.backend == "dp" {
        Backend::Dp
    } else {
        Backend::Plaintext
    };
    let mut c = Client::connect(&st.home, Some(&f.owner))
        .await
        .map_err(|e| e.to_string())?;
    let r = async {
        let p = c.expr(&f.expr).await?;
        match params {
            Some(params) => c.request_dp(&p, params, f.reason.trim()).await,
            None => c.request(&p, backend, f.reason.trim()).await,
        }
    }
    .await;
    c.close().await;
    let v = r.map_err(|e| e.to_string())?;
    if let Ok(mut asked) = st.asked.lock() {
        asked.insert((f.owner.clone(), v.id), f.expr.clone());
    }
    Ok(Sent {
        state: state_name(v.state),
        facts: facts(&(st.words().request)(&v)),
        receipt: v.receipt.is_some(),
        denied: v.state == RequestState::Denied,
        id: v.id,
    })
}

#[derive(Deserialize)]
struct CheckQuery {
    owner: String,
    expr: String,
}

/// The live check: the node's parser here, then the owner node's checker (it makes a pointer, which has the
/// lineage in words); JSON `{"ok": true, "lineage": ...}` or `{"ok": false, "error": ...}`.
async fn check(Ext(st): Ext<St>, Query(q): Query<CheckQuery>) -> Response {
    let body = match duo_engine::parse::parse_expr(&q.expr) {
        Err(e) => serde_json::json!({ "ok": false, "error": e.render(&q.expr) }),
        Ok(_) => match lineage(&st.home, &q.owner, &q.expr).await {
            Ok(l) => serde_json::json!({ "ok": true, "lineage": shown(&l) }),
            Err(e) => serde_json::json!({ "ok": false, "error": shown(&e.to_string()) }),
        },
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn lineage(home: &FiHome, owner: &str, expr: &str) -> Result<String, Error> {
    let mut c = Client::connect(home, Some(owner)).await?;
    let r = c.expr(expr).await.map(|p| p.description);
    c.close().await;
    r
}

// ---- Requests --------------------------------------------------------------------------------------------------

struct RequestLine {
    owner: String,
    id: u64,
    state: String,
    facts: Vec<Fact>,
    receipt: bool,
    again: Option<String>,
}

#[derive(Template)]
#[template(path = "fi/list.html")]
struct List {
    lines: Vec<RequestLine>,
    pending: usize,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "fi/requests.html")]
struct RequestsPage {
    c: Chrome,
    /// The rendered [`List`].
    list: String,
}

/// The newest requests, decided ones from memory, the others asked again (`duo fi result ID`).
async fn list_data(st: &St) -> Result<List, PageError> {
    let home = st.home.clone();
    let mut asked = blocking(move || home.requests()).await?;
    asked.reverse();
    asked.truncate(SHOWN_REQUESTS);
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let mut sessions: HashMap<String, Option<Client>> = HashMap::new();
    for a in asked {
        let key = (a.owner.clone(), a.id);
        let known = st.decided.lock().ok().and_then(|d| d.get(&key).cloned());
        let view = match known {
            Some(v) => Some(v),
            None => fetch(st, &mut sessions, &mut problems, &a.owner, a.id).await,
        };
        lines.push(request_line(st, &a, view));
    }
    for c in sessions.into_values().flatten() {
        c.close().await;
    }
    let pending = lines.iter().filter(|l| l.state == "pending").count();
    Ok(List {
        lines,
        pending,
        problems,
    })
}

/// A request's state now, from the owner node (one session per owner for the whole list).
async fn fetch(
    st: &St,
    sessions: &mut HashMap<String, Option<Client>>,
    problems: &mut Vec<String>,
    owner: &str,
    id: u64,
) -> Option<RequestView> {
    if !sessions.contains_key(owner) {
        let c = match Client::connect(&st.home, Some(owner)).await {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(shown(&format!(
                    "The owner node \"{owner}\" cannot be reached now ({e}); its requests show as last seen."
                )));
                None
            }
        };
        sessions.insert(owner.to_string(), c);
    }
    let c = sessions.get_mut(owner)?.as_mut()?;
    match c.status(id, Duration::ZERO).await {
        Ok(v) => {
            if v.state != RequestState::Pending {
                if let Ok(mut d) = st.decided.lock() {
                    d.insert((owner.to_string(), id), v.clone());
                }
            }
            Some(v)
        }
        Err(e) => {
            problems.push(shown(&format!("Request {id} of \"{owner}\": {e}")));
            None
        }
    }
}

fn request_line(
    st: &St,
    a: &crate::fi::home::AskedRequest,
    view: Option<RequestView>,
) -> RequestLine {
    let (state, facts, receipt) = match &view {
        Some(v) => (
            state_name(v.state).to_string(),
            facts(&(st.words().request)(v)),
            v.receipt.is_some(),
        ),
        None => {
            let fact = |label: &str, value: &str| Fact {
                label: label.to_string(),
                value: shown(value),
            };
            (
                a.state.clone(),
                vec![
                    fact("Lineage", &a.description),
                    fact("Reason", &a.reason),
                    fact("As last seen", &when(&a.seen_at)),
                ],
                false,
            )
        }
    };
    let expr = st
        .asked
        .lock()
        .ok()
        .and_then(|m| m.get(&(a.owner.clone(), a.id)).cloned());
    let again = (state != "approved" || expr.is_some()).then(|| {
        let q = serde_urlencoded_pairs(&[
            ("owner", a.owner.as_str()),
            ("expr", expr.as_deref().unwrap_or("")),
            ("reason", a.reason.as_str()),
            ("backend", a.backend.as_str()),
        ]);
        format!("/new?{q}")
    });
    RequestLine {
        owner: shown(&a.owner),
        id: a.id,
        state,
        facts,
        receipt,
        again,
    }
}

/// A query string from pairs, percent-encoded.
fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn state_name(s: RequestState) -> &'static str {
    match s {
        RequestState::Pending => "pending",
        RequestState::Approved => "approved",
        RequestState::Denied => "denied",
    }
}

async fn requests(Ext(st): Ext<St>) -> Page {
    let list = list_data(&st).await?;
    Ok(html(&RequestsPage {
        c: chrome(&st, "Requests", "requests"),
        list: list
            .render()
            .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    }))
}

/// The list alone, for the live update.
async fn requests_list(Ext(st): Ext<St>) -> Page {
    Ok(html(&list_data(&st).await?))
}

// ---- Private scoring -------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ScoreForm {
    csrf: String,
    owner: String,
    model: String,
    /// `decision`, `bands`, `reasons` or `score`.
    reveal: String,
    /// For `reasons`: how many reasons a decline names (1 to 4).
    #[serde(default)]
    k: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "fi/score.html")]
struct ScorePage {
    c: Chrome,
    owners: Vec<String>,
    f: ScoreForm,
    error: Option<String>,
}

async fn score_page(Ext(st): Ext<St>) -> Page {
    let all = pairings(&st).await?;
    if all.is_empty() {
        return Ok(Redirect::to("/connect").into_response());
    }
    Ok(html(&ScorePage {
        c: chrome(&st, "Private scoring", "score"),
        owners: owner_names(&all, None),
        f: ScoreForm {
            reveal: "decision".into(),
            ..ScoreForm::default()
        },
        error: None,
    }))
}

/// The model file and the reveal, checked before the owner hears of them (as `duo fi score` does).
fn read_model(f: &ScoreForm) -> Result<(ModelFile, Reveal), String> {
    let model =
        ModelFile::parse(&f.model).map_err(|e| format!("The model file does not read: {e}"))?;
    let reveal = match f.reveal.as_str() {
        "bands" => format!("bands:{}", model.bands.len() + 1),
        "reasons" => format!("decision+reasons:{}", f.k.trim()),
        other => other.to_string(),
    };
    let reveal: Reveal = reveal.parse().map_err(|e| format!("{e}"))?;
    model.encode(reveal).map_err(|e| e.to_string())?;
    Ok((model, reveal))
}

async fn score_start(Ext(st): Ext<St>, Form(f): Form<ScoreForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let (model, reveal) = match read_model(&f) {
        Ok(m) => m,
        Err(e) => {
            let all = pairings(&st).await?;
            let page = ScorePage {
                c: chrome(&st, "Private scoring", "score"),
                owners: owner_names(&all, Some(&f.owner)),
                error: Some(shown(&e)),
                f,
            };
            return Ok((StatusCode::BAD_REQUEST, html(&page)).into_response());
        }
    };
    let id = start_job(&st, &f.owner, &f.model, model, Run::Ask(reveal, f.reason));
    Ok(Redirect::to(&format!("/score/job?id={id}")).into_response())
}

#[derive(Deserialize)]
struct RunForm {
    csrf: String,
    job: usize,
    request: u64,
}

/// Run an approved scoring request with the model of the job that asked for it.
async fn score_run(Ext(st): Ext<St>, Form(f): Form<RunForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let (owner, text) = {
        let jobs = st
            .jobs
            .lock()
            .map_err(|_| PageError(StatusCode::INTERNAL_SERVER_ERROR, "poisoned".into()))?;
        let j = jobs.get(f.job.wrapping_sub(1)).ok_or_else(|| {
            PageError(
                StatusCode::NOT_FOUND,
                "no such scoring run: start one again".into(),
            )
        })?;
        (j.owner.clone(), j.model.clone())
    };
    let model = ModelFile::parse(&text).map_err(PageError::from)?;
    let id = start_job(&st, &owner, &text, model, Run::Approved(f.request));
    Ok(Redirect::to(&format!("/score/job?id={id}")).into_response())
}

/// What a scoring job does: ask (and run at once if a rule approves), or run an approved request.
enum Run {
    Ask(Reveal, String),
    Approved(u64),
}

/// Start a scoring job in the background; its number (1, 2, ...).
fn start_job(st: &St, owner: &str, text: &str, model: ModelFile, run: Run) -> usize {
    let id = match st.jobs.lock() {
        Ok(mut jobs) => {
            jobs.push(Job {
                owner: owner.to_string(),
                model: text.to_string(),
                lines: Vec::new(),
                outcome: None,
            });
            jobs.len()
        }
        Err(_) => return 0,
    };
    let (st, owner) = (st.clone(), owner.to_string());
    tokio::spawn(async move {
        let outcome = run_job(&st, id, &owner, &model, run).await;
        if let Ok(mut jobs) = st.jobs.lock() {
            if let Some(j) = jobs.get_mut(id - 1) {
                j.outcome = Some(outcome);
            }
        }
    });
    id
}

async fn run_job(st: &St, id: usize, owner: &str, model: &ModelFile, run: Run) -> Outcome {
    let words = st.words();
    let progress_st = st.clone();
    let mut progress = move |what: &str| {
        if let Ok(mut jobs) = progress_st.jobs.lock() {
            if let Some(j) = jobs.get_mut(id - 1) {
                j.lines.push((words.score_progress)(what));
            }
        }
    };
    let mut c = match Client::connect(&st.home, Some(owner)).await {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let r = match run {
        Run::Ask(reveal, reason) => {
            c.score(model, reveal, &reason, Duration::ZERO, &mut progress)
                .await
        }
        Run::Approved(request) => c.score_run(request, model, &mut progress).await,
    };
    let fi_name = c.principal().to_string();
    c.close().await;
    match r {
        Ok(report) => {
            let opening = report
                .commitment
                .as_ref()
                .map(|c| st.cfg.fi_dir.join("models").join(format!("{c}.json")));
            Outcome::Done((words.score_report)(
                &report,
                &fi_name,
                opening.as_deref().filter(|p| p.exists()),
            ))
        }
        Err(Error::Pending(id)) => Outcome::Pending(id),
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

#[derive(Deserialize)]
struct JobQuery {
    id: usize,
}

#[derive(Template)]
#[template(path = "fi/job.html")]
struct JobPart {
    csrf: String,
    id: usize,
    lines: Vec<String>,
    done: bool,
    report: Option<String>,
    pending: Option<u64>,
    refused: Option<String>,
}

#[derive(Template)]
#[template(path = "fi/job_page.html")]
struct JobPage {
    c: Chrome,
    /// The rendered [`JobPart`].
    part: String,
}

fn job_part_data(st: &St, id: usize) -> Result<JobPart, PageError> {
    let jobs = st
        .jobs
        .lock()
        .map_err(|_| PageError(StatusCode::INTERNAL_SERVER_ERROR, "poisoned".into()))?;
    let j = jobs
        .get(id.wrapping_sub(1))
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, "no such scoring run".into()))?;
    let mut part = JobPart {
        csrf: st.keys.csrf.clone(),
        id,
        lines: j.lines.iter().map(|l| shown(l)).collect(),
        done: j.outcome.is_some(),
        report: None,
        pending: None,
        refused: None,
    };
    match j.outcome.clone() {
        Some(Outcome::Done(r)) => part.report = Some(shown(&r)),
        Some(Outcome::Pending(r)) => part.pending = Some(r),
        Some(Outcome::Refused(e)) => part.refused = Some(shown(&e)),
        None => {}
    }
    Ok(part)
}

async fn job_page(Ext(st): Ext<St>, Query(q): Query<JobQuery>) -> Page {
    let part = job_part_data(&st, q.id)?;
    Ok(html(&JobPage {
        c: chrome(&st, "Private scoring", "score"),
        part: part
            .render()
            .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    }))
}

async fn job_part(Ext(st): Ext<St>, Query(q): Query<JobQuery>) -> Page {
    Ok(html(&job_part_data(&st, q.id)?))
}
