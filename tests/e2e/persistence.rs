//! Persistence: restarts (also of a killed process), the audit log, and bad input that must change nothing.

use duo::node::owner;
use duo::node::proto::request::RequestState;
use duo::node::store;
use duo::node::store::prelude::*;
use duo::policies::Backend;
use duo_testkit::policy::TEST_POLICY;
use duo_testkit::{connect, owner_with_sample, paired_fi};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pairings_and_answers_survive_a_restart() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let approved = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    let p = c.expr("min(rent.amount)").await.unwrap();
    let pending = c
        .request(&p, Backend::Plaintext, "lowest rent")
        .await
        .unwrap();
    assert_eq!(pending.state, RequestState::Pending);
    c.close().await;
    let addr = node.addr;
    node.shutdown().await;

    let node = o.start_at(addr).await;
    let mut c = connect(&fi).await;
    let a = c.status(approved.id, Duration::ZERO).await.unwrap();
    assert_eq!(a.answer, approved.answer);
    let p2 = c.status(pending.id, Duration::ZERO).await.unwrap();
    assert_eq!(p2.state, RequestState::Pending);
    o.store().approve(pending.id, None).unwrap();
    let p3 = c.status(pending.id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(p3.state, RequestState::Approved);
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    node.shutdown().await;
}

#[test]
fn a_tampered_log_is_found_and_named() {
    let o = owner_with_sample(TEST_POLICY);
    let conn = o.db();
    let report = conn.verify_log().unwrap();
    assert!(report.entries >= 4);
    assert!(report.problems.is_empty());
    // The triggers refuse edits through SQL ...
    assert!(conn
        .execute("UPDATE log SET body = '{}' WHERE seq = 2", [])
        .is_err());
    // ... so an attacker drops them first; verification still finds the edit.
    conn.execute_batch(
        "DROP TRIGGER log_no_update; UPDATE log SET body = '{\"dataset\":\"rent\"}' WHERE seq = 2;",
    )
    .unwrap();
    let report = conn.verify_log().unwrap();
    assert_eq!(report.problems, vec![store::LogProblem::Edited { seq: 2 }]);
}

