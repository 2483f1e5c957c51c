//! The owner UI's Budgets screen and log filter over plain HTTP on a real `duo owner serve`: a cap set in the UI
//! is the cap `duo owner budget` shows and a DP request is refused at; lowering asks first; the chart; the guard
//! on the new form; the log filter on the page and in the JSON export.

use super::cli::{duo, json, ok};
use super::ui::{csrf, http, owner_with_data, paired, sign_in, start, Ui};
use std::path::Path;

/// The headers of a same-origin form post (as a browser sends them).
fn post_headers<'a>(ui: &'a Ui, cookie: &'a str, own: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("Host", ui.host.as_str()),
        ("Cookie", cookie),
        ("Origin", own),
        ("Sec-Fetch-Site", "same-origin"),
    ]
}

/// The global cap as `duo owner budget show --json` reports it.
fn global_cap(home: &Path) -> serde_json::Value {
    let show = json(&ok(home, &["owner", "budget", "show", "--json"]));
    show["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scope"]["scope"] == "global")
        .unwrap_or_else(|| panic!("{show}"))["cap"]
        .clone()
}

/// A DP count asked by the FI: (exit code, the request as JSON).
fn ask_dp(fi: &Path, expr: &str, epsilon: &str) -> (Option<i32>, serde_json::Value) {
    let out = duo(
        fi,
        &[
            "fi",
            "request",
            expr,
            "--reason",
            "budget test",
            "--backend",
            "dp",
            "--epsilon",
            epsilon,
            "--json",
        ],
    );
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.status.code(), v)
}

#[test]
fn a_cap_set_in_the_ui_is_the_cap_the_cli_shows_and_dp_is_refused_at_and_lowering_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let (home, fi, ui) = paired(dir.path());
    let c = sign_in(&ui);
    let own = format!("http://{}", ui.host);
    let h = post_headers(&ui, &c, &own);
    let page = http(&ui, "GET", "/budgets", &h[..2], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("A privacy budget limits how much")
            && page.body.contains("Budgets are counted in epsilon"),
        "the one-sentence explanation and what epsilon means: {}",
        page.body
    );
    assert!(
        page.body.contains("value=\"fi:Acme Bank\"")
            && page.body.contains("value=\"dataset:rent\""),
        "caps per FI and per dataset are offered: {}",
        page.body
    );
    assert!(page.body.contains("Nothing has been spent yet"));
    let token = csrf(&page.body);

    let set = http(
        &ui,
        "POST",
        "/budgets",
        &h,
        &format!("csrf={token}&scope=global&amount=0.3&measure=epsilon"),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(
        set.body.contains("global budget: cap 0.3 epsilon"),
        "the CLI's words: {}",
        set.body
    );
    assert_eq!(global_cap(&home), "0.3");

    // Over the cap set in the UI: refused at once, with the numbers.
    let (code, v) = ask_dp(&fi, "count(rent)", "0.5");
    assert_eq!((code, &v["state"]), (Some(1), &"denied".into()), "{v}");
    let why = v["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("requested 0.5") && why.contains("remaining 0.3"),
        "{why}"
    );

    // Under it: charged (approved by the owner if the policy asks), and the chart shows it.
    let (_, v) = ask_dp(&fi, "count(rent)", "0.2");
    if v["state"] == "pending" {
        let pending = json(&ok(&home, &["owner", "requests", "--json"]));
        let seen = pending[0]["token"].as_str().unwrap();
        ok(
            &home,
            &["owner", "approve", &v["id"].to_string(), "--seen", seen],
        );
    }
    let page = http(&ui, "GET", "/budgets", &h[..2], "");
    assert!(
        page.body.contains("<svg class=\"chart\" role=\"img\"")
            && page.body.contains("<title id=\"chart-title\">")
            && page
                .body
                .contains("In all 0.2 epsilon was spent in 1 charge(s)")
            && page
                .body
                .contains("<caption>Privacy budget spent per day</caption>"),
        "the chart, its description and its table: {}",
        page.body
    );
    assert!(
        !page.body.contains("style=") && page.body.matches("<script").count() == 1,
        "no inline style or script for the strict CSP"
    );

    // A per-FI cap, in the UI, is the FI's cap in the CLI.
    let set = http(
        &ui,
        "POST",
        "/budgets",
        &h,
        &format!("csrf={token}&scope=fi%3AAcme+Bank&amount=0.25&measure=epsilon"),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let show = ok(&home, &["owner", "budget", "show"]);
    assert!(show.contains("budget of principal `Acme Bank`"), "{show}");

    // Lowering asks first (below what is spent: nothing more will be given) and changes nothing until confirmed.
    let lower = format!("csrf={token}&scope=global&amount=0.1&measure=epsilon");
    let ask = http(&ui, "POST", "/budgets", &h, &lower);
    assert_eq!(ask.status, 200);
    assert!(
        ask.body.contains("Lower this cap?")
            && ask.body.contains("no more noisy answers will be given"),
        "{}",
        ask.body
    );
    assert_eq!(global_cap(&home), "0.3", "not lowered before confirming");
    let done = http(&ui, "POST", "/budgets", &h, &format!("{lower}&confirm=yes"));
    assert_eq!(done.status, 200);
    assert_eq!(global_cap(&home), "0.1");
    let (code, v) = ask_dp(&fi, "count(rent)", "0.05");
    assert_eq!((code, &v["state"]), (Some(1), &"denied".into()), "{v}");

    let bad = http(
        &ui,
        "POST",
        "/budgets",
        &h,
        &format!("csrf={token}&scope=global&amount=lots"),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("is not a budget"), "{}", bad.body);
}

#[test]
fn the_budget_form_needs_the_same_origin_and_the_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_with_data(dir.path());
    let ui = start(&home);
    let c = sign_in(&ui);
    let own = format!("http://{}", ui.host);
    let page = http(
        &ui,
        "GET",
        "/budgets",
        &[("Host", &ui.host), ("Cookie", &c)],
        "",
    );
    let token = csrf(&page.body);
    let body = format!("csrf={token}&scope=global&amount=5");
    let post = |extra: &[(&str, &str)], body: &str| {
        let mut h = vec![("Host", ui.host.as_str()), ("Cookie", c.as_str())];
        h.extend_from_slice(extra);
        http(&ui, "POST", "/budgets", &h, body).status
    };
    assert_eq!(post(&[("Origin", "http://evil.example")], &body), 403);
    assert_eq!(post(&[("Sec-Fetch-Site", "cross-site")], &body), 403);
    assert_eq!(post(&[], &body), 403, "no origin at all");
    let forged = format!("csrf={}&scope=global&amount=5", "0".repeat(64));
    assert_eq!(post(&[("Origin", &own)], &forged), 403, "bad CSRF token");
    assert_eq!(
        global_cap(&home),
        serde_json::Value::Null,
        "nothing refused set a cap"
    );
    assert_eq!(post(&[("Origin", &own)], &body), 200);
    assert_eq!(global_cap(&home), "5");
}

