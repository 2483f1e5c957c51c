//! The privacy ledger (one JSON document, changed only inside write transactions) and its history of charges.

use super::{integrity, now_text, HasConn, Log};
use crate::error::Error;
use duo_policies::{Amount, Charge, Ledger, Measure};
use rusqlite::params;
use serde::{Deserialize, Serialize};

/// One charge to the ledger, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetEvent {
    /// The request charged.
    pub request: u64,
    /// When.
    pub at: String,
    /// To whom it was released.
    pub principal: String,
    /// The datasets it read.
    pub datasets: Vec<String>,
    /// The amount charged.
    pub amount: Amount,
}

/// The ledger, for a [`super::Store`] or a [`super::Tx`].
pub trait Ledgers: HasConn {
    /// The privacy ledger, as stored (a fresh one in the default measure before the first cap). Refused with
    /// [`Error::Integrity`] unless it is the ledger the last `budget_set` or `budget_charged` entry of the log
    /// committed to: a ledger edited around the log (a spent amount reset, a cap raised) is never used.
    fn ledger(&self) -> Result<Ledger, Error> {
        let text = integrity::stored_ledger(self.conn())?;
        if let Some(m) = integrity::ledger_mismatch(self.conn(), text.as_deref())? {
            return Err(m.refusal());
        }
        match text {
            Some(t) => Ok(serde_json::from_str(&t)?),
            None => Ok(Ledger::new(Measure::default())),
        }
    }

    /// Store the ledger (inside the caller's transaction) and return the SHA-256 of the stored text, which the
    /// log entry recording the change must carry as `ledger_sha256` (a `budget_set` entry; [`Self::record_charge`]
    /// adds it to a `budget_charged` entry itself). A ledger saved without such an entry is refused when next
    /// read.
    fn save_ledger(&self, ledger: &Ledger) -> Result<String, Error> {
        let text = serde_json::to_string(ledger)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES ('ledger', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([&text])?;
        Ok(integrity::sha256_hex(&text))
    }

    /// Keep a charge in the history and log it (inside the caller's transaction, with the charge itself, after
    /// the charged ledger was saved): the entry commits to the ledger as it now stands.
    fn record_charge(&self, request: u64, charge: &Charge) -> Result<(), Error> {
        self.conn()
            .prepare_cached(
                "INSERT INTO budget_history (request_id, at, principal, datasets, amount) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                request as i64,
                now_text(),
                charge.principal,
                serde_json::to_string(&charge.datasets)?,
                charge.amount.nanos() as i64
            ])?;
        self.append_log(
            "budget_charged",
            Some(&charge.principal),
            &serde_json::json!({
                "request": request, "amount": charge.amount.to_string(), "datasets": charge.datasets,
                "ledger_sha256": integrity::stored_ledger(self.conn())?.map(integrity::sha256_hex),
            }),
        )?;
        Ok(())
    }

    /// When each charge was made and its amount, oldest first: the spending over time, without decoding each
    /// charge's datasets (the Budgets screen's chart).
    fn budget_spending(&self) -> Result<Vec<(String, Amount)>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT at, amount FROM budget_history ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Amount::from_nanos(r.get::<_, i64>(1)? as u64),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every charge, oldest first.
    fn budget_history(&self) -> Result<Vec<BudgetEvent>, Error> {
        let mut stmt = self.conn().prepare(
            "SELECT request_id, at, principal, datasets, amount FROM budget_history ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (request, at, principal, datasets, amount) = row?;
            out.push(BudgetEvent {
                request: request as u64,
                at,
                principal,
                datasets: serde_json::from_str(&datasets)?,
                amount: Amount::from_nanos(amount as u64),
            });
        }
        Ok(out)
    }
}

impl<T: HasConn + ?Sized> Ledgers for T {}
