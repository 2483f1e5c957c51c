//! The release path: every new request, from an FI's session or an owner's command, passes the same named
//! stages, each a function below:
//!
//! 1. [`admit`]: the request is well formed (a reason, data to read, the backend's own parameters); then,
//!    inside the write transaction, the FI is within its limit of requests waiting for the owner;
//! 2. `gather`: the facts the policy decides on: the dataset versions, the backend's
//!    [plan](crate::owner::backend::Plan) from public facts, and whether the same question already has a stored
//!    answer; then the dataset tags, what was released to this FI before and the rate counters;
//! 3. `decide`: the policy's decision (a DP request over a cap is refused at once, with the numbers);
//! 4. `answer`: an approved request is answered by its backend; one that cannot be computed becomes a denial
//!    that says why;
//! 5. `record`: the request, the decision, the charge, the release index, the log entries and the signed
//!    receipt, in the same transaction, committed before anything leaves the node.
//!
//! The owner's own approval ([`crate::owner::decide`]) re-runs stages 2 to 5 on the stored request.

pub use super::backend::Ask;
use super::backend::{self, Backend, Ctx, Plan};
use super::view::request_view;
use super::{tags_with, versions_read, DatasetCache, Owner};
use crate::error::Error;
use crate::owner::signer::NodeSigner;
use crate::proto::digest::{hash_fields, hex};
use crate::proto::receipt::Receipt;
use crate::proto::request::{DpParams, RequestState, RequestView};
use crate::proto::scoring::ScoringSpec;
use crate::store::prelude::*;
use crate::store::{integrity, Conn, LogPos, NewRequest, Tx};
use duo_engine::{render, Answer, Checked};
use duo_policies::{decide as policy_decide, Backend as Kind, Decision, Policy, RequestFacts};
use std::collections::BTreeMap;

/// What [`gather`] found: the facts the decision and the record need.
struct Facts {
    versions: BTreeMap<String, u64>,
    plan: Plan,
    /// The key under which the same question finds its stored answer.
    key: String,
    /// What the request is about, as the log and receipts record it (JSON).
    lineage: String,
    description: String,
    tags: BTreeMap<String, Vec<String>>,
    already_released: bool,
    rate_counts: BTreeMap<(String, duo_policies::Window), u64>,
}

impl Facts {
    /// The policy's view of the request.
    fn request_facts<'a>(&'a self, ask: &'a Ask<'a>) -> RequestFacts<'a> {
        RequestFacts {
            already_released: self.already_released,
            now: Some(chrono::Local::now().naive_local()),
            available_backends: backend::AVAILABLE,
            cost: self.plan.cost,
            budget_left_after: self.plan.budget_left.as_ref().and_then(|l| l.clone().ok()),
            rate_counts: Some(&self.rate_counts),
            scoring: self.plan.scoring,
            ..RequestFacts::new(ask.principal, ask.backend, ask.checked, &self.tags)
        }
    }
}

/// How a decided request ends: released (with its answer, or none yet for a scoring request), denied or
/// waiting for the owner.
enum Outcome {
    Released {
        rule: String,
        answer: Option<Answer>,
    },
    Denied {
        rule: String,
        why: String,
    },
    Waiting {
        rule: String,
        why: String,
    },
}

impl Owner {
    /// Handle a new release request: decide it by policy and, if approved, release it, all in one
    /// transaction. Returns what the FI sees.
    pub fn submit(&mut self, ask: &Ask<'_>) -> Result<RequestView, Error> {
        let backend = backend::of(ask.backend);
        // DP parameters belong to a dp request only; any other backend ignores them (as it always has).
        let ask = &Ask {
            reason: ask.reason.trim(),
            dp: ask.dp.filter(|_| ask.backend == Kind::Dp),
            ..*ask
        };
        admit(ask, backend)?;
        let (policy, _) = self.policy()?;
        let (cache, signer, max_pending) =
            (self.cache.clone(), self.signer.clone(), self.max_pending);
        let tx = self.store.write()?;
        let pending = tx.pending_count(ask.principal)?;
        if pending >= max_pending {
            return Err(Error::Limit(format!(
                "{pending} requests are already waiting for the owner, the limit; wait for decisions first"
            )));
        }
        let mut facts = gather(&tx, &cache, &policy, ask, backend)?;
        if let Some((first, answer)) = stored_answer(&tx, backend, &facts)? {
            // Given again only if it is the answer the log recorded for this question.
            integrity::check_request(&tx, first)?;
            let id = record_stored(&tx, &signer, ask, &facts, first, &answer)?;
            return commit_view(tx, id);
        }
        gather_policy_facts(&tx, &cache, &policy, ask, &mut facts)?;
        // One view of the request for the policy, read once: the decision and the rate counters the record
        // stage keeps see the same facts (the same clock reading too).
        let policy_facts = facts.request_facts(ask);
        let decision = decide(&policy, &facts, &policy_facts);
        fail::fail_point!("release::after_decision");
        let outcome = answer(&tx, &cache, &policy, ask, backend, &facts, decision)?;
        fail::fail_point!("release::after_answer");
        let started_run = matches!(outcome, Outcome::Released { answer: None, .. });
        let id = record(&tx, &signer, &policy, ask, &facts, &policy_facts, outcome)?;
        fail::fail_point!("release::before_commit");
        let mut view = commit_view(tx, id)?;
        if started_run {
            view.why = Some("approved: start the run (one run per request)".into());
        }
        Ok(view)
    }

