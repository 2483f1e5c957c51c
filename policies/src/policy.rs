//! Owner policies: an ordered list of rules in TOML, and their parser.
//!
//! The file format is described in the crate documentation and in the comments of
//! [`Policy::default_text`]. Parsing is strict: an unknown key, an unknown name, a duplicate rule name or an
//! empty list is a [`PolicyError`] pointing at the line and column of the offending value, so that a typo
//! never silently turns a rule off.

use crate::backend::{Action, Backend};
use crate::ledger::Amount;
use crate::scoring::{RevealKind, ScoringLimits};
use crate::when::{weekday_from_name, Hours, RateLimit, Window, WEEKDAY_NAMES};
use chrono::Weekday;
use duo_engine::OpKind;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::ops::Range;
use toml::Spanned;

/// The wildcard that matches any principal or any catalogue attribute.
pub const WILDCARD: &str = "*";

/// Rule names that decisions use for something other than a rule; a rule may not take them.
pub const RESERVED_RULE_NAMES: [&str; 6] = [
    "default",
    "backend",
    "scoring",
    "scoring-limit",
    "score-release",
    "reasons-release",
];

/// The most scoring runs per window a policy's `[scoring]` table may allow.
pub const MAX_SCORING_RUNS: u32 = 1_000;
/// The longest scoring window, in days, a policy's `[scoring]` table may set.
pub const MAX_SCORING_WINDOW_DAYS: u32 = 366;

/// The largest `min_group_count` a policy's `[dp]` table may set.
pub const MAX_MIN_GROUP_COUNT: u32 = 1_000_000;

/// An owner's policy: rules tried in order, and the action when none matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: Action,
    rules: Vec<Rule>,
    catalogue_refs: Vec<(String, usize)>,
    scoring: ScoringLimits,
    min_group_count: Option<u32>,
}

/// One rule: a name, conditions that must all hold, and an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    name: String,
    line: usize,
    conditions: Vec<Condition>,
    action: Action,
    reason: Option<String>,
}

/// One condition of a rule. A rule matches a request when all its conditions hold; a rule with no
/// conditions matches every request.
///
/// Conditions depend only on the principal, the request and its checked lineage, budgets and time (never
/// on the data). A condition on a fact the node did not supply (a cost, a remaining budget, rate counts,
/// the time) does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// `principal`: the requesting principal is listed, or the list holds `"*"`.
    Principal(Vec<String>),
    /// `backend`: the request's backend is listed.
    Backend(Vec<Backend>),
    /// `reveal`: the request is a private scoring run (`2pc`) whose output kind is listed
    /// ([`crate::ScoringFacts::reveal`]). A request without scoring facts does not match. A raw score is
    /// released only through a rule whose `reveal` lists `score` (see [`crate::decide`]).
    Reveal(Vec<RevealKind>),
    /// `datasets`: every dataset the lineage reads is listed.
    Datasets(Vec<String>),
    /// `tags`: every dataset the lineage reads carries at least one of these tags.
    Tags(Vec<String>),
    /// `ops`: every kind of operation the lineage uses is listed.
    Ops(BTreeSet<OpKind>),
    /// `catalogue`: the lineage is exactly one catalogue attribute, and its name is listed (or the list
    /// holds `"*"`). For a `2pc` request, whose lineage merges the model's attributes: it uses at least
    /// one catalogue attribute and every one of them is listed (or the list holds `"*"`).
    Catalogue(Vec<String>),
    /// `row_level`: whether the release reveals rows (a table or a column) equals this.
    RowLevel(bool),
    /// `datasets_any`: at least one dataset the lineage reads is listed (a lineage reading no dataset does
    /// not match). Use it in deny rules: reading a second dataset cannot dodge it.
    DatasetsAny(Vec<String>),
    /// `tags_any`: at least one dataset the lineage reads carries at least one of these tags.
    TagsAny(Vec<String>),
    /// `max_cost`: the request has a privacy cost in the node's measure, at most this.
    MaxCost(Amount),
    /// `min_budget_left`: the request has a privacy cost, and the smallest remaining budget over the caps it
    /// falls under, after it, is at least this.
    MinBudgetLeft(Amount),
    /// `rate`: the principal has had fewer than `max` releases matching this rule's other conditions
    /// within the window.
    Rate(RateLimit),
    /// `hours`: the node-local time of day is in this range.
    Hours(Hours),
    /// `weekdays`: the node-local day of the week is listed.
    Weekdays(Vec<Weekday>),
}

/// A policy file that does not parse, with the place of the offending value (1-based line and column;
/// columns count characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct PolicyError {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
    /// What is wrong, in plain words.
    pub message: String,
}

