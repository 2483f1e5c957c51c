//! The owner's store: one SQLite database (WAL) in the owner's data directory.
//!
//! It holds datasets (every version), invites, pairings, requests with their decisions and stored answers, the
//! release index used by policies, and the audit log. The running node keeps no copy of record in memory: every
//! CLI command and every session reads and writes this database, so an approval given from another process is
//! seen at once. Everything a decision depends on is re-read inside the transaction that acts on it
//! (`BEGIN IMMEDIATE`).
//!
//! The audit log is append-only (triggers refuse `UPDATE` and `DELETE`) and hash-chained: each entry's hash covers
//! the previous entry's hash and the entry's own fields, so [`verify_log`] finds any edited, removed or reordered
//! entry.

use crate::error::Error;
use chrono::{DateTime, Utc};
use duo_engine::{Column, Dataset, DatasetMeta, Suggestions};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How hard SQLite syncs each commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sync {
    /// `synchronous=FULL`: a commit survives a power cut (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the program, but the last commits may be lost on power
    /// failure. Faster.
    Normal,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    meta        TEXT NOT NULL,
    suggestions TEXT NOT NULL,
    data        BLOB NOT NULL,
    rows        INTEGER NOT NULL,
    loaded_at   TEXT NOT NULL,
    current     INTEGER NOT NULL DEFAULT 1,
    deleted_at  TEXT,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS invites (
    id         TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    psk        BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    state      TEXT NOT NULL DEFAULT 'open',
    pairing_secs INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pairings (
    principal   TEXT PRIMARY KEY,
    fi_key      BLOB NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    paired_at   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_seen   TEXT,
    state       TEXT NOT NULL DEFAULT 'active'
);
CREATE TABLE IF NOT EXISTS requests (
    id           INTEGER PRIMARY KEY,
    principal    TEXT NOT NULL,
    backend      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    source       TEXT NOT NULL,
    lineage      TEXT NOT NULL,
    checked      TEXT NOT NULL,
    description  TEXT NOT NULL,
    versions     TEXT NOT NULL,
    release_key  TEXT NOT NULL,
    state        TEXT NOT NULL,
    rule         TEXT,
    why          TEXT,
    answer       TEXT,
    receipt      TEXT,
    dp_params    TEXT,
    cost         INTEGER,
    accuracy     REAL,
    decided_by   TEXT,
    created_at   TEXT NOT NULL,
    decided_at   TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_key ON requests (release_key, state);
CREATE INDEX IF NOT EXISTS requests_by_state ON requests (state);
CREATE TABLE IF NOT EXISTS release_columns (
    request_id INTEGER NOT NULL,
    dataset    TEXT NOT NULL,
    col        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS release_columns_by_col ON release_columns (dataset, col);
CREATE TABLE IF NOT EXISTS release_attributes (
    request_id INTEGER NOT NULL,
    principal  TEXT NOT NULL,
    attribute  TEXT NOT NULL,
    window_end TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS release_attributes_by_key ON release_attributes (principal, attribute, window_end);
CREATE TABLE IF NOT EXISTS scoring_requests (
    request_id INTEGER PRIMARY KEY,
    spec       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scoring_runs (
    id         INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL UNIQUE,
    principal  TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    millibits  INTEGER NOT NULL,
    state      TEXT NOT NULL,
    outcome    TEXT,
    error      TEXT,
    ended_at   INTEGER
);
CREATE INDEX IF NOT EXISTS scoring_runs_by_principal ON scoring_runs (principal, started_at);
CREATE TABLE IF NOT EXISTS rate_events (
    principal TEXT NOT NULL,
    rule      TEXT NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_events_by_key ON rate_events (principal, rule, at);
CREATE TABLE IF NOT EXISTS budget_history (
    request_id INTEGER NOT NULL,
    at         TEXT NOT NULL,
    principal  TEXT NOT NULL,
    datasets   TEXT NOT NULL,
    amount     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    seq       INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    principal TEXT,
    body      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS log_no_update BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_no_delete BEFORE DELETE ON log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// The hash the first log entry chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Path of the owner's database inside an owner directory.
pub fn db_path(owner_dir: &Path) -> PathBuf {
    owner_dir.join("duo.sqlite")
}

/// Open (creating if needed) the owner's database with WAL, a busy timeout and the schema.
pub fn open(owner_dir: &Path, sync: Sync) -> Result<Connection, Error> {
    crate::home::private_dir(owner_dir)?;
    let path = db_path(owner_dir);
    let conn = Connection::open(&path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(SCHEMA)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            crate::home::set_mode(&p, 0o600)?;
        }
    }
    Ok(conn)
}

/// Start a write transaction that takes the write lock at once.
pub fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, Error> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Now, as stored (RFC 3339, UTC, milliseconds).
pub fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

// ---------------------------------------------------------------------------------------------------------------
// Datasets

/// A dataset as listed for the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    /// Published metadata.
    pub meta: DatasetMeta,
    /// Current version.
    pub version: u64,
    /// Rows loaded (owner-only).
    pub rows: u64,
    /// When it was loaded.
    pub loaded_at: String,
    /// What the node inferred at load (owner-only).
    pub suggestions: Suggestions,
}

/// Store a new version of a dataset under its name, in one transaction with its log entry. Returns the version.
pub fn put_dataset(conn: &mut Connection, ds: &Dataset, sugg: &Suggestions) -> Result<u64, Error> {
    let tx = write_tx(conn)?;
    let name = &ds.meta.name;
    let version: u64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM datasets WHERE name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )? as u64;
    let data = postcard::to_stdvec(&ds.columns).map_err(|e| Error::Internal(e.to_string()))?;
    tx.execute("UPDATE datasets SET current = 0 WHERE name = ?1", [name])?;
    tx.execute(
        "INSERT INTO datasets (name, version, meta, suggestions, data, rows, loaded_at, current)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
        params![
            name,
            version as i64,
            serde_json::to_string(&ds.meta)?,
            serde_json::to_string(sugg)?,
            data,
            ds.rows() as i64,
            now_text()
        ],
    )?;
    append_log(
        &tx,
        "dataset_loaded",
        None,
        &serde_json::json!({ "dataset": name, "version": version, "columns": ds.meta.columns.len() }),
    )?;
    fail::fail_point!("store::mid_ingest");
    tx.commit()?;
    Ok(version)
}

/// The current datasets (metadata and facts for the owner), by name.
pub fn datasets(conn: &Connection) -> Result<Vec<DatasetRow>, Error> {
    let mut stmt = conn.prepare(
        "SELECT meta, version, rows, loaded_at, suggestions FROM datasets WHERE current = 1 ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (meta, version, n, loaded_at, sugg) = row?;
        out.push(DatasetRow {
            meta: serde_json::from_str(&meta)?,
            version: version as u64,
            rows: n as u64,
            loaded_at,
            suggestions: serde_json::from_str(&sugg)?,
        });
    }
    Ok(out)
}

/// The published metadata of the current datasets, by name.
pub fn metas(conn: &Connection) -> Result<BTreeMap<String, DatasetMeta>, Error> {
    let mut stmt = conn.prepare("SELECT name, meta FROM datasets WHERE current = 1")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (name, meta) = row?;
        out.insert(name, serde_json::from_str(&meta)?);
    }
    Ok(out)
}

/// The current version of each dataset, by name.
pub fn versions(conn: &Connection) -> Result<BTreeMap<String, u64>, Error> {
    let mut stmt = conn.prepare_cached("SELECT name, version FROM datasets WHERE current = 1")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (name, v) = row?;
        out.insert(name, v as u64);
    }
    Ok(out)
}

/// The published metadata of one version of a dataset.
pub fn dataset_meta(conn: &Connection, name: &str, version: u64) -> Result<DatasetMeta, Error> {
    let meta: String = conn
        .prepare_cached("SELECT meta FROM datasets WHERE name = ?1 AND version = ?2")?
        .query_row(params![name, version as i64], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("dataset `{name}` version {version}")))?;
    Ok(serde_json::from_str(&meta)?)
}

/// Load one version of a dataset.
pub fn load_dataset(conn: &Connection, name: &str, version: u64) -> Result<Dataset, Error> {
    let (meta, data): (String, Vec<u8>) = conn
        .query_row(
            "SELECT meta, data FROM datasets WHERE name = ?1 AND version = ?2",
            params![name, version as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("dataset `{name}` version {version}")))?;
    let columns: Vec<Column> =
        postcard::from_bytes(&data).map_err(|e| Error::Internal(format!("stored dataset: {e}")))?;
    Ok(Dataset {
        meta: serde_json::from_str(&meta)?,
        version,
        columns,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Invites and pairings

/// An invite as stored (the pre-shared key is derived from the code's secret; the code itself is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Public invite id (part of the code).
    pub id: String,
    /// Principal the invite is bound to.
    pub principal: String,
    /// Pre-shared key for the pairing handshake.
    pub psk: [u8; 32],
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
    /// Pairing attempts so far (each counted when it starts, so concurrent attempts cannot exceed the limit).
    pub attempts: u32,
    /// `open`, `used` or `burned`.
    pub state: String,
}

/// Pairing attempts an invite allows; once they have all failed it is burned.
pub const MAX_INVITE_ATTEMPTS: u32 = 3;

/// Store a new invite and log it.
pub fn create_invite(
    conn: &mut Connection,
    id: &str,
    principal: &str,
    psk: &[u8; 32],
    expires_at: i64,
    pairing: Duration,
) -> Result<(), Error> {
    let tx = write_tx(conn)?;
    let pairing_secs = i64::try_from(pairing.as_secs()).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO invites (id, principal, psk, created_at, expires_at, pairing_secs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            principal,
            psk.as_slice(),
            now_text(),
            expires_at,
            pairing_secs
        ],
    )?;
    append_log(
        &tx,
        "invite_created",
        Some(principal),
        &serde_json::json!({ "invite": id, "expires_at": expires_at, "pairing_secs": pairing_secs }),
    )?;
    tx.commit()?;
    Ok(())
}

/// The invite with this id, whatever its state.
pub fn invite(conn: &Connection, id: &str) -> Result<Option<Invite>, Error> {
    Ok(conn
        .query_row(
            "SELECT id, principal, psk, expires_at, attempts, state FROM invites WHERE id = ?1",
            [id],
            |r| {
                let psk: Vec<u8> = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, psk, r.get(3)?, r.get(4)?, r.get(5)?))
            },
        )
        .optional()?
        .and_then(|(id, principal, psk, expires_at, attempts, state)| {
            let psk: [u8; 32] = psk.try_into().ok()?;
            Some(Invite {
                id,
                principal,
                psk,
                expires_at,
                attempts,
                state,
            })
        }))
}

fn usable(i: &Invite) -> bool {
    i.state == "open" && i.expires_at > now_unix() && i.attempts < MAX_INVITE_ATTEMPTS
}

/// Start a pairing attempt: if the invite may still be used (open, not expired, attempts left), count the
/// attempt now, in its own transaction, and return the pre-shared key. Counting before the handshake means
/// concurrent attempts can never exceed [`MAX_INVITE_ATTEMPTS`].
pub fn begin_invite_attempt(conn: &mut Connection, id: &str) -> Result<Option<[u8; 32]>, Error> {
    let tx = write_tx(conn)?;
    let Some(inv) = invite(&tx, id)?.filter(usable) else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE invites SET attempts = attempts + 1 WHERE id = ?1",
        [id],
    )?;
    tx.commit()?;
    Ok(Some(inv.psk))
}