    /// The FI's view of one of its own requests, by the number it knows (its own sequence, 1, 2, 3, ...).
    pub fn request_view(&self, principal: &str, fi_request: u64) -> Result<RequestView, Error> {
        let not_found = || Error::NotFound(format!("request {fi_request}"));
        let id = self
            .store
            .request_by_fi(principal, fi_request)?
            .ok_or_else(not_found)?;
        let row = self
            .store
            .request(id, Some(principal))?
            .ok_or_else(not_found)?;
        // Its decision and answer are shown only as the log recorded them.
        integrity::check_request(&self.store, id)?;
        request_view(row)
    }

    /// Plan a DP release without charging anything: its plan (cost in the node's measure, accuracy, mechanism)
    /// and the measure's name.
    pub fn dp_plan(&self, checked: &Checked, params: &DpParams) -> Result<(Plan, String), Error> {
        // Planned from the metadata and the ledger alone, as a release would be: the data is not read. The
        // policy's small-count suppression changes a grouped sum's parts (and so its expected error), so the
        // preview reads the policy too; without a readable one it plans with none.
        let policy = self.policy().ok().map(|(p, _)| p);
        let ctx = Ctx {
            conn: &self.store,
            cache: &self.cache,
            checked,
            versions: &BTreeMap::new(),
            policy: policy.as_deref(),
        };
        let ask = Ask {
            principal: "",
            backend: Kind::Dp,
            reason: "",
            source: "",
            checked,
            dp: Some(params),
            scoring: None,
        };
        let plan = backend::of(Kind::Dp).plan(&ctx, &ask)?;
        Ok((plan, self.store.ledger()?.measure().name().to_string()))
    }
}

/// Stage 1: refuse what can never be released, before anything is stored.
pub fn admit(ask: &Ask<'_>, backend: &dyn Backend) -> Result<(), Error> {
    backend.admit(ask)?;
    if ask.reason.trim().is_empty() {
        return Err(Error::Refused(
            "every request needs a reason; say why you need this release".into(),
        ));
    }
    if ask.checked.datasets.is_empty() {
        return Err(Error::Refused(
            "this expression reads no data; there is nothing to release".into(),
        ));
    }
    Ok(())
}

/// Stage 2: the facts the decision rests on, read inside the write transaction.
fn gather(
    tx: &Tx<'_>,
    cache: &DatasetCache,
    policy: &Policy,
    ask: &Ask<'_>,
    backend: &dyn Backend,
) -> Result<Facts, Error> {
    let versions = versions_read(tx, ask.checked)?;
    let ctx = Ctx {
        conn: tx,
        cache,
        checked: ask.checked,
        versions: &versions,
        policy: Some(policy),
    };
    // A DP release is planned from public facts only: its cost, and whether the budgets allow it.
    let plan = backend.plan(&ctx, ask)?;
    let (lineage, description) = match ask.scoring {
        Some(spec) => (serde_json::to_string(spec)?, spec.describe()),
        None => (
            serde_json::to_string(&ask.checked.expr)?,
            render::describe(&ask.checked.expr),
        ),
    };
    let params = serde_json::to_string(&ask.dp)?;
    let key = release_key(
        ask.principal,
        ask.backend,
        &format!("{lineage}\n{params}"),
        &versions,
    );
    Ok(Facts {
        tags: BTreeMap::new(),
        already_released: false,
        rate_counts: BTreeMap::new(),
        versions,
        plan,
        key,
        lineage,
        description,
    })
}

