//! `duo owner budget ...`: privacy budget caps, what has been spent, and private scoring's use per FI.

use super::{ensure_owner, open_owner, print_json, JsonFlag};
use crate::cli::out::outln;
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use duo::node::store::prelude::*;
use duo::policies::{Amount, Ledger, Measure, Scope, ScoringLimits};
use serde_json::{json, Value};
use std::path::Path;

/// `duo owner budget ...`.
#[derive(Subcommand, Debug)]
pub enum BudgetCmd {
    /// Set a cap (the global cap without --fi or --dataset). Only this command raises a cap.
    Set {
        /// Cap this FI's spending.
        #[arg(long = "fi", conflicts_with = "dataset")]
        principal: Option<String>,
        /// Cap the spending on this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// The cap, in epsilon (pure-DP nodes).
        #[arg(long, conflicts_with = "rho", required_unless_present = "rho")]
        epsilon: Option<String>,
        /// The cap, in rho (zCDP nodes).
        #[arg(long)]
        rho: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show caps, spent, remaining and the history of charges.
    Show {
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Run one budget command.
pub fn run(cmd: BudgetCmd, home: &Path) -> Result<i32> {
    match cmd {
        BudgetCmd::Set {
            principal,
            dataset,
            epsilon,
            rho,
            json,
        } => {
            let scope = match (principal, dataset) {
                (Some(p), _) => Scope::Principal(p),
                (None, Some(d)) => Scope::Dataset(d),
                (None, None) => Scope::Global,
            };
            set(home, scope, epsilon, rho, json)
        }
        BudgetCmd::Show { json } => show(home, json),
    }
}

/// `duo owner budget set`: one cap, in the node's measure.
fn set(
    home: &Path,
    scope: Scope,
    epsilon: Option<String>,
    rho: Option<String>,
    json: JsonFlag,
) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let mut o = open_owner(&dir)?;
    let (text, measure) = match (epsilon, rho) {
        (Some(e), None) => (e, Measure::PureEpsilon),
        (None, Some(r)) => (r, Measure::Zcdp),
        _ => bail!("give exactly one of --epsilon or --rho"),
    };
    let amount: Amount = text
        .parse()
        .map_err(|e| anyhow!("`{text}` is not a budget: {e}"))?;
    o.set_cap(&scope, amount, measure)?;
    // DP needs the global cap: a cap for one FI or dataset alone lets nothing through.
    let global_set = o
        .store()
        .ledger()?
        .accounts()
        .iter()
        .any(|(s, a)| matches!(s, Scope::Global) && a.cap.is_some());
    let warning = (!global_set).then(|| {
        format!(
            "no global budget is set, so every DP request is still refused: this cap only narrows the global one; \
             set it with `duo owner budget set --{} X`",
            measure.name()
        )
    });
    if json.json {
        let mut out =
            json!({ "scope": scope, "cap": amount.to_string(), "measure": measure.name() });
        if let Some(eps) = epsilon_at_delta(measure, amount) {
            out["cap_epsilon_delta"] = eps;
        }
        if let Some(w) = &warning {
            out["warning"] = json!(w);
        }
        print_json(&out)?;
    } else {
        outln!("{scope}: cap {}", with_equivalent(amount, measure))?;
        if let Some(w) = &warning {
            outln!("warning: {w}")?;
        }
    }
    Ok(0)
}

/// The delta at which a rho is also shown as an (epsilon, delta) guarantee.
pub(crate) const DISPLAY_DELTA: f64 = 1e-6;

/// An amount in `measure` as a person reads it: `0.5 epsilon`, or on a zCDP node `0.5 rho (epsilon 5.757 at
/// delta 1e-6)`, the epsilon by [`duo::policies::zcdp_epsilon`] (Bun and Steinke's conversion, rounded up).
pub(crate) fn with_equivalent(amount: Amount, measure: Measure) -> String {
    match measure {
        Measure::PureEpsilon => format!("{amount} epsilon"),
        Measure::Zcdp => match duo::policies::zcdp_epsilon(amount, DISPLAY_DELTA) {
            Ok(e) => format!("{amount} rho (epsilon {e} at delta {DISPLAY_DELTA:e})"),
            Err(_) => format!("{amount} rho"),
        },
    }
}

/// [`with_equivalent`] from the wire's strings (an amount and a measure name); the text as given if either does
/// not parse.
pub(crate) fn with_equivalent_str(amount: &str, measure: &str) -> String {
    match (amount.parse::<Amount>(), measure.parse::<Measure>()) {
        (Ok(a), Ok(m)) => with_equivalent(a, m),
        _ => format!("{amount} {measure}"),
    }
}

/// On a zCDP node, the (epsilon, delta) guarantee of a rho, as JSON: `{"epsilon": "5.757", "delta": 1e-6}`.
fn epsilon_at_delta(measure: Measure, rho: Amount) -> Option<Value> {
    (measure == Measure::Zcdp)
        .then(|| duo::policies::zcdp_epsilon(rho, DISPLAY_DELTA).ok())
        .flatten()
        .map(|e| json!({ "epsilon": e.to_string(), "delta": DISPLAY_DELTA }))
}

/// `duo owner budget show`: caps, spent, remaining, every charge, and scoring runs and bits per FI.
fn show(home: &Path, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let o = open_owner(&dir)?;
    let ledger = o.store().ledger()?;
    let measure = ledger.measure();
    let history: Vec<Value> = o
        .store()
        .budget_history()?
        .into_iter()
        .map(|c| {
            let mut h = json!({
                "request": c.request, "at": c.at, "principal": c.principal, "datasets": c.datasets,
                "amount": c.amount.to_string(),
            });
            if let Some(eps) = epsilon_at_delta(measure, c.amount) {
                h["amount_epsilon_delta"] = eps;
            }
            h
        })
        .collect();
    let (policy, _) = o.policy()?;
    let limits = *policy.scoring_limits();
    let by_fi: Vec<_> = duo::node::owner::scoring::scoring_usage(&o, &limits)?
        .into_iter()
        .map(|(principal, used)| {
            json!({
                "principal": principal,
                "runs": used.runs,
                "bits": used.millibits as f64 / 1000.0,
            })
        })
        .collect();
    if json.json {
        print_json(&json!({
            "measure": ledger.measure().name(), "accounts": accounts(&ledger), "history": history,
            "scoring": json!({
                "window_days": limits.window_days,
                "max_runs": limits.max_runs,
                "max_bits": limits.max_bits,
                "by_fi": by_fi,
            }),
        }))?;
    } else {
        print_accounts(&ledger)?;
        print_history(&history, measure)?;
        print_scoring(&limits, &by_fi)?;
    }
    Ok(0)
}

/// Every account of the ledger as JSON: scope, cap, spent and remaining; on a zCDP node also the cap and the
/// spent amount as (epsilon, delta) guarantees (a remaining rho has no such meaning: epsilons do not subtract).
fn accounts(ledger: &Ledger) -> Vec<Value> {
    let measure = ledger.measure();
    ledger
        .accounts()
        .into_iter()
        .map(|(scope, a)| {
            let mut v = json!({
                "scope": scope,
                "cap": a.cap.map(|c| c.to_string()),
                "spent": a.spent.to_string(),
                "remaining": a.remaining().map(|c| c.to_string()),
            });
            if let Some(eps) = a.cap.and_then(|c| epsilon_at_delta(measure, c)) {
                v["cap_epsilon_delta"] = eps;
            }
            if let Some(eps) = epsilon_at_delta(measure, a.spent) {
                v["spent_epsilon_delta"] = eps;
            }
            v
        })
        .collect()
}

/// The caps, one line each; on a zCDP node the cap and the spent amount also in (epsilon, delta) at
/// delta = 1e-6.
fn print_accounts(ledger: &Ledger) -> Result<()> {
    outln!(
        "privacy budgets ({}; one unit of privacy protects what each dataset's privacy unit says)",
        ledger.measure().name()
    )?;
    if ledger.accounts().is_empty() {
        outln!(
            "  no budget set: dp requests are refused; set one with `duo owner budget set --epsilon 1`"
        )?;
    }
    let zcdp = ledger.measure() == Measure::Zcdp;
    let as_eps = |rho: Amount| {
        duo::policies::zcdp_epsilon(rho, DISPLAY_DELTA)
            .map_or_else(|_| "?".to_string(), |e| e.to_string())
    };
    for (scope, a) in ledger.accounts() {
        outln!(
            "  {:<40} cap {:<12} spent {:<12} remaining {}{}",
            scope.to_string(),
            a.cap.map_or("-".to_string(), |c| c.to_string()),
            a.spent.to_string(),
            a.remaining().map_or("-".to_string(), |c| c.to_string()),
            match (zcdp, a.cap) {
                (true, Some(cap)) => format!(
                    "; as (epsilon, delta {DISPLAY_DELTA:e}): cap {}, spent {}",
                    as_eps(cap),
                    as_eps(a.spent)
                ),
                (true, None) => format!(
                    "; as (epsilon, delta {DISPLAY_DELTA:e}): spent {}",
                    as_eps(a.spent)
                ),
                _ => String::new(),
            }
        )?;
    }
    Ok(())
}

/// Every charge, oldest first (nothing when there was none).
fn print_history(history: &[Value], measure: Measure) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    outln!("history:")?;
    for h in history {
        outln!(
            "  request {} at {}: {} to {} on {}",
            h["request"],
            h["at"].as_str().unwrap_or(""),
            with_equivalent_str(h["amount"].as_str().unwrap_or(""), measure.name()),
            h["principal"].as_str().unwrap_or(""),
            h["datasets"]
        )?;
    }
    Ok(())
}

/// The policy's scoring limits and each FI's runs and bits in the window.
fn print_scoring(limits: &ScoringLimits, by_fi: &[Value]) -> Result<()> {
    outln!(
        "private scoring (2pc), last {} days: at most {} runs{} per FI",
        limits.window_days,
        limits.max_runs,
        limits
            .max_bits
            .map_or(String::new(), |b| format!(" and {b} bits"))
    )?;
    if by_fi.is_empty() {
        outln!("  no scoring runs in the window")?;
    }
    for f in by_fi {
        outln!(
            "  {:<40} {} run(s), {} bit(s) revealed",
            f["principal"].as_str().unwrap_or(""),
            f["runs"],
            f["bits"]
        )?;
    }
    Ok(())
}
