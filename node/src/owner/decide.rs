//! The owner's own decisions on requests waiting for them: approve (with the guarantee that what they saw has
//! not changed) or deny with a reason.

use super::backend::{self, Ask, Ctx, Plan};
use super::release::{plan_stored, rate_counts, record_approved};
use super::signer::NodeSigner;
use super::view::{owner_request_view, pending_view, PendingView};
use super::{tags_with, Owner};
use crate::error::Error;
use crate::proto::request::{DpParams, RequestView};
use crate::proto::scoring::ScoringSpec;
use crate::store::prelude::*;
use crate::store::{RequestRow, StoredRequest, Tx};
use duo_engine::Answer;
use duo_policies::{decide, Decision, Policy, RequestFacts};

/// A stored pending request, read back for its approval.
struct Pending {
    row: RequestRow,
    stored: StoredRequest,
    dp: Option<DpParams>,
    spec: Option<ScoringSpec>,
}

impl Pending {
    fn read(tx: &Tx<'_>, id: u64) -> Result<Pending, Error> {
        Ok(Pending {
            row: tx
                .request(id, None)?
                .ok_or_else(|| Error::NotFound(format!("request {id}")))?,
            stored: tx.stored_request(id)?,
            dp: tx.dp_params(id)?,
            spec: tx.scoring_spec(id)?,
        })
    }

    /// The request as the backends see it.
    fn ask(&self) -> Ask<'_> {
        Ask {
            principal: &self.row.principal,
            backend: self.row.backend,
            reason: &self.row.reason,
            source: &self.row.source,
            checked: &self.stored.checked,
            dp: self.dp.as_ref(),
            scoring: self.spec.as_ref(),
        }
    }
}

/// Refuses an approval of something other than what the owner saw: `seen` is the token of the view they
/// approved, and a dataset reloaded since the request was made always needs the FI to ask again.
fn check_seen(view: &PendingView, seen: Option<&str>) -> Result<(), Error> {
    let stale = |why: &str| Error::Stale {
        why: why.to_string(),
        token: view.token.clone(),
    };
    if seen.is_some_and(|s| s != view.token) {
        return Err(stale(
            "the token does not match what the request shows now (mistyped, or the policy, the data, the value \
             or the earlier releases changed)",
        ));
    }
    if view.data_changed {
        return Err(stale(
            "a dataset this request reads was reloaded or deleted since it was made; the FI must ask again",
        ));
    }
    Ok(())
}

impl Owner {
    /// The owner approves a pending request. With `seen`, the approval fails with [`Error::Stale`] if anything
    /// the owner was shown has changed since; the policy's deny rules are re-run either way. The same stages as
    /// a new request follow: the plan is made again (a DP request's budgets may have moved), the policy's deny
    /// rules are checked, the backend answers, and the release is recorded, in one transaction.
    pub fn approve(&mut self, id: u64, seen: Option<&str>) -> Result<RequestView, Error> {
        let policy_and_hash = self.policy()?;
        let policy = policy_and_hash.0.clone();
        let Owner {
            store,
            cache,
            signer,
            ..
        } = self;
        let tx = store.write()?;
        let view = pending_view(cache, &policy_and_hash, &tx, id)?;
        check_seen(&view, seen)?;
        let stale = |why: String| Error::Stale {
            why,
            token: view.token.clone(),
        };
        // Only a request the log recorded as waiting for the owner.
        crate::store::integrity::check_request(&tx, id)?;
        let pending = Pending::read(&tx, id)?;
        let ask = pending.ask();
        let plan = plan_stored(
            cache,
            &tx,
            &pending.row,
            &pending.stored,
            &policy,
            ask.dp,
            ask.scoring,
        )?;
        if let Some(Err(e)) = &plan.budget_left {
            return Err(stale(format!("the budget no longer allows it: {e}")));
        }
        let tags = tags_with(cache, &tx, ask.checked)?;
        let counts = rate_counts(&tx, &policy, ask.principal, None)?;
        let facts = RequestFacts {
            already_released: tx.already_released(ask.principal, ask.checked)?,
            now: Some(chrono::Local::now().naive_local()),
            available_backends: backend::AVAILABLE,
            cost: plan.cost,
            rate_counts: Some(&counts),
            scoring: plan.scoring,
            ..RequestFacts::new(ask.principal, ask.backend, ask.checked, &tags)
        };
        if let Decision::Deny { rule, reason } = decide(&policy, &facts) {
            return Err(stale(format!(
                "the policy now denies this request (rule `{rule}`: {reason})"
            )));
        }
        let answer = match (ask.scoring, plan.charges()) {
            // The owner lets the FI start one run; the outcome is released when the run ends.
            (Some(_), _) => None,
            (None, Some(_)) => {
                let ctx = Ctx {
                    conn: &tx,
                    cache,
                    checked: ask.checked,
                    versions: &pending.stored.versions,
                    policy: Some(&policy),
                };
                backend::of(ask.backend).answer(&ctx, &plan)?
            }
            // `view.value` was computed inside this transaction, so it is what the data says now.
            (None, None) => match &view.value {
                Ok(a) => Some(a.clone()),
                Err(e) => return Err(Error::Refused(format!("cannot release: {e}"))),
            },
        };
        record_approval(
            &tx,
            signer,
            &policy,
            &ask,
            &view,
            &plan,
            &facts,
            answer.as_ref(),
        )?;
        let row = tx
            .request(id, None)?
            .ok_or_else(|| Error::Internal(format!("request {id} vanished")))?;
        tx.commit()?;
        let mut approved = owner_request_view(row)?;
        if ask.scoring.is_some() {
            approved.why = Some("approved: the FI may start the run (one run per request)".into());
        }
        Ok(approved)
    }

    /// The owner denies a pending request, with a reason the FI will see.
    pub fn deny(&mut self, id: u64, reason: &str) -> Result<RequestView, Error> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::Refused(
                "give a reason; the FI sees it with the denial".into(),
            ));
        }
        let tx = self.store.write()?;
        let principal = tx
            .deny_pending(id, reason)?
            .ok_or_else(|| Error::Refused(format!("request {id} is not pending")))?;
        tx.append_log(
            "decision",
            Some(&principal),
            &serde_json::json!({ "request": id, "action": "deny", "by": "owner", "reason": reason }),
        )?;
        tx.commit()?;
        let row = self
            .store
            .request(id, Some(&principal))?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        owner_request_view(row)
    }
}

/// Record the owner's approval: the request's new state, the decision's log entry with the token of what the
/// owner saw, the charge, the rate counters, and the release with its receipt (a scoring request's release
/// comes with its run).
#[allow(clippy::too_many_arguments)]
fn record_approval(
    tx: &Tx<'_>,
    signer: &NodeSigner,
    policy: &Policy,
    ask: &Ask<'_>,
    view: &PendingView,
    plan: &Plan,
    facts: &RequestFacts<'_>,
    answer: Option<&Answer>,
) -> Result<(), Error> {
    let id = view.id;
    let answer_text = answer.map(serde_json::to_string).transpose()?;
    if !tx.approve_pending(id, answer_text.as_deref())? {
        return Err(Error::Refused(format!("request {id} is no longer pending")));
    }
    tx.append_log(
        "decision",
        Some(ask.principal),
        &serde_json::json!({ "request": id, "action": "approve", "by": "owner", "token": view.token }),
    )?;
    record_approved(tx, signer, policy, facts, id, ask, plan, answer)
}
