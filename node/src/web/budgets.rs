//! The Budgets screen: every privacy budget with what it means in plain words, a form setting a cap (what
//! `duo owner budget set` does, through the same [`Owner::set_cap`]; lowering a cap asks first), and a chart of
//! the spending over time drawn on the server as SVG, with a table of the same figures.

use super::{chrome, csrf_ok, html, owner_do, shown, Chrome, Page, PageError, St};
use crate::error::Error;
use crate::owner::Owner;
use crate::store::prelude::*;
use askama::Template;
use axum::extract::{Form, State as Ext};
use axum::http::StatusCode;
use duo_policies::{Amount, Ledger, Measure, Scope};
use serde::Deserialize;

/// The delta at which a rho is also read as an epsilon (as `duo owner budget` shows it).
const DISPLAY_DELTA: f64 = 1e-6;

/// One budget as the page lists it.
pub(super) struct AccountLine {
    /// Whose budget, in words.
    who: String,
    /// The cap in words, or "no cap".
    cap: String,
    spent: String,
    left: String,
    spent_nanos: u64,
    cap_nanos: u64,
    /// What the cap means for the person, when there is one.
    meaning: Option<String>,
}

/// The chart's drawing and its figures.
pub(super) struct Chart {
    /// The step line of the total spent, as SVG path data (numbers only).
    path: String,
    /// The height of the global cap's line, when a cap is set and drawn.
    cap_y: Option<u32>,
    /// Labels of the vertical axis: (baseline y, text).
    y_labels: Vec<(u32, String)>,
    /// The first and last dates under the horizontal axis.
    x_from: String,
    x_to: String,
    /// One sentence of what the chart shows (its `<desc>`).
    desc: String,
    /// The same figures per day: date, charges, spent that day, spent in all by its end.
    days: Vec<(String, usize, String, String)>,
}

/// Chart geometry, in SVG user units.
const W: u32 = 640;
const H: u32 = 240;
const LEFT: u32 = 90;
const TOP: u32 = 12;
const BOTTOM: u32 = 30;
const RIGHT: u32 = 12;

#[derive(Template)]
#[template(path = "budgets.html")]
pub(super) struct BudgetsPage {
    c: Chrome,
    notice: Option<(bool, String)>,
    /// `epsilon` or `rho`.
    measure: String,
    /// What one unit of the measure means, in words.
    unit: String,
    /// No cap and no charge yet: the first cap chooses the measure.
    blank: bool,
    /// The global budget has no cap: every noisy answer is refused.
    no_global: bool,
    accounts: Vec<AccountLine>,
    /// `(value, words)` of the scopes a cap can be set on.
    scopes: Vec<(String, String)>,
    chart: Option<Chart>,
    /// A lowering waiting for the person's confirmation.
    confirm: Option<Lowering>,
}

/// A cap about to be lowered: what the confirmation says and the form it posts again.
pub(super) struct Lowering {
    scope: String,
    amount: String,
    measure: String,
    text: String,
}

/// A scope in words a person reads.
fn who(scope: &Scope) -> String {
    match scope {
        Scope::Global => "Everyone together (the global budget)".into(),
        Scope::Principal(p) => format!("Lender {}", shown(p)),
        Scope::Dataset(d) => format!("Dataset {}", shown(d)),
    }
}

/// A scope as the form's value.
fn scope_value(scope: &Scope) -> String {
    match scope {
        Scope::Global => "global".into(),
        Scope::Principal(p) => format!("fi:{p}"),
        Scope::Dataset(d) => format!("dataset:{d}"),
    }
}

fn parse_scope(value: &str) -> Option<Scope> {
    match value.split_once(':') {
        None if value == "global" => Some(Scope::Global),
        Some(("fi", p)) if !p.trim().is_empty() => Some(Scope::Principal(p.to_string())),
        Some(("dataset", d)) if !d.trim().is_empty() => Some(Scope::Dataset(d.to_string())),
        _ => None,
    }
}

