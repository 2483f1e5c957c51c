//! The owner's store: one SQLite database (WAL) in the owner's data directory.
//!
//! It holds datasets (every version), invites, pairings, requests with their decisions and stored answers, the
//! release index used by policies, and the audit log. The running node keeps no copy of record in memory: every
//! CLI command and every session reads and writes this database, so an approval given from another process is
//! seen at once. Everything a decision depends on is re-read inside the transaction that acts on it
//! (`BEGIN IMMEDIATE`).
//!
//! The audit log is append-only (triggers refuse `UPDATE` and `DELETE`) and hash-chained: each entry's hash covers
//! the previous entry's hash and the entry's own fields, so [`Log::verify_log`] finds any edited, removed or reordered
//! entry.

//! The connection is private to this module: every caller, the owner service and the CLI alike, goes through
//! the typed queries of the traits below ([`Datasets`], [`Pairings`], [`Log`], [`Requests`], [`Ledgers`],
//! [`ScoringRuns`]), which a [`Store`] and a write transaction ([`Tx`]) both offer. Import them with
//! `use duo_node::store::prelude::*`.

mod datasets;
pub mod integrity;
mod ledger;
mod log;
mod pairings;
mod requests;
mod scoring;

pub use datasets::{DatasetRow, DatasetVersion, Datasets};
pub use ledger::{BudgetEvent, Ledgers};
pub use log::{
    entry_hash, parse_ts, release_type, Log, LogEntry, LogFilter, LogPos, LogProblem, LogReport,
    GENESIS_HASH,
};
pub use pairings::{
    Invite, OpenInvite, Pairing, Pairings, ReplacedKey, Revocation, MAX_INVITE_ATTEMPTS,
};
pub use requests::{EarlierRelease, NewRequest, RequestRow, Requests, StoredRequest};
pub use scoring::{OtAtRest, ScoringRuns};

use crate::error::Error;
use chrono::Utc;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every query trait, to import at once.
pub mod prelude {
    pub use super::{Datasets, Ledgers, Log, Pairings, Requests, ScoringRuns};
}

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
    pairing_secs INTEGER NOT NULL,
    rekey      INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS replaced_keys (
    fi_key          BLOB PRIMARY KEY,
    principal       TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    replaced_at     TEXT NOT NULL,
    new_fingerprint TEXT NOT NULL
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
    decided_at   TEXT,
    fi_seq       INTEGER,
    budget       TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_key ON requests (release_key, state);
CREATE INDEX IF NOT EXISTS requests_by_state ON requests (state);
CREATE INDEX IF NOT EXISTS requests_by_principal_state ON requests (principal, state);
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
CREATE TABLE IF NOT EXISTS ot_states (
    principal  TEXT PRIMARY KEY,
    id         TEXT NOT NULL,
    next_index INTEGER NOT NULL,
    state      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_events (
    principal TEXT NOT NULL,
    rule      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    request   INTEGER
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
CREATE INDEX IF NOT EXISTS log_by_kind ON log (kind, seq);
CREATE INDEX IF NOT EXISTS log_by_fi ON log (principal, seq);
CREATE INDEX IF NOT EXISTS log_by_ts ON log (ts);
CREATE TRIGGER IF NOT EXISTS log_no_update BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_no_delete BEFORE DELETE ON log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// Path of the owner's database inside an owner directory.
pub fn db_path(owner_dir: &Path) -> PathBuf {
    owner_dir.join("duo.sqlite")
}

/// Bound SQLite's memory for the whole process to about `bytes` (`PRAGMA soft_heap_limit`): past it, SQLite
/// reuses the page-cache pages of any connection instead of growing. Process-wide, so set on a connection of
/// its own.
pub fn bound_memory(bytes: i64) -> Result<(), Error> {
    Connection::open_in_memory()?.query_row(
        &format!("PRAGMA soft_heap_limit = {bytes}"),
        [],
        |r| r.get::<_, i64>(0),
    )?;
    Ok(())
}

/// The owner's database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

/// A write transaction (`BEGIN IMMEDIATE`: it holds the write lock from the start). Dropped without
/// [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub struct Tx<'s> {
    tx: Transaction<'s>,
}

mod sealed {
    /// What the query traits run on. Sealed: only this module hands out a connection.
    pub trait HasConn {
        /// The connection.
        fn conn(&self) -> &rusqlite::Connection;
    }
}
use sealed::HasConn;

impl HasConn for Connection {
    fn conn(&self) -> &Connection {
        self
    }
}

impl HasConn for Store {
    fn conn(&self) -> &Connection {
        &self.conn
    }
}

impl HasConn for Tx<'_> {
    fn conn(&self) -> &Connection {
        &self.tx
    }
}

/// Anything the typed queries run on: a [`Store`] (each statement on its own) or a [`Tx`].
pub trait Conn: HasConn {}
impl<T: HasConn + ?Sized> Conn for T {}

impl Store {
    /// Open (creating if needed) the owner's database with WAL, a busy timeout and the schema.
    pub fn open(owner_dir: &Path, sync: Sync) -> Result<Store, Error> {
        crate::home::private_dir(owner_dir)?;
        let path = db_path(owner_dir);
        let mut conn = Connection::open(&path)?;
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
        pairings::upgrade(&mut conn)?;
        requests::upgrade(&conn)?;
        integrity::upgrade(&mut conn)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                crate::home::set_mode(&p, 0o600)?;
            }
        }
        Ok(Store { conn })
    }

    /// Start a write transaction that takes the write lock at once.
    pub fn write(&mut self) -> Result<Tx<'_>, Error> {
        Ok(Tx {
            tx: write_tx(&mut self.conn)?,
        })
    }

    /// A counter that changes whenever any connection (any process) commits to the database.
    pub fn data_version(&self) -> Result<i64, Error> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))?)
    }

    /// Overwrite freed pages and shrink the database, so deleted rows do not linger in the file or its WAL.
    pub fn scrub(&self) -> Result<(), Error> {
        self.conn.execute_batch(
            "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
        Ok(())
    }
}

