//! The owner's Data screens: upload a CSV file and declare its metadata (what `duo owner load` does, through
//! the same functions), and the data store (datasets, their versions, what is published about each, delete as
//! `duo owner dataset delete` does).
//!
//! An upload is staged in memory under a random token and nothing is stored until the owner confirms: the
//! file is read ([`draft_meta`]) to pre-fill the metadata form, checked against what the owner declared
//! ([`owner::check_load`], the checks of `duo owner load`, errors naming line and column), then loaded by
//! [`owner::load_from`] on the confirmation POST. The upload route alone accepts bodies up to [`MAX_UPLOAD`].

use super::common::when;
use super::common::{html, shown};
use super::pages::{chrome, csrf_ok, owner_do, with_owner, Chrome, Page, PageError, St};
use crate::error::Error;
use crate::owner::{self, Owner};
use crate::store::prelude::*;
use crate::store::DatasetVersion;
use askama::Template;
use axum::extract::{DefaultBodyLimit, Form, Multipart, Query, State as Ext};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use duo_engine::draft::{draft_meta, Draft};
use duo_engine::ingest::{dollars, money_to_string, parse_money, IngestLimits};
use duo_engine::{Bounds, ColumnMeta, DataType, DatasetMeta, PrivacyUnit, TimeWindow};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest upload accepted (the whole multipart body): 32 MiB, some 300,000 rows of a bank statement. Every
/// other route keeps the 16 KiB form limit.
pub const MAX_UPLOAD: usize = 32 * 1024 * 1024;
/// Uploads kept waiting for confirmation at once (the oldest is dropped to make room).
const MAX_STAGED: usize = 4;
/// How long an upload waits for confirmation.
const STAGED_FOR: Duration = Duration::from_secs(3600);

/// The routes of the Data screens.
pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/data", get(store_page))
        .route(
            "/data/upload",
            get(upload_page)
                .post(upload)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/data/upload/check", axum::routing::post(check))
        .route("/data/upload/confirm", axum::routing::post(confirm))
        .route("/data/delete", get(delete_confirm).post(delete))
}

/// A file uploaded and not yet loaded.
struct Staged {
    /// Shared, so checking the file does not copy it.
    bytes: Arc<[u8]>,
    file: String,
    name: String,
    draft: Draft,
    /// The metadata the owner declared and the node checked (TOML, as `duo owner load --meta` reads it).
    meta_text: Option<String>,
    /// The dataset's current version when the owner was shown what would change.
    replaces: Option<u64>,
    /// The owner chose to load a file with no data rows (`--allow-empty`).
    allow_empty: bool,
    at: Instant,
}

/// Uploads waiting for the owner's confirmation, by token.
#[derive(Default)]
pub(crate) struct Uploads(Mutex<HashMap<String, Staged>>);

impl Uploads {
    fn put(&self, s: Staged) -> String {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, v| v.at.elapsed() < STAGED_FOR);
            while m.len() >= MAX_STAGED {
                let Some(oldest) = m.iter().min_by_key(|(_, v)| v.at).map(|(k, _)| k.clone())
                else {
                    break;
                };
                m.remove(&oldest);
            }
            m.insert(token.clone(), s);
        }
        token
    }

    fn with<R>(&self, token: &str, f: impl FnOnce(&mut Staged) -> R) -> Result<R, PageError> {
        let mut m = self.0.lock().map_err(|_| gone())?;
        match m.get_mut(token) {
            Some(s) if s.at.elapsed() < STAGED_FOR => Ok(f(s)),
            _ => Err(gone()),
        }
    }

    fn take(&self, token: &str) -> Result<Staged, PageError> {
        let mut m = self.0.lock().map_err(|_| gone())?;
        m.remove(token)
            .filter(|s| s.at.elapsed() < STAGED_FOR)
            .ok_or_else(gone)
    }
}

fn gone() -> PageError {
    PageError(
        StatusCode::NOT_FOUND,
        "this upload is no longer waiting (it was loaded, it is over an hour old, or the node restarted): \
         upload the file again"
            .into(),
    )
}

fn bad(msg: impl Into<String>) -> PageError {
    PageError(StatusCode::BAD_REQUEST, msg.into())
}

macro_rules! owner_do {
    ($st:expr, $f:expr) => {
        match owner_do($st, $f).await {
            Ok(r) => r,
            Err(page) => return page,
        }
    };
}

