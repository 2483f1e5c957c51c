//! The owner's screens: each handler calls the same [`Owner`] method or store query as its command, and renders
//! the command's wording (see [`Words`](super::Words)) in an askama template.

use super::common::{csrf_refusal, error_status, facts, html, script, shown, style, when, Fact};
use super::guard::{self, Keys};
use super::UiConfig;
use crate::error::Error;
use crate::owner::{self, DatasetCache, Owner};
use crate::store::prelude::*;
use crate::store::{LogEntry, Store};
use askama::Template;
use axum::extract::{DefaultBodyLimit, Form, Query, State as Ext};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Largest form body accepted (the forms hold a name, a reason, a token).
const MAX_BODY: usize = 16 * 1024;
/// Log entries per page.
const LOG_PAGE: usize = 50;

/// What every handler shares.
pub(crate) struct State {
    pub(super) cfg: UiConfig,
    keys: Arc<Keys>,
    changes: watch::Receiver<u64>,
    owner: Mutex<Option<Owner>>,
    /// Uploads waiting for the owner's confirmation.
    pub(super) uploads: super::data::Uploads,
}

impl State {
    pub(crate) fn new(cfg: UiConfig, keys: Keys, changes: watch::Receiver<u64>) -> State {
        State {
            cfg,
            keys: Arc::new(keys),
            changes,
            owner: Mutex::new(None),
            uploads: Default::default(),
        }
    }
}

pub(super) type St = Arc<State>;

/// The routes, behind the guard and the security headers.
pub(crate) fn router(state: St) -> Router {
    let keys = state.keys.clone();
    Router::new()
        .route("/", get(home))
        .route("/welcome", get(welcome).post(create_node))
        .route("/invite", get(invite_page).post(invite_make))
        .route("/invite/cancel", post(invite_cancel))
        .route("/fi/revoke", get(revoke_confirm).post(revoke))
        .route("/requests", get(requests))
        .route("/requests/queue", get(queue))
        .route("/requests/approve", post(approve))
        .route("/requests/deny", post(deny))
        .route("/log", get(log_page))
        .route("/log/verify", post(log_verify))
        .route("/log.json", get(log_json))
        .route("/budgets", get(budgets::page).post(budgets::set))
        .route("/events", get(events))
        .merge(super::data::routes())
        .route("/static/app.js", get(script))
        .route("/static/style.css", get(style))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(keys, guard::check))
        .layer(axum::middleware::from_fn(guard::headers))
        .with_state(state)
}

/// A page that could not be shown: its status and what to do, in words.
pub(crate) struct PageError(pub(super) StatusCode, pub(super) String);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(error_status(&e), e.to_string())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
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
            message: self.1,
        };
        (self.0, html(&page)).into_response()
    }
}

pub(super) type Page = Result<Response, PageError>;

/// What every page's frame needs.
pub(super) struct Chrome {
    pub(super) csrf: String,
    pub(super) title: &'static str,
    pub(super) nav: &'static str,
}

pub(super) fn chrome(st: &State, title: &'static str, nav: &'static str) -> Chrome {
    Chrome {
        csrf: st.keys.csrf.clone(),
        title,
        nav,
    }
}

/// Run `f` on the owner's node, off the async threads; `None` when there is no node yet.
pub(super) async fn with_owner<R: Send + 'static>(
    st: &St,
    f: impl FnOnce(&mut Owner) -> Result<R, Error> + Send + 'static,
) -> Result<Option<R>, PageError> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || {
        let mut slot = st
            .owner
            .lock()
            .map_err(|_| Error::Internal("the UI's owner lock was poisoned".into()))?;
        if slot.is_none() {
            if !st.cfg.owner_dir.join("node.key").exists() {
                return Ok(None);
            }
            *slot = Some(Owner::open(
                &st.cfg.owner_dir,
                st.cfg.sync,
                DatasetCache::default(),
            )?);
        }
        match slot.as_mut() {
            Some(o) => f(o).map(Some),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(PageError::from)
}

/// As [`with_owner`], sending the person to the welcome page when there is no node yet.
pub(super) async fn owner_do<R: Send + 'static>(
    st: &St,
    f: impl FnOnce(&mut Owner) -> Result<R, Error> + Send + 'static,
) -> Result<R, Result<Response, PageError>> {
    match with_owner(st, f).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(Ok(Redirect::to("/welcome").into_response())),
        Err(e) => Err(Err(e)),
    }
}

