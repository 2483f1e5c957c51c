//! The decision for one release request: match the rules, then apply the hard guarantees.

use crate::backend::{Action, Backend};
use crate::ledger::Amount;
use crate::policy::{Condition, Policy, Rule, WILDCARD};
use crate::scoring::{Reveal, RevealKind, ScoringUse};
use crate::when::{RateCounts, Window};
use chrono::{Datelike, NaiveDateTime};
use duo_engine::Checked;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Everything a decision may depend on: who asks, through which backend, for which checked lineage, the
/// owner-declared tags of the datasets it reads, the privacy cost and budget, earlier releases (for rates)
/// and the time. Never the data.
///
/// Build it with [`RequestFacts::new`] and set the optional facts the node knows; a condition on a fact
/// left out does not hold.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The requesting FI's principal name.
    pub principal: &'a str,
    /// The backend the release would go through.
    pub backend: Backend,
    /// The checked lineage to release.
    pub checked: &'a Checked,
    /// Tags of every dataset the lineage reads, by dataset name. A dataset missing here has no tags.
    pub dataset_tags: &'a BTreeMap<String, Vec<String>>,
    /// Whether this principal already got a release of any of these catalogue attributes for the same window.
    pub already_released: bool,
    /// The backends this node can run now; a request for any other is denied (rule `"backend"`).
    /// [`RequestFacts::new`] sets [`Backend::DEFAULT_AVAILABLE`].
    pub available_backends: &'a [Backend],
    /// The request's privacy cost in the node's measure (DP releases only).
    pub cost: Option<Amount>,
    /// The smallest remaining budget over the caps the request falls under, after charging its cost
    /// ([`crate::Ledger::check`]); `None` when unknown or when the charge would fail.
    pub budget_left_after: Option<Amount>,
    /// Counts of earlier releases to this principal, for `rate` conditions.
    pub rate_counts: Option<&'a dyn RateCounts>,
    /// The node-local date and time of the request, for `hours` and `weekdays`.
    pub now: Option<NaiveDateTime>,
    /// For a private scoring run (`2pc`): what it reveals and what this principal used of the scoring
    /// limits in the current window. A `2pc` request without them is denied (rule `"scoring"`).
    pub scoring: Option<ScoringFacts>,
}

/// The facts of a private scoring request (backend `2pc`) that the node supplies in
/// [`RequestFacts::scoring`].
///
/// For such a request the node also sets [`RequestFacts::checked`] to the merged lineage of the model's
/// catalogue attributes: [`Checked::catalogue`] lists every attribute the model reads (over the window
/// ending at the last full month) and [`Checked::catalogue_only`] is false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoringFacts {
    /// What the run would reveal to the FI.
    pub reveal: Reveal,
    /// What this principal used of its scoring limits in the last
    /// [`crate::ScoringLimits::window_days`] days of the owner's policy ([`Policy::scoring_limits`]),
    /// not counting this run.
    pub used: ScoringUse,
    /// The number of attributes the model scores (what a reveal with reasons is counted over).
    pub attributes: usize,
}

impl<'a> RequestFacts<'a> {
    /// The facts of a request with only what every request has: no earlier release of its catalogue
    /// attributes, the backends of [`Backend::DEFAULT_AVAILABLE`], and no cost, budget, rate counts, time
    /// or scoring facts.
    pub fn new(
        principal: &'a str,
        backend: Backend,
        checked: &'a Checked,
        dataset_tags: &'a BTreeMap<String, Vec<String>>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            principal,
            backend,
            checked,
            dataset_tags,
            already_released: false,
            available_backends: Backend::DEFAULT_AVAILABLE,
            cost: None,
            budget_left_after: None,
            rate_counts: None,
            now: None,
            scoring: None,
        }
    }
}

impl fmt::Debug for RequestFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestFacts")
            .field("principal", &self.principal)
            .field("backend", &self.backend)
            .field("checked", &self.checked)
            .field("dataset_tags", &self.dataset_tags)
            .field("already_released", &self.already_released)
            .field("available_backends", &self.available_backends)
            .field("cost", &self.cost)
            .field("budget_left_after", &self.budget_left_after)
            .field("rate_counts", &self.rate_counts.map(|_| ".."))
            .field("now", &self.now)
            .field("scoring", &self.scoring)
            .finish()
    }
}

/// What happens to a release request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Release without asking the owner.
    Approve {
        /// The approving rule's name, or `"default"`.
        rule: String,
    },
    /// Refuse.
    Deny {
        /// The denying rule's name, `"default"`, or the guarantee that refused: `"backend"`, `"scoring"`,
        /// `"scoring-limit"`, `"score-release"` or `"reasons-release"` (see [`decide`]).
        rule: String,
        /// Why, in words meant for the FI.
        reason: String,
    },
    /// Put the request to the owner.
    Ask {
        /// The rule that matched (it may have approved; see `why`), or `"default"`.
        rule: String,
        /// Why the request goes to the owner, in plain words.
        why: String,
    },
}

impl Decision {
    /// The decision's action.
    pub fn action(&self) -> Action {
        match self {
            Decision::Approve { .. } => Action::Approve,
            Decision::Deny { .. } => Action::Deny,
            Decision::Ask { .. } => Action::Ask,
        }
    }

    /// The name of the rule behind the decision (`"default"` when none matched, or the name of the
    /// guarantee that denied it: `"backend"`, `"scoring"`, `"scoring-limit"`, `"score-release"`,
    /// `"reasons-release"`).
    pub fn rule(&self) -> &str {
        match self {
            Decision::Approve { rule }
            | Decision::Deny { rule, .. }
            | Decision::Ask { rule, .. } => rule,
        }
    }
}

/// The reason sent to the FI when no rule matches and the policy's default is to deny.
pub const DEFAULT_DENY_REASON: &str = "no policy rule allows this request";

/// Why the default action put a request to the owner.
pub const DEFAULT_ASK_WHY: &str = "no policy rule matches this request";

/// Guarantee: ad-hoc plaintext (anything but exactly one catalogue attribute) is never auto-approved.
pub const WHY_AD_HOC_PLAINTEXT: &str = "ad-hoc plaintext always goes to the owner";
/// Guarantee: plaintext catalogue attributes are auto-approved only over the latest window.
pub const WHY_NOT_LATEST: &str = "window does not end at the last full month";
/// Guarantee: plaintext catalogue attributes are auto-approved at most once per principal and window.
pub const WHY_ALREADY_RELEASED: &str = "already released to this principal for this window";
/// Guarantee: row-level releases are never auto-approved.
pub const WHY_ROW_LEVEL: &str = "a row-level release always goes to the owner";
/// Guarantee: several exact answers at once are never approved without the owner.
pub const WHY_PLAINTEXT_BATCH: &str =
    "several exact answers asked together always go to the owner (ask them one by one for the policy to decide)";