/// A done page for the Data screens.
#[derive(Template)]
#[template(path = "done.html")]
struct Done {
    c: Chrome,
    message: String,
    back: &'static str,
}

// ---- Data store ------------------------------------------------------------------------------------------------

/// One published column, in words.
struct ColumnLine {
    name: String,
    kind: &'static str,
    description: String,
    range: String,
    nullable: bool,
}

struct VersionLine {
    version: u64,
    rows: u64,
    loaded: String,
    state: String,
}

struct DatasetCard {
    name: String,
    description: String,
    tags: String,
    unit: &'static str,
    time: String,
    max_rows: u64,
    columns: Vec<ColumnLine>,
    versions: Vec<VersionLine>,
}

#[derive(Template)]
#[template(path = "data.html")]
struct StorePage {
    c: Chrome,
    datasets: Vec<DatasetCard>,
    deleted: Vec<(String, Vec<VersionLine>)>,
}

/// A type's name for a person.
fn kind(t: DataType) -> &'static str {
    match t {
        DataType::I64 => "whole number",
        DataType::F64 => "number",
        DataType::Bool => "yes or no",
        DataType::Date => "date",
        DataType::Category => "category",
        DataType::Money => "dollar amount",
    }
}

/// A bound as the owner writes it: dollars for money, the number otherwise.
fn bound_text(t: DataType, x: f64) -> String {
    if t == DataType::Money && x.fract() == 0.0 && x.abs() < 9e15 {
        money_to_string(x as i64)
    } else {
        format!("{x}")
    }
}

fn range_words(c: &ColumnMeta) -> String {
    let mut parts = Vec::new();
    if let Some(b) = c.bounds {
        parts.push(
            if c.dtype == DataType::Money && b.lo.abs() < 9e15 && b.hi.abs() < 9e15 {
                format!("{} to {}", dollars(b.lo as i64), dollars(b.hi as i64))
            } else {
                format!("{} to {}", b.lo, b.hi)
            },
        );
    }
    if let Some(cats) = &c.categories {
        parts.push(format!("one of: {}", cats.join(", ")));
    }
    shown(&parts.join("; "))
}

fn versions(vs: &[DatasetVersion]) -> Vec<VersionLine> {
    vs.iter()
        .map(|v| VersionLine {
            version: v.version,
            rows: v.rows,
            loaded: when(&v.loaded_at),
            state: match (&v.deleted_at, v.current) {
                (Some(at), _) => format!("rows deleted {}", when(at)),
                (None, true) => "in use: requests are answered from it".into(),
                (None, false) => "replaced by a newer version".into(),
            },
        })
        .collect()
}

fn card(meta: DatasetMeta, vs: &[DatasetVersion]) -> DatasetCard {
    DatasetCard {
        description: shown(&meta.description),
        tags: shown(&meta.tags.join(", ")),
        unit: meta.privacy_unit.describe(),
        time: match (&meta.time_column, meta.window) {
            (Some(t), Some(w)) => shown(&format!("{t}, from {} to {}", w.start, w.end)),
            (Some(t), None) => shown(t),
            _ => "none".into(),
        },
        max_rows: meta.max_rows,
        columns: meta
            .columns
            .iter()
            .map(|c| ColumnLine {
                name: shown(&c.name),
                kind: kind(c.dtype),
                description: shown(&c.description),
                range: range_words(c),
                nullable: c.nullable,
            })
            .collect(),
        versions: versions(vs),
        name: meta.name,
    }
}

async fn store_page(Ext(st): Ext<St>) -> Page {
    let (metas, mut all) = owner_do!(&st, |o: &mut Owner| Ok((
        o.store().metas()?,
        o.store().dataset_versions()?
    )));
    let datasets = metas
        .into_values()
        .map(|m| {
            let vs = all.remove(&m.name).unwrap_or_default();
            card(m, &vs)
        })
        .collect();
    let deleted = all
        .into_iter()
        .map(|(name, vs)| (shown(&name), versions(&vs)))
        .collect();
    Ok(html(&StorePage {
        c: chrome(&st, "Your data", "data"),
        datasets,
        deleted,
    }))
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

#[derive(Template)]
#[template(path = "data_delete.html")]
struct DeleteConfirm {
    c: Chrome,
    name: String,
    versions: usize,
}

async fn delete_confirm(Ext(st): Ext<St>, Query(q): Query<NameQuery>) -> Page {
    let name = q.name.clone();
    let n = owner_do!(&st, move |o: &mut Owner| Ok(o
        .store()
        .dataset_versions()?
        .remove(&name)
        .map(|v| v.iter().filter(|v| v.deleted_at.is_none()).count())));
    let Some(versions) = n.filter(|n| *n > 0) else {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!(
                "there is no dataset `{}` with rows to delete",
                shown(&q.name)
            ),
        ));
    };
    Ok(html(&DeleteConfirm {
        c: chrome(&st, "Delete a dataset", "data"),
        name: q.name,
        versions,
    }))
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    name: String,
}

