//! Invites and pairings: who may pair, who is paired, re-keying, and revocation.
//!
//! A principal has at most one usable way in at a time: pairing it (or revoking it) cancels its other open
//! invites, an invite for a principal that is already paired is refused unless it is a re-key invite, and a
//! key that a re-key replaced is remembered so that its holder is told why it no longer works.

use super::{now_text, now_unix, write_tx, HasConn, Log, Store};
use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension};
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
    /// `open`, `used`, `burned` or `cancelled` (by the owner, or because its principal paired with another
    /// invite or was revoked).
    pub state: String,
    /// Whether it re-keys a principal that is already paired ([`Store::create_rekey_invite`]) rather than
    /// pairing one that is not.
    pub rekey: bool,
}

/// An invite that may still be used, as `duo owner invite list` shows it (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInvite {
    /// Public invite id (part of the code).
    pub id: String,
    /// Principal the invite is bound to.
    pub principal: String,
    /// When it was made.
    pub created_at: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
    /// Pairing attempts so far.
    pub attempts: u32,
    /// Whether using it replaces the key of the principal's current pairing.
    pub rekey: bool,
}

/// A key whose pairing a newer key took over; its holder is told so when it tries a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedKey {
    /// The principal the key was paired as.
    pub principal: String,
    /// Fingerprint of the replaced key.
    pub fingerprint: String,
    /// When the newer key took over.
    pub replaced_at: String,
    /// Fingerprint of the key that took over.
    pub new_fingerprint: String,
}

