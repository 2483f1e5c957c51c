//! The dp backend through the node: budgets, charging, free repeats, refusals with numbers, races, previews.

use duo::engine::{Answer, Value};
use duo::node::proto::request::DpParams;
use duo::node::proto::request::{BudgetShortfall, RequestState};
use duo::node::store::prelude::*;
use duo::policies::{Amount, Scope};
use duo_testkit::policy::{ASK_ALL, DP_POLICY};
use duo_testkit::{connect, owner_with_sample, paired_fi, OwnerNode};

fn eps(e: f64) -> DpParams {
    DpParams {
        epsilon: Some(e),
        ..DpParams::default()
    }
}

/// Set a cap as `duo owner budget set` does (a ledger saved around the log would be refused when next read).
fn set_cap(o: &OwnerNode, scope: Scope, cap: &str) {
    let mut owner = o.store();
    let measure = owner.store().ledger().unwrap().measure();
    owner
        .set_cap(&scope, cap.parse().unwrap(), measure)
        .unwrap();
}

fn spent(o: &OwnerNode) -> Amount {
    o.db().ledger().unwrap().account(&Scope::Global).spent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_releases_charge_the_ledger_repeat_for_free_and_stop_at_the_cap() {
    let o = owner_with_sample(DP_POLICY);
    set_cap(&o, Scope::Global, "1.0");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let sum = c
        .expr("sum(clamp(filter(transactions, category == \"income\").amount, 0, 500000))")
        .await
        .unwrap();
    // A preview charges nothing.
    c.cost(&sum, eps(0.4)).await.unwrap();
    assert_eq!(spent(&o), Amount::from_nanos(0));
    let v = c.request_dp(&sum, eps(0.4), "income").await.unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert!(matches!(
        v.answer,
        Some(Answer::Scalar {
            value: Value::Int(_)
        })
    ));
    assert_eq!(v.cost.as_deref(), Some("0.4"));
    assert!(v.accuracy95.unwrap() > 0.0);
    assert_eq!(v.receipt.as_ref().unwrap().cost_nanos, 400_000_000);
    assert_eq!(spent(&o), "0.4".parse().unwrap());
    // The same question again: the stored noisy answer, at no cost.
    let again = c.request_dp(&sum, eps(0.4), "income again").await.unwrap();
    assert_eq!(again.answer, v.answer);
    assert_eq!(again.decided_by.as_deref(), Some("store"));
    assert_eq!(spent(&o), "0.4".parse().unwrap());
    // This request was charged nothing: it has no cost, and its receipt says 0 (spec, section 8.7).
    assert_eq!(again.cost, None, "{again:?}");
    assert_eq!(again.receipt.as_ref().unwrap().cost_nanos, 0);
    // A different question spends more.
    let count = c
        .expr("count(filter(transactions, category == \"nsf_fee\"))")
        .await
        .unwrap();
    let v2 = c.request_dp(&count, eps(0.5), "fees").await.unwrap();
    assert_eq!(v2.state, RequestState::Approved);
    assert_eq!(spent(&o), "0.9".parse().unwrap());
    // Over the cap: refused at once, with the numbers.
    let mean = c.expr("mean(clamp(rent.amount, 0, 300000))").await.unwrap();
    let v3 = c.request_dp(&mean, eps(0.2), "rent").await.unwrap();
    assert_eq!(v3.state, RequestState::Denied);
    let why = v3.why.clone().unwrap();
    assert!(
        why.contains("requested 0.2") && why.contains("remaining 0.1"),
        "{why}"
    );
    // The same numbers as fields, when the request is made and whenever it is looked at again.
    let shortfall = BudgetShortfall {
        scope: "global".into(),
        name: None,
        measure: "epsilon".into(),
        cap: "1".into(),
        spent: "0.9".into(),
        requested: "0.2".into(),
        remaining: "0.1".into(),
    };
    assert_eq!(v3.budget.as_ref(), Some(&shortfall), "{v3:?}");
    let seen = c.status(v3.id, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(seen.budget, Some(shortfall));
    assert_eq!((v.budget, v2.budget), (None, None));
    assert_eq!(spent(&o), "0.9".parse().unwrap());
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_budget_dp_is_refused_and_row_level_never_is_dp() {
    let o = owner_with_sample(DP_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("count(rent)").await.unwrap();
    let v = c.request_dp(&p, eps(0.1), "rows").await.unwrap();
    assert_eq!(v.state, RequestState::Denied);
    assert!(v.why.unwrap().contains("no privacy budget"));
    let rows = c.expr("rent.amount").await.unwrap();
    let err = c.request_dp(&rows, eps(0.1), "rows").await.unwrap_err();
    assert!(err.to_string().contains("not available with dp"), "{err}");
    // Division leaves no public bounds and a float column: not summable with dp.
    let unbounded = c.expr("sum(transactions.amount / 2)").await.unwrap();
    let err = c.request_dp(&unbounded, eps(0.1), "sum").await.unwrap_err();
    assert!(err.to_string().contains("not available with dp"), "{err}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_against_a_cap_for_exactly_k_release_exactly_k() {
    let o = owner_with_sample(DP_POLICY);
    set_cap(&o, Scope::Global, "0.75");
    let node = o.start().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let fi = paired_fi(&o, &node, &format!("FI {i}")).await;
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&fi).await;
            // Distinct questions, so none is answered from the store.
            let p = c
                .expr(&format!("sum(clamp(rent.amount, 0, {}))", 300_000 + i))
                .await
                .unwrap();
            let v = c.request_dp(&p, eps(0.25), "race").await.unwrap();
            (v.state, fi)
        }));
    }
    let mut approved = 0;
    for t in tasks {
        if t.await.unwrap().0 == RequestState::Approved {
            approved += 1;
        }
    }
    assert_eq!(approved, 3);
    assert_eq!(spent(&o), "0.75".parse().unwrap());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_approval_fails_with_fresh_numbers_when_the_budget_moved() {
    let o = owner_with_sample(ASK_ALL);
    set_cap(&o, Scope::Global, "1.0");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let a = c.expr("count(rent)").await.unwrap();
    let b = c.expr("count(utilities)").await.unwrap();
    let ra = c.request_dp(&a, eps(0.6), "a").await.unwrap();
    let rb = c.request_dp(&b, eps(0.6), "b").await.unwrap();
    assert_eq!(ra.state, RequestState::Pending);
    let mut owner = o.store();
    let seen_b = owner.pending_view(rb.id).unwrap();
    let dp = seen_b.dp.clone().unwrap();
    assert_eq!(dp.cost, "0.6");
    assert_eq!(dp.budget_left_after, Ok("0.4".to_string()));
    assert!(
        seen_b.value.is_err(),
        "the owner is not shown an exact value for a dp request"
    );
    let seen_a = owner.pending_view(ra.id).unwrap();
    owner.approve(ra.id, Some(&seen_a.token)).unwrap();
    match owner.approve(rb.id, Some(&seen_b.token)) {
        Err(duo::node::Error::Stale { token, .. }) => {
            let fresh = owner.pending_view(rb.id).unwrap();
            assert_eq!(fresh.token, token);
            assert!(fresh.dp.unwrap().budget_left_after.is_err());
        }
        other => panic!("expected a stale approval, got {other:?}"),
    }
    // Even with a fresh token the budget does not allow it.
    let fresh = owner.pending_view(rb.id).unwrap();
    assert!(owner.approve(rb.id, Some(&fresh.token)).is_err());
    assert_eq!(spent(&o), "0.6".parse().unwrap());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_rule_approves_only_n_releases_per_window() {
    let o = owner_with_sample(
        r#"
default = "ask"
[[rule]]
name = "three-a-day"
backend = ["dp"]
max_cost = "0.5"
rate = { max = 2, per = "day" }
action = "approve"
"#,
    );
    set_cap(&o, Scope::Global, "10");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let mut states = Vec::new();
    for i in 0..3 {
        let p = c
            .expr(&format!("sum(clamp(rent.amount, 0, {}))", 300_000 + i))
            .await
            .unwrap();
        states.push(c.request_dp(&p, eps(0.1), "rate").await.unwrap().state);
    }
    assert_eq!(
        states,
        [
            RequestState::Approved,
            RequestState::Approved,
            RequestState::Pending
        ]
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_attributes_have_dp_forms_or_say_why_not() {
    let o = owner_with_sample(DP_POLICY);
    set_cap(&o, Scope::Global, "5");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    // A ratio over a public denominator: a noisy count of on-time payments / 12.
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c.request_dp(&p, eps(0.5), "rent history").await.unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    let Some(Answer::Scalar {
        value: Value::Float(r),
    }) = v.answer
    else {
        panic!("{v:?}")
    };
    // count/12 with discrete Laplace noise: a multiple of 1/12.
    assert!(((r * 12.0).round() - r * 12.0).abs() < 1e-9, "{r}");
    // Its expected error is the count's, divided by 12.
    let acc = v.accuracy95.unwrap();
    assert!(acc > 0.0 && acc < 2.0, "{acc}");
    let fees = c.expr("nsf_overdraft_count_90d()").await.unwrap();
    assert_eq!(
        c.request_dp(&fees, eps(0.5), "fees").await.unwrap().state,
        RequestState::Approved
    );
    let streak = c.expr("rent_current_streak_months()").await.unwrap();
    let err = c.request_dp(&streak, eps(0.5), "streak").await.unwrap_err();
    assert!(err.to_string().contains("unsuited"), "{err}");
    // Noisy sums of the attribute's own values: a ratio of two, within its public bounds.
    let subs = c.expr("subscription_paid_ratio_12m()").await.unwrap();
    let v = c
        .request_dp(&subs, eps(0.5), "subscriptions")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    match v.answer {
        Some(Answer::Scalar {
            value: Value::Float(x),
        }) => assert!((0.0..=1.0).contains(&x), "{x}"),
        Some(Answer::Scalar { value: Value::Null }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(v.accuracy95, Some(1.0));
    let age = c.expr("account_age_months()").await.unwrap();
    let err = c.request_dp(&age, eps(0.5), "age").await.unwrap_err();
    assert!(err.to_string().contains("unsuited"), "{err}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn income_cv_and_average_daily_balance_are_released_from_noisy_sums() {
    let o = owner_with_sample(DP_POLICY);
    set_cap(&o, Scope::Global, "5");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let cv = c.expr("income_cv_12m()").await.unwrap();
    let v = c
        .request_dp(&cv, eps(0.5), "income stability")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert_eq!(v.cost.as_deref(), Some("0.5"));
    match v.answer {
        Some(Answer::Scalar {
            value: Value::Float(x),
        }) => assert!((0.0..=10.0).contains(&x), "{x}"),
        Some(Answer::Scalar { value: Value::Null }) => {}
        other => panic!("{other:?}"),
    }
    let bal = c.expr("avg_daily_balance_3m()").await.unwrap();
    let v = c.request_dp(&bal, eps(0.5), "balance").await.unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert!(matches!(
        v.answer,
        Some(Answer::Scalar {
            value: Value::Float(_)
        })
    ));
    // The expected error is the sum's, divided by the days in the window.
    let acc = v.accuracy95.unwrap();
    assert!(acc > 1_000_000.0 && acc < 10_000_000.0, "{acc}");
    assert_eq!(spent(&o), "1".parse().unwrap());
    node.shutdown().await;
}

/// A variance (three noisy parts) and a mean (two) are charged at most what was stated, so a `max_cost = "0.5"`
/// rule approves a variance at 0.5 and a budget with exactly 0.5 left accepts it. Before the split was done in
/// nano-units, each third of 0.5 rounded up to 0.166666667 and the variance cost 0.500000001: the rule sent it
/// to the owner and the last 0.5 of the budget refused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dp_variance_spends_its_budget_in_three_parts_and_never_past_it() {
    let o = owner_with_sample(DP_POLICY);
    set_cap(&o, Scope::Global, "1.333333333");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let mean = c.expr("mean(clamp(rent.amount, 0, 300000))").await.unwrap();
    let v = c
        .request_dp(&mean, eps(0.333_333_333), "rent level")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert_eq!(v.cost.as_deref(), Some("0.333333333"));
    assert_eq!(spent(&o), "0.333333333".parse().unwrap());
    for (i, src) in [
        "variance(clamp(rent.amount, 0, 300000))",
        "variance(clamp(rent.amount, 0, 200000))",
    ]
    .into_iter()
    .enumerate()
    {
        let p = c.expr(src).await.unwrap();
        let v = c
            .request_dp(&p, eps(0.5), "rent variability")
            .await
            .unwrap();
        // Approved by the `small-dp` rule (max_cost 0.5), not left for the owner.
        assert_eq!(v.state, RequestState::Approved, "{src}: {v:?}");
        assert_eq!(v.decided_by.as_deref(), Some("policy"), "{src}: {v:?}");
        assert!(matches!(
            v.answer,
            Some(Answer::Scalar {
                value: Value::Float(_) | Value::Null
            })
        ));
        assert_eq!(v.cost.as_deref(), Some("0.5"), "{src}");
        assert_eq!(v.receipt.as_ref().unwrap().cost_nanos, 500_000_000);
        // The second one takes exactly the 0.5 that was left.
        let want = 333_333_333 + 500_000_000 * (i as u64 + 1);
        assert_eq!(spent(&o).nanos(), want, "{src}");
    }
    node.shutdown().await;
}

/// A new node can run in zCDP: the first cap in rho chooses the measure (before, the global account always
/// counted as existing and `budget set --rho` was refused on a brand-new node). Charges, previews and
/// refusals are then in rho, a pure-epsilon request is charged epsilon²/2, and a cap in epsilon is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_runs_in_zcdp_when_its_first_cap_is_in_rho() {
    use duo::policies::Measure;
    let o = owner_with_sample(DP_POLICY);
    let mut owner = o.store();
    owner
        .set_cap(&Scope::Global, "0.5".parse().unwrap(), Measure::Zcdp)
        .unwrap();
    assert_eq!(owner.store().ledger().unwrap().measure(), Measure::Zcdp);
    let e = owner
        .set_cap(&Scope::Global, "1".parse().unwrap(), Measure::PureEpsilon)
        .unwrap_err()
        .to_string();
    assert!(e.contains("give --rho instead"), "{e}");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let sum = c
        .expr("sum(clamp(filter(transactions, category == \"income\").amount, 0, 500000))")
        .await
        .unwrap();
    let rho = |r: f64| DpParams {
        rho: Some(r),
        ..DpParams::default()
    };
    match c.cost(&sum, rho(0.1)).await.unwrap() {
        duo::node::proto::ServerMsg::Cost { cost, measure, .. } => {
            assert_eq!((cost.as_str(), measure.as_str()), ("0.1", "rho"));
        }
        other => panic!("expected a cost preview, got {other:?}"),
    }
    let v = c.request_dp(&sum, rho(0.1), "income").await.unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert_eq!(spent(&o), "0.1".parse().unwrap());
    // A pure-epsilon request on a zCDP node is charged rho = epsilon² / 2.
    let count = c.expr("count(transactions)").await.unwrap();
    let v = c.request_dp(&count, eps(0.2), "activity").await.unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert_eq!(v.cost.as_deref(), Some("0.02"));
    assert_eq!(spent(&o), "0.12".parse().unwrap());
    // Over the cap: refused with the numbers, nothing charged.
    let rows = c.expr("count(rent)").await.unwrap();
    let v = c.request_dp(&rows, rho(0.45), "too much").await.unwrap();
    assert_eq!(v.state, RequestState::Denied, "{v:?}");
    assert_eq!(spent(&o), "0.12".parse().unwrap());
    node.shutdown().await;
}

/// The `duo` binary on a path, with a home.
fn duo_cli(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

/// Its standard output, which must be a success.
fn duo_ok(home: &std::path::Path, args: &[&str]) -> String {
    let out = duo_cli(home, args);
    assert!(
        out.status.success(),
        "duo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A zCDP node end to end through the `duo` binary over a real socket: `duo owner budget set --rho 0.5` on a
/// brand-new node (it answered "this node's budgets are in epsilon; give --epsilon instead"), an FI cap in rho,
/// previews (the rho-1 preview of `avg_daily_balance_3m()` did not answer within 20 s: OpenDP's accuracy
/// function is linear in the noise scale, 6.5e7 there), charges in rho and for an epsilon (epsilon^2 / 2),
/// a refusal at the FI's cap with the numbers, and the (epsilon, delta) guarantee shown beside every rho a person
/// reads: the cap when set, the budget's caps, spent amounts and charges, and the FI's cost preview.
#[test]
fn a_zcdp_node_end_to_end_through_the_cli() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner-home");
    let fi = dir.path().join("fi-home");
    duo_testkit::sample_owner(
        &owner,
        DP_POLICY,
        duo_testkit::owner::TEST_SEED,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap();
    // A new node: the first cap in rho makes it a zCDP node; it shows the (epsilon, delta) equivalent.
    let set = duo_ok(&owner, &["owner", "budget", "set", "--rho", "0.5"]);
    assert!(
        set.contains("cap 0.5 rho (epsilon ") && set.contains(" at delta 1e-6)"),
        "{set}"
    );
    let set = duo_cli(&owner, &["owner", "budget", "set", "--epsilon", "1"]);
    assert!(!set.status.success());
    assert!(
        String::from_utf8_lossy(&set.stderr).contains("give --rho instead"),
        "{set:?}"
    );
    duo_ok(
        &owner,
        &[
            "owner",
            "budget",
            "set",
            "--fi",
            "Acme Bank",
            "--rho",
            "0.3",
        ],
    );

    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(&owner)
        .args(["owner", "serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();
    let invite: serde_json::Value = serde_json::from_str(&duo_ok(
        &owner,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ))
    .unwrap();
    duo_ok(&fi, &["fi", "pair", &url, invite["code"].as_str().unwrap()]);

    // Previews: in rho with the equivalent; at rho 1 the average daily balance answers (with its bound).
    let preview = duo_ok(
        &fi,
        &[
            "fi",
            "cost",
            "avg_daily_balance_3m()",
            "--rho",
            "1",
            "--json",
        ],
    );
    let preview: serde_json::Value = serde_json::from_str(&preview).unwrap();
    assert_eq!(preview["measure"], "rho", "{preview}");
    assert_eq!(preview["total"], "1", "{preview}");
    assert!(
        preview["releases"][0]["accuracy95"].as_f64().unwrap() > 0.0,
        "{preview}"
    );
    let text = duo_ok(&fi, &["fi", "cost", "count(rent)", "--rho", "0.1"]);
    assert!(
        text.contains("cost 0.1 rho (epsilon ") && text.contains("total: 0.1 rho (epsilon "),
        "{text}"
    );

    // Charges: a rho, then an epsilon charged epsilon^2 / 2.
    let request = |expr: &str, flag: &str, x: &str| {
        let out = duo_cli(
            &fi,
            &[
                "fi",
                "request",
                expr,
                "--reason",
                "e2e",
                "--backend",
                "dp",
                flag,
                x,
                "--json",
            ],
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        (out.status.code(), v)
    };
    let (code, v) = request("avg_daily_balance_3m()", "--rho", "0.2");
    assert_eq!((code, &v["state"]), (Some(0), &"approved".into()), "{v}");
    assert_eq!(v["cost"], "0.2");
    let (code, v) = request("count(rent)", "--epsilon", "0.2");
    assert_eq!((code, &v["state"]), (Some(0), &"approved".into()), "{v}");
    assert_eq!(v["cost"], "0.02");
    // Over the FI's cap (0.3; 0.22 spent): refused at once with the numbers, exit 1, nothing charged.
    let (code, v) = request("count(utilities)", "--rho", "0.1");
    assert_eq!((code, &v["state"]), (Some(1), &"denied".into()), "{v}");
    let why = v["why"].as_str().unwrap();
    assert!(
        why.contains("requested 0.1") && why.contains("remaining 0.08"),
        "{why}"
    );

    // The owner's view: caps and spent amounts in rho and as (epsilon, delta); the history too.
    let show: serde_json::Value =
        serde_json::from_str(&duo_ok(&owner, &["owner", "budget", "show", "--json"])).unwrap();
    assert_eq!(show["measure"], "rho");
    let global = show["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scope"]["scope"] == "global")
        .unwrap_or_else(|| panic!("{show}"));
    assert_eq!(global["spent"], "0.22", "{show}");
    let eps_cap: f64 = global["cap_epsilon_delta"]["epsilon"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Bun and Steinke: rho + 2 sqrt(rho ln(1/delta)) at rho 0.5, delta 1e-6, rounded up.
    let want = 0.5 + 2.0 * (0.5 * 1e6f64.ln()).sqrt();
    assert!(eps_cap >= want && eps_cap < want + 1e-8, "{eps_cap}");
    assert_eq!(global["spent_epsilon_delta"]["delta"], 1e-6);
    assert_eq!(show["history"].as_array().unwrap().len(), 2, "{show}");
    let text = duo_ok(&owner, &["owner", "budget", "show"]);
    assert!(
        text.contains("as (epsilon, delta 1e-6): cap ") && text.contains(" rho (epsilon "),
        "{text}"
    );
    node.kill().unwrap();
    node.wait().unwrap();
}

/// `by_category` over real sockets, under an owner policy with small-count suppression (`min_group_count =
/// 10`): one request, one charge of what the FI stated, one vector labelled with the 15 declared transaction
/// categories; the preview names the suppression and the half-budget count beside grouped sums. Statistics of
/// the one release checked, a count of credits at epsilon 0.5 (discrete Laplace of scale 2): in the sample at
/// least 12 categories have no credits (only the opening balance, income and family transfers are positive),
/// and each is released only if its noise reaches 10, probability e^(-5) / (1 + e^(-0.5)) < 0.0042, so "at
/// least 8 withheld" fails with probability below C(12, 5) 0.0042^5 < 1e-9; `income` has dozens of credits
/// and is withheld only if its noise is below -(n - 10), probability below 1e-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_category_is_one_release_with_small_counts_withheld() {
    let o = owner_with_sample(&format!("{DP_POLICY}\n[dp]\nmin_group_count = 10\n"));
    set_cap(&o, Scope::Global, "2.0");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let sums = c
        .expr("by_category(sum, clamp(transactions.amount, -500000, 500000), category)")
        .await
        .unwrap();
    match c.cost(&sums, eps(0.5)).await.unwrap() {
        duo::node::proto::ServerMsg::Cost {
            cost, mechanism, ..
        } => {
            assert_eq!(cost, "0.5");
            assert!(
                mechanism.contains("15 categories of `category`")
                    && mechanism.contains("below 10 is withheld")
                    && mechanism.contains("half of the stated budget"),
                "{mechanism}"
            );
        }
        other => panic!("expected a cost preview, got {other:?}"),
    }
    let credits = c
        .expr("by_category(count, filter(transactions, amount > 0).amount, category)")
        .await
        .unwrap();
    let v = c
        .request_dp(&credits, eps(0.5), "income sources")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert_eq!(v.cost.as_deref(), Some("0.5"));
    assert_eq!(spent(&o), "0.5".parse().unwrap());
    let Some(Answer::Vector { labels, values }) = &v.answer else {
        panic!("{v:?}");
    };
    assert_eq!(labels, &duo::engine::sample::TRANSACTION_CATEGORIES);
    let income = labels.iter().position(|l| l == "income").unwrap();
    assert!(
        matches!(values[income], Value::Int(n) if n >= 10),
        "{values:?}"
    );
    let withheld = values.iter().filter(|v| **v == Value::Null).count();
    assert!(withheld >= 8, "{values:?}");
    assert!(values
        .iter()
        .all(|v| matches!(v, Value::Null) || matches!(v, Value::Int(n) if *n >= 10)));
    // The grouped sums, released too: one charge of 0.5 more, one vector.
    let s = c.request_dp(&sums, eps(0.5), "spending").await.unwrap();
    assert_eq!(s.state, RequestState::Approved, "{s:?}");
    assert_eq!(spent(&o), "1".parse().unwrap());
    assert!(matches!(&s.answer, Some(Answer::Vector { values, .. }) if values.len() == 15));
    node.shutdown().await;
}

/// Approve DP releases costing at most 1 in all, deny row-level ones, ask about the rest.
const BATCH_POLICY: &str = r#"
default = "ask"
[[rule]]
name = "no-rows"
row_level = true
action = "deny"
reason = "row-level data never leaves this node"
[[rule]]
name = "dp-up-to-1"
backend = ["dp"]
max_cost = "1"
action = "approve"
"#;

fn dataset_spent(o: &OwnerNode, name: &str) -> Amount {
    o.db()
        .ledger()
        .unwrap()
        .account(&Scope::Dataset(name.into()))
        .spent
}

/// Three questions sent together are previewed, decided, charged and answered as one request: each question
/// charged against the datasets it reads, all at once or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_request_charged_its_sum_all_at_once() {
    let o = owner_with_sample(BATCH_POLICY);
    set_cap(&o, Scope::Global, "1.0");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let batch = c
        .expr(
            "batch(sum(clamp(filter(transactions, category == \"income\").amount, 0, 500000)), \
             count(filter(transactions, category == \"nsf_fee\")), mean(clamp(rent.amount, 0, 300000)))",
        )
        .await
        .unwrap();
    assert!(
        batch
            .description
            .starts_with("3 questions asked together: (1) "),
        "{}",
        batch.description
    );
    // The preview: the total and each question's cost and expected error; nothing is charged.
    match c.cost(&batch, eps(0.2)).await.unwrap() {
        duo::node::proto::ServerMsg::Cost { cost, items, .. } => {
            assert_eq!(cost, "0.6");
            assert_eq!(items.len(), 3, "{items:?}");
            assert!(items.iter().all(|i| i.cost == "0.2"), "{items:?}");
            assert!(items.iter().all(|i| i.accuracy95.is_some_and(|a| a > 0.0)));
        }
        other => panic!("expected a cost preview, got {other:?}"),
    }
    assert_eq!(spent(&o), Amount::ZERO);
    let v = c.request_dp(&batch, eps(0.2), "cash flow").await.unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert_eq!(v.cost.as_deref(), Some("0.6"));
    assert_eq!(v.items.len(), 3);
    let Some(Answer::Batch { items }) = &v.answer else {
        panic!("{v:?}")
    };
    assert_eq!(items.len(), 3);
    assert!(matches!(
        items[0],
        Answer::Scalar {
            value: Value::Int(_)
        }
    ));
    assert!(matches!(
        items[1],
        Answer::Scalar {
            value: Value::Int(_)
        }
    ));
    assert!(matches!(
        items[2],
        Answer::Scalar {
            value: Value::Float(_) | Value::Null
        }
    ));
    // One receipt for the whole answer, at the whole cost.
    assert_eq!(v.receipt.as_ref().unwrap().cost_nanos, 600_000_000);
    // Charged once in all, each question against its own dataset.
    assert_eq!(spent(&o), "0.6".parse().unwrap());
    assert_eq!(dataset_spent(&o, "transactions"), "0.4".parse().unwrap());
    assert_eq!(dataset_spent(&o, "rent"), "0.2".parse().unwrap());
    // The same batch again: the stored answer, free.
    let again = c.request_dp(&batch, eps(0.2), "again").await.unwrap();
    assert_eq!(
        (again.decided_by.as_deref(), &again.answer),
        (Some("store"), &v.answer)
    );
    assert_eq!(spent(&o), "0.6".parse().unwrap());
    // A batch over what is left is refused as a whole: its first two questions would fit (0.4 is left) but
    // nothing is released or charged.
    let over = c
        .expr("batch(count(rent), count(utilities), count(transactions))")
        .await
        .unwrap();
    let d = c.request_dp(&over, eps(0.2), "more").await.unwrap();
    assert_eq!(d.state, RequestState::Denied, "{d:?}");
    assert!(d.answer.is_none());
    assert_eq!(d.budget.as_ref().unwrap().requested, "0.2", "{d:?}");
    assert_eq!(spent(&o), "0.6".parse().unwrap());
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    node.shutdown().await;
}

/// A batch waiting for the owner is shown as one request with each question's cost; a denial refuses all of
/// it, an approval releases all of it; batches cannot nest or sit inside an expression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_decides_a_batch_as_a_whole() {
    let o = owner_with_sample(ASK_ALL);
    set_cap(&o, Scope::Global, "1.0");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    for bad in [
        "batch(count(rent), batch(count(rent)))",
        "count(rent) + batch(count(rent))",
        "batch()",
    ] {
        assert!(c.expr(bad).await.is_err(), "{bad}");
    }
    let a = c
        .expr("batch(count(rent), sum(clamp(rent.amount, 0, 300000)))")
        .await
        .unwrap();
    let b = c
        .expr("batch(count(utilities), count(rent))")
        .await
        .unwrap();
    let ra = c.request_dp(&a, eps(0.25), "rent").await.unwrap();
    let rb = c.request_dp(&b, eps(0.25), "bills").await.unwrap();
    assert_eq!(
        (ra.state, rb.state),
        (RequestState::Pending, RequestState::Pending)
    );
    let mut owner = o.store();
    let seen = owner.pending_view(ra.id).unwrap();
    let dp = seen.dp.clone().unwrap();
    assert_eq!(dp.cost, "0.5");
    assert_eq!(dp.items.len(), 2);
    assert_eq!(dp.budget_left_after, Ok("0.5".to_string()));
    owner.deny(rb.id, "not now").unwrap();
    assert_eq!(spent(&o), Amount::ZERO);
    owner.approve(ra.id, Some(&seen.token)).unwrap();
    assert_eq!(spent(&o), "0.5".parse().unwrap());
    let done = c.status(ra.id, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(done.state, RequestState::Approved);
    assert!(matches!(&done.answer, Some(Answer::Batch { items }) if items.len() == 2));
    let denied = c.status(rb.id, std::time::Duration::ZERO).await.unwrap();
    assert_eq!((denied.state, denied.answer), (RequestState::Denied, None));
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    node.shutdown().await;
}