/// Stage 2, continued (once no stored answer applies): what the policy's conditions read.
fn gather_policy_facts(
    tx: &Tx<'_>,
    cache: &DatasetCache,
    policy: &Policy,
    ask: &Ask<'_>,
    facts: &mut Facts,
) -> Result<(), Error> {
    facts.tags = tags_with(cache, tx, ask.checked)?;
    facts.already_released = tx.already_released(ask.principal, ask.checked)?;
    facts.rate_counts = rate_counts(tx, policy, ask.principal, None)?;
    Ok(())
}

/// The same question, already answered for this principal on the same data: its first request and answer.
fn stored_answer(
    tx: &Tx<'_>,
    backend: &dyn Backend,
    facts: &Facts,
) -> Result<Option<(u64, String)>, Error> {
    if !backend.reuses_answers() {
        return Ok(None);
    }
    tx.stored_answer(&facts.key)
}

/// Stage 3: the policy's decision; a DP request over a cap is refused at once, with the numbers.
fn decide(policy: &Policy, facts: &Facts, policy_facts: &RequestFacts<'_>) -> Decision {
    match &facts.plan.budget_left {
        Some(Err(e)) => Decision::Deny {
            rule: "budget".into(),
            reason: e.clone(),
        },
        _ => policy_decide(policy, policy_facts),
    }
}

/// Stage 4: an approved request is answered by its backend. An approved lineage that cannot be computed (the
/// data changed shape) is refused, with the error: the FI sees it only because the release was approved.
fn answer(
    tx: &Tx<'_>,
    cache: &DatasetCache,
    policy: &Policy,
    ask: &Ask<'_>,
    backend: &dyn Backend,
    facts: &Facts,
    decision: Decision,
) -> Result<Outcome, Error> {
    Ok(match decision {
        Decision::Approve { rule } => {
            let ctx = Ctx {
                conn: tx,
                cache,
                checked: ask.checked,
                versions: &facts.versions,
                policy: Some(policy),
            };
            match backend.answer(&ctx, &facts.plan) {
                Ok(answer) => Outcome::Released { rule, answer },
                Err(e) => Outcome::Denied {
                    why: format!("approved by rule `{rule}`, but it could not be computed: {e}"),
                    rule,
                },
            }
        }
        Decision::Deny { rule, reason } => Outcome::Denied { rule, why: reason },
        Decision::Ask { rule, why } => Outcome::Waiting { rule, why },
    })
}

/// Stage 5: record the request and how it ended, with its log entries, charge, release index and receipt.
fn record(
    tx: &Tx<'_>,
    signer: &NodeSigner,
    policy: &Policy,
    ask: &Ask<'_>,
    facts: &Facts,
    policy_facts: &RequestFacts<'_>,
    outcome: Outcome,
) -> Result<u64, Error> {
    let answer_text = match &outcome {
        Outcome::Released {
            answer: Some(a), ..
        } => Some(serde_json::to_string(a)?),
        _ => None,
    };
    let (state, rule, why, decided_by) = match &outcome {
        Outcome::Released { rule, .. } => {
            (RequestState::Approved, rule.as_str(), None, Some("policy"))
        }
        Outcome::Denied { rule, why } => (
            RequestState::Denied,
            rule.as_str(),
            Some(why.as_str()),
            Some("policy"),
        ),
        Outcome::Waiting { rule, why } => (
            RequestState::Pending,
            rule.as_str(),
            Some(why.as_str()),
            None,
        ),
    };
    let id = insert(
        tx,
        ask,
        facts,
        state,
        Some(rule),
        why,
        answer_text.as_deref(),
        decided_by,
    )?;
    log_request(tx, ask, facts, id)?;
    let decision = match &outcome {
        Outcome::Released { rule, .. } => {
            serde_json::json!({ "request": id, "action": "approve", "by": "policy", "rule": rule })
        }
        Outcome::Denied { rule, why } => {
            serde_json::json!({ "request": id, "action": "deny", "by": "policy", "rule": rule, "why": why })
        }
        Outcome::Waiting { rule, why } => {
            serde_json::json!({ "request": id, "action": "ask", "by": "policy", "rule": rule, "why": why })
        }
    };
    tx.append_log("decision", Some(ask.principal), &decision)?;
    if let Outcome::Released { answer, .. } = &outcome {
        record_approved(
            tx,
            signer,
            policy,
            policy_facts,
            id,
            ask,
            &facts.plan,
            answer.as_ref(),
        )?;
    }
    Ok(id)
}

