//! One FI and a portfolio of owner nodes: a batch fans one question out to several owners, reports each one's
//! outcome, and a rerun continues where it stopped without asking any owner twice.

use duo::node::fi::portfolio::{self, BatchAsk, BatchEvent, BatchOptions, Observer, OwnerOutcome};
use duo::node::fi::{self as client, FiHome};
use duo::node::owner::{self, RunningNode};
use duo::node::proto::request::DpParams;
use duo::node::store::prelude::*;
use duo::policies::{Amount, Backend, Scope};
use duo_testkit::fi::INVITE_TTL;
use duo_testkit::policy::ASK_ALL;
use duo_testkit::policy::DP_POLICY;
use duo_testkit::{owner_with_sample, OwnerNode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Refuses every DP release: the owner who says no.
const DENY_DP: &str = r#"
default = "ask"
[[rule]]
name = "no-dp"
backend = ["dp"]
action = "deny"
reason = "no statistics about me"
"#;

/// The question of the batch: a DP count, costing 0.3 epsilon.
const EXPR: &str = "count(filter(transactions, category == \"nsf_fee\"))";

fn set_cap(o: &OwnerNode, cap: &str) {
    let mut owner = o.store();
    let measure = owner.store().ledger().unwrap().measure();
    owner
        .set_cap(&Scope::Global, cap.parse().unwrap(), measure)
        .unwrap();
}

fn spent(o: &OwnerNode) -> Amount {
    o.db().ledger().unwrap().account(&Scope::Global).spent
}

/// How many requests the owner's node holds (from any FI).
fn requests_held(o: &OwnerNode) -> i64 {
    o.db()
        .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
        .unwrap()
}

async fn pair_as(fi: &FiHome, o: &OwnerNode, node: &RunningNode, name: &str) {
    let code = owner::invite(&o.dir, "Acme", INVITE_TTL).unwrap();
    client::pair(fi, &node.url(), &code.to_string(), name)
        .await
        .unwrap();
}

fn dp_ask() -> BatchAsk {
    BatchAsk::Release {
        expr: EXPR.into(),
        backend: Backend::Dp,
        dp: Some(DpParams {
            epsilon: Some(0.3),
            ..DpParams::default()
        }),
        reason: "portfolio review".into(),
    }
}

/// An observer that counts owners worked with at once, and the most at any time.
fn peak_counter() -> (Observer, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let obs: Observer = Arc::new(move |ev: &BatchEvent| match ev {
        BatchEvent::Started { .. } => {
            let k = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(k, Ordering::SeqCst);
        }
        BatchEvent::Finished { .. } => {
            n.fetch_sub(1, Ordering::SeqCst);
        }
    });
    (obs, peak)
}

fn outcome<'a>(b: &'a portfolio::Batch, owner: &str) -> &'a portfolio::OwnerEntry {
    b.owners.iter().find(|e| e.owner == owner).unwrap()
}