#[test]
fn the_log_filters_by_kind_fi_and_date_on_the_page_and_in_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let (home, fi, ui) = paired(dir.path());
    ok(&home, &["owner", "budget", "set", "--epsilon", "1"]);
    for reason in ["first", "second"] {
        ok(&fi, &["fi", "request", "count(rent)", "--reason", reason]);
    }
    let c = sign_in(&ui);
    let h = [("Host", ui.host.as_str()), ("Cookie", c.as_str())];
    let get = |path: &str| http(&ui, "GET", path, &h, "");
    let export = |query: &str| -> Vec<serde_json::Value> {
        let r = get(&format!("/log.json?{query}"));
        assert_eq!(r.status, 200, "{}", r.body);
        json(&r.body).as_array().unwrap().clone()
    };
    let all = export("");
    assert!(all.len() >= 6, "{all:?}");
    let count = |pred: &dyn Fn(&serde_json::Value) -> bool| all.iter().filter(|e| pred(e)).count();

    // By kind: only requests, on the page and in the export.
    let requests = export("kind=request");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|e| e["kind"] == "request"));
    let page = get("/log?kind=request");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("2 matching entries"), "{}", page.body);
    assert!(
        page.body.contains("<option value=\"request\" selected>"),
        "the form keeps the filter"
    );
    assert!(
        page.body
            .contains("href=\"/log.json?page=1&#38;kind=request\""),
        "the export link carries the filter: {}",
        page.body
    );

    // By FI: only entries about Acme Bank (the space encoded as a browser sends it).
    let acme = export("fi=Acme+Bank");
    assert_eq!(acme.len(), count(&|e| e["principal"] == "Acme Bank"));
    assert!(!acme.is_empty() && acme.iter().all(|e| e["principal"] == "Acme Bank"));
    assert_eq!(export("fi=Acme+Bank&kind=budget_set").len(), 0);
    assert_eq!(export("kind=budget_set").len(), 1);

    // By date: today keeps everything, tomorrow and yesterday nothing.
    let today = chrono::Utc::now().date_naive();
    let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    let (yesterday, tomorrow) = (today.pred_opt().unwrap(), today.succ_opt().unwrap());
    assert_eq!(
        export(&format!("from={}&to={}", day(today), day(today))).len(),
        all.len()
    );
    assert_eq!(export(&format!("from={}", day(tomorrow))).len(), 0);
    assert_eq!(export(&format!("to={}", day(yesterday))).len(), 0);
    let none = get(&format!("/log?from={}", day(tomorrow)));
    assert!(none.body.contains("0 matching entries"), "{}", none.body);

    let bad = get("/log?from=last+week");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("write it as 2026-01-31"), "{}", bad.body);
}
