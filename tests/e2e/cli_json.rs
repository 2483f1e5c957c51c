//! The JSON the `duo` commands print with `--json` (documented in `docs/cli-json.md`): no Rust spellings
//! (`Ok`/`Err` wrappers), times as RFC 3339 text, log bodies as objects, and errors as JSON on standard output
//! with a non-zero exit.

use super::cli::{duo, json, ok, serve};
use std::path::Path;

/// Every object key anywhere in `v`.
fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// `duo ARGS --json`, which must succeed and print JSON free of Rust wrappers.
fn clean(home: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let v = json(&ok(home, &args));
    let mut all = Vec::new();
    keys(&v, &mut all);
    for bad in ["Ok", "Err", "Some", "None"] {
        assert!(
            !all.iter().any(|k| k == bad),
            "duo {args:?} prints a `{bad}` key: {v}"
        );
    }
    v
}

/// `duo ARGS --json` that fails: a JSON error on standard output and a non-zero exit.
fn json_error(home: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = duo(home, &args);
    assert!(!out.status.success(), "duo {args:?} should fail");
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    v
}

#[test]
fn json_output_follows_the_documented_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, fi, data) = (
        dir.path().join("owner"),
        dir.path().join("fi"),
        dir.path().join("data"),
    );
    ok(&owner, &["sample", "--out", data.to_str().unwrap()]);
    ok(&owner, &["owner", "init"]);
    let rent = data.join("rent.csv");
    clean(
        &owner,
        &["owner", "load", rent.to_str().unwrap(), "--name", "rent"],
    );
    let (mut node, url) = serve(&owner);
    let invite = clean(&owner, &["owner", "invite", "--fi", "Acme Bank"]);
    let listed = clean(&owner, &["owner", "invite", "list"]);
    let expires = listed[0]["expires_at"]
        .as_str()
        .expect("expires_at is text");
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).is_ok(),
        "{expires}"
    );
    clean(&fi, &["fi", "pair", &url, invite["code"].as_str().unwrap()]);
    let paired = clean(&owner, &["owner", "fi", "list"]);
    assert!(paired[0]["expires_at"].is_string(), "{paired}");
    // A request the owner is asked about: its exact value is shown as an Answer, not `{"Ok": …}`.
    let asked = clean(
        &fi,
        &["fi", "request", "count(rent)", "--reason", "history"],
    );
    let pending = clean(&owner, &["owner", "requests"]);
    assert_eq!(pending[0]["value"]["kind"], "scalar", "{pending}");
    clean(&owner, &["owner", "budget", "show"]);
    clean(&owner, &["owner", "datasets"]);
    clean(&owner, &["owner", "key"]);
    let log = clean(&owner, &["owner", "log"]);
    let loaded = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "dataset_loaded")
        .expect("the load is logged");
    assert_eq!(
        loaded["body"]["dataset"], "rent",
        "the body is an object: {loaded}"
    );
    clean(&owner, &["owner", "log", "--verify"]);
    clean(&fi, &["fi", "datasets"]);
    let cat = clean(&fi, &["fi", "catalogue"]);
    let rent = cat
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "rent_on_time_ratio_12m")
        .expect("the catalogue lists rent_on_time_ratio_12m");
    assert_eq!(
        rent["reason"],
        duo::engine::catalogue::entry("rent_on_time_ratio_12m")
            .unwrap()
            .reason(),
        "each attribute carries its decline reason in words: {rent}"
    );
    clean(&fi, &["fi", "receipts"]);
    clean(&fi, &["fi", "result", &asked["id"].to_string()]);

    // Errors, with --json: JSON on standard output, the node's code, a non-zero exit.
    let e = json_error(&fi, &["fi", "result", "999"]);
    assert_eq!(e["error"], "not_found", "{e}");
    let e = json_error(&owner, &["owner", "approve", "999", "--yes"]);
    assert_eq!(e["error"], "not_found", "{e}");
    let e = json_error(&owner, &["owner", "approve", "999"]);
    assert_eq!(e["error"], "usage", "a usage error is JSON too: {e}");
    let e = json_error(&fi, &["fi", "request", "count(", "--reason", "x"]);
    assert!(e["message"].as_str().unwrap().contains("count("), "{e}");
    node.kill().unwrap();
    node.wait().unwrap();
}
