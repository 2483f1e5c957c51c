//! What a new user hit (issue 10, item 23): a header-only file that would empty a dataset, dates outside the
//! declared window, a cap that lets nothing through, a second owner paired under the first one's name, and an
//! FI that could not list its owners or its requests.

use super::cli::{duo, json, ok, serve};

#[test]
fn a_new_user_is_told_before_anything_is_lost_or_silently_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, fi, data) = (
        dir.path().join("owner"),
        dir.path().join("fi"),
        dir.path().join("data"),
    );
    ok(&owner, &["sample", "--out", data.to_str().unwrap()]);
    ok(&owner, &["owner", "init"]);
    let rent = data.join("rent.csv");
    let meta = data.join("rent.meta.toml");
    ok(
        &owner,
        &["owner", "load", rent.to_str().unwrap(), "--name", "rent"],
    );

    // A header-only file is refused, and the dataset keeps its rows; --allow-empty loads it.
    let text = std::fs::read_to_string(&rent).unwrap();
    let empty = data.join("empty.csv");
    std::fs::write(&empty, format!("{}\n", text.lines().next().unwrap())).unwrap();
    let meta_arg = ["--meta", meta.to_str().unwrap()];
    let load_empty = |extra: &[&str]| {
        let mut args = vec!["owner", "load", empty.to_str().unwrap(), "--name", "rent"];
        args.extend_from_slice(&meta_arg);
        args.extend_from_slice(extra);
        duo(&owner, &args)
    };
    let refused = load_empty(&[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--allow-empty"), "{said}");
    let ds = json(&ok(&owner, &["owner", "datasets", "--json"]));
    assert_eq!(
        ds[0]["version"], 1,
        "the refused load changed nothing: {ds}"
    );
    assert!(load_empty(&["--allow-empty"]).status.success());

    // Dates outside the declared window are loaded with a warning naming them.
    let narrow = std::fs::read_to_string(&meta)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("window") {
                "window = { start = \"2025-06-01\", end = \"2025-12-31\" }".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let narrow_meta = data.join("narrow.meta.toml");
    std::fs::write(&narrow_meta, narrow).unwrap();
    let loaded = ok(
        &owner,
        &[
            "owner",
            "load",
            rent.to_str().unwrap(),
            "--name",
            "rent",
            "--meta",
            narrow_meta.to_str().unwrap(),
        ],
    );
    assert!(
        loaded.contains("warning:") && loaded.contains("outside the declared window"),
        "{loaded}"
    );

    // A cap for one FI while no global cap exists says that it lets nothing through.
    let capped = ok(
        &owner,
        &[
            "owner",
            "budget",
            "set",
            "--fi",
            "Acme Bank",
            "--epsilon",
            "1",
        ],
    );
    assert!(capped.contains("no global budget is set"), "{capped}");
    let global = ok(&owner, &["owner", "budget", "set", "--epsilon", "2"]);
    assert!(!global.contains("warning"), "{global}");

    // The FI: a second owner under the name of the first is refused before its code is used.
    let (mut node, url) = serve(&owner);
    let code = |who: &str| {
        json(&ok(&owner, &["owner", "invite", "--fi", who, "--json"]))["code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    ok(&fi, &["fi", "pair", &url, &code("Acme Bank")]);
    let other = dir.path().join("other-owner");
    ok(&other, &["owner", "init"]);
    let (mut other_node, other_url) = serve(&other);
    let other_code = json(&ok(
        &other,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ))["code"]
        .as_str()
        .unwrap()
        .to_string();
    let clash = duo(&fi, &["fi", "pair", &other_url, &other_code]);
    assert!(!clash.status.success());
    let said = String::from_utf8_lossy(&clash.stderr);
    assert!(
        said.contains("--name") && said.contains("--replace"),
        "{said}"
    );
    // The same code still pairs under another name: the refusal did not use it up.
    ok(
        &fi,
        &["fi", "pair", &other_url, &other_code, "--name", "second"],
    );
    let owners = json(&ok(&fi, &["fi", "owners", "--json"]));
    let names: Vec<_> = owners
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["owner", "second"]);

    // The FI's own requests, as last seen.
    ok(
        &fi,
        &[
            "fi",
            "request",
            "count(rent)",
            "--reason",
            "history",
            "--owner",
            "owner",
        ],
    );
    let mine = json(&ok(&fi, &["fi", "requests", "--json"]));
    assert_eq!(mine[0]["owner"], "owner");
    assert_eq!(mine[0]["state"], "pending");
    assert_eq!(mine[0]["reason"], "history");

    // The example model is a command away, outside the source tree too.
    let model = dir.path().join("model.toml");
    ok(&fi, &["fi", "model", "init", model.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&model)
        .unwrap()
        .contains("[weights]"));
    assert!(!duo(&fi, &["fi", "model", "init", model.to_str().unwrap()])
        .status
        .success());

    node.kill().unwrap();
    node.wait().unwrap();
    other_node.kill().unwrap();
    other_node.wait().unwrap();
}