/// Why an invite could not be used, in words for the log and the FI.
pub fn invite_refusal(conn: &Connection, id: &str) -> Result<String, Error> {
    Ok(match invite(conn, id)? {
        None => "no such invite".into(),
        Some(i) if i.state == "used" => "this invite was already used".into(),
        Some(i) if i.state == "burned" => {
            "this invite was burned after too many failed attempts".into()
        }
        Some(i) if i.expires_at <= now_unix() => "this invite has expired".into(),
        Some(i) if i.attempts >= MAX_INVITE_ATTEMPTS => {
            "this invite has had too many attempts; ask the owner for a new one".into()
        }
        Some(_) => "this invite cannot be used".into(),
    })
}

/// Record a failed pairing attempt (already counted by [`begin_invite_attempt`]); burns the invite once it has
/// no attempts left. Returns whether it is burned.
pub fn invite_failed(conn: &mut Connection, id: &str, why: &str) -> Result<bool, Error> {
    let tx = write_tx(conn)?;
    let Some(inv) = invite(&tx, id)? else {
        append_log(
            &tx,
            "pairing_failed",
            None,
            &serde_json::json!({ "invite": id, "why": why }),
        )?;
        tx.commit()?;
        return Ok(false);
    };
    let burned = inv.attempts >= MAX_INVITE_ATTEMPTS && inv.state == "open";
    if burned {
        tx.execute("UPDATE invites SET state = 'burned' WHERE id = ?1", [id])?;
    }
    append_log(
        &tx,
        "pairing_failed",
        Some(&inv.principal),
        &serde_json::json!({ "invite": id, "why": why, "attempts": inv.attempts, "burned": burned }),
    )?;
    tx.commit()?;
    Ok(burned)
}

