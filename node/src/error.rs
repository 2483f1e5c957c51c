//! The node's error type.

/// Errors of the owner node and the FI client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database error.
    #[error("database: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
    /// A file or socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A JSON encoding error.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The lineage does not type-check.
    #[error("{0}")]
    Check(#[from] duo_engine::CheckError),
    /// Evaluation failed.
    #[error("evaluation failed: {0}")]
    Eval(#[from] duo_engine::EvalError),
    /// The policy file is invalid.
    #[error("policy file: {0}")]
    Policy(#[from] duo_policies::PolicyError),
    /// The policy file cannot be used (missing, unreadable, invalid, or writable by others): the detail is the
    /// owner's and never goes on the wire (an FI gets the code `policy_unavailable` and a generic message).
    #[error("{0}")]
    PolicyUnavailable(String),
    /// A scoring request waits for the owner's decision (its id): run it once approved.
    #[error(
        "scoring request {0} waits for the owner; once approved, run it with `duo fi score --request {0} --model FILE`"
    )]
    Pending(u64),
    /// Something named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The action was refused (with the reason).
    #[error("{0}")]
    Refused(String),
    /// A per-principal limit was reached.
    #[error("{0}")]
    Limit(String),
    /// The state the owner saw has changed since.
    #[error("the request changed since you looked at it: {why}")]
    Stale {
        /// What changed.
        why: String,
        /// The token of what the owner would see now (`approve --seen` takes it once they have looked again).
        token: String,
    },
    /// The peer sent something invalid or the server replied with an error.
    #[error("{code}: {message}")]
    Remote {
        /// Error code (see the wire spec).
        code: String,
        /// Message.
        message: String,
    },
    /// A transport failure.
    #[error("{0}")]
    Transport(String),
    /// A bug or corrupted state.
    #[error("internal error: {0}")]
    Internal(String),
    /// Stored state (an answer, a decision, the privacy ledger, a pairing) does not match the audit log entry
    /// that committed it: it was edited around the log, and the node refuses to use it. The text names only
    /// what kind of state it is (it reaches the FI); `duo owner log --verify` tells the owner which and why.
    #[error(
        "the owner's node found a stored {0} that does not match its audit log and will not use it; \
         the owner can see why with `duo owner log --verify`"
    )]
    Integrity(String),
}

impl Error {
    /// A short machine-readable code for the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Check(_) => "type_error",
            Error::NotFound(_) => "not_found",
            Error::Pending(_) => "pending",
            Error::Refused(_) => "refused",
            Error::Limit(_) => "limit",
            Error::Stale { .. } => "stale",
            Error::Policy(_) | Error::PolicyUnavailable(_) => "policy_unavailable",
            Error::Eval(_) => "eval_error",
            Error::Integrity(_) => "integrity",
            _ => "internal",
        }
    }

    /// The code to report: the owner node's own code for an error it sent ([`Error::Remote`]), else
    /// [`Error::code`].
    pub fn reported_code(&self) -> &str {
        match self {
            Error::Remote { code, .. } => code,
            e => e.code(),
        }
    }

    /// Whether the error is about the owner's own node (its policy, files, store or a bug) rather than about
    /// what the FI asked: its text is the owner's and stays on the node.
    pub fn is_owner_side(&self) -> bool {
        matches!(
            self,
            Error::Store(_)
                | Error::Io(_)
                | Error::Json(_)
                | Error::Policy(_)
                | Error::PolicyUnavailable(_)
                | Error::Internal(_)
                | Error::Transport(_)
        )
    }

    /// The message an FI is sent for this error: the error's own text when it is about the FI's message, and a
    /// generic sentence when it is about the owner's node (paths, file contents and parse errors stay there).
    pub fn wire_message(&self) -> String {
        match self {
            Error::Policy(_) | Error::PolicyUnavailable(_) => {
                "the owner's policy cannot be used right now, so nothing can be decided; the owner's node shows                  why. Try again later"
                    .into()
            }
            e if e.is_owner_side() => {
                "the owner's node could not do this because of a problem on its side, which it shows its owner;                  try again later"
                    .into()
            }
            e => e.to_string(),
        }
    }
}