/// `duo owner dataset delete NAME --yes`, after the confirmation page.
async fn delete(Ext(st): Ext<St>, Form(f): Form<DeleteForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let name = f.name.clone();
    let n = owner_do!(&st, move |o: &mut Owner| o.delete_dataset(&name));
    Ok(html(&Done {
        c: chrome(&st, "Deleted", "data"),
        message: format!(
            "Deleted the rows of {n} version(s) of {}. What FIs were told from it stays in the log.",
            shown(&f.name)
        ),
        back: "/data",
    }))
}

// ---- Upload ----------------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "data_upload.html")]
struct UploadPage {
    c: Chrome,
    max_mib: usize,
}

async fn upload_page(Ext(st): Ext<St>) -> Page {
    // A node must exist to load into.
    owner_do!(&st, |_: &mut Owner| Ok(()));
    Ok(html(&UploadPage {
        c: chrome(&st, "Add data", "data"),
        max_mib: MAX_UPLOAD >> 20,
    }))
}

/// A dataset name from a file name: letters, digits and underscores, starting with a letter.
fn name_from_file(file: &str) -> String {
    let stem = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let stem = stem.strip_suffix(".csv").unwrap_or(stem);
    let mut n: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(duo_engine::ingest::MAX_NAME_LEN)
        .collect();
    if !n.starts_with(|c: char| c.is_ascii_alphabetic()) {
        n = format!("data_{n}");
        n.truncate(duo_engine::ingest::MAX_NAME_LEN);
    }
    n
}

fn too_large() -> PageError {
    PageError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the file is too large: the UI accepts files up to {} MiB. Load a larger file with `duo owner load \
             FILE.csv --name NAME`, or split it",
            MAX_UPLOAD >> 20
        ),
    )
}

/// The multipart upload: the CSRF token, the dataset name and the file; staged, drafted, and shown back as
/// the metadata form.
async fn upload(Ext(st): Ext<St>, mut mp: Multipart) -> Page {
    let (mut csrf, mut name, mut file, mut bytes) = (None, None, String::new(), None);
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(bad(format!("the upload could not be read: {e}"))),
        };
        let field_name = field.name().unwrap_or("").to_string();
        if field_name == "file" {
            file = field.file_name().unwrap_or("upload.csv").to_string();
        }
        let data = match field.bytes().await {
            Ok(d) => d,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(bad(format!("the upload could not be read: {e}"))),
        };
        match field_name.as_str() {
            "csrf" => csrf = Some(String::from_utf8_lossy(&data).into_owned()),
            "name" => name = Some(String::from_utf8_lossy(&data).trim().to_string()),
            "file" => bytes = Some(data.to_vec()),
            _ => {}
        }
    }
    csrf_ok(&st, csrf.as_deref().unwrap_or(""))?;
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return Err(bad(
            "choose a CSV file to upload (the one chosen was empty)",
        ));
    };
    let name = name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name_from_file(&file));
    let (draft, bytes) = tokio::task::spawn_blocking({
        let name = name.clone();
        move || {
            (
                draft_meta(&bytes[..], &name, &IngestLimits::default()),
                bytes,
            )
        }
    })
    .await
    .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let meta = draft.meta.clone();
    let token = st.uploads.put(Staged {
        bytes: bytes.into(),
        file,
        name,
        draft,
        meta_text: None,
        replaces: None,
        allow_empty: false,
        at: Instant::now(),
    });
    declare_page(&st, &token, &meta, None, StatusCode::OK)
}

// ---- The metadata form -----------------------------------------------------------------------------------------

/// One column of the metadata form.
struct ColumnForm {
    i: usize,
    name: String,
    dtype: &'static str,
    description: String,
    unit: String,
    lo: String,
    hi: String,
    categories: String,
    nullable: bool,
}