/// Owners `yes` (approves by policy), `no` (denies), `broke` (over budget), `away` (stopped), `yes2`, `yes3`
/// (approve) and `later` (asks its owner): the batch reports each. Restarting `away` and running the batch
/// again asks only it, and polls `later`'s request; once `later`'s owner approves, a third run finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_each_owner_and_a_rerun_asks_only_the_unfinished() {
    let yes = owner_with_sample(DP_POLICY);
    let no = owner_with_sample(DENY_DP);
    let broke = owner_with_sample(DP_POLICY);
    let away = owner_with_sample(DP_POLICY);
    let yes2 = owner_with_sample(DP_POLICY);
    let yes3 = owner_with_sample(DP_POLICY);
    let later = owner_with_sample(ASK_ALL);
    for o in [&yes, &no, &away, &yes2, &yes3, &later] {
        set_cap(o, "1.0");
    }
    set_cap(&broke, "0.1");
    let owners = [
        ("yes", &yes),
        ("no", &no),
        ("broke", &broke),
        ("away", &away),
        ("yes2", &yes2),
        ("yes3", &yes3),
        ("later", &later),
    ];
    let dir = tempfile::tempdir().unwrap();
    let fi = FiHome::new(&client::fi_dir(dir.path()));
    let mut nodes = Vec::new();
    for (name, o) in owners {
        let node = o.start().await;
        pair_as(&fi, o, &node, name).await;
        nodes.push((name, node));
    }
    // `away` stops before the batch.
    let i = nodes.iter().position(|(n, _)| *n == "away").unwrap();
    let (_, away_node) = nodes.remove(i);
    let away_addr = away_node.addr;
    away_node.shutdown().await;

    let selected = portfolio::select_owners(&fi, "all").unwrap();
    let batch = portfolio::new_batch(&fi, dp_ask(), &selected).unwrap();
    let opts = BatchOptions {
        concurrency: 2,
        connect_timeout: Duration::from_secs(5),
        ..BatchOptions::default()
    };
    let (obs, peak) = peak_counter();
    let b = portfolio::run_batch(&fi, &batch.id, &opts, Some(obs))
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = b
        .owners
        .iter()
        .map(|e| (e.owner.as_str(), e.outcome.name()))
        .collect();
    assert_eq!(
        names,
        [
            ("yes", "approved"),
            ("no", "denied"),
            ("broke", "over_budget"),
            ("away", "unreachable"),
            ("yes2", "approved"),
            ("yes3", "approved"),
            ("later", "pending"),
        ],
        "{b:#?}"
    );
    // The bound is reached and never passed.
    let peak = peak.load(Ordering::SeqCst);
    assert_eq!(
        peak, 2,
        "at most 2 owners at once (and 2 at some point), saw {peak}"
    );
    assert!(matches!(
        &outcome(&b, "no").outcome,
        OwnerOutcome::Denied { reason } if reason == "no statistics about me"
    ));
    assert!(
        matches!(
            &outcome(&b, "broke").outcome,
            OwnerOutcome::OverBudget { requested: Some(r), remaining: Some(l), .. } if r == "0.3" && l == "0.1"
        ),
        "{:?}",
        outcome(&b, "broke")
    );
    assert!(!b.complete());
    // The record on disk is the batch as returned.
    assert_eq!(portfolio::load_batch(&fi, &b.id).unwrap(), b);
    // Receipts were kept per owner, one per approval.
    let mut kept: Vec<String> = fi
        .receipts()
        .unwrap()
        .into_iter()
        .map(|e| e.owner)
        .collect();
    kept.sort();
    assert_eq!(kept, ["yes", "yes2", "yes3"]);

    // `away` comes back at its address; the batch runs again.
    let away_node = away.start_at(away_addr).await;
    let held_before: Vec<i64> = [&yes, &no, &broke, &yes2, &yes3]
        .iter()
        .map(|o| requests_held(o))
        .collect();
    let (obs, _) = peak_counter();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let asked2 = asked.clone();
    let both: Observer = Arc::new(move |ev: &BatchEvent| {
        obs(ev);
        if let BatchEvent::Started { owner } = ev {
            asked2.lock().unwrap().push(owner.clone());
        }
    });
    let b2 = portfolio::run_batch(&fi, &batch.id, &opts, Some(both))
        .await
        .unwrap();
    let mut again = asked.lock().unwrap().clone();
    again.sort();
    assert_eq!(again, ["away", "later"], "only the unfinished owners");
    assert_eq!(outcome(&b2, "away").outcome.name(), "approved");
    assert_eq!(outcome(&b2, "later").outcome.name(), "pending");
    assert_eq!(outcome(&b2, "later").request, outcome(&b, "later").request);
    assert!(!b2.complete(), "{b2:#?}");
    assert_eq!(requests_held(&later), 1, "polled, not asked again");
    // The owner of `later` approves; the next run fetches the answer.
    later
        .store()
        .approve(outcome(&b2, "later").request.unwrap(), None)
        .unwrap();
    let b2 = portfolio::run_batch(&fi, &batch.id, &opts, None)
        .await
        .unwrap();
    assert_eq!(outcome(&b2, "later").outcome.name(), "approved");
    assert!(b2.complete(), "{b2:#?}");
    // Nobody else was asked again, and every ledger was charged once.
    let held_after: Vec<i64> = [&yes, &no, &broke, &yes2, &yes3]
        .iter()
        .map(|o| requests_held(o))
        .collect();
    assert_eq!(held_before, held_after);
    assert_eq!(held_after, [1, 1, 1, 1, 1]);
    assert_eq!(requests_held(&away), 1);
    assert_eq!(requests_held(&later), 1);
    for o in [&yes, &away, &yes2, &yes3, &later] {
        assert_eq!(spent(o), "0.3".parse().unwrap());
    }
    assert_eq!(spent(&broke), Amount::from_nanos(0));
    // A third run contacts nobody.
    let (obs, peak) = peak_counter();
    let b3 = portfolio::run_batch(&fi, &batch.id, &opts, Some(obs))
        .await
        .unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 0);
    assert_eq!(b3, b2);
    assert_eq!(fi.receipts().unwrap().len(), 5);
    assert!(fi.verify_receipts().unwrap().is_empty());
    away_node.shutdown().await;
    for (_, n) in nodes {
        n.shutdown().await;
    }
}

