//! Plain-text rendering of answers, requests and metadata for the command line and the demo.

use duo_engine::catalogue::CatalogueInfo;
use duo_engine::{Answer, DataType, Type, Value};
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

/// Integer cents as dollars, e.g. `-$1,234.56`.
pub fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let whole = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}${grouped}.{:02}", abs % 100)
}

fn typed(v: &Value, dtype: Option<DataType>) -> String {
    match (v, dtype) {
        (Value::Int(c), Some(DataType::Money)) => dollars(*c),
        _ => value(v),
    }
}

/// An answer in a few lines; money (by the answer's static type) is shown in dollars.
pub fn answer(a: &Answer, ty: &Type) -> String {
    let elem = match ty {
        Type::Scalar { dtype, .. } | Type::Column { dtype, .. } | Type::Vector { dtype, .. } => {
            Some(*dtype)
        }
        _ => None,
    };
    match a {
        Answer::Scalar { value: v } => typed(v, elem),
        Answer::Vector { labels, values } => labels
            .iter()
            .zip(values)
            .map(|(l, v)| format!("{l}: {}", typed(v, elem)))
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
        let _ = writeln!(s, "  answer: {}", answer(a, &v.ty));
    }
    if let Some(c) = &v.cost {
        let _ = writeln!(
            s,
            "  privacy cost: {c}{}; expected error: {}",
            if v.decided_by.as_deref() == Some("store") {
                " (charged once, for the first answer; this repeat was free)"
            } else {
                ""
            },
            v.accuracy95.map_or("n/a".to_string(), |a| match v.ty {
                Type::Scalar {
                    dtype: DataType::Money,
                    ..
                } => format!("±{} at 95%", dollars(a.round() as i64)),
                _ => format!("±{a:.1} at 95%"),
            })
        );
    }
    if let Some(r) = &v.receipt {
        let _ = writeln!(
            s,
            "  receipt: signed by node key {}..., owner log entry {}",
            r.node_key.get(..16).unwrap_or(&r.node_key),
            r.log_seq
        );
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
    match (&v.value, &v.dp) {
        (_, Some(d)) => {
            let _ = writeln!(
                s,
                "  differentially private ({}): cost {} {}; budget left after: {}; expected error: {}",
                d.mechanism,
                d.cost,
                d.measure,
                match &d.budget_left_after {
                    Ok(left) => left.clone(),
                    Err(e) => format!("not enough ({e})"),
                },
                d.accuracy95
                    .map_or("n/a".to_string(), |a| format!("±{a:.1} at 95%"))
            );
            let _ = writeln!(s, "  one unit of privacy protects: {}", d.protects);
        }
        (Ok(a), None) => {
            let _ = writeln!(s, "  approving releases exactly: {}", answer(a, &v.ty));
        }
        (Err(e), None) => {
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
        let _ = writeln!(
            s,
            "{}()  -> {} in [{}, {}] {}, over {}\n    {}\n    reads: {}",
            e.name,
            e.output.name(),
            e.bounds.lo,
            e.bounds.hi,
            e.unit,
            e.window,
            e.description,
            e.inputs.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_group_thousands_and_keep_cents() {
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(dollars(5), "$0.05");
        assert_eq!(dollars(-3500), "-$35.00");
        assert_eq!(dollars(123_456_789), "$1,234,567.89");
        assert_eq!(dollars(i64::MIN), "-$92,233,720,368,547,758.08");
    }
}
