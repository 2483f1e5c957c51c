//! The owner's web UI over plain HTTP on a real `duo owner serve`: who may use it (secret, cookie, Host, Origin,
//! CSRF), the headers on every response, body limits, and the approval guarantee.

use super::cli::{json, ok};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `duo owner serve` with its UI; killed on drop.
pub(super) struct Ui {
    child: Child,
    /// The FI-facing `ws://` URL.
    pub(super) ws: String,
    /// `127.0.0.1:PORT`.
    pub(super) host: String,
    secret: String,
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start(home: &Path) -> Ui {
    let (child, ws, _) = super::serve::spawn_serve(home, &[], &[]);
    // `duo owner ui` prints the address once the UI is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        let out = super::cli::duo(home, &["owner", "ui"]);
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap().trim().to_string();
        }
        assert!(Instant::now() < deadline, "the UI did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest = url.strip_prefix("http://").expect("an http:// address");
    let (host, secret) = rest.split_once("/?k=").expect("the secret in the address");
    Ui {
        child,
        ws,
        host: host.to_string(),
        secret: secret.to_string(),
    }
}

/// A response: status, headers (names lower-cased), body.
pub(super) struct Resp {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Resp {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a plain socket, with exactly the headers given (so Host and Origin are ours).
pub(super) fn http(
    ui: &Ui,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    http_to(&ui.host, method, path, headers, body)
}

/// [`http`] to the UI listening at `host` (`127.0.0.1:PORT`).
pub(super) fn http_to(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let form = "application/x-www-form-urlencoded";
    http_as(host, method, path, headers, form, body.as_bytes())
}

/// [`http_to`] with a body of any type (a POST's `Content-Type` is `content_type`).
pub(super) fn http_as(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!("Content-Type: {content_type}\r\n"));
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server refusing a large body may answer and close before reading it all.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    // An event stream never ends: read what arrives within the timeout.
    if path == "/events" {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The cookie the secret is exchanged for (`name=value`).
pub(super) fn sign_in(ui: &Ui) -> String {
    let r = http(
        ui,
        "GET",
        &format!("/?k={}", ui.secret),
        &[("Host", &ui.host)],
        "",
    );
    assert_eq!(r.status, 303);
    let c = r.header("set-cookie").unwrap().to_string();
    c.split(';').next().unwrap().to_string()
}

pub(super) fn owner_with_data(dir: &Path) -> std::path::PathBuf {
    let home = dir.join("owner-home");
    let data = dir.join("data");
    ok(&home, &["sample", "--out", data.to_str().unwrap()]);
    ok(&home, &["owner", "init"]);
    let rent = data.join("rent.csv");
    ok(
        &home,
        &["owner", "load", rent.to_str().unwrap(), "--name", "rent"],
    );
    home
}

/// The CSRF token a page's forms carry.
/// An owner with the sample data serving with its UI, and an FI home paired with it as "Acme Bank".
pub(super) fn paired(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Ui) {
    let home = owner_with_data(dir);
    let fi = dir.join("fi-home");
    let ui = start(&home);
    let code = json(&ok(
        &home,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ))["code"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&fi, &["fi", "pair", &ui.ws, &code]);
    (home, fi, ui)
}

pub(super) fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..at + 64].to_string()
}

#[test]
fn the_secret_is_exchanged_for_a_strict_http_only_cookie_and_nothing_opens_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_with_data(dir.path());
    let ui = start(&home);
    let host = [("Host", ui.host.as_str())];
    for path in [
        "/",
        "/requests",
        "/log",
        "/log.json",
        "/budgets",
        "/events",
        "/static/app.js",
    ] {
        assert_eq!(http(&ui, "GET", path, &host, "").status, 401, "{path}");
    }
    let wrong = format!("/?k={}", "0".repeat(ui.secret.len()));
    assert_eq!(http(&ui, "GET", &wrong, &host, "").status, 401);
    let r = http(&ui, "GET", &format!("/log?k={}", ui.secret), &host, "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/log"), "the secret is stripped");
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(&ui.secret), "the cookie is not the secret");
    let c = sign_in(&ui);
    let home_page = http(&ui, "GET", "/", &[("Host", &ui.host), ("Cookie", &c)], "");
    assert_eq!(home_page.status, 200);
    assert!(home_page.body.contains("rent"), "{}", home_page.body);
    let forged = format!("{}x", c);
    assert_eq!(
        http(
            &ui,
            "GET",
            "/",
            &[("Host", &ui.host), ("Cookie", &forged)],
            ""
        )
        .status,
        401
    );
}

