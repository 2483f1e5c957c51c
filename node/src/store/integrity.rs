//! The state tables bound to the audit log.
//!
//! The log is hash-chained, but the node decides from its tables: the privacy ledger, each request's decision
//! and stored answer, each pairing. Every change to them is committed to by a log entry that carries what the
//! table must hold:
//!
//! - the privacy ledger: each `budget_set` and `budget_charged` entry carries `ledger_sha256`, the SHA-256 of
//!   the ledger exactly as stored after it. Reading the ledger ([`super::Ledgers::ledger`]) checks the row
//!   against the last such entry, so a DP release is never planned on a ledger edited around the log; `log
//!   --verify` also replays every logged cap and charge and checks each entry's hash and the row against the
//!   result (`replay_ledger`), so a forged entry appended to the log is found too;
//! - a decision: the request's last `decision` entry (action and who) must match its row's state and
//!   `decided_by`;
//! - a stored answer: its `release` entry (or, for an answer given again from the store, its `decision` entry)
//!   carries `answer_sha256`, the SHA-256 of the answer's bytes as stored (older entries carry the answer itself,
//!   which is compared as JSON); the `request` entry carries the request's `release_key`. The node checks a
//!   stored answer before it serves it again or shows it to the FI;
//! - a pairing: its `paired` entry carries the key's SHA-256 and fingerprint and the expiry, and a later `revoked` entry
//!   its state; every session start checks the pairing of the key against them.
//!
//! A log entry consulted this way is itself checked: its hash must match its fields and the next entry must
//! chain to it, so editing one entry to match an edited table breaks the chain at the next one (and `log
//! --verify` finds it). Rewriting the whole chain after an entry is possible for whoever can write the
//! database, but it changes the hash of every later entry, which the FIs' receipts hold (`log --verify
//! --receipt`).
//!
//! Stores made before this binding get one `state_bound` entry when first opened by a version that has it:
//! it commits to the ledger and the pairings as they are then (earlier entries carry no ledger hash or expiry).
//! New stores get it too, as their first entry; its presence in the log (not a setting, which could be deleted
//! to force a new snapshot) marks the store as bound.

use super::log::read_entry;
use super::{entry_hash, write_tx, HasConn, Log, LogEntry, LogProblem};
use crate::error::Error;
use crate::proto::digest::hex;
use duo_policies::{Amount, Charge, Ledger, Measure, Scope};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The kind of the entry that commits to the state a store had when the binding began.
pub const STATE_BOUND: &str = "state_bound";

/// SHA-256 of some stored bytes, hex: what log entries carry for a stored answer or the ledger.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes.as_ref()))
}

/// A table row that does not match the log entry that committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// `ledger`, `requests` or `pairings`.
    pub table: &'static str,
    /// Which row (a request id, a principal, or `ledger`).
    pub item: String,
    /// What differs, for the owner.
    pub why: String,
}

impl Mismatch {
    fn new(table: &'static str, item: impl Into<String>, why: impl Into<String>) -> Mismatch {
        Mismatch {
            table,
            item: item.into(),
            why: why.into(),
        }
    }

    /// The refusal the FI gets: it names the kind of state, nothing else.
    pub(crate) fn refusal(&self) -> Error {
        Error::Integrity(
            match self.table {
                "ledger" => "privacy ledger",
                "pairings" => "pairing",
                _ => "answer or decision",
            }
            .into(),
        )
    }

    pub(crate) fn problem(self) -> LogProblem {
        LogProblem::StateEdited {
            table: self.table.into(),
            item: self.item,
            why: self.why,
        }
    }
}

