//! Requests, decisions and releases on the owner's node.
//!
//! This is the one path every release takes, whether the owner node's session handles it or an owner CLI
//! command does: check the lineage, decide by policy (or by the owner), and release. A release (the re-checked
//! decision, the stored answer, the release index and the log entries) is one `BEGIN IMMEDIATE` transaction,
//! committed before the answer leaves the node.

use crate::dp::{self, DpParams};
use crate::error::Error;
use crate::receipt::{signing_key_path, NodeSigner, Receipt};
use crate::scoring::{self, ScoringSpec, ScoringView};
use crate::store::{self, append_log, hex, write_tx};
use duo_engine::{
    catalogue, check, evaluate, render, Answer, CheckContext, Checked, DataSource, Dataset,
    DatasetMeta, Expr, Limits, Type,
};
use duo_policies::{decide, Backend, Decision, Policy, RequestFacts, ScoringFacts};
use duo_policies::{Amount, Charge, Ledger};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The state of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for the owner.
    Pending,
    /// Released; the answer is attached.
    Approved,
    /// Refused; the reason is attached.
    Denied,
}

impl RequestState {
    fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
        }
    }

    fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "pending" => Ok(RequestState::Pending),
            "approved" => Ok(RequestState::Approved),
            "denied" => Ok(RequestState::Denied),
            other => Err(Error::Internal(format!("unknown request state {other}"))),
        }
    }
}

/// What the FI may see of one of its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RequestView {
    /// Request id.
    pub id: u64,
    /// Current state.
    pub state: RequestState,
    /// Backend asked for.
    pub backend: Backend,
    /// The FI's stated reason.
    pub reason: String,
    /// The lineage in plain words.
    pub description: String,
    /// The answer, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// Why it was denied, or why it waits for the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Who decided: `policy`, `owner`, or `store` (the same question was answered before and the stored answer
    /// was given again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The static type of the answer (from the published metadata, never from the data).
    pub ty: Type,
    /// The node's signed receipt for the answer (approved requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// For DP requests: the privacy cost (charged once approved), in the node's measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// For DP requests: half-width of a 95% interval around the exact value, from public parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy95: Option<f64>,
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

/// What the owner sees of a DP request before deciding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpView {
    /// What it would cost, in the node's measure.
    pub cost: String,
    /// The node's measure (`epsilon` or `rho`).
    pub measure: String,
    /// The smallest remaining budget after it, or why the budgets do not allow it.
    pub budget_left_after: Result<String, String>,
    /// Half-width of a 95% interval around the exact value, if known.
    pub accuracy95: Option<f64>,
    /// The noise mechanism.
    pub mechanism: String,
    /// What one unit of privacy protects in the data it reads, in words.
    pub protects: String,
}

/// Everything the owner sees before deciding a pending request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingView {
    /// Request id.
    pub id: u64,
    /// Who asks.
    pub principal: String,
    /// Backend.
    pub backend: Backend,
    /// The FI's reason.
    pub reason: String,
    /// The lineage in plain words.
    pub description: String,
    /// The expression as the FI wrote it (or as the pointer API built it).
    pub source: String,
    /// Why it came to the owner.
    pub why: String,
    /// The exact value that approving would release (plaintext), or the evaluation error.
    pub value: Result<Answer, String>,
    /// Earlier releases touching the same columns.
    pub earlier: Vec<EarlierRelease>,
    /// Whether the datasets changed since the request was made.
    pub data_changed: bool,
    /// A token over everything above and the policy; `duo owner approve ID --seen TOKEN` fails if it changed.
    pub token: String,
    /// The static type of the value.
    pub ty: Type,
    /// For a DP request: its cost, the budget left after it, and the expected error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpView>,
    /// For a scoring (`2pc`) request: the attributes used, what a run reveals to whom, the FI's model
    /// commitment, and the runs and bits this FI has used in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring: Option<ScoringView>,
    /// When the request was made.
    pub created_at: String,
}

/// Caches of immutable things, shared by the sessions of a node: dataset versions and their metadata by
/// (name, version), and the parsed policy by the hash of its text. A dataset version never changes once stored,
/// and the policy file is read again for every decision (only parsing is skipped when its text is unchanged), so
/// these caches can never contradict the store or the file.
#[derive(Debug, Clone, Default)]
pub struct DatasetCache(Arc<Mutex<CacheInner>>);

#[derive(Debug, Default)]
struct CacheInner {
    data: HashMap<(String, u64), Arc<Dataset>>,
    metas: HashMap<(String, u64), Arc<DatasetMeta>>,
    policy: Option<(String, Arc<Policy>)>,
}

impl DatasetCache {
    fn get(&self, conn: &Connection, name: &str, version: u64) -> Result<Arc<Dataset>, Error> {
        let key = (name.to_string(), version);
        if let Some(ds) = self.0.lock().map_err(poisoned)?.data.get(&key) {
            return Ok(ds.clone());
        }
        let ds = Arc::new(store::load_dataset(conn, name, version)?);
        let mut inner = self.0.lock().map_err(poisoned)?;
        if inner.data.len() > 64 {
            inner.data.clear();
        }
        inner.data.insert(key, ds.clone());
        Ok(ds)
    }

    /// The published metadata of the current datasets.
    fn metas(&self, conn: &Connection) -> Result<BTreeMap<String, DatasetMeta>, Error> {
        let versions = store::versions(conn)?;
        let mut out = BTreeMap::new();
        for (name, v) in versions {
            let key = (name.clone(), v);
            let cached = self.0.lock().map_err(poisoned)?.metas.get(&key).cloned();
            let meta = match cached {
                Some(m) => m,
                None => {
                    let m = Arc::new(store::dataset_meta(conn, &name, v)?);
                    let mut inner = self.0.lock().map_err(poisoned)?;
                    if inner.metas.len() > 1024 {
                        inner.metas.clear();
                    }
                    inner.metas.insert(key, m.clone());
                    m
                }
            };
            out.insert(name, (*meta).clone());
        }
        Ok(out)
    }