/// Guarantee: a DP release is auto-approved only when its privacy cost is known.
pub const WHY_DP_COST_UNKNOWN: &str = "the privacy cost of this dp release is not known";

/// Guarantee: a `2pc` request without [`RequestFacts::scoring`] is denied (rule `"scoring"`).
pub const REASON_NO_SCORING_FACTS: &str =
    "the owner's node gave no scoring facts (what the run would \
     reveal and the runs used) for this 2pc request";
/// Guarantee: a raw score is released only through a rule whose `reveal` lists `score` (rule
/// `"score-release"`).
pub const REASON_SCORE_RELEASE: &str =
    "a raw score can reveal an attribute outright, and no rule of \
     the owner's policy allows releasing one; ask for a decision or score bands instead";

/// Guarantee: a decision with reasons is released only through a rule whose `reveal` lists
/// `decision+reasons` (rule `"reasons-release"`).
pub const REASON_REASONS_RELEASE: &str =
    "reasons name which of your attributes cost the applicant \
     most, and no rule of the owner's policy allows releasing them; ask for a decision instead";

/// Decide a release request.
///
/// The rules are tried in order and the first whose conditions all hold gives the action; when none
/// matches, the policy's default does (reported as rule `"default"`). Then, whatever the rules say:
///
/// 1. A deny is final: it is returned as is, with the rule's reason.
/// 2. A backend this node cannot run ([`RequestFacts::available_backends`]; by default
///    [`Backend::DEFAULT_AVAILABLE`], without `dp` and `2pc`) is denied, as rule `"backend"`, so that the
///    node refuses cleanly.
/// 3. Plaintext is approved without the owner only when the lineage is exactly one catalogue attribute
///    ([`Checked::catalogue_only`]) over the window ending at the last full month (every
///    [`duo_engine::check::CatalogueUse::latest`]) and the principal has not had it for that window
///    ([`RequestFacts::already_released`]). Exact answers to ad-hoc questions can be differenced down to
///    single rows, so any other plaintext approval becomes an ask saying which condition failed.
/// 4. A row-level release ([`duo_engine::Type::is_row_level`]) is never approved without the owner: an
///    approval becomes an ask.
/// 5. A `dp` release whose cost is not in the facts is never approved without the owner.
/// 6. A `2pc` request (private scoring) without [`RequestFacts::scoring`], or whose reveal is not valid
///    ([`Reveal::is_valid`]), is denied, as rule `"scoring"`.
/// 7. A `2pc` request over the policy's limits ([`Policy::scoring_limits`], [`crate::ScoringLimits::check`]
///    on [`ScoringFacts::used`]) is denied, as rule `"scoring-limit"`, with the numbers. Limits are checked
///    after a rule's deny (which stays final, with its own name) and before an approve or an ask, so
///    neither a rule nor the owner can go over them.
/// 8. A `2pc` request revealing the raw score ([`Reveal::Score`]) is denied, as rule `"score-release"`,
///    unless the rule that matched has a `reveal` condition listing `score`; then its approve or ask
///    stands. The default action never releases a raw score.
/// 9. Likewise a `2pc` request revealing a decision with reasons ([`Reveal::DecisionReasons`]) is denied,
///    as rule `"reasons-release"`, unless the rule that matched has a `reveal` condition listing
///    `decision+reasons`: a rule allowing `decision` does not allow reasons.
///
/// Budgets are not enforced here but by the [`crate::Ledger`] at release: a rule may approve a request the
/// ledger then refuses.
///
/// When several guarantees turn an approval into an ask, `why` lists each of them, separated by `"; "`.
pub fn decide(policy: &Policy, facts: &RequestFacts<'_>) -> Decision {
    if facts.checked.items.is_empty() {
        return decide_one(policy, facts);
    }
    // A batch: each question is decided as if asked alone (with the batch's cost and budget facts, so a cost
    // cap reads the whole batch), and so is the whole; a denial of any denies the batch, an ask of any puts
    // it to the owner. A deny rule cannot be escaped by asking something else in the same breath.
    let mut ask = None;
    for (i, item) in facts.checked.items.iter().enumerate() {
        let alone = RequestFacts {
            checked: item,
            ..*facts
        };
        match decide_one(policy, &alone) {
            Decision::Deny { rule, reason } => {
                return Decision::Deny {
                    rule,
                    reason: format!("question {} of the batch: {reason}", i + 1),
                }
            }
            Decision::Ask { rule, why } => {
                ask.get_or_insert(Decision::Ask {
                    rule,
                    why: format!("question {} of the batch: {why}", i + 1),
                });
            }
            Decision::Approve { .. } => {}
        }
    }
    match (decide_one(policy, facts), ask) {
        (deny @ Decision::Deny { .. }, _) => deny,
        (_, Some(ask)) => ask,
        (whole, None) => whole,
    }
}

/// [`decide`] for one request as a whole (a batch's union of facts, or one question).
fn decide_one(policy: &Policy, facts: &RequestFacts<'_>) -> Decision {
    let matched = policy.first_match(facts);
    let (rule, action, reason) = match matched {
        Some(r) => (r.name(), r.action(), r.reason()),
        None => ("default", policy.default_action(), None),
    };
    let rule = rule.to_owned();
    if action == Action::Deny {
        let reason = reason.unwrap_or(DEFAULT_DENY_REASON).to_owned();
        return Decision::Deny { rule, reason };
    }
    if !facts.available_backends.contains(&facts.backend) {
        return Decision::Deny {
            rule: "backend".to_owned(),
            reason: format!(
                "backend `{}` is not available on this node yet",
                facts.backend
            ),
        };
    }
    if facts.backend == Backend::TwoPc {
        if let Some(deny) = scoring_denial(policy, matched, facts) {
            return deny;
        }
    }
    match action {
        Action::Ask => {
            let why = match reason {
                Some(reason) => reason.to_owned(),
                None if rule == "default" => DEFAULT_ASK_WHY.to_owned(),
                None => format!("rule `{rule}` puts this request to the owner"),
            };
            Decision::Ask { rule, why }
        }
        // A deny returned above; only an approval is left.
        Action::Approve | Action::Deny => {
            let blockers = approval_blockers(facts);
            if blockers.is_empty() {
                Decision::Approve { rule }
            } else {
                Decision::Ask {
                    rule,
                    why: blockers.join("; "),
                }
            }
        }
    }
}