/// The indexes the look-ups below use, and the `state_bound` entry for a store that has none. Run on every open.
pub(super) fn upgrade(conn: &mut Connection) -> Result<(), Error> {
    // A store opened by a build that briefly gave the name `log_by_principal` to the log page's (principal,
    // seq) index: that index cannot find a principal's last entry of one kind without reading every entry of
    // the principal, so it gives the name back.
    let columns: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_index_info('log_by_principal')",
        [],
        |r| r.get(0),
    )?;
    if columns == 2 {
        conn.execute_batch("DROP INDEX log_by_principal")?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS log_by_kind ON log (kind, seq);
         CREATE INDEX IF NOT EXISTS log_by_principal ON log (principal, kind, seq);
         CREATE INDEX IF NOT EXISTS log_by_request ON log (
             (CASE WHEN json_valid(body) THEN json_extract(body, '$.request') END), kind, seq);",
    )?;
    if last_of_kinds(conn, &[STATE_BOUND])?.is_some() {
        return Ok(());
    }
    let tx = write_tx(conn)?;
    // Another process may have bound it since the look above.
    if last_of_kinds(&tx, &[STATE_BOUND])?.is_some() {
        return Ok(());
    }
    let ledger: Option<String> = tx
        .query_row("SELECT value FROM settings WHERE key = 'ledger'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let pairings = {
        let mut stmt = tx.prepare(
            "SELECT principal, fingerprint, expires_at, state, fi_key FROM pairings ORDER BY principal",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(serde_json::json!({
                "principal": r.get::<_, String>(0)?, "fi_key_fingerprint": r.get::<_, String>(1)?,
                "expires_at": r.get::<_, i64>(2)?, "state": r.get::<_, String>(3)?,
                "fi_key_sha256": sha256_hex(r.get::<_, Vec<u8>>(4)?),
            }))
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let ledger_value = ledger
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()?;
    tx.append_log(
        STATE_BOUND,
        None,
        &serde_json::json!({
            "format": 2,
            "why": "from here on, every change to the ledger, the decisions, the stored answers and the pairings \
                    is committed to by its log entry; this entry commits to the ledger and pairings as they were",
            "ledger": ledger_value,
            "ledger_sha256": ledger.as_deref().map(sha256_hex),
            "pairings": pairings,
        }),
    )?;
    tx.commit()?;
    Ok(())
}

const COLUMNS: &str = "seq, ts, kind, principal, body, prev_hash, hash";

/// The last entry of any of these kinds.
fn last_of_kinds(conn: &Connection, kinds: &[&str]) -> Result<Option<LogEntry>, Error> {
    let mut best: Option<LogEntry> = None;
    for kind in kinds {
        let e = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM log WHERE kind = ?1 ORDER BY seq DESC LIMIT 1"
            ))?
            .query_row([kind], read_entry)
            .optional()?;
        if let Some(e) = e {
            if best.as_ref().is_none_or(|b| e.seq > b.seq) {
                best = Some(e);
            }
        }
    }
    Ok(best)
}

/// The last entry of `kind` about request `id`.
fn request_entry(conn: &Connection, id: u64, kind: &str) -> Result<Option<LogEntry>, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM log
             WHERE (CASE WHEN json_valid(body) THEN json_extract(body, '$.request') END) = ?1 AND kind = ?2
             ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row(params![id as i64, kind], read_entry)
        .optional()?)
}

/// The last entry of `kind` about `principal`.
fn principal_entry(
    conn: &Connection,
    principal: &str,
    kind: &str,
) -> Result<Option<LogEntry>, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM log WHERE principal = ?1 AND kind = ?2 ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row(params![principal, kind], read_entry)
        .optional()?)
}

/// Whether an entry is as it was appended: its hash matches its fields and the next entry chains to it.
fn sound(conn: &Connection, e: &LogEntry) -> Result<bool, Error> {
    let own = entry_hash(
        &e.prev_hash,
        e.seq,
        &e.ts,
        &e.kind,
        e.principal.as_deref(),
        &e.body,
    ) == e.hash;
    let next: Option<String> = conn
        .prepare_cached("SELECT prev_hash FROM log WHERE seq = ?1")?
        .query_row([e.seq as i64 + 1], |r| r.get(0))
        .optional()?;
    Ok(own && next.is_none_or(|p| p == e.hash))
}

fn body(e: &LogEntry) -> Value {
    serde_json::from_str(&e.body).unwrap_or(Value::Null)
}

/// Whether a stored answer is the one an entry committed to: by its SHA-256, or (entries from before the
/// binding) by the answer it carries, compared as JSON.
fn answer_matches(body: &Value, answer: &str) -> bool {
    if let Some(h) = body.get("answer_sha256").and_then(Value::as_str) {
        return h == sha256_hex(answer);
    }
    match (body.get("answer"), serde_json::from_str::<Value>(answer)) {
        (Some(logged), Ok(stored)) => *logged == stored,
        _ => false,
    }
}

