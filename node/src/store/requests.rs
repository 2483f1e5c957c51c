//! Requests, their decisions and stored answers, the release index the policies read, and rate events.

use super::{now_text, now_unix, HasConn};
use crate::error::Error;
use crate::proto::receipt::Receipt;
use crate::proto::request::{BudgetShortfall, DpParams, ItemPlan, RequestState};
use duo_engine::{Checked, Type};
use duo_policies::Backend;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A new request row, decided or not.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// Who asks.
    pub principal: &'a str,
    /// Backend.
    pub backend: Backend,
    /// The FI's reason.
    pub reason: &'a str,
    /// The expression as the owner reads it.
    pub source: &'a str,
    /// What the request is about, as the log and receipts record it (JSON).
    pub lineage: &'a str,
    /// The checked lineage.
    pub checked: &'a Checked,
    /// The lineage in plain words.
    pub description: &'a str,
    /// The dataset versions it reads.
    pub versions: &'a BTreeMap<String, u64>,
    /// The key under which the same question finds its stored answer.
    pub release_key: &'a str,
    /// State.
    pub state: RequestState,
    /// The rule (or `owner`, `store`) that decided it.
    pub rule: Option<&'a str>,
    /// Why it was denied or waits.
    pub why: Option<&'a str>,
    /// The answer (JSON), once released.
    pub answer: Option<&'a str>,
    /// Who decided: `policy`, `owner` or `store`.
    pub decided_by: Option<&'a str>,
}

/// A stored request, as read back.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// Request id on the node (what the owner's commands take).
    pub id: u64,
    /// The principal's own number for it (1, 2, 3, ... for each principal): the id its FI sees on the wire,
    /// so that no FI learns how many requests the others make.
    pub fi_seq: u64,
    /// Who asked.
    pub principal: String,
    /// Backend.
    pub backend: Backend,
    /// The FI's reason.
    pub reason: String,
    /// The lineage in plain words.
    pub description: String,
    /// The expression as the owner reads it.
    pub source: String,
    /// State.
    pub state: RequestState,
    /// Why it was denied or waits.
    pub why: Option<String>,
    /// The answer (JSON), once released.
    pub answer: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// The node's receipt, once released.
    pub receipt: Option<Receipt>,
    /// DP cost in nano-units of the node's measure.
    pub cost_nanos: Option<u64>,
    /// DP accuracy.
    pub accuracy95: Option<f64>,
    /// The numbers of the budget a DP request would have exceeded, when that is why it was denied.
    pub budget: Option<BudgetShortfall>,
    /// For a DP batch: each question's cost and expected error.
    pub items: Vec<ItemPlan>,
    /// When it was made.
    pub created_at: String,
    /// The static type of the answer.
    pub ty: Type,
}

/// The checked lineage of a stored request and the dataset versions it was made against.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    /// The checked lineage.
    pub checked: Checked,
    /// The dataset versions.
    pub versions: BTreeMap<String, u64>,
    /// What the request is about, as recorded (JSON).
    pub lineage: String,
}

/// An earlier release that touched some of the same columns (shown to the owner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierRelease {
    /// Request id.
    pub id: u64,
    /// To whom.
    pub principal: String,
    /// Through which backend.
    pub backend: String,
    /// The lineage in plain words.
    pub description: String,
    /// When.
    pub decided_at: String,
}

/// Give every request its principal's own number: a store made before requests were numbered per principal
/// gets the `fi_seq` column, and its requests keep, as their principal's number, the node-wide id their FI
/// already knows (later requests of a principal continue after its highest number).
pub(super) fn upgrade(conn: &rusqlite::Connection) -> Result<(), Error> {
    if !super::has_column(conn, "requests", "fi_seq")? {
        // A concurrent opener that added the column first makes the ALTER fail, which is fine; the UPDATE
        // is idempotent.
        let _ = conn.execute_batch("ALTER TABLE requests ADD COLUMN fi_seq INTEGER");
        conn.execute_batch("UPDATE requests SET fi_seq = id WHERE fi_seq IS NULL")?;
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS requests_by_fi ON requests (principal, fi_seq)",
    )?;
    // A store made before budget denials kept their numbers (empty for its old requests).
    super::add_column(conn, "requests", "budget", "TEXT")?;
    // A store made before batches: the column of their questions' plans (empty for its old requests).
    super::add_column(conn, "requests", "items", "TEXT")?;
    // A store made before rate events named their request (empty for its old events, which a scoring run's
    // re-check then cannot leave out: it errs towards refusing).
    super::add_column(conn, "rate_events", "request", "INTEGER")?;
    Ok(())
}

