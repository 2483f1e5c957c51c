//! The backends a release runs through, behind one trait: [`plaintext`] (the exact value), [`dp`] (a
//! differentially private aggregate, charged to the privacy ledger) and [`twopc`] (private scoring: an approval
//! lets the FI start one two-party run).
//!
//! Each backend first **plans** a request from public facts only (the published metadata, the ledger, the
//! counters): what it would cost, how accurate it would be, what it reveals. The policy decides on that plan.
//! Only an approved request is **answered**, inside the release transaction.

pub mod dp;
pub mod plaintext;
pub mod twopc;

use crate::error::Error;
use crate::owner::cache::DatasetCache;
use crate::proto::request::{DpParams, ItemPlan};
use crate::proto::scoring::ScoringSpec;
use crate::store::Conn;
use duo_engine::{Answer, Checked};
use duo_policies::{Amount, Backend as Kind, Charge, Ledger, Policy, ScoringFacts};
use std::collections::BTreeMap;

/// Backends this node runs.
pub const AVAILABLE: &[Kind] = &[Kind::Plaintext, Kind::Dp, Kind::TwoPc];

/// A request as it enters the release path.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Who asks.
    pub principal: &'a str,
    /// Through which backend.
    pub backend: Kind,
    /// Why (shown to the owner and logged).
    pub reason: &'a str,
    /// The expression as the owner reads it.
    pub source: &'a str,
    /// The checked lineage.
    pub checked: &'a Checked,
    /// For `dp`: what to spend.
    pub dp: Option<&'a DpParams>,
    /// For `2pc`: the attributes, the reveal and the model commitment.
    pub scoring: Option<&'a ScoringSpec>,
}

/// What a backend plans and answers with: the store (inside the release transaction), the cache of dataset
/// versions, the request's checked lineage and the versions it reads, and the policy in force.
pub struct Ctx<'a> {
    /// The store, inside the caller's transaction.
    pub conn: &'a dyn Conn,
    /// Dataset versions and metadata.
    pub cache: &'a DatasetCache,
    /// The lineage.
    pub checked: &'a Checked,
    /// The dataset versions it reads.
    pub versions: &'a BTreeMap<String, u64>,
    /// The policy in force (for a cost preview, which no policy decides, the policy's DP settings if it can be
    /// read, or `None`).
    pub policy: Option<&'a Policy>,
}

/// A backend's plan of a release, from public facts only.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The privacy cost, in the node's measure (DP).
    pub cost: Option<Amount>,
    /// The smallest budget left after the charge, or why the budgets refuse it (DP).
    pub budget_left: Option<Result<Amount, String>>,
    /// The numbers of the budget the charge would exceed, when that is why the budgets refuse it (DP).
    pub exceeded: Option<duo_policies::ledger::Exceeded>,
    /// Half-width of a 95% interval around the exact value, from public parameters (DP).
    pub accuracy95: Option<f64>,
    /// The noise mechanism (DP).
    pub mechanism: Option<String>,
    /// What a run reveals and what this FI has used (private scoring).
    pub scoring: Option<ScoringFacts>,
    /// The charge to make and the mechanism's plan (DP).
    pub(crate) dp: Option<DpCharge>,
}

/// The ledger as read, the mechanism's plan, and the charge to make.
#[derive(Debug, Clone)]
pub(crate) struct DpCharge {
    pub(crate) ledger: Ledger,
    pub(crate) plan: dp::DpPlan,
    /// One charge for a single release; one per question for a batch, each against the datasets it reads.
    pub(crate) charges: Vec<Charge>,
}

impl Plan {
    /// For a DP batch: each question's cost and expected error, in order (empty otherwise).
    pub fn items(&self) -> Vec<ItemPlan> {
        self.dp
            .as_ref()
            .map(|d| {
                d.plan
                    .items()
                    .iter()
                    .map(|p| ItemPlan {
                        cost: p.cost.to_string(),
                        accuracy95: p.accuracy95,
                        mechanism: p.mechanism.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The charges this plan makes, if any (one per question of a batch).
    pub fn charges(&self) -> Option<&[Charge]> {
        self.dp.as_ref().map(|d| d.charges.as_slice())
    }
}

/// One way of releasing a lineage.
pub trait Backend: Sync {
    /// Which backend this is.
    fn kind(&self) -> Kind;

    /// Refuse a request whose parameters do not fit this backend, before anything is stored.
    fn admit(&self, ask: &Ask<'_>) -> Result<(), Error>;

    /// Plan the release from public facts only.
    fn plan(&self, ctx: &Ctx<'_>, ask: &Ask<'_>) -> Result<Plan, Error>;

    /// Whether the same question, asked again on the same data, gets the stored answer.
    fn reuses_answers(&self) -> bool {
        true
    }

    /// Answer an approved request, inside the release transaction. `None`: nothing is released yet (a scoring
    /// request's outcome comes from its run).
    fn answer(&self, ctx: &Ctx<'_>, plan: &Plan) -> Result<Option<Answer>, Error>;
}

/// The backend of a kind.
pub fn of(kind: Kind) -> &'static dyn Backend {
    match kind {
        Kind::Plaintext => &plaintext::Plaintext,
        Kind::Dp => &dp::Dp,
        Kind::TwoPc => &twopc::TwoPc,
    }
}