/// The privacy ledger's row against the last entry that committed to it. `Ok(None)` when they match.
pub(crate) fn ledger_mismatch(
    conn: &Connection,
    row: Option<&str>,
) -> Result<Option<Mismatch>, Error> {
    let bad = |why: String| Ok(Some(Mismatch::new("ledger", "ledger", why)));
    let Some(e) = last_of_kinds(conn, &["budget_set", "budget_charged", STATE_BOUND])? else {
        return match row {
            None => Ok(None),
            Some(_) => bad("the ledger is stored but no log entry ever set or charged it".into()),
        };
    };
    if !sound(conn, &e)? {
        return bad(format!(
            "log entry {} that last changed the ledger was edited",
            e.seq
        ));
    }
    let logged = body(&e)
        .get("ledger_sha256")
        .and_then(Value::as_str)
        .map(str::to_string);
    let stored = row.map(sha256_hex);
    if logged != stored {
        return bad(format!(
            "the ledger as stored is not the ledger log entry {} ({}) left (stored {}, logged {})",
            e.seq,
            e.kind,
            stored.as_deref().unwrap_or("nothing"),
            logged.as_deref().unwrap_or("nothing"),
        ));
    }
    Ok(None)
}

/// What a request's row must hold given its last decision: its state and who decided.
fn decided(body: &Value) -> Option<(&'static str, Option<String>)> {
    let by = body.get("by").and_then(Value::as_str).map(str::to_string);
    match body.get("action").and_then(Value::as_str)? {
        "approve" => Some(("approved", by)),
        "deny" => Some(("denied", by)),
        "ask" => Some(("pending", None)),
        _ => None,
    }
}

