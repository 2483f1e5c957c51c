//! The relay: an owner node reachable only through `duo relay`, FIs pairing and asking through it, what the
//! relay sees, restarts, limits and floods.

use duo::node::fi::Client;
use duo::node::net::keys::Keypair;
use duo::node::net::transport::{self, Limits, Mode, TransportError};
use duo::node::owner::RunningNode;
use duo::node::proto::request::RequestState;
use duo::node::relay::{self, Capture, RelayConfig, RelayLimits, RelayTarget, RunningRelay};
use duo::policies::Backend;
use duo_testkit::policy::{GRID_POLICY, TEST_POLICY};
use duo_testkit::{owner_with_sample, OwnerNode};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const READY: Duration = Duration::from_secs(15);

async fn start_relay(
    key: &Keypair,
    at: SocketAddr,
    limits: RelayLimits,
) -> (RunningRelay, Arc<Capture>) {
    let capture = Arc::new(Capture::default());
    let cfg = RelayConfig {
        key: Keypair::from_secret(*key.secret()).unwrap(),
        limits,
        capture: Some(capture.clone()),
    };
    (relay::spawn(cfg, at).await.unwrap(), capture)
}

/// The owner's node, on loopback for nothing but its relay link (FIs use only the relay's address).
async fn behind(o: &OwnerNode, r: &RunningRelay) -> (RunningNode, String) {
    let target = RelayTarget::parse(&r.pin()).unwrap();
    let node = o.start_with(|cfg| cfg.relay = Some(target)).await;
    let url = node.relay_ready(READY).await.unwrap();
    (node, url)
}

/// The payloads of the WebSocket frames in `stream` after its HTTP head, unmasked (masking hides nothing from
/// a relay: the key is in each frame's header).
fn payloads(stream: &[u8]) -> Vec<u8> {
    let mut at = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(stream.len(), |i| i + 4);
    let mut out = Vec::new();
    while at + 2 <= stream.len() {
        let b1 = stream[at + 1];
        let (mut len, mut h) = (u64::from(b1 & 0x7f), 2);
        if len >= 126 {
            let ext = if len == 126 { 2 } else { 8 };
            if at + 2 + ext + 4 > stream.len() {
                break;
            }
            len = stream[at + 2..at + 2 + ext]
                .iter()
                .fold(0, |a, &b| (a << 8) | u64::from(b));
            h += ext;
        }
        if at + h + 4 > stream.len() {
            break;
        }
        let mask = (b1 & 0x80 != 0).then(|| stream[at + h..at + h + 4].to_vec());
        h += if mask.is_some() { 4 } else { 0 };
        let end = (at + h)
            .saturating_add(len.min(1 << 40) as usize)
            .min(stream.len());
        for (i, b) in stream[at + h..end].iter().enumerate() {
            out.push(mask.as_ref().map_or(*b, |m| b ^ m[i % 4]));
        }
        at = end;
    }
    out
}

fn any_fingerprint() -> String {
    Keypair::generate().fingerprint()
}