/// The epsilon an amount guarantees (itself on a pure-DP node; on a zCDP node at delta 1e-6).
fn as_epsilon(amount: Amount, measure: Measure) -> Option<f64> {
    let eps = match measure {
        Measure::PureEpsilon => amount,
        Measure::Zcdp => duo_policies::zcdp_epsilon(amount, DISPLAY_DELTA).ok()?,
    };
    Some(eps.nanos() as f64 / 1e9)
}

/// What a cap means: how much surer of anything about the person all answers together can make anyone.
fn meaning(cap: Amount, measure: Measure) -> Option<String> {
    let factor = as_epsilon(cap, measure)?.exp();
    Some(if factor < 1.005 {
        "the answers together reveal next to nothing about you".into()
    } else if factor < 1000.0 {
        format!(
            "whatever lenders ask, the answers together can make them at most {factor:.2} times surer of \
             anything about you than they would be without your data"
        )
    } else {
        "a very weak limit: the answers together may reveal a lot about you".into()
    })
}

/// What one unit of the measure means, in plain words.
fn unit_words(measure: Measure) -> String {
    match measure {
        Measure::PureEpsilon => "Budgets are counted in epsilon: 0 reveals nothing, smaller is more private, and \
            at epsilon 1 the answers together can make a lender at most 2.72 times (e¹) surer of anything about \
            you than it would be without your data."
            .into(),
        Measure::Zcdp => "Budgets are counted in rho (zero-concentrated differential privacy); each amount is \
            also shown as the epsilon it guarantees, except with a one-in-a-million chance (delta 1e-6): smaller \
            is more private."
            .into(),
    }
}

fn page_data(o: &Owner, amount: fn(Amount, Measure) -> String) -> Result<BudgetsPage, Error> {
    let s = o.store();
    let ledger = s.ledger()?;
    let measure = ledger.measure();
    let accounts = ledger
        .accounts()
        .into_iter()
        .map(|(scope, a)| AccountLine {
            who: who(&scope),
            cap: a.cap.map_or("no cap".into(), |c| amount(c, measure)),
            spent: amount(a.spent, measure),
            left: a.remaining().map_or("-".into(), |c| amount(c, measure)),
            spent_nanos: a.spent.nanos(),
            cap_nanos: a.cap.map_or(0, |c| c.nanos()),
            meaning: a.cap.and_then(|c| meaning(c, measure)),
        })
        .collect();
    let mut scopes = vec![(scope_value(&Scope::Global), who(&Scope::Global))];
    for p in s.pairings()? {
        let scope = Scope::Principal(p.principal);
        scopes.push((scope_value(&scope), who(&scope)));
    }
    for d in s.datasets()? {
        let scope = Scope::Dataset(d.meta.name);
        scopes.push((scope_value(&scope), who(&scope)));
    }
    scopes.dedup();
    let spending = s.budget_spending()?;
    Ok(BudgetsPage {
        c: blank_chrome(),
        notice: None,
        measure: measure.name().to_string(),
        unit: unit_words(measure),
        blank: ledger.is_blank(),
        no_global: ledger.account(&Scope::Global).cap.is_none(),
        accounts,
        scopes,
        chart: chart(&spending, &ledger, amount),
        confirm: None,
    })
}

fn blank_chrome() -> Chrome {
    Chrome {
        csrf: String::new(),
        title: "",
        nav: "",
    }
}

