//! Duo owner policies: rules in TOML, and the decision for each release request.
//!
//! When an FI asks for a release of a pointer, the owner's node type-checks the lineage
//! ([`duo_engine::Checked`]), gathers the [`RequestFacts`] and calls [`decide`] with the owner's
//! [`Policy`]. The [`Decision`] is to approve, to deny (with a reason sent to the FI) or to ask the owner.
//! Decisions depend only on the principal, the request and its checked lineage, never on the data.
//!
//! # The policy file
//!
//! ```toml
//! default = "ask"            # approve | deny | ask; "ask" when left out
//!
//! [[rule]]
//! name = "acme-catalogue"    # required, unique; not "default" or "backend"
//! principal = ["Acme Bank"]  # the requesting principal is listed; "*" matches any
//! backend = ["plaintext"]    # the backend is listed: plaintext | dp | 2pc
//! datasets = ["rent"]        # every dataset the lineage reads is listed
//! tags = ["housing"]         # every dataset the lineage reads has at least one of these tags
//! ops = ["mean", "count"]    # every operation kind the lineage uses is listed
//! catalogue = ["rent_on_time_ratio_12m"]  # the lineage is exactly one catalogue attribute, listed ("*" = any)
//! row_level = true           # the release reveals rows (a table or a column): true, or false
//! action = "deny"            # required: approve | deny | ask
//! reason = "..."             # required for deny (sent to the FI); for ask, shown to the owner
//! ```
//!
//! - Rules are tried in order; the first whose conditions all hold decides. When none does, `default`
//!   decides and the decision names the rule `"default"`.
//! - Every condition is optional; a rule without conditions matches every request. Lists cannot be
//!   empty (leave the key out instead). Names compare exactly, case included.
//! - `ops` takes the names of [`duo_engine::OpKind::name`]: select, filter, clamp, arith, by_month,
//!   count, sum, mean, variance, min, max, quantile, histogram, dot, catalogue.
//! - `tags` looks the datasets up in [`RequestFacts::dataset_tags`]; a dataset without tags there never
//!   satisfies it. A lineage that reads no dataset satisfies `datasets` and `tags`.
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
//! 4. backends this node cannot run yet (`dp`, `2pc`) are denied, as rule `"backend"`.
//!
//! The privacy ledger, costs and rates arrive later as further [`Condition`]s and facts; the matcher
//! is built so that each is one more condition variant.
#![deny(missing_docs)]

pub mod backend;
pub mod decision;
pub mod policy;

pub use backend::{Action, Backend, UnknownName};
pub use decision::{approval_blockers, decide, Decision, RequestFacts};
pub use policy::{policy_hash, Condition, Policy, PolicyError, Rule};