/// A paired FI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    /// The principal name the owner chose.
    pub principal: String,
    /// Fingerprint of the FI's static key.
    pub fingerprint: String,
    /// When it paired.
    pub paired_at: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
    /// Last session.
    pub last_seen: Option<String>,
    /// `active`, `revoked`, or `expired` (computed from the expiry).
    pub state: String,
    /// Requests waiting for the owner.
    pub pending: u64,
}

/// Consume an invite and register the FI's key for its principal (replacing an earlier key: re-pairing rotates
/// the key and keeps everything keyed on the principal), with its log entry. The pairing lasts as long as the
/// invite said. Fails if the invite is no longer usable (checked again inside the transaction).
pub fn complete_pairing(
    conn: &mut Connection,
    invite_id: &str,
    fi_key: &[u8; 32],
    fingerprint: &str,
) -> Result<String, Error> {
    let tx = write_tx(conn)?;
    let inv = invite(&tx, invite_id)?
        .filter(|i| i.state == "open" && i.expires_at > now_unix())
        .ok_or_else(|| Error::Refused(format!("invite {invite_id} can no longer be used")))?;
    let pairing_secs: i64 = tx.query_row(
        "SELECT pairing_secs FROM invites WHERE id = ?1",
        [invite_id],
        |r| r.get(0),
    )?;
    tx.execute(
        "UPDATE invites SET state = 'used' WHERE id = ?1",
        [invite_id],
    )?;
    // A key belongs to one principal: drop it from any other principal it was registered for.
    tx.execute(
        "DELETE FROM pairings WHERE fi_key = ?1 AND principal != ?2",
        params![fi_key.as_slice(), inv.principal],
    )?;
    tx.execute(
        "INSERT INTO pairings (principal, fi_key, fingerprint, paired_at, expires_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, 'active')
         ON CONFLICT(principal) DO UPDATE SET fi_key = excluded.fi_key, fingerprint = excluded.fingerprint,
             paired_at = excluded.paired_at, expires_at = excluded.expires_at, state = 'active'",
        params![
            inv.principal,
            fi_key.as_slice(),
            fingerprint,
            now_text(),
            now_unix().saturating_add(pairing_secs)
        ],
    )?;
    append_log(
        &tx,
        "paired",
        Some(&inv.principal),
        &serde_json::json!({ "invite": invite_id, "fi_key_fingerprint": fingerprint }),
    )?;
    tx.commit()?;
    Ok(inv.principal)
}

