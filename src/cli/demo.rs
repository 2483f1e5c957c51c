//! `duo demo`: the whole story in one process, over a real loopback WebSocket.
//!
//! Twelve steps, each a function below, in the order [`story`] calls them: the owner loads sample data,
//! serves and invites an FI, which pairs, browses, asks for releases (auto-approved, decided by the owner,
//! denied by policy, repeated, differentially private), runs a private credit decision, and both sides
//! check what they kept. A step that does not go as the story says ends the demo with an error.

use crate::cli::out::{out, outln};
use crate::cli::show;
use anyhow::{bail, Result};
use duo::node::fi::ModelFile;
use duo::node::fi::{self as client, Client, FiHome};
use duo::node::net::keys::InviteCode;
use duo::node::owner::{self, RunningNode, ServeConfig};
use duo::node::owner::{DatasetCache, Owner};
use duo::node::proto::request::{RequestState, RequestView};
use duo::node::store::{self, prelude::*};
use duo::policies::{Backend, Policy, Reveal, ScoringLimits};
use duo_testkit::owner::SampleOwner;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `duo demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Seed for the sample data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Payment behaviour of the sample person.
    #[arg(long, default_value = "reliable", value_parser = ["reliable", "struggling"])]
    pub profile: String,
    /// Keep the demo's data directory here instead of a temporary one (inspect it afterwards with
    /// `duo --home DIR owner log`).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// After the story, leave the owner's node and both web UIs (the owner's and the FI's) running, print their
    /// addresses, and wait for Ctrl-C: click through the story in a browser.
    #[arg(long)]
    pub ui: bool,
}

/// The FI's model in the demo's private credit decision: the example model file.
const MODEL: &str = include_str!("../../examples/model.toml");

/// The FI's name for the owner node it pairs with.
const OWNER_NAME: &str = "demo-owner";

/// `duo demo`: the story, on its own runtime.
pub fn run(args: DemoArgs) -> Result<i32> {
    super::runtime()?.block_on(story(args)).map(|()| 0)
}

/// The demo's steps, in order.
async fn story(args: DemoArgs) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("duo-demo-").tempdir()?;
    let home = args
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let demo = Demo {
        owner_dir: owner::owner_dir(&home),
        fi_home: FiHome::new(&client::fi_dir(&home)),
        home,
    };
    demo.load_sample(&args)?;
    let (node, code) = demo.serve_and_invite().await?;
    demo.pair(&node, &code).await?;
    let mut fi = demo.browse().await?;
    let first = catalogue_release(&mut fi).await?;
    let mut fi = demo.owner_decides(fi).await?;
    row_release_denied(&mut fi).await?;
    repeat_from_store(&mut fi, &first).await?;
    demo.dp_releases(&mut fi).await?;
    demo.private_decision(&mut fi).await?;
    fi.close().await;
    demo.check_receipts()?;
    demo.check_log()?;
    if args.ui {
        demo.serve_uis().await?;
    }
    node.shutdown().await;
    if args.keep.is_some() {
        outln!("\ndata kept in {}", demo.home.display())?;
    }
    outln!("\ndemo finished")?;
    Ok(())
}

/// Where the demo keeps the owner's node and the FI's home.
struct Demo {
    home: PathBuf,
    owner_dir: PathBuf,
    fi_home: FiHome,
}

/// A step's heading.
fn step(n: u32, title: &str) -> Result<()> {
    outln!("\n== {n}. {title}")
}

/// Every line of `s` indented by two spaces.
fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

impl Demo {
    /// Step 1: sample data written and loaded into a new owner node with the demo policy.
    fn load_sample(&self, args: &DemoArgs) -> Result<()> {
        step(1, "The owner generates sample data and loads it")?;
        let profile = args.profile.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let made = SampleOwner::create(&self.home, Policy::demo_text(), args.seed, profile)?;
        outln!(
            "owner node created in {} (key {})",
            made.dir.display(),
            made.init.fingerprint
        )?;
        outln!("policy: row-level releases denied; catalogue attributes auto-approved; everything else goes to the owner")?;
        for r in &made.loaded {
            outln!(
                "loaded {:<14} {:>5} rows (version {})",
                r.name,
                r.rows,
                r.version
            )?;
        }
        Ok(())
    }

    /// Step 2: the node listens on a free loopback port; an invite code for "Acme Bank".
    async fn serve_and_invite(&self) -> Result<(RunningNode, InviteCode)> {
        step(2, "The owner serves and invites an FI named \"Acme Bank\"")?;
        let node = owner::spawn(ServeConfig::new(&self.owner_dir), "127.0.0.1:0".parse()?).await?;
        let code = owner::invite(&self.owner_dir, "Acme Bank", Duration::from_secs(15 * 60))?;
        outln!("listening on {}", node.url())?;
        outln!("invite code (one use, 15 minutes): {code}")?;
        Ok((node, code))
    }

    /// Step 3: a mistyped code is refused; the real one pairs.
    async fn pair(&self, node: &RunningNode, code: &InviteCode) -> Result<()> {
        step(3, "The FI pairs over the encrypted channel")?;
        match client::pair(&self.fi_home, &node.url(), &mistyped(code), OWNER_NAME).await {
            Ok(_) => bail!("a corrupted invite code was accepted"),
            Err(e) => outln!("a mistyped code is refused by the node: {e}")?,
        }
        let rec = client::pair(&self.fi_home, &node.url(), &code.to_string(), OWNER_NAME).await?;
        outln!(
            "paired as \"{}\"; owner key {} pinned",
            rec.principal,
            rec.fingerprint
        )?;
        Ok(())
    }

    /// Step 4: the FI connects and lists the datasets' metadata and the catalogue.
    async fn browse(&self) -> Result<Client> {
        step(4, "The FI browses metadata (never rows) and the catalogue")?;
        let mut fi = Client::connect(&self.fi_home, Some(OWNER_NAME)).await?;
        let datasets = fi.datasets().await?;
        for d in &datasets {
            outln!(
                "  {:<14} {} columns, privacy unit: {}",
                d.meta.name,
                d.meta.columns.len(),
                d.meta.privacy_unit.describe()
            )?;
        }
        let catalogue = fi.catalogue().await?;
        out!("{}", indent(&show::catalogue(&catalogue)))?;
        Ok(fi)
    }

    /// Step 6: an ad-hoc question waits for the owner, who looks at it and approves; the waiting FI gets the
    /// approved answer.
    async fn owner_decides(&self, mut fi: Client) -> Result<Client> {
        step(6, "An ad-hoc question: the owner decides")?;
        let p = fi
            .expr("mean(clamp(filter(transactions, category == \"income\" and last_months(6)).amount, 0, 1000000))")
            .await?;
        let pending = fi
            .request(
                &p,
                Backend::Plaintext,
                "affordability: typical paycheck size",
            )
            .await?;
        out!("{}", indent(&show::request(&pending)))?;
        let id = pending.id;
        let waiter = tokio::spawn(async move {
            let v = fi.status(id, Duration::from_secs(30)).await;
            (fi, v)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        outln!("  -- the owner looks at the request (duo owner requests):")?;
        let od = self.owner_dir.clone();
        let (view, approved) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut o = open(&od)?;
            // The owner goes by the node's id; the FI's `id` is its own number for the request.
            let node_id = *o
                .pending_ids()?
                .last()
                .ok_or_else(|| anyhow::anyhow!("the request is not waiting for the owner"))?;
            let view = o.pending_view(node_id)?;
            let approved = o.approve(node_id, Some(&view.token))?;
            Ok((view, approved))
        })
        .await??;
        out!("{}", indent(&indent(&show::pending(&view))))?;
        outln!(
            "  -- the owner approves (duo owner approve {} --seen {})",
            view.id,
            view.token
        )?;
        let (fi, waited) = waiter.await?;
        let waited = waited?;
        outln!("  -- the waiting FI receives:")?;
        out!("{}", indent(&show::request(&waited)))?;
        if waited.answer != approved.answer || waited.state != RequestState::Approved {
            bail!("the FI did not receive the approved answer");
        }
        Ok(fi)
    }

    /// Step 9: the owner sets a budget; the FI previews a cost, spends it, repeats for free, spends more, and
    /// is refused over the budget.
    async fn dp_releases(&self, fi: &mut Client) -> Result<()> {
        step(
            9,
            "Differentially private releases under the owner's budget",
        )?;
        let mut o = open(&self.owner_dir)?;
        o.set_cap(
            &duo::policies::Scope::Global,
            "1.0".parse()?,
            duo::policies::Measure::PureEpsilon,
        )?;
        outln!(
            "the owner sets a global budget of epsilon 1.0 (duo owner budget set --epsilon 1.0)"
        )?;
        outln!(
            "one unit of privacy here protects one payment or transaction (the datasets' privacy unit)"
        )?;
        let income = fi
            .expr("sum(clamp(filter(transactions, category == \"income\" and last_months(12)).amount, 0, 500000))")
            .await?;
        if let duo::node::proto::ServerMsg::Cost {
            cost, accuracy95, ..
        } = fi.cost(&income, epsilon(0.5)).await?
        {
            outln!(
                "  FI previews (duo fi cost): cost {cost} epsilon, expected error {}; nothing charged",
                show::within95(accuracy95, &income.ty)
            )?;
        }
        let dp1 = fi
            .request_dp(
                &income,
                epsilon(0.5),
                "income over the last year, with privacy",
            )
            .await?;
        out!("{}", indent(&show::request(&dp1)))?;
        outln!("  budget left: {}", budget_left(&o)?)?;
        let dp1b = fi
            .request_dp(&income, epsilon(0.5), "the same question again")
            .await?;
        out!("{}", indent(&show::request(&dp1b)))?;
        outln!(
            "  budget left: {} (a repeat draws no new noise and costs nothing)",
            budget_left(&o)?
        )?;
        if dp1b.answer != dp1.answer {
            bail!("a repeated dp request was sampled again");
        }
        spend_the_rest(fi, &o).await
    }

    /// Step 10: a decision over the FI's secret model and the owner's attributes, twice (both warm: pairing
    /// made the base OTs); both sides learn the same single bit.
    async fn private_decision(&self, fi: &mut Client) -> Result<()> {
        step(
            10,
            "A private credit decision: the FI's secret model meets the owner's attributes (2PC)",
        )?;
        let model = ModelFile::parse(MODEL)?;
        outln!(
            "the FI loads its model `{}` over {} attributes; its weights, bias and threshold stay with the FI",
            model.name.as_deref().unwrap_or("model"),
            model.attributes().len()
        )?;
        let limits = *Policy::parse(Policy::demo_text())?.scoring_limits();
        outln!(
            "the owner's policy approves a decision (1 bit) without asking, at most {} runs and {} bits per FI \
             in {} days",
            limits.max_runs,
            limits.max_bits.map_or("unlimited".into(), show::bits),
            limits.window_days
        )?;
        let cold = self.cold_decision(fi, &model).await?;
        warm_decision(fi, &model, &cold, &limits).await
    }

    /// The first scoring run (no base OTs: pairing made them): what the FI learned, and what the owner's log
    /// says.
    async fn cold_decision(
        &self,
        fi: &mut Client,
        model: &ModelFile,
    ) -> Result<client::ScoreReport> {
        // A line that cannot be written is dropped here; the next one after the run reports it.
        let mut progress = |what: &str| {
            let _ = outln!("  ... {}", show::score_progress(what));
        };
        let cold = fi
            .score(
                model,
                Reveal::Decision,
                "underwriting: a small-dollar loan decision",
                Duration::from_secs(5),
                &mut progress,
            )
            .await?;
        let opening = cold.commitment.as_ref().map(|c| {
            client::fi_dir(&self.home)
                .join("models")
                .join(format!("{c}.json"))
        });
        outln!("  -- the FI learned (duo fi score --model examples/model.toml --reason ...):")?;
        out!(
            "{}",
            indent(&show::score_report(
                &cold,
                fi.principal(),
                opening.as_deref()
            ))
        )?;
        outln!("  -- the owner learned (duo owner log):")?;
        let o = open(&self.owner_dir)?;
        let run_entries: Vec<_> = o
            .store()
            .log_entries(0, 10_000)?
            .into_iter()
            .filter(|e| e.kind.starts_with("scoring-"))
            .collect();
        for e in &run_entries {
            outln!("    {:<13} {}", e.kind, show::log_summary(&e.kind, &e.body))?;
        }
        outln!(
            "  so both sides learned the same decision, {}, and nothing else: the owner saw the attributes \
             used and the model's commitment, never its weights; the FI never saw an attribute value",
            cold.outcome
        )?;
        outln!(
            "  the run was warm: `duo fi pair` made the base OTs (the public-key part of the OT extension) right \
             after pairing, and both sides keep the extension's state for the next run"
        )?;
        if run_entries.len() != 2 || cold.cold || cold.bits != 1.0 {
            bail!("the private decision did not run as expected: {run_entries:?}");
        }
        Ok(cold)
    }

    /// With `--ui`: both web UIs on free loopback ports, beside the running node, until Ctrl-C.
    async fn serve_uis(&self) -> Result<()> {
        let listen = "127.0.0.1:0".parse()?;
        let owner_ui = super::ui::start(&self.owner_dir, Some(listen), store::Sync::Full).await?;
        let fi_ui = super::fi::ui::start(&self.home, listen).await?;
        outln!("\n== Both sides in a browser")?;
        if let Some(ui) = &owner_ui {
            outln!("the owner's UI: {}", ui.url())?;
        }
        outln!("the FI's UI:    {}", fi_ui.url())?;
        outln!("(open each address in a browser; Ctrl-C stops the node and both UIs)")?;
        super::owner::shutdown_signal().await;
        super::fi::ui::stop(&self.home, fi_ui).await;
        super::ui::stop(&self.owner_dir, owner_ui).await;
        Ok(())
    }

    /// Step 11: every receipt the FI kept verifies against the pinned key and its own hash chain.
    fn check_receipts(&self) -> Result<()> {
        step(11, "The FI checks the receipts it kept")?;
        let kept = self.fi_home.receipts()?;
        let problems = self.fi_home.verify_receipts()?;
        if !problems.is_empty() {
            bail!("the FI's receipts do not verify: {problems:?}");
        }
        outln!(
            "{} receipt(s), each signed by the owner node's key pinned at pairing, hash-chained in the FI's own log",
            kept.len()
        )?;
        Ok(())
    }

    /// Step 12: the owner's log, its requests, decisions, releases, pairing and scoring runs in words, and its
    /// hash chain verified.
    fn check_log(&self) -> Result<()> {
        step(12, "The owner checks the audit log")?;
        let o = open(&self.owner_dir)?;
        let report = o.store().verify_log()?;
        for e in o.store().log_entries(0, 10_000)? {
            if matches!(
                e.kind.as_str(),
                "request"
                    | "decision"
                    | "release"
                    | "paired"
                    | "scoring-start"
                    | "scoring-end"
                    | "scoring-refused"
            ) {
                outln!(
                    "  {:>3} {:<13} {:<10} {}",
                    e.seq,
                    e.kind,
                    e.principal.as_deref().unwrap_or("-"),
                    show::log_summary_typed(
                        &e.kind,
                        &e.body,
                        show::release_type(o.store(), &e).as_ref()
                    )
                )?;
            }
        }
        if !report.problems.is_empty() {
            bail!("the audit log does not verify: {:?}", report.problems);
        }
        outln!(
            "log verified: {} entries, hash chain intact (head {})",
            report.entries,
            &report.head_hash[..16]
        )?;
        Ok(())
    }
}

/// The invite code with one wrong character in its secret: the node refuses it and counts the failure.
fn mistyped(code: &InviteCode) -> String {
    let text = code.to_string();
    let at = "duo1-".len() + code.id.len() + 1;
    let new = if text.as_bytes()[at] == b'a' {
        'b'
    } else {
        'a'
    };
    format!("{}{new}{}", &text[..at], &text[at + 1..])
}

/// The owner's node in `dir`, as `duo owner ...` opens it.
fn open(dir: &Path) -> Result<Owner> {
    Ok(Owner::open(
        dir,
        store::Sync::Full,
        DatasetCache::default(),
    )?)
}

/// Step 5: a catalogue attribute, approved by the policy without asking the owner.
async fn catalogue_release(fi: &mut Client) -> Result<RequestView> {
    step(5, "A catalogue attribute, auto-approved by policy")?;
    let p = fi.expr("rent_on_time_ratio_12m()").await?;
    let first = fi
        .request(
            &p,
            Backend::Plaintext,
            "underwriting: rent history for a small-dollar loan",
        )
        .await?;
    out!("{}", indent(&show::request(&first)))?;
    if first.state != RequestState::Approved {
        bail!("the catalogue attribute was not auto-approved");
    }
    Ok(first)
}

/// Step 7: rows, denied by the policy.
async fn row_release_denied(fi: &mut Client) -> Result<()> {
    step(7, "A row-level release, denied by policy")?;
    let p = fi.expr("rent.amount").await?;
    let denied = fi
        .request(&p, Backend::Plaintext, "we would like every rent payment")
        .await?;
    out!("{}", indent(&show::request(&denied)))?;
    if denied.state != RequestState::Denied {
        bail!("the row-level release was not denied");
    }
    Ok(())
}

/// Step 8: the first question again, answered from the store with the same answer.
async fn repeat_from_store(fi: &mut Client, first: &RequestView) -> Result<()> {
    step(
        8,
        "The first question again: answered from the store, no new release",
    )?;
    let p = fi.expr("rent_on_time_ratio_12m()").await?;
    let again = fi
        .request(&p, Backend::Plaintext, "underwriting: rent history (retry)")
        .await?;
    out!("{}", indent(&show::request(&again)))?;
    if again.answer != first.answer {
        bail!("the repeated request got a different answer");
    }
    Ok(())
}

/// DP parameters spending `e` epsilon.
fn epsilon(e: f64) -> duo::node::proto::request::DpParams {
    duo::node::proto::request::DpParams {
        epsilon: Some(e),
        ..Default::default()
    }
}

/// What is left of the owner's global budget.
fn budget_left(o: &Owner) -> Result<String> {
    let l = o.store().ledger()?;
    Ok(l.account(&duo::policies::Scope::Global)
        .remaining()
        .map_or("-".into(), |a| a.to_string()))
}

/// The rest of step 9: a fee count spends most of what is left; a mean of rent is then over the budget.
async fn spend_the_rest(fi: &mut Client, o: &Owner) -> Result<()> {
    let fees = fi
        .expr("count(filter(transactions, (category == \"nsf_fee\" or category == \"overdraft_fee\") and last_months(12)))")
        .await?;
    let dp2 = fi
        .request_dp(&fees, epsilon(0.4), "fee count, with privacy")
        .await?;
    out!("{}", indent(&show::request(&dp2)))?;
    outln!("  budget left: {}", budget_left(o)?)?;
    let rent = fi.expr("mean(clamp(rent.amount, 0, 300000))").await?;
    let over = fi
        .request_dp(&rent, epsilon(0.3), "typical rent, with privacy")
        .await?;
    out!("{}", indent(&show::request(&over)))?;
    if over.state != RequestState::Denied {
        bail!("a request over the budget was not refused");
    }
    Ok(())
}

/// A second run in the same session reuses the OT extension: faster, same answer.
async fn warm_decision(
    fi: &mut Client,
    model: &ModelFile,
    cold: &client::ScoreReport,
    limits: &ScoringLimits,
) -> Result<()> {
    let warm = fi
        .score(
            model,
            Reveal::Decision,
            "underwriting: the same decision, confirmed",
            Duration::from_secs(5),
            &mut |_| {},
        )
        .await?;
    outln!(
        "  a second run continues the extension where the first stopped (no base OTs): {:.1} ms and {} bytes, \
         against {:.1} ms and {} bytes for the first; same answer: {}",
        warm.millis,
        show::thousands(warm.bytes.sent + warm.bytes.received),
        cold.millis,
        show::thousands(cold.bytes.sent + cold.bytes.received),
        warm.outcome
    )?;
    if warm.cold || warm.outcome != cold.outcome {
        bail!("the second run did not continue the extension or gave another answer");
    }
    outln!(
        "  that is 2 of the {} runs this FI may start in {} days",
        limits.max_runs,
        limits.window_days
    )?;
    Ok(())
}
