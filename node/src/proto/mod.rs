//! The protocol both sides share: every message and reply type inside the encrypted channel (see
//! [`crate::net::transport`] for the channel), receipts, and the hashing they use. Owner and FI code both
//! build on this module; it imports nothing from either.
//!
//! Control messages are JSON. Every client message is an envelope `{"v": 1, "id": N, "body": {...}}` with a
//! client-chosen id; the owner answers each with exactly one envelope carrying the same id. Bodies are tagged by
//! `"type"`. A malformed envelope, an unknown type or an unsupported version gets an `error` reply with a code,
//! and the session goes on.

pub mod digest;
pub mod receipt;
pub mod request;
pub mod scoring;

use crate::proto::request::{DpParams, RequestView};
use crate::proto::scoring::{ScoreDone, ScoreStart, ScoringSpec};
use duo_engine::catalogue::CatalogueInfo;
use duo_engine::{DatasetMeta, Expr, Type};
use duo_policies::Backend;
use serde::{Deserialize, Serialize};

/// Version of the application messages.
pub const WIRE_VERSION: u32 = 1;

/// Longest reason an FI may give, in bytes.
pub const MAX_REASON: usize = 2048;

/// Longest wait a client may ask for in one message, in milliseconds.
pub const MAX_WAIT_MS: u64 = 120_000;

/// An envelope around a message body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Envelope<T> {
    /// Message version ([`WIRE_VERSION`]).
    pub v: u32,
    /// Correlation id: the reply carries the id of the message it answers.
    pub id: u64,
    /// The message.
    pub body: T,
}

/// Messages from the FI to the owner node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    // The two listings are empty struct variants rather than unit ones: serde ignores unknown fields beside
    // the tag of a unit variant, and the spec refuses them.
    /// List the published metadata of every dataset.
    ListDatasets {},
    /// List the catalogue of attributes.
    ListCatalogue {},
    /// Create a pointer: type-check `expr` (which may refer to earlier pointers as `{"node":"ptr","id":N}`)
    /// and remember it in this session.
    Pointer {
        /// The expression.
        expr: Expr,
    },
    /// Ask for the release of a pointer through a backend.
    Request {
        /// The pointer to release.
        pointer: u64,
        /// Backend.
        backend: Backend,
        /// Why the FI needs it (shown to the owner and logged).
        reason: String,
        /// For backend `dp`: what to spend (an epsilon, a rho, or a target accuracy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dp: Option<DpParams>,
    },
    /// Preview what a DP release of a pointer would cost and how accurate it would be, without asking for it.
    Cost {
        /// The pointer.
        pointer: u64,
        /// What to spend.
        dp: DpParams,
    },
    /// Ask to score the FI's private model against the owner's attributes (backend `2pc`). Decided like any
    /// request; an approved one allows one run ([`ClientMsg::ScoreRun`]).
    Score {
        /// The attributes, what a run reveals, and the FI's model commitment.
        scoring: ScoringSpec,
        /// Why the FI needs it (shown to the owner and logged).
        reason: String,
    },
    /// Start the run of an approved scoring request. The owner answers [`ServerMsg::ScoreStart`], then both
    /// sides exchange binary protocol chunks (see [`crate::proto::scoring`]), then the owner sends
    /// [`ServerMsg::ScoreDone`] or an error.
    ScoreRun {
        /// The approved scoring request (this principal's own number for it).
        request: u64,
        /// Whether the FI holds the OT-extension state of an earlier run. Only `resume` says which; a node
        /// continues a state only when `resume` names the one it holds ([`ScoreStart::warm`] says whether it
        /// does), and otherwise both sides start from new base OTs.
        #[serde(default)]
        warm: bool,
        /// The OT-extension state the FI holds from an earlier finished run with this owner, in this session or
        /// an earlier one; absent when it holds none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<crate::proto::scoring::OtResume>,
    },
    /// The FI gives up the scoring run it started with this envelope id. During the run the node ends it and
    /// replies `error` `score_aborted` (which is also the run's reply); outside a run it replies `error`
    /// `no_run`.
    ScoreAbort {
        /// Why (shown to the owner and logged).
        #[serde(default)]
        reason: String,
    },
    /// Make the base OTs of scoring runs ahead of the first run (after pairing, say), so that run does not:
    /// `base` is the FI's base-OT sender message (protocol message 1, hex). The node answers
    /// [`ServerMsg::OtPrepared`] and keeps its side of the new OT-extension state, whose id is derived from
    /// the channel and this envelope's id ([`crate::proto::scoring::prepare_session_id`]).
    OtPrepare {
        /// The base-OT sender message, hex.
        base: String,
    },
    /// The state of an earlier request; with `wait_ms > 0`, wait up to that long for a decision first.
    Status {
        /// Request id (this principal's own number for it).
        request: u64,
        /// How long to wait for a decision (capped at [`MAX_WAIT_MS`]).
        #[serde(default)]
        wait_ms: u64,
    },
}