/// The total spent over time as a step line, the global cap as a dashed line, and the figures per day.
fn chart(
    spending: &[(String, Amount)],
    ledger: &Ledger,
    amount: fn(Amount, Measure) -> String,
) -> Option<Chart> {
    let measure = ledger.measure();
    let times: Vec<(i64, u64)> = spending
        .iter()
        .filter_map(|(at, a)| Some((crate::store::parse_ts(at)?.timestamp(), a.nanos())))
        .collect();
    // The line runs on to now: a budget nobody spent from lately stays flat up to today.
    let now = chrono::Utc::now().timestamp();
    let (first, last) = (times.first()?.0, times.last()?.0.max(now));
    let total: u64 = times.iter().map(|t| t.1).sum();
    let cap = ledger.account(&Scope::Global).cap.map(|c| c.nanos());
    let top = total.max(cap.unwrap_or(0)).max(1);
    let (plot_w, plot_h) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let span = (last - first).max(1) as f64;
    let x = |t: i64| LEFT as f64 + (t - first) as f64 / span * plot_w;
    let y = |v: u64| TOP as f64 + plot_h - v as f64 / top as f64 * plot_h;
    let mut path = format!("M{:.1} {:.1}", x(first), y(0));
    let mut sum = 0u64;
    for (t, a) in &times {
        sum += a;
        path.push_str(&format!(" H{:.1} V{:.1}", x(*t), y(sum)));
    }
    path.push_str(&format!(" H{:.1}", LEFT as f64 + plot_w));
    let label = |v: u64| amount(Amount::from_nanos(v), measure);
    // The axis is narrow: its labels in the node's own measure only.
    let short = |v: u64| format!("{} {}", Amount::from_nanos(v), measure.name());
    let y_labels = [0, top / 2, top]
        .into_iter()
        .map(|v| (y(v) as u32 + 4, short(v)))
        .collect();
    let mut days: Vec<(String, usize, u64, u64)> = Vec::new();
    let mut sum = 0u64;
    for (t, a) in &times {
        sum += a;
        let day = super::date(*t);
        match days.last_mut() {
            Some(d) if d.0 == day => {
                d.1 += 1;
                d.2 += a;
                d.3 = sum;
            }
            _ => days.push((day, 1, *a, sum)),
        }
    }
    let (x_from, x_to) = (super::date(first), super::date(last));
    let desc = format!(
        "In all {} was spent in {} charge(s) between {} and {}{}.",
        label(total),
        times.len(),
        x_from,
        x_to,
        cap.map_or(String::new(), |c| format!(
            "; the cap for everyone together (dashed line) is {}",
            label(c)
        ))
    );
    Some(Chart {
        path,
        cap_y: cap.map(|c| y(c) as u32),
        y_labels,
        x_from,
        x_to,
        desc,
        days: days
            .into_iter()
            .map(|(d, n, spent, sum)| (d, n, label(spent), label(sum)))
            .collect(),
    })
}

/// The Budgets screen.
pub(super) async fn page(Ext(st): Ext<St>) -> Page {
    let amount = st.cfg.words.amount;
    let mut p = owner_do!(&st, move |o: &mut Owner| page_data(o, amount));
    p.c = chrome(&st, "Budgets", "budgets");
    Ok(html(&p))
}

/// The form setting a cap.
#[derive(Deserialize)]
pub(super) struct CapForm {
    csrf: String,
    /// `global`, `fi:NAME` or `dataset:NAME`.
    scope: String,
    /// The cap, a decimal number.
    amount: String,
    /// `epsilon` or `rho`: chosen by the first cap only; later ones are in the node's measure.
    #[serde(default)]
    measure: Option<String>,
    /// `yes` once the person confirmed lowering the cap.
    #[serde(default)]
    confirm: Option<String>,
}

