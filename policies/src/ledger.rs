//! The privacy ledger: a pure state machine that accounts for the privacy loss of DP releases.
//!
//! One node uses one [`Measure`]: pure epsilon by default, or zCDP rho. Every amount is an [`Amount`], an
//! integer number of nano-units (1e-9 of epsilon or rho), so sums are exact and "a budget for exactly `k`
//! releases" means what it says. Conversions from real numbers always round up (the conservative
//! direction): a decimal with more than nine decimals, a float privacy map ([`Amount::from_f64_ceil`]), a
//! pure-epsilon mechanism charged in rho ([`Measure::charge_for_pure_epsilon`]) and the (epsilon, delta)
//! shown for a rho ([`zcdp_epsilon`]).
//!
//! # Caps
//!
//! The [`Ledger`] holds a cap and a spent amount for the owner as a whole ([`Scope::Global`]), for each
//! principal and for each dataset. A [`Charge`] names the principal and the datasets its lineage reads;
//! it adds its amount once to the global account, once to the principal's and once to each dataset's, so
//! a lineage over several sources charges every source. Before anything changes, every applicable cap is
//! checked: a charge either succeeds as a whole or fails with a [`LedgerError`] that carries the spent,
//! requested and remaining amounts of the binding cap, and leaves the ledger as it was.
//!
//! - A principal or dataset without a cap of its own falls under the global cap only.
//! - Without a global cap, no DP release is possible: every charge fails with [`LedgerError::NoBudget`]
//!   ("set a budget with `duo owner budget set`").
//! - Only [`Ledger::set_cap`] and [`Ledger::clear_cap`] change caps; nothing raises one implicitly. A cap
//!   may be set below what is already spent; then nothing more can be charged against it.
//!
//! Spending is tracked for every principal and dataset that was ever charged, capped or not, so a cap set
//! later counts what was spent before it.
//!
//! The ledger performs no I/O: the node persists what [`Ledger::charge`] returns (or the whole state, which
//! is serde-serializable) in the same SQLite transaction as the release, and keeps the history of
//! [`ChargeRecord`]s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

// The units are defined once, next to the mechanisms that charge in them; the ledger counts in them.
pub use duo_protocols::dp::{
    zcdp_epsilon, Amount, AmountError, Measure, UnknownMeasure, NANOS_PER_UNIT,
};

/// Whose budget an account is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "name", rename_all = "snake_case")]
pub enum Scope {
    /// The owner's budget over every principal and dataset (FIs may pool what they learn).
    Global,
    /// One principal's budget.
    Principal(String),
    /// One dataset's budget, over every principal.
    Dataset(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global budget"),
            Scope::Principal(p) => write!(f, "budget of principal `{p}`"),
            Scope::Dataset(d) => write!(f, "budget of dataset `{d}`"),
        }
    }
}

/// A cap (if set) and what was spent against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The cap, if one is set.
    pub cap: Option<Amount>,
    /// Everything charged so far.
    pub spent: Amount,
}

impl Account {
    /// What can still be charged: `cap - spent` (zero when the cap was lowered below it), or `None` when
    /// there is no cap.
    pub fn remaining(&self) -> Option<Amount> {
        self.cap.map(|cap| cap.saturating_sub(self.spent))
    }
}

/// One DP release's charge: who, on what, how much (in the ledger's measure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The requesting principal.
    pub principal: String,
    /// Every dataset the lineage reads; each is charged the full amount.
    pub datasets: BTreeSet<String>,
    /// The amount, in the ledger's measure.
    pub amount: Amount,
}

/// What a successful charge changed: the new state of every account it touched, for the node to persist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charged {
    /// The smallest remaining amount over the caps that apply to this principal and these datasets, after
    /// the charge.
    pub left_after: Amount,
    /// Each touched account after the charge: the global one, the principal's, then each dataset's.
    pub touched: Vec<(Scope, Account)>,
}