impl ClientMsg {
    /// The message's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMsg::ListDatasets { .. } => "list_datasets",
            ClientMsg::ListCatalogue { .. } => "list_catalogue",
            ClientMsg::Pointer { .. } => "pointer",
            ClientMsg::Request { .. } => "request",
            ClientMsg::Cost { .. } => "cost",
            ClientMsg::Score { .. } => "score",
            ClientMsg::ScoreRun { .. } => "score_run",
            ClientMsg::ScoreAbort { .. } => "score_abort",
            ClientMsg::Status { .. } => "status",
            ClientMsg::OtPrepare { .. } => "ot_prepare",
        }
    }
}

/// Published facts about a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublishedDataset {
    /// The owner's declared metadata.
    pub meta: DatasetMeta,
    /// Current version (changes when the owner reloads the data).
    pub version: u64,
}

/// A pointer as the FI sees it: an id and static facts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PointerInfo {
    /// Pointer id, valid in this session.
    pub id: u64,
    /// Static type.
    pub ty: Type,
    /// The lineage in plain words.
    pub description: String,
}

/// Messages from the owner node to the FI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The principal this session is authenticated as (sent first, unprompted, with id 0).
    Welcome {
        /// Principal name.
        principal: String,
        /// The owner node's display name.
        node: String,
        /// The owner node's ed25519 receipt-signing key, hex (pinned by the FI at pairing).
        signing_key: String,
    },
    /// Published metadata.
    Datasets {
        /// Datasets.
        datasets: Vec<PublishedDataset>,
    },
    /// The catalogue.
    Catalogue {
        /// Attributes.
        entries: Vec<CatalogueInfo>,
    },
    /// A new pointer.
    Pointer(PointerInfo),
    /// The state of a request.
    Request(Box<RequestView>),
    /// The preview of a DP release.
    Cost {
        /// The cost in the node's measure (decimal).
        cost: String,
        /// The node's measure: `epsilon` or `rho`.
        measure: String,
        /// Half-width of a 95% interval around the exact value, from public parameters; `None` where no
        /// accuracy function applies.
        accuracy95: Option<f64>,
        /// The noise mechanism.
        mechanism: String,
        /// For a batch: each question's cost and expected error, in order (`cost` is their sum). Empty
        /// otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<crate::proto::request::ItemPlan>,
    },
    /// The reply to [`ClientMsg::OtPrepare`]: the node's base-OT receiver message (protocol message 2, hex).
    /// Both sides now hold the same OT-extension state, which the next scoring run continues.
    OtPrepared {
        /// The base-OT receiver message, hex.
        base: String,
    },
    /// A scoring run starts: its public parameters. Binary protocol chunks follow.
    ScoreStart(Box<ScoreStart>),
    /// A scoring run finished: what it revealed, with a signed receipt.
    ScoreDone(Box<ScoreDone>),
    /// An error; the session goes on.
    Error {
        /// Machine-readable code.
        code: String,
        /// What went wrong and what to do.
        message: String,
    },
}

/// Encode a message for the channel.
pub fn encode<T: Serialize>(id: u64, body: &T) -> Vec<u8> {
    let env = Envelope {
        v: WIRE_VERSION,
        id,
        body,
    };
    // Serializing these types cannot fail: they hold no maps with non-string keys.
    serde_json::to_vec(&env).unwrap_or_default()
}

/// Why an incoming message could not be decoded, with the id to answer (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Id of the message, if it could be read.
    pub id: u64,
    /// Error code: `malformed`, `unsupported_version` or `unknown_type`.
    pub code: &'static str,
    /// Details.
    pub message: String,
    /// For `unknown_type`: the type the message named.
    pub unknown_type: Option<String>,
}

impl DecodeError {
    fn new(id: u64, code: &'static str, message: String) -> Self {
        DecodeError {
            id,
            code,
            message,
            unknown_type: None,
        }
    }
}

/// Now, as both sides write timestamps (RFC 3339, UTC, milliseconds).
pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Text from a peer made safe to show the owner: control characters become spaces, and invisible or
/// reordering characters (bidirectional overrides, zero-width characters) a visible `<U+XXXX>`
/// ([`duo_engine::text::neutralize`]).
pub fn sanitize(text: &str) -> String {
    duo_engine::text::neutralize(text)
}

