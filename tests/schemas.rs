//! The JSON Schemas in `docs/schemas/` are generated from the Rust wire types (docs/protocol.md refers to
//! them). This test regenerates them and fails when the checked-in files differ from the code.
//!
//! To update the files after changing a wire type (or its doc comments, which become descriptions):
//! `DUO_UPDATE_SCHEMAS=1 cargo test --test schemas`, then review and commit the diff.

use duo::node::proto::receipt::Receipt;
use duo::node::proto::{self as wire, ClientMsg, Envelope, ServerMsg};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Which side of serde a schema describes.
#[derive(Clone, Copy)]
enum Contract {
    /// What the owner node accepts (fields with defaults are optional).
    Deserialize,
    /// What the owner node sends (fields skipped when empty are optional).
    Serialize,
}

/// One checked-in schema: its file name, title and the generated schema.
struct SchemaFile {
    file: &'static str,
    value: Value,
}

fn schema<T: JsonSchema>(contract: Contract, title: &str, description: &str) -> Value {
    let settings = SchemaSettings::draft2020_12();
    let settings = match contract {
        Contract::Deserialize => settings.for_deserialize(),
        Contract::Serialize => settings.for_serialize(),
    };
    let root = settings.into_generator().into_root_schema_for::<T>();
    let mut value = root.to_value();
    if let Value::Object(map) = &mut value {
        map.insert("title".into(), Value::String(title.into()));
        map.insert("description".into(), Value::String(description.into()));
    }
    canonical(value)
}

