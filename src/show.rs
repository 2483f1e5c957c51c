//! Plain-text rendering of answers, requests and metadata for the command line and the demo.

use duo_engine::catalogue::CatalogueInfo;
use duo_engine::{Answer, Value};
use duo_node::release::{PendingView, RequestState, RequestView};
use duo_node::wire::PublishedDataset;
use std::fmt::Write;

/// A value in words.
pub fn value(v: &Value) -> String {
    match v {
        Value::Float(f) => format!("{f:.4}"),
        other => other.to_string(),
    }
}

/// An answer in a few lines.
pub fn answer(a: &Answer) -> String {
    match a {
        Answer::Scalar { value: v } => value(v),
        Answer::Vector { labels, values } => labels
            .iter()
            .zip(values)
            .map(|(l, v)| format!("{l}: {}", value(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Answer::Histogram { edges, counts } => {
            let mut s = String::new();
            for (i, c) in counts.iter().enumerate() {
                let lo = edges.get(i).copied().unwrap_or(f64::NAN);
                let hi = edges.get(i + 1).copied().unwrap_or(f64::NAN);
                let _ = write!(s, "[{lo}, {hi}): {c}  ");
            }
            s.trim_end().to_string()
        }
        Answer::Rows { columns, rows } => {
            let mut s = format!("{} rows of ({})", rows.len(), columns.join(", "));
            for r in rows.iter().take(5) {
                let _ = write!(
                    s,
                    "\n    {}",
                    r.iter().map(value).collect::<Vec<_>>().join(", ")
                );
            }
            if rows.len() > 5 {
                s.push_str("\n    ...");
            }
            s
        }
    }
}

/// A request as the FI sees it.
pub fn request(v: &RequestView) -> String {
    let mut s = format!(
        "request {}  [{}]  backend {}\n  lineage: {}\n  reason:  {}\n",
        v.id,
        match v.state {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
        },
        v.backend.name(),
        v.description,
        v.reason
    );
    if let Some(by) = &v.decided_by {
        let _ = writeln!(s, "  decided by: {by}");
    }
    if let Some(why) = &v.why {
        let _ = writeln!(s, "  why: {why}");
    }
    if let Some(a) = &v.answer {
        let _ = writeln!(s, "  answer: {}", answer(a));
    }
    s
}

/// A pending request as the owner sees it before deciding.
pub fn pending(v: &PendingView) -> String {
    let mut s = format!(
        "request {} from {}  (backend {}, {})\n  lineage: {}\n  written as: {}\n  reason: {}\n  why it is here: {}\n",
        v.id,
        v.principal,
        v.backend.name(),
        v.created_at,
        v.description,
        v.source,
        v.reason,
        v.why
    );
    match &v.value {
        Ok(a) => {
            let _ = writeln!(s, "  approving releases exactly: {}", answer(a));
        }
        Err(e) => {
            let _ = writeln!(s, "  cannot be computed: {e}");
        }
    }
    if v.data_changed {
        s.push_str("  note: the data changed since the request was made; it cannot be approved\n");
    }
    if v.earlier.is_empty() {
        s.push_str("  earlier releases from the same columns: none\n");
    } else {
        s.push_str("  earlier releases from the same columns:\n");
        for e in &v.earlier {
            let _ = writeln!(
                s,
                "    #{} to {} via {} at {}: {}",
                e.id, e.principal, e.backend, e.decided_at, e.description
            );
        }
    }
    let _ = writeln!(
        s,
        "  approve: duo owner approve {} --seen {}\n  deny:    duo owner deny {} --reason \"...\"",
        v.id, v.token, v.id
    );
    s
}

/// Published datasets.
pub fn datasets(ds: &[PublishedDataset]) -> String {
    let mut s = String::new();
    for d in ds {
        let m = &d.meta;
        let _ = writeln!(
            s,
            "{} (v{}): {}\n  tags: {}; privacy unit: {}; at most {} rows{}",
            m.name,
            d.version,
            m.description,
            m.tags.join(", "),
            m.privacy_unit.describe(),
            m.max_rows,
            m.window
                .map(|w| format!("; window {} to {}", w.start, w.end))
                .unwrap_or_default()
        );
        for c in &m.columns {
            let _ = writeln!(
                s,
                "    {:<14} {:<9} {}{}{}",
                c.name,
                c.dtype.name(),
                c.description,
                c.bounds
                    .map(|b| format!(" [{} .. {}]", b.lo, b.hi))
                    .unwrap_or_default(),
                c.unit
                    .as_ref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            );
        }
    }
    s
}

/// The catalogue.
pub fn catalogue(entries: &[CatalogueInfo]) -> String {
    let mut s = String::new();
    for e in entries {
        let json = serde_json::to_value(e).unwrap_or_default();
        let name = json.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        let desc = json
            .get("description")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let _ = writeln!(s, "{name}()\n    {desc}");
    }
    s
}