    /// The policy for this text, parsed once per distinct text.
    fn policy(&self, text: &str) -> Result<(Arc<Policy>, String), Error> {
        let hash = duo_policies::policy_hash(text);
        if let Some((h, p)) = &self.0.lock().map_err(poisoned)?.policy {
            if *h == hash {
                return Ok((p.clone(), hash));
            }
        }
        let policy = Arc::new(Policy::parse(text)?);
        self.0.lock().map_err(poisoned)?.policy = Some((hash.clone(), policy.clone()));
        Ok((policy, hash))
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("dataset cache lock poisoned".into())
}

struct Loaded(BTreeMap<String, Arc<Dataset>>);

impl DataSource for Loaded {
    fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.0.get(name).map(|d| d.as_ref())
    }
}

/// The owner's side of requests: the store, the policy file and a cache of immutable dataset versions.
pub struct Owner {
    dir: PathBuf,
    /// The open database.
    pub conn: Connection,
    cache: DatasetCache,
    limits: Limits,
    signer: Arc<NodeSigner>,
    max_pending: u64,
}

/// Path of the policy file in an owner directory.
pub fn policy_path(owner_dir: &Path) -> PathBuf {
    owner_dir.join("policy.toml")
}

impl Owner {
    /// Open the owner's store in `dir` (which must have been initialised).
    pub fn open(dir: &Path, sync: store::Sync, cache: DatasetCache) -> Result<Owner, Error> {
        Ok(Owner {
            dir: dir.to_path_buf(),
            conn: store::open(dir, sync)?,
            signer: Arc::new(NodeSigner::load_or_create(&signing_key_path(dir))?),
            cache,
            limits: Limits::default(),
            max_pending: u64::MAX,
        })
    }

    /// Refuse new requests from a principal that already has this many waiting for the owner.
    pub fn with_max_pending(mut self, max: u64) -> Owner {
        self.max_pending = max;
        self
    }