/// Decode a client message, telling malformed envelopes, unknown versions and unknown types apart.
pub fn decode_client(bytes: &[u8]) -> Result<(u64, ClientMsg), DecodeError> {
    let raw: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::new(0, "malformed", format!("not a JSON message: {e}")))?;
    let Some(env) = raw.as_object() else {
        return Err(DecodeError::new(
            0,
            "malformed",
            "a message is a JSON object".into(),
        ));
    };
    let Some(id) = env.get("id").and_then(|v| v.as_u64()) else {
        return Err(DecodeError::new(
            0,
            "malformed",
            "the envelope needs an `id`: an unsigned integer".into(),
        ));
    };
    match env.get("v").and_then(|v| v.as_f64()) {
        Some(v) if v == f64::from(WIRE_VERSION) => {}
        Some(v) => {
            return Err(DecodeError::new(
                id,
                "unsupported_version",
                format!(
                    "message version {v} is not supported; this node speaks version {WIRE_VERSION}"
                ),
            ))
        }
        None => {
            return Err(DecodeError::new(
                id,
                "malformed",
                "the envelope needs a `v`: the number 1".into(),
            ))
        }
    }
    let Some(body) = env.get("body") else {
        return Err(DecodeError::new(
            id,
            "malformed",
            "the envelope has no `body`".into(),
        ));
    };
    let ty = body.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if !CLIENT_TYPES.contains(&ty) {
        return Err(DecodeError {
            unknown_type: Some(ty.to_string()),
            ..DecodeError::new(id, "unknown_type", format!("unknown message type {ty:?}"))
        });
    }
    let msg = ClientMsg::deserialize(body)
        .map_err(|e| DecodeError::new(id, "malformed", format!("bad `{ty}` message: {e}")))?;
    // Every field sent must have been understood, nested objects included: serde's own check misses some
    // (fields beside the tag of a unit variant), so the message is written back and compared.
    let understood = serde_json::to_value(&msg).unwrap_or_default();
    if let Some(path) = unknown_field(body, &understood, ty) {
        return Err(DecodeError::new(
            id,
            "malformed",
            format!("bad `{ty}` message: unknown field `{path}`"),
        ));
    }
    Ok((id, msg))
}

/// The `type` of every client message.
pub const CLIENT_TYPES: [&str; 10] = [
    "list_datasets",
    "list_catalogue",
    "pointer",
    "request",
    "status",
    "cost",
    "score",
    "score_run",
    "score_abort",
    "ot_prepare",
];