/// What every approval records once its decision is logged, by the policy or by the owner: the release
/// counted against the policy's rate rules and, when it has an answer now (a scoring request's comes with its
/// run), the ledger charge, the release index, the `release` log entry and the signed receipt.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_approved(
    tx: &Tx<'_>,
    signer: &NodeSigner,
    policy: &Policy,
    policy_facts: &RequestFacts<'_>,
    id: u64,
    ask: &Ask<'_>,
    plan: &Plan,
    answer: Option<&Answer>,
) -> Result<(), Error> {
    record_rates(tx, policy, policy_facts, id)?;
    let Some(answer) = answer else {
        return Ok(());
    };
    backend::dp::charge(tx, id, plan)?;
    let cost_nanos = plan.cost.map_or(0, |c| c.nanos());
    record_release(
        tx,
        signer,
        id,
        ask.principal,
        ask.backend,
        ask.checked,
        answer,
        cost_nanos,
    )?;
    Ok(())
}

/// Record a request answered from the store: the same question on the same data was released before.
fn record_stored(
    tx: &Tx<'_>,
    signer: &NodeSigner,
    ask: &Ask<'_>,
    facts: &Facts,
    first: u64,
    answer_text: &str,
) -> Result<u64, Error> {
    // The FI knows the earlier request by its own number.
    let why = format!(
        "same question as request {}; stored answer given again",
        tx.fi_number(first)?
    );
    // Nothing is charged for a stored answer: the row keeps no DP cost.
    let id = insert(
        tx,
        &Ask { dp: None, ..*ask },
        facts,
        RequestState::Approved,
        Some("store"),
        Some(&why),
        Some(answer_text),
        Some("store"),
    )?;
    log_request(tx, ask, facts, id)?;
    let pos = tx.append_log(
        "decision",
        Some(ask.principal),
        &serde_json::json!({
            "request": id, "action": "approve", "by": "store", "same_as": first,
            "answer_sha256": integrity::sha256_hex(answer_text),
        }),
    )?;
    let answer: Answer = serde_json::from_str(answer_text)?;
    issue_receipt(
        tx,
        signer,
        id,
        ask.principal,
        ask.backend,
        &facts.lineage,
        &answer,
        pos,
        0,
    )?;
    Ok(id)
}

/// Insert the request row, with its DP facts.
#[allow(clippy::too_many_arguments)]
fn insert(
    tx: &Tx<'_>,
    ask: &Ask<'_>,
    facts: &Facts,
    state: RequestState,
    rule: Option<&str>,
    why: Option<&str>,
    answer: Option<&str>,
    decided_by: Option<&str>,
) -> Result<u64, Error> {
    let id = tx.insert_request(&NewRequest {
        principal: ask.principal,
        backend: ask.backend,
        reason: ask.reason,
        source: ask.source,
        lineage: &facts.lineage,
        checked: ask.checked,
        description: &facts.description,
        versions: &facts.versions,
        release_key: &facts.key,
        state,
        rule,
        why,
        answer,
        decided_by,
    })?;
    if let Some(params) = ask.dp {
        let cost = facts.plan.cost.map_or(0, |c| c.nanos());
        tx.set_dp_facts(id, params, cost, facts.plan.accuracy95)?;
        let items = facts.plan.items();
        if !items.is_empty() {
            tx.set_batch_items(id, &items)?;
        }
        // A denial by the budgets keeps their numbers, for the FI's view of it.
        if let (RequestState::Denied, Some("budget"), Some(e)) = (state, rule, &facts.plan.exceeded)
        {
            tx.set_budget_shortfall(id, &e.into())?;
        }
    }
    if let Some(spec) = ask.scoring {
        tx.store_scoring_spec(id, spec)?;
    }
    Ok(id)
}

/// The `request` log entry.
fn log_request(tx: &Tx<'_>, ask: &Ask<'_>, facts: &Facts, id: u64) -> Result<(), Error> {
    let lineage: serde_json::Value = serde_json::from_str(&facts.lineage)?;
    tx.append_log(
        "request",
        Some(ask.principal),
        &serde_json::json!({
            "request": id, "fi_request": tx.fi_number(id)?, "backend": ask.backend.name(), "reason": ask.reason,
            "description": facts.description, "lineage": lineage, "versions": facts.versions,
            "release_key": facts.key,
        }),
    )?;
    Ok(())
}

/// Commit, then read back what the FI sees.
fn commit_view(tx: Tx<'_>, id: u64) -> Result<RequestView, Error> {
    let row = tx
        .request(id, None)?
        .ok_or_else(|| Error::Internal(format!("request {id} vanished")))?;
    tx.commit()?;
    request_view(row)
}

