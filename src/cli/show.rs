//! Plain-text rendering of answers, requests and metadata for the command line and the demo.

use duo_engine::catalogue::CatalogueInfo;
use duo_engine::{Answer, DataType, Type, Value};
use duo_node::fi::ScoreReport;
use duo_node::owner::view::{PendingView, ScoringView};
use duo_node::proto::request::{ItemPlan, RequestState, RequestView};
use duo_node::proto::scoring::ScoreOutcome;
use duo_node::proto::PublishedDataset;
use duo_node::store::LogEntry;
use duo_policies::Reveal;
use std::fmt::Write;
use std::path::Path;

/// A value in words.
pub fn value(v: &Value) -> String {
    match v {
        Value::Float(f) => format!("{f:.4}"),
        other => other.to_string(),
    }
}

/// Integer cents as dollars, e.g. `-$1,234.56` (the engine's formatting, which the web UI uses too).
pub use duo_engine::ingest::dollars;

/// An amount of money held as a (possibly fractional) number of cents, e.g. a mean or an expected error, in
/// dollars to the cent.
pub fn dollars_f(cents: f64) -> String {
    if !cents.is_finite() || cents.abs() >= 9.0e18 {
        return format!("{cents} cents");
    }
    dollars(cents.round() as i64)
}

fn typed(v: &Value, dtype: Option<DataType>) -> String {
    match (v, dtype) {
        (Value::Int(c), Some(DataType::Money)) => dollars(*c),
        (Value::Float(c), Some(DataType::Money)) => dollars_f(*c),
        _ => value(v),
    }
}

/// The element type of a value of type `ty` (a scalar's, a vector's, a column's), if it has one.
fn elem_dtype(ty: &Type) -> Option<DataType> {
    match ty {
        Type::Scalar { dtype, .. } | Type::Column { dtype, .. } | Type::Vector { dtype, .. } => {
            Some(*dtype)
        }
        _ => None,
    }
}

/// The half-width of a 95% interval around the exact value, in the answer's unit: dollars for money.
pub fn within95(accuracy95: Option<f64>, ty: &Type) -> String {
    match (accuracy95, elem_dtype(ty)) {
        (None, _) => "n/a".to_string(),
        (Some(a), Some(DataType::Money)) => format!("±{} at 95%", dollars_f(a)),
        (Some(a), _) => format!("±{a:.1} at 95%"),
    }
}