macro_rules! owner_do {
    ($st:expr, $f:expr) => {
        match owner_do($st, $f).await {
            Ok(r) => r,
            Err(page) => return page,
        }
    };
}

// The Budgets screen, a child of this module so it shares its helpers.
#[path = "budgets.rs"]
mod budgets;

/// A form's CSRF token must be this launch's.
pub(super) fn csrf_ok(st: &State, token: &str) -> Result<(), PageError> {
    match csrf_refusal(&st.keys, token) {
        None => Ok(()),
        Some(why) => Err(PageError(StatusCode::FORBIDDEN, why.into())),
    }
}

/// A Unix time as a date.
fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%-d %B %Y").to_string())
        .unwrap_or_default()
}

// ---- Welcome -------------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "welcome.html")]
struct Welcome {
    c: Chrome,
    exists: bool,
    fingerprint: String,
}

async fn welcome(Ext(st): Ext<St>) -> Page {
    let fingerprint = with_owner(&st, |o| {
        Ok(crate::net::keys::fingerprint(
            &owner::node_key(o.dir())?.public,
        ))
    })
    .await?;
    Ok(html(&Welcome {
        c: chrome(&st, "Welcome", "welcome"),
        exists: fingerprint.is_some(),
        fingerprint: fingerprint.unwrap_or_default(),
    }))
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn create_node(Ext(st): Ext<St>, Form(f): Form<CsrfOnly>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let dir = st.cfg.owner_dir.clone();
    tokio::task::spawn_blocking(move || owner::init(&dir, None))
        .await
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Redirect::to("/").into_response())
}

// ---- Home ----------------------------------------------------------------------------------------------------

struct DatasetLine {
    name: String,
    version: u64,
    rows: u64,
    loaded: String,
    description: String,
}

/// A budget as a gauge: spent out of the cap.
struct Gauge {
    scope: String,
    spent: String,
    cap: String,
    left: String,
    spent_nanos: u64,
    cap_nanos: u64,
}

struct FiLine {
    principal: String,
    fingerprint: String,
    state: String,
    paired: String,
    expires: String,
    last_seen: String,
    pending: u64,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    c: Chrome,
    datasets: Vec<DatasetLine>,
    measure: String,
    gauges: Vec<Gauge>,
    pending: usize,
    activity: Vec<LogLine>,
    fis: Vec<FiLine>,
}

async fn home(Ext(st): Ext<St>) -> Page {
    let words = st.cfg.words;
    let mut page = owner_do!(&st, move |o: &mut Owner| home_data(o, words));
    page.c = chrome(&st, "Home", "home");
    Ok(html(&page))
}

fn home_data(o: &mut Owner, words: super::Words) -> Result<Home, Error> {
    let s = o.store();
    let datasets = s
        .datasets()?
        .into_iter()
        .map(|d| DatasetLine {
            name: d.meta.name,
            version: d.version,
            rows: d.rows,
            loaded: when(&d.loaded_at),
            description: d.meta.description,
        })
        .collect();
    let ledger = s.ledger()?;
    let gauges = ledger
        .accounts()
        .into_iter()
        .map(|(scope, a)| Gauge {
            scope: shown(&scope.to_string()),
            spent: a.spent.to_string(),
            cap: a.cap.map_or("no cap".into(), |c| c.to_string()),
            left: a.remaining().map_or("-".into(), |c| c.to_string()),
            spent_nanos: a.spent.nanos(),
            cap_nanos: a.cap.map_or(0, |c| c.nanos()),
        })
        .collect();
    let fis = s
        .pairings()?
        .into_iter()
        .map(|p| FiLine {
            principal: shown(&p.principal),
            fingerprint: p.fingerprint,
            state: p.state,
            paired: when(&p.paired_at),
            expires: date(p.expires_at),
            last_seen: p.last_seen.as_deref().map_or("never".into(), when),
            pending: p.pending,
        })
        .collect();
    let mut activity: Vec<LogLine> = s
        .log_tail(8)?
        .iter()
        .map(|e| log_line(s, words, e))
        .collect();
    activity.reverse();
    Ok(Home {
        c: Chrome {
            csrf: String::new(),
            title: "",
            nav: "",
        },
        datasets,
        measure: ledger.measure().name().to_string(),
        gauges,
        pending: o.pending_ids()?.len(),
        activity,
        fis,
    })
}

