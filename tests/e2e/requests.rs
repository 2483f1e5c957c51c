//! Requests: auto-approval, owner approval and denial, re-asking, waiting, quotas and stale approvals.

use duo::engine::{Answer, Value};
use duo::node::proto::request::RequestState;
use duo::policies::Backend;
use duo_testkit::policy::TEST_POLICY;
use duo_testkit::{connect, owner_with_sample, paired_fi};
use std::time::Duration;

fn scalar(a: &Option<Answer>) -> Value {
    match a {
        Some(Answer::Scalar { value }) => value.clone(),
        other => panic!("expected a scalar answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_attribute_is_auto_approved_once_then_answered_from_store() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    assert_eq!(v.decided_by.as_deref(), Some("policy"));
    let Value::Float(ratio) = scalar(&v.answer) else {
        panic!("{v:?}")
    };
    assert!((0.0..=1.0).contains(&ratio));
    // The same question again: the stored answer, decided by the store, no new release.
    let again = c.request(&p, Backend::Plaintext, "retry").await.unwrap();
    assert_eq!(again.decided_by.as_deref(), Some("store"));
    assert_eq!(again.answer, v.answer);
    assert_ne!(again.id, v.id);
    let releases: i64 = o
        .db()
        .query_row("SELECT COUNT(*) FROM log WHERE kind = 'release'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(releases, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_request_waits_for_owner_and_a_waiting_fi_hears_promptly() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("mean(clamp(rent.amount, 0, 300000))").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "affordability")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Pending);
    // Waiting with a short timeout returns pending.
    let w = c.status(v.id, Duration::from_millis(300)).await.unwrap();
    assert_eq!(w.state, RequestState::Pending);
    // The owner sees the exact value, then approves from "another process" while the FI waits.
    let id = v.id;
    let waiter = tokio::spawn(async move { c.status(id, Duration::from_secs(60)).await });
    let mut owner = o.store();
    let view = owner.pending_view(id).unwrap();
    let shown = view.value.clone().unwrap();
    let approved = tokio::task::spawn_blocking(move || owner.approve(id, Some(&view.token)))
        .await
        .unwrap()
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiting FI heard of the decision")
        .unwrap()
        .unwrap();
    assert_eq!(got.state, RequestState::Approved);
    assert_eq!(got.answer.as_ref(), Some(&shown));
    assert_eq!(got.answer, approved.answer);
    // The mean rent of the sample is a plausible monthly rent in cents.
    let Value::Float(mean) = scalar(&got.answer) else {
        panic!()
    };
    assert!((50_000.0..=300_000.0).contains(&mean), "{mean}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_denial_reaches_the_fi_which_may_ask_again() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("sum(utilities.amount)").await.unwrap();
    let v = c.request(&p, Backend::Plaintext, "bills").await.unwrap();
    assert_eq!(v.state, RequestState::Pending);
    let denied = o.store().deny(v.id, "not this month").unwrap();
    assert_eq!(denied.state, RequestState::Denied);
    let seen = c.status(v.id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(seen.state, RequestState::Denied);
    assert_eq!(seen.why.as_deref(), Some("not this month"));
    assert!(seen.answer.is_none());
    // Asking again makes a new request that the owner decides afresh.
    let again = c
        .request(&p, Backend::Plaintext, "bills, second try")
        .await
        .unwrap();
    assert_eq!(again.state, RequestState::Pending);
    assert_ne!(again.id, v.id);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_denies_row_level_and_listed_datasets() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent.amount").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "everything")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Denied);
    assert!(v.why.as_deref().unwrap().contains("row-level"), "{v:?}");
    let p = c.expr("count(subscriptions)").await.unwrap();
    let v = c.request(&p, Backend::Plaintext, "subs").await.unwrap();
    assert_eq!(v.state, RequestState::Denied);
    assert_eq!(v.why.as_deref(), Some("subscriptions are private"));
    // Nothing was released.
    let releases: i64 = o
        .db()
        .query_row(
            "SELECT COUNT(*) FROM requests WHERE answer IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(releases, 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_api_builds_lineage_without_computing() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let rent = c.dataset("rent").await.unwrap();
    let recent = c.last_months(&rent, 12).await.unwrap();
    let amount = c.column(&recent, "amount").await.unwrap();
    let mean = c.mean(&amount).await.unwrap();
    assert!(mean.description.contains("mean"), "{}", mean.description);
    assert!(mean.description.contains("rent"), "{}", mean.description);
    // Type errors come back at once, from the metadata alone.
    let err = c.column(&rent, "no_such_column").await.unwrap_err();
    assert!(err.to_string().contains("no_such_column"), "{err}");
    let err = c.expr("mean(rent.due_date)").await.unwrap_err();
    assert!(err.to_string().contains("type"), "{err}");
    // No request was made by building pointers.
    let n: i64 = o
        .db()
        .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_fails_with_fresh_facts_when_state_changed() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("max(rent.amount)").await.unwrap();
    let v = c.request(&p, Backend::Plaintext, "max rent").await.unwrap();
    let owner = o.store();
    let seen = owner.pending_view(v.id).unwrap();
    // The policy changes after the owner looked.
    let path = duo::node::owner::policy_path(&o.dir);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n# edited\n")).unwrap();
    let mut owner = o.store();
    match owner.approve(v.id, Some(&seen.token)) {
        Err(duo::node::Error::Stale { token, .. }) => assert_ne!(token, seen.token),
        other => panic!("expected a stale approval, got {other:?}"),
    }
    // A policy that now denies blocks the approval even with the fresh token.
    std::fs::write(
        &path,
        "default = \"ask\"\n[[rule]]\nname = \"rent-closed\"\ndatasets = [\"rent\"]\naction = \"deny\"\nreason = \"closed\"\n",
    )
    .unwrap();
    let fresh = owner.pending_view(v.id).unwrap();
    let err = owner.approve(v.id, Some(&fresh.token)).unwrap_err();
    assert!(err.to_string().contains("now denies"), "{err}");
    assert_eq!(
        c.status(v.id, Duration::ZERO).await.unwrap().state,
        RequestState::Pending
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_on_lineage_size_are_checked_statically() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let mut src = "rent.amount".to_string();
    for _ in 0..80 {
        src = format!("clamp({src}, 0, 300000)");
    }
    let err = c.expr(&format!("mean({src})")).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    // The session goes on.
    assert!(c.catalogue().await.unwrap().len() >= 12);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seen_token_approves_only_the_request_it_was_shown_for() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let acme = paired_fi(&o, &node, "Acme").await;
    let beta = paired_fi(&o, &node, "Beta").await;
    let mut a = connect(&acme).await;
    let mut b = connect(&beta).await;
    // The same question with the same value from two FIs.
    let pa = a.expr("max(rent.amount)").await.unwrap();
    let ra = a.request(&pa, Backend::Plaintext, "same").await.unwrap();
    let pb = b.expr("max(rent.amount)").await.unwrap();
    let rb = b.request(&pb, Backend::Plaintext, "same").await.unwrap();
    // Each FI numbers its own requests: both are request 1 to their FI; the owner goes by the node's ids.
    assert_eq!((ra.id, rb.id), (1, 1));
    let mut owner = o.store();
    let [id_a, id_b] = owner.pending_ids().unwrap()[..] else {
        panic!("two pending requests")
    };
    let shown_a = owner.pending_view(id_a).unwrap();
    let shown_b = owner.pending_view(id_b).unwrap();
    assert_eq!(
        (shown_a.principal.as_str(), shown_b.principal.as_str()),
        ("Acme", "Beta")
    );
    assert_eq!(shown_a.value, shown_b.value);
    assert_ne!(shown_a.token, shown_b.token);
    assert!(matches!(
        owner.approve(id_b, Some(&shown_a.token)),
        Err(duo::node::Error::Stale { .. })
    ));
    owner.approve(id_b, Some(&shown_b.token)).unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_references_cannot_multiply_past_the_lineage_quota() {
    use duo::engine::{ArithOp, Expr};
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    // A pointer of 40 nodes, then an expression referring to it twice: 80 nodes once expanded.
    let mut src = "rent.amount".to_string();
    for _ in 0..37 {
        src = format!("clamp({src}, 0, 300000)");
    }
    let big = c.expr(&format!("mean({src})")).await.unwrap();
    let twice = Expr::Arith {
        op: ArithOp::Add,
        left: Box::new(Expr::Ptr { id: big.id }),
        right: Box::new(Expr::Ptr { id: big.id }),
    };
    let err = c.pointer(twice).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    // Literal-only expressions read nothing and are not releasable.
    let p = c.expr("1 + 2").await;
    if let Ok(p) = p {
        let err = c
            .request(&p, Backend::Plaintext, "nothing")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reads no data"), "{err}");
    }
    node.shutdown().await;
}

/// A plaintext request that also carries DP parameters (a hand-made message; the client never sends one) is a
/// plaintext request: the parameters are ignored, nothing is priced, and the owner sees the exact value to
/// approve, as for any plaintext request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_parameters_on_a_plaintext_request_are_ignored() {
    use duo::node::proto::request::DpParams;
    use duo::node::proto::{ClientMsg, ServerMsg};
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("sum(utilities.amount)").await.unwrap();
    let reply = c
        .call(&ClientMsg::Request {
            pointer: p.id,
            backend: Backend::Plaintext,
            reason: "bills".into(),
            dp: Some(DpParams {
                epsilon: Some(0.5),
                ..DpParams::default()
            }),
        })
        .await
        .unwrap();
    let ServerMsg::Request(v) = reply else {
        panic!("expected a request view, got {reply:?}");
    };
    assert_eq!(v.state, RequestState::Pending, "{v:?}");
    assert_eq!((v.cost.as_deref(), v.accuracy95), (None, None));
    let mut owner = o.store();
    let seen = owner.pending_view(v.id).unwrap();
    assert!(seen.dp.is_none(), "{:?}", seen.dp);
    assert!(seen.value.is_ok(), "{:?}", seen.value);
    let released = owner.approve(v.id, Some(&seen.token)).unwrap();
    assert_eq!(released.state, RequestState::Approved);
    assert_eq!(released.answer, seen.value.ok());
    node.shutdown().await;
}

/// Text from the FI cannot fool the owner: a reason that carries a right-to-left override, an isolate and
/// zero-width characters reaches the owner's screen with those characters shown as `<U+XXXX>`, never as they
/// are. (A string in a lineage must be a published category, so it cannot carry them; the lineage's source
/// escapes them anyway, see `duo_engine::parse::to_source`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_and_zero_width_text_from_the_fi_is_neutralized_for_the_owner() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c
        .expr("count(filter(transactions, category == \"income\"))")
        .await
        .unwrap();
    let reason = "affordability \u{202E}devorppa ydaerla\u{202C}\u{2066} check\u{200B}";
    let v = c.request(&p, Backend::Plaintext, reason).await.unwrap();
    assert_eq!(v.state, RequestState::Pending, "{v:?}");
    let seen = o.store().pending_view(v.id).unwrap();
    for text in [&seen.reason, &seen.description, &seen.source] {
        assert!(
            !text.chars().any(duo::engine::text::is_hidden),
            "hidden characters reach the owner: {text:?}"
        );
    }
    assert!(seen.reason.contains("<U+202E>"), "{}", seen.reason);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fi_numbers_its_own_requests_and_learns_nothing_of_the_others() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let acme = paired_fi(&o, &node, "Acme").await;
    let beta = paired_fi(&o, &node, "Beta").await;
    let mut a = connect(&acme).await;
    let mut b = connect(&beta).await;
    let ratio_a = a.expr("rent_on_time_ratio_12m()").await.unwrap();
    let min_a = a.expr("min(rent.amount)").await.unwrap();
    let ratio_b = b.expr("rent_on_time_ratio_12m()").await.unwrap();
    let max_b = b.expr("max(rent.amount)").await.unwrap();
    // Interleaved: Acme, Beta, Acme, Beta, Acme (the node's own ids run 1 to 5).
    let a1 = a.request(&ratio_a, Backend::Plaintext, "a1").await.unwrap();
    let b1 = b.request(&max_b, Backend::Plaintext, "b1").await.unwrap();
    let a2 = a.request(&min_a, Backend::Plaintext, "a2").await.unwrap();
    let b2 = b.request(&ratio_b, Backend::Plaintext, "b2").await.unwrap();
    let a3 = a.request(&ratio_a, Backend::Plaintext, "a3").await.unwrap();
    assert_eq!([a1.id, a2.id, a3.id], [1, 2, 3]);
    assert_eq!([b1.id, b2.id], [1, 2]);
    // Receipts and the words of a repeat name the FI's own numbers too.
    assert_eq!(a1.receipt.as_ref().unwrap().request, 1);
    assert_eq!(b2.receipt.as_ref().unwrap().request, 2);
    assert_eq!(a3.decided_by.as_deref(), Some("store"));
    assert_eq!(
        a3.why.as_deref(),
        Some("same question as request 1; stored answer given again")
    );
    assert_eq!(a3.receipt.as_ref().unwrap().request, 3);
    // Each FI's number 1 is its own request; Beta has no request 3 (Acme's third is not Beta's to see).
    assert_eq!(b.status(1, Duration::ZERO).await.unwrap().reason, "b1");
    assert_eq!(a.status(1, Duration::ZERO).await.unwrap().reason, "a1");
    let e = b.status(3, Duration::ZERO).await.unwrap_err().to_string();
    assert!(e.contains("not_found") && e.contains("request 3"), "{e}");
    // The owner approves by the node's id, and sees each FI's own number beside it.
    let mut owner = o.store();
    let pending = owner.pending_ids().unwrap();
    assert_eq!(pending, [2, 3]);
    let seen: Vec<(String, u64)> = pending
        .iter()
        .map(|id| {
            let v = owner.pending_view(*id).unwrap();
            (v.principal, v.fi_request)
        })
        .collect();
    assert_eq!(seen, [("Beta".to_string(), 1), ("Acme".to_string(), 2)]);
    let approved = owner.approve(3, None).unwrap();
    assert_eq!(approved.id, 3);
    let a2 = a.status(2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(a2.state, RequestState::Approved);
    assert_eq!(a2.receipt.as_ref().unwrap().request, 2);
    let problems = duo::node::store::Log::verify_log(owner.store())
        .unwrap()
        .problems;
    assert!(problems.is_empty(), "{problems:?}");
    // The FIs keep their receipts by their own numbers.
    let kept: Vec<u64> = acme
        .home
        .receipts()
        .unwrap()
        .iter()
        .map(|e| e.receipt.request)
        .collect();
    assert_eq!(kept, [1, 3, 2]);
    node.shutdown().await;
}

/// A plaintext batch is never approved without the owner, even of attributes each of which the policy would
/// approve alone (it would count as one release of several exact answers); and a question the policy denies
/// alone denies the batch that holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_batch_goes_to_the_owner_and_a_denied_question_denies_it() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let attrs = c
        .expr("batch(rent_on_time_ratio_12m(), utility_on_time_ratio_12m())")
        .await
        .unwrap();
    let v = c
        .request(&attrs, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Pending, "{v:?}");
    assert!(
        v.why.as_deref().unwrap().contains("several exact answers"),
        "{v:?}"
    );
    assert!(v.answer.is_none());
    // `no-subscriptions` denies a question about subscriptions, alone or in a batch.
    let p = c
        .expr("batch(rent_on_time_ratio_12m(), count(subscriptions))")
        .await
        .unwrap();
    let w = c.request(&p, Backend::Plaintext, "more").await.unwrap();
    assert_eq!(w.state, RequestState::Denied, "{w:?}");
    assert!(
        w.why
            .as_deref()
            .unwrap()
            .contains("subscriptions are private"),
        "{w:?}"
    );
    // The owner approves the first batch: both answers, each the attribute's own value.
    let mut owner = o.store();
    let seen = owner.pending_view(v.id).unwrap();
    owner.approve(v.id, Some(&seen.token)).unwrap();
    let done = c.status(v.id, Duration::ZERO).await.unwrap();
    let Some(Answer::Batch { items }) = &done.answer else {
        panic!("{done:?}")
    };
    assert_eq!(items.len(), 2);
    assert!(
        matches!(items[0], Answer::Scalar { value: Value::Float(r) } if (0.0..=1.0).contains(&r))
    );
    node.shutdown().await;
}