/// Says no to every catalogue attribute.
const DENY_CATALOGUE: &str = r#"
default = "ask"
[[rule]]
name = "not-today"
catalogue = ["*"]
action = "deny"
reason = "not today"
"#;

/// `duo fi request --owners all`: a table per owner and exit 3 while one is unreachable; `--batch ID` after
/// its restart asks only it and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_batch_prints_a_table_and_continues_with_its_id() {
    use super::cli::duo;
    let yes = owner_with_sample(duo_testkit::policy::TEST_POLICY);
    let no = owner_with_sample(DENY_CATALOGUE);
    let away = owner_with_sample(duo_testkit::policy::TEST_POLICY);
    let dir = tempfile::tempdir().unwrap();
    let fi = FiHome::new(&client::fi_dir(dir.path()));
    let mut nodes = Vec::new();
    for (name, o) in [("yes", &yes), ("no", &no), ("away", &away)] {
        let node = o.start().await;
        pair_as(&fi, o, &node, name).await;
        nodes.push(node);
    }
    let away_node = nodes.pop().unwrap();
    let away_addr = away_node.addr;
    away_node.shutdown().await;
    let home = dir.path().to_path_buf();
    let args = [
        "fi",
        "request",
        "rent_on_time_ratio_12m()",
        "--reason",
        "portfolio",
        "--owners",
        "all",
        "--concurrency",
        "2",
    ];
    let out = tokio::task::spawn_blocking({
        let home = home.clone();
        move || duo(&home, &args)
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |owner: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(owner))
            .unwrap_or_else(|| panic!("no line for {owner}: {text}"))
            .to_string()
    };
    assert!(line("yes").contains("approved"), "{text}");
    assert!(
        line("no").contains("denied") && line("no").contains("not today"),
        "{text}"
    );
    assert!(line("away").contains("unreachable"), "{text}");
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no batch id: {text}"))
        .to_string();

    // `duo fi owners` probes them all: `away` is not reachable now; the others were seen.
    let listed = tokio::task::spawn_blocking({
        let home = home.clone();
        move || {
            (
                duo(&home, &["fi", "owners", "--json", "--timeout", "2"]),
                duo(&home, &["fi", "owners", "--json", "--no-probe"]),
            )
        }
    })
    .await
    .unwrap();
    let probed: serde_json::Value = serde_json::from_slice(&listed.0.stdout).unwrap();
    let row = |name: &str| {
        probed
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(row("yes")["reachable"], true, "{probed}");
    assert_eq!(row("no")["reachable"], true, "{probed}");
    assert_eq!(row("away")["reachable"], false, "{probed}");
    assert!(row("away")["probe_error"]
        .as_str()
        .unwrap()
        .contains("Connection refused"));
    assert!(row("yes")["last_seen"].is_string() && row("yes")["fingerprint"].is_string());
    let unprobed: serde_json::Value = serde_json::from_slice(&listed.1.stdout).unwrap();
    assert!(unprobed
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["reachable"].is_null()));

    let away_node = away.start_at(away_addr).await;
    let mut again: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    again.truncate(5);
    again.extend(["--batch".to_string(), id.clone(), "--json".to_string()]);
    let out = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = again.iter().map(String::as_str).collect();
        duo(&home, &a)
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: portfolio::Batch = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b.id, id);
    let got: Vec<(&str, &str, u32)> = b
        .owners
        .iter()
        .map(|e| (e.owner.as_str(), e.outcome.name(), e.attempts))
        .collect();
    assert_eq!(
        got,
        [
            ("yes", "approved", 1),
            ("no", "denied", 1),
            ("away", "approved", 2)
        ]
    );
    for o in [&yes, &no, &away] {
        assert_eq!(requests_held(o), 1);
    }
    let listed = tokio::task::spawn_blocking({
        let h = dir.path().to_path_buf();
        move || duo(&h, &["fi", "batches", "--json"])
    })
    .await
    .unwrap();
    let listed: Vec<portfolio::Batch> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed, [b]);
    away_node.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// A private-scoring batch: each owner approves by policy and one run each gives the FI its decision, with a