/// Set a cap as `duo owner budget set` does; lowering one (below what is spent or not) shows what it means and
/// asks first.
pub(super) async fn set(Ext(st): Ext<St>, Form(f): Form<CapForm>) -> Page {
    csrf_ok(&st, &f.csrf)?;
    let bad = |why: String| PageError(StatusCode::BAD_REQUEST, why);
    let scope = parse_scope(&f.scope)
        .ok_or_else(|| bad("choose whose budget to set from the list".into()))?;
    let text = f.amount.trim().to_string();
    let cap: Amount = text.parse().map_err(|e| {
        bad(format!(
            "`{}` is not a budget ({e}): write a number such as 1 or 0.5",
            shown(&text)
        ))
    })?;
    let asked = match f.measure.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(m) => Some(
            m.parse::<Measure>()
                .map_err(|_| bad("choose epsilon or rho".into()))?,
        ),
    };
    let confirmed = f.confirm.as_deref() == Some("yes");
    let amount = st.cfg.words.amount;
    let result = owner_do!(&st, move |o: &mut Owner| {
        let ledger = o.store().ledger()?;
        let measure = asked.unwrap_or(ledger.measure());
        let account = ledger.account(&scope);
        if let (Some(old), false) = (account.cap, confirmed) {
            if cap < old {
                let mut p = page_data(o, amount)?;
                p.confirm = Some(Lowering {
                    scope: scope_value(&scope),
                    amount: cap.to_string(),
                    measure: measure.name().to_string(),
                    text: lowering_words(&scope, old, cap, account.spent, measure, amount),
                });
                return Ok(p);
            }
        }
        o.set_cap(&scope, cap, measure)?;
        let mut p = page_data(o, amount)?;
        p.notice = Some((true, format!("{scope}: cap {}", amount(cap, measure))));
        Ok(p)
    });
    let mut p = result;
    p.c = chrome(&st, "Budgets", "budgets");
    Ok(html(&p))
}

/// What lowering a cap does, for the confirmation.
fn lowering_words(
    scope: &Scope,
    old: Amount,
    new: Amount,
    spent: Amount,
    measure: Measure,
    amount: fn(Amount, Measure) -> String,
) -> String {
    let then = if new <= spent {
        format!(
            "{} is already spent, so no more noisy answers will be given under this budget.",
            amount(spent, measure)
        )
    } else {
        format!(
            "{} is already spent, so {} will be left.",
            amount(spent, measure),
            amount(new.saturating_sub(spent), measure)
        )
    };
    format!(
        "You are lowering the cap of {} from {} to {}. {then} Nothing already answered is taken back.",
        who(scope),
        amount(old, measure),
        amount(new, measure)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(a: Amount, m: Measure) -> String {
        format!("{a} {}", m.name())
    }

    #[test]
    fn the_chart_steps_up_by_each_charge_to_the_total_under_the_cap() {
        let mut ledger = Ledger::new(Measure::PureEpsilon);
        ledger.set_cap(&Scope::Global, "2".parse().unwrap());
        let spending = vec![
            (
                "2026-01-01T10:00:00.000Z".to_string(),
                "0.5".parse().unwrap(),
            ),
            (
                "2026-01-02T10:00:00.000Z".to_string(),
                "0.25".parse().unwrap(),
            ),
            (
                "2026-01-02T11:00:00.000Z".to_string(),
                "0.25".parse().unwrap(),
            ),
        ];
        let c = chart(&spending, &ledger, words).unwrap();
        // The plot spans y 12 (the top, the cap of 2) to 210 (zero): the total of 1 sits at half height.
        assert!(c.path.starts_with("M90.0 210.0 H90.0 V160.5"), "{}", c.path);
        assert!(c.path.contains(" V111.0 H"), "the total of 1: {}", c.path);
        assert_eq!(c.cap_y, Some(12));
        assert_eq!(c.days.len(), 2);
        assert_eq!(
            c.days[1],
            (
                "2 January 2026".into(),
                2,
                "0.5 epsilon".into(),
                "1 epsilon".into()
            )
        );
        assert!(c
            .desc
            .starts_with("In all 1 epsilon was spent in 3 charge(s) between 1 January 2026 and "));
        assert!(
            chart(&[], &ledger, words).is_none(),
            "no chart before the first charge"
        );
    }

    #[test]
    fn scopes_round_trip_through_the_form_and_nothing_else_is_one() {
        for scope in [
            Scope::Global,
            Scope::Principal("Acme: Bank".into()),
            Scope::Dataset("rent".into()),
        ] {
            assert_eq!(parse_scope(&scope_value(&scope)), Some(scope));
        }
        for bad in ["", "fi:", "dataset: ", "everyone", "user:x"] {
            assert_eq!(parse_scope(bad), None, "{bad}");
        }
    }
}