/// Why a charge was refused. A refused charge changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// No global cap is set, so no DP release is possible.
    #[error(
        "no privacy budget is set; set one with `duo owner budget set --{measure} X`",
        measure = .measure.name()
    )]
    NoBudget {
        /// The ledger's measure (for the command to suggest).
        measure: Measure,
    },
    /// A cap would be exceeded.
    #[error(transparent)]
    Exceeded(#[from] Exceeded),
    /// A spent amount would overflow (possible only with an absurd cap or a corrupt state).
    #[error("the spent amount of the {scope} would overflow")]
    Overflow {
        /// The account that would overflow.
        scope: Scope,
    },
}

/// The numbers of a cap that a charge would exceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error(
    "the {scope} would be exceeded: requested {requested}, remaining {remaining} (spent {spent} of {cap} {measure})",
    measure = .measure.name()
)]
pub struct Exceeded {
    /// The binding cap's scope.
    pub scope: Scope,
    /// The ledger's measure.
    pub measure: Measure,
    /// The cap.
    pub cap: Amount,
    /// Spent against it so far.
    pub spent: Amount,
    /// The charge asked for.
    pub requested: Amount,
    /// What is left under it (less than `requested`).
    pub remaining: Amount,
}

/// One entry of the history of charges the node keeps (the ledger itself keeps only totals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRecord {
    /// The release this charge paid for (the node's request id).
    pub request: String,
    /// When it was charged.
    pub at: DateTime<Utc>,
    /// The measure of `amount`.
    pub measure: Measure,
    /// The charge.
    pub charge: Charge,
    /// The binding remaining amount right after it.
    pub left_after: Amount,
}

impl ChargeRecord {
    /// The record of a successful charge.
    pub fn new(
        request: impl Into<String>,
        at: DateTime<Utc>,
        measure: Measure,
        charge: Charge,
        charged: &Charged,
    ) -> ChargeRecord {
        ChargeRecord {
            request: request.into(),
            at,
            measure,
            charge,
            left_after: charged.left_after,
        }
    }
}

/// The privacy accountant. See the [module documentation](self).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    measure: Measure,
    global: Account,
    principals: BTreeMap<String, Account>,
    datasets: BTreeMap<String, Account>,
}

impl Ledger {
    /// An empty ledger in this measure: no caps (so no DP release until a global cap is set), nothing spent.
    pub fn new(measure: Measure) -> Ledger {
        Ledger {
            measure,
            ..Ledger::default()
        }
    }

    /// The measure of every amount in this ledger.
    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// Whether nothing was ever capped or charged: no account has a cap or any spending. Only such a ledger
    /// may still change its measure.
    pub fn is_blank(&self) -> bool {
        self.accounts()
            .iter()
            .all(|(_, a)| *a == Account::default())
    }

    /// The account of a scope (no cap and nothing spent if it was never charged or capped).
    pub fn account(&self, scope: &Scope) -> Account {
        match scope {
            Scope::Global => Some(&self.global),
            Scope::Principal(p) => self.principals.get(p),
            Scope::Dataset(d) => self.datasets.get(d),
        }
        .copied()
        .unwrap_or_default()
    }

    /// Every account that has a cap or was charged: the global one, then principals, then datasets, each by
    /// name.
    pub fn accounts(&self) -> Vec<(Scope, Account)> {
        let mut out = vec![(Scope::Global, self.global)];
        out.extend(
            self.principals
                .iter()
                .map(|(p, a)| (Scope::Principal(p.clone()), *a)),
        );
        out.extend(
            self.datasets
                .iter()
                .map(|(d, a)| (Scope::Dataset(d.clone()), *a)),
        );
        out
    }

    /// Set the cap of a scope (raising or lowering it), returning the previous one. A cap below what is
    /// already spent is allowed: nothing more can then be charged against it.
    pub fn set_cap(&mut self, scope: &Scope, cap: Amount) -> Option<Amount> {
        self.account_mut(scope).cap.replace(cap)
    }

    /// Remove the cap of a scope, returning it. A principal or dataset then falls under the global cap
    /// only; without a global cap, no DP release is possible.
    pub fn clear_cap(&mut self, scope: &Scope) -> Option<Amount> {
        let previous = self.account_mut(scope).cap.take();
        self.prune(scope);
        previous
    }

