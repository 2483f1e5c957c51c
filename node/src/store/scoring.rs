//! Private scoring: the spec of each scoring request and every run, counted when it starts.

use super::{now_unix, HasConn};
use crate::error::Error;
use crate::proto::scoring::{ScoreOutcome, ScoringSpec};
use duo_policies::ScoringUse;
use rusqlite::{params, OptionalExtension};

/// A scoring pairing's OT-extension state at rest, between runs (docs/scoring.md, "Base OTs kept between
/// sessions"): the owner's side of it, as `duo_protocols::ot::kos::Sender::to_rest` wrote it.
pub struct OtAtRest {
    /// Which state: the session id of the run that made its base OTs (hex), the same on both sides.
    pub id: String,
    /// The next OT index, the same on both sides when both hold the same state.
    pub next_index: u64,
    /// The state itself (secret; zeroed when dropped).
    pub state: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OtAtRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtAtRest")
            .field("id", &self.id)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

/// Scoring requests and runs, for a [`super::Store`] or a [`super::Tx`].
pub trait ScoringRuns: HasConn {
    /// Take a principal's OT-extension state out of the store: it is deleted in the caller's transaction, so a
    /// state is used by one run at most, and a run that does not finish leaves none behind.
    fn take_ot_state(&self, principal: &str) -> Result<Option<OtAtRest>, Error> {
        let got = self
            .conn()
            .prepare_cached("SELECT id, next_index, state FROM ot_states WHERE principal = ?1")?
            .query_row([principal], |r| {
                Ok(OtAtRest {
                    id: r.get(0)?,
                    next_index: r.get::<_, i64>(1)? as u64,
                    state: zeroize::Zeroizing::new(r.get(2)?),
                })
            })
            .optional()?;
        if got.is_some() {
            self.conn()
                .prepare_cached("DELETE FROM ot_states WHERE principal = ?1")?
                .execute([principal])?;
        }
        Ok(got)
    }

    /// Keep a principal's OT-extension state after a run that finished, in place of any other.
    fn put_ot_state(&self, principal: &str, ot: &OtAtRest) -> Result<(), Error> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO ot_states (principal, id, next_index, state) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                principal,
                ot.id,
                ot.next_index as i64,
                ot.state.as_slice()
            ])?;
        Ok(())
    }

    /// Runs started and bits revealed to `principal` since `since` (seconds since the epoch).
    fn scoring_use(&self, principal: &str, since: i64) -> Result<ScoringUse, Error> {
        let (runs, millibits): (i64, i64) = self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(millibits), 0) FROM scoring_runs
                 WHERE principal = ?1 AND started_at > ?2",
            )?
            .query_row(params![principal, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(ScoringUse {
            runs: runs as u32,
            millibits: millibits as u64,
        })
    }

    /// Runs started and bits revealed since `since`, by principal.
    fn scoring_usage(&self, since: i64) -> Result<Vec<(String, ScoringUse)>, Error> {
        let mut stmt = self.conn().prepare(
            "SELECT principal, COUNT(*), COALESCE(SUM(millibits), 0) FROM scoring_runs
             WHERE started_at > ?1 GROUP BY principal ORDER BY principal",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok((
                r.get::<_, String>(0)?,
                ScoringUse {
                    runs: r.get::<_, i64>(1)? as u32,
                    millibits: r.get::<_, i64>(2)? as u64,
                },
            ))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The spec of a scoring request, if it is one.
    fn scoring_spec(&self, request: u64) -> Result<Option<ScoringSpec>, Error> {
        let text: Option<String> = self
            .conn()
            .prepare_cached("SELECT spec FROM scoring_requests WHERE request_id = ?1")?
            .query_row([request as i64], |r| r.get(0))
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    /// Keep the spec of a scoring request.
    fn store_scoring_spec(&self, request: u64, spec: &ScoringSpec) -> Result<(), Error> {
        self.conn()
            .prepare_cached("INSERT INTO scoring_requests (request_id, spec) VALUES (?1, ?2)")?
            .execute(params![request as i64, serde_json::to_string(spec)?])?;
        Ok(())
    }

    /// The run of a request, if one started.
    fn run_of(&self, request: u64) -> Result<Option<u64>, Error> {
        Ok(self
            .conn()
            .prepare_cached("SELECT id FROM scoring_runs WHERE request_id = ?1")?
            .query_row([request as i64], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|r| r as u64))
    }

    /// Count a run as started now; returns its id.
    fn start_run(&self, request: u64, principal: &str, millibits: u64) -> Result<u64, Error> {
        self.conn().execute(
            "INSERT INTO scoring_runs (request_id, principal, started_at, millibits, state)
             VALUES (?1, ?2, ?3, ?4, 'started')",
            params![request as i64, principal, now_unix(), millibits as i64],
        )?;
        Ok(self.conn().last_insert_rowid() as u64)
    }

    /// Record a run's outcome.
    fn run_done(&self, run: u64, outcome: &ScoreOutcome) -> Result<(), Error> {
        self.conn().execute(
            "UPDATE scoring_runs SET state = 'done', outcome = ?2, ended_at = ?3 WHERE id = ?1",
            params![run as i64, serde_json::to_string(outcome)?, now_unix()],
        )?;
        Ok(())
    }

    /// Record why a run aborted.
    fn run_aborted(&self, run: u64, why: &str) -> Result<(), Error> {
        self.conn().execute(
            "UPDATE scoring_runs SET state = 'aborted', error = ?2, ended_at = ?3 WHERE id = ?1",
            params![run as i64, why, now_unix()],
        )?;
        Ok(())
    }
}

impl<T: HasConn + ?Sized> ScoringRuns for T {}
