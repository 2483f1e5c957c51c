//! What each side sees of a request: the FI's [`RequestView`] (built in one place, [`request_view`]) and
//! everything the owner sees before deciding ([`PendingView`]), with the token that makes an approval fail
//! if any of it changed.

use super::{evaluate_at, DatasetCache, Owner};
use crate::error::Error;
use crate::proto::digest::{hex, FieldHasher};
use crate::proto::request::{RequestState, RequestView};
use crate::store::prelude::*;
use crate::store::{Conn, RequestRow};
use duo_engine::{Answer, Type};
use duo_policies::Policy;
use duo_policies::{Amount, Backend};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use crate::store::EarlierRelease;

/// The FI's view of a stored request: the one place it is built. Its id is the principal's own number for
/// it ([`RequestRow::fi_seq`]), never the node-wide id.
pub fn request_view(row: RequestRow) -> Result<RequestView, Error> {
    let id = row.fi_seq;
    view_with_id(row, id)
}

/// The same view for the owner's commands (`duo owner approve`, `deny`): with the node's id, which those
/// commands take.
pub fn owner_request_view(row: RequestRow) -> Result<RequestView, Error> {
    let id = row.id;
    view_with_id(row, id)
}

fn view_with_id(row: RequestRow, id: u64) -> Result<RequestView, Error> {
    let state = row.state;
    Ok(RequestView {
        id,
        state,
        backend: row.backend,
        reason: row.reason,
        description: row.description,
        answer: row.answer.map(|a| serde_json::from_str(&a)).transpose()?,
        why: match state {
            RequestState::Pending => row.why.map(|w| format!("waiting for the owner: {w}")),
            _ => row.why,
        },
        decided_by: row.decided_by,
        ty: row.ty,
        receipt: row.receipt,
        cost: row.cost_nanos.map(|c| Amount::from_nanos(c).to_string()),
        accuracy95: row.accuracy95,
        budget: row.budget,
        items: row.items,
    })
}

/// What the owner sees of a scoring request before deciding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringView {
    /// The attributes the model uses (their values never leave the node in the clear).
    pub attributes: Vec<String>,
    /// What a run reveals, in words.
    pub reveals: String,
    /// Who learns it.
    pub to_whom: String,
    /// Bits one run reveals.
    pub bits: f64,
    /// The FI's model commitment.
    pub commitment: String,
    /// Runs this FI started in the current window, and the limit.
    pub runs_used: u32,
    /// The limit on runs per window.
    pub runs_max: u32,
    /// The window, in days.
    pub window_days: u32,
    /// Bits revealed to this FI in the window so far.
    pub bits_used: f64,
}

/// What the owner sees of a DP request before deciding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpView {
    /// What it would cost, in the node's measure.
    pub cost: String,
    /// The node's measure (`epsilon` or `rho`).
    pub measure: String,
    /// The smallest remaining budget after it, or why the budgets do not allow it (JSON: the amount, or
    /// `{"error": why}`).
    #[serde(with = "super::shown")]
    pub budget_left_after: Result<String, String>,
    /// Half-width of a 95% interval around the exact value, if known.
    pub accuracy95: Option<f64>,
    /// The noise mechanism.
    pub mechanism: String,
    /// What one unit of privacy protects in the data it reads, in words.
    pub protects: String,
    /// For a batch: each question's cost and expected error, in order (`cost` is their sum). Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<crate::proto::request::ItemPlan>,
}

/// Everything the owner sees before deciding a pending request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingView {
    /// Request id on the node (what `duo owner approve` and `deny` take).
    pub id: u64,
    /// Who asks.
    pub principal: String,
    /// The principal's own number for this request: the id its FI sees (each FI numbers its requests 1, 2,
    /// 3, ...).
    pub fi_request: u64,
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
    /// The exact value that approving would release (plaintext), or why it cannot be shown (JSON: the Answer,
    /// or `{"error": why}`).
    #[serde(with = "super::shown")]
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

impl Owner {
    /// Everything the owner needs to decide a pending request, computed now.
    pub fn pending_view(&self, id: u64) -> Result<PendingView, Error> {
        pending_view(&self.cache, &self.policy()?, &self.store, id)
    }