    /// The smallest remaining amount over the caps that apply to this principal and these datasets (the
    /// global cap, and theirs where set), or `None` when no global cap is set.
    pub fn remaining(&self, principal: &str, datasets: &BTreeSet<String>) -> Option<Amount> {
        self.global.remaining()?;
        self.applicable(principal, datasets)
            .filter_map(|(_, a)| a.remaining())
            .min()
    }

    /// Check a charge without applying it: the binding remaining amount after it, or why it would fail.
    pub fn check(&self, charge: &Charge) -> Result<Amount, LedgerError> {
        if self.global.cap.is_none() {
            return Err(LedgerError::NoBudget {
                measure: self.measure,
            });
        }
        let mut binding: Option<Exceeded> = None;
        let mut left_after = Amount::MAX;
        for (scope, account) in self.applicable(&charge.principal, &charge.datasets) {
            if account.spent.checked_add(charge.amount).is_none() {
                return Err(LedgerError::Overflow { scope });
            }
            let (Some(cap), Some(remaining)) = (account.cap, account.remaining()) else {
                continue;
            };
            if charge.amount > remaining {
                // Report the tightest cap; on a tie, the first in order (global, principal, datasets).
                if binding.as_ref().is_none_or(|b| remaining < b.remaining) {
                    binding = Some(Exceeded {
                        scope,
                        measure: self.measure,
                        cap,
                        spent: account.spent,
                        requested: charge.amount,
                        remaining,
                    });
                }
            } else {
                left_after = left_after.min(remaining.saturating_sub(charge.amount));
            }
        }
        match binding {
            Some(e) => Err(LedgerError::Exceeded(e)),
            None => Ok(left_after),
        }
    }

    /// Charge: check every applicable cap, then add the amount to the global account, the principal's and
    /// each dataset's. All or nothing: on error the ledger is unchanged.
    pub fn charge(&mut self, charge: &Charge) -> Result<Charged, LedgerError> {
        let left_after = self.check(charge)?;
        let mut touched = Vec::with_capacity(charge.datasets.len() + 2);
        let scopes = std::iter::once(Scope::Global)
            .chain(std::iter::once(Scope::Principal(charge.principal.clone())))
            .chain(charge.datasets.iter().cloned().map(Scope::Dataset));
        for scope in scopes {
            let account = self.account_mut(&scope);
            // `check` proved that no addition overflows.
            account.spent = account
                .spent
                .checked_add(charge.amount)
                .unwrap_or(Amount::MAX);
            let after = *account;
            touched.push((scope, after));
        }
        Ok(Charged {
            left_after,
            touched,
        })
    }

