//! Duo owner policies: rules in TOML, the decision for each release request, and the privacy ledger.
//!
//! When an FI asks for a release of a pointer, the owner's node type-checks the lineage
//! ([`duo_engine::Checked`]), gathers the [`RequestFacts`] and calls [`decide`] with the owner's
//! [`Policy`]. The [`Decision`] is to approve, to deny (with a reason sent to the FI) or to ask the owner.
//! Decisions depend only on the principal, the request and its checked lineage, budgets and time, never
//! on the data.
//!
//! DP releases are paid for in the [`Ledger`] ([`ledger`]), a pure state machine the node persists:
//! integer amounts ([`Amount`], 1e-9 units rounded up), caps per principal, per dataset and global, and a
//! charge that succeeds as a whole or fails with the numbers.
//!
//! Private scoring runs (backend `2pc`) are counted in bits ([`scoring`]): a run reveals a decision (1 bit),
//! one of `k` score bands (`log2 k` bits) or the raw score (64 bits, never a default) ([`Reveal`]), and the
//! policy's [`ScoringLimits`] bound the runs and bits per principal and window. The node supplies what the
//! run reveals and what the principal used in [`ScoringFacts`].
//!
//! # The policy file
//!
//! ```toml
//! default = "ask"            # approve | deny | ask; "ask" when left out
//!
//! [scoring]                  # limits on private scoring (2pc) per principal; optional, as are its keys
//! max_runs = 3               # runs in the window, counted when a run starts (1..=1000; 3 when left out)
//! window_days = 30           # the sliding window in days (1..=366; 30 when left out)
//! max_bits = 4               # bits revealed in the window (a positive number; no cap when left out)
//!
//! [dp]                       # optional
//! min_group_count = 10       # grouped dp releases (by_month, by_category) withhold each group whose
//!                            # noisy count is below this (1..=1000000; every group released when left out)
//!
//! [[rule]]
//! name = "acme-catalogue"    # required, unique; not default, backend, scoring, scoring-limit, score-release
//! principal = ["Acme Bank"]  # the requesting principal is listed; "*" matches any
//! backend = ["plaintext"]    # the backend is listed: plaintext | dp | 2pc
//! reveal = ["decision"]      # a 2pc run whose output is listed: decision | bands | score
//! datasets = ["rent"]        # every dataset the lineage reads is listed
//! tags = ["housing"]         # every dataset the lineage reads has at least one of these tags
//! ops = ["mean", "count"]    # every operation kind the lineage uses is listed
//! catalogue = ["rent_on_time_ratio_12m"]  # the lineage is exactly one catalogue attribute, listed ("*" = any);
//!                            # for 2pc: the model uses catalogue attributes, all of them listed
//! row_level = true           # the release reveals rows (a table or a column): true, or false
//! datasets_any = ["bank"]    # at least one dataset the lineage reads is listed
//! tags_any = ["bank"]        # at least one dataset the lineage reads has one of these tags
//! max_cost = "0.5"           # the request's privacy cost (node's measure) is at most this
//! min_budget_left = "1.0"    # the smallest budget left after this request is at least this
//! rate = { max = 3, per = "day" }  # fewer than 3 releases matching the other conditions in the last
//!                            # hour | day | 30d, to this principal
//! hours = "09:00-17:00"      # node-local time of day, start included, end excluded (may wrap midnight)
//! weekdays = ["mon", "fri"]  # node-local day: mon tue wed thu fri sat sun
//! action = "deny"            # required: approve | deny | ask
//! reason = "..."             # required for deny (sent to the FI); for ask, shown to the owner
//! ```
//!
//! - Rules are tried in order; the first whose conditions all hold decides. When none does, `default`
//!   decides and the decision names the rule `"default"`.
//! - Every condition is optional; a rule without conditions matches every request. Lists cannot be
//!   empty (leave the key out instead). Names compare exactly, case included.
//! - `ops` takes the names of [`duo_engine::OpKind::name`]: select, filter, clamp, arith, by_month,
//!   by_category, count, sum, mean, variance, stdev, min, max, quantile, histogram, dot, catalogue.
//! - `[dp] min_group_count` is not a rule condition: the node applies it to every grouped DP release
//!   ([`Policy::min_group_count`]).
//! - `tags` and `tags_any` look the datasets up in [`RequestFacts::dataset_tags`]; a dataset without tags
//!   there never satisfies them. A lineage that reads no dataset satisfies `datasets` and `tags` but not
//!   `datasets_any` or `tags_any`. Deny rules should use the `_any` forms: a request that reads a second
//!   dataset does not match `datasets` or `tags`.
//! - Amounts (`max_cost`, `min_budget_left`) are decimals in the node's [`Measure`], as strings (exact) or
//!   TOML numbers (read through their shortest decimal); more than nine decimals round up.
//! - A condition on a fact the node did not supply ([`RequestFacts::cost`],
//!   [`RequestFacts::budget_left_after`], [`RequestFacts::rate_counts`], [`RequestFacts::now`]) does not
//!   hold; in particular a plaintext request, which has no cost, never satisfies `max_cost` or
//!   `min_budget_left`. Likewise `reveal` holds only for a `2pc` request with [`RequestFacts::scoring`].
//! - For `2pc`, the node sets [`RequestFacts::checked`] to the merged lineage of the model's catalogue
//!   attributes, and supplies [`ScoringFacts`]: what the run reveals and what this principal used in the
//!   last `window_days` days (runs started, aborted ones included, and their bits).
//! - For `rate`, the node counts, per principal, rule and window, the releases for which
//!   [`Policy::rate_counters`] named that rule (its other conditions held), and supplies the counts.
//! - Catalogue names are not checked against the engine's catalogue here; [`Policy::catalogue_names`]
//!   lists them with their lines so the node can.
//! - Any mistake (an unknown key, an unknown backend, action or operation kind, a duplicate rule name, a
//!   deny without a reason, an empty list, a value of the wrong type) is a [`PolicyError`] with the line
//!   and column of the offending value, so a typo never silently disables a rule.
//!
//! [`Policy::default_text`] is the commented file `duo owner init` writes; [`Policy::demo_text`] is the
//! one `duo demo` uses.
//!
//! # Guarantees
//!
//! Whatever the rules say, [`decide`] keeps these (from the design: exact answers to ad-hoc questions can
//! be differenced down to single rows):
//!
//! 1. a deny is final;
//! 2. plaintext is approved without the owner only for exactly one catalogue attribute, over the window
//!    ending at the last full month, not yet released to this principal for that window; otherwise an
//!    approval becomes an ask that says which condition failed;
//! 3. a row-level release is never approved without the owner;
//! 4. backends this node cannot run ([`RequestFacts::available_backends`]; by default only plaintext) are
//!    denied, as rule `"backend"`;
//! 5. a `dp` release whose cost is unknown is not approved without the owner;
//! 6. a `2pc` request without scoring facts, or with a band count outside 2..=16, is denied, as rule
//!    `"scoring"`;
//! 7. a `2pc` request over the `[scoring]` limits is denied, as rule `"scoring-limit"`, with the numbers:
//!    after a rule's deny (which keeps its own name), before any approve or ask;
//! 8. a raw score is denied, as rule `"score-release"`, unless the rule that matched has a `reveal`
//!    condition listing `score` (the default action never releases one).
//!
//! Budgets are enforced by the [`Ledger`] when the node charges, not by [`decide`]: a rule may approve a
//! request that the ledger then refuses with the numbers.
#![deny(missing_docs)]

pub mod backend;
pub mod decision;
pub mod ledger;
pub mod policy;
pub mod scoring;
pub mod when;

pub use backend::{Action, Backend, UnknownName};
pub use decision::{approval_blockers, decide, Decision, RequestFacts, ScoringFacts};
pub use ledger::{
    zcdp_epsilon, Account, Amount, AmountError, Charge, ChargeRecord, Charged, Exceeded, Ledger,
    LedgerError, Measure, Scope,
};
pub use policy::{policy_hash, Condition, Policy, PolicyError, Rule};
pub use scoring::{
    Reveal, RevealKind, RevealParseError, ScoringExceeded, ScoringLimits, ScoringUse,
};
pub use when::{Hours, RateCounts, RateLimit, Window};
