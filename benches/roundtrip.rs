//! The request round trip over a real loopback WebSocket with the Noise channel.
//!
//! - `roundtrip/stored/{normal,full}`: a repeated catalogue request, answered from the store (pointer already
//!   made; the owner re-checks the lineage, finds the stored answer, and commits the request and its log
//!   entries in one transaction).
//! - `roundtrip/fresh_release/{normal,full}`: auto-approved first releases of catalogue attributes (each one a
//!   real evaluation, release index update and log entries). Because a plaintext attribute is auto-approved
//!   only once per principal and window, a pool of paired principals is consumed; this part is a plain timing
//!   loop that prints p50/p99 rather than a criterion group.

use criterion::{criterion_group, Criterion};
use duo::node::fi::{self as client, Client, FiHome};
use duo::node::owner::{self, ServeConfig};
use duo::node::store;
use duo::policies::Backend;
use std::time::{Duration, Instant};

const POLICY: &str = r#"
default = "ask"
[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"
"#;

struct Setup {
    _home: tempfile::TempDir,
    dir: std::path::PathBuf,
}

fn setup() -> Setup {
    let home = tempfile::tempdir().unwrap();
    let dir = duo::sample_owner(
        home.path(),
        POLICY,
        1,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap();
    Setup { _home: home, dir }
}

async fn paired(s: &Setup, url: &str, principal: &str, fi_dir: &std::path::Path) -> Client {
    let home = FiHome::new(fi_dir);
    let code = owner::invite(&s.dir, principal, Duration::from_secs(600)).unwrap();
    client::pair(&home, url, &code.to_string(), "owner")
        .await
        .unwrap();
    Client::connect(&home, None).await.unwrap()
}

fn sync_name(sync: store::Sync) -> &'static str {
    match sync {
        store::Sync::Normal => "normal",
        store::Sync::Full => "full",
    }
}

fn stored(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("roundtrip");
    for sync in [store::Sync::Normal, store::Sync::Full] {
        let s = setup();
        let fi_dir = tempfile::tempdir().unwrap();
        let (node, mut client, ptr) = rt.block_on(async {
            let mut cfg = ServeConfig::new(&s.dir);
            cfg.sync = sync;
            // The bench is one FI asking many times: lift the hourly request limit.
            cfg.principal_limits.requests_per_hour = usize::MAX;
            let node = owner::spawn(cfg, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let mut client = paired(&s, &node.url(), "Bench", fi_dir.path()).await;
            let ptr = client.expr("rent_on_time_ratio_12m()").await.unwrap();
            let first = client
                .request(&ptr, Backend::Plaintext, "bench")
                .await
                .unwrap();
            assert!(first.answer.is_some());
            (node, client, ptr)
        });
        group.bench_function(format!("stored/{}", sync_name(sync)), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let v = client
                        .request(&ptr, Backend::Plaintext, "bench")
                        .await
                        .unwrap();
                    assert!(v.answer.is_some());
                })
            })
        });
        rt.block_on(async {
            client.close().await;
            node.shutdown().await;
        });
    }
    group.finish();
}

fn fresh_releases() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let names: Vec<&str> = duo::engine::catalogue::entries()
        .iter()
        .map(|e| e.name)
        .collect();
    for sync in [store::Sync::Normal, store::Sync::Full] {
        let s = setup();
        let fi_dirs: Vec<_> = (0..40).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut times = rt.block_on(async {
            let mut cfg = ServeConfig::new(&s.dir);
            cfg.sync = sync;
            // The bench is one FI asking many times: lift the hourly request limit.
            cfg.principal_limits.requests_per_hour = usize::MAX;
            let node = owner::spawn(cfg, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let mut times = Vec::new();
            for (i, d) in fi_dirs.iter().enumerate() {
                let mut c = paired(&s, &node.url(), &format!("FI {i}"), d.path()).await;
                for name in &names {
                    let p = c.expr(&format!("{name}()")).await.unwrap();
                    let t = Instant::now();
                    let v = c.request(&p, Backend::Plaintext, "bench").await.unwrap();
                    times.push(t.elapsed());
                    assert_eq!(v.decided_by.as_deref(), Some("policy"));
                }
                c.close().await;
            }
            node.shutdown().await;
            times
        });
        times.sort();
        let pct = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "roundtrip/fresh_release/{}: {} releases, p50 {:?}, p99 {:?}",
            sync_name(sync),
            times.len(),
            pct(0.5),
            pct(0.99)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = stored
}

fn main() {
    benches();
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        fresh_releases();
    }
    Criterion::default().configure_from_args().final_summary();
}
