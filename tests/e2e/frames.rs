//! Hostile frames: malformed, unknown, oversized; the node answers or closes, and keeps serving others.

use duo::node::net::transport::{self, Limits, Mode};
use duo::node::owner;
use duo::node::proto::{self as wire, ServerMsg};
use duo_testkit::policy::{ASK_ALL, TEST_POLICY};
use duo_testkit::{connect, owner_with_sample, paired_fi, Fi, OwnerNode};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Channel = transport::SecureChannel<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A session driven by hand; `limits` lets the client send more than the node accepts.
async fn raw_session(o: &OwnerNode, url: &str, fi: &Fi, limits: &Limits) -> Channel {
    let fp = duo::node::net::keys::fingerprint(&owner::node_key(&o.dir).unwrap().public);
    let key = fi.home.key().unwrap();
    let mut chan = transport::connect(url, &key, Mode::Session, None, &fp, limits)
        .await
        .unwrap();
    // The welcome.
    let first = chan.recv().await.unwrap().unwrap();
    assert!(matches!(
        wire::decode_server(&first).unwrap().1,
        ServerMsg::Welcome { .. }
    ));
    chan
}

fn error_code(bytes: &[u8]) -> (u64, String) {
    match wire::decode_server(bytes).unwrap() {
        (id, ServerMsg::Error { code, .. }) => (id, code),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_messages_get_error_replies() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut chan = raw_session(&o, &node.url(), &fi, &Limits::default()).await;
    let cases: [(&[u8], &str); 9] = [
        (b"not json at all", "malformed"),
        (br#"{"v":1,"id":3,"body":{"type":"drop_everything"}}"#, "unknown_type"),
        (br#"{"v":2,"id":4,"body":{"type":"list_datasets"}}"#, "unsupported_version"),
        (br#"{"v":1,"id":5,"body":{"type":"request","pointer":99,"backend":"plaintext","reason":"x"}}"#, "not_found"),
        (br#"{"v":1,"id":6,"body":{"type":"request","pointer":0,"backend":"carrier_pigeon","reason":"x"}}"#, "malformed"),
        // Unknown fields are refused at every depth, beside a bare type too.
        (br#"{"v":1,"id":8,"body":{"type":"list_datasets","limit":1}}"#, "malformed"),
        (br#"{"v":1,"id":9,"body":{"type":"pointer","expr":{"node":"dataset","name":"rent","where":"1=1"}}}"#, "malformed"),
        // A `score_abort` with no run in progress gets its one reply.
        (br#"{"v":1,"id":10,"body":{"type":"score_abort","reason":"late"}}"#, "no_run"),
        // A message whose id cannot be read is not acted on.
        (br#"{"v":1,"body":{"type":"list_datasets"}}"#, "malformed"),
    ];
    for (bytes, code) in cases {
        chan.send(bytes).await.unwrap();
        let reply = chan.recv().await.unwrap().unwrap();
        let (id, got) = error_code(&reply);
        assert_eq!(got, code, "for {}", String::from_utf8_lossy(bytes));
        // The reply carries the message's id when it could be read (0 otherwise).
        let sent: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        let sent_id = sent
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        assert_eq!(id, sent_id, "for {}", String::from_utf8_lossy(bytes));
    }
    // The session still works.
    chan.send(&wire::encode(7, &wire::ClientMsg::ListCatalogue {}))
        .await
        .unwrap();
    let reply = chan.recv().await.unwrap().unwrap();
    assert!(matches!(
        wire::decode_server(&reply).unwrap(),
        (7, ServerMsg::Catalogue { .. })
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_only_that_session() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let generous = Limits {
        max_message: 8 << 20,
        ..Limits::default()
    };
    let mut bad = raw_session(&o, &node.url(), &fi, &generous).await;
    let mut good = connect(&fi).await;
    // Over the message limit (1 MiB): the node drops this session without buffering it all.
    let huge = vec![b' '; Limits::default().max_message + 10];
    let _ = bad.send(&huge).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(60), bad.recv())
        .await
        .expect("the node closed the session");
    assert!(matches!(closed, Ok(None) | Err(_)), "{closed:?}");
    // Another session is unaffected.
    assert_eq!(good.datasets().await.unwrap().len(), 4);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_the_handshake_is_refused_cleanly() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    // A text frame instead of a hello.
    let (mut ws, _) = tokio_tungstenite::connect_async(node.url()).await.unwrap();
    ws.send(Message::Text("GET /rows HTTP/1.1".into()))
        .await
        .unwrap();
    let mut saw_error_or_close = false;
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Text(t)) if t.contains("error") => saw_error_or_close = true,
            Ok(Message::Binary(b)) if String::from_utf8_lossy(&b).contains("error") => {
                saw_error_or_close = true
            }
            Ok(Message::Close(_)) | Err(_) => {
                saw_error_or_close = true;
                break;
            }
            _ => {}
        }
    }
    assert!(saw_error_or_close);
    // A frame larger than the frame limit.
    let (mut ws, _) = tokio_tungstenite::connect_async(node.url()).await.unwrap();
    let _ = ws.send(Message::Binary(vec![0u8; 200_000])).await;
    let next = ws.next().await;
    assert!(
        !matches!(next, Some(Ok(Message::Binary(_)))),
        "an oversized frame got a handshake reply: {next:?}"
    );
    // The node still pairs and serves.
    let fi = paired_fi(&o, &node, "Acme").await;
    assert!(connect(&fi).await.catalogue().await.unwrap().len() >= 12);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_quota_per_session() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start_with(|cfg| cfg.max_pointers = 5).await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    for _ in 0..5 {
        c.dataset("rent").await.unwrap();
    }
    let err = c.dataset("rent").await.unwrap_err();
    assert!(err.to_string().contains("quota"), "{err}");
    // A new session starts with a fresh quota.
    let mut c2 = connect(&fi).await;
    c2.dataset("rent").await.unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_message_limit_becomes_an_error_not_a_broken_session() {
    let o = owner_with_sample(ASK_ALL);
    let node = o.start_with(|cfg| cfg.limits.max_message = 16 * 1024).await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    // An owner-approved row-level release of every transaction amount: far over 16 KiB as JSON.
    let p = c.expr("transactions.amount").await.unwrap();
    let v = c
        .request(&p, duo::policies::Backend::Plaintext, "all amounts")
        .await
        .unwrap();
    o.store().approve(v.id, None).unwrap();
    let err = c.status(v.id, std::time::Duration::ZERO).await.unwrap_err();
    assert!(err.to_string().contains("too_large"), "{err}");
    // The session goes on.
    assert!(c.catalogue().await.unwrap().len() >= 12);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_principal_limits_trigger_and_others_keep_being_served() {
    use duo::node::owner::PrincipalLimits;
    use duo::policies::Backend;
    let o = owner_with_sample(ASK_ALL);
    let node = o
        .start_with(|cfg| {
            cfg.principal_limits = PrincipalLimits {
                max_sessions: 2,
                max_pending: 2,
                requests_per_hour: 4,
                views_per_hour: 3,
            }
        })
        .await;
    let acme = paired_fi(&o, &node, "Acme").await;
    let beta = paired_fi(&o, &node, "Beta").await;

    // Sessions.
    let mut a1 = connect(&acme).await;
    let _a2 = connect(&acme).await;
    let err = duo::node::fi::Client::connect(&acme.home, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let mut b = connect(&beta).await;

    // Pending requests: two wait for the owner, the third is refused.
    let p = a1.expr("count(rent)").await.unwrap();
    a1.request(&p, Backend::Plaintext, "1").await.unwrap();
    let p2 = a1.expr("count(utilities)").await.unwrap();
    a1.request(&p2, Backend::Plaintext, "2").await.unwrap();
    let p3 = a1.expr("count(transactions)").await.unwrap();
    let err = a1.request(&p3, Backend::Plaintext, "3").await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    // Requests per hour: the fourth request counted; the fifth is refused whatever it is.
    let err = a1.request(&p3, Backend::Plaintext, "4").await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let err = a1.request(&p3, Backend::Plaintext, "5").await.unwrap_err();
    assert!(err.to_string().contains("too many requests"), "{err}");

    // Metadata views.
    for _ in 0..3 {
        a1.datasets().await.unwrap();
    }
    let err = a1.datasets().await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");

    // Beta is unaffected by all of it.
    assert_eq!(b.datasets().await.unwrap().len(), 4);
    let p = b.expr("count(rent)").await.unwrap();
    assert_eq!(
        b.request(&p, Backend::Plaintext, "b").await.unwrap().state,
        duo::node::proto::request::RequestState::Pending
    );
    // The limits were logged.
    let n: i64 = o
        .db()
        .query_row(
            "SELECT COUNT(*) FROM log WHERE kind = 'limit_exceeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(n >= 3, "{n}");
    node.shutdown().await;
}
