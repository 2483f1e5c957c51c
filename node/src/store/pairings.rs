//! Invites and pairings: who may pair, who is paired, and revocation.

use super::{now_text, now_unix, write_tx, HasConn, Log, Store};
use crate::error::Error;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

fn usable(i: &Invite) -> bool {
    i.state == "open" && i.expires_at > now_unix() && i.attempts < MAX_INVITE_ATTEMPTS
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

/// Queries on invites and pairings, for a [`super::Store`] or a [`super::Tx`].
pub trait Pairings: HasConn {
    /// The invite with this id, whatever its state.
    fn invite(&self, id: &str) -> Result<Option<Invite>, Error> {
        let conn = self.conn();
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

    /// Why an invite could not be used, in words for the log and the FI.
    fn invite_refusal(&self, id: &str) -> Result<String, Error> {
        let conn = self.conn();
        Ok(match conn.invite(id)? {
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

    /// The principal a key is paired as, if the pairing is active and has not expired.
    fn principal_for_key(&self, fi_key: &[u8; 32]) -> Result<Option<String>, Error> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached(
                "SELECT principal FROM pairings WHERE fi_key = ?1 AND expires_at > ?2 AND state = 'active'",
            )?
            .query_row(params![fi_key.as_slice(), now_unix()], |r| r.get(0))
            .optional()?)
    }

    /// Record that a principal opened a session.
    fn touch_pairing(&self, principal: &str) -> Result<(), Error> {
        let conn = self.conn();
        conn.execute(
            "UPDATE pairings SET last_seen = ?2 WHERE principal = ?1",
            params![principal, now_text()],
        )?;
        Ok(())
    }

    /// All pairings, with their pending requests.
    fn pairings(&self) -> Result<Vec<Pairing>, Error> {
        let conn = self.conn();
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
}

impl<T: HasConn + ?Sized> Pairings for T {}

impl Store {
    /// Store a new invite and log it.
    pub fn create_invite(
        &mut self,
        id: &str,
        principal: &str,
        psk: &[u8; 32],
        expires_at: i64,
        pairing: Duration,
    ) -> Result<(), Error> {
        let conn = &mut self.conn;
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
        tx.append_log("invite_created",
            Some(principal),
            &serde_json::json!({ "invite": id, "expires_at": expires_at, "pairing_secs": pairing_secs }),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Start a pairing attempt: if the invite may still be used (open, not expired, attempts left), count the
    /// attempt now, in its own transaction, and return the pre-shared key. Counting before the handshake means
    /// concurrent attempts can never exceed [`MAX_INVITE_ATTEMPTS`].
    pub fn begin_invite_attempt(&mut self, id: &str) -> Result<Option<[u8; 32]>, Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let Some(inv) = tx.invite(id)?.filter(usable) else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE invites SET attempts = attempts + 1 WHERE id = ?1",
            [id],
        )?;
        tx.commit()?;
        Ok(Some(inv.psk))
    }

    /// Record a failed pairing attempt (already counted by [`Store::begin_invite_attempt`]); burns the invite once it has
    /// no attempts left. Returns whether it is burned.
    pub fn invite_failed(&mut self, id: &str, why: &str) -> Result<bool, Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let Some(inv) = tx.invite(id)? else {
            tx.append_log(
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
        tx.append_log("pairing_failed",
            Some(&inv.principal),
            &serde_json::json!({ "invite": id, "why": why, "attempts": inv.attempts, "burned": burned }),
        )?;
        tx.commit()?;
        Ok(burned)
    }

    /// Consume an invite and register the FI's key for its principal (replacing an earlier key: re-pairing rotates
    /// the key and keeps everything keyed on the principal), with its log entry. The pairing lasts as long as the
    /// invite said. Fails if the invite is no longer usable (checked again inside the transaction).
    pub fn complete_pairing(
        &mut self,
        invite_id: &str,
        fi_key: &[u8; 32],
        fingerprint: &str,
    ) -> Result<String, Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let inv = tx
            .invite(invite_id)?
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
        tx.append_log(
            "paired",
            Some(&inv.principal),
            &serde_json::json!({ "invite": invite_id, "fi_key_fingerprint": fingerprint }),
        )?;
        tx.commit()?;
        Ok(inv.principal)
    }

    /// Revoke a principal: its pairing stops working at once (running sessions close when they notice), and its
    /// pending requests are cancelled, in one transaction with the log entries. Budgets, counters and history stay
    /// keyed on the principal, so a later re-pairing keeps them. Returns the ids of the cancelled requests.
    pub fn revoke(&mut self, principal: &str) -> Result<Vec<u64>, Error> {
        let conn = &mut self.conn;
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
            tx.append_log("decision",
                Some(principal),
                &serde_json::json!({ "request": id, "action": "deny", "by": "owner", "reason": why }),
            )?;
        }
        tx.append_log(
            "revoked",
            Some(principal),
            &serde_json::json!({ "cancelled_requests": ids }),
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Delete the rows of every version of a dataset (its metadata stays for the log's sake). Pending requests on it
    /// can no longer be approved; budgets and history are kept. Returns the number of versions deleted.
    pub fn delete_dataset(&mut self, name: &str) -> Result<u64, Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let n = tx.execute(
            "UPDATE datasets SET data = x'', current = 0, deleted_at = ?2 WHERE name = ?1 AND deleted_at IS NULL",
            params![name, now_text()],
        )?;
        if n == 0 {
            return Err(Error::NotFound(format!("dataset `{name}`")));
        }
        tx.append_log(
            "dataset_deleted",
            None,
            &serde_json::json!({ "dataset": name, "versions": n }),
        )?;
        tx.commit()?;
        Ok(n as u64)
    }
}