/// The path of a field of `sent` that `understood` (the decoded message written back) does not have, if any.
/// A field sent as `null` may be missing from `understood` (an absent optional field is written so).
fn unknown_field(
    sent: &serde_json::Value,
    understood: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    match (sent, understood) {
        (Value::Object(s), Value::Object(u)) => s.iter().find_map(|(k, v)| {
            let here = format!("{path}.{k}");
            match u.get(k) {
                Some(w) => unknown_field(v, w, &here),
                None if v.is_null() => None,
                None => Some(here),
            }
        }),
        (Value::Array(s), Value::Array(u)) => s
            .iter()
            .zip(u)
            .enumerate()
            .find_map(|(i, (v, w))| unknown_field(v, w, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Decode a server message.
pub fn decode_server(bytes: &[u8]) -> Result<(u64, ServerMsg), serde_json::Error> {
    let env: Envelope<ServerMsg> = serde_json::from_slice(bytes)?;
    Ok((env.id, env.body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_types_and_versions_are_told_apart() {
        let e = decode_client(br#"{"v":1,"id":4,"body":{"type":"drop_tables"}}"#).unwrap_err();
        assert_eq!((e.id, e.code), (4, "unknown_type"));
        let e = decode_client(br#"{"v":9,"id":5,"body":{"type":"list_datasets"}}"#).unwrap_err();
        assert_eq!((e.id, e.code), (5, "unsupported_version"));
        let e = decode_client(b"\xff\x00").unwrap_err();
        assert_eq!(e.code, "malformed");
        let e = decode_client(br#"{"v":1,"id":6,"body":{"type":"request","pointer":"x"}}"#)
            .unwrap_err();
        assert_eq!((e.id, e.code), (6, "malformed"));
        let (id, m) = decode_client(br#"{"v":1,"id":7,"body":{"type":"list_catalogue"}}"#).unwrap();
        assert_eq!((id, m), (7, ClientMsg::ListCatalogue {}));
    }

    /// The spec: `v` is a number equal to 1; `id` an unsigned integer, else `malformed` with id 0.
    #[test]
    fn the_envelope_is_read_as_the_spec_says() {
        let (id, _) =
            decode_client(br#"{"v":1.0,"id":3,"body":{"type":"list_datasets"}}"#).unwrap();
        assert_eq!(id, 3);
        let e = decode_client(br#"{"v":1.5,"id":3,"body":{"type":"list_datasets"}}"#).unwrap_err();
        assert_eq!((e.id, e.code), (3, "unsupported_version"));
        let e = decode_client(br#"{"v":"1","id":3,"body":{"type":"list_datasets"}}"#).unwrap_err();
        assert_eq!((e.id, e.code), (3, "malformed"));
        for env in [
            &br#"{"v":1,"body":{"type":"list_datasets"}}"#[..],
            br#"{"v":1,"id":"3","body":{"type":"list_datasets"}}"#,
            br#"{"v":1,"id":-3,"body":{"type":"list_datasets"}}"#,
            br#"[1,2]"#,
        ] {
            let e = decode_client(env).unwrap_err();
            assert_eq!(
                (e.id, e.code),
                (0, "malformed"),
                "{}",
                String::from_utf8_lossy(env)
            );
        }
        // Unknown fields in the envelope are ignored.
        assert!(decode_client(br#"{"v":1,"id":3,"x":0,"body":{"type":"list_datasets"}}"#).is_ok());
    }

    /// Unknown fields are refused in every client body, nested objects and unit variants included.
    #[test]
    fn unknown_fields_are_refused_at_every_depth() {
        let refused = [
            r#"{"type":"list_datasets","x":1}"#,
            r#"{"type":"list_catalogue","verbose":true}"#,
            r#"{"type":"pointer","expr":{"node":"dataset","name":"rent","x":1}}"#,
            r#"{"type":"pointer","expr":{"node":"count","input":{"node":"dataset","name":"rent","as_of":"2026-01-01"}}}"#,
            r#"{"type":"cost","pointer":0,"dp":{"epsilon":1,"delta":0.001}}"#,
            r#"{"type":"request","pointer":0,"backend":"dp","reason":"r","dp":{"epsilon":1},"priority":9}"#,
            r#"{"type":"status","request":1,"wait_ms":0,"verbose":1}"#,
            r#"{"type":"score","reason":"r","scoring":{"attributes":["a"],"reveal":{"kind":"decision","bits":64},"commitment":"00"}}"#,
        ];
        for body in refused {
            let env = format!(r#"{{"v":1,"id":9,"body":{body}}}"#);
            let e = decode_client(env.as_bytes()).unwrap_err();
            assert_eq!((e.id, e.code), (9, "malformed"), "{body}: {}", e.message);
        }
        // The same messages without the extra fields decode (so the refusals above are about those fields).
        for body in [
            r#"{"type":"list_datasets"}"#,
            r#"{"type":"pointer","expr":{"node":"dataset","name":"rent"}}"#,
            r#"{"type":"cost","pointer":0,"dp":{"epsilon":1}}"#,
            r#"{"type":"request","pointer":0,"backend":"dp","reason":"r","dp":{"epsilon":1,"rho":null}}"#,
            r#"{"type":"status","request":1,"wait_ms":0}"#,
            r#"{"type":"score","reason":"r","scoring":{"attributes":["a"],"reveal":{"kind":"decision"},"commitment":"00"}}"#,
            r#"{"type":"score_abort","reason":"gave up"}"#,
        ] {
            let env = format!(r#"{{"v":1,"id":9,"body":{body}}}"#);
            assert!(decode_client(env.as_bytes()).is_ok(), "{body}");
        }
    }

    fn client_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            Just(ClientMsg::ListDatasets {}),
            Just(ClientMsg::ListCatalogue {}),
            "[a-z_]{1,12}".prop_map(|name| {
                ClientMsg::Pointer {
                    expr: Expr::Column {
                        input: Box::new(Expr::Dataset { name }),
                        name: "amount".into(),
                    },
                }
            }),
            (
                any::<u64>(),
                ".{0,80}",
                prop_oneof![Just(Backend::Plaintext), Just(Backend::Dp)]
            )
                .prop_map(|(pointer, reason, backend)| ClientMsg::Request {
                    pointer,
                    backend,
                    reason,
                    dp: (backend == Backend::Dp).then(|| DpParams {
                        epsilon: Some(0.5),
                        ..DpParams::default()
                    }),
                }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(request, wait_ms)| ClientMsg::Status { request, wait_ms }),
        ]
    }

    proptest! {
        #[test]
        fn client_messages_round_trip(id in any::<u64>(), msg in client_msg()) {
            let bytes = encode(id, &msg);
            prop_assert_eq!(decode_client(&bytes), Ok((id, msg)));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_client(&bytes);
        }

        #[test]
        fn server_errors_round_trip(id in any::<u64>(), code in "[a-z_]{1,20}", message in ".{0,100}") {
            let msg = ServerMsg::Error { code, message };
            let bytes = encode(id, &msg);
            prop_assert_eq!(decode_server(&bytes).unwrap(), (id, msg));
        }
    }
}