impl Tx<'_> {
    /// Commit.
    pub fn commit(self) -> Result<(), Error> {
        Ok(self.tx.commit()?)
    }
}

/// Start a write transaction that takes the write lock at once.
/// Whether `table` has a column named `column` (the upgrades on open ask it of stores made by older builds).
fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, Error> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        rusqlite::params![table, column],
        |r| r.get::<_, i64>(0),
    )? > 0)
}

/// Adds column `column` (of type `decl`) to `table` when it is missing, in a store made by an older build;
/// the old rows read it as NULL. A concurrent opener that added it first makes the ALTER fail, which is fine.
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<(), Error> {
    if !has_column(conn, table, column)? {
        let _ = conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"));
    }
    Ok(())
}

fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, Error> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

pub use crate::proto::now_text;

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Store(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    /// A store made before `fi_seq`, `budget`, `items` and `rate_events.request` gains them all (its old rows
    /// numbered as their ids), and upgrading again changes nothing.
    #[test]
    fn an_old_stores_requests_gain_the_missing_columns() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY, principal TEXT NOT NULL);
             CREATE TABLE rate_events (principal TEXT NOT NULL, rule TEXT NOT NULL, at INTEGER NOT NULL);
             INSERT INTO requests (id, principal) VALUES (7, 'acme');",
        )
        .unwrap();
        for _ in 0..2 {
            requests::upgrade(&conn).unwrap();
        }
        for (table, column) in [
            ("requests", "fi_seq"),
            ("requests", "budget"),
            ("requests", "items"),
            ("rate_events", "request"),
        ] {
            assert!(
                has_column(&conn, table, column).unwrap(),
                "{table}.{column}"
            );
        }
        assert!(!has_column(&conn, "requests", "nothing").unwrap());
        let seq: i64 = conn
            .query_row("SELECT fi_seq FROM requests WHERE id = 7", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, 7);
    }

    fn fresh() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Store::open(dir.path(), Sync::Normal).unwrap();
        (dir, conn)
    }

    fn append(conn: &mut Store, n: usize) {
        for i in 0..n {
            let tx = conn.write().unwrap();
            tx.append_log("test", Some("p"), &serde_json::json!({ "i": i }))
                .unwrap();
            tx.commit().unwrap();
        }
    }

    /// Drop the append-only triggers so a test can play the attacker.
    fn unprotect(conn: &Store) {
        conn.conn
            .execute_batch("DROP TRIGGER log_no_update; DROP TRIGGER log_no_delete;")
            .unwrap();
    }

    #[test]
    fn the_log_filter_counts_and_pages_only_matching_entries_in_sql() {
        let (_d, mut conn) = fresh();
        for i in 0..30u64 {
            let tx = conn.write().unwrap();
            let (kind, who) = if i % 3 == 0 {
                ("request", Some("Acme"))
            } else {
                ("release", Some("Bravo"))
            };
            tx.append_log(kind, who, &serde_json::json!({ "i": i }))
                .unwrap();
            tx.commit().unwrap();
        }
        let f = |kind: Option<&str>, who: Option<&str>| LogFilter {
            kind: kind.map(str::to_string),
            principal: who.map(str::to_string),
            ..LogFilter::default()
        };
        assert_eq!(conn.log_count(&LogFilter::default()).unwrap(), 31);
        assert_eq!(conn.log_count(&f(Some("request"), None)).unwrap(), 10);
        assert_eq!(
            conn.log_count(&f(Some("request"), Some("Bravo"))).unwrap(),
            0
        );
        let page = conn.log_newest(&f(None, Some("Bravo")), 5, 4).unwrap();
        assert_eq!(page.len(), 4);
        assert!(page.iter().all(|e| e.principal.as_deref() == Some("Bravo")));
        assert!(page.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
        let all = conn.log_matching(&f(Some("request"), None)).unwrap();
        assert_eq!(all.len(), 10);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
        assert_eq!(
            conn.log_kinds().unwrap(),
            ["release", "request", integrity::STATE_BOUND]
        );
        assert_eq!(conn.log_principals().unwrap(), ["Acme", "Bravo"]);
        // Days: today's entries from today to today; none from tomorrow or up to yesterday.
        let today = chrono::Utc::now().date_naive();
        let day = |from, to| LogFilter {
            from,
            to,
            ..LogFilter::default()
        };
        assert_eq!(conn.log_count(&day(Some(today), Some(today))).unwrap(), 31);
        assert_eq!(conn.log_count(&day(today.succ_opt(), None)).unwrap(), 0);
        assert_eq!(conn.log_count(&day(None, today.pred_opt())).unwrap(), 0);
        // The conditions use the indexes, not a scan of the log.
        let mut stmt = conn
            .conn
            .prepare("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM log WHERE kind = 'request'")
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("log_by_kind"), "{plan}");
    }

    /// The query plans of a look-up, joined.
    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.join("; ")
    }

    #[test]
    fn a_principals_last_entry_of_a_kind_is_one_index_seek_in_new_and_upgraded_stores() {
        // The pairing check reads a principal's last `paired` entry on every request; with an index on
        // (principal, seq) alone it reads every entry of the principal, so a request's cost grows with history.
        let lookup = "SELECT seq FROM log WHERE principal = 'p' AND kind = 'paired' ORDER BY seq DESC LIMIT 1";
        let (d, conn) = fresh();
        let p = plan(&conn.conn, lookup);
        assert!(
            p.contains("log_by_principal (principal=? AND kind=?)"),
            "{p}"
        );
        // A store whose `log_by_principal` is (principal, seq) gets the right one back when opened.
        conn.conn
            .execute_batch(
                "DROP INDEX log_by_principal; CREATE INDEX log_by_principal ON log (principal, seq);",
            )
            .unwrap();
        drop(conn);
        let again = Store::open(d.path(), Sync::Normal).unwrap();
        let p = plan(&again.conn, lookup);
        assert!(
            p.contains("log_by_principal (principal=? AND kind=?)"),
            "{p}"
        );
    }

    #[test]
    fn counting_a_principals_waiting_requests_reads_only_those() {
        // Counted on every request (the limit on waiting requests): through (principal, fi_seq) it read every
        // request the principal ever made, so a request's cost grew with the principal's history.
        let (_d, conn) = fresh();
        let p = plan(
            &conn.conn,
            "SELECT COUNT(*) FROM requests WHERE principal = 'a' AND state = 'pending'",
        );
        assert!(
            p.contains("requests_by_principal_state (principal=? AND state=?)"),
            "{p}"
        );
    }

    #[test]
    fn the_tail_is_the_last_entries_oldest_first() {
        let (_d, mut conn) = fresh();
        // A new store's log starts with the entry that binds its (empty) state.
        let first = conn.log_tail(3).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, integrity::STATE_BOUND);
        append(&mut conn, 5);
        let seqs = |limit| -> Vec<u64> {
            conn.log_tail(limit)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(3), [4, 5, 6]);
        assert_eq!(seqs(10), [1, 2, 3, 4, 5, 6]);
        assert!(seqs(0).is_empty());
    }

    #[test]
    fn log_chains_and_verifies() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        let r = conn.verify_log().unwrap();
        assert_eq!(r.entries, 6);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let entries = conn.log_entries(0, 10).unwrap();
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        assert_eq!(entries[1].prev_hash, entries[0].hash);
        assert_eq!(r.head_hash, entries[5].hash);
    }

    #[test]
    fn log_refuses_update_and_delete() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 2);
        let e = conn
            .conn
            .execute("UPDATE log SET body = '{}' WHERE seq = 1", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = conn
            .conn
            .execute("DELETE FROM log WHERE seq = 2", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        assert_eq!(conn.log_entries(0, 10).unwrap().len(), 3);
    }

    #[test]
    fn verify_finds_an_edited_entry() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        unprotect(&conn);
        conn.conn
            .execute("UPDATE log SET body = '{\"i\":99}' WHERE seq = 3", [])
            .unwrap();
        let r = conn.verify_log().unwrap();
        assert_eq!(r.problems, vec![LogProblem::Edited { seq: 3 }]);
    }

    #[test]
    fn verify_finds_a_removed_entry() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        unprotect(&conn);
        conn.conn
            .execute("DELETE FROM log WHERE seq = 2", [])
            .unwrap();
        let r = conn.verify_log().unwrap();
        assert_eq!(r.problems, vec![LogProblem::Missing { from: 2, to: 2 }]);
    }

    #[test]
    fn verify_finds_reordered_entries() {
        let (_d, mut conn) = fresh();
        append(&mut conn, 5);
        unprotect(&conn);
        // Swap entries 2 and 3 wholesale (each keeps its own valid hash), renumbering them.
        conn.conn
            .execute_batch(
                "UPDATE log SET seq = -2 WHERE seq = 2;
             UPDATE log SET seq = 2 WHERE seq = 3;
             UPDATE log SET seq = 3 WHERE seq = -2;",
            )
            .unwrap();
        let r = conn.verify_log().unwrap();
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
        conn.create_invite("abc", "Acme", &[7; 32], now_unix() + 600, DAY)
            .unwrap();
        for _ in 0..2 {
            assert_eq!(conn.begin_invite_attempt("abc").unwrap(), Some([7; 32]));
            assert!(!conn.invite_failed("abc", "bad psk").unwrap());
        }
        assert!(conn.begin_invite_attempt("abc").unwrap().is_some());
        // Attempts are counted when they start: a fourth, concurrent one gets nothing.
        assert!(conn.begin_invite_attempt("abc").unwrap().is_none());
        assert!(conn.invite_failed("abc", "bad psk").unwrap());
        assert!(conn.begin_invite_attempt("abc").unwrap().is_none());
        assert!(conn.invite_refusal("abc").unwrap().contains("burned"));
        assert!(conn.complete_pairing("abc", &[1; 32], "fp").is_err());
    }

    #[test]
    fn pairing_consumes_the_invite_and_rotates_keys() {
        let (_d, mut conn) = fresh();
        conn.create_invite("one", "Acme", &[7; 32], now_unix() + 600, DAY)
            .unwrap();
        let p = conn.complete_pairing("one", &[1; 32], "fp1").unwrap();
        assert_eq!(p, "Acme");
        assert!(conn.begin_invite_attempt("one").unwrap().is_none());
        assert!(conn.invite_refusal("one").unwrap().contains("already used"));
        assert_eq!(
            conn.principal_for_key(&[1; 32]).unwrap().as_deref(),
            Some("Acme")
        );
        // A paired principal gets a new key only through a re-key invite.
        let refused = conn
            .create_invite("two", "Acme", &[8; 32], now_unix() + 600, DAY)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("already paired"), "{refused}");
        assert!(refused.contains("--rekey"), "{refused}");
        assert_eq!(conn.invite("two").unwrap(), None);
        conn.create_rekey_invite("two", "Acme", &[8; 32], now_unix() + 600, DAY)
            .unwrap();
        assert!(conn.invite("two").unwrap().unwrap().rekey);
        conn.complete_pairing("two", &[2; 32], "fp2").unwrap();
        assert_eq!(conn.principal_for_key(&[1; 32]).unwrap(), None);
        assert_eq!(
            conn.principal_for_key(&[2; 32]).unwrap().as_deref(),
            Some("Acme")
        );
        assert_eq!(conn.pairings().unwrap().len(), 1);
        // The old key is remembered as replaced, and the log says so.
        let r = conn.replaced_key(&[1; 32]).unwrap().unwrap();
        assert_eq!(
            (
                r.principal.as_str(),
                r.fingerprint.as_str(),
                r.new_fingerprint.as_str()
            ),
            ("Acme", "fp1", "fp2")
        );
        assert_eq!(conn.replaced_key(&[2; 32]).unwrap(), None);
        let paired = conn.log_tail(1).unwrap().remove(0);
        assert_eq!(paired.kind, "paired");
        let body: serde_json::Value = serde_json::from_str(&paired.body).unwrap();
        assert_eq!(body["rekey"], true);
        assert_eq!(body["replaced_fi_key_fingerprint"], "fp1");
        assert_eq!(body["replaced_pairing_state"], "active");
        assert!(conn.verify_log().unwrap().problems.is_empty());
    }

    #[test]
    fn a_re_key_invite_needs_a_current_pairing() {
        let (_d, mut conn) = fresh();
        let e = conn
            .create_rekey_invite("one", "Acme", &[7; 32], now_unix() + 600, DAY)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no current pairing"), "{e}");
        assert!(conn.open_invites().unwrap().is_empty());
        assert_eq!(conn.log_len().unwrap(), 1);
    }

    #[test]
    fn pairing_cancels_the_principals_other_invites() {
        let (_d, mut conn) = fresh();
        for (id, who) in [("a1", "Acme"), ("a2", "Acme"), ("b1", "Beta")] {
            conn.create_invite(id, who, &[7; 32], now_unix() + 600, DAY)
                .unwrap();
        }
        let open = |c: &Store| -> Vec<String> {
            c.open_invites()
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect()
        };
        assert_eq!(open(&conn), ["a1", "a2", "b1"]);
        conn.complete_pairing("a1", &[1; 32], "fp1").unwrap();
        assert_eq!(open(&conn), ["b1"]);
        assert_eq!(conn.invite("a2").unwrap().unwrap().state, "cancelled");
        assert!(conn.invite_refusal("a2").unwrap().contains("cancelled"));
        assert!(conn.begin_invite_attempt("a2").unwrap().is_none());
        let e = conn.complete_pairing("a2", &[9; 32], "fp9").unwrap_err();
        assert!(e.to_string().contains("can no longer be used"), "{e}");
        assert_eq!(
            conn.principal_for_key(&[1; 32]).unwrap().as_deref(),
            Some("Acme")
        );
        let paired = conn.log_tail(1).unwrap().remove(0);
        let body: serde_json::Value = serde_json::from_str(&paired.body).unwrap();
        assert_eq!(body["cancelled_invites"], serde_json::json!(["a2"]));
        assert_eq!(body["rekey"], false);
        assert!(body.get("replaced_fi_key_fingerprint").is_none());
    }

    #[test]
    fn revoking_cancels_the_principals_open_invites() {
        let (_d, mut conn) = fresh();
        conn.create_invite("a1", "Acme", &[7; 32], now_unix() + 600, DAY)
            .unwrap();
        conn.complete_pairing("a1", &[1; 32], "fp1").unwrap();
        conn.create_rekey_invite("a2", "Acme", &[8; 32], now_unix() + 600, DAY)
            .unwrap();
        let r = conn.revoke("Acme").unwrap();
        assert_eq!(r.invites, ["a2"]);
        assert!(r.requests.is_empty());
        assert_eq!(conn.invite("a2").unwrap().unwrap().state, "cancelled");
        assert!(conn.complete_pairing("a2", &[2; 32], "fp2").is_err());
        let revoked = conn.log_tail(1).unwrap().remove(0);
        assert_eq!(revoked.kind, "revoked");
        assert!(
            revoked.body.contains("\"cancelled_invites\":[\"a2\"]"),
            "{}",
            revoked.body
        );
        // A new plain invite pairs the revoked principal again, with a new key; the revoked key is replaced.
        conn.create_invite("a3", "Acme", &[9; 32], now_unix() + 600, DAY)
            .unwrap();
        conn.complete_pairing("a3", &[3; 32], "fp3").unwrap();
        assert_eq!(
            conn.principal_for_key(&[3; 32]).unwrap().as_deref(),
            Some("Acme")
        );
        assert_eq!(
            conn.replaced_key(&[1; 32])
                .unwrap()
                .unwrap()
                .new_fingerprint,
            "fp3"
        );
        let body: serde_json::Value =
            serde_json::from_str(&conn.log_tail(1).unwrap()[0].body).unwrap();
        assert_eq!(body["replaced_pairing_state"], "revoked");
    }

    #[test]
    fn the_owner_cancels_an_open_invite() {
        let (_d, mut conn) = fresh();
        conn.create_invite("a1", "Acme", &[7; 32], now_unix() + 600, DAY)
            .unwrap();
        let inv = conn.cancel_invite("a1").unwrap();
        assert_eq!((inv.principal.as_str(), inv.rekey), ("Acme", false));
        assert!(conn.open_invites().unwrap().is_empty());
        assert!(conn.begin_invite_attempt("a1").unwrap().is_none());
        let e = conn.cancel_invite("a1").unwrap_err().to_string();
        assert!(e.contains("cancelled"), "{e}");
        let e = conn.cancel_invite("nope").unwrap_err().to_string();
        assert!(e.contains("no such invite"), "{e}");
        let entry = conn.log_tail(1).unwrap().remove(0);
        assert_eq!(entry.kind, "invite_cancelled");
        assert_eq!(entry.principal.as_deref(), Some("Acme"));
        assert!(conn.verify_log().unwrap().problems.is_empty());
    }

    #[test]
    fn an_older_database_gets_the_rekey_column_and_loses_its_stale_invites() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The tables as they were before re-key invites: Acme is paired and still has a second open code;
            // Beta was never paired and has one.
            let old = Connection::open(db_path(dir.path())).unwrap();
            old.execute_batch(
                "CREATE TABLE invites (id TEXT PRIMARY KEY, principal TEXT NOT NULL, psk BLOB NOT NULL,
                     created_at TEXT NOT NULL, expires_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                     state TEXT NOT NULL DEFAULT 'open', pairing_secs INTEGER NOT NULL);
                 CREATE TABLE pairings (principal TEXT PRIMARY KEY, fi_key BLOB NOT NULL UNIQUE,
                     fingerprint TEXT NOT NULL, paired_at TEXT NOT NULL, expires_at INTEGER NOT NULL,
                     last_seen TEXT, state TEXT NOT NULL DEFAULT 'active');",
            )
            .unwrap();
            let far = now_unix() + 600;
            for (id, who, state) in [
                ("a1", "Acme", "used"),
                ("a2", "Acme", "open"),
                ("b1", "Beta", "open"),
            ] {
                old.execute(
                    "INSERT INTO invites (id, principal, psk, created_at, expires_at, state, pairing_secs)
                     VALUES (?1, ?2, ?3, 'then', ?4, ?5, 86400)",
                    rusqlite::params![id, who, [7u8; 32].as_slice(), far, state],
                )
                .unwrap();
            }
            old.execute(
                "INSERT INTO pairings (principal, fi_key, fingerprint, paired_at, expires_at)
                 VALUES ('Acme', ?1, 'fp1', 'then', ?2)",
                rusqlite::params![[1u8; 32].as_slice(), far],
            )
            .unwrap();
        }
        let conn = Store::open(dir.path(), Sync::Normal).unwrap();
        let open: Vec<String> = conn
            .open_invites()
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(open, ["b1"]);
        assert_eq!(conn.invite("a2").unwrap().unwrap().state, "cancelled");
        assert!(!conn.invite("b1").unwrap().unwrap().rekey);
        let log = conn.log_tail(10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].kind, "invite_cancelled");
        assert!(log[0].body.contains("\"a2\""), "{}", log[0].body);
        // Then the entry that binds the state as found: the pairing's key and expiry.
        assert_eq!(log[1].kind, integrity::STATE_BOUND);
        assert!(log[1].body.contains("\"fp1\""), "{}", log[1].body);
        // Opening it again changes nothing.
        drop(conn);
        let conn = Store::open(dir.path(), Sync::Normal).unwrap();
        assert_eq!(conn.log_tail(10).unwrap().len(), 2);
        assert!(conn.verify_log().unwrap().problems.is_empty());
    }

    #[test]
    fn an_older_database_keeps_its_request_ids_as_the_fis_numbers() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The requests table as it was before requests were numbered per principal.
            let old = Connection::open(db_path(dir.path())).unwrap();
            let table = SCHEMA
                .split("CREATE TABLE IF NOT EXISTS requests")
                .nth(1)
                .and_then(|t| t.split(");").next())
                .unwrap()
                .replace(",\n    fi_seq       INTEGER", "");
            old.execute_batch(&format!("CREATE TABLE requests{table});"))
                .unwrap();
            for (id, who) in [(1, "Acme"), (2, "Beta"), (3, "Acme")] {
                old.execute(
                    "INSERT INTO requests (id, principal, backend, reason, source, lineage, checked, description,
                         versions, release_key, state, created_at)
                     VALUES (?1, ?2, 'plaintext', 'r', 's', 'l', 'c', 'd', '{}', 'k', 'pending', 'then')",
                    rusqlite::params![id, who],
                )
                .unwrap();
            }
        }
        let conn = Store::open(dir.path(), Sync::Normal).unwrap();
        // Each FI keeps the numbers it already holds; they are unique per principal.
        assert_eq!(conn.request_by_fi("Acme", 3).unwrap(), Some(3));
        assert_eq!(conn.request_by_fi("Beta", 2).unwrap(), Some(2));
        assert_eq!(conn.request_by_fi("Beta", 1).unwrap(), None);
        assert_eq!(conn.fi_number(1).unwrap(), 1);
        drop(conn);
        let conn = Store::open(dir.path(), Sync::Normal).unwrap();
        assert_eq!(conn.request_by_fi("Acme", 1).unwrap(), Some(1));
    }

    #[test]
    fn expired_invites_are_not_usable() {
        let (_d, mut conn) = fresh();
        conn.create_invite("old", "Acme", &[7; 32], now_unix() - 1, DAY)
            .unwrap();
        assert!(conn.begin_invite_attempt("old").unwrap().is_none());
        assert!(conn.invite_refusal("old").unwrap().contains("expired"));
    }
}
