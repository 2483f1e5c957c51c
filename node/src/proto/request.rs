//! Requests as the FI sees them: their state, the view of one request, and what a DP request spends.

use crate::error::Error;
use crate::proto::receipt::Receipt;
use duo_engine::{Answer, Type};
use duo_policies::Backend;
use duo_protocols::dp::Budget;
use serde::{Deserialize, Serialize};

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
    /// As stored and shown: `pending`, `approved` or `denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
        }
    }

    /// The state named by [`RequestState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(RequestState::Pending),
            "approved" => Some(RequestState::Approved),
            "denied" => Some(RequestState::Denied),
            _ => None,
        }
    }
}

/// What the FI may see of one of its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RequestView {
    /// Request id: the principal's own number for it (1, 2, 3, ... per principal, whatever other FIs ask).
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
    /// For a DP request denied because a privacy budget would be exceeded: that budget's numbers (the
    /// tightest cap), so clients need not read them from `why`. Absent otherwise, and from nodes that predate
    /// the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetShortfall>,
    /// For a DP batch (`batch(...)`): each question's cost and expected error, in order; the answer is then a
    /// `batch` with one answer per question. Empty otherwise, and from nodes that predate batches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemPlan>,
}

/// One question of a DP batch as planned from public facts: its part of the batch's cost and its own expected
/// error. The batch is charged the sum of its questions' costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ItemPlan {
    /// Its cost in the node's measure (decimal, as [`RequestView::cost`]).
    pub cost: String,
    /// Half-width of a 95% interval around its exact value, from public parameters; absent where no closed
    /// form applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy95: Option<f64>,
    /// Its noise mechanism.
    pub mechanism: String,
}

/// The numbers of the privacy budget a DP request would exceed. Amounts are decimals in the node's measure,
/// as text (like [`RequestView::cost`]), so no precision is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BudgetShortfall {
    /// Whose budget: `global` (the owner's, over every FI and dataset), `principal` (this FI's) or `dataset`.
    pub scope: String,
    /// The principal's or dataset's name, for those scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The node's measure: `epsilon` or `rho`.
    pub measure: String,
    /// The cap.
    pub cap: String,
    /// Spent against it so far.
    pub spent: String,
    /// What this request would cost.
    pub requested: String,
    /// What is left under the cap (less than `requested`).
    pub remaining: String,
}

impl From<&duo_policies::ledger::Exceeded> for BudgetShortfall {
    fn from(e: &duo_policies::ledger::Exceeded) -> Self {
        use duo_policies::ledger::Scope;
        let (scope, name) = match &e.scope {
            Scope::Global => ("global", None),
            Scope::Principal(p) => ("principal", Some(p.clone())),
            Scope::Dataset(d) => ("dataset", Some(d.clone())),
        };
        BudgetShortfall {
            scope: scope.into(),
            name,
            measure: e.measure.name().into(),
            cap: e.cap.to_string(),
            spent: e.spent.to_string(),
            requested: e.requested.to_string(),
            remaining: e.remaining.to_string(),
        }
    }
}

/// What an FI asks to spend on a DP release: exactly one of an epsilon, a rho, or a target accuracy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DpParams {
    /// Pure-DP epsilon (charged epsilon^2/2 on a zCDP node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// zCDP rho (zCDP nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// Target accuracy: the answer within `alpha` of the exact value ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// ... with probability at least `1 - beta` (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
}

impl DpParams {
    /// What to spend, as the mechanisms take it.
    pub fn budget(&self) -> Result<Budget, Error> {
        match (self.epsilon, self.rho, self.alpha) {
            (Some(e), None, None) => Ok(Budget::Epsilon(e)),
            (None, Some(r), None) => Ok(Budget::Rho(r)),
            (None, None, Some(a)) => Ok(Budget::Accuracy {
                alpha: a,
                beta: self.beta.unwrap_or(0.05),
            }),
            _ => Err(Error::Refused(
                "a dp request states exactly one of `epsilon`, `rho` or `alpha` (with an optional `beta`); on the \
                 command line --epsilon, --rho or --alpha (--beta)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view from a node that predates [`RequestView::budget`] still decodes (without the numbers), and a view
    /// with them keeps them through the wire's JSON.
    #[test]
    fn the_budget_numbers_are_optional_on_the_wire() {
        let old = r#"{"id":3,"state":"denied","backend":"dp","reason":"r","description":"d",
            "why":"the global budget would be exceeded","ty":{"kind":"histogram","edges":[0.0,1.0]}}"#;
        let v: RequestView = serde_json::from_str(old).unwrap();
        assert_eq!(v.budget, None);
        assert!(!serde_json::to_string(&v).unwrap().contains("budget\""));
        let exceeded = duo_policies::ledger::Exceeded {
            scope: duo_policies::ledger::Scope::Principal("Acme".into()),
            measure: duo_protocols::dp::Measure::Zcdp,
            cap: "2".parse().unwrap(),
            spent: "1.75".parse().unwrap(),
            requested: "0.5".parse().unwrap(),
            remaining: "0.25".parse().unwrap(),
        };
        let with = RequestView {
            budget: Some((&exceeded).into()),
            ..v
        };
        let text = serde_json::to_string(&with).unwrap();
        assert!(
            text.contains(
                r#""budget":{"scope":"principal","name":"Acme","measure":"rho","cap":"2","spent":"1.75","requested":"0.5","remaining":"0.25"}"#
            ),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<RequestView>(&text).unwrap(), with);
    }
}