// ---- Paired FIs: revoke ----------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct PrincipalQuery {
    principal: String,
}

#[derive(Template)]
#[template(path = "revoke.html")]
struct RevokeConfirm {
    c: Chrome,
    principal: String,
}

async fn revoke_confirm(Ext(st): Ext<St>, Query(q): Query<PrincipalQuery>) -> Page {
    Ok(html(&RevokeConfirm {
        c: chrome(&st, "Revoke an FI", "home"),
        principal: q.principal,
    }))
}

#[derive(Deserialize)]
struct RevokeForm {
    csrf: String,
    principal: String,
}

#[derive(Template)]
#[template(path = "done.html")]
struct Done {
    c: Chrome,
    message: String,
    back: &'static str,
}

async fn revoke(Ext(st): Ext<St>, Form(f): Form<RevokeForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let principal = f.principal.clone();
    let r = owner_do!(&st, move |o: &mut Owner| o.store_mut().revoke(&principal));
    Ok(html(&Done {
        c: chrome(&st, "Revoked", "home"),
        message: format!(
            "{} is revoked: its sessions close now; waiting requests cancelled: {}; open invites cancelled: {}.",
            shown(&f.principal),
            r.requests.len(),
            r.invites.len()
        ),
        back: "/",
    }))
}

// ---- Host a session: invites -----------------------------------------------------------------------------------

struct InviteLine {
    id: String,
    principal: String,
    made: String,
    expires: String,
    attempts: u32,
    rekey: bool,
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    c: Chrome,
    code: Option<String>,
    code_for: String,
    code_valid: String,
    invites: Vec<InviteLine>,
    max_attempts: u32,
}

fn invite_lines(o: &Owner) -> Result<Vec<InviteLine>, Error> {
    Ok(o.store()
        .open_invites()?
        .into_iter()
        .map(|i| InviteLine {
            id: i.id,
            principal: shown(&i.principal),
            made: when(&i.created_at),
            expires: chrono::DateTime::from_timestamp(i.expires_at, 0)
                .map(|t| t.format("%-d %B %Y, %H:%M UTC").to_string())
                .unwrap_or_default(),
            attempts: i.attempts,
            rekey: i.rekey,
        })
        .collect())
}

async fn invite_page(Ext(st): Ext<St>) -> Page {
    let invites = owner_do!(&st, |o: &mut Owner| invite_lines(o));
    Ok(html(&InvitePage {
        c: chrome(&st, "Host a session", "invite"),
        code: None,
        code_for: String::new(),
        code_valid: String::new(),
        invites,
        max_attempts: crate::store::MAX_INVITE_ATTEMPTS,
    }))
}

#[derive(Deserialize)]
struct InviteForm {
    csrf: String,
    fi: String,
    /// Minutes the code stays valid.
    minutes: u64,
}

/// The expiries the form offers, in minutes, with their words.
const EXPIRIES: [(u64, &str); 4] = [
    (15, "15 minutes"),
    (60, "an hour"),
    (1440, "a day"),
    (10080, "a week"),
];