#[derive(Template)]
#[template(path = "data_declare.html")]
struct DeclarePage {
    c: Chrome,
    token: String,
    file: String,
    rows: u64,
    stopped: Option<String>,
    header: Vec<String>,
    preview: Vec<Vec<String>>,
    error: Option<String>,
    name: String,
    description: String,
    tags: String,
    unit: &'static str,
    units: Vec<(&'static str, &'static str)>,
    time_column: String,
    dates: Vec<String>,
    window_start: String,
    window_end: String,
    max_rows: u64,
    max_rows_per_month: String,
    columns: Vec<ColumnForm>,
    types: Vec<(&'static str, &'static str)>,
}

const TYPES: [DataType; 6] = [
    DataType::Money,
    DataType::Date,
    DataType::Category,
    DataType::I64,
    DataType::F64,
    DataType::Bool,
];

const UNITS: [PrivacyUnit; 3] = [PrivacyUnit::Event, PrivacyUnit::Month, PrivacyUnit::Dataset];

fn unit_name(u: PrivacyUnit) -> &'static str {
    match u {
        PrivacyUnit::Event => "event",
        PrivacyUnit::Month => "month",
        PrivacyUnit::Dataset => "dataset",
    }
}

/// The form pre-filled with `meta` (the draft, or what the owner declared), with the file's first rows.
fn declare_page(
    st: &St,
    token: &str,
    meta: &DatasetMeta,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let (file, rows, stopped, header, preview) = st.uploads.with(token, |s| {
        (
            s.file.clone(),
            s.draft.rows,
            s.draft.stopped.clone(),
            s.draft.header.clone(),
            s.draft.preview.clone(),
        )
    })?;
    let columns = meta
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| ColumnForm {
            i,
            name: c.name.clone(),
            dtype: c.dtype.name(),
            description: c.description.clone(),
            unit: c.unit.clone().unwrap_or_default(),
            lo: c
                .bounds
                .map_or(String::new(), |b| bound_text(c.dtype, b.lo)),
            hi: c
                .bounds
                .map_or(String::new(), |b| bound_text(c.dtype, b.hi)),
            categories: c
                .categories
                .as_ref()
                .map_or(String::new(), |v| v.join("\n")),
            nullable: c.nullable,
        })
        .collect();
    let page = DeclarePage {
        c: chrome(st, "Describe your data", "data"),
        token: token.to_string(),
        file: shown(&file),
        rows,
        stopped,
        header: header.iter().map(|h| shown(h)).collect(),
        preview: preview
            .iter()
            .map(|r| r.iter().map(|c| shown(c)).collect())
            .collect(),
        error,
        name: meta.name.clone(),
        description: meta.description.clone(),
        tags: meta.tags.join(", "),
        unit: unit_name(meta.privacy_unit),
        units: UNITS
            .iter()
            .map(|u| (unit_name(*u), u.describe()))
            .collect(),
        time_column: meta.time_column.clone().unwrap_or_default(),
        dates: meta
            .columns
            .iter()
            .filter(|c| c.dtype == DataType::Date)
            .map(|c| c.name.clone())
            .collect(),
        window_start: meta.window.map_or(String::new(), |w| w.start.to_string()),
        window_end: meta.window.map_or(String::new(), |w| w.end.to_string()),
        max_rows: meta.max_rows,
        max_rows_per_month: meta
            .max_rows_per_month
            .map_or(String::new(), |n| n.to_string()),
        columns,
        types: TYPES.iter().map(|t| (t.name(), kind(*t))).collect(),
    };
    Ok((status, html(&page)).into_response())
}

/// The metadata form's fields, by name.
struct Fields(HashMap<String, String>);

impl Fields {
    fn get(&self, k: &str) -> &str {
        self.0.get(k).map_or("", |v| v.trim())
    }
}

fn parse_bound(t: DataType, s: &str, what: &str) -> Result<Option<f64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let x = if t == DataType::Money {
        parse_money(s.trim_start_matches('$')).map(|c| c as f64)
    } else {
        s.parse::<f64>().ok().filter(|x| x.is_finite())
    };
    x.map(Some)
        .ok_or_else(|| format!("{what}: {s:?} is not a number"))
}

