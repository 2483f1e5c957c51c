//! Crash safety with deterministic failpoints: the node is stopped at each dangerous point, restarted, and
//! must have lost nothing it acknowledged, released nothing twice, and kept a log that verifies.
//!
//! Failpoints are process-wide, so these tests live in their own test binary and each holds a
//! `fail::FailScenario` (which serializes them).

use duo::node::proto::request::RequestState;
use duo::node::store::prelude::*;
use duo::policies::Backend;
use duo_testkit::policy::TEST_POLICY;
use duo_testkit::{connect, owner_with_sample, paired_fi, OwnerNode};

fn count(o: &OwnerNode, sql: &str) -> i64 {
    o.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Crash inside the release transaction at `point`; after a restart the request never happened, and asking
/// again releases exactly once.
async fn crash_inside_release(point: &str) {
    let scenario = fail::FailScenario::setup();
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let log_before = o.db().verify_log().unwrap().entries;
    fail::cfg(point, "panic").unwrap();
    assert!(c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .is_err());
    fail::remove(point);
    let addr = node.addr;
    node.shutdown().await;

    let node = o.start_at(addr).await;
    let report = o.db().verify_log().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.entries, log_before,
        "{point}: a rolled-back release left log entries"
    );
    assert_eq!(count(&o, "SELECT COUNT(*) FROM requests"), 0);
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved);
    assert_eq!(
        count(&o, "SELECT COUNT(*) FROM log WHERE kind = 'release'"),
        1
    );
    node.shutdown().await;
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_decision_and_answer() {
    crash_inside_release("release::after_decision").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_answer_before_commit() {
    crash_inside_release("release::after_answer").await;
    crash_inside_release("release::before_commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_in_the_middle_of_a_log_append() {
    crash_inside_release("store::mid_log_append").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_stored_answer_and_send() {
    let scenario = fail::FailScenario::setup();
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    fail::cfg("owner::before_send", "return").unwrap();
    // The node commits the release, then dies before sending it.
    assert!(c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .is_err());
    fail::remove("owner::before_send");
    let addr = node.addr;
    node.shutdown().await;

    let node = o.start_at(addr).await;
    // What was committed is still there.
    assert_eq!(
        count(&o, "SELECT COUNT(*) FROM log WHERE kind = 'release'"),
        1
    );
    let stored: String = o
        .db()
        .query_row(
            "SELECT answer FROM requests WHERE state = 'approved'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // The FI asks again: it gets the stored answer, and nothing is released twice.
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c.request(&p, Backend::Plaintext, "retry").await.unwrap();
    assert_eq!(v.decided_by.as_deref(), Some("store"));
    assert_eq!(serde_json::to_string(&v.answer.unwrap()).unwrap(), stored);
    assert_eq!(
        count(&o, "SELECT COUNT(*) FROM log WHERE kind = 'release'"),
        1
    );
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    node.shutdown().await;
    scenario.teardown();
}

#[test]
fn crash_during_ingest_leaves_the_store_as_it_was() {
    let scenario = fail::FailScenario::setup();
    let o = owner_with_sample(TEST_POLICY);
    let before = o.db().datasets().unwrap();
    let entries = o.db().verify_log().unwrap().entries;
    let meta = std::fs::read_to_string(o.sample_dir().join("rent.meta.toml")).unwrap();
    let csv = o.sample_dir().join("rent.csv");
    fail::cfg("store::mid_ingest", "panic").unwrap();
    let dir = o.dir.clone();
    let crashed =
        std::thread::spawn(move || duo::node::owner::load(&dir, &csv, "rent", &meta)).join();
    assert!(crashed.is_err(), "the failpoint did not fire");
    fail::remove("store::mid_ingest");
    assert_eq!(o.db().datasets().unwrap(), before);
    let report = o.db().verify_log().unwrap();
    assert_eq!(report.entries, entries);
    assert!(report.problems.is_empty());
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_charge_and_send_charges_once_and_a_retry_gets_the_stored_noise() {
    use duo::node::proto::request::DpParams;
    use duo::policies::Scope;
    let scenario = fail::FailScenario::setup();
    let o = owner_with_sample(
        "default = \"ask\"\n[[rule]]\nname = \"dp\"\nbackend = [\"dp\"]\nmax_cost = \"1\"\naction = \"approve\"\n",
    );
    o.store()
        .set_cap(
            &Scope::Global,
            "1".parse().unwrap(),
            duo::policies::Measure::PureEpsilon,
        )
        .unwrap();
    let spent = |o: &OwnerNode| o.db().ledger().unwrap().account(&Scope::Global).spent;
    let params = DpParams {
        epsilon: Some(0.3),
        ..DpParams::default()
    };
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("sum(clamp(rent.amount, 0, 300000))").await.unwrap();
    fail::cfg("owner::before_send", "return").unwrap();
    assert!(c.request_dp(&p, params.clone(), "rent").await.is_err());
    fail::remove("owner::before_send");
    let addr = node.addr;
    node.shutdown().await;

    let node = o.start_at(addr).await;
    // Charged exactly once, with the answer stored.
    assert_eq!(spent(&o), "0.3".parse().unwrap());
    let stored: String = o
        .db()
        .query_row(
            "SELECT answer FROM requests WHERE state = 'approved'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut c = connect(&fi).await;
    let p = c.expr("sum(clamp(rent.amount, 0, 300000))").await.unwrap();
    let v = c.request_dp(&p, params, "rent, again").await.unwrap();
    assert_eq!(v.decided_by.as_deref(), Some("store"));
    assert_eq!(serde_json::to_string(&v.answer.unwrap()).unwrap(), stored);
    assert_eq!(spent(&o), "0.3".parse().unwrap());
    node.shutdown().await;
    scenario.teardown();
}