/// The principal a key is paired as, if the pairing is active and has not expired.
pub fn principal_for_key(conn: &Connection, fi_key: &[u8; 32]) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT principal FROM pairings WHERE fi_key = ?1 AND expires_at > ?2 AND state = 'active'",
        )?
        .query_row(params![fi_key.as_slice(), now_unix()], |r| r.get(0))
        .optional()?)
}

/// Revoke a principal: its pairing stops working at once (running sessions close when they notice), and its
/// pending requests are cancelled, in one transaction with the log entries. Budgets, counters and history stay
/// keyed on the principal, so a later re-pairing keeps them. Returns the ids of the cancelled requests.
pub fn revoke(conn: &mut Connection, principal: &str) -> Result<Vec<u64>, Error> {
    let tx = write_tx(conn)?;
    let changed = tx.execute(
        "UPDATE pairings SET state = 'revoked' WHERE principal = ?1 AND state = 'active'",
        [principal],
    )?;
    if changed == 0 {
        return Err(Error::NotFound(format!(
            "no active pairing for `{principal}` (see `duo owner fi list`)"
        )));
    }
    let ids: Vec<u64> = {
        // Pending requests, and approved scoring requests whose run has not started (their release is still
        // to come).
        let mut stmt = tx.prepare(
            "SELECT id FROM requests WHERE principal = ?1 AND (state = 'pending'
                 OR (backend = '2pc' AND state = 'approved' AND answer IS NULL
                     AND id NOT IN (SELECT request_id FROM scoring_runs)))
             ORDER BY id",
        )?;
        let rows = stmt.query_map([principal], |r| r.get::<_, i64>(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|i| i as u64)
            .collect()
    };
    let why = "cancelled: the owner revoked this FI";
    for id in &ids {
        tx.execute(
            "UPDATE requests SET state = 'denied', why = ?2, decided_by = 'owner', rule = 'revoked', decided_at = ?3
             WHERE id = ?1",
            params![*id as i64, why, now_text()],
        )?;
        append_log(
            &tx,
            "decision",
            Some(principal),
            &serde_json::json!({ "request": id, "action": "deny", "by": "owner", "reason": why }),
        )?;
    }
    append_log(
        &tx,
        "revoked",
        Some(principal),
        &serde_json::json!({ "cancelled_requests": ids }),
    )?;
    tx.commit()?;
    Ok(ids)
}

