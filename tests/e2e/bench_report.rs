//! `duo bench report` at its smallest sizes: the files it writes, their shapes, and the links between them;
//! `duo bench` alone dispatches to the default set.

use std::path::Path;
use std::process::Command;

/// The link targets of a Markdown text: each `](target)`.
fn links(md: &str) -> Vec<&str> {
    md.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t))
        .collect()
}

#[test]
fn the_report_writes_json_plots_and_markdown_that_links_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let run = Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(dir.path().join("home"))
        .args(["bench", "report", "--smoke", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "duo bench report failed: {stderr}");
    // Progress on standard error as each part runs.
    for part in ["DP error", "DP throughput", "scoring", "round trip", "load"] {
        assert!(
            stderr.contains(part),
            "no progress line for {part}: {stderr}"
        );
    }
    let printed: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(printed["bench"], "report");
    check_sections(&json);
    for svg in [
        "dp-error",
        "dp-coverage",
        "dp-throughput",
        "scoring",
        "load",
    ] {
        let s = std::fs::read_to_string(out.join(format!("{svg}.svg"))).unwrap();
        assert!(
            s.trim_start().starts_with("<svg"),
            "{svg}.svg: {}",
            &s[..80.min(s.len())]
        );
        assert!(s.trim_end().ends_with("</svg>"), "{svg}.svg is cut short");
        assert!(s.contains("<text"), "{svg}.svg has no labels");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let targets = links(&md);
    assert!(
        targets.contains(&"report.json") && targets.contains(&"dp-error.svg"),
        "{md}"
    );
    assert_eq!(
        targets.iter().filter(|t| t.ends_with(".svg")).count(),
        5,
        "{md}"
    );
    for t in targets {
        assert!(
            Path::new(&out).join(t).is_file(),
            "report.md links {t}, which is not there"
        );
    }
    assert!(
        md.contains("CPUs") && md.contains(json["date"].as_str().unwrap()),
        "{md}"
    );
}

/// The sections of `report.json` and a few figures in each that a sound run must have.
fn check_sections(json: &serde_json::Value) {
    let mechs = json["dp_error"]["mechanisms"].as_array().unwrap();
    let names: Vec<&str> = mechs.iter().map(|m| m["query"].as_str().unwrap()).collect();
    assert_eq!(names, ["count", "sum", "histogram", "median"]);
    for m in mechs {
        for p in m["points"].as_array().unwrap() {
            let c = &p["coverage"];
            assert!(p["predicted95"].as_f64().unwrap() > 0.0);
            // 20 releases (12 bins each for the histogram).
            assert!(c["total"].as_u64().unwrap() >= 20, "{p}");
            let share = c["share"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&share), "{p}");
        }
    }
    let tp = json["dp_throughput"].as_array().unwrap();
    assert_eq!(tp.len(), 3);
    assert!(tp
        .iter()
        .all(|p| ["non_private", "duo", "opendp"]
            .iter()
            .all(|k| p[k]["rows_per_sec"].as_f64().unwrap() > 0.0)));
    let runs = json["scoring"]["runs"].as_array().unwrap();
    let transports: Vec<&str> = runs
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["memory", "ws"]);
    assert!(runs
        .iter()
        .all(|r| r["warm"]["bytes"].as_u64().unwrap() > 0));
    assert_eq!(json["round_trip"]["sessions"], 1);
    assert!(json["round_trip"]["releases"].as_u64().unwrap() > 0);
    assert_eq!(json["load"][0]["sessions"], 2);
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(json["host"]["os"].as_str().unwrap().len() > 1);
}

#[test]
fn bench_alone_runs_the_default_set_and_answers_json() {
    let dir = tempfile::tempdir().unwrap();
    // A bad size fails before measuring anything: JSON on standard output, exit 2.
    let run = Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(dir.path())
        .args(["bench", "--json", "--releases", "0"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("--releases"),
        "{err}"
    );
}
