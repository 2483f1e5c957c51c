//! Pre-authentication lockout (issue 10, item 1): a flood of connections that never authenticate must not lock
//! a paired FI out of a real `duo owner serve`, and the owner must see that the node is under pressure.

use duo::node::fi::{Client, FiHome};
use duo_testkit::attack::{Attack, AttackShape};
use duo_testkit::owner::TEST_SEED;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `duo owner serve` on a free loopback port, its standard error collected line by line.
fn serve_collecting(home: &Path) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    super::serve::spawn_serve(home, &[], &[])
}

/// One `duo fi datasets`: a session of its own, one `list_datasets`, closed.
async fn list_datasets(home: &FiHome) -> Result<usize, String> {
    let call = async {
        let mut c = Client::connect(home, None).await?;
        let n = c.datasets().await?.len();
        c.close().await;
        Ok::<_, duo::node::Error>(n)
    };
    match tokio::time::timeout(Duration::from_secs(20), call).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 20 s".into()),
    }
}

/// Before the fix, 32 unauthenticated connections filled every handshake place for up to 10 s each: 25 of 25
/// commands failed under 40 silent connections, telling the FI to check the URL. Now 300 silent, 40 trickling
/// and 300 half-upgraded connections, held and re-opened, must let at least 99% of 50 commands through (latency
/// is measured by `duo bench lockout`, not here: CI machines are slow and shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_connections_does_not_lock_a_paired_fi_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = duo_testkit::sample_owner(
        tmp.path(),
        duo_testkit::policy::CATALOGUE_APPROVE,
        TEST_SEED,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap();
    let (mut node, url, stderr) = serve_collecting(tmp.path());
    let fi = duo_testkit::fi::pair(&dir, &url, "Acme Bank", &tmp.path().join("fi"))
        .await
        .unwrap();
    let addr = url.trim_start_matches("ws://").parse().unwrap();

    let attack = Attack::start(addr, AttackShape::issue_10());
    // Let the flood take its places, and its first connections reach the node's deadlines.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut failures = Vec::new();
    let calls = 50;
    for _ in 0..calls {
        if let Err(e) = list_datasets(&fi).await {
            failures.push(e);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened = attack.opened();
    attack.stop().await;
    let ok = calls - failures.len();
    assert!(
        ok * 100 >= calls * 99,
        "{ok} of {calls} commands succeeded under the flood ({opened} attack connections): {failures:?}"
    );
    assert!(opened >= 640, "the flood opened only {opened} connections");

    // The owner was told the node is under pressure, and the audit log says so too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = node.kill();
    let _ = node.wait();
    let printed = stderr.lock().unwrap().join("\n");
    assert!(
        printed.contains("under pressure"),
        "serve printed no pressure report:\n{printed}"
    );
    let kinds = duo_testkit::log_kinds(&duo_testkit::owner::open_store(&dir));
    assert!(
        kinds.iter().any(|k| k == "connections_dropped"),
        "{kinds:?}"
    );
}
