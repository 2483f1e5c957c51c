//! The `duo` binary: the owner and FI walkthrough from the README, a kill -9 restart, and parse errors.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub(crate) fn duo(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

pub(crate) fn ok(home: &Path, args: &[&str]) -> String {
    let out = duo(home, args);
    assert!(
        out.status.success(),
        "duo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn serve(home: &Path) -> (Child, String) {
    let (child, url, _) = super::serve::spawn_serve(home, &[], &[]);
    (child, url)
}

pub(crate) fn json(s: &str) -> serde_json::Value {
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

    // An auditor checks the FI's receipts, as `duo fi receipts --json` prints them, against the signing key
    // the owner prints; with another key every one is refused.
    let signing = json(&ok(&owner, &["owner", "key", "--json"]))["signing_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(signing.len(), 64, "{signing}");
    let receipts = ok(&fi, &["fi", "receipts", "--json"]);
    let kept = json(&receipts).as_array().unwrap().len();
    assert!(kept >= 1, "{receipts}");
    let file = dir.path().join("receipts.json");
    std::fs::write(&file, &receipts).unwrap();
    let file = file.to_str().unwrap();
    let checked = ok(&owner, &["verify-receipt", file, "--key", &signing]);
    assert_eq!(
        checked.matches("receipt verifies").count(),
        kept,
        "{checked}"
    );
    let wrong = duo(&owner, &["verify-receipt", file, "--key", &"ab".repeat(32)]);
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&wrong.stdout)
            .matches("does NOT verify")
            .count(),
        kept
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

    // A good file: the rule count and the small-count suppression the owner set, in words and in JSON.
    std::fs::write(
        &p,
        "default = \"ask\"\n\n[dp]\nmin_group_count = 10\n\n[[rule]]\nname = \"x\"\naction = \"deny\"\nreason = \"no\"\n",
    )
    .unwrap();
    let out = duo(
        dir.path(),
        &["owner", "policy", "check", p.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 rule(s); groups with a noisy count below 10 are withheld"),
        "{text}"
    );
    let out = duo(
        dir.path(),
        &["owner", "policy", "check", p.to_str().unwrap(), "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["min_group_count"], 10, "{v}");
}

/// `duo fi score` end to end against a served owner node with the demo policy: the revealed decision and band
/// equal the bit-exact fixed-point reference of the model on the owner's attribute values (fetched here as
/// auto-approved plaintext catalogue releases), the commitment opens to the model, and the owner's limit of 3
/// runs in 30 days refuses a 4th.
#[test]
fn fi_score_reveals_what_the_model_gives_and_the_owner_limits_runs() {
    use duo::node::fi::ModelFile;
    use duo_protocols::fixed::{self, Bounds, FixedModel};

    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner-home");
    let fi = dir.path().join("fi-home");
    duo_testkit::sample_owner(
        &owner,
        duo::policies::Policy::demo_text(),
        duo_testkit::owner::TEST_SEED,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap();
    let (mut node, url) = serve(&owner);
    let code = json(&ok(
        &owner,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ))["code"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&fi, &["fi", "pair", &url, &code]);

    let model_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/model.toml");
    let model_arg = model_path.to_str().unwrap();
    let model = ModelFile::parse(&std::fs::read_to_string(&model_path).unwrap()).unwrap();
    assert_eq!(
        model.bands.len(),
        3,
        "the example model has bands for bands:4"
    );

    // The reference: the owner's values, released in plaintext (the demo policy approves catalogue attributes).
    let attrs: Vec<f64> = model
        .attributes()
        .iter()
        .map(|a| {
            let v = json(&ok(
                &fi,
                &[
                    "fi",
                    "request",
                    &format!("{a}()"),
                    "--reason",
                    "reference",
                    "--json",
                ],
            ));
            assert_eq!(v["state"], "approved", "{v}");
            v["answer"]["value"]["value"].as_f64().unwrap()
        })
        .collect();
    let bounds: Vec<Bounds> = model
        .attributes()
        .iter()
        .map(|a| {
            let e = duo::engine::catalogue::entry(a).unwrap();
            Bounds::new(e.bounds.lo, e.bounds.hi)
        })
        .collect();
    let weights: Vec<f64> = model.weights.values().copied().collect();
    let reference = FixedModel::new(
        &bounds,
        &weights,
        model.bias,
        model.linear_threshold().unwrap(),
    )
    .unwrap()
    .score_reference(&attrs)
    .unwrap();
    let thresholds: Vec<i64> = model
        .bands
        .iter()
        .map(|&t| fixed::encode(t, fixed::SCORE_FRAC_BITS, || "band".into()).unwrap())
        .collect();
    let band = fixed::band_of(reference.score, &thresholds);
    // The example model approves the reliable sample person.
    assert!(
        reference.decision,
        "score {}",
        fixed::decode_score(reference.score)
    );

    // Run 1: a decision, auto-approved by the demo policy, in text.
    let out = duo(
        &fi,
        &[
            "fi",
            "score",
            "--model",
            model_arg,
            "--reason",
            "loan decision",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{text}\n{err}");
    let want = if reference.decision {
        "approve"
    } else {
        "decline"
    };
    assert!(text.contains(&format!("run 1: {want}")), "{text}");
    assert!(text.contains("(1 bit)"), "{text}");
    assert!(
        text.contains("to Acme Bank (this FI) and to the owner"),
        "{text}"
    );
    assert!(text.contains("receipt:    verified"), "{text}");
    assert!(err.contains("waiting for the owner's challenge"), "{err}");

    // Run 2: four bands go to the owner; the owner sees the scoring facts, approves, and the FI runs it.
    let out = duo(
        &fi,
        &[
            "fi", "score", "--model", model_arg, "--reason", "pricing", "--reveal", "bands:4",
        ],
    );
    // Waiting for the owner is not a failure: the request is made, and the command says how to run it.
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("waits for the owner") && said.contains("--request"),
        "{said}"
    );
    let pending = json(&ok(&owner, &["owner", "requests", "--json"]));
    let id = pending[0]["id"].as_u64().unwrap().to_string();
    assert_eq!(pending[0]["scoring"]["runs_used"], 1);
    assert_eq!(pending[0]["scoring"]["bits"], 2.0);
    let screen = ok(&owner, &["owner", "requests"]);
    assert!(screen.contains("private scoring (2pc)"), "{screen}");
    assert!(
        screen.contains("(their values stay on this node)"),
        "{screen}"
    );
    assert!(
        screen.contains("1 of 3 runs in the last 30 days"),
        "{screen}"
    );
    assert!(!screen.contains("WARNING"), "{screen}");
    ok(&owner, &["owner", "approve", &id, "--yes"]);
    let banded = json(&ok(
        &fi,
        &[
            "fi",
            "score",
            "--model",
            model_arg,
            "--request",
            &id,
            "--json",
        ],
    ));
    assert_eq!(banded["outcome"]["kind"], "band", "{banded}");
    assert_eq!(banded["outcome"]["band"], band, "{banded}");
    assert_eq!(banded["outcome"]["of"], 4);
    assert_eq!(banded["bits"], 2.0);
    // One run per approved request.
    let again = duo(
        &fi,
        &["fi", "score", "--model", model_arg, "--request", &id],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already had its run"));

    // Run 3: a decision in JSON; the commitment opens to the model.
    let r = json(&ok(
        &fi,
        &[
            "fi", "score", "--model", model_arg, "--reason", "again", "--json",
        ],
    ));
    assert_eq!(r["outcome"]["kind"], "decision");
    assert_eq!(r["outcome"]["approve"], reference.decision);
    assert_eq!(r["bits"], 1.0);
    // A new process and session, yet no base OTs: the last run's state was kept on both sides.
    assert_eq!(r["cold"], false);
    assert_eq!(r["run"], 3);
    let commitment = r["commitment"].as_str().unwrap();
    let opening =
        json(&std::fs::read_to_string(fi.join(format!("fi/models/{commitment}.json"))).unwrap());
    let salt_hex = opening["salt"].as_str().unwrap();
    let salt: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&salt_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let opened: ModelFile = serde_json::from_value(opening["model"].clone()).unwrap();
    assert_eq!(opened, model);
    assert_eq!(opened.commitment(&salt.try_into().unwrap()), commitment);

    // Run 4: refused by the owner's limit, with the numbers.
    let out = duo(
        &fi,
        &["fi", "score", "--model", model_arg, "--reason", "once more"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("3 of 3 scoring runs in the last 30 days"),
        "{err}"
    );

    // The owner's log tells the story in words.
    let log = ok(&owner, &["owner", "log"]);
    assert!(log.contains("run 3 of 3 in the window"), "{log}");
    assert!(
        log.contains(&format!("run 2 finished: band {band} of 4")),
        "{log}"
    );
    assert!(log.contains("deny by policy (rule scoring-limit)"), "{log}");
    node.kill().unwrap();
    node.wait().unwrap();

    // A model file that does not parse names the file and the problem, before any connection.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "bias = 0.0\nthreshold = 0.0\n[weights]\nsalary = 1.0\n",
    )
    .unwrap();
    let out = duo(
        &fi,
        &[
            "fi",
            "score",
            "--model",
            bad.to_str().unwrap(),
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("`salary` is not a catalogue attribute"),
        "{err}"
    );
}

/// A reader that goes away (`duo owner log | head -1`) ends the command quietly, with the status a Unix tool
/// killed by a broken pipe has (141), never with a panic.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = dir.path().join("data");
    ok(&home, &["sample", "--out", data.to_str().unwrap()]);
    ok(&home, &["owner", "init"]);
    ok(
        &home,
        &[
            "owner",
            "load",
            data.join("transactions.csv").to_str().unwrap(),
            "--name",
            "transactions",
        ],
    );
    for args in [&["owner", "log", "--json"][..], &["owner", "datasets"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_duo"))
            .arg("--home")
            .arg(&home)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the command has written anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "duo {args:?}: {stderr}");
        assert!(
            out.status.success() || out.status.code() == Some(141),
            "duo {args:?}: {:?} {stderr}",
            out.status
        );
    }
}

fn fails(home: &Path, args: &[&str]) -> String {
    let out = duo(home, args);
    assert!(
        !out.status.success(),
        "duo {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// `duo owner invite`: open invites are listed and cancelled; a second invite for a paired FI is refused
/// unless it re-keys, says what re-keying means, and the replaced key is told so.
#[test]
fn invites_are_listed_cancelled_and_re_key_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner-home");
    let fi = dir.path().join("fi-home");
    let fi2 = dir.path().join("fi2-home");
    ok(&owner, &["owner", "init"]);
    let (mut node, url) = serve(&owner);
    let invite = |args: &[&str]| {
        json(&ok(
            &owner,
            &[&["owner", "invite", "--json"], args].concat(),
        ))
    };
    let first = invite(&["--fi", "Acme Bank", "--ttl", "15m"]);
    let spare = invite(&["--fi", "Acme Bank"]);
    assert_eq!(spare["other_open_invites"], 1);
    let list = json(&ok(&owner, &["owner", "invite", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["principal"], "Acme Bank");
    assert_eq!(list[0]["rekey"], false);
    assert_eq!(list[0]["attempts"], 0);
    assert!(list[0].get("psk").is_none());
    let spare_id = spare["invite"].as_str().unwrap();
    let cancelled = ok(&owner, &["owner", "invite", "cancel", spare_id]);
    assert!(cancelled.contains("no longer pairs"), "{cancelled}");
    let err = fails(&owner, &["owner", "invite", "cancel", spare_id]);
    assert!(err.contains("cancelled"), "{err}");
    let err = fails(&fi2, &["fi", "pair", &url, spare["code"].as_str().unwrap()]);
    assert!(err.contains("cancelled"), "{err}");

    ok(&fi, &["fi", "pair", &url, first["code"].as_str().unwrap()]);
    assert!(ok(&owner, &["owner", "invite", "list"]).contains("no open invite"));
    // A plain invite for the paired FI is refused, and says how to re-key.
    let err = fails(&owner, &["owner", "invite", "--fi", "Acme Bank"]);
    assert!(err.contains("already paired"), "{err}");
    assert!(err.contains("--rekey"), "{err}");
    // --rekey makes one, and says what it means.
    let out = duo(&owner, &["owner", "invite", "--fi", "Acme Bank", "--rekey"]);
    assert!(out.status.success());
    let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("RE-KEYS"), "{said}");
    assert!(said.contains("stops working"), "{said}");
    assert!(said.contains("inherits"), "{said}");
    assert!(ok(&owner, &["owner", "invite", "list"]).contains("re-key"));
    // The new key pairs and the old one is told it was replaced.
    ok(&fi2, &["fi", "pair", &url, &code]);
    let err = fails(&fi, &["fi", "datasets"]);
    assert!(err.contains("replaced by a newer key"), "{err}");
    ok(&fi2, &["fi", "datasets"]);
    let log = ok(&owner, &["owner", "log"]);
    assert!(log.contains("re-key: replaces FI key"), "{log}");
    assert!(log.contains("invite_cancelled"), "{log}");
    // Revoking cancels the FI's open invites too.
    invite(&["--fi", "Acme Bank", "--rekey"]);
    let revoked = json(&ok(
        &owner,
        &["owner", "fi", "revoke", "Acme Bank", "--json"],
    ));
    assert_eq!(revoked["cancelled_invites"].as_array().unwrap().len(), 1);
    ok(&owner, &["owner", "log", "--verify"]);
    node.kill().unwrap();
    node.wait().unwrap();
}

/// `duo fi score --reveal decision+reasons:2` against an owner whose policy allows reasons: a model no one
/// passes declines, the FI's output gives each reason in the catalogue's plain words, and the owner's log
/// names the same attributes.
#[test]
fn fi_score_with_reasons_gives_plain_reasons_to_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner-home");
    let fi = dir.path().join("fi-home");
    let policy = "default = \"ask\"\n\n[[rule]]\nname = \"adverse-action\"\nbackend = [\"2pc\"]\n\
                  reveal = [\"decision+reasons\"]\naction = \"approve\"\n";
    duo_testkit::sample_owner(
        &owner,
        policy,
        duo_testkit::owner::TEST_SEED,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap();
    let (mut node, url) = serve(&owner);
    let code = json(&ok(
        &owner,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ))["code"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&fi, &["fi", "pair", &url, &code]);
    let model = dir.path().join("decline.toml");
    std::fs::write(
        &model,
        "bias = 0.0\nprobability = 0.999\n[weights]\nrent_on_time_ratio_12m = 1.0\n\
         nsf_overdraft_count_90d = -0.5\nutility_on_time_ratio_12m = 1.0\n",
    )
    .unwrap();
    let out = ok(
        &fi,
        &[
            "fi",
            "score",
            "--model",
            model.to_str().unwrap(),
            "--reveal",
            "decision+reasons:2",
            "--reason",
            "adverse action notice",
        ],
    );
    assert!(out.contains("decline"), "{out}");
    let reasons: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("reason "))
        .collect();
    assert_eq!(reasons.len(), 2, "{out}");
    let named: Vec<&str> = reasons
        .iter()
        .map(|l| {
            let e = duo::engine::catalogue::entries()
                .iter()
                .find(|e| l.ends_with(&format!("({})", e.name)))
                .unwrap_or_else(|| panic!("no attribute named in {l:?}"));
            assert!(l.contains(&e.reason()), "{l}");
            e.name
        })
        .collect();
    assert_ne!(named[0], named[1]);
    let log = ok(&owner, &["owner", "log"]);
    let finished = log
        .lines()
        .find(|l| l.contains("finished: decline"))
        .unwrap_or_else(|| panic!("{log}"));
    for a in &named {
        assert!(finished.contains(a), "{finished}");
    }
    let _ = node.kill();
    let _ = node.wait();
}