/// verified receipt per owner; a rerun runs nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoring_batch_runs_once_per_owner() {
    use duo_testkit::policy::SCORING_POLICY;
    let a = owner_with_sample(SCORING_POLICY);
    let b = owner_with_sample(SCORING_POLICY);
    let dir = tempfile::tempdir().unwrap();
    let fi = FiHome::new(&client::fi_dir(dir.path()));
    let mut nodes = Vec::new();
    for (name, o) in [("a", &a), ("b", &b)] {
        let node = o.start().await;
        pair_as(&fi, o, &node, name).await;
        nodes.push(node);
    }
    let ask = BatchAsk::Score {
        model: duo_testkit::scoring::test_model(0.0, 0.5, &[]),
        reveal: duo::policies::Reveal::Decision,
        reason: "underwriting".into(),
    };
    let owners = portfolio::select_owners(&fi, "a,b").unwrap();
    let batch = portfolio::new_batch(&fi, ask, &owners).unwrap();
    let opts = BatchOptions::default();
    let done = portfolio::run_batch(&fi, &batch.id, &opts, None)
        .await
        .unwrap();
    for e in &done.owners {
        assert!(
            matches!(e.outcome, OwnerOutcome::Approved { score: Some(_), .. }),
            "{e:?}"
        );
    }
    let again = portfolio::run_batch(&fi, &batch.id, &opts, None)
        .await
        .unwrap();
    assert_eq!(again, done);
    let runs = |o: &OwnerNode| -> i64 {
        o.db()
            .query_row("SELECT count(*) FROM scoring_runs", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!((runs(&a), runs(&b)), (1, 1));
    assert_eq!(fi.receipts().unwrap().len(), 2);
    assert!(fi.verify_receipts().unwrap().is_empty());
    for n in nodes {
        n.shutdown().await;
    }
}

/// A batch that stopped between sending a request and reading its reply (simulated: the request is made outside
/// the FI home, and the record says it went out): the next run finds it on the owner and polls it instead of
/// asking again; an owner the request never reached is asked, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_reply_was_lost_is_found_not_asked_again() {
    use duo::node::fi::Client;
    let got = owner_with_sample(duo_testkit::policy::TEST_POLICY);
    let never = owner_with_sample(duo_testkit::policy::TEST_POLICY);
    let dir = tempfile::tempdir().unwrap();
    let fi_dir = client::fi_dir(dir.path());
    let fi = FiHome::new(&fi_dir);
    let mut nodes = Vec::new();
    for (name, o) in [("got", &got), ("never", &never)] {
        let node = o.start().await;
        pair_as(&fi, o, &node, name).await;
        nodes.push(node);
    }
    let reason = "portfolio review";
    let ask = BatchAsk::Release {
        expr: "rent_on_time_ratio_12m()".into(),
        backend: Backend::Plaintext,
        dp: None,
        reason: reason.into(),
    };
    let batch = portfolio::new_batch(&fi, ask, &["got".into(), "never".into()]).unwrap();
    // `got` received the request; its reply never reached the FI home.
    let rec = fi.pairing(Some("got")).unwrap();
    let mut c = Client::connect_with(&rec.url, &fi.key().unwrap(), &rec.fingerprint)
        .await
        .unwrap();
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let sent = c.request(&p, Backend::Plaintext, reason).await.unwrap();
    c.close().await;
    let path = portfolio::batch_file(&fi_dir, &batch.id);
    let mut b: portfolio::Batch = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for e in &mut b.owners {
        e.sent = true;
        e.attempts = 1;
    }
    std::fs::write(&path, serde_json::to_vec(&b).unwrap()).unwrap();
    assert_eq!((requests_held(&got), requests_held(&never)), (1, 0));

    let done = portfolio::run_batch(&fi, &batch.id, &BatchOptions::default(), None)
        .await
        .unwrap();
    assert!(done.complete(), "{done:#?}");
    assert_eq!(outcome(&done, "got").request, Some(sent.id));
    assert_eq!(outcome(&done, "never").outcome.name(), "approved");
    assert_eq!((requests_held(&got), requests_held(&never)), (1, 1));
    for n in nodes {
        n.shutdown().await;
    }
}
