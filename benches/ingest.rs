//! CSV ingest in rows per second: parsing and typing (in memory), and loading into the store.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use duo::engine::ingest::{load_csv, parse_meta, IngestLimits};
use duo::node::store::prelude::*;

fn ingest(c: &mut Criterion) {
    let cfg = duo::engine::sample::SampleConfig {
        seed: 11,
        profile: duo::engine::sample::Profile::Struggling,
        end_month: (2026, 10),
        months: 24,
    };
    let files = duo::engine::sample::generate(&cfg);
    let tx = files.iter().find(|f| f.name == "transactions").unwrap();
    let mut meta = parse_meta(&tx.meta_toml).unwrap();
    meta.max_rows = 10_000_000;
    let mut lines = tx.csv.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let mut group = c.benchmark_group("ingest");
    for rows in [10_000usize, 100_000] {
        let mut csv = String::with_capacity(rows * 64);
        csv.push_str(header);
        csv.push('\n');
        for i in 0..rows {
            csv.push_str(body[i % body.len()]);
            csv.push('\n');
        }
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("parse", rows), &csv, |b, csv| {
            b.iter(|| {
                let (ds, _) = load_csv(csv.as_bytes(), &meta, &IngestLimits::default()).unwrap();
                assert_eq!(ds.rows(), rows);
            })
        });
        let home = tempfile::tempdir().unwrap();
        let dir = duo::node::owner::owner_dir(home.path());
        duo::node::owner::init(&dir, None).unwrap();
        let path = home.path().join("t.csv");
        std::fs::write(&path, &csv).unwrap();
        let meta_text = toml_meta(&meta);
        group.bench_with_input(
            BenchmarkId::new("load_into_store", rows),
            &path,
            |b, path| {
                b.iter(|| duo::node::owner::load(&dir, path, "transactions", &meta_text).unwrap())
            },
        );
        // Reading a stored version back: what a release pays once per dataset version (the node then keeps
        // the immutable version in memory).
        let version = duo::node::owner::load(&dir, &path, "transactions", &meta_text)
            .unwrap()
            .version;
        let conn = duo::node::store::Store::open(&dir, duo::node::store::Sync::Normal).unwrap();
        group.bench_with_input(
            BenchmarkId::new("read_from_store", rows),
            &version,
            |b, v| {
                b.iter(|| {
                    let ds = conn.load_dataset("transactions", *v).unwrap();
                    assert_eq!(ds.rows(), rows);
                })
            },
        );
    }
    group.finish();
}

fn toml_meta(meta: &duo::engine::DatasetMeta) -> String {
    toml::to_string(meta).unwrap()
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = ingest
}
criterion_main!(benches);