impl Policy {
    /// Parse a policy file (see the crate documentation for the format).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            // Syntax errors come on several lines ("invalid table header\nexpected ..."); keep one.
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            // The raw tables' type names mean nothing to the owner.
            let message = ["RawScoring", "RawRate", "RawRule"]
                .iter()
                .fold(message, |m, raw| {
                    m.replace(&format!("expected struct {raw}"), "expected a table")
                });
            error_at(text, at, message)
        })?;
        let err = |span: Range<usize>, message: String| error_at(text, span.start, message);

        let default = match &raw.default {
            None => Action::Ask,
            Some(d) => d
                .get_ref()
                .parse::<Action>()
                .map_err(|e| err(d.span(), e.to_string()))?,
        };

        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut catalogue_refs = Vec::new();
        let mut names = BTreeSet::new();
        for spanned in raw.rule {
            let rule_span = spanned.span();
            let r = spanned.into_inner();
            let Some(name) = r.name else {
                return Err(err(rule_span, "a rule needs a `name`".to_owned()));
            };
            let name_span = name.span();
            let name = name.into_inner();
            if name.trim().is_empty() {
                return Err(err(name_span, "a rule name cannot be empty".to_owned()));
            }
            if RESERVED_RULE_NAMES.contains(&name.as_str()) {
                return Err(err(
                    name_span,
                    format!("`{name}` is reserved; choose another rule name"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(err(
                    name_span,
                    format!("another rule is already named `{name}`"),
                ));
            }
            let Some(action) = r.action else {
                return Err(err(
                    rule_span,
                    format!("rule `{name}` needs an `action` (approve, deny or ask)"),
                ));
            };
            let action_span = action.span();
            let action = action
                .get_ref()
                .parse::<Action>()
                .map_err(|e| err(action_span.clone(), e.to_string()))?;
            let reason = match r.reason {
                Some(reason) if reason.get_ref().trim().is_empty() => {
                    return Err(err(reason.span(), "a reason cannot be empty".to_owned()));
                }
                Some(reason) => Some(reason.into_inner()),
                None => None,
            };
            if action == Action::Deny && reason.is_none() {
                return Err(err(
                    action_span,
                    format!("rule `{name}` denies, so it needs a `reason` (it is sent to the FI)"),
                ));
            }

            let mut conditions = Vec::new();
            if let Some(list) = r.principal {
                conditions.push(Condition::Principal(strings(text, "principal", list)?));
            }
            if let Some(list) = r.backend {
                let items = non_empty(text, "backend", list)?;
                let mut backends = Vec::with_capacity(items.len());
                for b in items {
                    let parsed = b
                        .get_ref()
                        .parse::<Backend>()
                        .map_err(|e| err(b.span(), e.to_string()))?;
                    backends.push(parsed);
                }
                conditions.push(Condition::Backend(backends));
            }
            if let Some(list) = r.reveal {
                let items = non_empty(text, "reveal", list)?;
                let mut kinds = Vec::with_capacity(items.len());
                for k in items {
                    let kind = k
                        .get_ref()
                        .parse::<RevealKind>()
                        .map_err(|e| err(k.span(), e.to_string()))?;
                    if kinds.contains(&kind) {
                        return Err(err(
                            k.span(),
                            format!("`{kind}` is listed twice in `reveal`"),
                        ));
                    }
                    kinds.push(kind);
                }
                conditions.push(Condition::Reveal(kinds));
            }
            if let Some(list) = r.datasets {
                conditions.push(Condition::Datasets(strings(text, "datasets", list)?));
            }
            if let Some(list) = r.tags {
                conditions.push(Condition::Tags(strings(text, "tags", list)?));
            }
            if let Some(list) = r.ops {
                let items = non_empty(text, "ops", list)?;
                let mut ops = BTreeSet::new();
                for o in items {
                    let kind = OpKind::from_name(o.get_ref()).ok_or_else(|| {
                        err(
                            o.span(),
                            format!(
                                "unknown operation kind `{}`; expected one of: {}",
                                o.get_ref(),
                                op_names()
                            ),
                        )
                    })?;
                    ops.insert(kind);
                }
                conditions.push(Condition::Ops(ops));
            }
            if let Some(list) = r.catalogue {
                let items = non_empty(text, "catalogue", list)?;
                let mut names = Vec::with_capacity(items.len());
                for c in items {
                    if c.get_ref().trim().is_empty() {
                        return Err(err(
                            c.span(),
                            "`catalogue` names cannot be empty".to_owned(),
                        ));
                    }
                    if c.get_ref() != WILDCARD {
                        catalogue_refs
                            .push((c.get_ref().clone(), position(text, c.span().start).0));
                    }
                    names.push(c.into_inner());
                }
                conditions.push(Condition::Catalogue(names));
            }
            if let Some(row_level) = r.row_level {
                conditions.push(Condition::RowLevel(row_level.into_inner()));
            }
            if let Some(list) = r.datasets_any {
                conditions.push(Condition::DatasetsAny(strings(text, "datasets_any", list)?));
            }
            if let Some(list) = r.tags_any {
                conditions.push(Condition::TagsAny(strings(text, "tags_any", list)?));
            }
            if let Some(v) = r.max_cost {
                conditions.push(Condition::MaxCost(amount(text, "max_cost", v)?));
            }
            if let Some(v) = r.min_budget_left {
                conditions.push(Condition::MinBudgetLeft(amount(
                    text,
                    "min_budget_left",
                    v,
                )?));
            }
            if let Some(rate) = r.rate {
                conditions.push(Condition::Rate(rate_limit(text, rate)?));
            }
            if let Some(hours) = r.hours {
                let parsed = hours
                    .get_ref()
                    .parse::<Hours>()
                    .map_err(|m| err(hours.span(), m))?;
                conditions.push(Condition::Hours(parsed));
            }
            if let Some(list) = r.weekdays {
                let items = non_empty(text, "weekdays", list)?;
                let mut days = Vec::with_capacity(items.len());
                for d in items {
                    let day = weekday_from_name(d.get_ref()).ok_or_else(|| {
                        err(
                            d.span(),
                            format!(
                                "unknown day `{}`; expected one of: {}",
                                d.get_ref(),
                                WEEKDAY_NAMES.join(", ")
                            ),
                        )
                    })?;
                    if days.contains(&day) {
                        return Err(err(
                            d.span(),
                            format!("`{}` is listed twice in `weekdays`", d.get_ref()),
                        ));
                    }
                    days.push(day);
                }
                conditions.push(Condition::Weekdays(days));
            }

            rules.push(Rule {
                name,
                line: position(text, rule_span.start).0,
                conditions,
                action,
                reason,
            });
        }
        let scoring = match raw.scoring {
            None => ScoringLimits::default(),
            Some(table) => scoring_limits(text, table)?,
        };
        let min_group_count = match raw.dp.and_then(|t| t.into_inner().min_group_count) {
            None => None,
            Some(v) => Some(
                u32::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| (1..=MAX_MIN_GROUP_COUNT).contains(n))
                    .ok_or_else(|| {
                        error_at(
                            text,
                            v.span().start,
                            format!(
                                "`dp.min_group_count` must be a whole number from 1 to \
                                 {MAX_MIN_GROUP_COUNT} (leave it out to release every group)"
                            ),
                        )
                    })?,
            ),
        };
        Ok(Policy {
            default,
            rules,
            catalogue_refs,
            scoring,
            min_group_count,
        })
    }

    /// The commented default policy that `duo owner init` writes: ask by default, and deny row-level
    /// releases. Its comments document the whole format:
    ///
    #[doc = concat!("```toml\n", include_str!("default_policy.toml"), "```")]
    pub fn default_text() -> &'static str {
        include_str!("default_policy.toml")
    }

    /// The policy `duo demo` uses: deny row-level releases, approve plaintext catalogue attributes for any
    /// principal (subject to the guarantees of [`crate::decide`]), and ask otherwise:
    ///
    #[doc = concat!("```toml\n", include_str!("demo_policy.toml"), "```")]
    pub fn demo_text() -> &'static str {
        include_str!("demo_policy.toml")
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The action when no rule matches (`ask` unless the file says otherwise).
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// Every catalogue attribute name the rules mention (not `"*"`), with the line it is on, so that the
    /// caller can check them against the engine's catalogue.
    pub fn catalogue_names(&self) -> Vec<(String, usize)> {
        self.catalogue_refs.clone()
    }

    /// The limits on private scoring runs per principal: the `[scoring]` table, or
    /// [`ScoringLimits::default`] (3 runs per 30 days, no bit cap) where it or one of its keys is left out.
    pub fn scoring_limits(&self) -> &ScoringLimits {
        &self.scoring
    }

    /// Small-count suppression of grouped DP releases (`by_month`, `by_category`): the `[dp]` table's
    /// `min_group_count`, or `None` (every group released) when it is left out. A group whose **noisy** count
    /// is below it is withheld (released as null); the decision rests on the noisy count, never the exact
    /// one, so it reveals nothing the DP release does not. How the node gets a noisy count for a grouped sum
    /// (a second noisy part, half the budget) is in docs/dp.md.
    pub fn min_group_count(&self) -> Option<u32> {
        self.min_group_count
    }
}

