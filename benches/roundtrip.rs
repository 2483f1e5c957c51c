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
use duo::node::fi::Client;
use duo::node::owner::RunningNode;
use duo::node::store;
use duo::policies::Backend;
use duo_testkit::owner::BENCH_SEED;
use duo_testkit::policy::CATALOGUE_APPROVE;
use duo_testkit::{fi, OwnerNode};
use std::time::{Duration, Instant};

/// An owner with the sample data whose policy approves every catalogue attribute in plaintext.
fn setup() -> OwnerNode {
    OwnerNode::sample(
        CATALOGUE_APPROVE,
        BENCH_SEED,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap()
}

/// The owner's node syncing with `sync`, its hourly request limit lifted: the bench is one FI asking many
/// times.
async fn start(s: &OwnerNode, sync: store::Sync) -> RunningNode {
    s.start_with(|cfg| {
        cfg.sync = sync;
        cfg.principal_limits.requests_per_hour = usize::MAX;
    })
    .await
}

async fn paired(s: &OwnerNode, url: &str, principal: &str, fi_dir: &std::path::Path) -> Client {
    fi::pair_and_connect(&s.dir, url, principal, fi_dir)
        .await
        .unwrap()
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
            let node = start(&s, sync).await;
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
            let node = start(&s, sync).await;
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
