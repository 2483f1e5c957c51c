//! The FI's web UI (`duo fi ui`) over plain HTTP, paired with a real `duo owner serve`: who may use it (secret,
//! cookie, Host, Origin, CSRF, headers, loopback only), and what it does (connecting with an invite code pairs;
//! a request made in it reaches the owner; the owner's answer shows with its verified receipt; a denial's reason
//! shows).

use super::cli::{duo, json, ok};
use super::ui::{csrf, http_to, owner_with_data, start, Resp};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `duo fi ui`; killed on drop.
struct FiUi {
    child: Child,
    /// `127.0.0.1:PORT`.
    host: String,
    secret: String,
}

impl Drop for FiUi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_fi(fi: &Path) -> FiUi {
    let mut child = Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(fi)
        .args(["fi", "ui"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let rest = line
        .trim()
        .strip_prefix("http://")
        .expect("an http:// address");
    let (host, secret) = rest.split_once("/?k=").expect("the secret in the address");
    FiUi {
        child,
        host: host.to_string(),
        secret: secret.to_string(),
    }
}

impl FiUi {
    fn get(&self, path: &str, cookie: &str) -> Resp {
        http_to(
            &self.host,
            "GET",
            path,
            &[("Host", &self.host), ("Cookie", cookie)],
            "",
        )
    }

    /// A POST from the UI's own page.
    fn post(&self, path: &str, cookie: &str, body: &str) -> Resp {
        let own = format!("http://{}", self.host);
        http_to(
            &self.host,
            "POST",
            path,
            &[("Host", &self.host), ("Cookie", cookie), ("Origin", &own)],
            body,
        )
    }

    fn sign_in(&self) -> String {
        let r = http_to(
            &self.host,
            "GET",
            &format!("/?k={}", self.secret),
            &[("Host", &self.host)],
            "",
        );
        assert_eq!(r.status, 303);
        let c = r.header("set-cookie").unwrap();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        c.split(';').next().unwrap().to_string()
    }
}

/// A form body, percent-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn the_fi_ui_refuses_no_secret_a_foreign_host_a_cross_origin_post_and_a_missing_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let fi = dir.path().join("fi-home");
    let ui = start_fi(&fi);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fi.join("fi").join("ui.url"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the address file is private");
    }
    for path in [
        "/",
        "/connect",
        "/new",
        "/requests",
        "/score",
        "/check?owner=o&expr=x",
    ] {
        let r = ui.get(path, "");
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("content-security-policy").is_some(), "{path}");
    }
    let c = ui.sign_in();
    let page = ui.get("/connect", &c);
    assert_eq!(page.status, 200, "{}", page.body);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(page.header("access-control-allow-origin"), None);
    assert!(page.body.contains("invite code"), "{}", page.body);
    let token = csrf(&page.body);
    // A rebinding name for the same socket.
    let foreign = http_to(
        &ui.host,
        "GET",
        "/connect",
        &[("Host", "evil.example:80"), ("Cookie", &c)],
        "",
    );
    assert_eq!(foreign.status, 403);
    let body = form(&[
        ("csrf", &token),
        ("url", "ws://127.0.0.1:1"),
        ("code", "duo1-x"),
        ("name", "x"),
    ]);
    let evil = http_to(
        &ui.host,
        "POST",
        "/connect",
        &[
            ("Host", &ui.host),
            ("Cookie", &c),
            ("Origin", "http://evil.example"),
        ],
        &body,
    );
    assert_eq!(evil.status, 403, "{}", evil.body);
    let cross_site = http_to(
        &ui.host,
        "POST",
        "/connect",
        &[
            ("Host", &ui.host),
            ("Cookie", &c),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        &body,
    );
    assert_eq!(cross_site.status, 403);
    let no_token = ui.post(
        "/connect",
        &c,
        "url=ws%3A%2F%2F127.0.0.1%3A1&code=duo1-x&name=x",
    );
    assert!(no_token.status == 422 || no_token.status == 400 || no_token.status == 403);
    let bad_token = ui.post(
        "/connect",
        &c,
        &form(&[
            ("csrf", &"0".repeat(64)),
            ("url", "ws://127.0.0.1:1"),
            ("code", "duo1-x"),
            ("name", "x"),
        ]),
    );
    assert_eq!(bad_token.status, 403);
    // Bodies over the limit: the scoring form takes a model file, the others a few fields.
    let big = format!("csrf={token}&url={}", "a".repeat(20 * 1024));
    assert_eq!(ui.post("/connect", &c, &big).status, 413);
    // Off the loopback interface the UI does not start.
    let out = duo(&fi, &["fi", "ui", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1"));
}

#[test]
fn connecting_in_the_fi_ui_pairs_and_its_requests_reach_the_owner_and_come_back_with_verified_receipts(
) {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_with_data(dir.path());
    let owner_ui = start(&home);
    let fi = dir.path().join("fi-home");
    let ui = start_fi(&fi);
    let c = ui.sign_in();
    // No pairing yet: Home sends the person to Connect.
    assert_eq!(ui.get("/", &c).status, 303);
    let token = csrf(&ui.get("/connect", &c).body);
    let code = json(&ok(
        &home,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ))["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ui.post(
        "/connect",
        &c,
        &form(&[
            ("csrf", &token),
            ("url", &owner_ui.ws),
            ("code", &code),
            ("name", "maria"),
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let pinned = json(&ok(&fi, &["fi", "owners", "--json"]));
    assert_eq!(pinned[0]["name"], "maria");
    let fingerprint = pinned[0]["fingerprint"].as_str().unwrap();
    assert!(r.body.contains(fingerprint), "the pinned key is shown");
    assert!(r.body.contains("Acme Bank"));
    // The code works once.
    let again = ui.post(
        "/connect",
        &c,
        &form(&[
            ("csrf", &token),
            ("url", &owner_ui.ws),
            ("code", &code),
            ("name", "other"),
        ]),
    );
    assert_eq!(again.status, 409, "{}", again.body);

    let home_page = ui.get("/", &c);
    assert!(
        home_page.body.contains("<strong>rent</strong> (version 1)"),
        "{}",
        home_page.body
    );
    assert!(home_page.body.contains("rent_on_time_ratio_12m()"));

    // The live check: the parser's error with its position, the node's type error, the lineage in words.
    let chk = |e: &str| {
        json(
            &ui.get(&format!("/check?owner=maria&{}", form(&[("expr", e)])), &c)
                .body,
        )
    };
    let unclosed = chk("mean(rent.amount");
    assert_eq!(unclosed["ok"], false);
    assert!(
        unclosed["error"].as_str().unwrap().contains("expected `)`"),
        "{unclosed}"
    );
    let no_column = chk("mean(rent.nope)");
    assert!(
        no_column["error"]
            .as_str()
            .unwrap()
            .contains("no column `nope`"),
        "{no_column}"
    );
    let fine = chk("count(rent)");
    assert_eq!(fine["ok"], true, "{fine}");
    assert!(fine["lineage"].as_str().unwrap().contains("rent"), "{fine}");

    let ask = |expr: &str, reason: &str| {
        ui.post(
            "/new",
            &c,
            &form(&[
                ("csrf", &token),
                ("owner", "maria"),
                ("expr", expr),
                ("reason", reason),
                ("backend", "plaintext"),
                ("action", "send"),
            ]),
        )
    };
    // A batch's preview: each question's cost and expected error under the total, nothing charged.
    let preview = ui.post(
        "/new",
        &c,
        &form(&[
            ("csrf", &token),
            ("owner", "maria"),
            (
                "expr",
                "batch(count(rent), sum(clamp(rent.amount, 0, 300000)))",
            ),
            ("reason", "rent history"),
            ("backend", "dp"),
            ("spend", "epsilon"),
            ("amount", "0.1"),
            ("action", "preview"),
        ]),
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview.body.contains("2 questions asked together")
            && preview.body.contains("(1) cost 0.1; expected error ±")
            && preview.body.contains("(2) cost 0.1; expected error ±$"),
        "{}",
        preview.body
    );
    let sent = ask("count(rent)", "months of history");
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body.contains("class=\"state-pending\""),
        "{}",
        sent.body
    );
    let pending = json(&ok(&home, &["owner", "requests", "--json"]));
    assert_eq!(pending[0]["reason"], "months of history", "{pending}");
    let id = pending[0]["id"].as_u64().unwrap();
    let list = ui.get("/requests/list", &c);
    assert!(list.body.contains("data-pending=\"1\""), "{}", list.body);
    ok(
        &home,
        &[
            "owner",
            "approve",
            &id.to_string(),
            "--seen",
            pending[0]["token"].as_str().unwrap(),
        ],
    );
    let list = ui.get("/requests/list", &c);
    assert!(list.body.contains("data-pending=\"0\""), "{}", list.body);
    assert!(
        list.body.contains("class=\"state-approved\""),
        "{}",
        list.body
    );
    let value = pending[0]["value"]["value"]["value"].to_string();
    assert_eq!(value, "24", "the sample has 24 months of rent");
    assert!(
        list.body
            .contains(&format!("<dt>Answer</dt><dd>{value}</dd>")),
        "{value}: {}",
        list.body
    );
    assert!(list.body.contains("Receipt verified"), "{}", list.body);
    let receipts = json(&ok(&fi, &["fi", "receipts", "--json"]));
    assert_eq!(receipts[0]["receipt"]["request"], id, "the receipt is kept");
    ok(&fi, &["fi", "receipts", "--verify"]);

    let second = ask("max(rent.amount)", "second look");
    assert_eq!(second.status, 200);
    let id2 = json(&ok(&home, &["owner", "requests", "--json"]))[0]["id"]
        .as_u64()
        .unwrap();
    ok(
        &home,
        &[
            "owner",
            "deny",
            &id2.to_string(),
            "--reason",
            "not this month",
        ],
    );
    let list = ui.get("/requests", &c);
    assert!(
        list.body.contains("class=\"state-denied\""),
        "{}",
        list.body
    );
    assert!(list.body.contains("not this month"), "{}", list.body);
    assert!(list.body.contains("Ask again"));
}

/// `duo demo --ui` runs the story, then leaves the owner's node and both UIs up with the story's requests on
/// them, until it is interrupted.
#[cfg(unix)]
#[test]
fn the_demo_with_ui_leaves_both_uis_up_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_duo"))
        .args(["demo", "--ui", "--keep"])
        .arg(dir.path().join("demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = |prefix: &str| loop {
        let l = lines.next().expect("the demo ended early").unwrap();
        if let Some(url) = l.strip_prefix(prefix) {
            let rest = url.trim().strip_prefix("http://").unwrap().to_string();
            let (host, secret) = rest.split_once("/?k=").unwrap();
            break (host.to_string(), secret.to_string());
        }
    };
    let (owner_host, owner_secret) = address("the owner's UI:");
    let (host, secret) = address("the FI's UI:");
    let sign_in = |host: &str, secret: &str| {
        let r = http_to(host, "GET", &format!("/?k={secret}"), &[("Host", host)], "");
        assert_eq!(r.status, 303);
        r.header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    };
    let fi_cookie = sign_in(&host, &secret);
    let requests = http_to(
        &host,
        "GET",
        "/requests",
        &[("Host", &host), ("Cookie", &fi_cookie)],
        "",
    );
    assert_eq!(requests.status, 200);
    assert!(requests.body.contains("demo-owner"), "{}", requests.body);
    assert!(
        requests.body.contains("Receipt verified"),
        "{}",
        requests.body
    );
    let owner_cookie = sign_in(&owner_host, &owner_secret);
    let log = http_to(
        &owner_host,
        "GET",
        "/log",
        &[("Host", &owner_host), ("Cookie", &owner_cookie)],
        "",
    );
    assert_eq!(log.status, 200);
    assert!(log.body.contains("Acme Bank"), "{}", log.body);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(rest.iter().any(|l| l.contains("demo finished")), "{rest:?}");
    assert!(!dir.path().join("demo/fi/ui.url").exists());
    assert!(!dir.path().join("demo/owner/ui.url").exists());
}