impl Rule {
    /// The rule's name (unique in its policy).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The line of the rule's `[[rule]]` header (1-based).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The conditions, all of which must hold for the rule to match.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// What the rule does with a request it matches.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The rule's reason: for a deny rule it is always present and is sent to the FI; for ask it is shown
    /// to the owner.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// The hex SHA-256 of a policy text. The node stores it with what it showed the owner, so that an approval
/// given under one policy is not applied after the policy changed.
pub fn policy_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    data_encoding::HEXLOWER.encode(&Sha256::digest(text.as_bytes()))
}

type SpannedList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    scoring: Option<Spanned<RawScoring>>,
    dp: Option<Spanned<RawDp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDp {
    min_group_count: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScoring {
    max_runs: Option<Spanned<i64>>,
    window_days: Option<Spanned<i64>>,
    max_bits: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    principal: Option<SpannedList>,
    backend: Option<SpannedList>,
    reveal: Option<SpannedList>,
    datasets: Option<SpannedList>,
    tags: Option<SpannedList>,
    ops: Option<SpannedList>,
    catalogue: Option<SpannedList>,
    row_level: Option<Spanned<bool>>,
    datasets_any: Option<SpannedList>,
    tags_any: Option<SpannedList>,
    max_cost: Option<Spanned<toml::Value>>,
    min_budget_left: Option<Spanned<toml::Value>>,
    rate: Option<Spanned<RawRate>>,
    hours: Option<Spanned<String>>,
    weekdays: Option<SpannedList>,
    action: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    max: Option<Spanned<i64>>,
    per: Option<Spanned<String>>,
}

/// An amount of privacy loss: a decimal string (`"0.5"`, exact), or a TOML number (`0.5`, read through
/// its shortest decimal form, so that `0.1` means exactly 0.1).
fn amount(text: &str, key: &str, value: Spanned<toml::Value>) -> Result<Amount, PolicyError> {
    let span = value.span();
    let fail = |message: String| error_at(text, span.start, message);
    let decimal = match value.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) if *i >= 0 => i.to_string(),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => {
            // `Display` for floats gives the shortest decimal that reads back as the same float, never
            // an exponent.
            f.to_string()
        }
        _ => {
            return Err(fail(format!(
                "`{key}` must be a non-negative decimal such as \"0.5\""
            )))
        }
    };
    decimal
        .parse::<Amount>()
        .map_err(|e| fail(format!("`{key}`: {e}")))
}

/// `rate = { max = N, per = "hour" | "day" | "30d" }`.
fn rate_limit(text: &str, rate: Spanned<RawRate>) -> Result<RateLimit, PolicyError> {
    let span = rate.span();
    let raw = rate.into_inner();
    let Some(max) = raw.max else {
        return Err(error_at(
            text,
            span.start,
            "`rate` needs `max`, the number of releases allowed per window".to_owned(),
        ));
    };
    let Some(per) = raw.per else {
        return Err(error_at(
            text,
            span.start,
            "`rate` needs `per`: \"hour\", \"day\" or \"30d\"".to_owned(),
        ));
    };
    let max_value = u64::try_from(*max.get_ref())
        .ok()
        .filter(|m| *m >= 1)
        .ok_or_else(|| {
            error_at(
                text,
                max.span().start,
                "`rate.max` must be at least 1 (a deny rule refuses outright)".to_owned(),
            )
        })?;
    let window = per
        .get_ref()
        .parse::<Window>()
        .map_err(|e| error_at(text, per.span().start, e.to_string()))?;
    Ok(RateLimit {
        max: max_value,
        per: window,
    })
}

