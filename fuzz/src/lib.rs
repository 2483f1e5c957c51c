//! Entry points of Duo's fuzz targets, one function per target.
//!
//! Each target in `fuzz_targets/` is one line calling a function here, and the workspace's
//! `tests/fuzz_regressions.rs` includes this file (as a module) to run every file under
//! `fuzz/regressions/<target>/` through the same function. So this file uses only `duo::` paths
//! and the standard library. A function returns normally on any input it rejects; it panics only
//! when a property fails (or when the code under test panics), which is what the fuzzer reports.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use duo::engine::ingest::{load_csv, parse_meta, IngestLimits};
use duo::engine::parse::{parse_expr, to_source};
use duo::engine::sample::{generate, Profile, SampleConfig};
use duo::engine::{check, CheckContext, Checked, DatasetMeta, Limits};
use duo::node::proto::{decode_client, decode_server, encode};
use duo::policies::{decide, Backend, Policy, RequestFacts};

/// The day the checker takes as today.
fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 15).unwrap_or_default()
}

/// The sample datasets' metadata (built once), in generation order.
pub fn sample_metas() -> &'static [DatasetMeta] {
    static METAS: OnceLock<Vec<DatasetMeta>> = OnceLock::new();
    METAS.get_or_init(|| {
        generate(&SampleConfig::new(7, Profile::Reliable, (2026, 10)))
            .iter()
            .filter_map(|f| parse_meta(&f.meta_toml).ok())
            .collect()
    })
}

fn meta_map() -> &'static BTreeMap<String, DatasetMeta> {
    static MAP: OnceLock<BTreeMap<String, DatasetMeta>> = OnceLock::new();
    MAP.get_or_init(|| {
        sample_metas()
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect()
    })
}

fn check_ctx() -> CheckContext<'static> {
    CheckContext {
        metas: meta_map(),
        today: today(),
        limits: Limits::default(),
    }
}

/// Target `wire`: the application message decoders on arbitrary bytes. A decoded client message
/// must survive `encode` and `decode_client` unchanged (same id, same message).
pub fn wire(data: &[u8]) {
    if let Ok((id, msg)) = decode_client(data) {
        let again = encode(id, &msg);
        match decode_client(&again) {
            Ok(back) => assert_eq!(back, (id, msg), "client message changed in a round trip"),
            Err(e) => panic!(
                "a decoded client message does not decode after encoding: {e:?}\n{}",
                String::from_utf8_lossy(&again)
            ),
        }
    }
    if let Ok((id, msg)) = decode_server(data) {
        let again = encode(id, &msg);
        match decode_server(&again) {
            Ok(back) => assert_eq!(back, (id, msg), "server message changed in a round trip"),
            Err(e) => panic!(
                "a decoded server message does not decode after encoding: {e}\n{}",
                String::from_utf8_lossy(&again)
            ),
        }
    }
}

/// Target `expr`: the expression parser. On success the printed form must parse to an equal
/// expression and print the same again, and the checker must not panic on it.
pub fn expr(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(e) = parse_expr(src) else {
        return;
    };
    let printed = to_source(&e);
    match parse_expr(&printed) {
        Ok(back) => {
            assert_eq!(back, e, "parse(to_source(e)) != e for {printed:?}");
            assert_eq!(to_source(&back), printed, "printing is not stable");
        }
        Err(err) => panic!(
            "the printed form of a parsed expression does not parse: {printed:?}: {}",
            err.render(&printed)
        ),
    }
    let ctx = check_ctx();
    if let Ok(checked) = check(&e, &ctx) {
        assert!(
            checked.nodes <= ctx.limits.max_nodes,
            "node limit not applied"
        );
        decide_all(&Policy::parse(Policy::default_text()).ok(), &checked);
    }
}

/// Target `csv`: CSV ingest. The first byte picks one of the sample datasets' metadata; the rest
/// is the file. A loaded dataset has the metadata's columns, all of the same length, at most
/// `max_rows` rows.
pub fn csv(data: &[u8]) {
    let metas = sample_metas();
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let Some(meta) = metas.get(usize::from(pick) % metas.len().max(1)) else {
        return;
    };
    let limits = IngestLimits {
        max_rows: 1000,
        ..IngestLimits::default()
    };
    if let Ok((ds, _suggestions)) = load_csv(file, meta, &limits) {
        assert_eq!(ds.columns.len(), meta.columns.len(), "wrong column count");
        let rows = ds.rows();
        assert!(
            rows as u64 <= limits.max_rows.min(meta.max_rows),
            "row limit not applied"
        );
        for (c, m) in ds.columns.iter().zip(&meta.columns) {
            assert_eq!(c.name, m.name, "columns out of the metadata's order");
            assert_eq!(c.data.len(), rows, "ragged column {}", c.name);
        }
    }
}

/// Target `policy`: the policy file parser; a parsed policy then decides on a few fixed lineages.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    static CHECKED: OnceLock<Vec<Checked>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        [
            "rent_on_time_ratio_12m()",
            "mean(clamp(last_months(rent, 12).amount, 0, 300000))",
            "count(filter(transactions, category == \"income\"))",
            "by_month(sum, filter(transactions, amount < 0).amount)",
        ]
        .iter()
        .filter_map(|s| parse_expr(s).ok())
        .filter_map(|e| check(&e, &check_ctx()).ok())
        .collect()
    });
    let policy = Some(policy);
    for c in checked {
        decide_all(&policy, c);
    }
}

fn decide_all(policy: &Option<Policy>, checked: &Checked) {
    let Some(policy) = policy else {
        return;
    };
    let tags: BTreeMap<String, Vec<String>> = checked
        .datasets
        .iter()
        .map(|d| (d.clone(), vec!["financial".to_owned()]))
        .collect();
    let now = today().and_hms_opt(3, 30, 0);
    for backend in Backend::ALL {
        let facts = RequestFacts {
            now,
            ..RequestFacts::new("acme", backend, checked, &tags)
        };
        let _ = decide(policy, &facts);
    }
}

/// Target `handshake`: the server side of the transport over an in-memory stream, with
/// fuzzer-chosen client frames (see `duo::node::fuzzing`).
pub fn handshake(data: &[u8]) {
    duo::node::fuzzing::handshake(data);
}

/// Target `channel`: an honest handshake, then fuzzer-chosen frames on the encrypted channel
/// (chunk reassembly, limits, tampering).
pub fn channel(data: &[u8]) {
    duo::node::fuzzing::channel(data);
}