/// Delete the rows of every version of a dataset (its metadata stays for the log's sake). Pending requests on it
/// can no longer be approved; budgets and history are kept. Returns the number of versions deleted.
pub fn delete_dataset(conn: &mut Connection, name: &str) -> Result<u64, Error> {
    let tx = write_tx(conn)?;
    let n = tx.execute(
        "UPDATE datasets SET data = x'', current = 0, deleted_at = ?2 WHERE name = ?1 AND deleted_at IS NULL",
        params![name, now_text()],
    )?;
    if n == 0 {
        return Err(Error::NotFound(format!("dataset `{name}`")));
    }
    append_log(
        &tx,
        "dataset_deleted",
        None,
        &serde_json::json!({ "dataset": name, "versions": n }),
    )?;
    tx.commit()?;
    Ok(n as u64)
}

/// Overwrite freed pages and shrink the database, so deleted rows do not linger in the file or its WAL.
pub fn scrub(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(
        "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
    )?;
    Ok(())
}

/// Record that a principal opened a session.
pub fn touch_pairing(conn: &Connection, principal: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE pairings SET last_seen = ?2 WHERE principal = ?1",
        params![principal, now_text()],
    )?;
    Ok(())
}

/// All pairings, with their pending requests.
pub fn pairings(conn: &Connection) -> Result<Vec<Pairing>, Error> {
    let mut stmt = conn.prepare(
        "SELECT p.principal, p.fingerprint, p.paired_at, p.expires_at, p.last_seen, p.state,
                (SELECT COUNT(*) FROM requests r WHERE r.principal = p.principal AND r.state = 'pending')
         FROM pairings p ORDER BY p.principal",
    )?;
    let now = now_unix();
    let rows = stmt.query_map([], |r| {
        let expires_at: i64 = r.get(3)?;
        let state: String = r.get(5)?;
        Ok(Pairing {
            principal: r.get(0)?,
            fingerprint: r.get(1)?,
            paired_at: r.get(2)?,
            expires_at,
            last_seen: r.get(4)?,
            state: if state == "active" && expires_at <= now {
                "expired".into()
            } else {
                state
            },
            pending: r.get::<_, i64>(6)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ---------------------------------------------------------------------------------------------------------------
// The audit log

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Sequence number (1, 2, ...).
    pub seq: u64,
    /// Timestamp (RFC 3339, UTC).
    pub ts: String,
    /// What happened: `paired`, `request`, `decision`, `release`, `metadata_viewed`, ...
    pub kind: String,
    /// The principal concerned, if any.
    pub principal: Option<String>,
    /// Details, as JSON text.
    pub body: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

/// The hash of an entry: SHA-256 over the previous hash and the entry's fields, length-prefixed.
pub fn entry_hash(
    prev_hash: &str,
    seq: u64,
    ts: &str,
    kind: &str,
    principal: Option<&str>,
    body: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"duo log v1\n");
    for field in [
        prev_hash.as_bytes(),
        seq.to_string().as_bytes(),
        ts.as_bytes(),
        kind.as_bytes(),
        principal.unwrap_or("").as_bytes(),
        if principal.is_some() { b"1" } else { b"0" },
        body.as_bytes(),
    ] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field);
    }
    hex(&h.finalize())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where an entry landed in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPos {
    /// Sequence number.
    pub seq: u64,
    /// The entry's hash (covering every earlier entry).
    pub hash: String,
}

/// Append an entry inside the caller's transaction (so the entry commits with the change it records).
pub fn append_log(
    tx: &Connection,
    kind: &str,
    principal: Option<&str>,
    body: &serde_json::Value,
) -> Result<LogPos, Error> {
    let (last_seq, prev_hash): (i64, String) = tx
        .prepare_cached("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS_HASH.to_string()));
    let seq = last_seq as u64 + 1;
    let ts = now_text();
    let body = serde_json::to_string(body)?;
    let hash = entry_hash(&prev_hash, seq, &ts, kind, principal, &body);
    tx.prepare_cached(
        "INSERT INTO log (seq, ts, kind, principal, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![seq as i64, ts, kind, principal, body, prev_hash, hash])?;
    fail::fail_point!("store::mid_log_append");
    Ok(LogPos { seq, hash })
}

/// The entry at `seq`, if any.
pub fn log_entry(conn: &Connection, seq: u64) -> Result<Option<LogEntry>, Error> {
    Ok(log_entries(conn, seq.saturating_sub(1), 1)?
        .into_iter()
        .find(|e| e.seq == seq))
}

/// Read log entries with `seq > after`, at most `limit`.
pub fn log_entries(conn: &Connection, after: u64, limit: usize) -> Result<Vec<LogEntry>, Error> {
    let mut stmt = conn.prepare(
        "SELECT seq, ts, kind, principal, body, prev_hash, hash FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
        Ok(LogEntry {
            seq: r.get::<_, i64>(0)? as u64,
            ts: r.get(1)?,
            kind: r.get(2)?,
            principal: r.get(3)?,
            body: r.get(4)?,
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A problem [`verify_log`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum LogProblem {
    /// The entry's fields do not match its hash: it was edited.
    Edited {
        /// The entry.
        seq: u64,
    },
    /// Sequence numbers jump: entries are missing (removed).
    Missing {
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
    },
    /// The entry does not chain to the entry before it: entries were reordered, or replaced.
    BrokenChain {
        /// The entry whose previous hash does not match.
        seq: u64,
    },
    /// The store holds a request whose request, decision or release entry is not in the log (entries were cut
    /// from the end of the log, or the request was written around it).
    Unlogged {
        /// Request id.
        request: u64,
        /// Which entry is missing: `request`, `decision` or `release`.
        entry: String,
    },
}

impl std::fmt::Display for LogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogProblem::Edited { seq } => write!(f, "entry {seq} was edited (its hash does not match its contents)"),
            LogProblem::Missing { from, to } if from == to => write!(f, "entry {from} is missing (removed)"),
            LogProblem::Missing { from, to } => write!(f, "entries {from} to {to} are missing (removed)"),
            LogProblem::Unlogged { request, entry } => write!(
                f,
                "request {request} has no `{entry}` entry in the log (entries were removed from the end, or written around the log)"
            ),
            LogProblem::BrokenChain { seq } => write!(
                f,
                "entry {seq} does not follow the entry before it (entries were reordered or replaced)"
            ),
        }
    }
}

/// The result of checking the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogReport {
    /// Entries read.
    pub entries: u64,
    /// Hash of the last entry.
    pub head_hash: String,
    /// Problems found, in log order (empty when the log verifies).
    pub problems: Vec<LogProblem>,
}

/// Walk the whole log and check every entry's hash and its link to the previous entry, then check that every
/// request in the store has its entries in the log.
///
/// The chain finds any edited, removed or reordered entry before the last one. Entries cut from the very end
/// leave a valid shorter chain; they are found when the requests they recorded are still in the store.
pub fn verify_log(conn: &Connection) -> Result<LogReport, Error> {
    let mut problems = Vec::new();
    let mut logged: std::collections::BTreeSet<(u64, String)> = Default::default();
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut expected_seq = 1u64;
    let mut entries = 0u64;
    let mut after = 0u64;
    loop {
        let batch = log_entries(conn, after, 1000)?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            entries += 1;
            after = e.seq;
            if e.seq != expected_seq {
                if e.seq > expected_seq {
                    problems.push(LogProblem::Missing {
                        from: expected_seq,
                        to: e.seq - 1,
                    });
                }
            } else if e.prev_hash != prev_hash {
                problems.push(LogProblem::BrokenChain { seq: e.seq });
            }
            let recomputed = entry_hash(
                &e.prev_hash,
                e.seq,
                &e.ts,
                &e.kind,
                e.principal.as_deref(),
                &e.body,
            );
            if recomputed != e.hash {
                problems.push(LogProblem::Edited { seq: e.seq });
            }
            if matches!(e.kind.as_str(), "request" | "decision" | "release") {
                if let Some(id) = serde_json::from_str::<serde_json::Value>(&e.body)
                    .ok()
                    .and_then(|b| b.get("request").and_then(|r| r.as_u64()))
                {
                    logged.insert((id, e.kind.clone()));
                }
            }
            prev_hash = e.hash;
            expected_seq = e.seq + 1;
        }
    }
    // An approved scoring (2pc) request releases something only when its run completes (then it has an answer).
    let mut stmt = conn.prepare(
        "SELECT id, state, decided_by, backend <> '2pc' OR answer IS NOT NULL FROM requests ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, bool>(3)?,
        ))
    })?;
    for row in rows {
        let (id, state, decided_by, released) = row?;
        let mut need = vec!["request", "decision"];
        if state == "approved" && decided_by.as_deref() != Some("store") && released {
            need.push("release");
        }
        for entry in need {
            if !logged.contains(&(id, entry.to_string())) {
                problems.push(LogProblem::Unlogged {
                    request: id,
                    entry: entry.to_string(),
                });
            }
        }
    }
    Ok(LogReport {
        entries,
        head_hash: prev_hash,
        problems,
    })
}

/// Parse a stored timestamp.
pub fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------------------------
// Typed queries for the command line (`duo owner log`), so that it runs no SQL of its own.
// ---------------------------------------------------------------------------------------------------------

/// The last `limit` entries of the audit log, oldest first (all of them when there are fewer).
pub fn log_tail(conn: &Connection, limit: usize) -> Result<Vec<LogEntry>, Error> {
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM log")?
        .query_row([], |r| r.get(0))?;
    let after = (total as u64).saturating_sub(limit as u64);
    log_entries(conn, after, limit)
}

#[cfg(test)]
mod log_tail_tests {
    use super::*;

    #[test]
    fn the_tail_is_the_last_entries_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path(), Sync::Normal).unwrap();
        assert!(log_tail(&conn, 3).unwrap().is_empty());
        for i in 0..5 {
            append_log(&conn, "test", None, &serde_json::json!({ "i": i })).unwrap();
        }
        let seqs = |limit| -> Vec<u64> {
            log_tail(&conn, limit)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(2), [4, 5]);
        assert_eq!(seqs(50), [1, 2, 3, 4, 5]);
        assert!(seqs(0).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn fresh() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path(), Sync::Normal).unwrap();
        (dir, conn)
    }

    fn append(conn: &mut Connection, n: usize) {
        for i in 0..n {
            let tx = write_tx(conn).unwrap();
            append_log(&tx, "test", Some("p"), &serde_json::json!({ "i": i })).unwrap();
            tx.commit().unwrap();
        }
    }

    /// Drop the append-only triggers so a test can play the attacker.
    fn unprotect(conn: &Connection) {
        conn.execute_batch("DROP TRIGGER log_no_update; DROP TRIGGER log_no_delete;")
            .unwrap();
    }

    #[test]
    fn log_chains_and_verifies() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        let r = verify_log(&conn).unwrap();
        assert_eq!(r.entries, 5);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let entries = log_entries(&conn, 0, 10).unwrap();
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        assert_eq!(entries[1].prev_hash, entries[0].hash);
        assert_eq!(r.head_hash, entries[4].hash);
    }

    #[test]
    fn log_refuses_update_and_delete() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 2);
        let e = conn
            .execute("UPDATE log SET body = '{}' WHERE seq = 1", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = conn
            .execute("DELETE FROM log WHERE seq = 2", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        assert_eq!(log_entries(&conn, 0, 10).unwrap().len(), 2);
    }

    #[test]
    fn verify_finds_an_edited_entry() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        unprotect(&conn);
        conn.execute("UPDATE log SET body = '{\"i\":99}' WHERE seq = 3", [])
            .unwrap();
        let r = verify_log(&conn).unwrap();
        assert_eq!(r.problems, vec![LogProblem::Edited { seq: 3 }]);
    }

    #[test]
    fn verify_finds_a_removed_entry() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        unprotect(&conn);
        conn.execute("DELETE FROM log WHERE seq = 2", []).unwrap();
        let r = verify_log(&conn).unwrap();
        assert_eq!(r.problems, vec![LogProblem::Missing { from: 2, to: 2 }]);
    }

    #[test]
    fn verify_finds_reordered_entries() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        unprotect(&conn);
        // Swap entries 2 and 3 wholesale (each keeps its own valid hash), renumbering them.
        conn.execute_batch(
            "UPDATE log SET seq = -2 WHERE seq = 2;
             UPDATE log SET seq = 2 WHERE seq = 3;
             UPDATE log SET seq = 3 WHERE seq = -2;",
        )
        .unwrap();
        let r = verify_log(&conn).unwrap();
        assert!(
            r.problems.contains(&LogProblem::BrokenChain { seq: 2 }),
            "{:?}",
            r.problems
        );
        assert!(!r.problems.is_empty());
    }

    #[test]
    fn invites_burn_after_failures() {
        let (_d, mut conn) = fresh();
        create_invite(&mut conn, "abc", "Acme", &[7; 32], now_unix() + 600, DAY).unwrap();
        for _ in 0..2 {
            assert_eq!(
                begin_invite_attempt(&mut conn, "abc").unwrap(),
                Some([7; 32])
            );
            assert!(!invite_failed(&mut conn, "abc", "bad psk").unwrap());
        }
        assert!(begin_invite_attempt(&mut conn, "abc").unwrap().is_some());
        // Attempts are counted when they start: a fourth, concurrent one gets nothing.
        assert!(begin_invite_attempt(&mut conn, "abc").unwrap().is_none());
        assert!(invite_failed(&mut conn, "abc", "bad psk").unwrap());
        assert!(begin_invite_attempt(&mut conn, "abc").unwrap().is_none());
        assert!(invite_refusal(&conn, "abc").unwrap().contains("burned"));
        assert!(complete_pairing(&mut conn, "abc", &[1; 32], "fp").is_err());
    }

    #[test]
    fn pairing_consumes_the_invite_and_rotates_keys() {
        let (_d, mut conn) = fresh();
        create_invite(&mut conn, "one", "Acme", &[7; 32], now_unix() + 600, DAY).unwrap();
        let p = complete_pairing(&mut conn, "one", &[1; 32], "fp1").unwrap();
        assert_eq!(p, "Acme");
        assert!(begin_invite_attempt(&mut conn, "one").unwrap().is_none());
        assert!(invite_refusal(&conn, "one")
            .unwrap()
            .contains("already used"));
        assert_eq!(
            principal_for_key(&conn, &[1; 32]).unwrap().as_deref(),
            Some("Acme")
        );
        create_invite(&mut conn, "two", "Acme", &[8; 32], now_unix() + 600, DAY).unwrap();
        complete_pairing(&mut conn, "two", &[2; 32], "fp2").unwrap();
        assert_eq!(principal_for_key(&conn, &[1; 32]).unwrap(), None);
        assert_eq!(
            principal_for_key(&conn, &[2; 32]).unwrap().as_deref(),
            Some("Acme")
        );
        assert_eq!(pairings(&conn).unwrap().len(), 1);
    }

    #[test]
    fn expired_invites_are_not_usable() {
        let (_d, mut conn) = fresh();
        create_invite(&mut conn, "old", "Acme", &[7; 32], now_unix() - 1, DAY).unwrap();
        assert!(begin_invite_attempt(&mut conn, "old").unwrap().is_none());
        assert!(invite_refusal(&conn, "old").unwrap().contains("expired"));
    }
}
