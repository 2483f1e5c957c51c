//! The audit log: append-only (triggers refuse `UPDATE` and `DELETE`) and hash-chained: each entry's hash covers
//! the previous entry's hash and the entry's own fields, so [`Log::verify_log`] finds any edited, removed or
//! reordered entry.

use super::{now_text, HasConn};
use crate::error::Error;
use crate::proto::digest::{hash_fields, hex};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

pub use crate::proto::digest::GENESIS_HASH;

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
    let seq = seq.to_string();
    hex(&hash_fields(
        b"duo log v1\n",
        [
            prev_hash.as_bytes(),
            seq.as_bytes(),
            ts.as_bytes(),
            kind.as_bytes(),
            principal.unwrap_or("").as_bytes(),
            if principal.is_some() { b"1" } else { b"0" },
            body.as_bytes(),
        ],
    ))
}

/// Where an entry landed in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPos {
    /// Sequence number.
    pub seq: u64,
    /// The entry's hash (covering every earlier entry).
    pub hash: String,
}

/// A problem [`Log::verify_log`] found.
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
    /// A state table holds something its log entries did not commit to: the privacy ledger, a request's
    /// decision or stored answer, or a pairing was edited around the log.
    StateEdited {
        /// `ledger`, `requests` or `pairings`.
        table: String,
        /// Which row: `ledger`, a request id or a principal.
        item: String,
        /// What differs.
        why: String,
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
            LogProblem::StateEdited { table, item, why } => match table.as_str() {
                "ledger" => write!(f, "the privacy ledger was edited around the log: {why}"),
                "requests" => write!(f, "request {item} was edited around the log: {why}"),
                _ => write!(f, "the pairing of `{item}` was edited around the log: {why}"),
            },
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

/// Parse a stored timestamp.
pub fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Which log entries a listing shows: every condition given must hold (none given: every entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only entries of this kind (`request`, `decision`, `budget_set`, ...).
    pub kind: Option<String>,
    /// Only entries about this principal.
    pub principal: Option<String>,
    /// Only entries from this day on (UTC, inclusive).
    pub from: Option<chrono::NaiveDate>,
    /// Only entries up to this day (UTC, inclusive).
    pub to: Option<chrono::NaiveDate>,
}

impl LogFilter {
    /// Whether the filter keeps every entry.
    pub fn is_empty(&self) -> bool {
        *self == LogFilter::default()
    }

    /// The SQL condition and its parameters. Timestamps are RFC 3339 in UTC (`2026-01-31T12:00:00.000Z`), so a
    /// day compares as text: from `YYYY-MM-DD` inclusive, to the next day exclusive.
    fn sql(&self) -> (String, Vec<String>) {
        let mut conds = Vec::new();
        let mut args = Vec::new();
        if let Some(k) = &self.kind {
            args.push(k.clone());
            conds.push(format!("kind = ?{}", args.len()));
        }
        if let Some(p) = &self.principal {
            args.push(p.clone());
            conds.push(format!("principal = ?{}", args.len()));
        }
        if let Some(d) = self.from {
            args.push(d.format("%Y-%m-%d").to_string());
            conds.push(format!("ts >= ?{}", args.len()));
        }
        if let Some(d) = self.to {
            let next = d.succ_opt().unwrap_or(d);
            args.push(next.format("%Y-%m-%d").to_string());
            conds.push(format!("ts < ?{}", args.len()));
        }
        if conds.is_empty() {
            (String::new(), args)
        } else {
            (format!("WHERE {}", conds.join(" AND ")), args)
        }
    }
}

/// The distinct values of an indexed column of the log, in order, one index seek each (not a scan of the log).
fn distinct(conn: &rusqlite::Connection, column: &str) -> Result<Vec<String>, Error> {
    let sql = format!(
        "WITH RECURSIVE v(x) AS (
             SELECT (SELECT MIN({column}) FROM log)
             UNION ALL SELECT (SELECT MIN({column}) FROM log WHERE {column} > v.x) FROM v WHERE v.x IS NOT NULL
         ) SELECT x FROM v WHERE x IS NOT NULL"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The audit log, for a [`super::Store`] or a [`super::Tx`].
pub trait Log: HasConn {
    /// Append an entry inside the caller's transaction (so the entry commits with the change it records).
    fn append_log(
        &self,
        kind: &str,
        principal: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<LogPos, Error> {
        let tx = self.conn();
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

    /// How many entries the log holds.
    fn log_len(&self) -> Result<u64, Error> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The last `limit` entries, oldest first (all of them when there are fewer).
    fn log_tail(&self, limit: usize) -> Result<Vec<LogEntry>, Error> {
        let after = self.log_len()?.saturating_sub(limit as u64);
        self.log_entries(after, limit)
    }

    /// The entry at `seq`, if any.
    fn log_entry(&self, seq: u64) -> Result<Option<LogEntry>, Error> {
        let conn = self.conn();
        Ok(conn
            .log_entries(seq.saturating_sub(1), 1)?
            .into_iter()
            .find(|e| e.seq == seq))
    }

    /// Read log entries with `seq > after`, at most `limit`.
    fn log_entries(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, ts, kind, principal, body, prev_hash, hash FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after as i64, limit as i64], read_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many entries `filter` keeps (counted in SQL over the log's indexes).
    fn log_count(&self, filter: &LogFilter) -> Result<u64, Error> {
        let (cond, args) = filter.sql();
        let n: i64 = self
            .conn()
            .prepare_cached(&format!("SELECT COUNT(*) FROM log {cond}"))?
            .query_row(rusqlite::params_from_iter(&args), |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The entries `filter` keeps, newest first, skipping the `skip` newest and returning at most `limit`: one
    /// page of a listing, read with a `LIMIT` (never the whole log).
    fn log_newest(
        &self,
        filter: &LogFilter,
        skip: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, Error> {
        let (cond, mut args) = filter.sql();
        let (l, o) = (args.len() + 1, args.len() + 2);
        args.push(limit.to_string());
        args.push(skip.to_string());
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT seq, ts, kind, principal, body, prev_hash, hash FROM log {cond}
             ORDER BY seq DESC LIMIT CAST(?{l} AS INTEGER) OFFSET CAST(?{o} AS INTEGER)"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(&args), read_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every entry `filter` keeps, oldest first (an export).
    fn log_matching(&self, filter: &LogFilter) -> Result<Vec<LogEntry>, Error> {
        let (cond, args) = filter.sql();
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT seq, ts, kind, principal, body, prev_hash, hash FROM log {cond} ORDER BY seq"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(&args), read_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The kinds of entry the log holds, in order.
    fn log_kinds(&self) -> Result<Vec<String>, Error> {
        distinct(self.conn(), "kind")
    }

    /// The principals the log names, in order.
    fn log_principals(&self) -> Result<Vec<String>, Error> {
        distinct(self.conn(), "principal")
    }

    /// Walk the whole log and check every entry's hash and its link to the previous entry, then check that every
    /// request in the store has its entries in the log, and that the state tables hold what the log committed
    /// to (see [`super::integrity`]): the ledger the logged caps and charges add up to, each request's decision
    /// and stored answer, each pairing's key, expiry and state.
    ///
    /// The chain finds any edited, removed or reordered entry before the last one. Entries cut from the very end
    /// leave a valid shorter chain; they are found when the requests they recorded are still in the store.
    fn verify_log(&self) -> Result<LogReport, Error> {
        let conn = self.conn();
        let mut problems = Vec::new();
        let mut logged: std::collections::BTreeSet<(u64, String)> = Default::default();
        // Each request's last logged decision: whether it approved, other than from the store.
        let mut approved: std::collections::BTreeMap<u64, bool> = Default::default();
        let mut prev_hash = GENESIS_HASH.to_string();
        let mut expected_seq = 1u64;
        let mut entries = 0u64;
        let mut after = 0u64;
        loop {
            let batch = conn.log_entries(after, 1000)?;
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
                    let body = serde_json::from_str::<serde_json::Value>(&e.body).ok();
                    let body = body.as_ref();
                    if let Some(id) = body.and_then(|b| b.get("request").and_then(|r| r.as_u64())) {
                        logged.insert((id, e.kind.clone()));
                        if e.kind == "decision" {
                            let field =
                                |k: &str| body.and_then(|b| b.get(k)).and_then(|v| v.as_str());
                            approved.insert(
                                id,
                                field("action") == Some("approve") && field("by") != Some("store"),
                            );
                        }
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
        let mut unlogged = std::collections::BTreeSet::new();
        for row in rows {
            let (id, state, decided_by, released) = row?;
            let mut need = vec!["request", "decision"];
            // A release is due when the row says so and its logged decision agrees (a row whose decision was
            // flipped around the log is reported by the state check instead).
            let logged_approval = approved.get(&id).copied().unwrap_or(true);
            if state == "approved"
                && decided_by.as_deref() != Some("store")
                && released
                && logged_approval
            {
                need.push("release");
            }
            for entry in need {
                if !logged.contains(&(id, entry.to_string())) {
                    unlogged.insert(id);
                    problems.push(LogProblem::Unlogged {
                        request: id,
                        entry: entry.to_string(),
                    });
                }
            }
        }
        super::integrity::verify_state(conn, &unlogged, &mut problems)?;
        Ok(LogReport {
            entries,
            head_hash: prev_hash,
            problems,
        })
    }
}

impl<T: HasConn + ?Sized> Log for T {}

/// A log entry from a row selecting `seq, ts, kind, principal, body, prev_hash, hash`, in that order.
pub(crate) fn read_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        seq: r.get::<_, i64>(0)? as u64,
        ts: r.get(1)?,
        kind: r.get(2)?,
        principal: r.get(3)?,
        body: r.get(4)?,
        prev_hash: r.get(5)?,
        hash: r.get(6)?,
    })
}

/// The static type of the request a `release` log entry answers, read from the requests table (the entry does
/// not hold it), so a reader can show the released money in dollars. `None` for other kinds.
pub fn release_type<S: super::prelude::Requests + ?Sized>(
    store: &S,
    e: &LogEntry,
) -> Option<duo_engine::check::Type> {
    if e.kind != "release" {
        return None;
    }
    let body: serde_json::Value = serde_json::from_str(&e.body).ok()?;
    let id = body.get("request")?.as_u64()?;
    store.request(id, None).ok().flatten().map(|r| r.ty)
}