/// Guarantees 6 to 9 of [`decide`] for a `2pc` request whose rule did not deny: the denial, if any.
fn scoring_denial(
    policy: &Policy,
    matched: Option<&Rule>,
    facts: &RequestFacts<'_>,
) -> Option<Decision> {
    let deny = |rule: &str, reason: String| {
        Some(Decision::Deny {
            rule: rule.to_owned(),
            reason,
        })
    };
    let Some(scoring) = facts.scoring else {
        return deny("scoring", REASON_NO_SCORING_FACTS.to_owned());
    };
    if !scoring.reveal.is_valid() {
        return deny(
            "scoring",
            format!(
                "{} is not a reveal this node runs; the number of bands must be from {} to {} and of \
                 reasons from 1 to {}",
                scoring.reveal,
                Reveal::MIN_BANDS,
                Reveal::MAX_BANDS,
                Reveal::MAX_REASONS
            ),
        );
    }
    if scoring.reveal.reasons() > scoring.attributes {
        return deny(
            "scoring",
            format!(
                "{} of a model with {} attributes: a decline cannot name more reasons than the \
                 model has attributes",
                scoring.reveal, scoring.attributes
            ),
        );
    }
    if let Err(e) = policy
        .scoring_limits()
        .check(&scoring.used, scoring.reveal, scoring.attributes)
    {
        return deny("scoring-limit", e.to_string());
    }
    if scoring.reveal == Reveal::Score && !matched.is_some_and(|r| lists(r, RevealKind::Score)) {
        return deny("score-release", REASON_SCORE_RELEASE.to_owned());
    }
    if matches!(scoring.reveal, Reveal::DecisionReasons { .. })
        && !matched.is_some_and(|r| lists(r, RevealKind::DecisionReasons))
    {
        return deny("reasons-release", REASON_REASONS_RELEASE.to_owned());
    }
    None
}

/// Whether a rule has a `reveal` condition listing `kind`.
fn lists(rule: &Rule, kind: RevealKind) -> bool {
    rule.conditions()
        .iter()
        .any(|c| matches!(c, Condition::Reveal(kinds) if kinds.contains(&kind)))
}

/// How many releases a request counts as against a `rate`: one per question of a batch, else one.
pub fn releases(checked: &Checked) -> u64 {
    checked.items.len().max(1) as u64
}

/// The hard guarantees that forbid approving this request without the owner, in plain words (empty when
/// an approving rule may stand). See [`decide`].
pub fn approval_blockers(facts: &RequestFacts<'_>) -> Vec<&'static str> {
    let checked = facts.checked;
    let mut blockers = Vec::new();
    if checked.ty.is_row_level() {
        blockers.push(WHY_ROW_LEVEL);
    }
    if facts.backend == Backend::Plaintext {
        if checked.items.len() > 1 {
            blockers.push(WHY_PLAINTEXT_BATCH);
        } else if !checked.catalogue_only || checked.catalogue.is_empty() {
            blockers.push(WHY_AD_HOC_PLAINTEXT);
        } else {
            if !checked.catalogue.iter().all(|c| c.latest) {
                blockers.push(WHY_NOT_LATEST);
            }
            if facts.already_released {
                blockers.push(WHY_ALREADY_RELEASED);
            }
        }
    }
    if facts.backend == Backend::Dp && facts.cost.is_none() {
        blockers.push(WHY_DP_COST_UNKNOWN);
    }
    blockers
}

impl Policy {
    /// The first rule whose conditions all hold for this request, if any.
    pub fn first_match(&self, facts: &RequestFacts<'_>) -> Option<&Rule> {
        self.rules().iter().find(|r| r.matches(facts))
    }

    /// The rate counters a release of this request increments: `(rule, window)` for every rule with a
    /// `rate` whose other conditions all hold for it. The node calls this when it releases (in the same
    /// transaction), whoever approved, and counts per principal; [`RateCounts`] then reads the counts back.
    pub fn rate_counters(&self, facts: &RequestFacts<'_>) -> Vec<(String, Window)> {
        let mut out = Vec::new();
        for rule in self.rules() {
            let mut window = None;
            let mut others_hold = true;
            for c in rule.conditions() {
                match c {
                    Condition::Rate(limit) => window = Some(limit.per),
                    other => others_hold &= other.matches(rule.name(), facts),
                }
            }
            if let (Some(window), true) = (window, others_hold) {
                out.push((rule.name().to_owned(), window));
            }
        }
        out
    }
}

impl Rule {
    /// Whether every condition of the rule holds for this request.
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        self.conditions()
            .iter()
            .all(|c| c.matches(self.name(), facts))
    }
}