/// What a revocation cancelled ([`Store::revoke`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Revocation {
    /// Ids of the requests it cancelled.
    pub requests: Vec<u64>,
    /// Ids of the principal's open invites it cancelled.
    pub invites: Vec<String>,
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
                "SELECT id, principal, psk, expires_at, attempts, state, rekey FROM invites WHERE id = ?1",
                [id],
                |r| {
                    let psk: Vec<u8> = r.get(2)?;
                    Ok((
                        (r.get(0)?, r.get(1)?, psk),
                        (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                    ))
                },
            )
            .optional()?
            .and_then(
                |((id, principal, psk), (expires_at, attempts, state, rekey))| {
                    let psk: [u8; 32] = psk.try_into().ok()?;
                    Some(Invite {
                        id,
                        principal,
                        psk,
                        expires_at,
                        attempts,
                        state,
                        rekey,
                    })
                },
            ))
    }

    /// Why an invite could not be used, in words for the log and the FI. The words name no principal: the
    /// invite id travels in clear text, so anyone on the path may ask.
    fn invite_refusal(&self, id: &str) -> Result<String, Error> {
        let conn = self.conn();
        Ok(match conn.invite(id)? {
            None => "no such invite".into(),
            Some(i) if i.state == "used" => "this invite was already used".into(),
            Some(i) if i.state == "burned" => {
                "this invite was burned after too many failed attempts".into()
            }
            Some(i) if i.state == "cancelled" => {
                "this invite was cancelled; ask the owner for a new one".into()
            }
            Some(i) if i.expires_at <= now_unix() => "this invite has expired".into(),
            Some(i) if i.attempts >= MAX_INVITE_ATTEMPTS => {
                "this invite has had too many attempts; ask the owner for a new one".into()
            }
            Some(_) => "this invite cannot be used".into(),
        })
    }

    /// The invites that may still be used (open and not expired), oldest first.
    fn open_invites(&self) -> Result<Vec<OpenInvite>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, principal, created_at, expires_at, attempts, rekey FROM invites
             WHERE state = 'open' AND expires_at > ?1 ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([now_unix()], |r| {
            Ok(OpenInvite {
                id: r.get(0)?,
                principal: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                attempts: r.get(4)?,
                rekey: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The principal a key is paired as, if the pairing is active and has not expired. Refused with
    /// [`Error::Integrity`] if the pairing's row (key, expiry, state) is not what its log entries committed to.
    fn principal_for_key(&self, fi_key: &[u8; 32]) -> Result<Option<String>, Error> {
        let conn = self.conn();
        let principal: Option<String> = conn
            .prepare_cached(
                "SELECT principal FROM pairings WHERE fi_key = ?1 AND expires_at > ?2 AND state = 'active'",
            )?
            .query_row(params![fi_key.as_slice(), now_unix()], |r| r.get(0))
            .optional()?;
        if let Some(p) = &principal {
            if let Some(m) = super::integrity::pairing_mismatch(conn, p)? {
                return Err(m.refusal());
            }
        }
        Ok(principal)
    }

    /// If a newer key took over the pairing this key had: when, and which key.
    fn replaced_key(&self, fi_key: &[u8; 32]) -> Result<Option<ReplacedKey>, Error> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT principal, fingerprint, replaced_at, new_fingerprint FROM replaced_keys
                 WHERE fi_key = ?1",
                [fi_key.as_slice()],
                |r| {
                    Ok(ReplacedKey {
                        principal: r.get(0)?,
                        fingerprint: r.get(1)?,
                        replaced_at: r.get(2)?,
                        new_fingerprint: r.get(3)?,
                    })
                },
            )
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
        select_pairings(self.conn(), None)
    }

    /// The principal's pairing if it is active and has not expired: the one a re-key invite replaces.
    fn current_pairing(&self, principal: &str) -> Result<Option<Pairing>, Error> {
        Ok(select_pairings(self.conn(), Some(principal))?
            .into_iter()
            .find(|p| p.state == "active"))
    }
}

impl<T: HasConn + ?Sized> Pairings for T {}

/// Pairings with their pending requests: all of them, or the one of `principal`.
fn select_pairings(conn: &Connection, principal: Option<&str>) -> Result<Vec<Pairing>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.principal, p.fingerprint, p.paired_at, p.expires_at, p.last_seen, p.state,
                (SELECT COUNT(*) FROM requests r WHERE r.principal = p.principal AND r.state = 'pending')
         FROM pairings p WHERE ?1 IS NULL OR p.principal = ?1 ORDER BY p.principal",
    )?;
    let now = now_unix();
    let rows = stmt.query_map([principal], |r| {
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

/// Cancel the principal's invites that could still be used (open, not expired), except `except`, and return
/// their ids. The caller logs them in the same transaction.
fn cancel_open_invites(
    conn: &Connection,
    principal: &str,
    except: Option<&str>,
) -> Result<Vec<String>, Error> {
    let ids: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT id FROM invites WHERE principal = ?1 AND state = 'open' AND expires_at > ?2
                 AND (?3 IS NULL OR id != ?3)
             ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map(params![principal, now_unix(), except], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for id in &ids {
        conn.execute("UPDATE invites SET state = 'cancelled' WHERE id = ?1", [id])?;
    }
    Ok(ids)
}

/// Bring a database made before re-key invites existed up to date: add the invites' `rekey` column and, in
/// the same transaction, cancel the open invites of every principal that has a pairing (active, expired or
/// revoked), each with its log entry. Those invites were made when pairing and revoking left a principal's
/// other invites open, so any of them may be a code made before a revocation or a second code for a paired
/// FI. Does nothing to a current database.
pub(super) fn upgrade(conn: &mut Connection) -> Result<(), Error> {
    fn has_rekey(conn: &Connection) -> Result<bool, Error> {
        super::has_column(conn, "invites", "rekey")
    }
    if has_rekey(conn)? {
        return Ok(());
    }
    let tx = write_tx(conn)?;
    // Another process may have upgraded it since the look above.
    if has_rekey(&tx)? {
        return Ok(());
    }
    tx.execute_batch("ALTER TABLE invites ADD COLUMN rekey INTEGER NOT NULL DEFAULT 0")?;
    let principals: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT DISTINCT i.principal FROM invites i JOIN pairings p ON p.principal = i.principal
             WHERE i.state = 'open' AND i.expires_at > ?1 ORDER BY i.principal",
        )?;
        let rows = stmt.query_map([now_unix()], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for principal in principals {
        for id in cancel_open_invites(&tx, &principal, None)? {
            tx.append_log(
                "invite_cancelled",
                Some(&principal),
                &serde_json::json!({
                    "invite": id,
                    "by": "upgrade",
                    "why": "made before pairing and revoking cancelled a principal's other invites",
                }),
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Store a new invite for a principal that is not paired (never paired, revoked, or expired) and log it.
    /// Refused while the principal has a current pairing: using the invite would replace that pairing's key,
    /// which only a re-key invite ([`Store::create_rekey_invite`]) may do.
    pub fn create_invite(
        &mut self,
        id: &str,
        principal: &str,
        psk: &[u8; 32],
        expires_at: i64,
        pairing: Duration,
    ) -> Result<(), Error> {
        self.insert_invite(id, principal, psk, expires_at, pairing, false)
    }

    /// Store a re-key invite for a principal that is paired, and log it. The pairing it makes replaces the
    /// current key: the old key stops working at once, and the new key inherits everything kept under the
    /// principal (budgets, counters, requests and their answers). Refused if the principal has no current
    /// pairing (a plain invite pairs it).
    pub fn create_rekey_invite(
        &mut self,
        id: &str,
        principal: &str,
        psk: &[u8; 32],
        expires_at: i64,
        pairing: Duration,
    ) -> Result<(), Error> {
        self.insert_invite(id, principal, psk, expires_at, pairing, true)
    }

    fn insert_invite(
        &mut self,
        id: &str,
        principal: &str,
        psk: &[u8; 32],
        expires_at: i64,
        pairing: Duration,
        rekey: bool,
    ) -> Result<(), Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let current = tx.current_pairing(principal)?;
        let replaces = match (&current, rekey) {
            (Some(p), false) => {
                return Err(Error::Refused(format!(
                    "`{principal}` is already paired (key {}): a new pairing would replace its key. To do that, \
                     re-key it with `duo owner invite --fi \"{principal}\" --rekey`; to cut it off, \
                     `duo owner fi revoke \"{principal}\"`",
                    p.fingerprint
                )));
            }
            (None, true) => {
                return Err(Error::Refused(format!(
                    "`{principal}` has no current pairing to re-key (see `duo owner fi list`); \
                     a plain invite pairs it"
                )));
            }
            (p, _) => p.as_ref().map(|p| p.fingerprint.clone()),
        };
        let pairing_secs = i64::try_from(pairing.as_secs()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO invites (id, principal, psk, created_at, expires_at, pairing_secs, rekey)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                principal,
                psk.as_slice(),
                now_text(),
                expires_at,
                pairing_secs,
                rekey
            ],
        )?;
        let mut body = serde_json::json!({
            "invite": id, "expires_at": expires_at, "pairing_secs": pairing_secs, "rekey": rekey,
        });
        if let Some(fp) = replaces {
            body["replaces_fi_key_fingerprint"] = fp.into();
        }
        tx.append_log("invite_created", Some(principal), &body)?;
        tx.commit()?;
        Ok(())
    }

    /// Cancel an open invite: its code no longer pairs. Logged. Returns the invite as it was.
    pub fn cancel_invite(&mut self, id: &str) -> Result<Invite, Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let Some(inv) = tx
            .invite(id)?
            .filter(|i| i.state == "open" && i.expires_at > now_unix())
        else {
            let why = tx.invite_refusal(id)?;
            return Err(Error::NotFound(format!(
                "no open invite `{id}`: {why} (see `duo owner invite list`)"
            )));
        };
        tx.execute("UPDATE invites SET state = 'cancelled' WHERE id = ?1", [id])?;
        tx.append_log(
            "invite_cancelled",
            Some(&inv.principal),
            &serde_json::json!({ "invite": id, "by": "owner" }),
        )?;
        tx.commit()?;
        Ok(inv)
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

    /// Consume an invite and register the FI's key for its principal, with its log entry, in one transaction.
    /// The pairing lasts as long as the invite said. The principal's other open invites are cancelled. A
    /// principal with a current pairing is paired again only by a re-key invite: the new key replaces the old
    /// one (which stops working at once, and is remembered as replaced so its holder can be told) and keeps
    /// everything keyed on the principal. An earlier key of a revoked or expired pairing is replaced the same
    /// way. Fails if the invite is no longer usable (checked again inside the transaction).
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
        // Invites for a paired principal are refused unless they re-key, and pairing cancels the others; this
        // holds even so for an invite that somehow outlived both.
        if !inv.rekey && tx.current_pairing(&inv.principal)?.is_some() {
            return Err(Error::Refused(format!(
                "invite {invite_id} can no longer be used: its FI is already paired"
            )));
        }
        let pairing_secs: i64 = tx.query_row(
            "SELECT pairing_secs FROM invites WHERE id = ?1",
            [invite_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE invites SET state = 'used' WHERE id = ?1",
            [invite_id],
        )?;
        let cancelled = cancel_open_invites(&tx, &inv.principal, Some(invite_id))?;
        // The key this pairing replaces, if any: its holder is told so from now on.
        let old: Option<(Vec<u8>, String, String)> = tx
            .query_row(
                "SELECT fi_key, fingerprint,
                        CASE WHEN state = 'active' AND expires_at <= ?2 THEN 'expired' ELSE state END
                 FROM pairings WHERE principal = ?1",
                params![inv.principal, now_unix()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let replaced = old.filter(|(key, _, _)| key.as_slice() != fi_key.as_slice());
        if let Some((key, old_fp, _)) = &replaced {
            tx.execute(
                "INSERT INTO replaced_keys (fi_key, principal, fingerprint, replaced_at, new_fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(fi_key) DO UPDATE SET principal = excluded.principal,
                     fingerprint = excluded.fingerprint, replaced_at = excluded.replaced_at,
                     new_fingerprint = excluded.new_fingerprint",
                params![key, inv.principal, old_fp, now_text(), fingerprint],
            )?;
        }
        // This key is current again, whatever it replaced before.
        tx.execute(
            "DELETE FROM replaced_keys WHERE fi_key = ?1",
            [fi_key.as_slice()],
        )?;
        // A key belongs to one principal: drop it from any other principal it was registered for.
        tx.execute(
            "DELETE FROM pairings WHERE fi_key = ?1 AND principal != ?2",
            params![fi_key.as_slice(), inv.principal],
        )?;
        // A new pairing (or a new key) starts its scoring from new base OTs: the state kept for the old one goes.
        tx.execute(
            "DELETE FROM ot_states WHERE principal = ?1",
            [inv.principal.as_str()],
        )?;
        let expires_at = now_unix().saturating_add(pairing_secs);
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
                expires_at
            ],
        )?;
        // The entry commits to the pairing's key (by fingerprint) and expiry: a session checks them against it.
        let mut body = serde_json::json!({
            "invite": invite_id, "fi_key_fingerprint": fingerprint, "rekey": inv.rekey,
            "cancelled_invites": cancelled, "expires_at": expires_at,
            "fi_key_sha256": super::integrity::sha256_hex(fi_key),
        });
        if let Some((_, old_fp, old_state)) = replaced {
            body["replaced_fi_key_fingerprint"] = old_fp.into();
            body["replaced_pairing_state"] = old_state.into();
        }
        tx.append_log("paired", Some(&inv.principal), &body)?;
        tx.commit()?;
        Ok(inv.principal)
    }

    /// Revoke a principal: its pairing stops working at once (running sessions close when they notice), and its
    /// pending requests and open invites are cancelled, in one transaction with the log entries. Budgets,
    /// counters and history stay keyed on the principal, so a later re-pairing keeps them.
    pub fn revoke(&mut self, principal: &str) -> Result<Revocation, Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let changed = tx.execute(
            "UPDATE pairings SET state = 'revoked' WHERE principal = ?1 AND state = 'active'",
            [principal],
        )?;
        if changed == 0 {
            return Err(Error::NotFound(format!(
                "no active pairing for `{principal}` (see `duo owner fi list`; \
                 `duo owner invite cancel ID` cancels an invite)"
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
        let invites = cancel_open_invites(&tx, principal, None)?;
        // Its OT-extension state is of no more use, and is secret: gone with the pairing.
        tx.execute("DELETE FROM ot_states WHERE principal = ?1", [principal])?;
        tx.append_log(
            "revoked",
            Some(principal),
            &serde_json::json!({ "cancelled_requests": ids, "cancelled_invites": invites }),
        )?;
        tx.commit()?;
        Ok(Revocation {
            requests: ids,
            invites,
        })
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