/// The metadata the owner declared in the form.
fn meta_from(f: &Fields, old: &DatasetMeta) -> Result<DatasetMeta, String> {
    let date = |k: &str, what: &str| {
        duo_engine::ingest::parse_date(f.get(k))
            .ok_or_else(|| format!("{what}: write the date as YYYY-MM-DD, for example 2025-03-01"))
    };
    let time_column = Some(f.get("time_column").to_string()).filter(|t| !t.is_empty());
    let window = match (f.get("window_start"), f.get("window_end")) {
        ("", "") => None,
        _ => Some(TimeWindow {
            start: date("window_start", "the first day covered")?,
            end: date("window_end", "the last day covered")?,
        }),
    };
    let unit = UNITS
        .iter()
        .copied()
        .find(|u| unit_name(*u) == f.get("privacy_unit"))
        .ok_or("choose what one unit of privacy protects from the list")?;
    let max_rows = f
        .get("max_rows")
        .parse::<u64>()
        .map_err(|_| "the most rows the dataset may hold: write a whole number")?;
    let max_rows_per_month = match f.get("max_rows_per_month") {
        "" => None,
        s => Some(
            s.parse::<u32>()
                .map_err(|_| "the most rows in one month: write a whole number")?,
        ),
    };
    let mut columns = Vec::with_capacity(old.columns.len());
    for (i, c) in old.columns.iter().enumerate() {
        let dtype = TYPES
            .iter()
            .copied()
            .find(|t| t.name() == f.get(&format!("col{i}_type")))
            .ok_or_else(|| format!("column {}: choose its type from the list", c.name))?;
        let what = |side| format!("column {}, {side}", c.name);
        let lo = parse_bound(dtype, f.get(&format!("col{i}_lo")), &what("lowest value"))?;
        let hi = parse_bound(dtype, f.get(&format!("col{i}_hi")), &what("highest value"))?;
        let bounds = match (lo, hi) {
            (None, None) => None,
            (Some(lo), Some(hi)) => Some(Bounds { lo, hi }),
            _ => {
                return Err(format!(
                    "column {}: give both the lowest and the highest value, or neither",
                    c.name
                ))
            }
        };
        let categories: Vec<String> = f
            .get(&format!("col{i}_categories"))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        columns.push(ColumnMeta {
            name: c.name.clone(),
            dtype,
            description: f.get(&format!("col{i}_description")).to_string(),
            unit: Some(f.get(&format!("col{i}_unit")).to_string()).filter(|u| !u.is_empty()),
            bounds,
            categories: (!categories.is_empty()).then_some(categories),
            nullable: f.0.contains_key(&format!("col{i}_nullable")),
        });
    }
    Ok(DatasetMeta {
        name: f.get("name").to_string(),
        description: f.get("description").to_string(),
        tags: f
            .get("tags")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        privacy_unit: unit,
        time_column,
        window,
        max_rows,
        max_rows_per_month,
        columns,
    })
}

/// What loading would change, in words, for the confirmation page.
struct Change {
    /// The version the new one replaces, if the dataset exists.
    replaces: Option<u64>,
    lines: Vec<String>,
}

fn changes(old: Option<(&DatasetMeta, u64, u64)>, new: &DatasetMeta, rows: u64) -> Change {
    let Some((old, version, old_rows)) = old else {
        return Change {
            replaces: None,
            lines: vec![format!(
                "A new dataset: FIs you paired will see its description below from now on ({rows} rows, which \
                 they never see)."
            )],
        };
    };
    let mut lines = vec![format!(
        "Version {} replaces version {version}: requests are answered from the new rows ({rows} rows instead \
         of {old_rows}). Version {version} is kept, unused, until you delete the dataset.",
        version + 1
    )];
    for c in &new.columns {
        match old.column(&c.name) {
            None => lines.push(format!("New column {}.", c.name)),
            Some(o) if o != c => lines.push(format!(
                "Column {} changes: now a {}{}{}.",
                c.name,
                kind(c.dtype),
                Some(range_words(c))
                    .filter(|r| !r.is_empty())
                    .map_or(String::new(), |r| format!(", {r}")),
                if c.nullable { ", may be empty" } else { "" }
            )),
            Some(_) => {}
        }
    }
    for o in &old.columns {
        if new.column(&o.name).is_none() {
            lines.push(format!(
                "Column {} is removed: requests that use it will fail.",
                o.name
            ));
        }
    }
    if old.description != new.description || old.tags != new.tags {
        lines.push("The description or tags change.".into());
    }
    if old.privacy_unit != new.privacy_unit {
        lines.push(format!(
            "One unit of privacy now protects {} (it was {}).",
            new.privacy_unit.describe(),
            old.privacy_unit.describe()
        ));
    }
    if old.window != new.window || old.time_column != new.time_column {
        lines.push("The dates it covers change.".into());
    }
    if old.max_rows != new.max_rows || old.max_rows_per_month != new.max_rows_per_month {
        lines.push("The published row limits change.".into());
    }
    Change {
        replaces: Some(version),
        lines: lines.into_iter().map(|l| shown(&l)).collect(),
    }
}