/// An answer in a few lines; money (by the answer's static type) is shown in dollars.
pub fn answer(a: &Answer, ty: &Type) -> String {
    let elem = elem_dtype(ty);
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
            // Money columns (by the table's static type) in dollars.
            let dtypes: Vec<Option<DataType>> = columns
                .iter()
                .map(|c| match ty {
                    Type::Table { columns, .. } => {
                        columns.iter().find(|(n, _)| n == c).map(|(_, d)| *d)
                    }
                    _ => None,
                })
                .collect();
            for r in rows.iter().take(5) {
                let _ = write!(
                    s,
                    "\n    {}",
                    r.iter()
                        .zip(dtypes.iter().chain(std::iter::repeat(&None)))
                        .map(|(v, d)| typed(v, *d))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if rows.len() > 5 {
                s.push_str("\n    ...");
            }
            s
        }
        Answer::Batch { items } => {
            let types = ty.batch_items();
            let mut s = String::new();
            for (i, a) in items.iter().enumerate() {
                let _ = write!(
                    s,
                    "\n    ({}) {}",
                    i + 1,
                    answer(a, types.get(i).unwrap_or(ty))
                );
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
    if let (Some(c), false) = (&v.cost, v.items.is_empty()) {
        let _ = writeln!(
            s,
            "  privacy cost: {c} in all, for {} questions:",
            v.items.len()
        );
        s.push_str(&batch_items(&v.items, &v.ty));
    } else if let Some(c) = &v.cost {
        let _ = writeln!(
            s,
            "  privacy cost: {c}{}; expected error: {}",
            if v.decided_by.as_deref() == Some("store") {
                " (charged once, for the first answer; this repeat was free)"
            } else {
                ""
            },
            within95(v.accuracy95, &v.ty)
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

/// A batch's questions, a line each: their cost and expected error (nothing for a single release).
pub fn batch_items(items: &[ItemPlan], ty: &Type) -> String {
    let types = ty.batch_items();
    let mut s = String::new();
    for (i, item) in items.iter().enumerate() {
        let _ = writeln!(
            s,
            "    ({}) cost {}; expected error {}",
            i + 1,
            item.cost,
            within95(item.accuracy95, types.get(i).unwrap_or(ty))
        );
    }
    s
}

/// A pending request as the owner sees it before deciding.
pub fn pending(v: &PendingView) -> String {
    let mut s = format!(
        "request {} from {} (its request {})  (backend {}, {})\n  lineage: {}\n  written as: {}\n  reason: {}\n  why it is here: {}\n",
        v.id,
        v.principal,
        v.fi_request,
        v.backend.name(),
        v.created_at,
        v.description,
        v.source,
        v.reason,
        v.why
    );
    match (&v.value, &v.dp) {
        _ if v.scoring.is_some() => {
            if let Some(sc) = &v.scoring {
                s.push_str(&scoring_view(sc));
            }
        }
        (_, Some(d)) => {
            let _ = writeln!(
                s,
                "  differentially private ({}): cost {}; budget left after: {}; expected error: {}",
                d.mechanism,
                super::budget::with_equivalent_str(&d.cost, &d.measure),
                match &d.budget_left_after {
                    Ok(left) => left.clone(),
                    Err(e) => format!("not enough ({e})"),
                },
                within95(d.accuracy95, &v.ty)
            );
            if !d.items.is_empty() {
                let _ = writeln!(
                    s,
                    "  asked together: {} questions; approving releases all of them and denying refuses all of \
                     them; the cost above is their sum, each question's is below",
                    d.items.len()
                );
                s.push_str(&batch_items(&d.items, &v.ty));
            }
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

/// A number of bits without trailing zeros: `1`, `1.585`, `64`.
pub fn bits(b: f64) -> String {
    let text = format!("{b:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".into()
    } else {
        text.to_string()
    }
}

/// "1 bit", "2 bits".
fn bits_words(b: f64) -> String {
    let n = bits(b);
    if n == "1" {
        "1 bit".into()
    } else {
        format!("{n} bits")
    }
}

/// What a run over `n` attributes reveals, from the FI's side: `a yes/no decision (1 bit)`.
pub fn reveal_words(r: Reveal, n: usize) -> String {
    match r {
        Reveal::Decision => {
            "a yes/no decision, whether the score reaches the threshold (1 bit)".into()
        }
        Reveal::Bands { k } => format!(
            "which of {k} score bands the score falls in ({})",
            bits_words(r.bits(n))
        ),
        Reveal::DecisionReasons { k } => format!(
            "a yes/no decision and, on a decline, which {k} of the {n} attributes cost the most points, \
             worst first (at most {})",
            bits_words(r.bits(n))
        ),
        Reveal::Score => format!("the raw score ({})", bits_words(r.bits(n))),
    }
}

/// The scoring part of a pending request, as the owner sees it before deciding.
pub fn scoring_view(sc: &ScoringView) -> String {
    let mut s = String::from(
        "  private scoring (2pc): the FI's secret model is computed together with your attributes; \
         neither side sees the other's inputs\n",
    );
    let _ = writeln!(
        s,
        "    attributes used: {} (their values stay on this node)",
        sc.attributes.join(", ")
    );
    let _ = writeln!(s, "    a run reveals:   {}", sc.reveals);
    let _ = writeln!(s, "    revealed to:     {}", sc.to_whom);
    let _ = writeln!(s, "    bits per run:    {}", bits(sc.bits));
    let _ = writeln!(
        s,
        "    model commitment: {} (asserted by the FI: it can be opened to an auditor, but the \
         protocol does not enforce it)",
        sc.commitment
    );
    let _ = writeln!(
        s,
        "    this FI's use:   {} of {} runs in the last {} days, {} revealed",
        sc.runs_used,
        sc.runs_max,
        sc.window_days,
        bits_words(sc.bits_used)
    );
    if sc.bits >= f64::from(Reveal::SCORE_BITS) {
        s.push_str(
            "  WARNING: this asks for the raw score. A raw score can return every attribute listed above, \
             each exactly, in one run: the FI chooses the weights.\n",
        );
    } else {
        s.push_str(
            "  note: the FI chooses the model, so what a run reveals can be any bit of any attribute listed \
             above, not only a credit score.\n",
        );
    }
    s
}

/// What `duo fi score` learned, for the FI operator: the outcome, what it revealed and to whom, the run's
/// costs, the commitment and where its opening is kept, and the receipt.
pub fn score_report(r: &ScoreReport, fi: &str, opening: Option<&Path>) -> String {
    let mut s = format!(
        "scoring request {}, run {}: {}\n",
        r.request, r.run, r.outcome
    );
    let _ = writeln!(
        s,
        "  revealed:   {}, to {fi} (this FI) and to the owner; nothing else",
        reveal_words(r.reveal, r.attributes.len())
    );
    for (i, reason) in r.outcome.reasons().iter().enumerate() {
        let _ = writeln!(
            s,
            "  reason {}:   {} ({reason})",
            i + 1,
            duo_node::proto::scoring::reason_words(reason)
        );
    }
    let _ = writeln!(
        s,
        "  model:      its weights, bias and threshold never left this FI in the clear"
    );
    let _ = writeln!(
        s,
        "  attributes: {} (their values never left the owner's node in the clear)",
        r.attributes.join(", ")
    );
    let _ = writeln!(
        s,
        "  run:        {}, {} bytes on the wire (sent {}, received {}), {:.1} ms",
        if r.cold {
            "cold (with the base OTs)"
        } else {
            "warm (no base OTs: the OT extension kept since pairing or the last run continued)"
        },
        thousands(r.bytes.sent + r.bytes.received),
        thousands(r.bytes.sent),
        thousands(r.bytes.received),
        r.millis
    );
    match (&r.commitment, opening) {
        (Some(c), Some(p)) => {
            let _ = writeln!(
                s,
                "  commitment: {c} (shown to the owner); its opening, for an auditor, is in {}",
                p.display()
            );
        }
        (Some(c), None) => {
            let _ = writeln!(s, "  commitment: {c} (shown to the owner)");
        }
        (None, _) => {
            let _ = writeln!(
                s,
                "  commitment: made when request {} was asked; its opening is in the FI home's models/ folder",
                r.request
            );
        }
    }
    let _ = writeln!(
        s,
        "  receipt:    verified (signed by node key {}..., owner log entry {}) and kept",
        r.receipt.node_key.get(..16).unwrap_or(&r.receipt.node_key),
        r.receipt.log_seq
    );
    s
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A scoring run's progress line: what the FI is doing or waiting for.
pub fn score_progress(what: &str) -> String {
    if what.starts_with("the ") {
        format!("waiting for {what}")
    } else {
        what.to_string()
    }
}

/// One audit-log entry's details in words; kinds without a special form show their JSON body.
pub fn log_summary(kind: &str, body: &str) -> String {
    log_summary_typed(kind, body, None)
}

/// [`log_summary`], with the static type of the request a `release` entry answers (from the store: the entry
/// does not hold it), so money in it is shown in dollars.
pub fn log_summary_typed(kind: &str, body: &str, ty: Option<&Type>) -> String {
    let Ok(b) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    let field = |k: &str| {
        b.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    if let Some(s) = scoring_summary(kind, &b).or_else(|| node_summary(kind, &b)) {
        return s;
    }
    match kind {
        "request" => format!("#{} {}", field("request"), field("description")),
        "request_refused" => format!(
            "a `{}` refused ({}): {}",
            field("message"),
            field("code"),
            field("detail")
        ),
        "decision" => {
            let mut s = format!(
                "#{} {} by {}",
                field("request"),
                field("action"),
                field("by")
            );
            if b.get("rule").is_some() {
                let _ = write!(s, " (rule {})", field("rule"));
            }
            for k in ["why", "reason"] {
                if b.get(k).is_some_and(|v| !v.is_null()) {
                    let _ = write!(s, ": {}", field(k));
                }
            }
            s
        }
        "release" => {
            let answer = b
                .get("answer")
                .and_then(|a| serde_json::from_value::<Answer>(a.clone()).ok())
                .map_or_else(
                    || field("answer"),
                    |a| match (&a, ty) {
                        (a, Some(ty)) => answer(a, ty),
                        (Answer::Scalar { value: v }, None) => value(v),
                        (other, None) => answer(
                            other,
                            &Type::Scalar {
                                dtype: DataType::F64,
                                bounds: None,
                            },
                        ),
                    },
                );
            format!("#{} via {}: {answer}", field("request"), field("backend"))
        }
        "paired" => {
            let mut s = format!(
                "invite {}, FI key {}",
                field("invite"),
                field("fi_key_fingerprint")
            );
            if b.get("replaced_fi_key_fingerprint").is_some() {
                s += &format!(
                    "; {} FI key {} ({}), which no longer works",
                    if b.get("rekey") == Some(&serde_json::Value::Bool(true)) {
                        "re-key: replaces"
                    } else {
                        "replaces"
                    },
                    field("replaced_fi_key_fingerprint"),
                    field("replaced_pairing_state")
                );
            }
            s + &cancelled_invites(&b)
        }
        "revoked" => format!(
            "cancelled requests {}{}",
            field("cancelled_requests"),
            cancelled_invites(&b)
        ),
        "invite_cancelled" => {
            let why = field("why");
            format!(
                "invite {} cancelled by the {}{}{why}",
                field("invite"),
                field("by"),
                if why.is_empty() { "" } else { ": " }
            )
        }
        _ => body.to_string(),
    }
}

/// A budget scope as logged (`{"scope":"global"}`, `{"scope":"principal","name":…}`, …) in words.
fn budget_scope(v: &serde_json::Value) -> String {
    serde_json::from_value::<duo::policies::Scope>(v.clone())
        .map_or_else(|_| v.to_string(), |s| s.to_string())
}

/// The words for the log entries of the node's own housekeeping (metadata views, loads, invites, caps, charges,
/// failed pairings, limits, pressure, the state binding); `None` for other kinds.
fn node_summary(kind: &str, b: &serde_json::Value) -> Option<String> {
    let field = |k: &str| {
        b.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    Some(match kind {
        "metadata_viewed" => format!("viewed the {}", field("what")),
        "dataset_loaded" => format!(
            "dataset `{}` version {} ({} columns)",
            field("dataset"),
            field("version"),
            field("columns")
        ),
        "dataset_deleted" => format!(
            "dataset `{}` deleted ({} version(s))",
            field("dataset"),
            field("versions")
        ),
        "invite_created" => format!(
            "invite {}{}, expires {}",
            field("invite"),
            if b.get("rekey") == Some(&serde_json::Value::Bool(true)) {
                " (re-key)"
            } else {
                ""
            },
            b.get("expires_at")
                .and_then(serde_json::Value::as_i64)
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map_or_else(|| field("expires_at"), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        ),
        "budget_set" => format!(
            "{}: cap {} {} (was {})",
            b.get("scope")
                .map_or_else(String::new, budget_scope),
            field("cap"),
            field("measure"),
            b.get("previous")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("none")
        ),
        "budget_charged" => format!("#{} charged {}", field("request"), field("amount")),
        "pairing_failed" => format!("invite {}: {}", field("invite"), field("why")),
        "limit_exceeded" => format!("over its {} limit", field("limit")),
        "connections_dropped" => format!(
            "under pressure for {} s: {} evicted, {} refused, {} silent, {} over the session places",
            field("seconds"),
            field("evicted"),
            field("refused"),
            field("timed_out"),
            field("sessions_full")
        ),
        "state_bound" => {
            "from here on the ledger, decisions, stored answers and pairings are bound to this log".to_string()
        }
        _ => return None,
    })
}

/// The words for a private-scoring log entry (`scoring-start`, `scoring-end`, `scoring-refused`); `None` for
/// other kinds.
fn scoring_summary(kind: &str, b: &serde_json::Value) -> Option<String> {
    let field = |k: &str| {
        b.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    let reveal = || {
        b.get("reveal")
            .and_then(|r| serde_json::from_value::<Reveal>(r.clone()).ok())
            .map_or_else(|| field("reveal"), |r| r.to_string())
    };
    Some(match kind {
        "scoring-start" => {
            let attrs = b
                .get("attributes")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let commitment = field("commitment");
            format!(
                "#{} run {} started (run {} of {} in the window): reveals {} ({}) over {attrs}; \
                 model commitment {}...",
                field("request"),
                field("run"),
                field("runs_in_window"),
                field("max_runs"),
                reveal(),
                bits_words(b.get("bits").and_then(|x| x.as_f64()).unwrap_or(0.0)),
                commitment.get(..16).unwrap_or(&commitment)
            )
        }
        "scoring-end" => {
            let cost = format!(
                "{} bytes, {:.1} ms",
                thousands(b.get("bytes").and_then(|x| x.as_u64()).unwrap_or(0)),
                b.get("millis").and_then(|x| x.as_f64()).unwrap_or(0.0)
            );
            match b
                .get("outcome")
                .and_then(|o| serde_json::from_value::<ScoreOutcome>(o.clone()).ok())
            {
                Some(o) => format!(
                    "#{} run {} finished: {o} ({cost})",
                    field("request"),
                    field("run")
                ),
                None => format!(
                    "#{} run {} aborted: {} ({cost})",
                    field("request"),
                    field("run"),
                    field("aborted")
                ),
            }
        }
        "scoring-refused" => format!("#{} run refused: {}", field("request"), field("why")),
        _ => return None,
    })
}

/// `; cancelled invites a, b` when a log entry's `cancelled_invites` is not empty.
fn cancelled_invites(b: &serde_json::Value) -> String {
    let ids: Vec<&str> = b
        .get("cancelled_invites")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        String::new()
    } else {
        format!("; cancelled invite(s) {}", ids.join(", "))
    }
}

/// One audit-log entry on one line: sequence number, time, kind, principal, details.
pub fn log_entry(e: &LogEntry, ty: Option<&Type>) -> String {
    format!(
        "{:>5} {} {:<16} {:<14} {}",
        e.seq,
        e.ts,
        e.kind,
        e.principal.as_deref().unwrap_or("-"),
        log_summary_typed(&e.kind, &e.body, ty)
    )
}

/// The static type of the request a `release` log entry answers, read from the owner's store (the store's
/// function, which the web UI's log uses too).
pub fn release_type(store: &duo::node::store::Store, e: &LogEntry) -> Option<Type> {
    duo::node::store::release_type(store, e)
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
            "{}()  -> {} in [{}, {}] {}, over {}\n    {}\n    reads: {}\n    as a decline reason: \"{}\"",
            e.name,
            e.output.name(),
            e.bounds.lo,
            e.bounds.hi,
            e.unit,
            e.window,
            e.description,
            e.inputs.join(", "),
            duo::node::proto::scoring::reason_words(&e.name)
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

    #[test]
    fn money_is_shown_as_money_wherever_a_person_reads_it() {
        let money = Type::Scalar {
            dtype: DataType::Money,
            bounds: None,
        };
        // A mean of money is a fraction of cents: dollars to the cent, not `282379.0000`.
        let mean = Answer::Scalar {
            value: Value::Float(282_379.0),
        };
        assert_eq!(answer(&mean, &money), "$2,823.79");
        assert_eq!(within95(Some(2_995_732.8), &money), "±$29,957.33 at 95%");
        let count = Type::Scalar {
            dtype: DataType::I64,
            bounds: None,
        };
        assert_eq!(within95(Some(3.04), &count), "±3.0 at 95%");
        let table = Type::Table {
            dataset: "rent".into(),
            columns: vec![
                ("month".into(), DataType::Category),
                ("amount".into(), DataType::Money),
            ],
            max_rows: 2,
            window: None,
        };
        let rows = Answer::Rows {
            columns: vec!["month".into(), "amount".into()],
            rows: vec![vec![Value::Str("2026-01".into()), Value::Int(150_000)]],
        };
        assert!(
            answer(&rows, &table).ends_with("\"2026-01\", $1,500.00"),
            "{}",
            answer(&rows, &table)
        );
    }

    /// Every kind of entry the node logs reads as words, not as its JSON body.
    #[test]
    fn every_logged_kind_reads_in_words() {
        let bodies = [
            ("metadata_viewed", r#"{"what":"catalogue"}"#),
            (
                "dataset_loaded",
                r#"{"dataset":"rent","version":2,"columns":3}"#,
            ),
            ("dataset_deleted", r#"{"dataset":"rent","versions":2}"#),
            (
                "invite_created",
                r#"{"invite":"abcd2345","expires_at":1796625023,"pairing_secs":60,"rekey":false}"#,
            ),
            (
                "budget_set",
                r#"{"scope":{"scope":"principal","name":"Acme"},"cap":"1","previous":null,"measure":"epsilon"}"#,
            ),
            (
                "budget_charged",
                r#"{"request":3,"amount":"0.5","datasets":["rent"]}"#,
            ),
            (
                "pairing_failed",
                r#"{"invite":"abcd2345","why":"wrong invite secret"}"#,
            ),
            ("limit_exceeded", r#"{"limit":"requests"}"#),
            (
                "connections_dropped",
                r#"{"seconds":60,"evicted":3,"refused":0,"timed_out":1,"sessions_full":0}"#,
            ),
            ("state_bound", r#"{"format":2}"#),
            (
                "request_refused",
                r#"{"message":"request","code":"refused","detail":"the reason is empty"}"#,
            ),
        ];
        for (kind, body) in bodies {
            let s = log_summary(kind, body);
            assert!(!s.starts_with('{') && !s.contains("\":"), "{kind}: {s}");
        }
        let set = log_summary("budget_set", bodies[4].1);
        assert!(
            set.contains("Acme") && set.contains("cap 1 epsilon (was none)"),
            "{set}"
        );
    }

    #[test]
    fn bits_drop_trailing_zeros() {
        assert_eq!(bits(1.0), "1");
        assert_eq!(bits(4f64.log2()), "2");
        assert_eq!(bits(3f64.log2()), "1.585");
        assert_eq!(bits(0.0), "0");
        assert_eq!(bits_words(1.0), "1 bit");
        assert_eq!(bits_words(64.0), "64 bits");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn scoring_log_entries_read_as_words() {
        let start = serde_json::json!({
            "request": 4, "run": 2, "attributes": ["income_cv_12m", "rent_on_time_ratio_12m"],
            "reveal": {"kind": "bands", "k": 4}, "bits": 2.0, "commitment": "ab".repeat(32),
            "runs_in_window": 2, "max_runs": 3,
        });
        let s = log_summary("scoring-start", &start.to_string());
        assert_eq!(
            s,
            "#4 run 2 started (run 2 of 3 in the window): reveals 4 bands (2 bits) over \
             income_cv_12m, rent_on_time_ratio_12m; model commitment abababababababab..."
        );
        let end = serde_json::json!({
            "request": 4, "run": 2, "outcome": {"kind": "decision", "approve": true},
            "bytes": 123456, "millis": 12.25,
        });
        assert_eq!(
            log_summary("scoring-end", &end.to_string()),
            "#4 run 2 finished: approve (score reaches the threshold) (123,456 bytes, 12.2 ms)"
        );
        let aborted = serde_json::json!({
            "request": 4, "run": 2, "aborted": "the channel failed: closed", "bytes": 0, "millis": 3.0,
        });
        assert_eq!(
            log_summary("scoring-end", &aborted.to_string()),
            "#4 run 2 aborted: the channel failed: closed (0 bytes, 3.0 ms)"
        );
        let refused = serde_json::json!({ "request": 9, "why": "3 of 3 scoring runs used" });
        assert_eq!(
            log_summary("scoring-refused", &refused.to_string()),
            "#9 run refused: 3 of 3 scoring runs used"
        );
        let release = serde_json::json!({
            "request": 4, "backend": "2pc",
            "answer": {"kind": "scalar", "value": {"type": "bool", "value": true}}, "cost_nanos": 0,
        });
        assert_eq!(
            log_summary("release", &release.to_string()),
            "#4 via 2pc: true"
        );
        // Unknown kinds and bodies that are not JSON are shown as they are.
        assert_eq!(log_summary("something_new", "{\"x\":1}"), "{\"x\":1}");
        assert_eq!(log_summary("scoring-end", "not json"), "not json");
    }

    #[test]
    fn pairing_log_entries_name_replaced_keys_and_cancelled_invites() {
        let first = serde_json::json!({
            "invite": "aaaa", "fi_key_fingerprint": "fp1", "rekey": false, "cancelled_invites": ["bbbb"],
        });
        assert_eq!(
            log_summary("paired", &first.to_string()),
            "invite aaaa, FI key fp1; cancelled invite(s) bbbb"
        );
        let rekey = serde_json::json!({
            "invite": "cccc", "fi_key_fingerprint": "fp2", "rekey": true, "cancelled_invites": [],
            "replaced_fi_key_fingerprint": "fp1", "replaced_pairing_state": "active",
        });
        assert_eq!(
            log_summary("paired", &rekey.to_string()),
            "invite cccc, FI key fp2; re-key: replaces FI key fp1 (active), which no longer works"
        );
        let revoked =
            serde_json::json!({ "cancelled_requests": [3], "cancelled_invites": ["dddd"] });
        assert_eq!(
            log_summary("revoked", &revoked.to_string()),
            "cancelled requests [3]; cancelled invite(s) dddd"
        );
        let cancelled = serde_json::json!({ "invite": "dddd", "by": "owner" });
        assert_eq!(
            log_summary("invite_cancelled", &cancelled.to_string()),
            "invite dddd cancelled by the owner"
        );
        let upgrade =
            serde_json::json!({ "invite": "eeee", "by": "upgrade", "why": "made before" });
        assert_eq!(
            log_summary("invite_cancelled", &upgrade.to_string()),
            "invite eeee cancelled by the upgrade: made before"
        );
    }

    #[test]
    fn raw_score_requests_carry_a_warning() {
        let view = ScoringView {
            attributes: vec!["rent_on_time_ratio_12m".into()],
            reveals: Reveal::Score.describe(),
            to_whom: "Acme and you".into(),
            bits: Reveal::Score.bits(1),
            commitment: "cd".repeat(32),
            runs_used: 1,
            runs_max: 3,
            window_days: 30,
            bits_used: 1.0,
        };
        let s = scoring_view(&view);
        assert!(s.contains("WARNING"), "{s}");
        assert!(
            s.contains("can return every attribute listed above, each exactly, in one run"),
            "{s}"
        );
        assert!(
            s.contains("1 of 3 runs in the last 30 days, 1 bit revealed"),
            "{s}"
        );
        assert!(s.contains("not enforce"), "{s}");
        let decision = ScoringView {
            reveals: Reveal::Decision.describe(),
            bits: 1.0,
            ..view
        };
        let d = scoring_view(&decision);
        assert!(!d.contains("WARNING"), "{d}");
        assert!(d.contains("any bit of any attribute listed above"), "{d}");
    }
}
