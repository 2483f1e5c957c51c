//! The owner's own decisions on requests waiting for them: approve (with the guarantee that what they saw has
//! not changed) or deny with a reason.

use super::backend::{self, Ctx};
use super::release::{plan_stored, record_rates, record_release, Ask};
use super::view::{pending_view, request_view};
use super::{tags_with, Owner};
use crate::error::Error;
use crate::proto::request::RequestView;
use crate::store::prelude::*;
use duo_policies::{decide, Decision, RequestFacts};

impl Owner {
    /// The owner approves a pending request. With `seen`, the approval fails with [`Error::Stale`] if anything
    /// the owner was shown has changed since; the policy's deny rules are re-run either way.
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
        let stale = |why: String| Error::Stale {
            why,
            token: view.token.clone(),
        };
        if seen.is_some_and(|s| s != view.token) {
            return Err(stale(
                "the policy, the data, the value or the earlier releases changed".into(),
            ));
        }
        if view.data_changed {
            return Err(stale(
                "a dataset this request reads was reloaded since it was made; the FI must ask again".into(),
            ));
        }
        let row = tx
            .request(id, None)?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        let stored = tx.stored_request(id)?;
        let (dp, spec) = (tx.dp_params(id)?, tx.scoring_spec(id)?);
        // The plan is made again now: a DP request's budgets may have moved.
        let plan = plan_stored(
            cache,
            &tx,
            &row,
            &stored,
            &policy,
            dp.as_ref(),
            spec.as_ref(),
        )?;
        if let Some(Err(e)) = &plan.budget_left {
            return Err(stale(format!("the budget no longer allows it: {e}")));
        }
        let tags = tags_with(cache, &tx, &stored.checked)?;
        let counts = super::release::rate_counts(&tx, &policy, &row.principal)?;
        let facts = RequestFacts {
            already_released: tx.already_released(&row.principal, &stored.checked)?,
            now: Some(chrono::Local::now().naive_local()),
            available_backends: backend::AVAILABLE,
            cost: plan.cost,
            rate_counts: Some(&counts),
            scoring: plan.scoring,
            ..RequestFacts::new(&row.principal, row.backend, &stored.checked, &tags)
        };
        if let Decision::Deny { rule, reason } = decide(&policy, &facts) {
            return Err(stale(format!(
                "the policy now denies this request (rule `{rule}`: {reason})"
            )));
        }
        let answer = match (&spec, &plan.charge()) {
            // The owner lets the FI start one run; the outcome is released when the run ends.
            (Some(_), _) => None,
            (None, Some(_)) => {
                let ask = Ask {
                    principal: &row.principal,
                    backend: row.backend,
                    reason: &row.reason,
                    source: &row.source,
                    checked: &stored.checked,
                    dp: dp.as_ref(),
                    scoring: None,
                };
                let ctx = Ctx {
                    conn: &tx,
                    cache,
                    checked: ask.checked,
                    versions: &stored.versions,
                    policy: &policy,
                };
                backend::of(row.backend).answer(&ctx, &plan)?
            }
            // `view.value` was computed inside this transaction, so it is what the data says now.
            (None, None) => match &view.value {
                Ok(a) => Some(a.clone()),
                Err(e) => return Err(Error::Refused(format!("cannot release: {e}"))),
            },
        };
        let answer_text = answer.as_ref().map(serde_json::to_string).transpose()?;
        let why = spec
            .is_some()
            .then_some("approved: the FI may start the run (one run per request)");
        if !tx.approve_pending(id, answer_text.as_deref(), why)? {
            return Err(Error::Refused(format!("request {id} is no longer pending")));
        }
        tx.append_log(
            "decision",
            Some(&row.principal),
            &serde_json::json!({ "request": id, "action": "approve", "by": "owner", "token": view.token }),
        )?;
        if let (Some(charge), Some(_)) = (plan.charge(), &answer) {
            tx.record_charge(id, charge)?;
        }
        record_rates(&tx, &policy, &facts)?;
        if let Some(answer) = &answer {
            let cost = plan.cost.map_or(0, |c| c.nanos());
            record_release(
                &tx,
                signer,
                id,
                &row.principal,
                row.backend,
                &stored.checked,
                answer,
                cost,
            )?;
        }
        let row = tx
            .request(id, None)?
            .ok_or_else(|| Error::Internal(format!("request {id} vanished")))?;
        tx.commit()?;
        request_view(row)
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
        self.request_view(&principal, id)
    }
}
