//! The owner policies the tests and benches run under, as TOML text for an owner's `policy.toml`.
//!
//! A policy that is itself the subject of one test (a rate rule, a cap) stays next to that test.

/// Deny row-level releases, deny anything reading `subscriptions`, approve catalogue attributes in plaintext,
/// ask the owner about the rest: the policy of most end-to-end tests.
pub const TEST_POLICY: &str = r#"
default = "ask"

[[rule]]
name = "no-rows"
row_level = true
action = "deny"
reason = "row-level data never leaves this node"

[[rule]]
name = "no-subscriptions"
datasets = ["subscriptions"]
action = "deny"
reason = "subscriptions are private"

[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"
"#;

/// Approve catalogue attributes in plaintext, ask the owner about the rest: the benches and `duo bench load`,
/// where every request is an auto-approved release.
pub const CATALOGUE_APPROVE: &str = r#"
default = "ask"
[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"
"#;

/// No rule: the owner decides every request.
pub const ASK_ALL: &str = "default = \"ask\"\n";

/// Deny row-level releases, approve dp releases costing at most 0.5, ask the owner about the rest: the dp
/// tests (which set the budget caps themselves).
pub const DP_POLICY: &str = r#"
default = "ask"
[[rule]]
name = "no-rows"
row_level = true
action = "deny"
reason = "row-level data never leaves this node"
[[rule]]
name = "small-dp"
backend = ["dp"]
max_cost = "0.5"
action = "approve"
"#;

/// At most 3 private scoring runs (6 bits each at most) per FI in 30 days; catalogue attributes approved in
/// plaintext (the tests fetch the reference values that way); private decisions approved; bands and raw
/// scores go to the owner (or are refused over the bit cap). The private-scoring tests' policy.
pub const SCORING_POLICY: &str = r#"
default = "ask"

[scoring]
max_runs = 3
window_days = 30
max_bits = 6

[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"

[[rule]]
name = "private-decision"
backend = ["2pc"]
reveal = ["decision"]
action = "approve"
"#;

/// Private decisions and DP releases costing at most 0.5 approved, everything else asked: the owners of
/// `duo bench grid` and of the relay's capture test.
pub const GRID_POLICY: &str = r#"
default = "ask"

[scoring]
max_runs = 5
window_days = 30
max_bits = 6

[[rule]]
name = "private-decision"
backend = ["2pc"]
reveal = ["decision"]
action = "approve"

[[rule]]
name = "small-dp"
backend = ["dp"]
max_cost = "0.5"
action = "approve"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use duo_policies::Policy;

    #[test]
    fn every_fixture_is_a_valid_policy() {
        for (name, text) in [
            ("TEST_POLICY", TEST_POLICY),
            ("CATALOGUE_APPROVE", CATALOGUE_APPROVE),
            ("ASK_ALL", ASK_ALL),
            ("DP_POLICY", DP_POLICY),
            ("SCORING_POLICY", SCORING_POLICY),
        ] {
            if let Err(e) = Policy::parse(text) {
                panic!("{name}: {e}");
            }
        }
    }
}