    /// Ids of the pending requests, oldest first.
    pub fn pending_ids(&self) -> Result<Vec<u64>, Error> {
        self.store.pending_ids()
    }
}

/// What the owner sees of pending request `id`, read through `conn` (the store, or the approval's
/// transaction).
pub(crate) fn pending_view(
    cache: &DatasetCache,
    (policy, policy_hash): &(Arc<Policy>, String),
    conn: &dyn Conn,
    id: u64,
) -> Result<PendingView, Error> {
    let row = conn
        .request(id, None)?
        .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
    if row.state != RequestState::Pending {
        return Err(Error::Refused(format!(
            "request {id} is {}, not pending",
            row.state.as_str()
        )));
    }
    let stored = conn.stored_request(id)?;
    let current = conn.versions()?;
    let data_changed = stored
        .versions
        .iter()
        .any(|(d, v)| current.get(d) != Some(v));
    let dp = match conn.dp_params(id)? {
        Some(params) => Some(dp_view(cache, conn, &row, &stored, policy, &params)?),
        None => None,
    };
    let scoring = match conn.scoring_spec(id)? {
        Some(spec) => Some(super::scoring::scoring_view(
            conn,
            &row.principal,
            &spec,
            policy.scoring_limits(),
        )?),
        None => None,
    };
    // A DP release draws its noise at approval; the owner sees its cost and expected error, not a value.
    let value = match (&dp, &scoring) {
        (_, Some(_)) => Err(
            "computed privately with the FI's model when the FI runs it; neither side sees the other's inputs"
                .to_string(),
        ),
        (Some(_), _) => {
            Err("released with noise at approval (see cost and expected error)".to_string())
        }
        (None, None) => evaluate_at(cache, conn, &stored.checked, &stored.versions)
            .map_err(|e| e.to_string()),
    };
    let earlier = conn.earlier_releases(&stored.checked.columns)?;
    let token = {
        let mut h = FieldHasher::new(b"");
        h.field(id.to_string())
            .field(&row.principal)
            .field(row.backend.name())
            .field(&row.reason)
            .field(serde_json::to_string(&stored.checked.expr)?)
            .field(policy_hash);
        h.raw(serde_json::to_string(&stored.versions)?)
            .raw(serde_json::to_string(&current)?)
            .raw(serde_json::to_string(&value)?)
            .raw(serde_json::to_string(&dp)?)
            .raw(serde_json::to_string(&scoring)?);
        for e in &earlier {
            h.raw(e.id.to_le_bytes());
        }
        hex(&h.finish())[..16].to_string()
    };
    Ok(PendingView {
        id,
        fi_request: row.fi_seq,
        principal: row.principal,
        backend: row.backend,
        reason: row.reason,
        description: row.description,
        source: row.source,
        why: row.why.unwrap_or_default(),
        value,
        earlier,
        data_changed,
        token,
        created_at: row.created_at,
        ty: stored.checked.ty,
        dp,
        scoring,
    })
}

/// What the owner sees of a DP request: its cost and the budget after it, planned now.
fn dp_view(
    cache: &DatasetCache,
    conn: &dyn Conn,
    row: &RequestRow,
    stored: &crate::store::StoredRequest,
    policy: &duo_policies::Policy,
    params: &crate::proto::request::DpParams,
) -> Result<DpView, Error> {
    let plan = super::release::plan_stored(cache, conn, row, stored, policy, Some(params), None)?;
    let metas = cache.metas(conn)?;
    let protects = stored
        .checked
        .datasets
        .iter()
        .filter_map(|d| {
            metas
                .get(d)
                .map(|m| format!("{d}: {}", m.privacy_unit.describe()))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(DpView {
        cost: plan.cost.map(|c| c.to_string()).unwrap_or_default(),
        measure: conn.ledger()?.measure().name().to_string(),
        budget_left_after: plan
            .budget_left
            .clone()
            .unwrap_or_else(|| Err("no budget applies".into()))
            .map(|a| a.to_string()),
        accuracy95: plan.accuracy95,
        mechanism: plan.mechanism.clone().unwrap_or_default(),
        protects,
        items: plan.items(),
    })
}