async fn invite_make(Ext(st): Ext<St>, Form(f): Form<InviteForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let Some((minutes, valid)) = EXPIRIES.iter().find(|(m, _)| *m == f.minutes).copied() else {
        return Err(PageError(
            StatusCode::BAD_REQUEST,
            "choose how long the code stays valid from the list".into(),
        ));
    };
    let name = f.fi.trim().to_string();
    let (code, invites) = owner_do!(&st, move |o: &mut Owner| {
        let code = owner::invite(o.dir(), &name, std::time::Duration::from_secs(minutes * 60))?;
        Ok((code.to_string(), invite_lines(o)?))
    });
    Ok(html(&InvitePage {
        c: chrome(&st, "Host a session", "invite"),
        code: Some(code),
        code_for: shown(f.fi.trim()),
        code_valid: valid.to_string(),
        invites,
        max_attempts: crate::store::MAX_INVITE_ATTEMPTS,
    }))
}

#[derive(Deserialize)]
struct CancelForm {
    csrf: String,
    id: String,
}

async fn invite_cancel(Ext(st): Ext<St>, Form(f): Form<CancelForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let id = f.id.trim().to_ascii_lowercase();
    owner_do!(&st, move |o: &mut Owner| o.store_mut().cancel_invite(&id));
    Ok(Redirect::to("/invite").into_response())
}

// ---- Requests --------------------------------------------------------------------------------------------------

struct PendingLine {
    id: u64,
    principal: String,
    asked: String,
    backend: &'static str,
    facts: Vec<Fact>,
    token: String,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    c: Chrome,
    notice: Option<String>,
    /// The rendered [`Queue`].
    queue: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct Queue {
    csrf: String,
    sig: String,
    pending: Vec<PendingLine>,
}

fn queue_data(o: &Owner, words: super::Words, csrf: String) -> Result<Queue, Error> {
    let mut pending = Vec::new();
    for id in o.pending_ids()? {
        // A request decided meanwhile is no longer pending: skip it.
        let Ok(v) = o.pending_view(id) else { continue };
        pending.push(PendingLine {
            id,
            principal: shown(&v.principal),
            asked: when(&v.created_at),
            backend: match v.backend {
                duo_policies::Backend::Plaintext => "asks for the exact value",
                duo_policies::Backend::Dp => "asks for a noisy (differentially private) value",
                duo_policies::Backend::TwoPc => {
                    "asks for a private credit score (secure computation)"
                }
            },
            facts: facts(&(words.pending)(&v)),
            token: v.token,
        });
    }
    let sig = pending
        .iter()
        .map(|p| format!("{}:{}", p.id, p.token))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Queue { csrf, sig, pending })
}

async fn requests_page(st: &St, notice: Option<String>) -> Page {
    let (words, csrf) = (st.cfg.words, st.keys.csrf.clone());
    let q = owner_do!(st, move |o: &mut Owner| queue_data(o, words, csrf));
    Ok(html(&RequestsPage {
        c: chrome(st, "Requests", "requests"),
        notice,
        queue: q
            .render()
            .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    }))
}

async fn requests(Ext(st): Ext<St>) -> Page {
    requests_page(&st, None).await
}

/// The queue alone, for the live update.
async fn queue(Ext(st): Ext<St>) -> Page {
    let (words, csrf) = (st.cfg.words, st.keys.csrf.clone());
    let q = owner_do!(&st, move |o: &mut Owner| queue_data(o, words, csrf));
    Ok(html(&q))
}

#[derive(Deserialize)]
struct ApproveForm {
    csrf: String,
    id: u64,
    seen: String,
}

/// Approve with the token of what the page showed: if anything changed, nothing is released and the page shows
/// what approving would mean now.
async fn approve(Ext(st): Ext<St>, Form(f): Form<ApproveForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let words = st.cfg.words;
    let (id, seen) = (f.id, f.seen);
    let r = owner_do!(&st, move |o: &mut Owner| match o.approve(id, Some(&seen)) {
        Ok(v) => Ok(Ok((words.request)(&v))),
        Err(Error::Stale { why, .. }) => Ok(Err(why)),
        Err(e) => Err(e),
    });
    let (status, notice) = match r {
        Ok(released) => (
            StatusCode::OK,
            format!("Approved request {id}. Released:\n{}", shown(&released)),
        ),
        Err(why) => (
            StatusCode::CONFLICT,
            format!(
                "Not approved: {}. Nothing was released. Below is what approving would mean now; look again \
                 before approving.",
                shown(&why)
            ),
        ),
    };
    let page = requests_page(&st, Some(notice)).await?;
    Ok((status, page).into_response())
}

