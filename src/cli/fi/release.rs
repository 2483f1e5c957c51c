//! `duo fi cost` and `duo fi request`: previewing and asking for releases of expressions.

use super::super::{print_json, show, JsonFlag};
use crate::cli::out::{errln, out, outln};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use duo::node::fi::{Client, FiHome, Pointer};
use duo::node::proto::request::DpParams;
use duo::node::proto::request::RequestState;
use duo::node::proto::ServerMsg;
use duo::policies::{Amount, Backend};
use serde_json::{json, Value};
use std::time::Duration;

/// What a DP request spends: an epsilon, a rho, or a target accuracy.
#[derive(Args, Debug, Clone)]
pub struct DpArgs {
    /// Privacy cost in epsilon (with --backend dp).
    #[arg(long, conflicts_with_all = ["rho", "alpha"])]
    epsilon: Option<f64>,
    /// Privacy cost in rho, on zCDP nodes (with --backend dp).
    #[arg(long, conflicts_with = "alpha")]
    rho: Option<f64>,
    /// Target accuracy: the answer within ALPHA of the exact value ...
    #[arg(long)]
    alpha: Option<f64>,
    /// ... with probability at least 1 - BETA (default 0.05).
    #[arg(long, requires = "alpha")]
    beta: Option<f64>,
}

impl DpArgs {
    /// The DP parameters, if any was given.
    fn params(&self) -> Option<DpParams> {
        (self.epsilon.is_some() || self.rho.is_some() || self.alpha.is_some()).then_some(DpParams {
            epsilon: self.epsilon,
            rho: self.rho,
            alpha: self.alpha,
            beta: self.beta,
        })
    }
}

/// Options of `duo fi cost`.
#[derive(Args, Debug)]
pub struct CostArgs {
    /// One or more expressions, or @FILE for a file of them (one a line; blank lines and lines starting with
    /// `#` are skipped). Each is previewed on its own, then their total: what `duo fi request` with the same
    /// expressions would charge as one request.
    #[arg(required = true)]
    exprs: Vec<String>,
    #[command(flatten)]
    dp: DpArgs,
    /// Which paired owner.
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    json: JsonFlag,
}

/// Options of `duo fi request`.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The expression; several (or @FILE, one a line) are sent as one request, `batch(E1, E2, ...)`, which the
    /// owner approves or denies as a whole and which is charged the sum of their costs at once.
    #[arg(required = true)]
    exprs: Vec<String>,
    /// Why you need it (the owner sees it).
    #[arg(long)]
    reason: String,
    /// Backend: plaintext (the exact value) or dp (a differentially private value).
    #[arg(long, default_value = "plaintext", value_parser = ["plaintext", "dp"])]
    backend: String,
    #[command(flatten)]
    dp: DpArgs,
    /// Wait up to this many seconds for the owner's decision.
    #[arg(long, default_value_t = 0)]
    wait: u64,
    /// Which paired owner.
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    batch: super::batch::BatchArgs,
    #[command(flatten)]
    json: JsonFlag,
}

/// `duo fi cost`: each expression's cost and accuracy, and the total; nothing is charged.
pub async fn cost(fi: &FiHome, args: CostArgs) -> Result<i32> {
    let params = args.dp.params().ok_or_else(|| {
        anyhow!("state what to spend: --epsilon X, --rho X, or --alpha A [--beta B]")
    })?;
    let exprs = expressions(&args.exprs)?;
    let mut c = Client::connect(fi, args.owner.as_deref()).await?;
    let mut rows = Vec::new();
    let mut total = Amount::from_nanos(0);
    let mut unit = String::new();
    for e in &exprs {
        let p = c.expr(e).await?;
        match c.cost(&p, params.clone()).await? {
            ServerMsg::Cost {
                cost,
                measure,
                accuracy95,
                mechanism,
                ..
            } => {
                let amount: Amount = cost.parse().map_err(|e| anyhow!("{e}"))?;
                total = total
                    .checked_add(amount)
                    .ok_or_else(|| anyhow!("total overflows"))?;
                unit = measure.clone();
                rows.push(json!({
                    "expr": e, "lineage": p.description, "cost": cost, "measure": measure,
                    "accuracy95": accuracy95, "mechanism": mechanism,
                    "within95": show::within95(accuracy95, &p.ty),
                }));
            }
            other => bail!("unexpected reply {other:?}"),
        }
    }
    c.close().await;
    if args.json.json {
        print_json(&json!({ "releases": rows, "total": total.to_string(), "measure": unit }))?;
    } else {
        print_costs(&rows, total, &unit)?;
    }
    Ok(0)
}