    /// The owner directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Read the policy file (every time: it is the record) and parse it (once per distinct text); returns the
    /// policy and the hash of its text.
    pub fn policy(&self) -> Result<(Arc<Policy>, String), Error> {
        let path = policy_path(&self.dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::NotFound(format!(
                "policy file {}: {e} (run `duo owner init` to write the default policy)",
                path.display()
            ))
        })?;
        self.cache.policy(&text)
    }

    /// The node's receipt signer.
    pub(crate) fn signer(&self) -> Arc<NodeSigner> {
        self.signer.clone()
    }

    /// Evaluate a checked lineage on the current dataset versions.
    pub(crate) fn evaluate_now(&self, checked: &Checked) -> Result<Answer, Error> {
        let versions = Self::versions_read(&self.conn, checked)?;
        Self::evaluate_at(&self.cache, &self.conn, checked, &versions)
    }

    /// Whether the policy, as it is now, refuses a scoring run of an approved request about to start: any deny
    /// rule that matches it now, a backend no longer available, or the `[scoring]` limits. (Not the whole
    /// first-match decision: the request's own approval was counted in the `rate` conditions, so re-deciding
    /// from scratch would refuse what the policy approved.)
    pub(crate) fn scoring_denied(
        &self,
        principal: &str,
        checked: &Checked,
        spec: &ScoringSpec,
    ) -> Result<Option<(String, String)>, Error> {
        let (policy, _) = self.policy()?;
        let tags = Self::tags_with(&self.cache, &self.conn, checked)?;
        let counts = rate_counts(&self.conn, &policy, principal)?;
        let used = scoring::scoring_use(&self.conn, principal, policy.scoring_limits())?;
        let facts = RequestFacts {
            now: Some(chrono::Local::now().naive_local()),
            available_backends: AVAILABLE_BACKENDS,
            rate_counts: Some(&counts),
            scoring: Some(ScoringFacts {
                reveal: spec.reveal,
                used,
            }),
            ..RequestFacts::new(principal, Backend::TwoPc, checked, &tags)
        };
        if let Some(rule) = policy
            .rules()
            .iter()
            .find(|r| r.action() == duo_policies::Action::Deny && r.matches(&facts))
        {
            let reason = rule.reason().unwrap_or("denied by the owner's policy");
            return Ok(Some((rule.name().to_string(), reason.to_string())));
        }
        if !AVAILABLE_BACKENDS.contains(&Backend::TwoPc) {
            return Ok(Some((
                "backend".into(),
                "backend `2pc` is not available on this node".into(),
            )));
        }
        Ok(policy
            .scoring_limits()
            .check(&used, spec.reveal)
            .err()
            .map(|e| ("scoring-limit".to_string(), e.to_string())))
    }

    /// Type-check a lineage against the current published metadata.
    pub fn check(&self, expr: &Expr) -> Result<Checked, Error> {
        let metas = self.cache.metas(&self.conn)?;
        let ctx = CheckContext {
            metas: &metas,
            today: chrono::Utc::now().date_naive(),
            limits: self.limits,
        };
        Ok(check(expr, &ctx)?)
    }

    fn tags_with(
        cache: &DatasetCache,
        conn: &Connection,
        checked: &Checked,
    ) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let metas = cache.metas(conn)?;
        Ok(checked
            .datasets
            .iter()
            .map(|d| {
                (
                    d.clone(),
                    metas.get(d).map(|m| m.tags.clone()).unwrap_or_default(),
                )
            })
            .collect())
    }

    fn versions_read(conn: &Connection, checked: &Checked) -> Result<BTreeMap<String, u64>, Error> {
        let all = store::versions(conn)?;
        checked
            .datasets
            .iter()
            .map(|d| {
                all.get(d)
                    .map(|v| (d.clone(), *v))
                    .ok_or_else(|| Error::NotFound(format!("dataset `{d}`")))
            })
            .collect()
    }

    fn evaluate_at(
        cache: &DatasetCache,
        conn: &Connection,
        checked: &Checked,
        versions: &BTreeMap<String, u64>,
    ) -> Result<Answer, Error> {
        let mut loaded = BTreeMap::new();
        for (name, v) in versions {
            loaded.insert(name.clone(), cache.get(conn, name, *v)?);
        }
        Ok(evaluate(&checked.expr, &Loaded(loaded))?)
    }

    /// Handle a new release request from `principal`: decide it by policy and, if approved, release it, all in
    /// one transaction. Returns what the FI sees.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        principal: &str,
        backend: Backend,
        reason: &str,
        source: &str,
        checked: &Checked,
        dp_params: Option<&DpParams>,
        scoring: Option<&ScoringSpec>,
    ) -> Result<RequestView, Error> {
        match (backend, scoring) {
            (Backend::TwoPc, None) => {
                return Err(Error::Refused(
                    "a 2pc request is a scoring request: name the model's attributes and what it reveals (`duo fi score`)"
                        .into(),
                ))
            }
            (Backend::TwoPc, Some(spec)) => spec.validate()?,
            (_, Some(_)) => {
                return Err(Error::Refused(
                    "only backend 2pc takes a scoring model".into(),
                ))
            }
            _ => {}
        }
        let dp_params =
            match (backend, dp_params) {
                (Backend::Dp, Some(p)) => Some(p.clone()),
                (Backend::Dp, None) => return Err(Error::Refused(
                    "a dp request states its cost: --epsilon, --rho, or a target accuracy --alpha"
                        .into(),
                )),
                _ => None,
            };
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::Refused(
                "every request needs a reason; say why you need this release".into(),
            ));
        }
        if checked.datasets.is_empty() {
            return Err(Error::Refused(
                "this expression reads no data; there is nothing to release".into(),
            ));
        }
        let (policy, _) = self.policy()?;
        let description = match scoring {
            Some(spec) => spec.describe(),
            None => render::describe(&checked.expr),
        };
        // What the request is about, as the log and the receipts record it: the resolved expression, or for a
        // scoring request its attributes, reveal and model commitment.
        let (lineage, lineage_value) = match scoring {
            Some(spec) => (serde_json::to_string(spec)?, serde_json::to_value(spec)?),
            None => (
                serde_json::to_string(&checked.expr)?,
                serde_json::to_value(&checked.expr)?,
            ),
        };
        let cache = self.cache.clone();
        let signer = self.signer.clone();
        let max_pending = self.max_pending;
        let tx = write_tx(&mut self.conn)?;
        let pending: i64 = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM requests WHERE principal = ?1 AND state = 'pending'",
            )?
            .query_row([principal], |r| r.get(0))?;
        if pending as u64 >= max_pending {
            return Err(Error::Limit(format!(
                "{pending} requests are already waiting for the owner, the limit; wait for decisions first"
            )));
        }
        let versions = Self::versions_read(&tx, checked)?;
        // A DP release is planned from public facts only: its cost, and whether the budgets allow it.
        let dp_state = match &dp_params {
            Some(params) => {
                let (ledger, plan, charge) = plan_charge(&cache, &tx, checked, principal, params)?;
                let left = ledger.check(&charge);
                Some((ledger, plan, charge, left))
            }
            None => None,
        };
        let dp_cost = dp_state
            .as_ref()
            .map(|(_, plan, _, _)| plan.cost.to_string());
        let dp_accuracy = dp_state
            .as_ref()
            .and_then(|(_, plan, _, _)| plan.accuracy95);
        let params_json = serde_json::to_string(&dp_params)?;
        let key = release_key(
            principal,
            backend,
            &format!("{lineage}\n{params_json}"),
            &versions,
        );
        let now = store::now_text();
        let insert = |state: RequestState,
                      rule: Option<&str>,
                      why: Option<&str>,
                      answer: Option<&str>,
                      decided_by: Option<&str>|
         -> Result<u64, Error> {
            tx.prepare_cached(
                "INSERT INTO requests (principal, backend, reason, source, lineage, checked, description, versions,
                     release_key, state, rule, why, answer, decided_by, created_at, decided_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?
            .execute(params![
                    principal,
                    backend.name(),
                    reason,
                    source,
                    lineage,
                    serde_json::to_string(checked)?,
                    description,
                    serde_json::to_string(&versions)?,
                    key,
                    state.as_str(),
                    rule,
                    why,
                    answer,
                    decided_by,
                    now,
                    (state != RequestState::Pending).then_some(&now),
                ])?;
            Ok(tx.last_insert_rowid() as u64)
        };
        let log_request = |id: u64| -> Result<(), Error> {
            append_log(
                &tx,
                "request",
                Some(principal),
                &serde_json::json!({
                    "request": id, "backend": backend.name(), "reason": reason,
                    "description": description, "lineage": lineage_value, "versions": versions,
                }),
            )?;
            Ok(())
        };

        let log_policy_approval = |id: u64, rule: &str| -> Result<(), Error> {
            append_log(
                &tx,
                "decision",
                Some(principal),
                &serde_json::json!({ "request": id, "action": "approve", "by": "policy", "rule": rule }),
            )?;
            Ok(())
        };

        // The same question, already answered for this principal on the same data: give the stored answer.
        let stored: Option<(u64, String)> = if backend == Backend::TwoPc {
            // Every scoring run is its own computation (the FI's model is its private input): never reused.
            None
        } else {
            tx.prepare_cached(
                "SELECT id, answer FROM requests WHERE release_key = ?1 AND state = 'approved'
                 AND answer IS NOT NULL ORDER BY id LIMIT 1",
            )?
            .query_row([&key], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .optional()?
        };
        if let Some((first, answer_text)) = stored {
            let why = format!("same question as request {first}; stored answer given again");
            let id = insert(
                RequestState::Approved,
                Some("store"),
                Some(&why),
                Some(&answer_text),
                Some("store"),
            )?;
            log_request(id)?;
            let pos = append_log(
                &tx,
                "decision",
                Some(principal),
                &serde_json::json!({ "request": id, "action": "approve", "by": "store", "same_as": first }),
            )?;
            let answer: Answer = serde_json::from_str(&answer_text)?;
            let receipt = issue_receipt(
                &tx,
                &self.signer,
                id,
                principal,
                backend,
                &lineage,
                &answer,
                pos,
                0,
            )?;
            tx.commit()?;
            return Ok(RequestView {
                id,
                state: RequestState::Approved,
                backend,
                reason: reason.to_string(),
                description,
                answer: Some(answer),
                why: Some(why),
                decided_by: Some("store".into()),
                ty: checked.ty.clone(),
                receipt: Some(receipt),
                cost: dp_cost.clone(),
                accuracy95: dp_accuracy,
            });
        }

        let tags = Self::tags_with(&cache, &tx, checked)?;
        let already_released = already_released(&tx, principal, checked)?;
        let (cost, left_after) = match &dp_state {
            Some((_, plan, _, Ok(left))) => (Some(plan.cost), Some(*left)),
            Some((_, plan, _, Err(_))) => (Some(plan.cost), None),
            None => (None, None),
        };
        let counts = rate_counts(&tx, &policy, principal)?;
        let scoring_facts = match scoring {
            Some(spec) => Some(ScoringFacts {
                reveal: spec.reveal,
                used: scoring::scoring_use(&tx, principal, policy.scoring_limits())?,
            }),
            None => None,
        };
        let facts = RequestFacts {
            already_released,
            now: Some(chrono::Local::now().naive_local()),
            available_backends: AVAILABLE_BACKENDS,
            cost,
            budget_left_after: left_after,
            rate_counts: Some(&counts),
            scoring: scoring_facts,
            ..RequestFacts::new(principal, backend, checked, &tags)
        };
        let decision = match &dp_state {
            // Over a cap: refused at once, with the numbers.
            Some((_, _, _, Err(e))) => Decision::Deny {
                rule: "budget".into(),
                reason: e.to_string(),
            },
            _ => decide(&policy, &facts),
        };
        fail::fail_point!("release::after_decision");
        // An approved lineage that cannot be computed (the data changed shape) is recorded as refused, with the
        // error, in the same transaction; the FI sees the error only because the release was approved.
        if let (Some(spec), Decision::Approve { rule }) = (scoring, &decision) {
            // An approved scoring request releases nothing yet: it lets the FI start one run.
            let id = insert(
                RequestState::Approved,
                Some(rule),
                None,
                None,
                Some("policy"),
            )?;
            scoring::store_spec(&tx, id, spec)?;
            log_request(id)?;
            log_policy_approval(id, rule)?;
            record_rates(&tx, &policy, &facts)?;
            tx.commit()?;
            return Ok(RequestView {
                id,
                state: RequestState::Approved,
                backend,
                reason: reason.to_string(),
                description,
                answer: None,
                why: Some("approved: start the run (one run per request)".into()),
                decided_by: Some("policy".into()),
                ty: checked.ty.clone(),
                receipt: None,
                cost: None,
                accuracy95: None,
            });
        }
        let decision = match decision {
            Decision::Approve { rule } => {
                let answered = match &dp_state {
                    Some((ledger, plan, charge, _)) => {
                        charge_and_release(&cache, &tx, ledger.clone(), plan, charge, &versions)
                    }
                    None => Self::evaluate_at(&cache, &tx, checked, &versions),
                };
                match answered {
                    Ok(answer) => Ok((rule, answer)),
                    Err(e) => Err(Decision::Deny {
                        reason: format!(
                            "approved by rule `{rule}`, but it could not be computed: {e}"
                        ),
                        rule,
                    }),
                }
            }
            other => Err(other),
        };
        fail::fail_point!("release::after_answer");
        let view = match decision {
            Ok((rule, answer)) => {
                let answer_text = serde_json::to_string(&answer)?;
                let id = insert(
                    RequestState::Approved,
                    Some(&rule),
                    None,
                    Some(&answer_text),
                    Some("policy"),
                )?;
                log_request(id)?;
                log_policy_approval(id, &rule)?;
                let cost_nanos = cost.map_or(0, |c| c.nanos());
                set_dp_facts(&tx, id, &dp_params, cost_nanos, dp_accuracy)?;
                record_rates(&tx, &policy, &facts)?;
                if let Some((_, _, charge, _)) = &dp_state {
                    record_charge(&tx, id, charge)?;
                }
                let receipt = record_release(
                    &tx, &signer, id, principal, backend, checked, &answer, cost_nanos,
                )?;
                RequestView {
                    id,
                    state: RequestState::Approved,
                    backend,
                    reason: reason.to_string(),
                    description,
                    answer: Some(answer),
                    why: None,
                    decided_by: Some("policy".into()),
                    ty: checked.ty.clone(),
                    receipt: Some(receipt),
                    cost: dp_cost.clone(),
                    accuracy95: dp_accuracy,
                }
            }
            Err(decision) => {
                let (state, rule, why, action, by) = match decision {
                    Decision::Deny { rule, reason } => {
                        (RequestState::Denied, rule, reason, "deny", Some("policy"))
                    }
                    Decision::Ask { rule, why } => (RequestState::Pending, rule, why, "ask", None),
                    Decision::Approve { .. } => {
                        return Err(Error::Internal("approval without an answer".into()))
                    }
                };
                let id = insert(state, Some(&rule), Some(&why), None, by)?;
                if let Some(spec) = scoring {
                    scoring::store_spec(&tx, id, spec)?;
                }
                set_dp_facts(
                    &tx,
                    id,
                    &dp_params,
                    cost.map_or(0, |c| c.nanos()),
                    dp_accuracy,
                )?;
                log_request(id)?;
                append_log(
                    &tx,
                    "decision",
                    Some(principal),
                    &serde_json::json!({ "request": id, "action": action, "by": "policy", "rule": rule, "why": why }),
                )?;
                RequestView {
                    id,
                    state,
                    backend,
                    reason: reason.to_string(),
                    description,
                    answer: None,
                    why: Some(match state {
                        RequestState::Pending => format!("waiting for the owner: {why}"),
                        _ => why,
                    }),
                    decided_by: by.map(str::to_string),
                    ty: checked.ty.clone(),
                    receipt: None,
                    cost: dp_cost.clone(),
                    accuracy95: dp_accuracy,
                }
            }
        };
        fail::fail_point!("release::before_commit");
        tx.commit()?;
        Ok(view)
    }

    /// Plan a DP release without charging anything: its cost (in the node's measure, named) and accuracy.
    pub fn dp_plan(
        &self,
        checked: &Checked,
        params: &DpParams,
    ) -> Result<(dp::DpPlan, String), Error> {
        let ledger = load_ledger(&self.conn)?;
        let metas = self.cache.metas(&self.conn)?;
        let plan = dp::plan(checked, &metas, ledger.measure(), params)?;
        Ok((plan, ledger.measure().name().to_string()))
    }

    /// The FI's view of one of its own requests.
    pub fn request_view(&self, principal: &str, id: u64) -> Result<RequestView, Error> {
        let row = self
            .conn
            .query_row(
                "SELECT backend, reason, description, state, why, answer, decided_by, checked, receipt, cost, accuracy
                 FROM requests
                 WHERE id = ?1 AND principal = ?2",
                params![id as i64, principal],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<i64>>(9)?,
                        r.get::<_, Option<f64>>(10)?,
                    ))
                },
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        let (
            backend,
            reason,
            description,
            state,
            why,
            answer,
            decided_by,
            checked,
            receipt,
            cost,
            accuracy95,
        ) = row;
        let checked: Checked = serde_json::from_str(&checked)?;
        let state = RequestState::parse(&state)?;
        Ok(RequestView {
            id,
            state,
            backend: parse_backend(&backend)?,
            reason,
            description,
            answer: answer.map(|a| serde_json::from_str(&a)).transpose()?,
            why: match state {
                RequestState::Pending => why.map(|w| format!("waiting for the owner: {w}")),
                _ => why,
            },
            decided_by,
            ty: checked.ty,
            receipt: receipt.map(|r| serde_json::from_str(&r)).transpose()?,
            cost: cost.map(|c| Amount::from_nanos(c as u64).to_string()),
            accuracy95,
        })
    }

    /// Ids of the pending requests, oldest first.
    pub fn pending_ids(&self) -> Result<Vec<u64>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM requests WHERE state = 'pending' ORDER BY id")?;
        let ids = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(ids
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|i| i as u64)
            .collect())
    }

    /// Everything the owner needs to decide a pending request, computed now.
    pub fn pending_view(&self, id: u64) -> Result<PendingView, Error> {
        pending_view_in(self, &self.conn, id)
    }

    /// The owner approves a pending request. With `seen`, the approval fails with fresh facts if anything the
    /// owner was shown has changed since; the policy's deny rules are re-run either way.
    pub fn approve(&mut self, id: u64, seen: Option<&str>) -> Result<RequestView, Error> {
        let (policy, _) = self.policy()?;
        // Take the connection out of self so the transaction and the cache can be used together.
        let mut conn = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        let result = (|| {
            let tx = write_tx(&mut conn)?;
            let view = pending_view_in(self, &tx, id)?;
            if let Some(seen) = seen {
                if seen != view.token {
                    return Err(Error::Stale {
                        why: "the policy, the data, the value or the earlier releases changed"
                            .into(),
                        fresh: Box::new(view),
                    });
                }
            }
            if view.data_changed {
                return Err(Error::Stale {
                    why: "a dataset this request reads was reloaded since it was made; the FI must ask again"
                        .into(),
                    fresh: Box::new(view),
                });
            }
            let (checked, versions) = stored_checked(&tx, id)?;
            let tags = Self::tags_with(&self.cache, &tx, &checked)?;
            let already = already_released(&tx, &view.principal, &checked)?;
            // A DP request is re-planned and its budgets re-checked now: the budget may have moved.
            let dp_state = match &view.dp {
                Some(_) => {
                    let params = stored_dp_params(&tx, id)?;
                    let (ledger, plan, charge) =
                        plan_charge(&self.cache, &tx, &checked, &view.principal, &params)?;
                    if let Err(e) = ledger.check(&charge) {
                        return Err(Error::Stale {
                            why: format!("the budget no longer allows it: {e}"),
                            fresh: Box::new(view),
                        });
                    }
                    Some((ledger, plan, charge))
                }
                None => None,
            };
            let counts = rate_counts(&tx, &policy, &view.principal)?;
            let spec = scoring::stored_spec(&tx, id)?;
            let scoring_facts = match &spec {
                Some(spec) => Some(ScoringFacts {
                    reveal: spec.reveal,
                    used: scoring::scoring_use(&tx, &view.principal, policy.scoring_limits())?,
                }),
                None => None,
            };
            let facts = RequestFacts {
                already_released: already,
                now: Some(chrono::Local::now().naive_local()),
                available_backends: AVAILABLE_BACKENDS,
                cost: dp_state.as_ref().map(|(_, plan, _)| plan.cost),
                rate_counts: Some(&counts),
                scoring: scoring_facts,
                ..RequestFacts::new(&view.principal, view.backend, &checked, &tags)
            };
            if let Decision::Deny { rule, reason } = decide(&policy, &facts) {
                return Err(Error::Stale {
                    why: format!("the policy now denies this request (rule `{rule}`: {reason})"),
                    fresh: Box::new(view),
                });
            }
            if spec.is_some() {
                // The owner lets the FI start one run; the outcome is released when the run ends.
                owner_approved(&tx, id, None, &view)?;
                record_rates(&tx, &policy, &facts)?;
                tx.commit()?;
                return Ok(RequestView {
                    id,
                    state: RequestState::Approved,
                    backend: view.backend,
                    reason: view.reason,
                    description: view.description,
                    answer: None,
                    why: Some("approved: the FI may start the run (one run per request)".into()),
                    decided_by: Some("owner".into()),
                    ty: checked.ty.clone(),
                    receipt: None,
                    cost: None,
                    accuracy95: None,
                });
            }
            let dp_cost = dp_state.as_ref().map(|(_, plan, _)| plan.cost.to_string());
            let dp_accuracy = dp_state.as_ref().and_then(|(_, plan, _)| plan.accuracy95);
            let (answer, cost_nanos) = match &dp_state {
                Some((ledger, plan, charge)) => (
                    charge_and_release(&self.cache, &tx, ledger.clone(), plan, charge, &versions)?,
                    plan.cost.nanos(),
                ),
                // `view.value` was computed inside this transaction, so it is what the data says now.
                None => match &view.value {
                    Ok(a) => (a.clone(), 0),
                    Err(e) => return Err(Error::Refused(format!("cannot release: {e}"))),
                },
            };
            owner_approved(&tx, id, Some(&serde_json::to_string(&answer)?), &view)?;
            if let Some((_, _, charge)) = &dp_state {
                record_charge(&tx, id, charge)?;
            }
            record_rates(&tx, &policy, &facts)?;
            let receipt = record_release(
                &tx,
                &self.signer,
                id,
                &view.principal,
                view.backend,
                &checked,
                &answer,
                cost_nanos,
            )?;
            tx.commit()?;
            Ok(RequestView {
                id,
                state: RequestState::Approved,
                backend: view.backend,
                reason: view.reason,
                description: view.description,
                answer: Some(answer),
                why: None,
                decided_by: Some("owner".into()),
                ty: checked.ty.clone(),
                receipt: Some(receipt),
                cost: dp_cost.clone(),
                accuracy95: dp_accuracy,
            })
        })();
        self.conn = conn;
        result
    }

    /// The owner denies a pending request, with a reason the FI will see.
    pub fn deny(&mut self, id: u64, reason: &str) -> Result<RequestView, Error> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::Refused(
                "give a reason; the FI sees it with the denial".into(),
            ));
        }
        let tx = write_tx(&mut self.conn)?;
        let principal: String = tx
            .query_row(
                "SELECT principal FROM requests WHERE id = ?1 AND state = 'pending'",
                [id as i64],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::Refused(format!("request {id} is not pending")))?;
        tx.execute(
            "UPDATE requests SET state = 'denied', why = ?2, decided_by = 'owner', decided_at = ?3, rule = 'owner'
             WHERE id = ?1",
            params![id as i64, reason, store::now_text()],
        )?;
        append_log(
            &tx,
            "decision",
            Some(&principal),
            &serde_json::json!({ "request": id, "action": "deny", "by": "owner", "reason": reason }),
        )?;
        tx.commit()?;
        self.request_view(&principal, id)
    }
}

