//! `duo demo`: the whole story in one process, over a real loopback WebSocket.

use crate::cli::show;
use anyhow::{bail, Result};
use duo::node::client::{self, Client, FiHome};
use duo::node::owner::{self, ServeConfig};
use duo::node::release::{DatasetCache, Owner, RequestState};
use duo::node::scoring::ModelFile;
use duo::node::store;
use duo::policies::{Backend, Policy, Reveal};
use std::path::PathBuf;
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
}

/// The FI's model in the demo's private credit decision: the example model file.
const MODEL: &str = include_str!("../../examples/model.toml");

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

/// `duo demo`: the story, on its own runtime.
pub fn run(args: DemoArgs) -> Result<i32> {
    super::runtime()?.block_on(story(args)).map(|()| 0)
}

/// The demo's steps, in order; any step that does not go as the story says is an error.
async fn story(args: DemoArgs) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("duo-demo-").tempdir()?;
    let home = args
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let owner_dir = owner::owner_dir(&home);
    let fi_home = FiHome::new(&client::fi_dir(&home));

    step(1, "The owner generates sample data and loads it");
    let today = chrono::Utc::now().date_naive();
    let cfg = duo::engine::sample::SampleConfig {
        seed: args.seed,
        profile: args.profile.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?,
        end_month: duo::engine::sample::last_full_month(today),
        months: 24,
    };
    let files = duo::engine::sample::generate(&cfg);
    let data_dir = home.join("sample");
    duo::engine::sample::write_dir(&data_dir, &files)?;
    let init = owner::init(&owner_dir, Some(Policy::demo_text()))?;
    println!(
        "owner node created in {} (key {})",
        owner_dir.display(),
        init.fingerprint
    );
    println!("policy: row-level releases denied; catalogue attributes auto-approved; everything else goes to the owner");
    for f in &files {
        let r = owner::load(
            &owner_dir,
            &data_dir.join(format!("{}.csv", f.name)),
            &f.name,
            &f.meta_toml,
        )?;
        println!(
            "loaded {:<14} {:>5} rows (version {})",
            r.name, r.rows, r.version
        );
    }

    step(2, "The owner serves and invites an FI named \"Acme Bank\"");
    let node = owner::spawn(ServeConfig::new(&owner_dir), "127.0.0.1:0".parse()?).await?;
    let code = owner::invite(&owner_dir, "Acme Bank", Duration::from_secs(15 * 60))?;
    println!("listening on {}", node.url());
    println!("invite code (one use, 15 minutes): {code}");

    step(3, "The FI pairs over the encrypted channel");
    // A code with one wrong character in its secret: the node refuses it and counts the failure.
    let wrong = {
        let text = code.to_string();
        let at = "duo1-".len() + code.id.len() + 1;
        let new = if text.as_bytes()[at] == b'a' {
            'b'
        } else {
            'a'
        };
        format!("{}{new}{}", &text[..at], &text[at + 1..])
    };
    match client::pair(&fi_home, &node.url(), &wrong, "demo-owner").await {
        Ok(_) => bail!("a corrupted invite code was accepted"),
        Err(e) => println!("a mistyped code is refused by the node: {e}"),
    }
    let rec = client::pair(&fi_home, &node.url(), &code.to_string(), "demo-owner").await?;
    println!(
        "paired as \"{}\"; owner key {} pinned",
        rec.principal, rec.fingerprint
    );

    step(4, "The FI browses metadata (never rows) and the catalogue");
    let mut fi = Client::connect(&fi_home, Some("demo-owner")).await?;
    let datasets = fi.datasets().await?;
    for d in &datasets {
        println!(
            "  {:<14} {} columns, privacy unit: {}",
            d.meta.name,
            d.meta.columns.len(),
            d.meta.privacy_unit.describe()
        );
    }
    let catalogue = fi.catalogue().await?;
    print!("{}", indent(&show::catalogue(&catalogue)));

    step(5, "A catalogue attribute, auto-approved by policy");
    let p = fi.expr("rent_on_time_ratio_12m()").await?;
    let first = fi
        .request(
            &p,
            Backend::Plaintext,
            "underwriting: rent history for a small-dollar loan",
        )
        .await?;
    print!("{}", indent(&show::request(&first)));
    if first.state != RequestState::Approved {
        bail!("the catalogue attribute was not auto-approved");
    }

    step(6, "An ad-hoc question: the owner decides");
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
    print!("{}", indent(&show::request(&pending)));
    let id = pending.id;
    let waiter = tokio::spawn(async move {
        let v = fi.status(id, Duration::from_secs(30)).await;
        (fi, v)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("  -- the owner looks at the request (duo owner requests):");
    let od = owner_dir.clone();
    let (view, approved) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut o = Owner::open(&od, store::Sync::Full, DatasetCache::default())?;
        let view = o.pending_view(id)?;
        let approved = o.approve(id, Some(&view.token))?;
        Ok((view, approved))
    })
    .await??;
    print!("{}", indent(&indent(&show::pending(&view))));
    println!(
        "  -- the owner approves (duo owner approve {id} --seen {})",
        view.token
    );
    let (mut fi, waited) = waiter.await?;
    let waited = waited?;
    println!("  -- the waiting FI receives:");
    print!("{}", indent(&show::request(&waited)));
    if waited.answer != approved.answer || waited.state != RequestState::Approved {
        bail!("the FI did not receive the approved answer");
    }

    step(7, "A row-level release, denied by policy");
    let p = fi.expr("rent.amount").await?;
    let denied = fi
        .request(&p, Backend::Plaintext, "we would like every rent payment")
        .await?;
    print!("{}", indent(&show::request(&denied)));
    if denied.state != RequestState::Denied {
        bail!("the row-level release was not denied");
    }

    step(
        8,
        "The first question again: answered from the store, no new release",
    );
    let p = fi.expr("rent_on_time_ratio_12m()").await?;
    let again = fi
        .request(&p, Backend::Plaintext, "underwriting: rent history (retry)")
        .await?;
    print!("{}", indent(&show::request(&again)));
    if again.answer != first.answer {
        bail!("the repeated request got a different answer");
    }
    step(
        9,
        "Differentially private releases under the owner's budget",
    );
    let mut o = Owner::open(&owner_dir, store::Sync::Full, DatasetCache::default())?;
    duo::node::release::set_cap(
        &mut o.conn,
        &duo::policies::Scope::Global,
        "1.0".parse()?,
        duo::policies::Measure::PureEpsilon,
    )?;
    println!("the owner sets a global budget of epsilon 1.0 (duo owner budget set --epsilon 1.0)");
    println!(
        "one unit of privacy here protects one payment or transaction (the datasets' privacy unit)"
    );
    let budget_left = |o: &Owner| -> Result<String> {
        let l = duo::node::release::load_ledger(&o.conn)?;
        Ok(l.account(&duo::policies::Scope::Global)
            .remaining()
            .map_or("-".into(), |a| a.to_string()))
    };
    let eps = |e: f64| duo::node::dp::DpParams {
        epsilon: Some(e),
        ..Default::default()
    };
    let income = fi
        .expr("sum(clamp(filter(transactions, category == \"income\" and last_months(12)).amount, 0, 500000))")
        .await?;
    if let duo::node::wire::ServerMsg::Cost {
        cost, accuracy95, ..
    } = fi.cost(&income, eps(0.5)).await?
    {
        println!(
            "  FI previews (duo fi cost): cost {cost} epsilon, 95% of answers within ±{:.0} cents; nothing charged",
            accuracy95.unwrap_or(f64::NAN)
        );
    }
    let dp1 = fi
        .request_dp(&income, eps(0.5), "income over the last year, with privacy")
        .await?;
    print!("{}", indent(&show::request(&dp1)));
    println!("  budget left: {}", budget_left(&o)?);
    let dp1b = fi
        .request_dp(&income, eps(0.5), "the same question again")
        .await?;
    print!("{}", indent(&show::request(&dp1b)));
    println!(
        "  budget left: {} (a repeat draws no new noise and costs nothing)",
        budget_left(&o)?
    );
    if dp1b.answer != dp1.answer {
        bail!("a repeated dp request was sampled again");
    }
    let fees = fi
        .expr("count(filter(transactions, (category == \"nsf_fee\" or category == \"overdraft_fee\") and last_months(12)))")
        .await?;
    let dp2 = fi
        .request_dp(&fees, eps(0.4), "fee count, with privacy")
        .await?;
    print!("{}", indent(&show::request(&dp2)));
    println!("  budget left: {}", budget_left(&o)?);
    let rent = fi.expr("mean(clamp(rent.amount, 0, 300000))").await?;
    let over = fi
        .request_dp(&rent, eps(0.3), "typical rent, with privacy")
        .await?;
    print!("{}", indent(&show::request(&over)));
    if over.state != RequestState::Denied {
        bail!("a request over the budget was not refused");
    }
    drop(o);

    step(
        10,
        "A private credit decision: the FI's secret model meets the owner's attributes (2PC)",
    );
    let model = ModelFile::parse(MODEL)?;
    println!(
        "the FI loads its model `{}` over {} attributes; its weights, bias and threshold stay with the FI",
        model.name.as_deref().unwrap_or("model"),
        model.attributes().len()
    );
    let limits = *Policy::parse(Policy::demo_text())?.scoring_limits();
    println!(
        "the owner's policy approves a decision (1 bit) without asking, at most {} runs and {} bits per FI \
         in {} days",
        limits.max_runs,
        limits.max_bits.map_or("unlimited".into(), show::bits),
        limits.window_days
    );
    let mut progress = |what: &str| println!("  ... {}", show::score_progress(what));
    let cold = fi
        .score(
            &model,
            Reveal::Decision,
            "underwriting: a small-dollar loan decision",
            Duration::from_secs(5),
            &mut progress,
        )
        .await?;
    let opening = cold.commitment.as_ref().map(|c| {
        client::fi_dir(&home)
            .join("models")
            .join(format!("{c}.json"))
    });
    println!("  -- the FI learned (duo fi score --model examples/model.toml --reason ...):");
    print!(
        "{}",
        indent(&show::score_report(
            &cold,
            fi.principal(),
            opening.as_deref()
        ))
    );
    println!("  -- the owner learned (duo owner log):");
    let o = Owner::open(&owner_dir, store::Sync::Full, DatasetCache::default())?;
    let run_entries: Vec<_> = store::log_entries(&o.conn, 0, 10_000)?
        .into_iter()
        .filter(|e| e.kind.starts_with("scoring-"))
        .collect();
    for e in &run_entries {
        println!("    {:<13} {}", e.kind, show::log_summary(&e.kind, &e.body));
    }
    drop(o);
    println!(
        "  so both sides learned the same decision, {}, and nothing else: the owner saw the attributes \
         used and the model's commitment, never its weights; the FI never saw an attribute value",
        cold.outcome
    );
    if run_entries.len() != 2 || !cold.cold || cold.bits != 1.0 {
        bail!("the private decision did not run as expected: {run_entries:?}");
    }
    let warm = fi
        .score(
            &model,
            Reveal::Decision,
            "underwriting: the same decision, confirmed",
            Duration::from_secs(5),
            &mut |_| {},
        )
        .await?;
    println!(
        "  a second run in the same session is warm (the OT extension is reused, no base OTs): \
         {:.1} ms and {} bytes, against {:.1} ms and {} bytes cold; same answer: {}",
        warm.millis,
        show::thousands(warm.bytes.sent + warm.bytes.received),
        cold.millis,
        show::thousands(cold.bytes.sent + cold.bytes.received),
        warm.outcome
    );
    if warm.cold || warm.outcome != cold.outcome {
        bail!("the warm run did not reuse the session or gave another answer");
    }
    println!(
        "  that is 2 of the {} runs this FI may start in {} days",
        limits.max_runs, limits.window_days
    );

    fi.close().await;
    node.shutdown().await;

    step(11, "The FI checks the receipts it kept");
    let kept = fi_home.receipts()?;
    let problems = fi_home.verify_receipts()?;
    if !problems.is_empty() {
        bail!("the FI's receipts do not verify: {problems:?}");
    }
    println!(
        "{} receipt(s), each signed by the owner node's key pinned at pairing, hash-chained in the FI's own log",
        kept.len()
    );

    step(12, "The owner checks the audit log");
    let o = Owner::open(&owner_dir, store::Sync::Full, DatasetCache::default())?;
    let report = store::verify_log(&o.conn)?;
    for e in store::log_entries(&o.conn, 0, 10_000)? {
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
            println!(
                "  {:>3} {:<13} {:<10} {}",
                e.seq,
                e.kind,
                e.principal.as_deref().unwrap_or("-"),
                show::log_summary(&e.kind, &e.body)
            );
        }
    }
    if !report.problems.is_empty() {
        bail!("the audit log does not verify: {:?}", report.problems);
    }
    println!(
        "log verified: {} entries, hash chain intact (head {})",
        report.entries,
        &report.head_hash[..16]
    );
    if args.keep.is_some() {
        println!("\ndata kept in {}", home.display());
    }
    println!("\ndemo finished");
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