fn backend(s: &str) -> Result<Backend, Error> {
    s.parse::<Backend>()
        .map_err(|_| Error::Internal(format!("unknown backend {s}")))
}

/// Queries on requests, for a [`super::Store`] or a [`super::Tx`].
pub trait Requests: HasConn {
    /// Requests of `principal` waiting for the owner.
    fn pending_count(&self, principal: &str) -> Result<u64, Error> {
        let n: i64 = self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM requests WHERE principal = ?1 AND state = 'pending'",
            )?
            .query_row([principal], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Ids of the pending requests, oldest first.
    fn pending_ids(&self) -> Result<Vec<u64>, Error> {
        let mut stmt = self
            .conn()
            .prepare("SELECT id FROM requests WHERE state = 'pending' ORDER BY id")?;
        let ids = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(ids
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|i| i as u64)
            .collect())
    }

    /// Insert a request; returns its id on the node. It gets its principal's next number ([`RequestRow::fi_seq`]).
    /// Decided requests get their decision time now.
    fn insert_request(&self, r: &NewRequest<'_>) -> Result<u64, Error> {
        let now = now_text();
        self.conn()
            .prepare_cached(
                "INSERT INTO requests (principal, backend, reason, source, lineage, checked, description, versions,
                     release_key, state, rule, why, answer, decided_by, created_at, decided_at, fi_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     (SELECT COALESCE(MAX(fi_seq), 0) + 1 FROM requests WHERE principal = ?1))",
            )?
            .execute(params![
                r.principal,
                r.backend.name(),
                r.reason,
                r.source,
                r.lineage,
                serde_json::to_string(r.checked)?,
                r.description,
                serde_json::to_string(r.versions)?,
                r.release_key,
                r.state.as_str(),
                r.rule,
                r.why,
                r.answer,
                r.decided_by,
                now,
                (r.state != RequestState::Pending).then_some(&now),
            ])?;
        Ok(self.conn().last_insert_rowid() as u64)
    }

    /// The first approved request with this release key and an answer: its id and answer (JSON).
    fn stored_answer(&self, release_key: &str) -> Result<Option<(u64, String)>, Error> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT id, answer FROM requests WHERE release_key = ?1 AND state = 'approved'
                 AND answer IS NOT NULL ORDER BY id LIMIT 1",
            )?
            .query_row([release_key], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?)
    }

    /// The node's id of `principal`'s request number `fi_seq` (the id its FI knows), if it exists.
    fn request_by_fi(&self, principal: &str, fi_seq: u64) -> Result<Option<u64>, Error> {
        Ok(self
            .conn()
            .prepare_cached("SELECT id FROM requests WHERE principal = ?1 AND fi_seq = ?2")?
            .query_row(params![principal, fi_seq as i64], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|i| i as u64))
    }

    /// The principal's own number of the node's request `id` (the id its FI knows).
    fn fi_number(&self, id: u64) -> Result<u64, Error> {
        self.conn()
            .prepare_cached("SELECT fi_seq FROM requests WHERE id = ?1")?
            .query_row([id as i64], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|n| n as u64)
            .ok_or_else(|| Error::NotFound(format!("request {id}")))
    }

    /// A request, if it exists (and, with `principal`, belongs to that principal).
    fn request(&self, id: u64, principal: Option<&str>) -> Result<Option<RequestRow>, Error> {
        let row = self
            .conn()
            .prepare_cached(
                "SELECT principal, backend, reason, description, source, state, why, answer, decided_by, receipt,
                     cost, accuracy, created_at, checked, fi_seq, budget, items
                 FROM requests WHERE id = ?1 AND (?2 IS NULL OR principal = ?2)",
            )?
            .query_row(params![id as i64, principal], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                    r.get::<_, Option<f64>>(11)?,
                    r.get::<_, String>(12)?,
                    r.get::<_, String>(13)?,
                    r.get::<_, i64>(14)? as u64,
                    r.get::<_, Option<String>>(15)?,
                    r.get::<_, Option<String>>(16)?,
                ))
            })
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let (
            principal,
            b,
            reason,
            description,
            source,
            state,
            why,
            answer,
            decided_by,
            receipt,
            cost,
            acc,
            at,
            checked,
            fi_seq,
            budget,
            items,
        ) = row;
        /// The one field of a checked lineage a view needs.
        #[derive(Deserialize)]
        struct TypeOnly {
            ty: Type,
        }
        let ty = serde_json::from_str::<TypeOnly>(&checked)?.ty;
        Ok(Some(RequestRow {
            id,
            fi_seq,
            principal,
            backend: backend(&b)?,
            reason,
            description,
            source,
            state: RequestState::parse(&state)
                .ok_or_else(|| Error::Internal(format!("unknown request state {state}")))?,
            why,
            answer,
            decided_by,
            receipt: receipt.map(|r| serde_json::from_str(&r)).transpose()?,
            cost_nanos: cost.map(|c| c as u64),
            accuracy95: acc,
            budget: budget.map(|b| serde_json::from_str(&b)).transpose()?,
            items: items
                .map(|i| serde_json::from_str(&i))
                .transpose()?
                .unwrap_or_default(),
            created_at: at,
            ty,
        }))
    }

    /// The checked lineage, dataset versions and recorded lineage of a request.
    fn stored_request(&self, id: u64) -> Result<StoredRequest, Error> {
        let (checked, versions, lineage): (String, String, String) = self
            .conn()
            .prepare_cached("SELECT checked, versions, lineage FROM requests WHERE id = ?1")?
            .query_row([id as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        Ok(StoredRequest {
            checked: serde_json::from_str(&checked)?,
            versions: serde_json::from_str(&versions)?,
            lineage,
        })
    }

    /// The DP parameters of a request, if it is a DP request.
    fn dp_params(&self, id: u64) -> Result<Option<DpParams>, Error> {
        let text: Option<String> = self
            .conn()
            .prepare_cached("SELECT dp_params FROM requests WHERE id = ?1")?
            .query_row([id as i64], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(match text {
            Some(t) => serde_json::from_str::<Option<DpParams>>(&t)?,
            None => None,
        })
    }

    /// Record a DP request's parameters, cost and expected error.
    fn set_dp_facts(
        &self,
        id: u64,
        params: &DpParams,
        cost_nanos: u64,
        accuracy95: Option<f64>,
    ) -> Result<(), Error> {
        self.conn()
            .prepare_cached(
                "UPDATE requests SET dp_params = ?2, cost = ?3, accuracy = ?4 WHERE id = ?1",
            )?
            .execute(params![
                id as i64,
                serde_json::to_string(&Some(params))?,
                cost_nanos as i64,
                accuracy95
            ])?;
        Ok(())
    }

    /// Record a DP batch's questions' costs and expected errors.
    fn set_batch_items(&self, id: u64, items: &[ItemPlan]) -> Result<(), Error> {
        self.conn()
            .prepare_cached("UPDATE requests SET items = ?2 WHERE id = ?1")?
            .execute(params![id as i64, serde_json::to_string(items)?])?;
        Ok(())
    }

    /// Record the numbers of the budget a DP request would exceed (it was denied for that).
    fn set_budget_shortfall(&self, id: u64, shortfall: &BudgetShortfall) -> Result<(), Error> {
        self.conn()
            .prepare_cached("UPDATE requests SET budget = ?2 WHERE id = ?1")?
            .execute(params![id as i64, serde_json::to_string(shortfall)?])?;
        Ok(())
    }

    /// Keep the receipt of a request's answer.
    fn set_receipt(&self, id: u64, receipt: &Receipt) -> Result<(), Error> {
        self.conn()
            .prepare_cached("UPDATE requests SET receipt = ?2 WHERE id = ?1")?
            .execute(params![id as i64, serde_json::to_string(receipt)?])?;
        Ok(())
    }

    /// Store the answer (JSON) of an approved request (a scoring request's, when its run ends).
    fn set_answer(&self, id: u64, answer: &str) -> Result<(), Error> {
        self.conn()
            .prepare_cached("UPDATE requests SET answer = ?2 WHERE id = ?1")?
            .execute(params![id as i64, answer])?;
        Ok(())
    }

    /// Mark a pending request approved by the owner, with its answer (JSON) if it has one now. False if it was
    /// no longer pending.
    fn approve_pending(&self, id: u64, answer: Option<&str>) -> Result<bool, Error> {
        let changed = self.conn().execute(
            "UPDATE requests SET state = 'approved', answer = ?2, decided_by = 'owner', decided_at = ?3,
                 rule = 'owner', why = NULL
             WHERE id = ?1 AND state = 'pending'",
            params![id as i64, answer, now_text()],
        )?;
        Ok(changed == 1)
    }

    /// Mark a pending request denied by the owner; returns its principal, or `None` if it was not pending.
    fn deny_pending(&self, id: u64, reason: &str) -> Result<Option<String>, Error> {
        let principal: Option<String> = self
            .conn()
            .query_row(
                "SELECT principal FROM requests WHERE id = ?1 AND state = 'pending'",
                [id as i64],
                |r| r.get(0),
            )
            .optional()?;
        if principal.is_some() {
            self.conn().execute(
                "UPDATE requests SET state = 'denied', why = ?2, decided_by = 'owner', decided_at = ?3, rule = 'owner'
                 WHERE id = ?1",
                params![id as i64, reason, now_text()],
            )?;
        }
        Ok(principal)
    }

    /// Whether any catalogue attribute of `checked` was released to `principal` for the same window.
    fn already_released(&self, principal: &str, checked: &Checked) -> Result<bool, Error> {
        for c in &checked.catalogue {
            let n: i64 = self
                .conn()
                .prepare_cached(
                    "SELECT COUNT(*) FROM release_attributes WHERE principal = ?1 AND attribute = ?2 AND window_end = ?3",
                )?
                .query_row(params![principal, c.name, c.window_end.to_string()], |r| {
                    r.get(0)
                })?;
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Index a release by the columns and catalogue attributes it read.
    fn index_release(&self, id: u64, principal: &str, checked: &Checked) -> Result<(), Error> {
        for (dataset, col) in &checked.columns {
            self.conn()
                .prepare_cached(
                    "INSERT INTO release_columns (request_id, dataset, col) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id as i64, dataset, col])?;
        }
        for c in &checked.catalogue {
            self.conn()
                .prepare_cached(
                    "INSERT INTO release_attributes (request_id, principal, attribute, window_end)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    id as i64,
                    principal,
                    c.name,
                    c.window_end.to_string()
                ])?;
        }
        Ok(())
    }

    /// Approved releases that read any of these columns.
    fn earlier_releases(
        &self,
        columns: &std::collections::BTreeSet<(String, String)>,
    ) -> Result<Vec<EarlierRelease>, Error> {
        let mut out: BTreeMap<u64, EarlierRelease> = BTreeMap::new();
        let mut stmt = self.conn().prepare_cached(
            "SELECT DISTINCT r.id, r.principal, r.backend, r.description, r.decided_at
             FROM release_columns c JOIN requests r ON r.id = c.request_id
             WHERE c.dataset = ?1 AND c.col = ?2 AND r.state = 'approved'",
        )?;
        for (dataset, col) in columns {
            let rows = stmt.query_map(params![dataset, col], |r| {
                Ok(EarlierRelease {
                    id: r.get::<_, i64>(0)? as u64,
                    principal: r.get(1)?,
                    backend: r.get(2)?,
                    description: r.get(3)?,
                    decided_at: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                })
            })?;
            for r in rows {
                let r = r?;
                out.insert(r.id, r);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Releases to `principal` counted against `rule` since `since` (seconds since the epoch), leaving out
    /// those of request `except` (a request's own approval, when its scoring run re-checks the policy).
    fn rate_count(
        &self,
        principal: &str,
        rule: &str,
        since: i64,
        except: Option<u64>,
    ) -> Result<u64, Error> {
        let n: i64 = self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM rate_events WHERE principal = ?1 AND rule = ?2 AND at > ?3
                 AND (?4 IS NULL OR request IS NULL OR request <> ?4)",
            )?
            .query_row(params![principal, rule, since, except], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Count a release of request `request` to `principal` against `rule`, now.
    fn record_rate(&self, principal: &str, rule: &str, request: u64) -> Result<(), Error> {
        self.conn()
            .prepare_cached(
                "INSERT INTO rate_events (principal, rule, at, request) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![principal, rule, now_unix(), request])?;
        Ok(())
    }
}

impl<T: HasConn + ?Sized> Requests for T {}