/// The expressions given on the command line, with each @FILE replaced by the expressions it holds (one a line;
/// blank lines and lines starting with `#` are skipped).
fn expressions(args: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in args {
        let Some(path) = a.strip_prefix('@') else {
            out.push(a.clone());
            continue;
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read the expressions in {path}: {e}"))?;
        let before = out.len();
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
        if out.len() == before {
            bail!("{path} holds no expression (one a line; lines starting with # are skipped)");
        }
    }
    if out.len() > duo::engine::expr::MAX_BATCH {
        bail!(
            "{} expressions; one request holds at most {}: split them into several requests",
            out.len(),
            duo::engine::expr::MAX_BATCH
        );
    }
    Ok(out)
}

/// One release's preview in words: its lineage, cost, expected error and mechanism.
fn cost_line(lineage: &str, cost: &str, measure: &str, within95: &str, mechanism: &str) -> String {
    format!(
        "{lineage}\n  cost {}; expected error {within95}; {mechanism}",
        crate::cli::budget::with_equivalent_str(cost, measure),
    )
}

/// A pointer's preview (the node's `Cost` reply) in words, as `duo fi cost` prints it.
pub fn cost_words(p: &Pointer, m: &ServerMsg) -> String {
    match m {
        ServerMsg::Cost {
            cost,
            measure,
            accuracy95,
            mechanism,
            items,
        } => {
            let mut s = cost_line(
                &p.description,
                cost,
                measure,
                &show::within95(*accuracy95, &p.ty),
                mechanism,
            );
            if !items.is_empty() {
                s.push('\n');
                s.push_str(show::batch_items(items, &p.ty).trim_end());
            }
            s
        }
        other => format!("unexpected reply {other:?}"),
    }
}

/// The cost rows as text, and their total.
fn print_costs(rows: &[Value], total: Amount, unit: &str) -> Result<()> {
    for r in rows {
        outln!(
            "{}",
            cost_line(
                r["lineage"].as_str().unwrap_or(""),
                r["cost"].as_str().unwrap_or(""),
                r["measure"].as_str().unwrap_or(""),
                r["within95"].as_str().unwrap_or("n/a"),
                r["mechanism"].as_str().unwrap_or("")
            )
        )?;
    }
    outln!(
        "total: {} (nothing was charged)",
        crate::cli::budget::with_equivalent_str(&total.to_string(), unit)
    )
}

/// `duo fi request`: ask, optionally wait for the owner; exit 1 on a denial, 2 on a syntax error. With
/// `--owners` (or `--batch`, `--resume`), a batch: exit 0 when every owner answered, 3 when some did not.
pub async fn request(fi: &FiHome, args: RequestArgs) -> Result<i32> {
    let backend: Backend = args
        .backend
        .parse()
        .map_err(|_| anyhow!("unknown backend `{}`; use plaintext or dp", args.backend))?;
    let params = args.dp.params();
    if backend == Backend::Dp && params.is_none() {
        bail!("a dp request states what to spend: --epsilon X, --rho X, or --alpha A [--beta B]");
    }
    if backend != Backend::Dp && params.is_some() {
        bail!("--epsilon, --rho and --alpha go with --backend dp");
    }
    let exprs = expressions(&args.exprs)?;
    // Parse locally first so syntax errors point at the position without a round trip.
    for e in &exprs {
        if let Err(err) = duo::engine::parse::parse_expr(e) {
            if args.json.json {
                print_json(&serde_json::json!({ "error": "parse", "message": err.render(e) }))?;
            } else {
                errln!("{}", err.render(e));
            }
            return Ok(2);
        }
    }
    // Several expressions are one request: a batch of questions.
    let expr = match exprs.as_slice() {
        [one] => one.clone(),
        many => format!("batch({})", many.join(", ")),
    };
    if args.batch.is_batch() {
        let ask = duo::node::fi::portfolio::BatchAsk::Release {
            expr: expr.clone(),
            backend,
            dp: params,
            reason: args.reason.clone(),
        };
        let limit = duo::node::fi::ScoreLimit::default();
        return super::batch::run(fi, ask, &args.batch, args.wait, limit, args.json).await;
    }
    let mut c = Client::connect(fi, args.owner.as_deref()).await?;
    let p = c.expr(&expr).await?;
    let mut v = match params {
        Some(params) => c.request_dp(&p, params, &args.reason).await?,
        None => c.request(&p, backend, &args.reason).await?,
    };
    if v.state == RequestState::Pending && args.wait > 0 {
        if !args.json.json {
            errln!(
                "request {} is waiting for the owner; waiting up to {}s",
                v.id,
                args.wait
            );
        }
        v = c.status(v.id, Duration::from_secs(args.wait)).await?;
    }
    c.close().await;
    if args.json.json {
        print_json(&v)?;
    } else {
        out!("{}", show::request(&v))?;
        if v.state == RequestState::Pending {
            outln!("  (ask again later with `duo fi result {}`)", v.id)?;
        }
    }
    Ok(match v.state {
        RequestState::Denied => 1,
        _ => 0,
    })
}