#[test]
fn bad_csv_leaves_the_store_as_it_was() {
    let o = owner_with_sample(TEST_POLICY);
    let before = o.db().datasets().unwrap();
    let log_before = o.db().verify_log().unwrap().entries;
    let meta = std::fs::read_to_string(o.sample_dir().join("rent.meta.toml")).unwrap();
    let good = std::fs::read_to_string(o.sample_dir().join("rent.csv")).unwrap();
    let header = good.lines().next().unwrap().to_string();
    let cases = [
        (
            "wrong type",
            format!("{header}\n2025-01-01,2025-01-01,lots\n"),
            "line 2",
        ),
        (
            "missing column",
            "due_date,amount\n2025-01-01,100.00\n".to_string(),
            "paid_date",
        ),
        (
            "huge field",
            format!("{header}\n2025-01-01,2025-01-01,{}\n", "9".repeat(100_000)),
            "line 2",
        ),
        (
            "NaN",
            format!("{header}\n2025-01-01,2025-01-01,NaN\n"),
            "line 2",
        ),
        (
            "inf",
            format!("{header}\n2025-01-01,2025-01-01,inf\n"),
            "line 2",
        ),
        (
            "bad date",
            format!("{header}\n2025-13-01,2025-01-01,100.00\n"),
            "line 2",
        ),
    ];
    for (what, csv, needle) in cases {
        let path = o.home.path().join("bad.csv");
        std::fs::write(&path, csv).unwrap();
        let err = owner::load(&o.dir, &path, "rent", &meta).unwrap_err();
        assert!(err.to_string().contains(needle), "{what}: {err}");
    }
    assert_eq!(o.db().datasets().unwrap(), before);
    assert_eq!(o.db().verify_log().unwrap().entries, log_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_cut_from_the_end_of_the_log_are_found_from_the_requests() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    node.shutdown().await;
    let conn = o.db();
    let last: i64 = conn
        .query_row("SELECT MAX(seq) FROM log", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("DROP TRIGGER log_no_delete;").unwrap();
    conn.execute("DELETE FROM log WHERE seq = ?1", [last])
        .unwrap();
    let report = conn.verify_log().unwrap();
    assert_eq!(
        report.problems,
        vec![store::LogProblem::Unlogged {
            request: v.id,
            entry: "release".into()
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_dataset_removes_its_rows_and_blocks_pending_approvals() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("sum(utilities.amount)").await.unwrap();
    let v = c.request(&p, Backend::Plaintext, "bills").await.unwrap();
    assert_eq!(v.state, RequestState::Pending);
    let mut owner = o.store();
    owner.store_mut().delete_dataset("utilities").unwrap();
    owner.store().scrub().unwrap();
    // The rows are gone from the store; the FI no longer sees the dataset.
    let blob: Vec<u8> = o
        .db()
        .query_row(
            "SELECT data FROM datasets WHERE name = 'utilities'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(blob.is_empty());
    assert_eq!(c.datasets().await.unwrap().len(), 3);
    // The owner is told the data is gone, not an internal decoding error.
    let seen = owner.pending_view(v.id).unwrap();
    let why = seen.value.unwrap_err();
    assert!(why.contains("the owner deleted its rows"), "{why}");
    assert!(!why.contains("internal"), "{why}");
    // The pending request can no longer be approved.
    let e = owner.approve(v.id, None).unwrap_err().to_string();
    assert!(e.contains("reloaded or deleted"), "{e}");
    assert!(owner.store().verify_log().unwrap().problems.is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_receipts_the_fi_verifies_and_keeps() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    let again = c.request(&p, Backend::Plaintext, "again").await.unwrap();
    let r = v.receipt.clone().expect("a receipt");
    let key = fi
        .home
        .pairing(None)
        .unwrap()
        .signing_key
        .expect("pinned key");
    r.verify(Some(&key)).unwrap();
    assert_eq!((r.request, r.principal.as_str()), (v.id, "Acme"));
    // The receipt names the log entry that recorded the release.
    let entry = o.db().log_entry(r.log_seq).unwrap().unwrap();
    assert_eq!(entry.kind, "release");
    assert_eq!(entry.hash, r.log_hash);
    // The FI kept both receipts, chained.
    let kept = fi.home.receipts().unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[1].receipt.request, again.id);
    assert!(fi.home.verify_receipts().unwrap().is_empty());
    // A forged or altered receipt fails.
    let mut altered = r.clone();
    altered.answer = altered.answer.replace('1', "0");
    assert!(altered.verify(Some(&key)).is_err());
    // Editing the FI's receipt log is found.
    let path = fi.dir.path().join("receipts.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let first_line = text.lines().next().unwrap().to_string();
    let edited = text.replacen(&first_line, &first_line.replace("\"Acme\"", "\"Acme2\""), 1);
    std::fs::write(&path, edited).unwrap();
    assert!(!fi.home.verify_receipts().unwrap().is_empty());
    node.shutdown().await;
}

/// The one problem `log --verify` finds in `table`, and its row.
fn state_problem(o: &duo_testkit::OwnerNode, table: &str) -> (String, String) {
    let problems: Vec<_> = o
        .db()
        .verify_log()
        .unwrap()
        .problems
        .into_iter()
        .filter_map(|p| match p {
            store::LogProblem::StateEdited {
                table: t,
                item,
                why,
            } if t == table => Some((item, why)),
            _ => None,
        })
        .collect();
    assert!(
        !problems.is_empty(),
        "no problem found in {table}: {:?}",
        o.db().verify_log().unwrap().problems
    );
    problems[0].clone()
}

/// The error code of a refused call.
fn code<T: std::fmt::Debug>(r: Result<T, duo::node::Error>) -> String {
    match r {
        Err(duo::node::Error::Remote { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_edited_in_the_store_is_never_served_again() {
    use duo::engine::{Answer, Value};
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    // An attacker with the database changes the stored answer (the log is left alone).
    let forged = serde_json::to_string(&Answer::Scalar {
        value: Value::Float(0.01),
    })
    .unwrap();
    o.db()
        .execute(
            "UPDATE requests SET answer = ?1 WHERE state = 'approved'",
            [&forged],
        )
        .unwrap();
    // The verification names it ...
    let (item, why) = state_problem(&o, "requests");
    assert!(why.contains("stored answer"), "{item}: {why}");
    // ... the same question is not answered from it (no fresh receipt over the forged answer) ...
    assert_eq!(
        code(c.request(&p, Backend::Plaintext, "again").await),
        "integrity"
    );
    // ... and the FI's own request shows it no more.
    assert_eq!(code(c.status(v.id, Duration::ZERO).await), "integrity");
    assert_eq!(fi.home.receipts().unwrap().len(), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privacy_ledger_reset_around_the_log_gates_nothing() {
    use duo::node::proto::request::DpParams;
    use duo::policies::{Ledger, Measure, Scope};
    let o = owner_with_sample(duo_testkit::policy::DP_POLICY);
    o.store()
        .set_cap(&Scope::Global, "1".parse().unwrap(), Measure::PureEpsilon)
        .unwrap();
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let eps = DpParams {
        epsilon: Some(0.4),
        ..DpParams::default()
    };
    for q in [
        "count(filter(transactions, category == \"nsf_fee\"))",
        "count(filter(transactions, category == \"income\"))",
    ] {
        let p = c.expr(q).await.unwrap();
        let v = c.request_dp(&p, eps.clone(), "fees").await.unwrap();
        assert_eq!(v.state, RequestState::Approved, "{v:?}");
    }
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    // 0.8 of 1 is spent; an attacker puts back a ledger with the same cap and nothing spent.
    let mut fresh = Ledger::new(Measure::PureEpsilon);
    fresh.set_cap(&Scope::Global, "1".parse().unwrap());
    o.db()
        .execute(
            "UPDATE settings SET value = ?1 WHERE key = 'ledger'",
            [serde_json::to_string(&fresh).unwrap()],
        )
        .unwrap();
    let (_, why) = state_problem(&o, "ledger");
    assert!(why.contains("ledger"), "{why}");
    // A third release at 0.4 would pass the reset ledger; the node refuses to plan on it.
    let p = c
        .expr("count(filter(transactions, category == \"rent\"))")
        .await
        .unwrap();
    assert_eq!(
        code(c.request_dp(&p, eps.clone(), "more").await),
        "integrity"
    );
    assert_eq!(code(c.cost(&p, eps).await), "integrity");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_flipped_in_the_store_is_not_shown_to_the_fi() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("min(rent.amount)").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "lowest rent")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Pending);
    let mut owner = o.store();
    owner.deny(v.id, "not for you").unwrap();
    // The attacker turns the denial into an approval, with the answer the owner refused to release.
    let answer = serde_json::to_string(&duo::engine::Answer::Scalar {
        value: duo::engine::Value::Int(95_000),
    })
    .unwrap();
    o.db()
        .execute(
            "UPDATE requests SET state = 'approved', decided_by = 'owner', why = NULL, answer = ?1
             WHERE state = 'denied'",
            [&answer],
        )
        .unwrap();
    let (_, why) = state_problem(&o, "requests");
    assert!(why.contains("decision"), "{why}");
    assert_eq!(code(c.status(v.id, Duration::ZERO).await), "integrity");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_expiry_moved_in_the_store_does_not_open_a_session() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = duo::node::fi::FiHome::new(dir.path());
    // A pairing that lasts two seconds, and runs out.
    let code_ = owner::invite_for(
        &o.dir,
        "Acme",
        Duration::from_secs(600),
        Duration::from_secs(2),
    )
    .unwrap();
    duo::node::fi::pair(&home, &node.url(), &code_.to_string(), "owner")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(duo::node::fi::Client::connect(&home, None).await.is_err());
    // The attacker moves its expiry a year on.
    o.db()
        .execute("UPDATE pairings SET expires_at = expires_at + 31536000", [])
        .unwrap();
    let (item, why) = state_problem(&o, "pairings");
    assert_eq!(item, "Acme");
    assert!(why.contains("expiry"), "{why}");
    let err = duo::node::fi::Client::connect(&home, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("integrity"), "{err}");
    node.shutdown().await;
}