/// `[scoring]`: `max_runs` (1 to 1000), `window_days` (1 to 366), `max_bits` (optional, positive); the
/// defaults for keys left out.
fn scoring_limits(text: &str, table: Spanned<RawScoring>) -> Result<ScoringLimits, PolicyError> {
    let raw = table.into_inner();
    let mut limits = ScoringLimits::default();
    let whole = |key: &str, value: Spanned<i64>, max: u32| {
        u32::try_from(*value.get_ref())
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| {
                error_at(
                    text,
                    value.span().start,
                    format!("`scoring.{key}` must be a whole number from 1 to {max}"),
                )
            })
    };
    if let Some(v) = raw.max_runs {
        limits.max_runs = whole("max_runs", v, MAX_SCORING_RUNS)?;
    }
    if let Some(v) = raw.window_days {
        limits.window_days = whole("window_days", v, MAX_SCORING_WINDOW_DAYS)?;
    }
    if let Some(v) = raw.max_bits {
        let bits = match v.get_ref() {
            toml::Value::Integer(i) if *i > 0 => Some(*i as f64),
            toml::Value::Float(f) if f.is_finite() && *f > 0.0 => Some(*f),
            _ => None,
        };
        let Some(bits) = bits else {
            return Err(error_at(
                text,
                v.span().start,
                "`scoring.max_bits` must be a positive number of bits, such as 4 (leave it out for \
                 no cap)"
                    .to_owned(),
            ));
        };
        limits.max_bits = Some(bits);
    }
    Ok(limits)
}

/// The items of a list, or an error at the list if it is empty.
fn non_empty(
    text: &str,
    key: &str,
    list: SpannedList,
) -> Result<Vec<Spanned<String>>, PolicyError> {
    let span = list.span();
    let items = list.into_inner();
    if items.is_empty() {
        return Err(error_at(
            text,
            span.start,
            format!("`{key}` cannot be an empty list; leave the key out to match anything"),
        ));
    }
    Ok(items)
}

/// A non-empty list of non-empty names.
fn strings(text: &str, key: &str, list: SpannedList) -> Result<Vec<String>, PolicyError> {
    let items = non_empty(text, key, list)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if item.get_ref().trim().is_empty() {
            return Err(error_at(
                text,
                item.span().start,
                format!("`{key}` names cannot be empty"),
            ));
        }
        out.push(item.into_inner());
    }
    Ok(out)
}