/// A request's row (decision, stored answer, release key) against the entries that committed to it.
/// `Ok(None)` when they match; a request with no decision entry at all is reported as a mismatch too.
pub(crate) fn request_mismatch(conn: &Connection, id: u64) -> Result<Option<Mismatch>, Error> {
    let row: Option<(String, Option<String>, Option<String>, String)> = conn
        .prepare_cached(
            "SELECT state, decided_by, answer, release_key FROM requests WHERE id = ?1",
        )?
        .query_row([id as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((state, decided_by, answer, key)) = row else {
        return Ok(None);
    };
    let bad = |why: String| Ok(Some(Mismatch::new("requests", id.to_string(), why)));
    let Some(decision) = request_entry(conn, id, "decision")? else {
        return bad("its decision is not in the log".into());
    };
    let Some(request) = request_entry(conn, id, "request")? else {
        return bad("its request entry is not in the log".into());
    };
    for e in [&decision, &request] {
        if !sound(conn, e)? {
            return bad(format!("log entry {} about it was edited", e.seq));
        }
    }
    let decision_body = body(&decision);
    let Some((want_state, want_by)) = decided(&decision_body) else {
        return bad(format!(
            "log entry {} is not a decision it can read",
            decision.seq
        ));
    };
    if state != want_state || decided_by != want_by {
        return bad(format!(
            "it is {state} (by {}) but its decision in log entry {} is {want_state} (by {})",
            decided_by.as_deref().unwrap_or("nobody"),
            decision.seq,
            want_by.as_deref().unwrap_or("nobody"),
        ));
    }
    if let Some(logged) = body(&request).get("release_key").and_then(Value::as_str) {
        if logged != key {
            return bad(format!(
                "its release key is not the one log entry {} recorded (it would be served for another question)",
                request.seq
            ));
        }
    }
    answer_mismatch(
        conn,
        id,
        &state,
        decided_by.as_deref(),
        answer.as_deref(),
        &decision_body,
    )
    .map(|why| why.map(|why| Mismatch::new("requests", id.to_string(), why)))
}

/// A request's stored answer against the entry that committed it; `Some(why)` when they differ.
fn answer_mismatch(
    conn: &Connection,
    id: u64,
    state: &str,
    decided_by: Option<&str>,
    answer: Option<&str>,
    decision: &Value,
) -> Result<Option<String>, Error> {
    if state != "approved" {
        return Ok(answer.map(|_| format!("it is {state} but holds an answer")));
    }
    // An answer given again from the store: committed by its decision entry (or, before the binding, by the
    // release entry of the request it repeats).
    let committing = if decided_by == Some("store") {
        if decision.get("answer_sha256").is_some() {
            return Ok(match answer {
                Some(a) if answer_matches(decision, a) => None,
                _ => Some("its stored answer is not the one its decision entry gave again".into()),
            });
        }
        let Some(first) = decision.get("same_as").and_then(Value::as_u64) else {
            return Ok(Some("its store decision names no earlier request".into()));
        };
        request_entry(conn, first, "release")?
    } else {
        request_entry(conn, id, "release")?
    };
    match (committing, answer) {
        (None, None) => Ok(None),
        (None, Some(_)) => Ok(Some(
            "it holds an answer that no release entry records".into(),
        )),
        (Some(e), None) => Ok(Some(format!(
            "log entry {} released an answer that is no longer stored",
            e.seq
        ))),
        (Some(e), Some(a)) => {
            if !sound(conn, &e)? {
                return Ok(Some(format!("its release entry {} was edited", e.seq)));
            }
            Ok((!answer_matches(&body(&e), a)).then(|| {
                format!(
                    "its stored answer is not the answer log entry {} released",
                    e.seq
                )
            }))
        }
    }
}

/// A pairing's row (key, expiry, state) against its `paired` entry (or the `state_bound` entry, for a pairing
/// made before the binding) and any later `revoked` entry. `Ok(None)` when they match.
pub(crate) fn pairing_mismatch(
    conn: &Connection,
    principal: &str,
) -> Result<Option<Mismatch>, Error> {
    let row: Option<(Vec<u8>, String, i64, String)> = conn
        .prepare_cached(
            "SELECT fi_key, fingerprint, expires_at, state FROM pairings WHERE principal = ?1",
        )?
        .query_row([principal], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((key, fingerprint, expires_at, state)) = row else {
        return Ok(None);
    };
    let bad = |why: String| Ok(Some(Mismatch::new("pairings", principal, why)));
    let paired = principal_entry(conn, principal, "paired")?;
    let bound = last_of_kinds(conn, &[STATE_BOUND])?;
    // The later of the two commits to the pairing as it is now.
    let found = match (paired, bound) {
        (Some(p), Some(b)) if b.seq > p.seq => snapshot_item(&b, principal).map(|i| (b, i)),
        (Some(p), _) => {
            let item = body(&p);
            Some((p, item))
        }
        (None, Some(b)) => snapshot_item(&b, principal).map(|i| (b, i)),
        (None, None) => None,
    };
    let Some((entry, logged)) = found else {
        return bad("its pairing is not in the log".into());
    };
    if !sound(conn, &entry)? {
        return bad(format!("log entry {} that paired it was edited", entry.seq));
    }
    let revoked_after = principal_entry(conn, principal, "revoked")?.filter(|r| r.seq > entry.seq);
    if let Some(r) = &revoked_after {
        if !sound(conn, r)? {
            return bad(format!("log entry {} that revoked it was edited", r.seq));
        }
    }
    let want_state = match (&revoked_after, logged.get("state").and_then(Value::as_str)) {
        (Some(_), _) => "revoked",
        (None, Some(s)) => s,
        (None, None) => "active",
    };
    if logged.get("fi_key_fingerprint").and_then(Value::as_str) != Some(fingerprint.as_str())
        || logged.get("fi_key_sha256").and_then(Value::as_str) != Some(sha256_hex(&key).as_str())
    {
        return bad(format!(
            "its key is not the key log entry {} paired",
            entry.seq
        ));
    }
    if logged.get("expires_at").and_then(Value::as_i64) != Some(expires_at) {
        return bad(format!(
            "its expiry ({expires_at}) is not the one log entry {} recorded ({})",
            entry.seq,
            logged
                .get("expires_at")
                .map_or("none".into(), |v| v.to_string())
        ));
    }
    if state != want_state {
        return bad(format!(
            "it is {state} but the log says {want_state} (entry {})",
            revoked_after.as_ref().map_or(entry.seq, |r| r.seq)
        ));
    }
    Ok(None)
}

/// The pairing of `principal` in a `state_bound` entry.
fn snapshot_item(e: &LogEntry, principal: &str) -> Option<Value> {
    body(e)
        .get("pairings")?
        .as_array()?
        .iter()
        .find(|p| p.get("principal").and_then(Value::as_str) == Some(principal))
        .cloned()
}

/// Replay every logged cap and charge: each entry's `ledger_sha256` must be the ledger the replay reaches at
/// it, and the stored row the ledger it ends with.
pub(crate) fn replay_ledger(
    conn: &Connection,
    problems: &mut Vec<LogProblem>,
) -> Result<(), Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM log WHERE kind IN ('budget_set', 'budget_charged', '{STATE_BOUND}') ORDER BY seq"
    ))?;
    let entries = stmt
        .query_map([], read_entry)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut ledger: Option<Ledger> = None;
    let mut bad = |why: String| {
        problems.push(Mismatch::new("ledger", "ledger", why).problem());
    };
    for e in &entries {
        let b = body(e);
        let next = match e.kind.as_str() {
            STATE_BOUND => match b.get("ledger") {
                Some(Value::Null) | None => None,
                Some(v) => Some(serde_json::from_value::<Ledger>(v.clone())?),
            },
            "budget_set" => Some(
                replay_cap(ledger.take(), &b)
                    .map_err(|why| Error::Internal(format!("log entry {}: {why}", e.seq)))?,
            ),
            _ => match replay_charge(ledger.take(), e, &b) {
                Ok(l) => Some(l),
                Err(why) => {
                    bad(format!("log entry {}: {why}", e.seq));
                    return Ok(());
                }
            },
        };
        ledger = next;
        if let Some(logged) = b.get("ledger_sha256").and_then(Value::as_str) {
            let replayed = ledger.as_ref().map(serde_json::to_string).transpose()?;
            if replayed.as_deref().map(sha256_hex).as_deref() != Some(logged) {
                bad(format!(
                    "log entry {} ({}) commits to a ledger that its logged caps and charges do not add up to",
                    e.seq, e.kind
                ));
            }
        }
    }
    let row: Option<String> = conn
        .query_row("SELECT value FROM settings WHERE key = 'ledger'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let stored = row
        .as_deref()
        .map(serde_json::from_str::<Ledger>)
        .transpose()?;
    if stored != ledger {
        let spent = |l: &Option<Ledger>| {
            l.as_ref().map_or("nothing".into(), |l| {
                l.account(&Scope::Global).spent.to_string()
            })
        };
        bad(format!(
            "the stored ledger is not what the logged caps and charges add up to (global spent: stored {}, logged {})",
            spent(&stored),
            spent(&ledger)
        ));
    }
    Ok(())
}

fn replay_cap(ledger: Option<Ledger>, b: &Value) -> Result<Ledger, String> {
    let measure: Measure = b
        .get("measure")
        .and_then(Value::as_str)
        .unwrap_or("epsilon")
        .parse()
        .map_err(|_| "unknown measure".to_string())?;
    let scope: Scope = serde_json::from_value(b.get("scope").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("scope: {e}"))?;
    let cap: Amount = b
        .get("cap")
        .and_then(Value::as_str)
        .ok_or("no cap")?
        .parse()
        .map_err(|e| format!("cap: {e}"))?;
    let mut ledger = ledger.unwrap_or_else(|| Ledger::new(measure));
    if ledger.is_blank() && ledger.measure() != measure {
        ledger = Ledger::new(measure);
    }
    ledger.set_cap(&scope, cap);
    Ok(ledger)
}

fn replay_charge(ledger: Option<Ledger>, e: &LogEntry, b: &Value) -> Result<Ledger, String> {
    let amount: Amount = b
        .get("amount")
        .and_then(Value::as_str)
        .ok_or("no amount")?
        .parse()
        .map_err(|e| format!("amount: {e}"))?;
    let datasets: BTreeSet<String> =
        serde_json::from_value(b.get("datasets").cloned().unwrap_or(Value::Null))
            .map_err(|e| format!("datasets: {e}"))?;
    let charge = Charge {
        principal: e.principal.clone().ok_or("no principal")?,
        datasets,
        amount,
    };
    let mut ledger = ledger.ok_or("a charge before any cap")?;
    ledger
        .charge(&charge)
        .map_err(|err| format!("the charge does not replay: {err}"))?;
    Ok(ledger)
}

/// Every state table against the log: the ledger replayed, each request, each pairing. Requests already
/// reported as missing entries (`skip`) are not reported again.
pub(crate) fn verify_state(
    conn: &Connection,
    skip: &BTreeSet<u64>,
    problems: &mut Vec<LogProblem>,
) -> Result<(), Error> {
    if let Some(m) = ledger_mismatch(conn, stored_ledger(conn)?.as_deref())? {
        problems.push(m.problem());
    }
    replay_ledger(conn, problems)?;
    let ids: Vec<u64> = {
        let mut stmt = conn.prepare("SELECT id FROM requests ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        rows.map(|r| r.map(|i| i as u64))
            .collect::<Result<_, _>>()?
    };
    for id in ids.into_iter().filter(|id| !skip.contains(id)) {
        if let Some(m) = request_mismatch(conn, id)? {
            problems.push(m.problem());
        }
    }
    let principals: Vec<String> = {
        let mut stmt = conn.prepare("SELECT principal FROM pairings ORDER BY principal")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for p in principals {
        if let Some(m) = pairing_mismatch(conn, &p)? {
            problems.push(m.problem());
        }
    }
    Ok(())
}

/// The ledger's row, as stored.
pub(crate) fn stored_ledger(conn: &Connection) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = 'ledger'")?
        .query_row([], |r| r.get(0))
        .optional()?)
}

/// Refuse to use a request's row unless it matches its entries.
pub(crate) fn check_request<C: HasConn + ?Sized>(conn: &C, id: u64) -> Result<(), Error> {
    match request_mismatch(conn.conn(), id)? {
        Some(m) => Err(m.refusal()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Ledgers, Store, Sync};

    /// A store with a global cap of 1 (set as `Owner::set_cap` does) and 0.4 charged to Acme.
    fn charged() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Sync::Normal).unwrap();
        let tx = store.write().unwrap();
        let mut ledger = tx.ledger().unwrap();
        ledger.set_cap(&Scope::Global, "1".parse().unwrap());
        let h = tx.save_ledger(&ledger).unwrap();
        tx.append_log(
            "budget_set",
            None,
            &serde_json::json!({ "scope": Scope::Global, "cap": "1", "measure": "epsilon", "ledger_sha256": h }),
        )
        .unwrap();
        let charge = Charge {
            principal: "Acme".into(),
            datasets: ["rent".to_string()].into(),
            amount: "0.4".parse().unwrap(),
        };
        ledger.charge(&charge).unwrap();
        tx.save_ledger(&ledger).unwrap();
        tx.record_charge(1, &charge).unwrap();
        tx.commit().unwrap();
        (dir, store)
    }

    fn ledger_problems(store: &Store) -> Vec<String> {
        store
            .verify_log()
            .unwrap()
            .problems
            .into_iter()
            .filter(|p| matches!(p, LogProblem::StateEdited { table, .. } if table == "ledger"))
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn the_ledger_replays_from_the_log() {
        let (_d, store) = charged();
        assert_eq!(
            store.ledger().unwrap().account(&Scope::Global).spent,
            "0.4".parse().unwrap()
        );
        assert!(store.verify_log().unwrap().problems.is_empty());
    }

    #[test]
    fn a_ledger_saved_around_the_log_is_refused() {
        let (_d, store) = charged();
        let mut fresh = Ledger::new(Measure::PureEpsilon);
        fresh.set_cap(&Scope::Global, "1".parse().unwrap());
        // Saved without the entry that must commit to it.
        store.save_ledger(&fresh).unwrap();
        assert!(matches!(store.ledger(), Err(Error::Integrity(_))));
        assert!(!ledger_problems(&store).is_empty());
        // A deleted row (everything reset) is refused too.
        store
            .conn()
            .execute("DELETE FROM settings WHERE key = 'ledger'", [])
            .unwrap();
        assert!(matches!(store.ledger(), Err(Error::Integrity(_))));
    }

    #[test]
    fn a_forged_ledger_entry_appended_to_the_log_is_found_by_the_replay() {
        let (_d, store) = charged();
        // The attacker resets the ledger and appends an entry that commits to it: the chain is intact and
        // the row matches its last entry, so only the replay of the logged caps and charges can tell.
        let mut fresh = Ledger::new(Measure::PureEpsilon);
        fresh.set_cap(&Scope::Global, "1".parse().unwrap());
        let h = store.save_ledger(&fresh).unwrap();
        store
            .append_log(
                "budget_set",
                None,
                &serde_json::json!({ "scope": Scope::Global, "cap": "1", "measure": "epsilon", "ledger_sha256": h }),
            )
            .unwrap();
        assert!(store.ledger().is_ok());
        let problems = ledger_problems(&store);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("entry 4 (budget_set) commits to a ledger"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("global spent: stored 0, logged 0.4"),
            "{problems:?}"
        );
    }
}