fn parse_backend(s: &str) -> Result<Backend, Error> {
    s.parse::<Backend>()
        .map_err(|_| Error::Internal(format!("unknown backend {s}")))
}

fn release_key(
    principal: &str,
    backend: Backend,
    lineage: &str,
    versions: &BTreeMap<String, u64>,
) -> String {
    let mut h = Sha256::new();
    for part in [
        principal,
        backend.name(),
        lineage,
        &serde_json::to_string(versions).unwrap_or_default(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

fn already_released(conn: &Connection, principal: &str, checked: &Checked) -> Result<bool, Error> {
    for c in &checked.catalogue {
        let n: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM release_attributes WHERE principal = ?1 AND attribute = ?2 AND window_end = ?3",
            )?
            .query_row(params![principal, c.name, c.window_end.to_string()], |r| r.get(0))?;
        if n > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn record_release(
    tx: &Connection,
    signer: &NodeSigner,
    id: u64,
    principal: &str,
    backend: Backend,
    checked: &Checked,
    answer: &Answer,
    cost_nanos: u64,
) -> Result<Receipt, Error> {
    for (dataset, col) in &checked.columns {
        tx.execute(
            "INSERT INTO release_columns (request_id, dataset, col) VALUES (?1, ?2, ?3)",
            params![id as i64, dataset, col],
        )?;
    }
    for c in &checked.catalogue {
        tx.execute(
            "INSERT INTO release_attributes (request_id, principal, attribute, window_end) VALUES (?1, ?2, ?3, ?4)",
            params![id as i64, principal, c.name, c.window_end.to_string()],
        )?;
    }
    let pos = append_log(
        tx,
        "release",
        Some(principal),
        &serde_json::json!({ "request": id, "backend": backend.name(), "answer": answer, "cost_nanos": cost_nanos }),
    )?;
    // The lineage as the request recorded it: the expression, or for a scoring request its attributes, reveal
    // and model commitment.
    let lineage: String = tx
        .prepare_cached("SELECT lineage FROM requests WHERE id = ?1")?
        .query_row([id as i64], |r| r.get(0))?;
    issue_receipt(
        tx, signer, id, principal, backend, &lineage, answer, pos, cost_nanos,
    )
}

/// Sign a receipt for an answer given out, bound to the log entry that recorded it, and keep it with the request.
#[allow(clippy::too_many_arguments)]
fn issue_receipt(
    tx: &Connection,
    signer: &NodeSigner,
    id: u64,
    principal: &str,
    backend: Backend,
    lineage_json: &str,
    answer: &Answer,
    pos: store::LogPos,
    cost_nanos: u64,
) -> Result<Receipt, Error> {
    let receipt = signer.sign(
        id,
        principal,
        backend.name(),
        lineage_json.to_string(),
        serde_json::to_string(answer)?,
        cost_nanos,
        pos.seq,
        pos.hash,
    );
    tx.prepare_cached("UPDATE requests SET receipt = ?2 WHERE id = ?1")?
        .execute(params![id as i64, serde_json::to_string(&receipt)?])?;
    Ok(receipt)
}

fn stored_checked(conn: &Connection, id: u64) -> Result<(Checked, BTreeMap<String, u64>), Error> {
    let (checked, versions): (String, String) = conn.query_row(
        "SELECT checked, versions FROM requests WHERE id = ?1",
        [id as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((
        serde_json::from_str(&checked)?,
        serde_json::from_str(&versions)?,
    ))
}

/// Marks a pending request approved by the owner (with its answer, except a scoring request's, which has none
/// until its run) and logs the decision with the token of what the owner saw.
fn owner_approved(
    tx: &Connection,
    id: u64,
    answer: Option<&str>,
    view: &PendingView,
) -> Result<(), Error> {
    let changed = tx.execute(
        "UPDATE requests SET state = 'approved', answer = ?2, decided_by = 'owner', decided_at = ?3,
             rule = 'owner', why = NULL
         WHERE id = ?1 AND state = 'pending'",
        params![id as i64, answer, store::now_text()],
    )?;
    if changed != 1 {
        return Err(Error::Refused(format!("request {id} is no longer pending")));
    }
    append_log(
        tx,
        "decision",
        Some(&view.principal),
        &serde_json::json!({ "request": id, "action": "approve", "by": "owner", "token": view.token }),
    )?;
    Ok(())
}

fn pending_view_in(owner: &Owner, conn: &Connection, id: u64) -> Result<PendingView, Error> {
    let row = conn
        .query_row(
            "SELECT principal, backend, reason, description, source, why, state, created_at FROM requests
             WHERE id = ?1",
            [id as i64],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
    let (principal, backend, reason, description, source, why, state, created_at) = row;
    if state != "pending" {
        return Err(Error::Refused(format!(
            "request {id} is {state}, not pending"
        )));
    }
    let (checked, versions) = stored_checked(conn, id)?;
    let current = store::versions(conn)?;
    let data_changed = versions.iter().any(|(d, v)| current.get(d) != Some(v));
    let dp_view = match stored_dp_params_opt(conn, id)? {
        Some(params) => {
            let metas = owner.cache.metas(conn)?;
            let (ledger, plan, charge) =
                plan_charge(&owner.cache, conn, &checked, &principal, &params)?;
            let left = ledger
                .check(&charge)
                .map(|a| a.to_string())
                .map_err(|e| e.to_string());
            let protects = checked
                .datasets
                .iter()
                .filter_map(|d| {
                    metas
                        .get(d)
                        .map(|m| format!("{d}: {}", m.privacy_unit.describe()))
                })
                .collect::<Vec<_>>()
                .join("; ");
            Some(DpView {
                cost: plan.cost.to_string(),
                measure: ledger.measure().name().to_string(),
                budget_left_after: left,
                accuracy95: plan.accuracy95,
                mechanism: plan.mechanism,
                protects,
            })
        }
        None => None,
    };
    let scoring_view = match scoring::stored_spec(conn, id)? {
        Some(spec) => {
            let (policy, _) = owner.policy()?;
            Some(scoring::scoring_view(
                conn,
                &principal,
                &spec,
                policy.scoring_limits(),
            )?)
        }
        None => None,
    };
    // A DP release draws its noise at approval; the owner sees its cost and expected error, not a value.
    let value = match (&dp_view, &scoring_view) {
        (_, Some(_)) => Err(
            "computed privately with the FI's model when the FI runs it; neither side sees the other's inputs"
                .to_string(),
        ),
        (Some(_), _) => {
            Err("released with noise at approval (see cost and expected error)".to_string())
        }
        (None, None) => {
            Owner::evaluate_at(&owner.cache, conn, &checked, &versions).map_err(|e| e.to_string())
        }
    };
    let earlier = earlier_releases(conn, &checked)?;
    let (_, policy_hash) = owner.policy()?;
    let token = {
        let mut h = Sha256::new();
        for part in [
            id.to_string().as_str(),
            &principal,
            &backend,
            &reason,
            &serde_json::to_string(&checked.expr)?,
            &policy_hash,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(serde_json::to_string(&versions)?.as_bytes());
        h.update(serde_json::to_string(&current)?.as_bytes());
        h.update(serde_json::to_string(&value)?.as_bytes());
        h.update(serde_json::to_string(&dp_view)?.as_bytes());
        h.update(serde_json::to_string(&scoring_view)?.as_bytes());
        for e in &earlier {
            h.update(e.id.to_le_bytes());
        }
        hex(&h.finalize())[..16].to_string()
    };
    Ok(PendingView {
        id,
        principal,
        backend: parse_backend(&backend)?,
        reason,
        description,
        source,
        why: why.unwrap_or_default(),
        value,
        earlier,
        data_changed,
        token,
        created_at,
        ty: checked.ty,
        dp: dp_view,
        scoring: scoring_view,
    })
}

fn earlier_releases(conn: &Connection, checked: &Checked) -> Result<Vec<EarlierRelease>, Error> {
    let mut out: BTreeMap<u64, EarlierRelease> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT DISTINCT r.id, r.principal, r.backend, r.description, r.decided_at
         FROM release_columns c JOIN requests r ON r.id = c.request_id
         WHERE c.dataset = ?1 AND c.col = ?2 AND r.state = 'approved'",
    )?;
    for (dataset, col) in &checked.columns {
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

/// The published catalogue, as listed to an FI.
pub fn catalogue_infos() -> Vec<catalogue::CatalogueInfo> {
    catalogue::entries()
        .iter()
        .map(catalogue::CatalogueInfo::from)
        .collect()
}

/// Backends this node runs.
pub const AVAILABLE_BACKENDS: &[Backend] = &[Backend::Plaintext, Backend::Dp, Backend::TwoPc];

/// The privacy ledger, as stored (one JSON document, changed only inside write transactions).
pub fn load_ledger(conn: &Connection) -> Result<Ledger, Error> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM settings WHERE key = 'ledger'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    match text {
        Some(t) => Ok(serde_json::from_str(&t)?),
        None => Ok(Ledger::new(duo_policies::Measure::default())),
    }
}

/// Store the ledger (inside the caller's transaction).
pub fn save_ledger(tx: &Connection, ledger: &Ledger) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO settings (key, value) VALUES ('ledger', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([serde_json::to_string(ledger)?])?;
    Ok(())
}

/// Charge the ledger and draw the noisy answer, inside the caller's transaction: if anything fails later the
/// transaction rolls back and neither the charge nor the answer exist; once it commits, both do, and the same
/// question is answered from the store, never sampled again.
fn charge_and_release(
    cache: &DatasetCache,
    tx: &Connection,
    mut ledger: Ledger,
    plan: &dp::DpPlan,
    charge: &Charge,
    versions: &BTreeMap<String, u64>,
) -> Result<Answer, Error> {
    ledger
        .charge(charge)
        .map_err(|e| Error::Refused(e.to_string()))?;
    save_ledger(tx, &ledger)?;
    let mut loaded = BTreeMap::new();
    for (name, v) in versions {
        loaded.insert(name.clone(), cache.get(tx, name, *v)?);
    }
    dp::release(plan, &Loaded(loaded))
}

fn set_dp_facts(
    tx: &Connection,
    id: u64,
    params: &Option<DpParams>,
    cost_nanos: u64,
    accuracy95: Option<f64>,
) -> Result<(), Error> {
    if params.is_some() {
        tx.prepare_cached(
            "UPDATE requests SET dp_params = ?2, cost = ?3, accuracy = ?4 WHERE id = ?1",
        )?
        .execute(params![
            id as i64,
            serde_json::to_string(params)?,
            cost_nanos as i64,
            accuracy95
        ])?;
    }
    Ok(())
}

fn record_charge(tx: &Connection, id: u64, charge: &Charge) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO budget_history (request_id, at, principal, datasets, amount) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        id as i64,
        store::now_text(),
        charge.principal,
        serde_json::to_string(&charge.datasets)?,
        charge.amount.nanos() as i64
    ])?;
    append_log(
        tx,
        "budget_charged",
        Some(&charge.principal),
        &serde_json::json!({ "request": id, "amount": charge.amount.to_string(), "datasets": charge.datasets }),
    )?;
    Ok(())
}

fn stored_dp_params_opt(conn: &Connection, id: u64) -> Result<Option<DpParams>, Error> {
    let text: Option<String> = conn
        .prepare_cached("SELECT dp_params FROM requests WHERE id = ?1")?
        .query_row([id as i64], |r| r.get(0))?;
    Ok(match text {
        Some(t) => serde_json::from_str::<Option<DpParams>>(&t)?,
        None => None,
    })
}

fn stored_dp_params(conn: &Connection, id: u64) -> Result<DpParams, Error> {
    stored_dp_params_opt(conn, id)?
        .ok_or_else(|| Error::Internal(format!("request {id} has no dp parameters")))
}

/// Set a budget cap (only this raises a cap), with its log entry, in one transaction. The first cap set on a
/// node chooses its measure; later ones must use the same. Returns the previous cap.
pub fn set_cap(
    conn: &mut Connection,
    scope: &duo_policies::Scope,
    cap: Amount,
    measure: duo_policies::Measure,
) -> Result<Option<Amount>, Error> {
    let tx = write_tx(conn)?;
    let mut ledger = load_ledger(&tx)?;
    if ledger.accounts().is_empty() && ledger.measure() != measure {
        ledger = Ledger::new(measure);
    }
    if ledger.measure() != measure {
        return Err(Error::Refused(format!(
            "this node's budgets are in {}; give --{} instead",
            ledger.measure().name(),
            ledger.measure().name()
        )));
    }
    let old = ledger.set_cap(scope, cap);
    save_ledger(&tx, &ledger)?;
    append_log(
        &tx,
        "budget_set",
        None,
        &serde_json::json!({
            "scope": scope, "cap": cap.to_string(), "previous": old.map(|a| a.to_string()),
            "measure": measure.name(),
        }),
    )?;
    tx.commit()?;
    Ok(old)
}

/// For every rule with a `rate` condition, how many releases to `principal` counted against it in its window.
fn rate_counts(
    conn: &Connection,
    policy: &Policy,
    principal: &str,
) -> Result<BTreeMap<(String, duo_policies::Window), u64>, Error> {
    let mut out = BTreeMap::new();
    for rule in policy.rules() {
        for c in rule.conditions() {
            if let duo_policies::Condition::Rate(limit) = c {
                let since = store::now_unix() - limit.per.seconds();
                let n: i64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM rate_events WHERE principal = ?1 AND rule = ?2 AND at > ?3",
                    )?
                    .query_row(params![principal, rule.name(), since], |r| r.get(0))?;
                out.insert((rule.name().to_string(), limit.per), n as u64);
            }
        }
    }
    Ok(out)
}

/// Count a release against every rate-limited rule whose other conditions it meets.
fn record_rates(tx: &Connection, policy: &Policy, facts: &RequestFacts<'_>) -> Result<(), Error> {
    for (rule, _) in policy.rate_counters(facts) {
        tx.prepare_cached("INSERT INTO rate_events (principal, rule, at) VALUES (?1, ?2, ?3)")?
            .execute(params![facts.principal, rule, store::now_unix()])?;
    }
    Ok(())
}

/// The ledger as stored, the DP plan of a lineage, and the charge it would make for `principal`.
fn plan_charge(
    cache: &DatasetCache,
    conn: &Connection,
    checked: &Checked,
    principal: &str,
    params: &DpParams,
) -> Result<(Ledger, dp::DpPlan, Charge), Error> {
    let ledger = load_ledger(conn)?;
    let metas = cache.metas(conn)?;
    let plan = dp::plan(checked, &metas, ledger.measure(), params)?;
    let charge = Charge {
        principal: principal.to_string(),
        datasets: checked.datasets.clone(),
        amount: plan.cost,
    };
    Ok((ledger, plan, charge))
}

// ---------------------------------------------------------------------------------------------------------
// Typed queries for the command line (`duo owner budget show`), so that it runs no SQL of its own.
// ---------------------------------------------------------------------------------------------------------

/// One charge to the privacy budget: what `duo owner budget show` lists as the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCharge {
    /// The request whose release was charged.
    pub request: u64,
    /// When, as stored (RFC 3339, UTC).
    pub at: String,
    /// The principal charged.
    pub principal: String,
    /// The datasets charged, each the full amount.
    pub datasets: Vec<String>,
    /// The amount, in the ledger's measure.
    pub amount: Amount,
}

/// Every charge to the privacy budget, oldest first.
pub fn budget_history(conn: &Connection) -> Result<Vec<BudgetCharge>, Error> {
    let mut stmt = conn.prepare_cached(
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
    rows.map(|row| {
        let (request, at, principal, datasets, amount) = row?;
        Ok(BudgetCharge {
            request: request as u64,
            at,
            principal,
            datasets: serde_json::from_str(&datasets)?,
            amount: Amount::from_nanos(amount as u64),
        })
    })
    .collect()
}

#[cfg(test)]
mod budget_history_tests {
    use super::*;

    #[test]
    fn charges_are_listed_oldest_first_with_their_datasets() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store::open(dir.path(), store::Sync::Normal).unwrap();
        assert!(budget_history(&conn).unwrap().is_empty());
        let tx = write_tx(&mut conn).unwrap();
        for (id, nanos) in [(3, 500_000_000), (7, 250_000_000)] {
            let charge = Charge {
                principal: "Acme".into(),
                datasets: ["rent".to_string(), "transactions".to_string()].into(),
                amount: Amount::from_nanos(nanos),
            };
            record_charge(&tx, id, &charge).unwrap();
        }
        tx.commit().unwrap();
        let history = budget_history(&conn).unwrap();
        assert_eq!(
            history.iter().map(|c| c.request).collect::<Vec<_>>(),
            [3, 7]
        );
        assert_eq!(history[0].principal, "Acme");
        assert_eq!(history[0].datasets, ["rent", "transactions"]);
        assert_eq!(history[1].amount.to_string(), "0.25");
    }
}