fn op_names() -> String {
    OpKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_at(text: &str, offset: usize, message: String) -> PolicyError {
    let (line, column) = position(text, offset);
    PolicyError {
        line,
        column,
        message,
    }
}

/// The 1-based line and column (in characters) of a byte offset; offsets past the end give the end.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            policy_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(policy_hash("default = \"ask\"\n").len(), 64);
    }

    #[test]
    fn minimal_policy_defaults_to_ask() {
        let p = Policy::parse("").unwrap();
        assert_eq!(p.default_action(), Action::Ask);
        assert!(p.rules().is_empty());
        let p = Policy::parse("default = \"deny\"").unwrap();
        assert_eq!(p.default_action(), Action::Deny);
    }

    #[test]
    fn parses_every_condition() {
        let text = r#"
default = "approve"

[[rule]]
name = "everything"
principal = ["Acme Bank", "*"]
backend = ["plaintext", "2pc"]
reveal = ["decision", "score"]
datasets = ["rent"]
tags = ["housing"]
ops = ["mean", "count", "by_month"]
catalogue = ["rent_on_time_ratio_12m", "*"]
row_level = false
datasets_any = ["bank"]
tags_any = ["bank", "phone"]
max_cost = "0.5"
min_budget_left = 1
rate = { max = 3, per = "30d" }
hours = "22:00-06:00"
weekdays = ["sat", "sun"]
action = "ask"
reason = "check with me"

[[rule]]
name = "bare"
action = "approve"
"#;
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.default_action(), Action::Approve);
        assert_eq!(p.rules().len(), 2);
        let r = &p.rules()[0];
        assert_eq!(r.name(), "everything");
        assert_eq!(r.line(), 4);
        assert_eq!(r.action(), Action::Ask);
        assert_eq!(r.reason(), Some("check with me"));
        assert_eq!(
            r.conditions(),
            &[
                Condition::Principal(vec!["Acme Bank".into(), "*".into()]),
                Condition::Backend(vec![Backend::Plaintext, Backend::TwoPc]),
                Condition::Reveal(vec![RevealKind::Decision, RevealKind::Score]),
                Condition::Datasets(vec!["rent".into()]),
                Condition::Tags(vec!["housing".into()]),
                Condition::Ops([OpKind::Mean, OpKind::Count, OpKind::ByMonth].into()),
                Condition::Catalogue(vec!["rent_on_time_ratio_12m".into(), "*".into()]),
                Condition::RowLevel(false),
                Condition::DatasetsAny(vec!["bank".into()]),
                Condition::TagsAny(vec!["bank".into(), "phone".into()]),
                Condition::MaxCost(Amount::from_nanos(500_000_000)),
                Condition::MinBudgetLeft(Amount::from_nanos(1_000_000_000)),
                Condition::Rate(RateLimit {
                    max: 3,
                    per: Window::Days30
                }),
                Condition::Hours(Hours {
                    start: 22 * 60,
                    end: 6 * 60
                }),
                Condition::Weekdays(vec![Weekday::Sat, Weekday::Sun]),
            ]
        );
        let bare = &p.rules()[1];
        assert_eq!(bare.line(), 24);
        assert!(bare.conditions().is_empty());
        assert_eq!(bare.reason(), None);
        assert_eq!(
            p.catalogue_names(),
            vec![("rent_on_time_ratio_12m".to_owned(), 12)]
        );
        // No [scoring] table: the default limits.
        assert_eq!(p.scoring_limits(), &ScoringLimits::default());
    }

    /// `[dp] min_group_count`: absent by default (every group released), a whole number from 1 to
    /// 1,000,000 otherwise; anything else is an error at the value, and an unknown key in `[dp]` too.
    #[test]
    fn parses_the_dp_table() {
        assert_eq!(Policy::parse("").unwrap().min_group_count(), None);
        assert_eq!(Policy::parse("[dp]\n").unwrap().min_group_count(), None);
        let p = Policy::parse("default = \"ask\"\n[dp]\nmin_group_count = 10\n").unwrap();
        assert_eq!(p.min_group_count(), Some(10));
        assert_eq!(
            Policy::parse("[dp]\nmin_group_count = 1000000\n")
                .unwrap()
                .min_group_count(),
            Some(1_000_000)
        );
        for bad in ["0", "-3", "1000001", "99999999999"] {
            let e = Policy::parse(&format!("[dp]\nmin_group_count = {bad}\n")).unwrap_err();
            assert_eq!((e.line, e.column), (2, 19), "{bad}: {e:?}");
            assert!(
                e.message.contains("whole number from 1 to 1000000"),
                "{e:?}"
            );
        }
        for bad in [
            "[dp]\nmin_group_count = 2.5\n",
            "[dp]\nmin_group_count = \"10\"\n",
            "[dp]\nmin_count = 10\n",
        ] {
            let e = Policy::parse(bad).unwrap_err();
            assert_eq!(e.line, 2, "{bad}: {e:?}");
        }
    }

    #[test]
    fn parses_the_scoring_table() {
        let p =
            Policy::parse("[scoring]\nmax_runs = 5\nwindow_days = 7\nmax_bits = 2.5\n").unwrap();
        assert_eq!(
            p.scoring_limits(),
            &ScoringLimits {
                max_runs: 5,
                window_days: 7,
                max_bits: Some(2.5)
            }
        );
        // Keys left out keep their defaults; an integer cap is read as bits.
        let p = Policy::parse("default = \"deny\"\n[scoring]\nmax_bits = 4\n").unwrap();
        assert_eq!(
            p.scoring_limits(),
            &ScoringLimits {
                max_runs: 3,
                window_days: 30,
                max_bits: Some(4.0)
            }
        );
        assert_eq!(p.default_action(), Action::Deny);
        let p = Policy::parse("[scoring]\n").unwrap();
        assert_eq!(p.scoring_limits(), &ScoringLimits::default());
        // The table may come after the rules, and the edges of each range are accepted.
        let p = Policy::parse(
            "[[rule]]\nname = \"a\"\naction = \"ask\"\n\n[scoring]\nmax_runs = 1000\nwindow_days = 366\n",
        )
        .unwrap();
        assert_eq!(p.rules().len(), 1);
        assert_eq!(p.scoring_limits().max_runs, 1000);
        assert_eq!(p.scoring_limits().window_days, 366);
        let p = Policy::parse("[scoring]\nmax_runs = 1\nwindow_days = 1\n").unwrap();
        assert_eq!(
            (p.scoring_limits().max_runs, p.scoring_limits().window_days),
            (1, 1)
        );
    }

    /// Every kind of parse error, with where it must point.
    #[test]
    fn errors_point_at_the_offending_value() {
        let cases: &[(&str, &str, usize, usize, &str)] = &[
            // (what, text, line, column, part of the message)
            (
                "unknown top-level key",
                "defualt = \"ask\"\n",
                1,
                1,
                "unknown field `defualt`",
            ),
            (
                "unknown rule key",
                "[[rule]]\nname = \"a\"\naction = \"ask\"\n  principals = [\"x\"]\n",
                4,
                3,
                "unknown field `principals`",
            ),
            (
                "bad default",
                "default = \"allow\"\n",
                1,
                11,
                "unknown action `allow`",
            ),
            (
                "bad action",
                "[[rule]]\nname = \"a\"\naction = \"approved\"\n",
                3,
                10,
                "unknown action `approved`",
            ),
            (
                "unknown backend",
                "[[rule]]\nname = \"a\"\nbackend = [\"plaintext\", \"mpc\"]\naction = \"ask\"\n",
                3,
                25,
                "unknown backend `mpc`",
            ),
            (
                "unknown op kind",
                "[[rule]]\nname = \"a\"\nops = [\"mean\", \"median\"]\naction = \"ask\"\n",
                3,
                16,
                "unknown operation kind `median`",
            ),
            (
                "duplicate name",
                "[[rule]]\nname = \"a\"\naction = \"ask\"\n\n[[rule]]\nname = \"a\"\naction = \"approve\"\n",
                6,
                8,
                "another rule is already named `a`",
            ),
            (
                "reserved name",
                "[[rule]]\nname = \"default\"\naction = \"ask\"\n",
                2,
                8,
                "reserved",
            ),
            (
                "empty name",
                "[[rule]]\nname = \" \"\naction = \"ask\"\n",
                2,
                8,
                "cannot be empty",
            ),
            (
                "deny without reason",
                "[[rule]]\nname = \"a\"\naction = \"deny\"\n",
                3,
                10,
                "needs a `reason`",
            ),
            (
                "empty reason",
                "[[rule]]\nname = \"a\"\naction = \"deny\"\nreason = \"\"\n",
                4,
                10,
                "reason cannot be empty",
            ),
            (
                "missing name",
                "default = \"ask\"\n[[rule]]\naction = \"ask\"\n",
                2,
                1,
                "needs a `name`",
            ),
            (
                "missing action",
                "[[rule]]\nname = \"a\"\n",
                1,
                1,
                "needs an `action`",
            ),
            (
                "empty principal list",
                "[[rule]]\nname = \"a\"\nprincipal = []\naction = \"ask\"\n",
                3,
                13,
                "`principal` cannot be an empty list",
            ),
            (
                "empty backend list",
                "[[rule]]\nname = \"a\"\nbackend = []\naction = \"ask\"\n",
                3,
                11,
                "`backend` cannot be an empty list",
            ),
            (
                "empty datasets list",
                "[[rule]]\nname = \"a\"\ndatasets = []\naction = \"ask\"\n",
                3,
                12,
                "`datasets` cannot be an empty list",
            ),
            (
                "empty tags list",
                "[[rule]]\nname = \"a\"\ntags = []\naction = \"ask\"\n",
                3,
                8,
                "`tags` cannot be an empty list",
            ),
            (
                "empty ops list",
                "[[rule]]\nname = \"a\"\nops = []\naction = \"ask\"\n",
                3,
                7,
                "`ops` cannot be an empty list",
            ),
            (
                "empty catalogue list",
                "[[rule]]\nname = \"a\"\ncatalogue = []\naction = \"ask\"\n",
                3,
                13,
                "`catalogue` cannot be an empty list",
            ),
            (
                "empty string in a list",
                "[[rule]]\nname = \"a\"\ntags = [\"housing\", \"\"]\naction = \"ask\"\n",
                3,
                20,
                "`tags` names cannot be empty",
            ),
            (
                "a string where a list is expected",
                "[[rule]]\nname = \"a\"\nprincipal = \"Acme Bank\"\naction = \"ask\"\n",
                3,
                13,
                "expected a sequence",
            ),
            (
                "wrong type for row_level",
                "[[rule]]\nname = \"a\"\nrow_level = \"yes\"\naction = \"ask\"\n",
                3,
                13,
                "expected a boolean",
            ),
            (
                "rule as a table instead of an array of tables",
                "\n[rule]\nname = \"a\"\n",
                2,
                1,
                "expected a sequence",
            ),
            (
                "duplicate key",
                "[[rule]]\nname = \"a\"\nname = \"b\"\n",
                3,
                1,
                "duplicate key `name`",
            ),
            (
                "syntax error",
                "[[rule]]\nname = \"a\nb\"\n",
                2,
                10,
                "",
            ),
            (
                "columns count characters, not bytes",
                "[[rule]]\nname = \"é\"\nops = [\"moyenne\"] # é\naction = \"ask\"\n",
                3,
                8,
                "unknown operation kind `moyenne`",
            ),
            (
                "empty datasets_any list",
                "[[rule]]\nname = \"a\"\ndatasets_any = []\naction = \"ask\"\n",
                3,
                16,
                "`datasets_any` cannot be an empty list",
            ),
            (
                "empty name in tags_any",
                "[[rule]]\nname = \"a\"\ntags_any = [\"bank\", \" \"]\naction = \"ask\"\n",
                3,
                21,
                "`tags_any` names cannot be empty",
            ),
            (
                "max_cost not a decimal",
                "[[rule]]\nname = \"a\"\nmax_cost = \"0,5\"\naction = \"ask\"\n",
                3,
                12,
                "`max_cost`: `0,5` is not an amount",
            ),
            (
                "max_cost negative",
                "[[rule]]\nname = \"a\"\nmax_cost = -1\naction = \"ask\"\n",
                3,
                12,
                "`max_cost` must be a non-negative decimal",
            ),
            (
                "max_cost not a number",
                "[[rule]]\nname = \"a\"\nmax_cost = true\naction = \"ask\"\n",
                3,
                12,
                "`max_cost` must be a non-negative decimal",
            ),
            (
                "max_cost in exponent form as a string",
                "[[rule]]\nname = \"a\"\nmax_cost = \"1e-3\"\naction = \"ask\"\n",
                3,
                12,
                "is not an amount",
            ),
            (
                "min_budget_left too large",
                "[[rule]]\nname = \"a\"\nmin_budget_left = \"99999999999\"\naction = \"ask\"\n",
                3,
                19,
                "`min_budget_left`: amount too large",
            ),
            (
                "min_budget_left infinite",
                "[[rule]]\nname = \"a\"\nmin_budget_left = inf\naction = \"ask\"\n",
                3,
                19,
                "`min_budget_left` must be a non-negative decimal",
            ),
            (
                "rate without max",
                "[[rule]]\nname = \"a\"\nrate = { per = \"day\" }\naction = \"ask\"\n",
                3,
                8,
                "`rate` needs `max`",
            ),
            (
                "rate without per",
                "[[rule]]\nname = \"a\"\nrate = { max = 3 }\naction = \"ask\"\n",
                3,
                8,
                "`rate` needs `per`",
            ),
            (
                "rate max zero",
                "[[rule]]\nname = \"a\"\nrate = { max = 0, per = \"day\" }\naction = \"ask\"\n",
                3,
                16,
                "`rate.max` must be at least 1",
            ),
            (
                "rate max negative",
                "[[rule]]\nname = \"a\"\nrate = { max = -2, per = \"day\" }\naction = \"ask\"\n",
                3,
                16,
                "`rate.max` must be at least 1",
            ),
            (
                "rate unknown window",
                "[[rule]]\nname = \"a\"\nrate = { max = 3, per = \"week\" }\naction = \"ask\"\n",
                3,
                25,
                "unknown rate window `week`; expected one of: hour, day, 30d",
            ),
            (
                "rate unknown key",
                "[[rule]]\nname = \"a\"\nrate = { max = 3, per = \"day\", burst = 2 }\naction = \"ask\"\n",
                3,
                32,
                "unknown field `burst`",
            ),
            (
                "rate not a table",
                "[[rule]]\nname = \"a\"\nrate = 3\naction = \"ask\"\n",
                3,
                8,
                "",
            ),
            (
                "hours malformed",
                "[[rule]]\nname = \"a\"\nhours = \"9-17\"\naction = \"ask\"\n",
                3,
                9,
                "`9-17` is not a time range",
            ),
            (
                "hours empty",
                "[[rule]]\nname = \"a\"\nhours = \"10:00-10:00\"\naction = \"ask\"\n",
                3,
                9,
                "is empty",
            ),
            (
                "unknown weekday",
                "[[rule]]\nname = \"a\"\nweekdays = [\"mon\", \"Tuesday\"]\naction = \"ask\"\n",
                3,
                20,
                "unknown day `Tuesday`; expected one of: mon, tue, wed, thu, fri, sat, sun",
            ),
            (
                "weekday twice",
                "[[rule]]\nname = \"a\"\nweekdays = [\"mon\", \"mon\"]\naction = \"ask\"\n",
                3,
                20,
                "`mon` is listed twice",
            ),
            (
                "empty weekdays",
                "[[rule]]\nname = \"a\"\nweekdays = []\naction = \"ask\"\n",
                3,
                12,
                "`weekdays` cannot be an empty list",
            ),
            (
                "unknown reveal kind",
                "[[rule]]\nname = \"a\"\nreveal = [\"decision\", \"raw\"]\naction = \"ask\"\n",
                3,
                23,
                "unknown reveal kind `raw`; expected one of: decision, bands, decision+reasons, score",
            ),
            (
                "reveal in the command-line form",
                "[[rule]]\nname = \"a\"\nreveal = [\"bands:4\"]\naction = \"ask\"\n",
                3,
                11,
                "unknown reveal kind `bands:4`",
            ),
            (
                "empty reveal list",
                "[[rule]]\nname = \"a\"\nreveal = []\naction = \"ask\"\n",
                3,
                10,
                "`reveal` cannot be an empty list",
            ),
            (
                "reveal kind twice",
                "[[rule]]\nname = \"a\"\nreveal = [\"bands\", \"bands\"]\naction = \"ask\"\n",
                3,
                20,
                "`bands` is listed twice in `reveal`",
            ),
            (
                "reserved name scoring",
                "[[rule]]\nname = \"scoring\"\naction = \"ask\"\n",
                2,
                8,
                "`scoring` is reserved",
            ),
            (
                "reserved name scoring-limit",
                "[[rule]]\nname = \"scoring-limit\"\naction = \"ask\"\n",
                2,
                8,
                "`scoring-limit` is reserved",
            ),
            (
                "reserved name score-release",
                "[[rule]]\nname = \"score-release\"\naction = \"approve\"\n",
                2,
                8,
                "`score-release` is reserved",
            ),
            (
                "unknown scoring key",
                "[scoring]\nmax_runs = 3\nmax_run = 4\n",
                3,
                1,
                "unknown field `max_run`",
            ),
            (
                "scoring max_runs zero",
                "[scoring]\nmax_runs = 0\n",
                2,
                12,
                "`scoring.max_runs` must be a whole number from 1 to 1000",
            ),
            (
                "scoring max_runs too large",
                "[scoring]\nmax_runs = 1001\n",
                2,
                12,
                "`scoring.max_runs` must be a whole number from 1 to 1000",
            ),
            (
                "scoring max_runs past u32",
                "[scoring]\nmax_runs = 99999999999\n",
                2,
                12,
                "`scoring.max_runs` must be a whole number from 1 to 1000",
            ),
            (
                "scoring max_runs negative",
                "[scoring]\nmax_runs = -3\n",
                2,
                12,
                "`scoring.max_runs` must be a whole number from 1 to 1000",
            ),
            (
                "scoring max_runs a string",
                "[scoring]\nmax_runs = \"3\"\n",
                2,
                12,
                "invalid type",
            ),
            (
                "scoring max_runs a float",
                "[scoring]\nmax_runs = 3.5\n",
                2,
                12,
                "invalid type",
            ),
            (
                "scoring window_days zero",
                "[scoring]\nwindow_days = 0\n",
                2,
                15,
                "`scoring.window_days` must be a whole number from 1 to 366",
            ),
            (
                "scoring window_days too long",
                "[scoring]\nmax_runs = 3\nwindow_days = 367\n",
                3,
                15,
                "`scoring.window_days` must be a whole number from 1 to 366",
            ),
            (
                "scoring max_bits zero",
                "[scoring]\nmax_bits = 0\n",
                2,
                12,
                "`scoring.max_bits` must be a positive number of bits",
            ),
            (
                "scoring max_bits negative",
                "[scoring]\nmax_bits = -1.5\n",
                2,
                12,
                "`scoring.max_bits` must be a positive number of bits",
            ),
            (
                "scoring max_bits a string",
                "[scoring]\nmax_bits = \"4\"\n",
                2,
                12,
                "`scoring.max_bits` must be a positive number of bits",
            ),
            (
                "scoring max_bits nan",
                "[scoring]\nmax_bits = nan\n",
                2,
                12,
                "`scoring.max_bits` must be a positive number of bits",
            ),
            (
                "scoring max_bits infinite",
                "[scoring]\nmax_bits = inf\n",
                2,
                12,
                "`scoring.max_bits` must be a positive number of bits",
            ),
            (
                "scoring as an array of tables",
                "default = \"ask\"\n[[scoring]]\nmax_runs = 3\n",
                2,
                1,
                "",
            ),
            (
                "scoring not a table",
                "scoring = 3\n",
                1,
                11,
                "invalid type: integer `3`, expected a table",
            ),
            (
                "non-ASCII before the error on the same line",
                "[[rule]]\nname = \"a\"\ndatasets = [\"loyer\"]\ntags = [\"logé\", \"\"]\naction = \"ask\"\n",
                4,
                17,
                "`tags` names cannot be empty",
            ),
        ];
        for (what, text, line, column, message) in cases {
            let err = Policy::parse(text).expect_err(what);
            assert_eq!(
                (err.line, err.column),
                (*line, *column),
                "{what}: wrong place for {err}"
            );
            assert!(
                err.message.contains(message),
                "{what}: message `{}` lacks `{message}`",
                err.message
            );
            assert!(!err.message.contains('\n'), "{what}: multi-line message");
            assert_eq!(
                err.to_string(),
                format!("line {line}, column {column}: {}", err.message)
            );
        }
    }

    #[test]
    fn default_and_demo_texts_parse() {
        let d = Policy::parse(Policy::default_text()).unwrap();
        assert_eq!(d.default_action(), Action::Ask);
        let row_level_deny = d
            .rules()
            .iter()
            .find(|r| r.conditions() == [Condition::RowLevel(true)])
            .expect("the default policy denies row-level releases");
        assert_eq!(row_level_deny.action(), Action::Deny);
        assert!(row_level_deny.reason().is_some());
        // Only that rule is active; the other examples are commented out.
        assert_eq!(d.rules().len(), 1);

        let demo = Policy::parse(Policy::demo_text()).unwrap();
        assert_eq!(demo.default_action(), Action::Ask);
        assert_eq!(demo.rules().len(), 4);
        assert_eq!(demo.rules()[0].conditions(), [Condition::RowLevel(true)]);
        assert_eq!(demo.rules()[0].action(), Action::Deny);
        assert_eq!(
            demo.rules()[0].reason(),
            Some("row-level data never leaves this node")
        );
        assert_eq!(demo.rules()[1].action(), Action::Approve);
        assert_eq!(demo.rules()[2].name(), "small-dp");
        assert_eq!(demo.rules()[2].action(), Action::Approve);
        assert_eq!(demo.rules()[3].name(), "private-decision");
        assert_eq!(demo.rules()[3].action(), Action::Approve);
        assert_eq!(
            demo.rules()[3].conditions(),
            [
                Condition::Backend(vec![Backend::TwoPc]),
                Condition::Reveal(vec![RevealKind::Decision]),
            ]
        );
        assert_eq!(
            demo.scoring_limits(),
            &ScoringLimits {
                max_runs: 3,
                window_days: 30,
                max_bits: Some(4.0)
            }
        );
        assert!(demo.catalogue_names().is_empty());
        // The default policy leaves [scoring] commented out: the default limits hold.
        assert_eq!(d.scoring_limits(), &ScoringLimits::default());
    }

    /// The commented-out examples in the default policy are themselves valid: uncommenting them parses.
    #[test]
    fn default_text_examples_parse_when_uncommented() {
        let uncommented: String = Policy::default_text()
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| is_toml_line(l))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let p = Policy::parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(p.min_group_count(), Some(10));
        // The DP example uses the cost-aware conditions.
        let small_dp = p
            .rules()
            .iter()
            .find(|r| r.name() == "small-dp")
            .expect("the small-dp example");
        assert_eq!(small_dp.action(), Action::Approve);
        for want in [
            Condition::Backend(vec![Backend::Dp]),
            Condition::RowLevel(false),
            Condition::MaxCost(Amount::from_nanos(100_000_000)),
            Condition::MinBudgetLeft(Amount::from_nanos(1_000_000_000)),
            Condition::Rate(RateLimit {
                max: 3,
                per: Window::Day,
            }),
        ] {
            assert!(small_dp.conditions().contains(&want), "{want:?}");
        }
        assert!(p.rules().iter().any(|r| r.conditions()
            == [Condition::TagsAny(vec!["bank".into()])]
            && r.action() == Action::Deny));
        assert!(
            p.rules().len() >= 4,
            "expected the examples to add rules, got {}",
            p.rules().len()
        );
        assert!(!p.catalogue_names().is_empty());
        // The private scoring examples: decisions approved, raw scores put to the owner, and limits.
        let decisions = p
            .rules()
            .iter()
            .find(|r| r.name() == "private-decisions")
            .expect("the private-decisions example");
        assert!(decisions
            .conditions()
            .contains(&Condition::Reveal(vec![RevealKind::Decision])));
        assert_eq!(decisions.action(), Action::Approve);
        let raw = p
            .rules()
            .iter()
            .find(|r| r.name() == "acme-raw-score")
            .expect("the acme-raw-score example");
        assert!(raw
            .conditions()
            .contains(&Condition::Reveal(vec![RevealKind::Score])));
        assert_eq!(raw.action(), Action::Ask);
        assert_eq!(
            p.scoring_limits(),
            &ScoringLimits {
                max_runs: 3,
                window_days: 30,
                max_bits: Some(8.0)
            }
        );
    }

    /// Lines of the commented examples (as opposed to prose): a `[[rule]]` or `[scoring]` header or
    /// `key = value`.
    fn is_toml_line(l: &str) -> bool {
        l.starts_with("[[rule]]")
            || l.starts_with("[scoring]")
            || l.starts_with("[dp]")
            || l.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
    }

    #[test]
    fn positions_are_one_based_and_clamped() {
        assert_eq!(position("ab\ncd", 0), (1, 1));
        assert_eq!(position("ab\ncd", 1), (1, 2));
        assert_eq!(position("ab\ncd", 3), (2, 1));
        assert_eq!(position("ab\ncd", 4), (2, 2));
        assert_eq!(position("ab\ncd", 999), (2, 3));
        // An offset inside a multi-byte character does not panic.
        assert_eq!(position("éa", 1), (1, 2));
    }

    #[test]
    fn policy_hash_is_hex_sha256() {
        assert_eq!(
            policy_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            policy_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(
            policy_hash(Policy::default_text()),
            policy_hash(Policy::demo_text())
        );
    }
}
