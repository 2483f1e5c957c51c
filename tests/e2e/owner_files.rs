//! The owner's own files: a policy file that is missing, broken or writable by others, and key files writable
//! by others. The FI learns only that the policy is unavailable (never the owner's text, paths or parse
//! errors), the owner's log records every refusal, and the node will not trust a file another user can write.

use duo::node::owner::{node_key, policy_path};
use duo::node::Error;
use duo::policies::Backend;
use duo_testkit::policy::TEST_POLICY;
use duo_testkit::{connect, log_kinds, owner_with_sample, paired_fi};
use std::os::unix::fs::PermissionsExt;

/// What the FI is told when it asks for something while the policy file is in `damage`'s state.
async fn refusal_with(damage: impl FnOnce(&std::path::Path)) -> (String, String, Vec<String>) {
    let o = owner_with_sample(TEST_POLICY);
    let node = o.start().await;
    let fi = paired_fi(&o, &node, "Acme").await;
    let mut c = connect(&fi).await;
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    damage(&policy_path(&o.dir));
    let err = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap_err();
    let Error::Remote { code, message } = err else {
        panic!("expected an error reply, got {err:?}")
    };
    // The session goes on: the metadata can still be read.
    assert!(c.datasets().await.is_ok());
    node.shutdown().await;
    (code, message, log_kinds(&o.store()))
}

/// None of the owner's text reaches the FI: no path, no line or column, no word of the file.
fn assert_generic(message: &str, owner_dir: &str) {
    for leak in [
        owner_dir,
        "policy.toml",
        "line",
        "column",
        "No such file",
        "chmod",
        "mode",
    ] {
        assert!(
            !message.contains(leak),
            "the FI's message leaks {leak:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_is_unavailable_to_the_fi_and_the_refusal_is_logged() {
    let (code, message, kinds) = refusal_with(|p| {
        std::fs::write(p, "[[rule]]\nname = \"x\"\naction = \"approve\nbroken").unwrap()
    })
    .await;
    assert_eq!(code, "policy_unavailable");
    assert_generic(&message, "/tmp");
    assert!(kinds.contains(&"request_refused".to_string()), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_policy_does_not_tell_the_fi_the_owners_path() {
    let (code, message, kinds) = refusal_with(|p| std::fs::remove_file(p).unwrap()).await;
    assert_eq!(code, "policy_unavailable");
    assert_generic(&message, "/tmp");
    assert!(kinds.contains(&"request_refused".to_string()), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_others_can_write_is_not_trusted() {
    let (code, message, _) = refusal_with(|p| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap()
    })
    .await;
    assert_eq!(code, "policy_unavailable");
    assert_generic(&message, "/tmp");
    // The owner is told how to fix it.
    let o = owner_with_sample(TEST_POLICY);
    std::fs::set_permissions(policy_path(&o.dir), std::fs::Permissions::from_mode(0o664)).unwrap();
    let e = o.store().policy().unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn a_node_key_others_can_write_is_refused_with_the_fix() {
    let o = owner_with_sample(TEST_POLICY);
    let key = o.dir.join("node.key");
    assert!(node_key(&o.dir).is_ok());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o620)).unwrap();
    let e = node_key(&o.dir).unwrap_err().to_string();
    assert!(e.contains("chmod 600") && e.contains("node.key"), "{e}");
}

#[test]
fn a_refused_request_the_policy_never_saw_is_logged_too() {
    // An empty reason is refused before any decision; the refusal is in the owner's log all the same.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let o = owner_with_sample(TEST_POLICY);
        let node = o.start().await;
        let fi = paired_fi(&o, &node, "Acme").await;
        let mut c = connect(&fi).await;
        let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
        let err = c.request(&p, Backend::Plaintext, "   ").await.unwrap_err();
        assert!(
            matches!(err, Error::Remote { ref code, .. } if code == "refused"),
            "{err:?}"
        );
        node.shutdown().await;
        assert_eq!(
            log_kinds(&o.store()).last().map(String::as_str),
            Some("request_refused")
        );
    });
}