#[test]
fn a_foreign_host_is_refused_even_with_the_secret_and_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_with_data(dir.path());
    let ui = start(&home);
    let c = sign_in(&ui);
    let port = ui.host.rsplit_once(':').unwrap().1;
    for host in [
        format!("attacker.example:{port}"),
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1),
    ] {
        let r = http(&ui, "GET", "/", &[("Host", &host), ("Cookie", &c)], "");
        assert_eq!(r.status, 403, "{host}");
        let r = http(
            &ui,
            "GET",
            &format!("/?k={}", ui.secret),
            &[("Host", &host)],
            "",
        );
        assert_eq!(r.status, 403, "{host} with the secret");
    }
    for host in [format!("localhost:{port}"), format!("[::1]:{port}")] {
        let r = http(&ui, "GET", "/", &[("Host", &host), ("Cookie", &c)], "");
        assert_eq!(r.status, 200, "{host}");
    }
}

#[test]
fn cross_origin_posts_and_event_streams_are_refused_and_forms_need_the_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_with_data(dir.path());
    let ui = start(&home);
    let c = sign_in(&ui);
    let own = format!("http://{}", ui.host);
    let page = http(
        &ui,
        "GET",
        "/invite",
        &[("Host", &ui.host), ("Cookie", &c)],
        "",
    );
    let token = csrf(&page.body);
    let body = format!("csrf={token}&fi=Mallory&minutes=15");
    let post = |extra: &[(&str, &str)], body: &str| {
        let mut h = vec![("Host", ui.host.as_str()), ("Cookie", c.as_str())];
        h.extend_from_slice(extra);
        http(&ui, "POST", "/invite", &h, body)
    };
    assert_eq!(
        post(&[("Origin", "http://evil.example")], &body).status,
        403
    );
    assert_eq!(post(&[("Origin", "null")], &body).status, 403);
    assert_eq!(
        post(
            &[("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
            &body
        )
        .status,
        403
    );
    assert_eq!(
        post(&[("Origin", &own), ("Sec-Fetch-Site", "cross-site")], &body).status,
        403
    );
    assert_eq!(post(&[("Sec-Fetch-Site", "same-site")], &body).status, 403);
    assert_eq!(post(&[], &body).status, 403, "no origin at all");
    let bad = format!("csrf={}&fi=Mallory&minutes=15", "0".repeat(64));
    assert_eq!(
        post(&[("Origin", &own)], &bad).status,
        403,
        "bad CSRF token"
    );
    assert!(
        ok(&home, &["owner", "invite", "list"]).contains("no open invite"),
        "nothing refused made an invite"
    );
    let made = post(
        &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
        &body,
    );
    assert_eq!(made.status, 200);
    assert!(made.body.contains("duo1-"), "{}", made.body);

    let events = |extra: &[(&str, &str)]| {
        let mut h = vec![("Host", ui.host.as_str()), ("Cookie", c.as_str())];
        h.extend_from_slice(extra);
        http(&ui, "GET", "/events", &h, "")
    };
    assert_eq!(events(&[("Origin", "http://evil.example")]).status, 403);
    assert_eq!(events(&[("Sec-Fetch-Site", "cross-site")]).status, 403);
    let ok_stream = events(&[("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(ok_stream.status, 200);
    assert!(ok_stream
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(
        ok_stream.body.contains("event: change"),
        "{}",
        ok_stream.body
    );
}

#[test]
fn every_response_carries_a_strict_csp_and_no_cors_headers() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_with_data(dir.path());
    let ui = start(&home);
    let c = sign_in(&ui);
    let mut seen = Vec::new();
    for path in [
        "/",
        "/welcome",
        "/invite",
        "/requests",
        "/requests/queue",
        "/log",
        "/log.json",
        "/log?kind=request",
        "/budgets",
        "/static/app.js",
        "/static/style.css",
        "/no-such-page",
    ] {
        seen.push((
            path,
            http(
                &ui,
                "GET",
                path,
                &[
                    ("Host", &ui.host),
                    ("Cookie", &c),
                    ("Origin", "http://evil.example"),
                ],
                "",
            ),
        ));
    }
    seen.push(("401", http(&ui, "GET", "/", &[("Host", &ui.host)], "")));
    seen.push((
        "403",
        http(&ui, "GET", "/", &[("Host", "evil.example")], ""),
    ));
    for (path, r) in &seen {
        let csp = r
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert!(
            !r.headers
                .iter()
                .any(|(n, _)| n.starts_with("access-control-")),
            "{path}: a CORS header"
        );
    }
    // No inline script: every <script> names a file.
    let home_page = &seen[0].1.body;
    assert!(home_page.contains("<script src=\"/static/app.js\""));
    assert_eq!(home_page.matches("<script").count(), 1);
}

#[test]
fn large_bodies_are_refused_and_the_ui_binds_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_with_data(dir.path());
    let ui = start(&home);
    let c = sign_in(&ui);
    let own = format!("http://{}", ui.host);
    let body = format!("csrf=x&fi={}&minutes=15", "a".repeat(100_000));
    let r = http(
        &ui,
        "POST",
        "/invite",
        &[("Host", &ui.host), ("Cookie", &c), ("Origin", &own)],
        &body,
    );
    assert_eq!(r.status, 413);
    for addr in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0", "127.0.0.2:0"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_duo"))
            .arg("--home")
            .arg(&home)
            .args(["owner", "serve", "--listen", "127.0.0.1:0", "--ui", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It must refuse at once; one that starts serving is killed and fails the test.
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = child.try_wait().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(status.is_some_and(|s| !s.success()), "{addr}: it served");
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains("127.0.0.1 or [::1] only"), "{addr}: {err}");
    }
}

/// Approve through the UI: a stale token releases nothing and shows the fresh view; the current one releases,
/// and the FI gets the answer. A denial's reason reaches the FI.
#[test]
fn approving_in_the_ui_keeps_the_seen_guarantee_and_reaches_the_fi() {
    let dir = tempfile::tempdir().unwrap();
    let (home, fi, ui) = paired(dir.path());
    let ask = |expr: &str, reason: &str| {
        json(&ok(
            &fi,
            &["fi", "request", expr, "--reason", reason, "--json"],
        ))["id"]
            .as_u64()
            .unwrap()
    };
    let id = ask("count(rent)", "months of <script>history</script>");
    let c = sign_in(&ui);
    let own = format!("http://{}", ui.host);
    let h = [
        ("Host", ui.host.as_str()),
        ("Cookie", c.as_str()),
        ("Origin", own.as_str()),
    ];
    let page = http(&ui, "GET", "/requests", &h[..2], "");
    assert!(
        page.body.contains("Approving releases exactly</dt>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("&#60;script&#62;history"),
        "FI text is escaped"
    );
    assert!(!page.body.contains("<script>history"));
    let token = csrf(&page.body);
    let stale = http(
        &ui,
        "POST",
        "/requests/approve",
        &h,
        &format!("csrf={token}&id={id}&seen=0000000000000000"),
    );
    assert_eq!(stale.status, 409);
    assert!(stale.body.contains("Not approved"), "{}", stale.body);
    assert!(
        stale.body.contains("Approving releases exactly</dt>"),
        "the fresh view"
    );
    let pending = json(&ok(&home, &["owner", "requests", "--json"]));
    assert_eq!(pending[0]["state"], serde_json::Value::Null);
    assert_eq!(pending[0]["id"], id, "still pending");
    let seen = pending[0]["token"].as_str().unwrap();
    let done = http(
        &ui,
        "POST",
        "/requests/approve",
        &h,
        &format!("csrf={token}&id={id}&seen={seen}"),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let result = json(&ok(&fi, &["fi", "result", &id.to_string(), "--json"]));
    assert_eq!(result["state"], "approved");
    assert_eq!(result["answer"], pending[0]["value"], "{result}");

    let id2 = ask("max(rent.amount)", "second look");
    let denied = http(
        &ui,
        "POST",
        "/requests/deny",
        &h,
        &format!("csrf={token}&id={id2}&reason=not+this+month"),
    );
    assert_eq!(denied.status, 200, "{}", denied.body);
    let result = json(&ok(&fi, &["fi", "result", &id2.to_string(), "--json"]));
    assert_eq!(result["state"], "denied");
    assert!(result.to_string().contains("not this month"), "{result}");
}

/// The event stream tells an open page at once when an FI asks (the page then fetches the queue).
#[test]
fn the_event_stream_announces_a_new_request() {
    let dir = tempfile::tempdir().unwrap();
    let (_home, fi, ui) = paired(dir.path());
    let c = sign_in(&ui);
    let mut s = TcpStream::connect(&ui.host).unwrap();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {}\r\nCookie: {c}\r\nSec-Fetch-Site: same-origin\r\n\r\n",
        ui.host
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = String::new();
    let read_until = |s: &mut TcpStream, want: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !seen.contains(want) {
            assert!(Instant::now() < deadline, "no {want:?} in {seen:?}");
            if let Ok(n) = s.read(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    };
    read_until(&mut s, "event: change\ndata: 0\n", &mut seen);
    ok(
        &fi,
        &["fi", "request", "count(rent)", "--reason", "history"],
    );
    read_until(&mut s, "event: change\ndata: 1\n", &mut seen);
}

/// A batch of DP questions waits as one request: the queue says they were asked together with each one's cost,
/// one approval releases all of them, and the FI's result lists each answer.
#[test]
fn a_batch_waits_as_one_request_and_one_approval_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let (home, fi, ui) = paired(dir.path());
    ok(&home, &["owner", "budget", "set", "--epsilon", "1"]);
    let asked = json(&ok(
        &fi,
        &[
            "fi",
            "request",
            "count(rent)",
            "sum(clamp(rent.amount, 0, 300000))",
            "--backend",
            "dp",
            "--epsilon",
            "0.1",
            "--reason",
            "rent history",
            "--json",
        ],
    ));
    let id = asked["id"].as_u64().unwrap();
    assert_eq!(asked["state"], "pending", "{asked}");
    assert_eq!(asked["cost"], "0.2", "{asked}");
    assert_eq!(asked["items"].as_array().unwrap().len(), 2, "{asked}");
    let c = sign_in(&ui);
    let own = format!("http://{}", ui.host);
    let h = [
        ("Host", ui.host.as_str()),
        ("Cookie", c.as_str()),
        ("Origin", own.as_str()),
    ];
    let page = http(&ui, "GET", "/requests", &h[..2], "");
    assert!(
        page.body.contains("Asked together</dt>")
            && page
                .body
                .contains("2 questions; approving releases all of them")
            && page.body.contains("(1) cost 0.1;")
            && page.body.contains("(2) cost 0.1;"),
        "{}",
        page.body
    );
    let pending = json(&ok(&home, &["owner", "requests", "--json"]));
    let seen = pending[0]["token"].as_str().unwrap();
    let token = csrf(&page.body);
    let done = http(
        &ui,
        "POST",
        "/requests/approve",
        &h,
        &format!("csrf={token}&id={id}&seen={seen}"),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let result = json(&ok(&fi, &["fi", "result", &id.to_string(), "--json"]));
    assert_eq!(result["state"], "approved");
    assert_eq!(result["answer"]["kind"], "batch", "{result}");
    assert_eq!(result["answer"]["items"].as_array().unwrap().len(), 2);
    let words = ok(&fi, &["fi", "result", &id.to_string()]);
    assert!(
        words.contains("    (1) ")
            && words.contains("    (2) $")
            && words.contains("privacy cost: 0.2 in all, for 2 questions")
            && words.contains("    (2) cost 0.1; expected error ±$"),
        "{words}"
    );
    let budget = ok(&home, &["owner", "budget", "show"]);
    assert!(budget.contains("0.2"), "{budget}");
}