/// The same JSON with every object's keys in sorted order, whatever serde_json's map type is.
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k, canonical(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn schemas() -> Vec<SchemaFile> {
    vec![
        SchemaFile {
            file: "client-message.json",
            value: schema::<Envelope<ClientMsg>>(
                Contract::Deserialize,
                "Duo client message",
                "One application message from the FI to the owner node (docs/protocol.md, section 7), as the \
                 owner node accepts it. Generated from duo_node::proto::Envelope<ClientMsg>; do not edit.",
            ),
        },
        SchemaFile {
            file: "server-message.json",
            value: schema::<Envelope<ServerMsg>>(
                Contract::Serialize,
                "Duo server message",
                "One application message from the owner node to the FI (docs/protocol.md, section 7), as the \
                 owner node sends it. Generated from duo_node::proto::Envelope<ServerMsg>; do not edit.",
            ),
        },
        SchemaFile {
            file: "receipt.json",
            value: schema::<Receipt>(
                Contract::Serialize,
                "Duo receipt",
                "A signed receipt for one release (docs/protocol.md, section 9). Generated from \
                 duo_node::proto::receipt::Receipt; do not edit.",
            ),
        },
    ]
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join("schemas")
}

fn render(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[test]
fn checked_in_schemas_match_the_code() {
    let update = std::env::var_os("DUO_UPDATE_SCHEMAS").is_some_and(|v| !v.is_empty() && v != "0");
    let dir = dir();
    let mut stale = Vec::new();
    for s in schemas() {
        let path = dir.join(s.file);
        let fresh = render(&s.value);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(fresh.as_str()) {
            continue;
        }
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &fresh).unwrap();
            eprintln!("rewrote {}", path.display());
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "these JSON Schemas differ from the Rust wire types: {}\n\
         If the change to the wire format is intended, regenerate them with\n\
         \x20   DUO_UPDATE_SCHEMAS=1 cargo test --test schemas\n\
         then review the diff, update docs/protocol.md to match, and commit both.",
        stale.join(", ")
    );
}

/// The `const` values of the `type` tag of every variant of a tagged-enum schema.
fn type_tags(schema: &Value, def: &str) -> Vec<String> {
    let variants = schema
        .pointer(&format!("/$defs/{def}/oneOf"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no oneOf in $defs/{def}"));
    variants
        .iter()
        .map(|v| {
            v.pointer("/properties/type/const")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("a variant of {def} has no type tag: {v}"))
                .to_string()
        })
        .collect()
}

#[test]
fn every_client_message_type_in_the_schema_is_known_to_the_decoder() {
    let client = schema::<Envelope<ClientMsg>>(Contract::Deserialize, "", "");
    let tags = type_tags(&client, "ClientMsg");
    assert_eq!(
        tags,
        [
            "list_datasets",
            "list_catalogue",
            "pointer",
            "request",
            "cost",
            "score",
            "score_run",
            "score_abort",
            "ot_prepare",
            "status"
        ]
    );
    let mut known = tags.clone();
    known.sort();
    let mut decoded = wire::CLIENT_TYPES.to_vec();
    decoded.sort_unstable();
    assert_eq!(
        known, decoded,
        "the decoder's list of types is the schema's"
    );
    for tag in tags {
        // A body with only its type is either accepted or malformed (missing fields), never unknown.
        let bytes = format!(r#"{{"v":1,"id":9,"body":{{"type":"{tag}"}}}}"#);
        match wire::decode_client(bytes.as_bytes()) {
            Ok((id, _)) => assert_eq!(id, 9),
            Err(e) => assert_eq!((e.id, e.code), (9, "malformed"), "{tag}: {}", e.message),
        }
    }
}

#[test]
fn server_message_types_are_the_documented_ones() {
    let server = schema::<Envelope<ServerMsg>>(Contract::Serialize, "", "");
    assert_eq!(
        type_tags(&server, "ServerMsg"),
        [
            "welcome",
            "datasets",
            "catalogue",
            "pointer",
            "request",
            "cost",
            "ot_prepared",
            "score_start",
            "score_done",
            "error"
        ]
    );
    // Every server message type has an example in the spec.
    let doc = protocol_md();
    for tag in [
        "welcome",
        "datasets",
        "catalogue",
        "pointer",
        "request",
        "cost",
        "score_start",
        "score_done",
        "error",
    ] {
        assert!(
            doc.contains(&format!("\"type\":\"{tag}\"")),
            "docs/protocol.md has no example of a `{tag}` message"
        );
    }
}

fn protocol_md() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join("protocol.md"),
    )
    .unwrap()
}

/// Test vectors of docs/protocol.md section 12 (computed there independently of this code).
const VECTOR_OWNER_PUBLIC: &str =
    "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209";
const VECTOR_FINGERPRINT: &str = "kidofn7jm44baczaustovkjcq2dk4lq6";
const VECTOR_CODE: &str =
    "duo1-cerdgrcv-ucq2fi5euwtkpkfjvkv2zlnov4-kidofn7jm44baczaustovkjcq2dk4lq6";
const VECTOR_PSK: &str = "8071107657b1fdd866a870d1946d5aab4c9217d6f6f71fdf8e77287e68ffd34f";
const VECTOR_SIGNING_KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
const VECTOR_DIGEST: &str = "946e69d0b605ccbcb186950d5412f0a34d52dd8fc48ed3c18ab5b4de4948e89e";
const VECTOR_RECEIPT: &str = r#"{"v":1,"node_key":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","request":7,"principal":"Acme Bank","backend":"plaintext","lineage":"{\"node\":\"catalogue\",\"name\":\"rent_on_time_ratio_12m\",\"window_end\":\"2026-03-31\"}","answer":"{\"kind\":\"scalar\",\"value\":{\"type\":\"float\",\"value\":0.9166666666666666}}","cost_nanos":0,"log_seq":42,"log_hash":"5e81b1ff0a4895f4e62dc5eab91801133d6fa7c7dd827b9cf0c9718215cf9482","issued_at":"2026-04-12T09:30:01.123Z","signature":"12c42e985c7286f3fbb61f0b924ace0305b462a75d8f93070451a9193c92e5ade60ada40eeb7ddf05fe0308ef30db18706b2dd24c3d4f82d79b1f54917f60607"}"#;

#[test]
fn spec_test_vectors_match_the_code() {
    use duo::node::net::keys::{fingerprint, psk_from_secret, InviteCode, Keypair};
    use duo::node::proto::digest::hex;

    let doc = protocol_md();
    for v in [
        VECTOR_OWNER_PUBLIC,
        VECTOR_FINGERPRINT,
        VECTOR_CODE,
        VECTOR_PSK,
        VECTOR_SIGNING_KEY,
        VECTOR_DIGEST,
        VECTOR_RECEIPT,
    ] {
        assert!(doc.contains(v), "docs/protocol.md no longer shows {v}");
    }

    // Fingerprint of the X25519 key with secret 01 x 32.
    let owner = Keypair::from_secret([1u8; 32]).unwrap();
    assert_eq!(hex(&owner.public), VECTOR_OWNER_PUBLIC);
    assert_eq!(fingerprint(&owner.public), VECTOR_FINGERPRINT);

    // Invite code parts and the PSK derived from them.
    let code = InviteCode::parse(VECTOR_CODE).unwrap();
    assert_eq!(code.id, "cerdgrcv");
    assert_eq!(code.secret.as_str(), "ucq2fi5euwtkpkfjvkv2zlnov4");
    assert_eq!(code.fingerprint, VECTOR_FINGERPRINT);
    assert_eq!(code.to_string(), VECTOR_CODE);
    assert_eq!(hex(&code.psk()), VECTOR_PSK);
    assert_eq!(
        hex(&psk_from_secret("CERDGRCV", "UCQ2FI5EUWTKPKFJVKV2ZLNOV4")),
        VECTOR_PSK
    );

    // The receipt's signed digest and signature, as a third party computes them.
    let receipt: Receipt = serde_json::from_str(VECTOR_RECEIPT).unwrap();
    assert_eq!(hex(&receipt.signed_bytes()), VECTOR_DIGEST);
    receipt.verify(Some(VECTOR_SIGNING_KEY)).unwrap();
    let mut altered = receipt.clone();
    altered.answer = altered.answer.replace("0.9166666666666666", "1.0");
    assert!(altered.verify(Some(VECTOR_SIGNING_KEY)).is_err());
    // The receipt is also valid against the checked-in schema's required fields.
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("receipt.json")).unwrap())
            .unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let fields: Value = serde_json::from_str(VECTOR_RECEIPT).unwrap();
    let fields = fields.as_object().unwrap();
    assert_eq!(required.len(), fields.len());
    for name in required {
        assert!(fields.contains_key(name), "the vector has no `{name}`");
    }
}
