//! The names a policy talks about: release backends and rule actions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a release is computed and what the FI receives.
///
/// The wire and policy-file names are `plaintext`, `dp` and `2pc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Backend {
    /// The exact value, computed on the owner's node.
    #[serde(rename = "plaintext")]
    Plaintext,
    /// A differentially private value, charged to privacy budgets.
    #[serde(rename = "dp")]
    Dp,
    /// A two-party computation with the FI's private input; only the agreed output is revealed.
    #[serde(rename = "2pc")]
    TwoPc,
}

impl Backend {
    /// Every backend, in a fixed order.
    pub const ALL: [Backend; 3] = [Backend::Plaintext, Backend::Dp, Backend::TwoPc];

    /// The wire and policy-file name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Plaintext => "plaintext",
            Backend::Dp => "dp",
            Backend::TwoPc => "2pc",
        }
    }

    /// The backends a node runs unless it says otherwise ([`crate::RequestFacts::new`]): plaintext only.
    pub const DEFAULT_AVAILABLE: &'static [Backend] = &[Backend::Plaintext];

    /// Whether this backend is in [`Backend::DEFAULT_AVAILABLE`]. [`crate::decide`] denies requests for a
    /// backend that is not in [`crate::RequestFacts::available_backends`], which the node sets (to enable
    /// `dp` when it ships).
    pub fn is_available(self) -> bool {
        Backend::DEFAULT_AVAILABLE.contains(&self)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownName::new("backend", s, "plaintext, dp, 2pc"))
    }
}

/// What a policy rule (or the default) does with a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Release without asking the owner (still subject to the hard guarantees of [`crate::decide`]).
    Approve,
    /// Refuse, telling the FI the rule's reason.
    Deny,
    /// Put the request to the owner.
    Ask,
}

impl Action {
    /// Every action, in a fixed order.
    pub const ALL: [Action; 3] = [Action::Approve, Action::Deny, Action::Ask];

    /// The policy-file name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Deny => "deny",
            Action::Ask => "ask",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Action {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownName::new("action", s, "approve, deny, ask"))
    }
}

/// A name that is not one of the known backends, actions or operation kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`; expected one of: {expected}")]
pub struct UnknownName {
    /// What kind of name it should have been ("backend", "action", ...).
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

impl UnknownName {
    pub(crate) fn new(what: &'static str, name: &str, expected: &'static str) -> Self {
        UnknownName {
            what,
            name: name.to_owned(),
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip_through_str_and_serde() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>(), Ok(b));
            assert_eq!(b.to_string(), b.name());
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(json, format!("\"{}\"", b.name()));
            assert_eq!(serde_json::from_str::<Backend>(&json).unwrap(), b);
        }
        assert_eq!(Backend::TwoPc.name(), "2pc");
    }

    #[test]
    fn unknown_backend_names_the_accepted_ones() {
        let err = "twopc".parse::<Backend>().unwrap_err();
        assert_eq!(err.name, "twopc");
        assert_eq!(
            err.to_string(),
            "unknown backend `twopc`; expected one of: plaintext, dp, 2pc"
        );
        assert!("Plaintext".parse::<Backend>().is_err());
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.name().parse::<Action>(), Ok(a));
            assert_eq!(a.to_string(), a.name());
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), a);
        }
        assert!("allow".parse::<Action>().is_err());
    }

    #[test]
    fn only_plaintext_is_available_for_now() {
        assert!(Backend::Plaintext.is_available());
        assert!(!Backend::Dp.is_available());
        assert!(!Backend::TwoPc.is_available());
    }
}
