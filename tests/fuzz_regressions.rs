//! The fuzz corpus as ordinary tests: every file under `fuzz/regressions/<target>/` (crash inputs the
//! fuzzers found, and a few seeds) goes through the same entry point as the fuzz target
//! `fuzz/fuzz_targets/<target>.rs`. The entry points live in `fuzz/src/lib.rs`, included here as a
//! module; they panic when the code under test panics or a property fails (for example, an
//! expression that does not survive printing and parsing again).
//!
//! See `fuzz/README.md` for running the fuzzers themselves.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every regression file of `target` through `entry`, reporting all failing files at once.
fn run_all(target: &str, entry: fn(&[u8])) {
    let files = regressions(target);
    assert!(!files.is_empty(), "no regression files for {target}");
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read regression file");
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn wire() {
    run_all("wire", harness::wire);
}

#[test]
fn expr() {
    run_all("expr", harness::expr);
}

#[test]
fn csv() {
    run_all("csv", harness::csv);
}

#[test]
fn policy() {
    run_all("policy", harness::policy);
}

#[test]
fn handshake() {
    run_all("handshake", harness::handshake);
}

#[test]
fn channel() {
    run_all("channel", harness::channel);
}

/// The `csv` target's first byte picks one of these, in this order (the seeds rely on it); if none
/// loaded, the target would test nothing.
#[test]
fn csv_target_sees_every_sample_dataset() {
    let names: Vec<&str> = harness::sample_metas()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["rent", "utilities", "subscriptions", "transactions"]
    );
}
