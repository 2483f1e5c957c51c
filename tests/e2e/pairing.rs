//! Pairing: good, wrong, reused, expired, burned and cancelled codes; unpaired keys; no takeover of a paired
//! principal through another invite.

use duo::node::fi::{self as client, Client, FiHome};
use duo::node::net::keys::Keypair;
use duo::node::owner;
use duo::node::store;
use duo::node::store::prelude::*;
use duo_testkit::policy::TEST_POLICY;
use duo_testkit::{connect, owner_with_sample, paired_fi};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_code_pairs_and_later_sessions_use_pinned_keys() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme Bank").await;
    let rec = fi.home.pairing(None).unwrap();
    assert_eq!(rec.principal, "Acme Bank");
    // A later session needs no code.
    let mut c = connect(&fi).await;
    assert_eq!(c.principal(), "Acme Bank");
    assert_eq!(c.datasets().await.unwrap().len(), 4);
    c.close().await;
    let pairings = o.db().pairings().unwrap();
    assert_eq!(pairings.len(), 1);
    assert_eq!(pairings[0].principal, "Acme Bank");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_reused_and_expired_codes_are_refused() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = FiHome::new(dir.path());

    // Wrong secret (same id and fingerprint): refused, and counted.
    let code = owner::invite(&o.dir, "Acme", Duration::from_secs(600)).unwrap();
    let good = code.to_string();
    let parts: Vec<&str> = good.split('-').collect();
    let mut secret: Vec<char> = parts[2].chars().collect();
    secret[0] = if secret[0] == 'a' { 'b' } else { 'a' };
    let bad = format!(
        "{}-{}-{}-{}",
        parts[0],
        parts[1],
        secret.iter().collect::<String>(),
        parts[3]
    );
    let err = client::pair(&home, &node.url(), &bad, "owner")
        .await
        .unwrap_err();
    assert!(home.pairings().unwrap().is_empty(), "{err}");
    // The attempt was counted before the handshake.
    let inv = o.db().invite(&code.id).unwrap().unwrap();
    assert_eq!(inv.attempts, 1);

    // The right code still works once ...
    client::pair(&home, &node.url(), &good, "owner")
        .await
        .unwrap();
    // ... and not twice.
    let other = tempfile::tempdir().unwrap();
    let err = client::pair(&FiHome::new(other.path()), &node.url(), &good, "owner")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invite"), "{err}");

    // Expired.
    let expired =
        duo::node::net::keys::InviteCode::generate(&owner::node_key(&o.dir).unwrap().public);
    o.store()
        .store_mut()
        .create_invite(
            &expired.id,
            "Late",
            &expired.psk(),
            store::now_unix() - 5,
            owner::DEFAULT_PAIRING,
        )
        .unwrap();
    let err = client::pair(
        &FiHome::new(other.path()),
        &node.url(),
        &expired.to_string(),
        "owner",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_burned_after_repeated_failures() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let code = owner::invite(&o.dir, "Acme", Duration::from_secs(600)).unwrap();
    let good = code.to_string();
    let parts: Vec<&str> = good.split('-').collect();
    let bad = format!(
        "{}-{}-{}-{}",
        parts[0],
        parts[1],
        "a".repeat(parts[2].len()),
        parts[3]
    );
    let dir = tempfile::tempdir().unwrap();
    let home = FiHome::new(dir.path());
    for _ in 0..store::MAX_INVITE_ATTEMPTS {
        assert!(client::pair(&home, &node.url(), &bad, "owner")
            .await
            .is_err());
    }
    let err = client::pair(&home, &node.url(), &good, "owner")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("burned"), "{err}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaired_keys_and_wrong_owner_keys_are_refused() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fp = duo::node::net::keys::fingerprint(&owner::node_key(&o.dir).unwrap().public);
    // A key the owner never paired.
    let stranger = Keypair::generate();
    let err = Client::connect_with(&node.url(), &stranger, &fp)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not paired"), "{err}");
    // A paired FI that pinned a different owner key does not talk to this node.
    let fi = paired_fi(&o, &node, "Acme").await;
    let key = fi.home.key().unwrap();
    let other_fp = duo::node::net::keys::fingerprint(&Keypair::generate().public);
    let err = Client::connect_with(&node.url(), &key, &other_fp)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_principal_is_cut_off_mid_session_and_cannot_reconnect() {
    use duo::policies::Backend;
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let other = paired_fi(&o, &node, "Beta").await;
    let mut c = connect(&fi).await;
    let mut b = connect(&other).await;
    let p = c.expr("max(rent.amount)").await.unwrap();
    let pending = c.request(&p, Backend::Plaintext, "max").await.unwrap();
    // The owner revokes from "another process" while the session is open.
    let cancelled = o.store().store_mut().revoke("Acme").unwrap();
    assert_eq!(cancelled.requests, vec![pending.id]);
    // The open session is closed by the node: the next call fails.
    let mut cut = false;
    for _ in 0..50 {
        if c.catalogue().await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cut, "the revoked session kept working");
    // It cannot reconnect.
    let err = Client::connect(&fi.home, None).await.unwrap_err();
    assert!(err.to_string().contains("not paired"), "{err}");
    // Others are unaffected.
    assert_eq!(b.datasets().await.unwrap().len(), 4);
    // The cancelled request is recorded as denied, with the reason, and the log verifies.
    let v = o.store().request_view("Acme", pending.id).unwrap();
    assert_eq!(v.state, duo::node::proto::request::RequestState::Denied);
    assert!(v.why.unwrap().contains("revoked"));
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    // A new invite pairs it again, with a new key, as the same principal.
    let again = paired_fi(&o, &node, "Acme").await;
    assert_eq!(connect(&again).await.principal(), "Acme");
    let list = o.db().pairings().unwrap();
    assert!(list
        .iter()
        .any(|p| p.principal == "Acme" && p.state == "active"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_pairing_is_refused() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    o.db()
        .execute(
            "UPDATE pairings SET expires_at = ?1",
            [store::now_unix() - 1],
        )
        .unwrap();
    let err = Client::connect(&fi.home, None).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let list = o.db().pairings().unwrap();
    assert_eq!(list[0].state, "expired");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_made_before_a_revoke_does_not_pair_after_it() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    // A pairing that lasts a second runs out (an expiry edited in the store would be found by the log check);
    // the owner makes an invite to renew it, then revokes the FI instead.
    let fi_dir = tempfile::tempdir().unwrap();
    let short = owner::invite_for(&o.dir, "Acme Bank", TTL, Duration::from_secs(1)).unwrap();
    client::pair(
        &FiHome::new(fi_dir.path()),
        &node.url(),
        &short.to_string(),
        "owner",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let renewal = owner::invite(&o.dir, "Acme Bank", TTL).unwrap();
    o.store().store_mut().revoke("Acme Bank").unwrap();
    // Whoever holds the renewal code cannot pair as Acme Bank any more.
    let dir = tempfile::tempdir().unwrap();
    let holder = FiHome::new(dir.path());
    let paired = client::pair(&holder, &node.url(), &renewal.to_string(), "owner").await;
    let err = match paired {
        Ok(rec) => panic!(
            "an invite made before the revoke paired after it, as `{}`",
            rec.principal
        ),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cancelled"), "{err}");
    let list = o.db().pairings().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, "revoked");
    let problems = o.db().verify_log().unwrap().problems;
    assert!(problems.is_empty(), "{problems:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_invite_cannot_take_over_a_paired_fi() {
    use duo::node::proto::request::RequestState;
    use duo::policies::Backend;
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    // Two codes for Acme Bank (the first one seemed lost); the real FI pairs with the first and gets an answer.
    let first = owner::invite(&o.dir, "Acme Bank", TTL).unwrap();
    let spare = owner::invite(&o.dir, "Acme Bank", TTL).unwrap();
    let real_dir = tempfile::tempdir().unwrap();
    let real = FiHome::new(real_dir.path());
    client::pair(&real, &node.url(), &first.to_string(), "owner")
        .await
        .unwrap();
    let mut c = Client::connect(&real, None).await.unwrap();
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let answered = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    assert_eq!(answered.state, RequestState::Approved, "{answered:?}");
    c.close().await;
    // Whoever holds the spare code cannot replace Acme Bank's key and read its answers.
    let thief_dir = tempfile::tempdir().unwrap();
    let thief = FiHome::new(thief_dir.path());
    match client::pair(&thief, &node.url(), &spare.to_string(), "owner").await {
        Ok(rec) => {
            let mut t = Client::connect(&thief, None).await.unwrap();
            let stolen = t
                .status(answered.id, Duration::ZERO)
                .await
                .map(|v| v.answer);
            let real_now = Client::connect(&real, None).await.map(|_| ());
            panic!(
                "the spare code paired as `{}`; it read request {}: {stolen:?}; the real FI now gets {real_now:?}",
                rec.principal, answered.id
            );
        }
        Err(e) => assert!(e.to_string().contains("cancelled"), "{e}"),
    }
    // The real FI keeps its pairing.
    let mut again = Client::connect(&real, None).await.unwrap();
    assert_eq!(again.principal(), "Acme Bank");
    assert_eq!(again.datasets().await.unwrap().len(), 4);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_for_a_paired_fi_is_refused_unless_it_re_keys() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let real = paired_fi(&o, &node, "Acme Bank").await;
    match owner::invite(&o.dir, "Acme Bank", TTL) {
        Ok(code) => {
            let dir = tempfile::tempdir().unwrap();
            let other = FiHome::new(dir.path());
            let paired = client::pair(&other, &node.url(), &code.to_string(), "owner")
                .await
                .map(|r| r.principal);
            let real_now = Client::connect(&real.home, None).await.map(|_| ());
            panic!(
                "an invite for the paired `Acme Bank` was made without re-keying; it paired: {paired:?}; \
                 the real FI now gets {real_now:?}"
            );
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("already paired"), "{e}");
            assert!(e.contains("re-key"), "{e}");
        }
    }
    assert!(
        o.db()
            .query_row(
                "SELECT COUNT(*) FROM invites WHERE state = 'open'",
                [],
                |r| r.get::<_, i64>(0)
            )
            .unwrap()
            == 0
    );
    assert_eq!(connect(&real).await.principal(), "Acme Bank");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_keying_replaces_the_key_and_tells_the_old_one() {
    use duo::node::proto::request::RequestState;
    use duo::policies::Backend;
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let old = paired_fi(&o, &node, "Acme Bank").await;
    let mut c = connect(&old).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let answered = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    assert_eq!(answered.state, RequestState::Approved, "{answered:?}");
    let old_fp = o.db().pairings().unwrap()[0].fingerprint.clone();
    // The owner re-keys Acme Bank explicitly; the FI pairs a new key with that code.
    let code = owner::rekey_invite(&o.dir, "Acme Bank", TTL, owner::DEFAULT_PAIRING).unwrap();
    let open = o.db().open_invites().unwrap();
    assert_eq!(open.len(), 1);
    assert!(open[0].rekey);
    let new_dir = tempfile::tempdir().unwrap();
    let new = FiHome::new(new_dir.path());
    let rec = client::pair(&new, &node.url(), &code.to_string(), "owner")
        .await
        .unwrap();
    assert_eq!(rec.principal, "Acme Bank");
    // The old key's open session is closed ...
    let mut cut = None;
    for _ in 0..50 {
        if let Err(e) = c.catalogue().await {
            cut = Some(e.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cut = cut.expect("the replaced key's session kept working");
    assert!(cut.contains("re-keyed") || cut.contains("closed"), "{cut}");
    // ... and a new session with it is refused, saying the key was replaced.
    let err = Client::connect(&old.home, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown_key"), "{err}");
    assert!(err.contains("replaced by a newer key"), "{err}");
    // The new key inherits the pairing's history.
    let mut n = Client::connect(&new, None).await.unwrap();
    assert_eq!(n.principal(), "Acme Bank");
    let seen = n.status(answered.id, Duration::ZERO).await.unwrap();
    assert_eq!(seen.answer, answered.answer);
    // The log records the replacement.
    let paired: Vec<_> = o
        .db()
        .log_entries(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "paired")
        .collect();
    assert_eq!(paired.len(), 2);
    let body: serde_json::Value = serde_json::from_str(&paired[1].body).unwrap();
    assert_eq!(body["rekey"], true);
    assert_eq!(body["replaced_fi_key_fingerprint"], old_fp.as_str());
    assert!(o.db().verify_log().unwrap().problems.is_empty());
    assert!(o.db().open_invites().unwrap().is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_key_invite_made_before_a_revoke_does_not_pair_after_it() {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme Bank").await;
    let code = owner::rekey_invite(&o.dir, "Acme Bank", TTL, owner::DEFAULT_PAIRING).unwrap();
    let revoked = o.store().store_mut().revoke("Acme Bank").unwrap();
    assert_eq!(revoked.invites, [code.id.as_str()]);
    let dir = tempfile::tempdir().unwrap();
    let err = client::pair(
        &FiHome::new(dir.path()),
        &node.url(),
        &code.to_string(),
        "owner",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("cancelled"), "{err}");
    // The revoked key is told it is not paired (it was revoked, not replaced).
    let err = Client::connect(&fi.home, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not paired"), "{err}");
    node.shutdown().await;
}