async fn raw_connect(url: &str, fp: &str) -> Result<(), TransportError> {
    let key = Keypair::generate();
    transport::connect(url, &key, Mode::Session, None, fp, &Limits::default())
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fi_pairs_and_is_answered_through_the_relay_which_sees_only_ciphertext() {
    let (r, capture) = start_relay(
        &Keypair::generate(),
        "127.0.0.1:0".parse().unwrap(),
        RelayLimits::default(),
    )
    .await;
    let o = owner_with_sample(TEST_POLICY);
    let (node, url) = behind(&o, &r).await;
    let owner_fp = duo::node::owner::node_key(&o.dir).unwrap().fingerprint();
    assert_eq!(url, r.owner_url(&owner_fp));
    assert!(!url.contains(&node.addr.port().to_string()) || r.addr.port() == node.addr.port());

    let dir = tempfile::tempdir().unwrap();
    let mut c = duo_testkit::fi::pair_and_connect(&o.dir, &url, "Acme Bank", dir.path())
        .await
        .unwrap();
    assert_eq!(c.principal(), "Acme Bank");
    let names: Vec<String> = c
        .datasets()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.meta.name)
        .collect();
    assert!(!names.is_empty());
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "underwriting review")
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Approved, "{v:?}");
    let answer = serde_json::to_string(&v.answer).unwrap();
    c.close().await;
    // A later session through the relay, with the stored pairing.
    let home = duo::node::fi::FiHome::new(dir.path());
    let again = Client::connect(&home, None).await.unwrap();
    assert_eq!(again.principal(), "Acme Bank");
    again.close().await;

    let stats = r.stats();
    assert_eq!(stats.owners, 1);
    assert!(stats.sessions_total >= 2, "{stats:?}");
    assert!(stats.bytes > 1000, "{stats:?}");
    let up = capture.to_owner.lock().unwrap().clone();
    let down = capture.to_fi.lock().unwrap().clone();
    assert_eq!(
        (up.len() + down.len()) as u64,
        stats.bytes,
        "the capture holds every forwarded byte"
    );
    // What the relay could read: the raw bytes, and the frames' payloads unmasked.
    let seen = [up.clone(), down.clone(), payloads(&up), payloads(&down)].concat();
    // The capture is real: the cleartext hello and welcome that open every session are in it.
    let has = |s: &[u8]| seen.windows(s.len()).any(|w| w == s);
    assert!(has(br#""duo":"hello""#) && has(br#""duo":"welcome""#));
    let mut secrets: Vec<String> = names;
    secrets
        .extend(["Acme Bank", "underwriting review", "rent_on_time_ratio_12m"].map(String::from));
    secrets.push(answer.trim_matches('"').to_string());
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        assert!(
            !seen.windows(s.len()).any(|w| w == s.as_bytes()),
            "the relay saw {s:?} in clear"
        );
    }
    // The FI's key never crosses the relay in clear either (Noise XX encrypts both static keys).
    let fi_key = duo::node::fi::FiHome::new(dir.path()).key().unwrap();
    assert!(!seen.windows(32).any(|w| w == fi_key.public));
    node.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_owner_address_is_refused_at_once_with_a_clear_error() {
    let (r, _) = start_relay(
        &Keypair::generate(),
        "127.0.0.1:0".parse().unwrap(),
        RelayLimits::default(),
    )
    .await;
    let fp = any_fingerprint();
    let t = Instant::now();
    let err = raw_connect(&r.owner_url(&fp), &fp).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(matches!(err, TransportError::NotAtRelay(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("no owner with this key is connected to the relay"),
        "{err}"
    );
    assert_eq!(r.stats().unknown_owner, 1);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_reconnects_after_the_relay_restarts() {
    let key = Keypair::generate();
    let (r, _) = start_relay(&key, "127.0.0.1:0".parse().unwrap(), RelayLimits::default()).await;
    let addr = r.addr;
    let o = owner_with_sample(TEST_POLICY);
    let (node, url) = behind(&o, &r).await;
    let dir = tempfile::tempdir().unwrap();
    let home = duo_testkit::fi::pair(&o.dir, &url, "Acme", dir.path())
        .await
        .unwrap();
    r.shutdown().await;
    let err = Client::connect(&home, None).await.unwrap_err();
    assert!(!err.to_string().is_empty());
    let (r, _) = start_relay(&key, addr, RelayLimits::default()).await;
    // The owner comes back by itself, and a new session works.
    let deadline = Instant::now() + READY;
    loop {
        match Client::connect(&home, None).await {
            Ok(mut c) => {
                assert_eq!(c.principal(), "Acme");
                assert!(!c.datasets().await.unwrap().is_empty());
                c.close().await;
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the owner did not come back through the restarted relay: {e}"),
        }
    }
    assert_eq!(r.stats().owners, 1);
    node.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_cut_at_the_relay_with_close_1009() {
    let limits = RelayLimits {
        max_frame: 1000,
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let o = owner_with_sample(TEST_POLICY);
    let (node, url) = behind(&o, &r).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::Binary(vec![7u8; 5000])).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    match got {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), relay::server::CLOSE_TOO_BIG);
            assert!(frame.reason.contains("relay"), "{}", frame.reason);
        }
        other => panic!("expected the relay's close 1009, got {other:?}"),
    }
    assert_eq!(r.stats().oversized, 1);
    node.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_has_at_most_its_sessions_through_the_relay() {
    let limits = RelayLimits {
        sessions_per_owner: 1,
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let o = owner_with_sample(TEST_POLICY);
    let (node, url) = behind(&o, &r).await;
    let dir = tempfile::tempdir().unwrap();
    let first = duo_testkit::fi::pair_and_connect(&o.dir, &url, "Acme", dir.path())
        .await
        .unwrap();
    let fp = duo::node::owner::node_key(&o.dir).unwrap().fingerprint();
    let err = raw_connect(&url, &fp).await.unwrap_err();
    assert!(matches!(err, TransportError::Busy(_)), "{err:?}");
    assert!(err.to_string().contains("maximum of 1 sessions"), "{err}");
    assert!(
        err.to_string()
            .starts_with("the relay refused the connection: the owner has its maximum")
            && !err.to_string().contains("owner node is busy"),
        "the relay's refusal in its own words: {err}"
    );
    assert!(r.stats().owner_busy >= 1);
    first.close().await;
    node.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_does_not_keep_an_owner_out() {
    let limits = RelayLimits {
        max_pending: 16,
        max_pending_per_ip: 8,
        // Silent connections keep their places long unless evicted.
        head_timeout: Duration::from_secs(30),
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let addr = r.addr;
    // Silent connections from the owner's own address, opened faster than the gates' places free up.
    let flood = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..2000 {
            if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                held.push(s);
            }
            if held.len() > 400 {
                held.remove(0);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = owner_with_sample(TEST_POLICY);
    let target = RelayTarget::parse(&r.pin()).unwrap();
    let node = o.start_with(|cfg| cfg.relay = Some(target)).await;
    // Promptly: its first attempts evict the oldest silent connections (refused, it waited out their 30 s).
    let url = node.relay_ready(Duration::from_secs(5)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = duo_testkit::fi::pair_and_connect(&o.dir, &url, "Acme", dir.path())
        .await
        .unwrap();
    assert!(!c.datasets().await.unwrap().is_empty());
    c.close().await;
    assert!(r.stats().dropped > 0, "the flood was shed: {:?}", r.stats());
    flood.abort();
    node.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_owners_behind_one_address_are_not_capped_by_its_unauthenticated_places() {
    let limits = RelayLimits {
        max_pending_per_ip: 2,
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let url = format!("{}{}", r.url(), relay::CONTROL_PATH);
    let mut held = Vec::new();
    for i in 0..12 {
        let key = Keypair::generate();
        let mut chan = transport::connect(
            &url,
            &key,
            Mode::Session,
            None,
            r.fingerprint(),
            &Limits::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("owner {i} behind the same address: {e}"));
        let ready = chan.recv().await.unwrap().unwrap();
        assert!(matches!(
            serde_json::from_slice(&ready).unwrap(),
            relay::ControlMsg::Ready { .. }
        ));
        held.push(chan);
    }
    assert_eq!(r.stats().owners, 12);
    r.shutdown().await;
}

/// One owner's control connection with a fresh key: the relay's first message to it.
async fn register_owner(
    r: &RunningRelay,
    key: &Keypair,
) -> (
    relay::ControlMsg,
    transport::SecureChannel<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) {
    let url = format!("{}{}", r.url(), relay::CONTROL_PATH);
    let mut chan = transport::connect(
        &url,
        key,
        Mode::Session,
        None,
        r.fingerprint(),
        &Limits::default(),
    )
    .await
    .unwrap();
    let first = chan.recv().await.unwrap().unwrap();
    (serde_json::from_slice(&first).unwrap(), chan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_past_the_per_source_cap_are_refused_with_a_reason() {
    let limits = RelayLimits {
        max_owners_per_source: 3,
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate()).collect();
    let mut held = Vec::new();
    for key in &keys[..3] {
        let (msg, chan) = register_owner(&r, key).await;
        assert!(matches!(msg, relay::ControlMsg::Ready { .. }), "{msg:?}");
        held.push(chan);
    }
    let (msg, _) = register_owner(&r, &keys[3]).await;
    let relay::ControlMsg::Refused { reason } = msg else {
        panic!("the 4th owner from one address was registered past a cap of 3: {msg:?}");
    };
    assert!(
        reason.contains("maximum of 3 owners from your address 127.0.0.1"),
        "{reason}"
    );
    assert!(reason.contains("--max-owners-per-source"), "{reason}");
    assert_eq!((r.stats().owners, r.stats().owners_refused), (3, 1));
    // A registered owner reconnecting replaces itself and is not refused.
    let (msg, chan) = register_owner(&r, &keys[0]).await;
    assert!(matches!(msg, relay::ControlMsg::Ready { .. }), "{msg:?}");
    held.push(chan);
    assert_eq!(r.stats().owners, 3);
    // An owner leaving gives its place back.
    let gone = held.remove(1);
    gone.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (msg, chan) = register_owner(&r, &keys[3]).await;
        if matches!(msg, relay::ControlMsg::Ready { .. }) {
            held.push(chan);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was not given back: {msg:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_past_the_global_cap_are_refused_and_a_node_says_why() {
    let limits = RelayLimits {
        max_owners: 1,
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let (msg, _held) = register_owner(&r, &Keypair::generate()).await;
    assert!(matches!(msg, relay::ControlMsg::Ready { .. }), "{msg:?}");
    let o = owner_with_sample(TEST_POLICY);
    let target = RelayTarget::parse(&r.pin()).unwrap();
    let node = o.start_with(|cfg| cfg.relay = Some(target)).await;
    let why = node.relay_ready(Duration::from_secs(3)).await.unwrap_err();
    assert!(
        why.contains("refused this node") && why.contains("maximum of 1 owners"),
        "{why}"
    );
    node.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_closed_by_the_relay() {
    let limits = RelayLimits {
        idle: Duration::from_secs(1),
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let o = owner_with_sample(TEST_POLICY);
    let (node, url) = behind(&o, &r).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = duo_testkit::fi::pair_and_connect(&o.dir, &url, "Acme", dir.path())
        .await
        .unwrap();
    assert!(!c.datasets().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.datasets().await.is_err(), "the idle session was cut");
    assert_eq!(r.stats().sessions, 0);
    node.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_bytes_per_second_are_capped() {
    const RATE: u64 = 20_000;
    let limits = RelayLimits {
        bytes_per_sec: RATE,
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let o = owner_with_sample(TEST_POLICY);
    let (node, url) = behind(&o, &r).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = duo_testkit::fi::pair_and_connect(&o.dir, &url, "Acme", dir.path())
        .await
        .unwrap();
    let (start, from) = (Instant::now(), r.stats().bytes);
    while r.stats().bytes < from + 5 * RATE {
        c.catalogue().await.unwrap();
    }
    // A second's worth may pass at once (the bucket is full at the start), the rest at the rate.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(3500),
        "{} bytes in {took:?}",
        r.stats().bytes - from
    );
    c.close().await;
    node.shutdown().await;
    r.shutdown().await;
}

/// `duo relay` as a process: the first line it prints with `--json`, and the process.
fn relay_process(home: &std::path::Path) -> (std::process::Child, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(home)
        .args(["relay", "--listen", "127.0.0.1:0", "--every", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = crate::cli::json(&lines.next().unwrap().unwrap());
    // Its counts, a JSON object per line, go on after.
    let stats = crate::cli::json(&lines.next().unwrap().unwrap());
    assert_eq!(stats["owners"], 0, "{stats}");
    (child, first)
}

#[test]
fn the_commands_pair_and_ask_through_a_relay_process() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, fi, relay_home) = (
        dir.path().join("o"),
        dir.path().join("f"),
        dir.path().join("r"),
    );
    let (mut relay, line) = relay_process(&relay_home);
    let pin = line["relay"].as_str().unwrap().to_string();
    // The relay's key is kept, readable by its user only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(relay_home.join("relay/key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let data = dir.path().join("data");
    crate::cli::ok(
        &owner,
        &["sample", "--out", data.to_str().unwrap(), "--seed", "3"],
    );
    crate::cli::ok(&owner, &["owner", "init"]);
    let rent = data.join("rent.csv");
    crate::cli::ok(
        &owner,
        &["owner", "load", rent.to_str().unwrap(), "--name", "rent"],
    );
    let (mut node, url, _) = crate::serve::spawn_serve(&owner, &["--no-ui", "--relay", &pin], &[]);
    let fp = line["fingerprint"].as_str().unwrap();
    assert!(
        url.starts_with(pin.split('#').next().unwrap()) && url.contains("/o/"),
        "{url} {fp}"
    );
    // The invite says which URL the FI uses.
    let invite = crate::cli::json(&crate::cli::ok(
        &owner,
        &["owner", "invite", "--fi", "Acme Bank", "--json"],
    ));
    assert_eq!(invite["url"], url.as_str());
    let code = invite["code"].as_str().unwrap();
    let paired = crate::cli::json(&crate::cli::ok(&fi, &["fi", "pair", &url, code, "--json"]));
    assert_eq!(paired["principal"], "Acme Bank");
    let req = crate::cli::json(&crate::cli::ok(
        &fi,
        &[
            "fi",
            "request",
            "count(rent)",
            "--reason",
            "history",
            "--json",
        ],
    ));
    assert_eq!(req["state"], "pending", "{req}");
    // Killed with SIGKILL, serve leaves its note of the relay URL behind; invite no longer calls it current.
    let _ = node.kill();
    let _ = node.wait();
    assert!(owner.join("owner/relay.url").exists() || owner.join("relay.url").exists());
    let invite = crate::cli::json(&crate::cli::ok(
        &owner,
        &["owner", "invite", "--fi", "Other Bank", "--json"],
    ));
    assert!(
        invite["url"].is_null(),
        "a relay URL from a killed serve given as current: {invite}"
    );
    assert_eq!(invite["last_relay_url"], url.as_str());
    let _ = relay.kill();
    let _ = relay.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_a_relay_serving_several_owners_holds_no_name_reason_or_answer() {
    use duo::node::store::prelude::*;
    let (r, capture) = start_relay(
        &Keypair::generate(),
        "127.0.0.1:0".parse().unwrap(),
        RelayLimits::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let home = duo::node::fi::FiHome::new(dir.path());
    let (fi_name, reason) = ("Portfolio Lender", "quarterly portfolio review");
    let sum = "sum(clamp(filter(transactions, category == \"income\").amount, 0, 500000))";
    let mut secrets: Vec<String> = vec![fi_name.into(), reason.into(), "income".into()];
    let mut held = Vec::new();
    for i in 0..4 {
        let o = owner_with_sample(GRID_POLICY);
        {
            let mut store = o.store();
            let measure = store.store().ledger().unwrap().measure();
            store
                .set_cap(&duo::policies::Scope::Global, "1".parse().unwrap(), measure)
                .unwrap();
        }
        let (node, url) = behind(&o, &r).await;
        let code = duo::node::owner::invite(&o.dir, fi_name, Duration::from_secs(600)).unwrap();
        let name = format!("owner-{i}");
        duo::node::fi::pair(&home, &url, &code.to_string(), &name)
            .await
            .unwrap();
        let mut c = Client::connect(&home, Some(&name)).await.unwrap();
        secrets.extend(c.datasets().await.unwrap().into_iter().map(|d| d.meta.name));
        let p = c.expr(sum).await.unwrap();
        let eps = duo::node::proto::request::DpParams {
            epsilon: Some(0.1),
            ..Default::default()
        };
        let v = c.request_dp(&p, eps, reason).await.unwrap();
        assert_eq!(v.state, RequestState::Approved, "{v:?}");
        secrets.push(serde_json::to_string(&v.answer).unwrap());
        let model = duo_testkit::scoring::test_model(-1.0, 0.5, &[]);
        let run = duo_testkit::scoring::decide(&mut c, &model, reason).await;
        secrets.push(serde_json::to_string(&run.outcome).unwrap());
        c.close().await;
        held.push((o, node));
    }
    let up = capture.to_owner.lock().unwrap().clone();
    let down = capture.to_fi.lock().unwrap().clone();
    assert!(
        up.len() + down.len() > 100_000,
        "the runs crossed the relay"
    );
    // Each FI session starts with its request head; the FI's frames are masked, the owner's are not.
    let mut seen = [up.clone(), down.clone()].concat();
    let starts: Vec<usize> = (0..up.len())
        .filter(|&i| up[i..].starts_with(b"GET /o/"))
        .chain([up.len()])
        .collect();
    assert!(
        starts.len() > 8,
        "one session per pairing, DP question and run"
    );
    for w in starts.windows(2) {
        seen.extend(payloads(&up[w[0]..w[1]]));
    }
    let has = |s: &[u8]| seen.windows(s.len()).any(|w| w == s);
    assert!(has(br#""duo":"hello""#), "the unmasking works");
    secrets.extend(["approve", "nsf_fee", "rent_on_time_ratio_12m"].map(String::from));
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        assert!(
            !seen.windows(s.len()).any(|w| w == s.as_bytes()),
            "the relay saw {s:?} in clear"
        );
    }
    for (_, node) in held {
        node.shutdown().await;
    }
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_never_joins_is_reported_as_silent_not_as_a_bad_url() {
    // An owner whose control connection is up but which never answers `waiting` (asleep, or a broken node).
    let limits = RelayLimits {
        join_timeout: Duration::from_millis(300),
        ..RelayLimits::default()
    };
    let (r, _) = start_relay(&Keypair::generate(), "127.0.0.1:0".parse().unwrap(), limits).await;
    let owner = Keypair::generate();
    let (first, _control) = register_owner(&r, &owner).await;
    assert!(
        matches!(first, relay::ControlMsg::Ready { .. }),
        "{first:?}"
    );
    let fp = owner.fingerprint();
    let err = raw_connect(&r.owner_url(&fp), &fp).await.unwrap_err();
    assert!(
        matches!(err, TransportError::OwnerSilentAtRelay(_)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("did not answer through the relay in time"),
        "{text}"
    );
    assert!(text.contains("try again in a moment"), "{text}");
    assert_eq!(r.stats().owner_silent, 1);
    assert_eq!(r.stats().unknown_owner, 0);
    r.shutdown().await;
}
