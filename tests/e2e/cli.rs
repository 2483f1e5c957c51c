//! The `duo` binary: the owner and FI walkthrough from the README, a kill -9 restart, and parse errors.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn duo(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = duo(home, args);
    assert!(
        out.status.success(),
        "duo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn serve(home: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(home)
        .args(["owner", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url:?}");
    (child, url)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn owner_and_fi_walkthrough_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner-home");
    let fi = dir.path().join("fi-home");
    let data = dir.path().join("data");
    ok(
        &owner,
        &["sample", "--out", data.to_str().unwrap(), "--seed", "3"],
    );
    ok(&owner, &["owner", "init"]);
    for name in ["rent", "utilities", "transactions"] {
        let file = data.join(format!("{name}.csv"));
        let out = ok(
            &owner,
            &[
                "owner",
                "load",
                file.to_str().unwrap(),
                "--name",
                name,
                "--json",
            ],
        );
        assert_eq!(json(&out)["version"], 1);
    }
    let (mut node, url) = serve(&owner);
    let code = json(&ok(
        &owner,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ))["code"]
        .as_str()
        .unwrap()
        .to_string();
    let paired = json(&ok(&fi, &["fi", "pair", &url, &code, "--json"]));
    assert_eq!(paired["principal"], "Acme Bank");
    let ds = json(&ok(&fi, &["fi", "datasets", "--json"]));
    assert_eq!(ds.as_array().unwrap().len(), 3);
    assert!(
        ds.to_string().find("\"rows\"").is_none(),
        "metadata must not carry rows"
    );

    // The default policy asks the owner about everything.
    let req = json(&ok(
        &fi,
        &[
            "fi",
            "request",
            "count(rent)",
            "--reason",
            "months of history",
            "--json",
        ],
    ));
    assert_eq!(req["state"], "pending");
    let id = req["id"].as_u64().unwrap();
    let pending = json(&ok(&owner, &["owner", "requests", "--json"]));
    assert_eq!(pending[0]["id"], id);
    let token = pending[0]["token"].as_str().unwrap().to_string();

    // kill -9 the node; nothing acknowledged is lost.
    node.kill().unwrap();
    node.wait().unwrap();
    let approved = json(&ok(
        &owner,
        &[
            "owner",
            "approve",
            &id.to_string(),
            "--seen",
            &token,
            "--json",
        ],
    ));
    assert_eq!(approved["state"], "approved");
    let (mut node, url2) = serve(&owner);
    // The FI reaches the restarted node at its new port.
    let pairings = fi.join("fi/pairings.json");
    let text = std::fs::read_to_string(&pairings)
        .unwrap()
        .replace(&url, &url2);
    std::fs::write(&pairings, text).unwrap();
    let result = json(&ok(&fi, &["fi", "result", &id.to_string(), "--json"]));
    assert_eq!(result["state"], "approved");
    assert_eq!(result["answer"]["value"]["value"], 24);

    // Denial with a reason; the FI's request command exits 1 on a denial.
    let req = json(&ok(
        &fi,
        &[
            "fi",
            "request",
            "sum(rent.amount)",
            "--reason",
            "total",
            "--json",
        ],
    ));
    let id2 = req["id"].as_u64().unwrap().to_string();
    ok(
        &owner,
        &["owner", "deny", &id2, "--reason", "too revealing"],
    );
    let res = json(&ok(&fi, &["fi", "result", &id2, "--json"]));
    assert_eq!(res["state"], "denied");
    assert_eq!(res["why"], "too revealing");

    let verify = duo(&owner, &["owner", "log", "--verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    node.kill().unwrap();
    node.wait().unwrap();

    // Files are private to the user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&owner.join("owner")), 0o700);
        assert_eq!(mode(&owner.join("owner/duo.sqlite")), 0o600);
        assert_eq!(mode(&owner.join("owner/node.key")), 0o600);
        assert_eq!(mode(&fi.join("fi/fi.key")), 0o600);
    }
}

#[test]
fn expression_errors_point_at_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let out = duo(
        dir.path(),
        &[
            "fi",
            "request",
            "mean(clamp(rent.amount, 0, 300000)",
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains('^'), "{err}");
}

#[test]
fn policy_check_points_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(
        &p,
        "default = \"ask\"\n\n[[rule]]\nname = \"x\"\naction = \"maybe\"\n",
    )
    .unwrap();
    let out = duo(
        dir.path(),
        &["owner", "policy", "check", p.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":5:"), "{text}");
}