    /// The accounts a charge by this principal on these datasets touches, in order: global, principal,
    /// datasets.
    fn applicable<'s>(
        &'s self,
        principal: &str,
        datasets: &'s BTreeSet<String>,
    ) -> impl Iterator<Item = (Scope, Account)> + 's {
        let p = (
            Scope::Principal(principal.to_owned()),
            self.principals.get(principal).copied().unwrap_or_default(),
        );
        std::iter::once((Scope::Global, self.global))
            .chain(std::iter::once(p))
            .chain(datasets.iter().map(|d| {
                (
                    Scope::Dataset(d.clone()),
                    self.datasets.get(d).copied().unwrap_or_default(),
                )
            }))
    }

    fn account_mut(&mut self, scope: &Scope) -> &mut Account {
        match scope {
            Scope::Global => &mut self.global,
            Scope::Principal(p) => self.principals.entry(p.clone()).or_default(),
            Scope::Dataset(d) => self.datasets.entry(d.clone()).or_default(),
        }
    }

    /// Forget an account that has neither a cap nor any spending.
    fn prune(&mut self, scope: &Scope) {
        let empty = Account::default();
        match scope {
            Scope::Global => {}
            Scope::Principal(p) => {
                if self.principals.get(p) == Some(&empty) {
                    self.principals.remove(p);
                }
            }
            Scope::Dataset(d) => {
                if self.datasets.get(d) == Some(&empty) {
                    self.datasets.remove(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn amt(s: &str) -> Amount {
        s.parse().unwrap()
    }

    fn charge(principal: &str, datasets: &[&str], amount: &str) -> Charge {
        Charge {
            principal: principal.to_owned(),
            datasets: datasets.iter().map(|d| (*d).to_owned()).collect(),
            amount: amt(amount),
        }
    }

    fn ds(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|d| (*d).to_owned()).collect()
    }

    #[test]
    fn without_a_global_cap_nothing_is_charged() {
        let mut l = Ledger::new(Measure::PureEpsilon);
        l.set_cap(&Scope::Principal("acme".into()), amt("5"));
        let err = l.charge(&charge("acme", &["rent"], "0.1")).unwrap_err();
        assert_eq!(
            err,
            LedgerError::NoBudget {
                measure: Measure::PureEpsilon
            }
        );
        assert_eq!(
            err.to_string(),
            "no privacy budget is set; set one with `duo owner budget set --epsilon X`"
        );
        let rho = Ledger::new(Measure::Zcdp).check(&charge("a", &[], "0"));
        assert!(rho.unwrap_err().to_string().contains("--rho X"));
        assert_eq!(l.remaining("acme", &ds(&["rent"])), None);
    }

    #[test]
    fn a_charge_hits_global_principal_and_each_dataset_once() {
        let mut l = Ledger::new(Measure::PureEpsilon);
        l.set_cap(&Scope::Global, amt("10"));
        l.set_cap(&Scope::Dataset("rent".into()), amt("3"));
        let c = l
            .charge(&charge("acme", &["rent", "utilities"], "1.25"))
            .unwrap();
        assert_eq!(c.left_after, amt("1.75"));
        assert_eq!(
            c.touched,
            vec![
                (
                    Scope::Global,
                    Account {
                        cap: Some(amt("10")),
                        spent: amt("1.25")
                    }
                ),
                (
                    Scope::Principal("acme".into()),
                    Account {
                        cap: None,
                        spent: amt("1.25")
                    }
                ),
                (
                    Scope::Dataset("rent".into()),
                    Account {
                        cap: Some(amt("3")),
                        spent: amt("1.25")
                    }
                ),
                (
                    Scope::Dataset("utilities".into()),
                    Account {
                        cap: None,
                        spent: amt("1.25")
                    }
                ),
            ]
        );
        assert_eq!(l.remaining("bolt", &ds(&["utilities"])), Some(amt("8.75")));
        assert_eq!(l.remaining("bolt", &ds(&["rent"])), Some(amt("1.75")));
        // A cap set later counts what was spent before it.
        l.set_cap(&Scope::Principal("acme".into()), amt("2"));
        assert_eq!(l.remaining("acme", &ds(&[])), Some(amt("0.75")));
        assert_eq!(l.accounts().len(), 4);
    }

    #[test]
    fn exceeding_reports_the_tightest_cap_and_changes_nothing() {
        let mut l = Ledger::new(Measure::PureEpsilon);
        l.set_cap(&Scope::Global, amt("10"));
        l.set_cap(&Scope::Principal("acme".into()), amt("4"));
        l.set_cap(&Scope::Dataset("rent".into()), amt("2"));
        l.charge(&charge("acme", &["rent"], "1.5")).unwrap();
        let before = l.clone();
        let err = l
            .charge(&charge("acme", &["rent", "bank"], "3"))
            .unwrap_err();
        assert_eq!(
            err,
            LedgerError::Exceeded(Exceeded {
                scope: Scope::Dataset("rent".into()),
                measure: Measure::PureEpsilon,
                cap: amt("2"),
                spent: amt("1.5"),
                requested: amt("3"),
                remaining: amt("0.5"),
            })
        );
        assert_eq!(
            err.to_string(),
            "the budget of dataset `rent` would be exceeded: requested 3, remaining 0.5 (spent 1.5 of 2 epsilon)"
        );
        assert_eq!(l, before);
        // Exactly the remainder fits.
        assert_eq!(
            l.charge(&charge("acme", &["rent"], "0.5"))
                .unwrap()
                .left_after,
            Amount::ZERO
        );
        assert!(l.charge(&charge("bolt", &["rent"], "0.000000001")).is_err());
        assert!(l.charge(&charge("bolt", &["bank"], "8")).is_ok());
    }

    #[test]
    fn lowering_a_cap_below_spent_stops_charges_and_clearing_falls_back_to_global() {
        let mut l = Ledger::new(Measure::PureEpsilon);
        l.set_cap(&Scope::Global, amt("10"));
        let acme = Scope::Principal("acme".into());
        assert_eq!(l.set_cap(&acme, amt("3")), None);
        l.charge(&charge("acme", &[], "2")).unwrap();
        assert_eq!(l.set_cap(&acme, amt("1")), Some(amt("3")));
        assert_eq!(l.account(&acme).remaining(), Some(Amount::ZERO));
        let err = l.charge(&charge("acme", &[], "0.1")).unwrap_err();
        assert!(
            matches!(err, LedgerError::Exceeded(Exceeded { remaining, .. }) if remaining == Amount::ZERO)
        );
        // A zero charge still fits.
        assert!(l.charge(&charge("acme", &[], "0")).is_ok());
        assert_eq!(l.clear_cap(&acme), Some(amt("1")));
        assert!(l.charge(&charge("acme", &[], "0.1")).is_ok());
        assert_eq!(l.clear_cap(&Scope::Global), Some(amt("10")));
        assert!(matches!(
            l.charge(&charge("acme", &[], "0.1")),
            Err(LedgerError::NoBudget { .. })
        ));
        // Clearing a cap never forgets spending.
        assert_eq!(l.account(&acme).spent, amt("2.1"));
        // An account with neither cap nor spending is forgotten.
        let ghost = Scope::Dataset("ghost".into());
        l.set_cap(&ghost, amt("1"));
        l.clear_cap(&ghost);
        assert!(l.accounts().iter().all(|(s, _)| *s != ghost));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let mut l = Ledger::new(Measure::PureEpsilon);
        l.set_cap(&Scope::Global, Amount::MAX);
        l.charge(&Charge {
            principal: "a".into(),
            datasets: ds(&[]),
            amount: Amount::from_nanos(u64::MAX - 1),
        })
        .unwrap();
        let before = l.clone();
        let err = l
            .charge(&Charge {
                principal: "b".into(),
                datasets: ds(&[]),
                amount: Amount::from_nanos(2),
            })
            .unwrap_err();
        assert_eq!(
            err,
            LedgerError::Overflow {
                scope: Scope::Global
            }
        );
        assert_eq!(l, before);
    }

    #[test]
    fn state_and_records_round_trip_through_json() {
        let mut l = Ledger::new(Measure::Zcdp);
        l.set_cap(&Scope::Global, amt("1"));
        let c = charge("acme", &["rent"], "0.125");
        let charged = l.charge(&c).unwrap();
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Ledger>(&json).unwrap(), l);
        let at = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let record = ChargeRecord::new("req-1", at, l.measure(), c, &charged);
        assert_eq!(record.left_after, amt("0.875"));
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<ChargeRecord>(&json).unwrap(), record);
        let scope = serde_json::to_string(&Scope::Dataset("rent".into())).unwrap();
        assert_eq!(scope, r#"{"scope":"dataset","name":"rent"}"#);
    }

    // ---- Data-driven budget scenarios: testdata/ledger.toml ----

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scenarios {
        scenario: Vec<Scenario>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scenario {
        name: String,
        #[serde(default)]
        measure: Option<String>,
        steps: Vec<Step>,
    }

    /// One step: a cap change (`cap` with `scope`) or a charge (`charge` with `principal` and `datasets`),
    /// with what it must give: `ok` (the binding remaining after a charge), or `err` (the error's text).
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Step {
        #[serde(default)]
        cap: Option<String>,
        #[serde(default)]
        clear: bool,
        #[serde(default)]
        scope: Option<String>,
        #[serde(default)]
        charge: Option<String>,
        #[serde(default)]
        principal: Option<String>,
        #[serde(default)]
        datasets: Vec<String>,
        #[serde(default)]
        ok: Option<String>,
        #[serde(default)]
        err: Option<String>,
    }

    fn scope_of(text: &str) -> Scope {
        match text.split_once(':') {
            None if text == "global" => Scope::Global,
            Some(("principal", p)) => Scope::Principal(p.to_owned()),
            Some(("dataset", d)) => Scope::Dataset(d.to_owned()),
            _ => panic!("bad scope {text}"),
        }
    }

    #[test]
    fn data_driven_budget_scenarios() {
        let s: Scenarios = toml::from_str(include_str!("../testdata/ledger.toml")).unwrap();
        assert!(s.scenario.len() >= 5);
        for sc in &s.scenario {
            let measure = sc.measure.as_deref().map_or(Measure::PureEpsilon, |m| {
                m.parse().unwrap_or_else(|e| panic!("{}: {e}", sc.name))
            });
            let mut l = Ledger::new(measure);
            for (i, step) in sc.steps.iter().enumerate() {
                let at = format!("{} step {}", sc.name, i + 1);
                if let Some(cap) = &step.cap {
                    let scope = scope_of(step.scope.as_deref().expect("scope"));
                    l.set_cap(&scope, amt(cap));
                    continue;
                }
                if step.clear {
                    l.clear_cap(&scope_of(step.scope.as_deref().expect("scope")));
                    continue;
                }
                let amount = step
                    .charge
                    .as_deref()
                    .unwrap_or_else(|| panic!("{at}: no op"));
                let c = Charge {
                    principal: step.principal.clone().unwrap_or_else(|| "Acme Bank".into()),
                    datasets: step.datasets.iter().cloned().collect(),
                    amount: amt(amount),
                };
                let before = l.clone();
                match (l.charge(&c), &step.ok, &step.err) {
                    (Ok(charged), Some(left), None) => {
                        assert_eq!(charged.left_after.to_string(), *left, "{at}")
                    }
                    (Err(e), None, Some(want)) => {
                        assert_eq!(e.to_string(), *want, "{at}");
                        assert_eq!(l, before, "{at}: a failed charge changed the ledger");
                    }
                    (got, _, _) => panic!("{at}: got {got:?}"),
                }
            }
        }
    }

    // ---- Properties ----

    #[derive(Debug, Clone)]
    enum Op {
        Charge(Charge),
        SetCap(Scope, Amount),
        ClearCap(Scope),
    }

    const PRINCIPALS: [&str; 3] = ["acme", "bolt", "cred"];
    const DATASETS: [&str; 3] = ["rent", "utilities", "bank"];

    fn arb_scope() -> impl Strategy<Value = Scope> {
        prop_oneof![
            Just(Scope::Global),
            proptest::sample::select(PRINCIPALS.to_vec()).prop_map(|p| Scope::Principal(p.into())),
            proptest::sample::select(DATASETS.to_vec()).prop_map(|d| Scope::Dataset(d.into())),
        ]
    }

    /// Amounts around a few units, plus the extremes.
    fn arb_amount() -> impl Strategy<Value = Amount> {
        prop_oneof![
            8 => (0u64..5_000_000_000).prop_map(Amount::from_nanos),
            1 => Just(Amount::ZERO),
            1 => (u64::MAX - 10..=u64::MAX).prop_map(Amount::from_nanos),
        ]
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (
                proptest::sample::select(PRINCIPALS.to_vec()),
                proptest::sample::subsequence(DATASETS.to_vec(), 0..=3),
                arb_amount(),
            )
                .prop_map(|(p, d, amount)| Op::Charge(Charge {
                    principal: p.into(),
                    datasets: d.into_iter().map(String::from).collect(),
                    amount,
                })),
            3 => (arb_scope(), arb_amount()).prop_map(|(s, a)| Op::SetCap(s, a)),
            1 => arb_scope().prop_map(Op::ClearCap),
        ]
    }

    proptest! {
        /// Over any sequence of charges and cap changes: a successful charge leaves every cap it falls
        /// under respected and adds exactly its amount to the accounts it touches; a failed one changes
        /// nothing; no account over its cap ever grows; and a charge goes through only under a global cap.
        #[test]
        fn spent_never_exceeds_a_cap(ops in proptest::collection::vec(arb_op(), 1..60)) {
            let mut l = Ledger::new(Measure::PureEpsilon);
            for op in ops {
                let before = l.clone();
                match op {
                    Op::SetCap(s, a) => { l.set_cap(&s, a); prop_assert_eq!(l.account(&s).cap, Some(a)); }
                    Op::ClearCap(s) => { l.clear_cap(&s); prop_assert_eq!(l.account(&s).cap, None); }
                    Op::Charge(c) => {
                        let checked = l.check(&c);
                        match l.charge(&c) {
                            Ok(charged) => {
                                prop_assert_eq!(checked, Ok(charged.left_after));
                                prop_assert!(before.global.cap.is_some());
                                let scopes: Vec<Scope> = std::iter::once(Scope::Global)
                                    .chain(std::iter::once(Scope::Principal(c.principal.clone())))
                                    .chain(c.datasets.iter().cloned().map(Scope::Dataset))
                                    .collect();
                                for (s, a) in l.accounts() {
                                    let old = before.account(&s);
                                    if scopes.contains(&s) {
                                        prop_assert_eq!(old.spent.checked_add(c.amount), Some(a.spent));
                                        // A zero charge fits even under a cap lowered below spent.
                                        if let (Some(cap), true) = (a.cap, c.amount > Amount::ZERO) {
                                            prop_assert!(a.spent <= cap, "{s}: {:?}", a);
                                        }
                                    } else {
                                        prop_assert_eq!(old, a);
                                    }
                                }
                                let mut left = Amount::MAX;
                                for s in &scopes {
                                    if let Some(r) = l.account(s).remaining() { left = left.min(r); }
                                }
                                prop_assert_eq!(charged.left_after, left);
                                prop_assert_eq!(l.remaining(&c.principal, &c.datasets), Some(left));
                            }
                            Err(e) => {
                                prop_assert_eq!(checked, Err(e.clone()));
                                prop_assert_eq!(&l, &before);
                                if let LedgerError::Exceeded(x) = e {
                                    prop_assert!(x.requested > x.remaining);
                                    prop_assert_eq!(x.remaining, x.cap.saturating_sub(x.spent));
                                    prop_assert_eq!(before.account(&x.scope).cap, Some(x.cap));
                                }
                            }
                        }
                    }
                }
                for (s, a) in l.accounts() {
                    let old = before.account(&s);
                    if let Some(cap) = a.cap {
                        if a.spent > cap {
                            prop_assert_eq!(a.spent, old.spent, "{} grew past its cap", s);
                        }
                    }
                }
            }
        }

        /// With a cap of exactly `k` times the cost, any interleaving of `k + extra` charges falling under
        /// it (from different principals and datasets) releases exactly `k`, whichever cap it is.
        #[test]
        fn exactly_k_releases_fit(
            k in 0u64..20,
            extra in 0usize..10,
            cost in 1u64..2_000_000_000_000,
            which in 0usize..3,
            order in Just((0..40).collect::<Vec<usize>>()).prop_shuffle(),
        ) {
            let cost = Amount::from_nanos(cost);
            let cap = cost.checked_mul(k).unwrap();
            let mut l = Ledger::new(Measure::PureEpsilon);
            // Every request falls under the binding cap; the other caps are generous.
            let big = Amount::from_nanos(u64::MAX);
            match which {
                0 => { l.set_cap(&Scope::Global, cap); }
                1 => { l.set_cap(&Scope::Global, big); l.set_cap(&Scope::Principal("acme".into()), cap); }
                _ => { l.set_cap(&Scope::Global, big); l.set_cap(&Scope::Dataset("rent".into()), cap); }
            }
            let n = k as usize + extra;
            let requests: Vec<Charge> = order
                .iter()
                .filter(|&&i| i < n)
                .map(|&i| Charge {
                    principal: if which == 1 { "acme".into() } else { PRINCIPALS[i % 3].into() },
                    datasets: ["rent", DATASETS[i % 3]].into_iter().map(String::from).collect(),
                    amount: cost,
                })
                .collect();
            prop_assert_eq!(requests.len(), n);
            let released = requests.iter().filter(|c| l.charge(c).is_ok()).count();
            prop_assert_eq!(released, k as usize);
        }
    }
}