/// The key under which the same question (principal, backend, lineage and parameters, dataset versions) finds
/// its stored answer.
fn release_key(
    principal: &str,
    backend: Kind,
    lineage: &str,
    versions: &BTreeMap<String, u64>,
) -> String {
    let versions = serde_json::to_string(versions).unwrap_or_default();
    hex(&hash_fields(
        b"",
        [principal, backend.name(), lineage, &versions],
    ))
}

/// For every rule with a `rate` condition, how many releases to `principal` counted against it in its window.
pub(crate) fn rate_counts(
    conn: &dyn Conn,
    policy: &Policy,
    principal: &str,
    except: Option<u64>,
) -> Result<BTreeMap<(String, duo_policies::Window), u64>, Error> {
    let mut out = BTreeMap::new();
    for rule in policy.rules() {
        for c in rule.conditions() {
            if let duo_policies::Condition::Rate(limit) = c {
                let since = crate::store::now_unix() - limit.per.seconds();
                let n = conn.rate_count(principal, rule.name(), since, except)?;
                out.insert((rule.name().to_string(), limit.per), n);
            }
        }
    }
    Ok(out)
}

/// Count a release against every rate-limited rule whose other conditions it meets.
fn record_rates(
    tx: &dyn Conn,
    policy: &Policy,
    facts: &RequestFacts<'_>,
    id: u64,
) -> Result<(), Error> {
    for (rule, _) in policy.rate_counters(facts) {
        // A batch is one release per question.
        for _ in 0..duo_policies::decision::releases(facts.checked) {
            tx.record_rate(facts.principal, &rule, id)?;
        }
    }
    Ok(())
}

/// Record a release: the release index, the `release` log entry, and the signed receipt bound to it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_release(
    tx: &dyn Conn,
    signer: &NodeSigner,
    id: u64,
    principal: &str,
    backend: Kind,
    checked: &Checked,
    answer: &Answer,
    cost_nanos: u64,
) -> Result<Receipt, Error> {
    tx.index_release(id, principal, checked)?;
    // The entry commits to the answer's bytes as the request row stores them.
    let answer_sha256 = integrity::sha256_hex(serde_json::to_string(answer)?);
    let pos = tx.append_log(
        "release",
        Some(principal),
        &serde_json::json!({
            "request": id, "backend": backend.name(), "answer": answer, "cost_nanos": cost_nanos,
            "answer_sha256": answer_sha256,
        }),
    )?;
    // The lineage as the request recorded it: the expression, or for a scoring request its attributes, reveal
    // and model commitment.
    let lineage = tx.stored_request(id)?.lineage;
    issue_receipt(
        tx, signer, id, principal, backend, &lineage, answer, pos, cost_nanos,
    )
}

/// Sign a receipt for an answer given out, bound to the log entry that recorded it, and keep it with the request.
#[allow(clippy::too_many_arguments)]
fn issue_receipt(
    tx: &dyn Conn,
    signer: &NodeSigner,
    id: u64,
    principal: &str,
    backend: Kind,
    lineage_json: &str,
    answer: &Answer,
    pos: LogPos,
    cost_nanos: u64,
) -> Result<Receipt, Error> {
    // The receipt names the request by the number its FI knows.
    let receipt = signer.sign(
        tx.fi_number(id)?,
        principal,
        backend.name(),
        lineage_json.to_string(),
        serde_json::to_string(answer)?,
        cost_nanos,
        pos.seq,
        pos.hash,
    );
    tx.set_receipt(id, &receipt)?;
    Ok(receipt)
}

/// Re-plan a stored request through its backend, as it would be planned now (for the owner's view and
/// approval).
pub(crate) fn plan_stored(
    cache: &DatasetCache,
    conn: &dyn Conn,
    row: &crate::store::RequestRow,
    stored: &crate::store::StoredRequest,
    policy: &Policy,
    dp: Option<&DpParams>,
    scoring: Option<&ScoringSpec>,
) -> Result<Plan, Error> {
    let ask = Ask {
        principal: &row.principal,
        backend: row.backend,
        reason: &row.reason,
        source: &row.source,
        checked: &stored.checked,
        dp,
        scoring,
    };
    let ctx = Ctx {
        conn,
        cache,
        checked: &stored.checked,
        versions: &stored.versions,
        policy: Some(policy),
    };
    backend::of(row.backend).plan(&ctx, &ask)
}