impl Condition {
    /// Whether this condition of the rule named `rule` holds for this request (the name keys the rate
    /// counts). Names compare exactly (case matters).
    pub fn matches(&self, rule: &str, facts: &RequestFacts<'_>) -> bool {
        let checked = facts.checked;
        match self {
            Condition::Principal(names) => {
                names.iter().any(|n| n == WILDCARD || n == facts.principal)
            }
            Condition::Backend(backends) => backends.contains(&facts.backend),
            Condition::Reveal(kinds) => {
                facts.backend == Backend::TwoPc
                    && facts
                        .scoring
                        .is_some_and(|s| kinds.contains(&RevealKind::from(s.reveal)))
            }
            Condition::Datasets(names) => checked.datasets.iter().all(|d| names.contains(d)),
            Condition::Tags(tags) => checked.datasets.iter().all(|d| {
                facts
                    .dataset_tags
                    .get(d)
                    .is_some_and(|have| have.iter().any(|t| tags.contains(t)))
            }),
            Condition::Ops(ops) => checked.op_kinds.is_subset(ops),
            Condition::Catalogue(names) => {
                let listed = |name: &str| names.iter().any(|n| n == WILDCARD || n == name);
                if facts.backend == Backend::TwoPc {
                    // A scoring run's lineage merges every attribute of the model.
                    !checked.catalogue.is_empty()
                        && checked.catalogue.iter().all(|c| listed(&c.name))
                } else if !checked.items.is_empty() {
                    // A batch: every question is one listed attribute.
                    checked
                        .items
                        .iter()
                        .all(|item| match item.catalogue.as_slice() {
                            [only] if item.catalogue_only => listed(&only.name),
                            _ => false,
                        })
                } else {
                    match checked.catalogue.as_slice() {
                        [only] if checked.catalogue_only => listed(&only.name),
                        _ => false,
                    }
                }
            }
            Condition::RowLevel(row_level) => checked.ty.is_row_level() == *row_level,
            Condition::DatasetsAny(names) => checked.datasets.iter().any(|d| names.contains(d)),
            Condition::TagsAny(tags) => checked.datasets.iter().any(|d| {
                facts
                    .dataset_tags
                    .get(d)
                    .is_some_and(|have| have.iter().any(|t| tags.contains(t)))
            }),
            Condition::MaxCost(max) => facts.cost.is_some_and(|c| c <= *max),
            Condition::MinBudgetLeft(min) => {
                facts.cost.is_some() && facts.budget_left_after.is_some_and(|left| left >= *min)
            }
            // A batch counts one release per question, all of which must fit.
            Condition::Rate(limit) => facts.rate_counts.is_some_and(|counts| {
                counts.count(rule, limit.per) + releases(checked) <= limit.max
            }),
            Condition::Hours(hours) => facts.now.is_some_and(|now| hours.contains(now)),
            Condition::Weekdays(days) => facts.now.is_some_and(|now| days.contains(&now.weekday())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveDateTime};
    use duo_engine::check::CatalogueUse;
    use duo_engine::{DataType, Expr, OpKind, Type, Value};
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::BTreeSet;

    /// One case of `testdata/decide.toml`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        name: String,
        /// Policy text, or "@default" / "@demo" for the built-in ones.
        policy: String,
        #[serde(default = "acme")]
        principal: String,
        #[serde(default = "plaintext")]
        backend: String,
        #[serde(default)]
        row_level: bool,
        #[serde(default)]
        datasets: Vec<String>,
        #[serde(default)]
        tags: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        ops: Vec<String>,
        #[serde(default)]
        catalogue: Vec<CaseCatalogue>,
        #[serde(default)]
        catalogue_only: bool,
        #[serde(default)]
        already_released: bool,
        /// Backends the node runs; plaintext only when left out.
        available: Option<Vec<String>>,
        /// The request's cost, a decimal.
        cost: Option<String>,
        /// The budget left after it, a decimal.
        budget_left: Option<String>,
        /// Rate counts by "rule/window"; no counts at all when left out.
        rates: Option<BTreeMap<String, u64>>,
        /// Node-local time, "YYYY-MM-DDTHH:MM".
        now: Option<String>,
        /// The rate counters a release would increment, as "rule/window".
        counters: Option<Vec<String>>,
        expect: String,
        rule: String,
        /// The exact reason (deny) or why (ask).
        says: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CaseCatalogue {
        name: String,
        latest: bool,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cases {
        case: Vec<Case>,
    }

    fn acme() -> String {
        "Acme Bank".to_owned()
    }

    fn plaintext() -> String {
        "plaintext".to_owned()
    }

    fn window_end() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 5, 31).unwrap()
    }

    fn ty(row_level: bool) -> Type {
        if row_level {
            Type::Column {
                dtype: DataType::Money,
                bounds: None,
                max_len: 365,
            }
        } else {
            Type::Scalar {
                dtype: DataType::F64,
                bounds: None,
            }
        }
    }

    fn checked_for(case: &Case) -> Checked {
        let catalogue: Vec<CatalogueUse> = case
            .catalogue
            .iter()
            .map(|c| CatalogueUse {
                name: c.name.clone(),
                window_end: window_end(),
                latest: c.latest,
            })
            .collect();
        let expr = match catalogue.first() {
            Some(c) if case.catalogue_only => Expr::Catalogue {
                name: c.name.clone(),
                window_end: Some(c.window_end),
            },
            _ => Expr::Literal { value: Value::Null },
        };
        Checked {
            expr,
            ty: ty(case.row_level),
            datasets: case.datasets.iter().cloned().collect(),
            columns: BTreeSet::new(),
            op_kinds: case
                .ops
                .iter()
                .map(|o| OpKind::from_name(o).unwrap_or_else(|| panic!("{}: op {o}", case.name)))
                .collect(),
            catalogue,
            catalogue_only: case.catalogue_only,
            nodes: 1,
            items: Vec::new(),
        }
    }

    #[test]
    fn data_driven_cases() {
        let cases: Cases = toml::from_str(include_str!("../testdata/decide.toml")).unwrap();
        assert!(cases.case.len() >= 60, "the case file lost cases");
        let mut names = BTreeSet::new();
        for case in &cases.case {
            assert!(
                names.insert(&case.name),
                "duplicate case name {}",
                case.name
            );
            let text = match case.policy.as_str() {
                "@default" => Policy::default_text(),
                "@demo" => Policy::demo_text(),
                text => text,
            };
            let policy = Policy::parse(text).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let checked = checked_for(case);
            let available: Option<Vec<Backend>> = case
                .available
                .as_ref()
                .map(|a| a.iter().map(|b| b.parse().unwrap()).collect());
            let rates: Option<BTreeMap<(String, Window), u64>> = case.rates.as_ref().map(|r| {
                r.iter()
                    .map(|(k, v)| {
                        let (rule, w) = k.rsplit_once('/').expect("rule/window");
                        ((rule.to_owned(), w.parse().unwrap()), *v)
                    })
                    .collect()
            });
            let mut facts = RequestFacts::new(
                &case.principal,
                case.backend.parse().unwrap(),
                &checked,
                &case.tags,
            );
            facts.already_released = case.already_released;
            if let Some(a) = &available {
                facts.available_backends = a;
            }
            facts.cost = case.cost.as_ref().map(|c| c.parse().unwrap());
            facts.budget_left_after = case.budget_left.as_ref().map(|c| c.parse().unwrap());
            facts.rate_counts = rates.as_ref().map(|r| r as &dyn RateCounts);
            facts.now = case.now.as_ref().map(|t| {
                NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M")
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name))
            });
            if let Some(want) = &case.counters {
                let got: Vec<String> = policy
                    .rate_counters(&facts)
                    .into_iter()
                    .map(|(r, w)| format!("{r}/{w}"))
                    .collect();
                assert_eq!(&got, want, "{}: rate counters", case.name);
            }
            let got = decide(&policy, &facts);
            let (action, said) = match &got {
                Decision::Approve { .. } => ("approve", None),
                Decision::Deny { reason, .. } => ("deny", Some(reason)),
                Decision::Ask { why, .. } => ("ask", Some(why)),
            };
            assert_eq!(action, case.expect, "{}: got {got:?}", case.name);
            assert_eq!(got.rule(), case.rule, "{}: got {got:?}", case.name);
            assert_eq!(got.action().name(), case.expect);
            if let Some(says) = &case.says {
                assert_eq!(said, Some(says), "{}: got {got:?}", case.name);
            }
        }
    }

    /// One question as checked alone: a single latest catalogue attribute, or an ad-hoc count, over `dataset`.
    fn question(attr: Option<&str>, dataset: &str) -> Checked {
        let mut c = scoring_checked(&attr.into_iter().collect::<Vec<_>>());
        c.datasets = [dataset.to_owned()].into();
        c.catalogue_only = attr.is_some();
        if attr.is_none() {
            c.op_kinds = [OpKind::Count].into();
        }
        c
    }

    /// A batch of questions, with their union as the engine's checker makes it.
    fn batch(items: Vec<Checked>) -> Checked {
        let mut b = question(None, "x");
        b.datasets = items.iter().flat_map(|i| i.datasets.clone()).collect();
        b.op_kinds = items.iter().flat_map(|i| i.op_kinds.clone()).collect();
        b.catalogue = items.iter().flat_map(|i| i.catalogue.clone()).collect();
        b.catalogue_only = items.iter().all(|i| i.catalogue_only);
        b.ty = Type::Batch {
            items: items.iter().map(|i| i.ty.clone()).collect(),
        };
        b.items = items;
        b
    }

    /// Review finding: a deny rule that matches a question alone also denies a batch holding it (catalogue,
    /// `ops` and `datasets` conditions read the batch's union, which the other questions change); several
    /// exact answers at once go to the owner; a `rate` counts each question.
    #[test]
    fn a_batch_cannot_escape_a_deny_or_a_rate_by_its_other_questions() {
        let policy = Policy::parse(
            r#"
default = "ask"
[[rule]]
name = "no-income"
catalogue = ["income_cv_12m"]
action = "deny"
reason = "not income"
[[rule]]
name = "no-counts"
ops = ["count"]
action = "deny"
reason = "no counts"
[[rule]]
name = "no-bank"
datasets = ["bank"]
action = "deny"
reason = "not the bank"
[[rule]]
name = "attributes"
backend = ["plaintext", "dp"]
catalogue = ["*"]
action = "approve"
[[rule]]
name = "dp"
backend = ["dp"]
rate = { max = 2, per = "30d" }
action = "approve"
"#,
        )
        .unwrap();
        let tags = BTreeMap::new();
        let decide_on = |checked: &Checked, backend: Backend, used: u64| {
            let counts: BTreeMap<(String, Window), u64> =
                [(("dp".to_owned(), "30d".parse().unwrap()), used)].into();
            let mut facts = RequestFacts::new("Acme", backend, checked, &tags);
            facts.cost = Some("0.1".parse().unwrap());
            facts.rate_counts = Some(&counts);
            decide(&policy, &facts)
        };
        let income = question(Some("income_cv_12m"), "transactions");
        let rent = question(Some("rent_on_time_ratio_12m"), "rent");
        assert_eq!(
            decide_on(&income, Backend::Plaintext, 0).rule(),
            "no-income"
        );
        for b in [Backend::Plaintext, Backend::Dp] {
            let d = decide_on(&batch(vec![income.clone(), rent.clone()]), b, 0);
            assert_eq!(d.rule(), "no-income", "{b}: {d:?}");
            assert_eq!(d.action().name(), "deny");
        }
        let d = decide_on(
            &batch(vec![question(None, "rent"), rent.clone()]),
            Backend::Dp,
            0,
        );
        assert_eq!(
            (d.rule(), d.action().name()),
            ("no-counts", "deny"),
            "{d:?}"
        );
        let d = decide_on(
            &batch(vec![
                question(Some("avg_daily_balance_3m"), "bank"),
                rent.clone(),
            ]),
            Backend::Dp,
            0,
        );
        assert_eq!((d.rule(), d.action().name()), ("no-bank", "deny"), "{d:?}");
        // Two attributes in plaintext: each alone would be approved, together they go to the owner.
        let two = batch(vec![
            rent.clone(),
            question(Some("utility_on_time_ratio_12m"), "bills"),
        ]);
        assert_eq!(
            decide_on(&rent, Backend::Plaintext, 0).action().name(),
            "approve"
        );
        let d = decide_on(&two, Backend::Plaintext, 0);
        assert!(
            matches!(&d, Decision::Ask { why, .. } if why.contains(WHY_PLAINTEXT_BATCH)),
            "{d:?}"
        );
        // Through dp the rate counts each question: two fit a limit of 2 once, not after one release.
        let dp_two = batch(vec![question(None, "rent"), question(None, "bills")]);
        let unlisted = Policy::parse(
            r#"
default = "ask"
[[rule]]
name = "dp"
backend = ["dp"]
rate = { max = 2, per = "30d" }
action = "approve"
"#,
        )
        .unwrap();
        let with = |used: u64| {
            let counts: BTreeMap<(String, Window), u64> =
                [(("dp".to_owned(), "30d".parse().unwrap()), used)].into();
            let mut facts = RequestFacts::new("Acme", Backend::Dp, &dp_two, &tags);
            facts.available_backends = &[Backend::Plaintext, Backend::Dp];
            facts.cost = Some("0.1".parse().unwrap());
            facts.rate_counts = Some(&counts);
            decide(&unlisted, &facts).action().name()
        };
        assert_eq!((with(0), with(1)), ("approve", "ask"));
    }

    #[test]
    fn decisions_serialize_with_a_tag() {
        let d = Decision::Deny {
            rule: "r".into(),
            reason: "no".into(),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, r#"{"decision":"deny","rule":"r","reason":"no"}"#);
        assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
    }

    /// The merged lineage the node builds for a scoring run over these catalogue attributes (latest window).
    fn scoring_checked(names: &[&str]) -> Checked {
        Checked {
            expr: Expr::Literal { value: Value::Null },
            ty: ty(false),
            datasets: BTreeSet::new(),
            columns: BTreeSet::new(),
            op_kinds: [OpKind::Catalogue].into(),
            catalogue: names
                .iter()
                .map(|n| CatalogueUse {
                    name: (*n).to_owned(),
                    window_end: window_end(),
                    latest: true,
                })
                .collect(),
            catalogue_only: false,
            nodes: names.len(),
            items: Vec::new(),
        }
    }

    const WITH_2PC: &[Backend] = &[Backend::Plaintext, Backend::TwoPc];

    /// Decide a 2pc request by Acme Bank revealing `reveal`, with `used` of the limits.
    fn decide_2pc(policy: &str, names: &[&str], reveal: Reveal, used: ScoringUse) -> Decision {
        let policy = Policy::parse(policy).unwrap();
        let checked = scoring_checked(names);
        let tags = BTreeMap::new();
        let facts = RequestFacts {
            available_backends: WITH_2PC,
            scoring: Some(ScoringFacts {
                reveal,
                used,
                attributes: names.len(),
            }),
            ..RequestFacts::new("Acme Bank", Backend::TwoPc, &checked, &tags)
        };
        decide(&policy, &facts)
    }

    const ATTRS: [&str; 2] = ["rent_on_time_ratio_12m", "income_cv_12m"];

    fn unused() -> ScoringUse {
        ScoringUse::default()
    }

    #[test]
    fn demo_approves_private_decisions() {
        let d = decide_2pc(Policy::demo_text(), &ATTRS, Reveal::Decision, unused());
        assert_eq!(
            d,
            Decision::Approve {
                rule: "private-decision".into()
            }
        );
        // Bands are not covered by the demo rule: the default asks.
        let d = decide_2pc(
            Policy::demo_text(),
            &ATTRS,
            Reveal::Bands { k: 4 },
            unused(),
        );
        assert_eq!(
            d,
            Decision::Ask {
                rule: "default".into(),
                why: DEFAULT_ASK_WHY.into()
            }
        );
    }

    #[test]
    fn bands_are_asked_under_the_default_policy() {
        let d = decide_2pc(
            Policy::default_text(),
            &ATTRS,
            Reveal::Bands { k: 4 },
            ScoringUse {
                runs: 2,
                millibits: 2_000,
            },
        );
        assert_eq!(
            d,
            Decision::Ask {
                rule: "default".into(),
                why: DEFAULT_ASK_WHY.into()
            }
        );
        // The default policy has no bit cap: a decision after 2 runs of 16 bands is still asked.
        let d = decide_2pc(
            Policy::default_text(),
            &ATTRS,
            Reveal::Decision,
            ScoringUse {
                runs: 2,
                millibits: 8_000,
            },
        );
        assert_eq!(d.action(), Action::Ask);
    }

    #[test]
    fn reasons_are_denied_without_a_rule_that_lists_them() {
        let reasons = Reveal::DecisionReasons { k: 2 };
        let reasons_release = Decision::Deny {
            rule: "reasons-release".into(),
            reason: REASON_REASONS_RELEASE.into(),
        };
        for policy in [
            // A rule allowing decisions does not allow reasons.
            "[[rule]]\nname = \"d\"\nreveal = [\"decision\"]\naction = \"approve\"\n",
            "[[rule]]\nname = \"all\"\nprincipal = [\"*\"]\nbackend = [\"2pc\"]\naction = \"approve\"\n",
            "default = \"approve\"",
            "default = \"ask\"",
            Policy::default_text(),
        ] {
            assert_eq!(
                decide_2pc(policy, &ATTRS, reasons, unused()),
                reasons_release,
                "{policy}"
            );
        }
        // A rule listing the kind allows it, approve or ask.
        let listed = "[[rule]]\nname = \"why\"\nreveal = [\"decision\", \"decision+reasons\"]\n\
                      action = \"approve\"\n";
        assert_eq!(
            decide_2pc(listed, &ATTRS, reasons, unused()),
            Decision::Approve { rule: "why".into() }
        );
        let ask = listed.replace("approve", "ask");
        assert_eq!(
            decide_2pc(&ask, &ATTRS, reasons, unused()).action(),
            Action::Ask
        );
        // More reasons than attributes, or a count out of range, are not runs this node does.
        for bad in [
            Reveal::DecisionReasons { k: 3 },
            Reveal::DecisionReasons { k: 5 },
        ] {
            assert_eq!(decide_2pc(listed, &ATTRS, bad, unused()).rule(), "scoring");
        }
        // The bit cap counts ceil(log2(2·1)) + 1 = 2 bits for 2 reasons of 2 attributes.
        let capped = format!("{listed}[scoring]\nmax_bits = 2.5\n");
        assert_eq!(
            decide_2pc(&capped, &ATTRS, reasons, unused()).action(),
            Action::Approve
        );
        let used = ScoringUse {
            runs: 0,
            millibits: 1_000,
        };
        assert_eq!(
            decide_2pc(&capped, &ATTRS, reasons, used).rule(),
            "scoring-limit"
        );
    }

    #[test]
    fn raw_score_is_denied_without_a_rule_that_lists_it() {
        let score_release = Decision::Deny {
            rule: "score-release".into(),
            reason: REASON_SCORE_RELEASE.into(),
        };
        for policy in [
            // A broad approve rule matches, but does not list score.
            "[[rule]]\nname = \"all\"\nprincipal = [\"*\"]\nbackend = [\"2pc\"]\naction = \"approve\"\n",
            // Nor does a reveal rule listing the other kinds.
            "[[rule]]\nname = \"most\"\nreveal = [\"decision\", \"bands\"]\naction = \"approve\"\n",
            // The default action never releases a raw score, approve or ask.
            "default = \"approve\"",
            "default = \"ask\"",
            Policy::default_text(),
        ] {
            assert_eq!(
                decide_2pc(policy, &ATTRS, Reveal::Score, unused()),
                score_release,
                "{policy}"
            );
        }
        assert!(REASON_SCORE_RELEASE.contains("can reveal an attribute outright"));
        // Under the demo policy the 4-bit cap refuses 64 bits first: limits come before the release check.
        let d = decide_2pc(Policy::demo_text(), &ATTRS, Reveal::Score, unused());
        assert_eq!(d.rule(), "scoring-limit");
        assert!(
            matches!(&d, Decision::Deny { reason, .. } if reason.contains("64 bits, more than the cap of 4 bits"))
        );
    }

    #[test]
    fn raw_score_follows_a_rule_that_lists_it() {
        let approve = "[[rule]]\nname = \"scores\"\nreveal = [\"score\"]\naction = \"approve\"\n";
        assert_eq!(
            decide_2pc(approve, &ATTRS, Reveal::Score, unused()),
            Decision::Approve {
                rule: "scores".into()
            }
        );
        let ask = "[[rule]]\nname = \"scores\"\nreveal = [\"decision\", \"score\"]\naction = \"ask\"\nreason = \"raw scores need me\"\n";
        assert_eq!(
            decide_2pc(ask, &ATTRS, Reveal::Score, unused()),
            Decision::Ask {
                rule: "scores".into(),
                why: "raw scores need me".into()
            }
        );
        // The rule's reveal holds for a decision too.
        assert_eq!(
            decide_2pc(ask, &ATTRS, Reveal::Decision, unused()).rule(),
            "scores"
        );
        // A reveal rule does not match bands when it lists only score: the default decides.
        assert_eq!(
            decide_2pc(approve, &ATTRS, Reveal::Bands { k: 2 }, unused()).rule(),
            "default"
        );
    }

    #[test]
    fn limits_win_over_approve_and_ask() {
        let full = ScoringUse {
            runs: 3,
            millibits: 3_000,
        };
        let d = decide_2pc(Policy::demo_text(), &ATTRS, Reveal::Decision, full);
        assert_eq!(
            d,
            Decision::Deny {
                rule: "scoring-limit".into(),
                reason: "3 of 3 scoring runs in the last 30 days used; another run is possible \
                         once the oldest of them is more than 30 days old"
                    .into()
            }
        );
        // Two runs used: the third fits.
        let two = ScoringUse {
            runs: 2,
            millibits: 2_000,
        };
        assert_eq!(
            decide_2pc(Policy::demo_text(), &ATTRS, Reveal::Decision, two).action(),
            Action::Approve
        );
        // The demo's 4-bit cap: 2 bits used, 4 bands (2 bits) fit exactly; 5 bands do not, and that
        // denial wins over the ask of the default.
        assert_eq!(
            decide_2pc(Policy::demo_text(), &ATTRS, Reveal::Bands { k: 4 }, two).action(),
            Action::Ask
        );
        let d = decide_2pc(Policy::demo_text(), &ATTRS, Reveal::Bands { k: 5 }, two);
        assert_eq!(d.rule(), "scoring-limit");
        assert!(matches!(&d, Decision::Deny { reason, .. } if reason.contains("2.322 bits")));
        // Also over an approving rule that allows raw scores.
        let scores = "[scoring]\nmax_runs = 10\nmax_bits = 100\n\n[[rule]]\nname = \"scores\"\nreveal = [\"score\"]\naction = \"approve\"\n";
        let used = ScoringUse {
            runs: 1,
            millibits: 64_000,
        };
        let d = decide_2pc(scores, &ATTRS, Reveal::Score, used);
        assert_eq!(d.rule(), "scoring-limit");
        assert_eq!(d.action(), Action::Deny);
    }

    #[test]
    fn a_deny_rule_keeps_its_name_over_the_limits() {
        let policy = "[[rule]]\nname = \"no-scoring\"\nbackend = [\"2pc\"]\naction = \"deny\"\nreason = \"not today\"\n";
        let over = ScoringUse {
            runs: 99,
            millibits: 0,
        };
        for reveal in [Reveal::Decision, Reveal::Score] {
            assert_eq!(
                decide_2pc(policy, &ATTRS, reveal, over),
                Decision::Deny {
                    rule: "no-scoring".into(),
                    reason: "not today".into()
                }
            );
        }
    }

    #[test]
    fn scoring_needs_its_facts_and_a_valid_reveal() {
        let policy = Policy::parse("default = \"approve\"").unwrap();
        let checked = scoring_checked(&ATTRS);
        let tags = BTreeMap::new();
        let facts = RequestFacts {
            available_backends: WITH_2PC,
            ..RequestFacts::new("Acme Bank", Backend::TwoPc, &checked, &tags)
        };
        assert_eq!(
            decide(&policy, &facts),
            Decision::Deny {
                rule: "scoring".into(),
                reason: REASON_NO_SCORING_FACTS.into()
            }
        );
        // An unavailable backend is refused as such first.
        let unavailable = RequestFacts::new("Acme Bank", Backend::TwoPc, &checked, &tags);
        assert_eq!(decide(&policy, &unavailable).rule(), "backend");
        let d = decide_2pc(
            "default = \"approve\"",
            &ATTRS,
            Reveal::Bands { k: 17 },
            unused(),
        );
        assert_eq!(
            d,
            Decision::Deny {
                rule: "scoring".into(),
                reason:
                    "17 bands is not a reveal this node runs; the number of bands must be from \
                         2 to 16 and of reasons from 1 to 4"
                        .into()
            }
        );
        // Scoring facts do not change other backends' decisions.
        let plain = scoring_checked(&ATTRS[..1]);
        let facts = RequestFacts {
            scoring: Some(ScoringFacts {
                reveal: Reveal::Score,
                used: ScoringUse {
                    runs: 99,
                    millibits: 0,
                },
                attributes: 2,
            }),
            ..RequestFacts::new("Acme Bank", Backend::Plaintext, &plain, &tags)
        };
        assert_eq!(decide(&policy, &facts).action(), Action::Ask);
    }

    #[test]
    fn reveal_condition_holds_only_for_scoring_requests() {
        let policy = Policy::parse(
            "[[rule]]\nname = \"decisions\"\nreveal = [\"decision\"]\naction = \"approve\"\n",
        )
        .unwrap();
        let rule = &policy.rules()[0];
        let checked = scoring_checked(&ATTRS);
        let tags = BTreeMap::new();
        let scoring = Some(ScoringFacts {
            reveal: Reveal::Decision,
            used: unused(),
            attributes: 2,
        });
        let twopc = RequestFacts {
            scoring,
            ..RequestFacts::new("Acme Bank", Backend::TwoPc, &checked, &tags)
        };
        assert!(rule.matches(&twopc));
        let no_facts = RequestFacts::new("Acme Bank", Backend::TwoPc, &checked, &tags);
        assert!(!rule.matches(&no_facts));
        let plaintext = RequestFacts {
            scoring,
            ..RequestFacts::new("Acme Bank", Backend::Plaintext, &checked, &tags)
        };
        assert!(!rule.matches(&plaintext));
        let bands = RequestFacts {
            scoring: Some(ScoringFacts {
                reveal: Reveal::Bands { k: 2 },
                used: unused(),
                attributes: 2,
            }),
            ..twopc
        };
        assert!(!rule.matches(&bands));
        assert!(format!("{twopc:?}").contains("reveal: Decision"));
    }

    #[test]
    fn catalogue_condition_covers_every_attribute_of_a_scoring_run() {
        let rule = |list: &str| {
            format!(
                "[[rule]]\nname = \"model\"\nbackend = [\"2pc\"]\ncatalogue = {list}\naction = \"approve\"\n"
            )
        };
        let two = rule(r#"["rent_on_time_ratio_12m", "income_cv_12m"]"#);
        let any = rule(r#"["*"]"#);
        let cases: &[(&str, &[&str], &str)] = &[
            (&two, &ATTRS, "model"),
            (&two, &["income_cv_12m"], "model"),
            (
                &two,
                &[
                    "rent_on_time_ratio_12m",
                    "income_cv_12m",
                    "nsf_overdraft_count_90d",
                ],
                "default",
            ),
            (&two, &[], "default"),
            (
                &any,
                &[
                    "rent_on_time_ratio_12m",
                    "income_cv_12m",
                    "nsf_overdraft_count_90d",
                ],
                "model",
            ),
            (&any, &[], "default"),
        ];
        for (policy, names, want) in cases {
            let d = decide_2pc(policy, names, Reveal::Decision, unused());
            assert_eq!(d.rule(), *want, "{names:?} under {policy}");
        }
        // For plaintext the condition keeps its meaning: exactly one catalogue attribute.
        let policy = Policy::parse(&any).unwrap();
        let checked = scoring_checked(&ATTRS);
        let tags = BTreeMap::new();
        let plain = RequestFacts::new("Acme Bank", Backend::Plaintext, &checked, &tags);
        assert!(!policy.rules()[0].conditions()[1].matches("model", &plain));
    }

    const NAMES: [&str; 3] = [
        "rent_on_time_ratio_12m",
        "income_cv_12m",
        "nsf_overdraft_count_90d",
    ];
    const DATASETS: [&str; 3] = ["rent", "utilities", "bank"];
    const TAGS: [&str; 3] = ["housing", "bills", "bank"];

    /// Rule bodies for generated policies; most of them approve, to stress the guarantees.
    const RULE_BODIES: [&str; 16] = [
        "action = \"approve\"",
        "row_level = true\naction = \"approve\"",
        "backend = [\"plaintext\"]\naction = \"approve\"",
        "catalogue = [\"*\"]\naction = \"approve\"",
        "principal = [\"*\"]\nbackend = [\"plaintext\", \"dp\", \"2pc\"]\naction = \"approve\"",
        "datasets = [\"rent\", \"utilities\"]\nops = [\"select\", \"filter\", \"mean\", \"count\"]\naction = \"approve\"",
        "tags = [\"housing\"]\naction = \"approve\"",
        "principal = [\"Acme Bank\"]\nrow_level = false\naction = \"approve\"",
        "tags = [\"bank\"]\naction = \"deny\"\nreason = \"no bank data\"",
        "catalogue = [\"income_cv_12m\"]\naction = \"ask\"",
        "backend = [\"dp\"]\nmax_cost = \"1\"\naction = \"approve\"",
        "tags_any = [\"bank\"]\naction = \"deny\"\nreason = \"no bank data\"",
        "backend = [\"2pc\"]\nreveal = [\"score\", \"bands\"]\naction = \"approve\"",
        "reveal = [\"decision\"]\naction = \"ask\"",
        "reveal = [\"decision+reasons\"]\naction = \"approve\"",
        "backend = [\"2pc\"]\ncatalogue = [\"*\"]\naction = \"approve\"",
    ];

    fn arb_type() -> impl Strategy<Value = Type> {
        prop_oneof![
            Just(Type::Table {
                dataset: "rent".into(),
                columns: vec![("amount".into(), DataType::Money)],
                max_rows: 100,
                window: None,
            }),
            Just(ty(true)),
            Just(ty(false)),
            (1usize..24).prop_map(|len| Type::Vector {
                dtype: DataType::F64,
                len,
                bounds: None
            }),
            Just(Type::Histogram {
                edges: vec![0.0, 1.0, 2.0]
            }),
        ]
    }

    fn arb_checked() -> impl Strategy<Value = Checked> {
        (
            arb_type(),
            proptest::sample::subsequence(DATASETS.to_vec(), 0..=3),
            proptest::sample::subsequence(OpKind::ALL.to_vec(), 0..=6),
            proptest::collection::vec(
                (proptest::sample::select(NAMES.to_vec()), any::<bool>()),
                0..3,
            ),
            any::<bool>(),
        )
            .prop_map(|(ty, datasets, ops, uses, catalogue_only)| Checked {
                expr: Expr::Literal { value: Value::Null },
                ty,
                datasets: datasets.into_iter().map(String::from).collect(),
                columns: BTreeSet::new(),
                op_kinds: ops.into_iter().collect(),
                catalogue: uses
                    .into_iter()
                    .map(|(name, latest)| CatalogueUse {
                        name: name.into(),
                        window_end: window_end(),
                        latest,
                    })
                    .collect(),
                catalogue_only,
                nodes: 1,
                items: Vec::new(),
            })
    }

    fn arb_policy() -> impl Strategy<Value = String> {
        (
            proptest::sample::select(vec!["approve", "deny", "ask"]),
            proptest::collection::vec(proptest::sample::select(RULE_BODIES.to_vec()), 0..5),
            proptest::option::of((1u32..5, proptest::option::of(1u32..10))),
        )
            .prop_map(|(default, bodies, scoring)| {
                let mut text = format!("default = \"{default}\"\n");
                if let Some((max_runs, max_bits)) = scoring {
                    text.push_str(&format!("[scoring]\nmax_runs = {max_runs}\n"));
                    if let Some(bits) = max_bits {
                        text.push_str(&format!("max_bits = {bits}\n"));
                    }
                }
                for (i, body) in bodies.iter().enumerate() {
                    text.push_str(&format!("\n[[rule]]\nname = \"r{i}\"\n{body}\n"));
                }
                text
            })
    }

    fn arb_scoring() -> impl Strategy<Value = ScoringFacts> {
        (
            prop_oneof![
                Just(Reveal::Decision),
                Just(Reveal::Score),
                (0u32..20).prop_map(|k| Reveal::Bands { k }),
                (0u32..6).prop_map(|k| Reveal::DecisionReasons { k }),
            ],
            0u32..6,
            0u64..12_000,
            1usize..6,
        )
            .prop_map(|(reveal, runs, millibits, attributes)| ScoringFacts {
                reveal,
                used: ScoringUse { runs, millibits },
                attributes,
            })
    }

    fn arb_tags() -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
        proptest::collection::btree_map(
            proptest::sample::select(DATASETS.to_vec()).prop_map(String::from),
            proptest::sample::subsequence(TAGS.to_vec(), 0..=2)
                .prop_map(|t| t.into_iter().map(String::from).collect()),
            0..=3,
        )
    }

    proptest! {
        #[test]
        fn guarantees_hold_for_any_policy(
            policy in arb_policy(),
            checked in arb_checked(),
            tags in arb_tags(),
            backend in proptest::sample::select(Backend::ALL.to_vec()),
            principal in proptest::sample::select(vec!["Acme Bank", "Bolt Lending"]),
            already_released in any::<bool>(),
            available in proptest::sample::subsequence(Backend::ALL.to_vec(), 0..=3),
            cost in proptest::option::of((0u64..3_000_000_000).prop_map(Amount::from_nanos)),
            scoring in proptest::option::of(arb_scoring()),
        ) {
            let policy = Policy::parse(&policy).unwrap();
            let mut facts = RequestFacts::new(principal, backend, &checked, &tags);
            facts.already_released = already_released;
            facts.available_backends = &available;
            facts.cost = cost;
            facts.scoring = scoring;
            let decision = decide(&policy, &facts);
            if checked.ty.is_row_level() {
                prop_assert_ne!(decision.action(), Action::Approve, "{:?}", decision);
            }
            if backend == Backend::Plaintext && !checked.catalogue_only {
                prop_assert_ne!(decision.action(), Action::Approve, "{:?}", decision);
            }
            if !available.contains(&backend) {
                prop_assert_ne!(decision.action(), Action::Approve, "{:?}", decision);
                prop_assert_ne!(decision.action(), Action::Ask, "{:?}", decision);
            }
            if decision.action() == Action::Approve {
                prop_assert!(available.contains(&backend));
                prop_assert!(backend != Backend::Dp || cost.is_some());
                prop_assert!(approval_blockers(&facts).is_empty());
                prop_assert!(!already_released || backend != Backend::Plaintext);
            }
            // A scoring run goes ahead (or to the owner) only with valid facts, within the limits, and
            // reveals a raw score only through a rule that lists it.
            if backend == Backend::TwoPc && decision.action() != Action::Deny {
                let s = scoring.expect("scoring facts");
                prop_assert!(s.reveal.is_valid());
                prop_assert!(policy.scoring_limits().check(&s.used, s.reveal, s.attributes).is_ok());
                prop_assert!(s.reveal.reasons() <= s.attributes);
                if s.reveal == Reveal::Score {
                    prop_assert!(policy.first_match(&facts).is_some_and(|r| lists(r, RevealKind::Score)));
                }
                if let Reveal::DecisionReasons { .. } = s.reveal {
                    prop_assert!(policy
                        .first_match(&facts)
                        .is_some_and(|r| lists(r, RevealKind::DecisionReasons)));
                }
            }
            // A denying first match is final, whatever the backend and the guarantees.
            if let Some(rule) = policy.first_match(&facts) {
                if rule.action() == Action::Deny {
                    prop_assert_eq!(
                        &decision,
                        &Decision::Deny { rule: rule.name().to_owned(), reason: "no bank data".to_owned() }
                    );
                }
            }
        }
    }
}