#[derive(Template)]
#[template(path = "data_confirm.html")]
struct ConfirmPage {
    c: Chrome,
    token: String,
    name: String,
    file: String,
    rows: u64,
    change: Change,
    published: String,
}

/// Check what the owner declared against the staged file (everything `duo owner load` checks); show the form
/// again with the error, or what loading would change, to confirm.
async fn check(Ext(st): Ext<St>, Form(form): Form<Vec<(String, String)>>) -> Page {
    let f = Fields(form.into_iter().collect());
    csrf_ok(&st, f.get("csrf"))?;
    let token = f.get("token").to_string();
    let draft = st.uploads.with(&token, |s| s.draft.meta.clone())?;
    let meta = match meta_from(&f, &draft) {
        Ok(m) => m,
        Err(e) => {
            let mut shown_meta = draft;
            shown_meta.name = f.get("name").to_string();
            return declare_page(&st, &token, &shown_meta, Some(e), StatusCode::BAD_REQUEST);
        }
    };
    let meta_text = toml::to_string(&meta).map_err(|e| bad(e.to_string()))?;
    let (bytes, file) = st
        .uploads
        .with(&token, |s| (s.bytes.clone(), s.file.clone()))?;
    let name = meta.name.clone();
    let allow_empty = f.0.contains_key("allow_empty");
    let checked = {
        let (t, n, file) = (meta_text.clone(), name.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            owner::check_load(&bytes[..], &file, &n, &t, allow_empty)
        })
        .await
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let sugg = match checked {
        Ok(s) => s,
        Err(e) => {
            let msg = format!(
                "{}. Nothing was loaded; fix the file or what you declared, and check again.",
                e.to_string().trim_end_matches('.')
            );
            return declare_page(
                &st,
                &token,
                &meta,
                Some(shown(&msg)),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let n = name.clone();
    let old = owner_do!(&st, move |o: &mut Owner| Ok(o
        .store()
        .datasets()?
        .into_iter()
        .find(|d| d.meta.name == n)));
    let change = changes(
        old.as_ref().map(|d| (&d.meta, d.version, d.rows)),
        &meta,
        sugg.rows,
    );
    st.uploads.with(&token, |s| {
        s.meta_text = Some(meta_text.clone());
        s.name = name.clone();
        s.replaces = change.replaces;
        s.allow_empty = allow_empty;
    })?;
    Ok(html(&ConfirmPage {
        c: chrome(&st, "Check and load", "data"),
        token,
        name: shown(&name),
        file: shown(&file),
        rows: sugg.rows,
        change,
        published: shown(&meta_text),
    }))
}

#[derive(Deserialize)]
struct ConfirmForm {
    csrf: String,
    token: String,
}

/// Load the staged file with the checked metadata: [`owner::load_from`], what `duo owner load` runs.
async fn confirm(Ext(st): Ext<St>, Form(f): Form<ConfirmForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let s = st.uploads.take(&f.token)?;
    let Some(meta_text) = s.meta_text.clone() else {
        return Err(bad(
            "check what you declared before loading (the Check button)",
        ));
    };
    let (name, replaces) = (s.name.clone(), s.replaces);
    let r = with_owner(&st, move |o: &mut Owner| {
        let now = o.store().versions()?.get(&s.name).copied();
        if now != s.replaces {
            return Err(Error::Refused(format!(
                "dataset `{}` changed since you checked it (another load or a delete): nothing was loaded; \
                 upload the file again to see what loading would change now",
                s.name
            )));
        }
        owner::load_from(o.dir(), &s.bytes[..], &s.file, &s.name, &meta_text, s.allow_empty)
    })
    .await?;
    let Some(r) = r else {
        return Ok(Redirect::to("/welcome").into_response());
    };
    Ok(html(&Done {
        c: chrome(&st, "Loaded", "data"),
        message: format!(
            "Loaded {} rows into {} (version {}{}). FIs you paired now see its description; the rows stay here.",
            r.rows,
            shown(&name),
            r.version,
            replaces.map_or(String::new(), |v| format!(", replacing version {v}"))
        ),
        back: "/data",
    }))
}