#[derive(Deserialize)]
struct DenyForm {
    csrf: String,
    id: u64,
    reason: String,
}

async fn deny(Ext(st): Ext<St>, Form(f): Form<DenyForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let (id, reason) = (f.id, f.reason);
    let words = st.cfg.words;
    let v = owner_do!(&st, move |o: &mut Owner| o
        .deny(id, &reason)
        .map(|v| (words.request)(&v)));
    requests_page(
        &st,
        Some(format!(
            "Denied request {id}; the FI sees your reason.\n{}",
            shown(&v)
        )),
    )
    .await
}

/// The live queue's trigger: an event `change` carrying the number of waiting requests, at once and after each
/// commit to the store.
async fn events(
    Ext(st): Ext<St>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = st.changes.clone();
    let stream = futures_util::stream::unfold((st, rx, true), |(st, mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let n = with_owner(&st, |o| o.pending_ids().map(|p| p.len()))
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        let ev = Event::default().event("change").data(n.to_string());
        Some((Ok(ev), (st, rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ---- Log -------------------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct LogQuery {
    /// Page 1 is the newest.
    page: Option<usize>,
    /// Only this kind of entry (empty: all).
    #[serde(default)]
    kind: String,
    /// Only entries about this FI (empty: all).
    #[serde(default)]
    fi: String,
    /// From this day (`YYYY-MM-DD`, empty: the first).
    #[serde(default)]
    from: String,
    /// To this day, inclusive (empty: today).
    #[serde(default)]
    to: String,
}

impl LogQuery {
    /// The store's filter; a date that is not `YYYY-MM-DD` is refused with what to write.
    fn filter(&self) -> Result<crate::store::LogFilter, PageError> {
        let day = |name: &str, text: &str| -> Result<Option<chrono::NaiveDate>, PageError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    PageError(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "the {name} date `{}` is not a date: write it as 2026-01-31",
                            shown(text)
                        ),
                    )
                })
        };
        let some = |t: &str| (!t.trim().is_empty()).then(|| t.trim().to_string());
        Ok(crate::store::LogFilter {
            kind: some(&self.kind),
            principal: some(&self.fi),
            from: day("from", &self.from)?,
            to: day("to", &self.to)?,
        })
    }

    /// The filter as a query string to carry on to other pages and the export (`&kind=...`, empty when none).
    fn carried(&self) -> String {
        [
            ("kind", &self.kind),
            ("fi", &self.fi),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("&{k}={}", url_encode(v.trim())))
        .collect()
    }
}

/// Percent-encode a query value (everything but unreserved characters).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    c: Chrome,
    entries: Vec<LogLine>,
    page: usize,
    pages: usize,
    total: u64,
    verified: Option<(bool, String)>,
    /// The filter as the form shows it.
    q: LogQuery,
    /// The filter carried on to the paging links and the export.
    carried: String,
    /// Whether a filter is applied.
    filtered: bool,
    /// The kinds (each with its words) and FIs the log holds, for the filter's lists.
    kinds: Vec<(String, String)>,
    fis: Vec<String>,
}

/// A log entry as a row: its number, when, what kind of event, who, and what it records in the CLI's words.
pub(super) struct LogLine {
    seq: u64,
    when: String,
    kind: String,
    who: String,
    what: String,
}

/// An entry's kind for a person: `budget_set` reads "Budget set".
fn kind_words(kind: &str) -> String {
    let spaced = kind.replace('_', " ");
    let mut chars = spaced.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

fn log_line(s: &Store, words: super::Words, e: &LogEntry) -> LogLine {
    let ty = crate::store::release_type(s, e);
    LogLine {
        seq: e.seq,
        when: when(&e.ts),
        kind: kind_words(&e.kind),
        who: e.principal.as_deref().map_or_else(|| "—".into(), shown),
        what: shown(&(words.log_summary)(e, ty.as_ref())),
    }
}

/// One page of the log, newest first, through the filter (counted and paged in SQL).
fn log_data(o: &Owner, words: super::Words, q: LogQuery) -> Result<LogPage, PageError> {
    let filter = q.filter()?;
    let s = o.store();
    let total = s.log_count(&filter)?;
    let pages = (total as usize).div_ceil(LOG_PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let entries: Vec<LogLine> = s
        .log_newest(&filter, ((page - 1) * LOG_PAGE) as u64, LOG_PAGE)?
        .iter()
        .map(|e| log_line(s, words, e))
        .collect();
    Ok(LogPage {
        c: Chrome {
            csrf: String::new(),
            title: "",
            nav: "",
        },
        entries,
        page,
        pages,
        total,
        verified: None,
        carried: q.carried(),
        filtered: !filter.is_empty(),
        kinds: s
            .log_kinds()?
            .into_iter()
            .map(|k| {
                let words = kind_words(&k);
                (k, words)
            })
            .collect(),
        fis: s.log_principals()?.iter().map(|p| shown(p)).collect(),
        q,
    })
}

async fn log_page(Ext(st): Ext<St>, Query(q): Query<LogQuery>) -> Page {
    let words = st.cfg.words;
    let p = owner_do!(&st, move |o: &mut Owner| Ok(log_data(o, words, q)));
    let mut p = p?;
    p.c = chrome(&st, "Log", "log");
    Ok(html(&p))
}

/// "Verify the chain": `duo owner log --verify`, with its result in words.
async fn log_verify(Ext(st): Ext<St>, Form(f): Form<CsrfOnly>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let words = st.cfg.words;
    let (p, r) = owner_do!(&st, move |o: &mut Owner| Ok((
        log_data(o, words, LogQuery::default()),
        o.store().verify_log()?
    )));
    let mut p = p?;
    p.c = chrome(&st, "Log", "log");
    p.verified = Some(if r.problems.is_empty() {
        (
            true,
            format!(
                "The log is intact: all {} entries are chained, none edited, removed or reordered (head {}).",
                r.entries, r.head_hash
            ),
        )
    } else {
        (
            false,
            format!(
                "The log was tampered with: {} problem(s) in {} entries: {}",
                r.problems.len(),
                r.entries,
                r.problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    });
    Ok(html(&p))
}

/// The log as JSON (what `duo owner log --json --limit N` prints), through the same filter as the page, as a
/// download.
async fn log_json(Ext(st): Ext<St>, Query(q): Query<LogQuery>) -> Page {
    let filter = q.filter()?;
    let body = owner_do!(&st, move |o: &mut Owner| Ok(serde_json::to_string_pretty(
        &o.store().log_matching(&filter)?
    )?));
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"duo-log.json\"",
            ),
        ],
        body,
    )
        .into_response())
}
#[cfg(test)]
mod tests {
    use super::facts;

    #[test]
    fn a_request_in_words_reads_as_terms_and_values() {
        let words = "request 3 from Acme (its request 3)  (backend dp, 2026-12-07T09:00:39Z)\n  lineage: sum of `amount`\n  \
                     reason: rent: history\n  differentially private (Laplace): cost 0.5\n    per group: 0.1\n  \
                     approve: duo owner approve 3 --seen abc\n  deny: duo owner deny 3 --reason ...\n";
        let got: Vec<(String, String)> = facts(words)
            .into_iter()
            .map(|f| (f.label, f.value))
            .collect();
        let want = [
            ("Lineage", "sum of `amount`"),
            ("Reason", "rent: history"),
            (
                "Differentially private (Laplace)",
                "cost 0.5\nper group: 0.1",
            ),
        ];
        assert_eq!(
            got,
            want.map(|(l, v)| (l.to_string(), v.to_string())).to_vec()
        );
    }
}
