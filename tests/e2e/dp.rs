//! The dp backend through the node: budgets, charging, free repeats, refusals with numbers, races, previews.

use duo::engine::{Answer, Value};
use duo::node::proto::request::DpParams;
use duo::node::proto::request::RequestState;
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
    let why = v3.why.unwrap();
    assert!(
        why.contains("requested 0.2") && why.contains("remaining 0.1"),
        "{why}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dp_variance_spends_its_budget_in_three_parts() {
    let o = owner_with_sample(DP_POLICY);
    set_cap(&o, Scope::Global, "1");
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c
        .expr("variance(clamp(rent.amount, 0, 300000))")
        .await
        .unwrap();
    let v = c
        .request_dp(&p, eps(0.45), "rent variability")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert!(matches!(
        v.answer,
        Some(Answer::Scalar {
            value: Value::Float(_) | Value::Null
        })
    ));
    // Three parts of 0.15 each, each rounded up: the charge is at least the request and at most 3 nanos over.
    let charged = spent(&o).nanos();
    assert!((450_000_000..=450_000_003).contains(&charged), "{charged}");
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
