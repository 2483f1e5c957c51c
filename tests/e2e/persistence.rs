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
