//! Private scoring (backend 2pc) through a real node over a real WebSocket: outcomes equal the fixed-point
//! reference on the owner's values, runs are counted and limited, bands go to the owner, a vanished FI ends the
//! run cleanly on the owner's side, and everything is in the log.

use duo::engine::Value;
use duo::node::fi::ModelFile;
use duo::node::proto::request::RequestState;
use duo::node::proto::scoring::ScoreOutcome;
use duo::node::store::prelude::*;
use duo::policies::Reveal;
use duo_testkit::owner::open_store;
use duo_testkit::policy::SCORING_POLICY;
use duo_testkit::scoring::{
    ask_pending, decide, owner_values, quiet, score_err, scoring_node, test_model, MODEL_ATTRIBUTES,
};
use duo_testkit::{connect, log_kinds, owner_with_sample, paired_fi};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_equal_the_reference_and_runs_are_counted_and_limited() {
    let (owner, node, fi, mut c) = scoring_node("acme").await;
    let base = test_model(-1.0, 0.5, &[]);
    assert_eq!(base.attributes().len(), MODEL_ATTRIBUTES.len());
    let values = owner_values(&mut c, &base).await;
    let reference = base
        .encode(Reveal::Decision)
        .unwrap()
        .model()
        .score_reference(&values)
        .unwrap();
    let score = duo_protocols::fixed::decode_score(reference.score);

    // 1. Cold: the decision the model gives on the owner's values.
    let r1 = decide(&mut c, &base, "thin-file review").await;
    assert_eq!(
        r1.outcome,
        ScoreOutcome::Decision {
            approve: reference.decision
        }
    );
    // Warm: pairing made the base OTs.
    assert!(!r1.cold);
    assert_eq!(r1.bits, 1.0);
    // 2. Threshold exactly at the score: reaches it.
    let at = test_model(-1.0, score, &[]);
    let r2 = decide(&mut c, &at, "edge").await;
    assert_eq!(r2.outcome, ScoreOutcome::Decision { approve: true });
    assert!(!r2.cold);
    // 3. Just above the score: does not.
    let above = test_model(-1.0, score + 1e-6, &[]);
    let r3 = decide(&mut c, &above, "edge").await;
    assert_eq!(r3.outcome, ScoreOutcome::Decision { approve: false });
    // 4. Over the owner's limit of 3 runs per 30 days: refused with the numbers, before any run.
    let e = score_err(
        &mut c,
        &base,
        Reveal::Decision,
        "again",
        Duration::from_secs(5),
    )
    .await;
    assert!(e.contains("3 of 3"), "{e}");

    // The owner's record: three runs, each started and ended in the log, the chain intact; receipts kept.
    let o = owner.store();
    let done: i64 = owner
        .db()
        .query_row(
            "SELECT COUNT(*) FROM scoring_runs WHERE principal = 'acme' AND state = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, 3);
    // The owner's budget screen counts them: 3 runs, 3 bits, for this FI.
    let (policy, _) = o.policy().unwrap();
    let usage = duo::node::owner::scoring::scoring_usage(&o, policy.scoring_limits()).unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].0, "acme");
    assert_eq!((usage[0].1.runs, usage[0].1.millibits), (3, 3000));
    let kinds = log_kinds(&o);
    assert_eq!(kinds.iter().filter(|k| *k == "scoring-start").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "scoring-end").count(), 3);
    assert!(o.store().verify_log().unwrap().problems.is_empty());
    let kept = fi.home.receipts().unwrap();
    assert_eq!(
        kept.iter().filter(|e| e.receipt.backend == "2pc").count(),
        3
    );
    // Each receipt names what was scored: every attribute, the reveal and the commitment.
    for e in kept.iter().filter(|e| e.receipt.backend == "2pc") {
        for a in MODEL_ATTRIBUTES {
            assert!(e.receipt.lineage.contains(a), "{}", e.receipt.lineage);
        }
        assert!(e.receipt.lineage.contains("commitment"));
    }
    // The commitment the owner saw is the one the FI can open.
    let commitment = r1.commitment.unwrap();
    let spec: String = owner
        .db()
        .query_row(
            "SELECT spec FROM scoring_requests WHERE request_id = ?1",
            [r1.request as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert!(spec.contains(&commitment));
    let opening = fi
        .dir
        .path()
        .join("models")
        .join(format!("{commitment}.json"));
    let opened: serde_json::Value =
        serde_json::from_slice(&std::fs::read(opening).unwrap()).unwrap();
    let salt = opened["salt"].as_str().unwrap();
    let salt: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&salt[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(base.commitment(&salt), commitment);
    // The weights never reached the owner's store or log in the clear.
    let log_text = serde_json::to_string(&o.store().log_entries(0, 100_000).unwrap()).unwrap();
    assert!(!log_text.contains("-0.75"), "a weight in the owner's log");
    c.close().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bands_wait_for_the_owner_and_raw_scores_are_refused() {
    let (owner, node, _fi, mut c) = scoring_node("bank2").await;
    let m = test_model(-1.0, 0.5, &[0.0, 1.0, 2.0]);
    let values = owner_values(&mut c, &m).await;
    let fim = m.encode(Reveal::Bands { k: 4 }).unwrap();
    let s = fim.model().score_reference(&values).unwrap().score;
    let want = duo_protocols::fixed::band_of(s, fim.bands());

    // Bands: no rule approves them, so the owner decides.
    let (mut o, id) = ask_pending(&mut c, &owner, &m, Reveal::Bands { k: 4 }).await;
    let view = o.pending_view(id).unwrap();
    let sv = view
        .scoring
        .as_ref()
        .expect("the owner sees the scoring facts");
    assert_eq!(sv.attributes, m.attributes());
    assert_eq!(sv.bits, 2.0);
    assert_eq!(sv.runs_used, 0);
    assert!(
        view.value.is_err(),
        "no value is computed for a scoring request"
    );
    o.approve(id, Some(&view.token)).unwrap();
    let r = c.score_run(id, &m, &mut quiet()).await.unwrap();
    assert_eq!(r.outcome, ScoreOutcome::Band { band: want, of: 4 });
    assert_eq!(r.bits, 2.0);
    // One run per approved request.
    let e = c
        .score_run(id, &m, &mut quiet())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already had its run"), "{e}");

    // The owner approves while the FI waits: the FI runs at once.
    let owner_dir = owner.dir.clone();
    let approver = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let mut o = open_store(&owner_dir);
            if let Some(&id) = o.pending_ids().unwrap().first() {
                o.approve(id, None).unwrap();
                return;
            }
        }
        panic!("no pending request to approve");
    });
    let r = c
        .score(
            &m,
            Reveal::Bands { k: 4 },
            "pricing tier",
            Duration::from_secs(20),
            &mut quiet(),
        )
        .await
        .unwrap();
    approver.await.unwrap();
    assert_eq!(r.outcome, ScoreOutcome::Band { band: want, of: 4 });

    // A raw score (64 bits) is over this policy's 6-bit cap and no rule allows it: refused.
    let e = score_err(&mut c, &m, Reveal::Score, "raw", Duration::from_secs(2)).await;
    assert!(e.contains("denied"), "{e}");
    let state: String = owner
        .db()
        .query_row(
            "SELECT state FROM requests WHERE backend = '2pc' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "denied");
    c.close().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_fi_ends_the_run_and_the_run_still_counts() {
    let (owner, node, _fi, mut c) = scoring_node("flaky").await;
    let m = test_model(-1.0, 0.5, &[]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut progress = move |s: &str| {
        let _ = tx.send(s.to_string());
    };
    {
        let run = c.score(
            &m,
            Reveal::Decision,
            "r",
            Duration::from_secs(5),
            &mut progress,
        );
        // Biased: once the FI waits for the challenge, the next poll ends the run rather than going on with it.
        tokio::select! {
            biased;
            _ = async {
                while let Some(s) = rx.recv().await {
                    if s.contains("challenge") {
                        break;
                    }
                }
            } => {}
            r = run => panic!("the run finished: {r:?}"),
        }
    }
    drop(c);
    // The owner notices the closed session, records the abort, and the run counts against the limit.
    let o = owner.store();
    let mut state = String::new();
    for _ in 0..200 {
        state = owner
            .db()
            .query_row(
                "SELECT state || ':' || COALESCE(error, '') FROM scoring_runs WHERE principal = 'flaky'",
                [],
                |r| r.get(0),
            )
            .unwrap_or_default();
        if state.starts_with("aborted") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(state.starts_with("aborted:"), "{state}");
    assert!(state.contains("channel"), "{state}");
    let kinds = log_kinds(&o);
    assert!(kinds.contains(&"scoring-end".to_string()));
    let problems = o.store().verify_log().unwrap().problems;
    assert!(problems.is_empty(), "{problems:?}");
    node.shutdown().await;
    let _ = Value::Null;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_committed_model_runs_and_the_session_goes_on() {
    let (owner, node, _fi, mut c) = scoring_node("mixup").await;
    let m = test_model(-1.0, 0.5, &[0.0]);
    let (mut o, id) = ask_pending(&mut c, &owner, &m, Reveal::Bands { k: 2 }).await;
    o.approve(id, None).unwrap();
    let runs = |_: &duo::node::owner::Owner| -> i64 {
        owner
            .db()
            .query_row("SELECT COUNT(*) FROM scoring_runs", [], |r| r.get(0))
            .unwrap()
    };
    // Another model (other attributes), or the same attributes with another weight: refused by this FI before
    // the owner starts anything, since neither is the model the request committed to.
    let other =
        ModelFile::parse("bias = 0.0\nthreshold = 0.0\n[weights]\nincome_cv_12m = 1.0\n").unwrap();
    let tweaked = test_model(-1.0, 0.5 + 1e-3, &[0.0]);
    for wrong in [&other, &tweaked] {
        let e = c
            .score_run(id, wrong, &mut quiet())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the one request"), "{e}");
    }
    // A request this FI never made: no record of it here.
    let e = c
        .score_run(id + 100, &m, &mut quiet())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no record"), "{e}");
    assert_eq!(runs(&o), 0);
    // The session is in step, and the committed model runs.
    assert!(!c.datasets().await.unwrap().is_empty());
    let r = c.score_run(id, &m, &mut quiet()).await.unwrap();
    assert!(matches!(r.outcome, ScoreOutcome::Band { of: 2, .. }));
    assert_eq!(r.commitment.as_deref().map(str::len), Some(64));
    assert_eq!(runs(&o), 1);
    c.close().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_now_denies_stops_a_run_approved_earlier() {
    let (owner, node, _fi, mut c) = scoring_node("late").await;
    let m = test_model(-1.0, 0.5, &[0.0]);
    let (mut o, id) = ask_pending(&mut c, &owner, &m, Reveal::Bands { k: 2 }).await;
    o.approve(id, None).unwrap();
    // The owner then forbids private scoring for this FI.
    let path = duo::node::owner::policy_path(&owner.dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let deny = "\n[[rule]]\nname = \"no-late\"\nprincipal = [\"late\"]\nbackend = [\"2pc\"]\naction = \"deny\"\nreason = \"no more scoring\"\n";
    let text = text.replacen("\n[[rule]]", &format!("{deny}\n[[rule]]"), 1);
    std::fs::write(&path, text).unwrap();
    let e = c
        .score_run(id, &m, &mut quiet())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no-late") && e.contains("no more scoring"),
        "{e}"
    );
    // Nothing ran, nothing is counted, and the refusal is in the log.
    let runs: i64 = owner
        .db()
        .query_row("SELECT COUNT(*) FROM scoring_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 0);
    let kinds = log_kinds(&o);
    assert!(kinds.contains(&"scoring-refused".to_string()));
    c.close().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_a_run_ends_it_before_the_output_leaves() {
    let (owner, node, _fi, mut c) = scoring_node("gone").await;
    let m = test_model(-1.0, 0.5, &[]);
    // The owner revokes the FI while the run is under way (when the FI waits for the challenge).
    let dir = owner.dir.clone();
    let mut revoked = false;
    let mut progress = move |s: &str| {
        if !revoked && s.contains("challenge") {
            let mut o = open_store(&dir);
            o.store_mut().revoke("gone").unwrap();
            revoked = true;
        }
    };
    let e = c
        .score(
            &m,
            Reveal::Decision,
            "r",
            Duration::from_secs(5),
            &mut progress,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("revoked") || e.contains("closed"), "{e}");
    let state: String = owner
        .db()
        .query_row(
            "SELECT state || ':' || COALESCE(error, '') FROM scoring_runs WHERE principal = 'gone'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        state.starts_with("aborted:") && state.contains("revoked"),
        "{state}"
    );
    // Nothing was released to it.
    let released: i64 = owner
        .db()
        .query_row(
            "SELECT COUNT(*) FROM requests WHERE principal = 'gone' AND backend = '2pc' AND answer IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(released, 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attribute_without_a_value_costs_a_run_and_tells_only_that() {
    let owner = owner_with_sample(SCORING_POLICY);
    // Rent paid only until more than a year ago: no rent is due in the 12-month window.
    let sample = owner.sample_dir();
    let csv = std::fs::read_to_string(sample.join("rent.csv")).unwrap();
    let cutoff = chrono::Utc::now().date_naive() - chrono::Days::new(430);
    let old: Vec<&str> = csv
        .lines()
        .enumerate()
        .filter(|(i, l)| {
            *i == 0
                || chrono::NaiveDate::parse_from_str(&l[..10], "%Y-%m-%d").is_ok_and(|d| d < cutoff)
        })
        .map(|(_, l)| l)
        .collect();
    assert!(old.len() > 1 && old.len() < csv.lines().count());
    let path = sample.join("rent_old.csv");
    std::fs::write(&path, old.join("\n") + "\n").unwrap();
    let meta = std::fs::read_to_string(sample.join("rent.meta.toml")).unwrap();
    duo::node::owner::load(&owner.dir, &path, "rent", &meta).unwrap();

    let node = owner.start().await;
    let fi = paired_fi(&owner, &node, "probe").await;
    let mut c = connect(&fi).await;
    let m = test_model(-1.0, 0.5, &[]);
    let e = score_err(&mut c, &m, Reveal::Decision, "r", Duration::from_secs(5)).await;
    // The FI learns that some value is missing, not which.
    assert!(e.contains("one of the attributes has no value"), "{e}");
    assert!(!e.contains("rent_on_time_ratio_12m"), "{e}");
    let o = owner.store();
    let (state, error): (String, String) = owner
        .db()
        .query_row(
            "SELECT state, error FROM scoring_runs WHERE principal = 'probe'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // The run counts, and the owner's record names the attribute.
    assert_eq!(state, "aborted");
    assert!(error.contains("rent_on_time_ratio_12m"), "{error}");
    let (policy, _) = o.policy().unwrap();
    let usage = duo::node::owner::scoring::scoring_usage(&o, policy.scoring_limits()).unwrap();
    assert_eq!(usage[0].1.runs, 1);
    c.close().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_approval_still_runs_and_revocation_cancels_unrun_approvals() {
    // Approve one decision a day, deny the rest: the approval counted in the rate must not refuse its own run.
    let policy = r#"
default = "deny"

[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"

[[rule]]
name = "one-decision-a-day"
backend = ["2pc"]
reveal = ["decision"]
rate = { max = 1, per = "day" }
action = "approve"

[[rule]]
name = "bands-ask"
backend = ["2pc"]
reveal = ["bands"]
action = "ask"
"#;
    let owner = owner_with_sample(policy);
    let node = owner.start().await;
    let fi = paired_fi(&owner, &node, "daily").await;
    let mut c = connect(&fi).await;
    let m = test_model(-1.0, 0.5, &[0.0]);
    let r = decide(&mut c, &m, "daily").await;
    assert!(matches!(r.outcome, ScoreOutcome::Decision { .. }));
    // An approved bands request that has not run yet is cancelled by a revocation.
    let (mut o, id) = ask_pending(&mut c, &owner, &m, Reveal::Bands { k: 2 }).await;
    o.approve(id, None).unwrap();
    let cancelled = o.store_mut().revoke("daily").unwrap().requests;
    assert!(cancelled.contains(&id), "{cancelled:?}");
    let state: String = owner
        .db()
        .query_row(
            "SELECT state FROM requests WHERE id = ?1",
            [id as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "denied");
    node.shutdown().await;
}

/// Issue 10, item 8: an owner node that hands the FI wrong input labels (a failpoint plays the modified node)
/// gets no output label back: the FI aborts, keeps a flag in its home, and scores that owner no more, in this
/// session or a later one, until its operator allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_hands_out_wrong_labels_is_scored_no_more() {
    let (owner, node, fi, mut c) = scoring_node("mallory").await;
    let m = test_model(-1.0, 0.5, &[]);
    // Only the runs of this test's principal are touched; other tests run in this process meanwhile.
    fail::cfg("scoring::corrupt-fi-labels", "return(mallory)").unwrap();
    let e = score_err(
        &mut c,
        &m,
        Reveal::Decision,
        "first",
        Duration::from_secs(5),
    )
    .await;
    fail::remove("scoring::corrupt-fi-labels");
    assert!(
        e.contains("neither label the owner committed to") && e.contains("--allow-after-abort"),
        "{e}"
    );
    let flags = fi.home.score_aborts().unwrap();
    assert_eq!(flags.len(), 1, "{flags:?}");
    // The owner got no label: its run ended without an output (the FI's abort), and nothing was released.
    let state: String = owner
        .db()
        .query_row(
            "SELECT state FROM scoring_runs WHERE principal = 'mallory'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "aborted");
    let requests = |_: ()| -> i64 {
        owner
            .db()
            .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
            .unwrap()
    };
    let asked = requests(());
    // The owner is honest again, but this FI refuses before asking it anything, in this session and the next.
    let e = score_err(
        &mut c,
        &m,
        Reveal::Decision,
        "again",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        e.contains("no more") && e.contains("--allow-after-abort"),
        "{e}"
    );
    c.close().await;
    let mut c = fi.connect().await;
    let e = score_err(
        &mut c,
        &m,
        Reveal::Decision,
        "again",
        Duration::from_secs(5),
    )
    .await;
    assert!(e.contains("no more"), "{e}");
    assert_eq!(requests(()), asked);
    // The operator decides to score it again: the flag goes, and a run works.
    let cleared = c.allow_after_abort().unwrap();
    assert_eq!(cleared, flags);
    assert!(fi.home.score_aborts().unwrap().is_empty());
    let r = decide(&mut c, &m, "allowed").await;
    assert!(matches!(r.outcome, ScoreOutcome::Decision { .. }));
    c.close().await;
    node.shutdown().await;
}

/// Issue 10, item 8: the FI's own run limit counts per applicant (the name it paired the owner under), not per
/// owner key: an owner that comes back with a new node key and a new invite gets no fresh runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fi_run_limit_counts_per_applicant_not_per_owner_key() {
    let (_owner, node, fi, mut c) = scoring_node("alice").await;
    let limit = duo::node::fi::ScoreLimit {
        max_runs: 1,
        window_days: 30,
    };
    let m = test_model(-1.0, 0.5, &[]);
    c.set_score_limit(limit);
    decide(&mut c, &m, "first").await;
    c.close().await;
    // The same applicant, paired again under the same name with another node (a new key).
    let other = duo_testkit::owner_with_sample(SCORING_POLICY);
    let other_node = other.start().await;
    duo_testkit::fi::pair(&other.dir, &other_node.url(), "alice", fi.dir.path())
        .await
        .unwrap();
    let mut c = fi.connect().await;
    c.set_score_limit(limit);
    let e = score_err(
        &mut c,
        &m,
        Reveal::Decision,
        "second",
        Duration::from_secs(5),
    )
    .await;
    assert!(e.contains("1 of 1 scoring runs for `owner`"), "{e}");
    c.close().await;
    other_node.shutdown().await;
    node.shutdown().await;
}

/// A model over every attribute added to the first six runs privately and gives the decision of the
/// fixed-point reference on the owner's values (each clamped to its public bounds): at a threshold equal to
/// the reference score it approves, just above it it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cash_flow_and_subscription_attributes_score_privately() {
    let (_owner, node, _fi, mut c) = scoring_node("acme").await;
    let model = |threshold: f64| {
        ModelFile::parse(&format!(
            "name = \"cash-flow\"\nbias = 0.5\nthreshold = {threshold}\n[weights]\n\
             utility_late_30d_count_12m = -0.5\nsubscription_paid_ratio_12m = 1.0\n\
             avg_daily_balance_12m = 0.0001\nnegative_balance_days_90d = -0.05\ninflow_90d = 0.0002\n\
             outflow_90d = -0.0001\nnet_cash_flow_90d = 0.0003\nincome_months_12m = 0.25\n\
             rent_to_income_ratio_12m = -2.0\naccount_age_months = 0.01\n\
             liquidity_buffer_days_3m = 0.02\n"
        ))
        .unwrap()
    };
    let base = model(0.0);
    assert_eq!(base.attributes().len(), 11);
    let values = owner_values(&mut c, &base).await;
    let reference = base
        .encode(Reveal::Decision)
        .unwrap()
        .model()
        .score_reference(&values)
        .unwrap();
    let score = duo_protocols::fixed::decode_score(reference.score);
    let at = decide(&mut c, &model(score), "cash-flow review").await;
    assert_eq!(at.outcome, ScoreOutcome::Decision { approve: true });
    let above = decide(&mut c, &model(score + 1e-6), "cash-flow review").await;
    assert_eq!(above.outcome, ScoreOutcome::Decision { approve: false });
    node.shutdown().await;
}

/// The owner's policy for the reasons test: plaintext catalogue releases (for the reference values) and
/// decisions with reasons approved, up to 20 bits in the window.
const REASONS_POLICY: &str = r#"
default = "ask"

[scoring]
max_runs = 5
window_days = 30
max_bits = 20

[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"

[[rule]]
name = "adverse-action"
backend = ["2pc"]
reveal = ["decision+reasons"]
action = "approve"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_names_its_reasons_to_both_sides_and_an_approval_none() {
    let owner = owner_with_sample(REASONS_POLICY);
    let node = owner.start().await;
    let fi = paired_fi(&owner, &node, "lender").await;
    let mut c = fi.connect().await;
    let reveal = Reveal::DecisionReasons { k: 2 };
    // A threshold no applicant reaches: a decline, whose reasons are the two attributes furthest below their
    // best contribution on the owner's values (the plaintext reference on the fixed-point values).
    let declined = test_model(-1.0, 1000.0, &[]);
    let values = owner_values(&mut c, &declined).await;
    let fim = declined.encode(reveal).unwrap();
    let x = fim.model().encode_attributes(&values).unwrap();
    let shortfalls = duo_protocols::fixed::shortfalls(fim.model(), &x);
    let attributes = declined.attributes();
    let want: Vec<String> = duo_protocols::fixed::worst_reasons(&shortfalls, 2)
        .into_iter()
        .map(|i| attributes[i].clone())
        .collect();
    let r = c
        .score(
            &declined,
            reveal,
            "adverse action notice",
            Duration::from_secs(5),
            &mut quiet(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        ScoreOutcome::DecisionReasons {
            approve: false,
            reasons: want.clone()
        }
    );
    // 2 of 3 attributes: 6 orders, 3 bits, and the decision.
    assert_eq!(r.bits, 4.0);
    // The FI's report gives each reason in plain words from the catalogue.
    let phrases: Vec<(String, String)> = r
        .reasons
        .iter()
        .map(|x| (x.attribute.clone(), x.reason.clone()))
        .collect();
    let catalogue: Vec<(String, String)> = want
        .iter()
        .map(|a| {
            let e = duo::engine::catalogue::entry(a).unwrap();
            (a.clone(), e.reason())
        })
        .collect();
    assert_eq!(phrases, catalogue);
    // The receipt signs the reasons.
    let answer: duo::engine::Answer = serde_json::from_str(&r.receipt.answer).unwrap();
    assert_eq!(
        answer,
        duo::engine::Answer::Vector {
            labels: vec!["decision".into(), "reason 1".into(), "reason 2".into()],
            values: vec![
                Value::Bool(false),
                Value::Str(want[0].clone()),
                Value::Str(want[1].clone())
            ],
        }
    );
    // The owner's log names them too.
    let o = owner.store();
    let entries = o.store().log_entries(0, 100_000).unwrap();
    let end = entries
        .iter()
        .rev()
        .find(|e| e.kind == "scoring-end")
        .expect("the run's end is logged");
    let body: serde_json::Value = serde_json::from_str(&end.body).unwrap();
    assert_eq!(
        body["outcome"],
        serde_json::json!({ "kind": "decision_reasons", "approve": false, "reasons": want })
    );

    // A threshold every applicant reaches: an approval, which names no reason anywhere.
    let approved = test_model(-1.0, -1000.0, &[]);
    let r = c
        .score(
            &approved,
            reveal,
            "adverse action notice",
            Duration::from_secs(5),
            &mut quiet(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        ScoreOutcome::DecisionReasons {
            approve: true,
            reasons: vec![]
        }
    );
    assert!(r.reasons.is_empty());
    let answer: duo::engine::Answer = serde_json::from_str(&r.receipt.answer).unwrap();
    assert_eq!(
        answer,
        duo::engine::Answer::Vector {
            labels: vec!["decision".into()],
            values: vec![Value::Bool(true)],
        }
    );
    c.close().await;
    node.shutdown().await;

    // An owner whose policy allows decisions only refuses reasons.
    let (_owner, node, _fi, mut c) = scoring_node("bank3").await;
    let e = score_err(
        &mut c,
        &declined,
        reveal,
        "adverse action notice",
        Duration::from_secs(2),
    )
    .await;
    assert!(
        e.contains("no rule of the owner's policy allows releasing them"),
        "{e}"
    );
    c.close().await;
    node.shutdown().await;
}

/// The owner's and the FI's OT-extension state at rest for this pairing: (id, next OT index) on the owner's
/// side, and the id the FI's file starts with (`None` when a side holds none).
fn ot_states(
    owner: &duo_testkit::OwnerNode,
    fi: &duo_testkit::Fi,
) -> (Option<(String, i64)>, Option<String>) {
    use rusqlite::OptionalExtension;
    let at_owner = owner
        .db()
        .query_row(
            "SELECT id, next_index FROM ot_states WHERE principal = 'acme'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .unwrap();
    let dir = fi.dir.path().join("ot");
    let at_fi = std::fs::read_dir(&dir).ok().and_then(|mut d| {
        let f = d.next()?.ok()?;
        let bytes = std::fs::read(f.path()).ok()?;
        Some(String::from_utf8_lossy(&bytes[..64]).into_owned())
    });
    (at_owner, at_fi)
}

/// Pairing makes the base OTs, and a finished run leaves its OT-extension state at rest on both sides, so the
/// first run, and the first run of a later session, skip them; a state one side no longer holds makes the next
/// run start anew on both, with a new state; revoking the pairing removes the owner's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_continue_the_ot_state_made_at_pairing_and_kept_at_rest() {
    let (owner, node, fi, mut c) = scoring_node("acme").await;
    let model = test_model(-1.0, 0.5, &[]);
    // Pairing made the base OTs: the same state on both sides, not extended yet.
    let (Some((id, 0)), Some(fi_id)) = ot_states(&owner, &fi) else {
        panic!("no state made at pairing: {:?}", ot_states(&owner, &fi))
    };
    assert_eq!(id, fi_id);
    // Asked again with a state kept: nothing to do.
    assert!(!c.prepare_ot().await.unwrap());
    let r1 = decide(&mut c, &model, "first").await;
    assert!(!r1.cold, "the state made at pairing was not continued");
    c.close().await;
    let (Some((id1, index)), Some(fi_id)) = ot_states(&owner, &fi) else {
        panic!("no state at rest after a run: {:?}", ot_states(&owner, &fi))
    };
    assert_eq!((&id1, &fi_id), (&id, &id));
    assert!(index > 0);
    // A new session: the first run continues from rest, and leaves the same state further on.
    let mut c = fi.connect().await;
    let r2 = decide(&mut c, &model, "second").await;
    assert!(!r2.cold, "the state at rest was not continued");
    assert_eq!(r2.outcome, r1.outcome);
    let (Some((id2, index2)), Some(fi_id2)) = ot_states(&owner, &fi) else {
        panic!("no state at rest after the second run")
    };
    assert_eq!((&id2, &fi_id2), (&id, &id));
    assert!(index2 > index, "{index2} after {index}");
    c.close().await;
    // The FI's copy is gone (lost, or removed by hand): the owner's alone is never continued.
    std::fs::remove_dir_all(fi.dir.path().join("ot")).unwrap();
    let mut c = fi.connect().await;
    let r3 = decide(&mut c, &model, "third").await;
    assert!(r3.cold);
    assert_eq!(r3.outcome, r1.outcome);
    assert!(
        r2.bytes.sent + r2.bytes.received < r3.bytes.sent + r3.bytes.received,
        "warm {:?} vs cold {:?}",
        r2.bytes,
        r3.bytes
    );
    let (Some((id3, _)), Some(fi_id3)) = ot_states(&owner, &fi) else {
        panic!("no state at rest after the third run")
    };
    assert_eq!(id3, fi_id3);
    assert_ne!(id3, id, "a run that started anew keeps a new state");
    c.close().await;
    owner.store().store_mut().revoke("acme").unwrap();
    assert_eq!(ot_states(&owner, &fi).0, None);
    node.shutdown().await;
}

/// The run-start re-check decides the request again from scratch: a reasons request approved by a rule that
/// listed `decision+reasons` does not run once that rule is gone (guarantee 9 of the policy), while a `rate`
/// on the approving rule does not count the request's own approval a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_refused_when_no_rule_now_allows_its_reveal_but_not_by_its_own_rate() {
    // At most one reasons release a month: the approval of the first request uses it up, and over the rate
    // the default decides, which never releases reasons.
    let limited = REASONS_POLICY.replace(
        "reveal = [\"decision+reasons\"]\naction = \"approve\"",
        "reveal = [\"decision+reasons\"]\nrate = { max = 1, per = \"30d\" }\naction = \"approve\"\n",
    );
    assert_ne!(limited, REASONS_POLICY);
    let owner = owner_with_sample(&limited);
    let node = owner.start().await;
    let fi = paired_fi(&owner, &node, "lender").await;
    let mut c = fi.connect().await;
    let reveal = Reveal::DecisionReasons { k: 1 };
    let m = test_model(-1.0, 1000.0, &[]);
    let first = c
        .ask_score(&m, reveal, "adverse action notice")
        .await
        .unwrap();
    assert_eq!(first.state, RequestState::Approved, "{:?}", first.why);
    // It runs: its own approval is not counted against the rate a second time.
    let r = c.score_run(first.id, &m, &mut quiet()).await.unwrap();
    assert!(matches!(
        r.outcome,
        ScoreOutcome::DecisionReasons { approve: false, .. }
    ));

    // The owner allows more by hand.
    let path = duo::node::owner::policy_path(&owner.dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let by_hand = "\n[[rule]]\nname = \"more-by-hand\"\nbackend = [\"2pc\"]\nreveal = [\"decision+reasons\"]\naction = \"ask\"\n";
    std::fs::write(&path, format!("{text}{by_hand}")).unwrap();
    let second = c
        .ask_score(&m, reveal, "adverse action notice")
        .await
        .unwrap();
    assert_eq!(second.state, RequestState::Pending, "{:?}", second.why);
    // The owner approves the second by hand, then removes the rules that allowed reasons.
    let mut o = open_store(&owner.dir);
    o.approve(second.id, None).unwrap();
    let path = duo::node::owner::policy_path(&owner.dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("[[rule]]\nname = \"adverse-action\"").unwrap();
    std::fs::write(&path, &text[..at]).unwrap();
    let e = c
        .score_run(second.id, &m, &mut quiet())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("reasons-release"), "{e}");
    // Refused before it started: one run counted, the refusal logged.
    let runs: i64 = owner
        .db()
        .query_row("SELECT COUNT(*) FROM scoring_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 1);
    assert!(log_kinds(&o).contains(&"scoring-refused".to_string()));
    c.close().await;
    node.shutdown().await;
}
