//! `duo owner ...`: the data owner's commands (the budget, the log and the policy have their own modules).

use super::budget::BudgetCmd;
use super::log::LogArgs;
use super::policy::PolicyCmd;
use super::show;
use super::{confirm, emit, ensure_owner, open_owner, print_json, runtime, ttl, JsonFlag};
use crate::cli::out::{errln, outln};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use duo::node::owner::{self, ServeConfig};
use duo::node::store::{self, prelude::*};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The owner's commands.
#[derive(Subcommand, Debug)]
pub enum OwnerCmd {
    /// Create the owner node: its key, its store and a commented default policy (existing ones are kept).
    Init {
        /// Use this policy file instead of the default.
        #[arg(long)]
        policy: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show the node's keys: the fingerprint FIs pin at pairing, and the receipt-signing key an auditor gives
    /// `duo verify-receipt --key`.
    Key {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Load a CSV file as a new version of a dataset.
    Load(LoadArgs),
    /// List loaded datasets, with what the node inferred from them (shown only to you).
    Datasets {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Serve FIs: listen for paired sessions and pairings.
    Serve(ServeArgs),
    /// Make a one-time invite code for an FI, bound to the name you choose for it (`--rekey` for an FI that is
    /// already paired); list or cancel open invites.
    Invite(InviteArgs),
    /// The FIs paired with this node.
    #[command(subcommand)]
    Fi(OwnerFiCmd),
    /// Dataset commands.
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Privacy budgets: caps per FI, per dataset and overall, and what has been spent.
    #[command(subcommand)]
    Budget(BudgetCmd),
    /// Delete all loaded data (every version of every dataset); the log and the history are kept.
    Forget {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Show the requests waiting for your decision, with the exact value each would release.
    Requests {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Approve a pending request (releases the value shown by `duo owner requests`).
    Approve(ApproveArgs),
    /// Deny a pending request; the FI sees your reason.
    Deny {
        /// Request id.
        id: u64,
        /// Why (sent to the FI).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show the audit log, or check that it has not been tampered with.
    Log(LogArgs),
    /// Print the address of the running node's web UI (`duo owner serve` starts it).
    Ui,
    /// Policy file commands.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

/// Options of `duo owner load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The CSV file.
    file: PathBuf,
    /// Dataset name (letters, digits, underscores).
    #[arg(long)]
    name: String,
    /// Metadata file (TOML). Default: FILE with `.csv` replaced by `.meta.toml`.
    #[arg(long)]
    meta: Option<PathBuf>,
    /// Load a file with a header but no data rows (it replaces the dataset with an empty version).
    #[arg(long)]
    allow_empty: bool,
    /// Load nothing: write a draft of the metadata file (to --meta or FILE.meta.toml) from the CSV, as the web
    /// UI pre-fills its form, for you to read and edit before loading. An existing file is kept.
    #[arg(long)]
    draft: bool,
    #[command(flatten)]
    json: JsonFlag,
}

/// Options of `duo owner serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// How commits are synced: `full` survives power loss, `normal` survives a crash of the program.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    sync: String,
    /// Requests each FI may make per hour.
    #[arg(long, default_value_t = 3600)]
    requests_per_hour: usize,
    /// Concurrent sessions each FI may hold.
    #[arg(long, default_value_t = 8)]
    sessions_per_fi: usize,
    /// Concurrent FI sessions in all (connections still in their handshake have places of their own: when
    /// those are all taken, the oldest unauthenticated connection makes room for a new one).
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Print no line per event (an FI connects, pairs, asks, is answered, leaves); warnings that the node is
    /// under pressure are still printed.
    #[arg(long)]
    quiet: bool,
    /// Where the web UI listens: 127.0.0.1 or [::1] only (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", conflicts_with = "no_ui")]
    ui: SocketAddr,
    /// Do not start the web UI.
    #[arg(long)]
    no_ui: bool,
    /// Also serve FIs through this relay, given as `duo relay` prints it: ws://HOST:PORT#FINGERPRINT (the
    /// fingerprint pins the relay's key). The node connects out to it, so it needs no public address; FIs then
    /// use the URL printed (and shown by `duo owner invite`): ws://HOST:PORT/o/THIS_NODE'S_FINGERPRINT.
    #[arg(long)]
    relay: Option<String>,
}

/// Options of `duo owner invite`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct InviteArgs {
    #[command(subcommand)]
    cmd: Option<InviteCmd>,
    /// The name you give this FI (its principal), e.g. "Acme Bank".
    #[arg(long = "fi", required = true)]
    principal: Option<String>,
    /// How long the code stays valid, with its unit (e.g. 15m, 2h, 1d).
    #[arg(long, default_value = "15m")]
    ttl: String,
    /// How many days the pairing lasts; after that the FI needs a new invite.
    #[arg(long, default_value_t = 90)]
    pairing_days: u32,
    /// Re-key an FI that is already paired: when the code is used, its current key stops working and the new
    /// key inherits its budgets and history (an invite for a paired FI is refused without this).
    #[arg(long)]
    rekey: bool,
    #[command(flatten)]
    json: JsonFlag,
}

/// `duo owner invite ...`.
#[derive(Subcommand, Debug)]
pub enum InviteCmd {
    /// List the invites that can still be used: id, FI, expiry, attempts, and whether it re-keys.
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Cancel an open invite: its code no longer pairs (logged).
    Cancel {
        /// The invite id (`duo owner invite list`; the part of the code after `duo1-`).
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Options of `duo owner approve`.
#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// Request id.
    id: u64,
    /// The token `duo owner requests` printed: the approval fails if anything you were shown has changed.
    #[arg(long, required_unless_present = "yes")]
    seen: Option<String>,
    /// Approve without a token: whatever the request would release now (printed after approving).
    #[arg(long, conflicts_with = "seen")]
    yes: bool,
    #[command(flatten)]
    json: JsonFlag,
}

/// `duo owner fi ...`.
#[derive(Subcommand, Debug)]
pub enum OwnerFiCmd {
    /// List paired FIs: principal, key fingerprint, since, expiry, last seen, pending requests.
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Cut an FI off: its sessions close at once, and its pending requests and open invites are cancelled. Its
    /// history is kept; a new invite pairs it again.
    Revoke {
        /// The principal name.
        principal: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// `duo owner dataset ...`.
#[derive(Subcommand, Debug)]
pub enum DatasetCmd {
    /// Delete every version of a dataset's rows; its metadata and the log stay.
    Delete {
        /// Dataset name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Run one owner command.
pub fn run(cmd: OwnerCmd, home: &Path) -> Result<i32> {
    match cmd {
        OwnerCmd::Init { policy, json } => init(home, policy, json),
        OwnerCmd::Key { json } => key(home, json),
        OwnerCmd::Load(args) => load(home, args),
        OwnerCmd::Datasets { json } => datasets(home, json),
        OwnerCmd::Serve(args) => serve(home, args),
        OwnerCmd::Invite(InviteArgs {
            cmd: Some(InviteCmd::List { json }),
            ..
        }) => invite_list(home, json),
        OwnerCmd::Invite(InviteArgs {
            cmd: Some(InviteCmd::Cancel { id, json }),
            ..
        }) => invite_cancel(home, &id, json),
        OwnerCmd::Invite(args) => invite(home, args),
        OwnerCmd::Fi(OwnerFiCmd::List { json }) => fi_list(home, json),
        OwnerCmd::Fi(OwnerFiCmd::Revoke { principal, json }) => fi_revoke(home, &principal, json),
        OwnerCmd::Dataset(DatasetCmd::Delete { name, yes }) => dataset_delete(home, &name, yes),
        OwnerCmd::Budget(cmd) => super::budget::run(cmd, home),
        OwnerCmd::Forget { yes } => forget(home, yes),
        OwnerCmd::Requests { json } => requests(home, json),
        OwnerCmd::Approve(args) => approve(home, args),
        OwnerCmd::Deny { id, reason, json } => deny(home, id, &reason, json),
        OwnerCmd::Log(args) => super::log::run(home, args),
        OwnerCmd::Ui => super::ui::print_address(home),
        OwnerCmd::Policy(cmd) => super::policy::run(cmd, home),
    }
}

/// `duo owner key`: the node key's fingerprint and the receipt-signing key (public halves only).
fn key(home: &Path, json: JsonFlag) -> Result<i32> {
    let dir = owner::owner_dir(home);
    if !dir.join("node.key").exists() {
        anyhow::bail!("no owner node in {} (run `duo owner init`)", dir.display());
    }
    let fingerprint = duo::node::net::keys::fingerprint(&owner::node_key(&dir)?.public);
    let signing = duo::node::owner::signer::NodeSigner::load_or_create(
        &duo::node::owner::signer::signing_key_path(&dir),
    )?
    .public_hex();
    if json.json {
        print_json(&serde_json::json!({ "fingerprint": fingerprint, "signing_key": signing }))?;
    } else {
        outln!("node key fingerprint: {fingerprint}   (FIs pin it when they pair)")?;
        outln!("receipt-signing key:  {signing}")?;
        outln!("  an auditor checks a receipt with: duo verify-receipt FILE --key {signing}")?;
    }
    Ok(0)
}

/// `duo owner init`: the node's key, store and policy (the default one unless `policy` names a file).
fn init(home: &Path, policy: Option<PathBuf>, json: JsonFlag) -> Result<i32> {
    let dir = owner::owner_dir(home);
    let text = policy
        .map(|p| std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let r = owner::init(&dir, text.as_deref())?;
    if json.json {
        print_json(&serde_json::json!({
            "dir": dir, "fingerprint": r.fingerprint, "new_key": r.new_key, "wrote_policy": r.wrote_policy,
        }))?;
    } else {
        outln!("owner node in {}", dir.display())?;
        outln!(
            "  key fingerprint: {}{}",
            r.fingerprint,
            if r.new_key { " (new)" } else { "" }
        )?;
        outln!(
            "  policy: {}{}",
            duo::node::owner::policy_path(&dir).display(),
            if r.wrote_policy {
                " (default written: every request goes to you)"
            } else {
                " (kept)"
            }
        )?;
    }
    Ok(0)
}

/// `duo owner load`: a CSV file and its metadata as a new version of a dataset.
fn load(home: &Path, args: LoadArgs) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let meta_path = args.meta.unwrap_or_else(|| {
        let s = args.file.to_string_lossy();
        PathBuf::from(
            s.strip_suffix(".csv")
                .map_or_else(|| format!("{s}.meta.toml"), |b| format!("{b}.meta.toml")),
        )
    });
    if args.draft {
        return draft(&args.file, &args.name, &meta_path);
    }
    let meta_text = std::fs::read_to_string(&meta_path).with_context(|| {
        format!(
            "reading the metadata file {} (pass --meta FILE, or write a draft of it with --draft)",
            meta_path.display()
        )
    })?;
    let r = owner::load_with(&dir, &args.file, &args.name, &meta_text, args.allow_empty)?;
    let warnings = load_warnings(&meta_text, &r);
    if args.json.json {
        print_json(&serde_json::json!({
            "name": r.name, "version": r.version, "rows": r.rows, "suggestions": r.suggestions,
            "warnings": warnings,
        }))?;
        return Ok(0);
    }
    outln!(
        "loaded {} rows into `{}` (version {})",
        r.rows,
        r.name,
        r.version
    )?;
    for w in &warnings {
        outln!("  warning: {w}")?;
    }
    outln!("  inferred from the data (shown only to you, never published):")?;
    for c in &r.suggestions.columns {
        outln!(
            "    {:<14} min {} max {}{}{}",
            c.name,
            c.min.as_deref().unwrap_or("-"),
            c.max.as_deref().unwrap_or("-"),
            if c.nulls > 0 {
                format!(", {} empty", c.nulls)
            } else {
                String::new()
            },
            if c.outside_bounds > 0 {
                format!(
                    ", {} outside the declared bounds (clamped when used)",
                    c.outside_bounds
                )
            } else {
                String::new()
            }
        )?;
    }
    Ok(0)
}

/// `duo owner load --draft`: the metadata the node drafts from the file (`duo_engine::draft`, what the UI's
/// upload form is pre-filled with), written for the owner to edit.
fn draft(csv: &Path, name: &str, meta_path: &Path) -> Result<i32> {
    if meta_path.exists() {
        bail!(
            "{} exists; it was kept (remove it, or pass --meta OTHER.toml, to draft a new one)",
            meta_path.display()
        );
    }
    let file = std::fs::File::open(csv).with_context(|| format!("reading {}", csv.display()))?;
    let d = duo::engine::draft::draft_meta(
        std::io::BufReader::new(file),
        name,
        &duo::engine::ingest::IngestLimits::default(),
    );
    if let Some(why) = &d.stopped {
        errln!("warning: the draft covers the rows before {why}");
    }
    let text = format!(
        "# Drafted by `duo owner load --draft` from {} ({} rows). Everything below is what an FI may see about\n\
         # this dataset: check each line, add descriptions, then load with `duo owner load {} --name {name}`.\n{}",
        csv.display(),
        d.rows,
        csv.display(),
        d.toml()
    );
    std::fs::write(meta_path, text).with_context(|| format!("writing {}", meta_path.display()))?;
    outln!("wrote a draft of the metadata to {}", meta_path.display())?;
    Ok(0)
}

/// What the owner should know about a load that went through: dates outside the declared window.
fn load_warnings(meta_text: &str, r: &owner::LoadReport) -> Vec<String> {
    let Ok(meta) = duo::engine::ingest::parse_meta(meta_text) else {
        return Vec::new();
    };
    let (Some(window), Some(time)) = (meta.window, meta.time_column.as_deref()) else {
        return Vec::new();
    };
    let Some(col) = r.suggestions.columns.iter().find(|c| c.name == time) else {
        return Vec::new();
    };
    let (start, end) = (window.start.to_string(), window.end.to_string());
    let before = col.min.as_deref().filter(|m| *m < start.as_str());
    let after = col.max.as_deref().filter(|m| *m > end.as_str());
    if before.is_none() && after.is_none() {
        return Vec::new();
    }
    vec![format!(
        "`{time}` runs from {} to {}, outside the declared window {start} to {end}: rows outside it are loaded \
         but lie outside what the metadata publishes; widen the window in the metadata file or trim the file",
        col.min.as_deref().unwrap_or("-"),
        col.max.as_deref().unwrap_or("-"),
    )]
}

/// `duo owner datasets`: what is loaded.
fn datasets(home: &Path, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let o = open_owner(&dir)?;
    let rows = o.store().datasets()?;
    if json.json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        outln!("no datasets yet; load one with `duo owner load FILE.csv --name NAME`")?;
    } else {
        for r in rows {
            outln!(
                "{} v{}: {} rows, loaded {}\n  {}",
                r.meta.name,
                r.version,
                r.rows,
                r.loaded_at,
                r.meta.description
            )?;
        }
    }
    Ok(0)
}

/// `duo owner serve`: listen until Ctrl-C or SIGTERM; the URL goes to standard output, a line per event to
/// standard error. The process stops within about a second of the signal whatever the node is computing: the
/// store's transactions make an unfinished one vanish as a crash would.
fn serve(home: &Path, args: ServeArgs) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let mut cfg = ServeConfig::new(&dir);
    cfg.principal_limits.requests_per_hour = args.requests_per_hour;
    cfg.principal_limits.max_sessions = args.sessions_per_fi.max(1);
    cfg.max_connections = args.max_connections.max(1);
    cfg.sync = if args.sync == "normal" {
        store::Sync::Normal
    } else {
        store::Sync::Full
    };
    cfg.relay = args
        .relay
        .as_deref()
        .map(duo::node::relay::RelayTarget::parse)
        .transpose()?;
    let ui_listen = (!args.no_ui).then_some(args.ui);
    if let Some(listen) = ui_listen {
        duo::node::web::check_listen(listen)?;
    }
    let sync = cfg.sync;
    let (events, received) = tokio::sync::mpsc::channel(1024);
    cfg.events = Some(events);
    let printer = print_events(received, args.quiet);
    let relay = cfg.relay.clone();
    let rt = runtime()?;
    let served = rt.block_on(async move {
        let node = owner::spawn(cfg, args.listen).await?;
        let ui = super::ui::start(&dir, ui_listen, sync).await?;
        let fingerprint = duo::node::net::keys::fingerprint(&owner::node_key(&dir)?.public);
        let relayed = relay_url(&dir, &node, relay.as_ref(), &fingerprint).await?;
        outln!("{}", relayed.as_deref().unwrap_or(&node.url()))?;
        errln!(
            "owner node listening on {} (key {fingerprint}); Ctrl-C to stop",
            node.url(),
        );
        shutdown_signal().await;
        if relayed.is_some() {
            let _ = std::fs::remove_file(dir.join(RELAY_URL_FILE));
        }
        errln!("stopping");
        super::ui::stop(&dir, ui).await;
        node.shutdown().await;
        Ok(0)
    });
    // A session still computing (a long cost preview, say) is not waited for.
    rt.shutdown_timeout(Duration::from_millis(500));
    drop(printer);
    served
}

/// The file in the owner directory holding the URL FIs use through the relay while `duo owner serve --relay`
/// runs, and that serve's process id (`duo owner invite` prints it, see [`relay_url_now`]).
const RELAY_URL_FILE: &str = "relay.url";

/// The relay URL noted by the last `duo owner serve --relay`, and whether that serve is running now (it holds
/// the directory's serve lock under the same process id). A serve killed with `kill -9` cannot remove its note;
/// this tells the stale note from the current one.
fn relay_url_now(dir: &Path) -> Option<(String, bool)> {
    let note = std::fs::read_to_string(dir.join(RELAY_URL_FILE)).ok()?;
    let mut lines = note.lines();
    let url = lines.next()?.trim().to_string();
    let pid = lines.next().and_then(|p| p.trim().parse::<u32>().ok());
    let current = pid.is_some() && pid == duo::node::home::serve_running(dir);
    Some((url, current))
}

/// With a relay: wait briefly for the node to be connected to it, say so, note the URL for `duo owner invite`,
/// and return it (the URL does not change when the node reconnects).
async fn relay_url(
    dir: &Path,
    node: &owner::RunningNode,
    relay: Option<&duo::node::relay::RelayTarget>,
    fingerprint: &str,
) -> Result<Option<String>> {
    let Some(relay) = relay else {
        return Ok(None);
    };
    let url = format!(
        "{}{}{fingerprint}",
        relay.url,
        duo::node::relay::OWNER_PREFIX
    );
    match node.relay_ready(Duration::from_secs(10)).await {
        Ok(_) => errln!("reachable through the relay at {url}: FIs pair with `duo fi pair {url} CODE`"),
        Err(why) => errln!(
            "warning: not connected to the relay yet ({why}); retrying in the background. FIs will use {url}"
        ),
    }
    // The URL, and this process's id: `duo owner invite` names the URL as current only while this serve runs.
    let note = format!("{url}\n{}\n", std::process::id());
    duo::node::home::write_private(&dir.join(RELAY_URL_FILE), note.as_bytes())?;
    Ok(Some(url))
}

/// Print the node's events on standard error, one line each, from a thread of their own (a slow terminal
/// never holds the node up: the node drops events the printer has not taken).
fn print_events(
    mut received: tokio::sync::mpsc::Receiver<owner::NodeEvent>,
    quiet: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while let Some(event) = received.blocking_recv() {
            let warning = matches!(event, owner::NodeEvent::Pressure { .. });
            if quiet && !warning {
                continue;
            }
            let at = chrono::Local::now().format("%H:%M:%S");
            let line = if warning {
                format!("{at} warning: {event}")
            } else {
                format!("{at} {event}")
            };
            errln!("{line}");
        }
    })
}

/// Ctrl-C, or SIGTERM on Unix.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `duo owner invite`: a one-time code on standard output, what to do with it on standard error.
fn invite(home: &Path, args: InviteArgs) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let ttl = ttl::parse_ttl(&args.ttl)?;
    if !(1..=3650).contains(&args.pairing_days) {
        bail!("--pairing-days must be between 1 and 3650");
    }
    let pairing = Duration::from_secs(u64::from(args.pairing_days) * 86400);
    let Some(given) = args.principal.as_deref() else {
        bail!("name the FI with --fi NAME");
    };
    let principal = given.trim();
    // The key a re-key replaces, as the owner sees it in `duo owner fi list`.
    let replaces = if args.rekey {
        open_owner(&dir)?
            .store()
            .current_pairing(principal)?
            .map(|p| p.fingerprint)
    } else {
        None
    };
    let code = if args.rekey {
        owner::rekey_invite(&dir, principal, ttl, pairing)?
    } else {
        owner::invite_for(&dir, principal, ttl, pairing)?
    };
    let others = open_owner(&dir)?
        .store()
        .open_invites()?
        .into_iter()
        .filter(|i| i.principal == principal && i.id != code.id)
        .count();
    // Where the FI connects: the relay's address for this node while `duo owner serve --relay` runs.
    let noted = relay_url_now(&dir);
    let relayed = noted
        .as_ref()
        .filter(|(_, current)| *current)
        .map(|(url, _)| url.clone());
    let last_relay_url = noted.map(|(url, _)| url);
    if args.json.json {
        print_json(&serde_json::json!({
            "principal": principal, "code": code.to_string(), "invite": code.id, "url": relayed,
            "expires_in_secs": ttl.as_secs(), "rekey": args.rekey, "replaces_fi_key_fingerprint": replaces,
            "other_open_invites": others, "last_relay_url": last_relay_url,
        }))?;
    } else {
        outln!("{code}")?;
        errln!(
            "give this code to {principal} out of band; it works once, for {} (invite {})",
            ttl::words(ttl),
            code.id
        );
        match (&relayed, &last_relay_url) {
            (Some(url), _) => {
                errln!("{principal} connects through the relay: `duo fi pair {url} {code}`")
            }
            (None, Some(url)) => errln!(
                "the node is not serving now; as of the last `duo owner serve --relay`, {principal} connects \
                 through the relay with `duo fi pair {url} {code}` (start serve with that relay again first)"
            ),
            (None, None) => {}
        }
        if args.rekey {
            errln!(
                "this code RE-KEYS {principal}: when it is used, the FI key paired now ({}) stops working at once, \
                 and the new key inherits {principal}'s budgets, counters, requests and past answers. Whoever \
                 holds the code can take {principal}'s place: send it as carefully as a first invite. \
                 `duo owner invite cancel {}` withdraws it.",
                replaces.as_deref().unwrap_or("see `duo owner fi list`"),
                code.id
            );
        }
        if others > 0 {
            errln!(
                "{principal} has {others} other open invite(s); the first one used cancels the others \
                 (`duo owner invite list`)"
            );
        }
    }
    Ok(0)
}

/// `duo owner invite list`: the invites that can still be used.
fn invite_list(home: &Path, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let list = open_owner(&dir)?.store().open_invites()?;
    if json.json {
        print_json(&list)?;
    } else if list.is_empty() {
        outln!("no open invite; make one with `duo owner invite --fi NAME`")?;
    } else {
        for i in list {
            let expires = chrono::DateTime::from_timestamp(i.expires_at, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            outln!(
                "{}  {}{}\n  made {}; expires {}; {} of {} attempt(s) used",
                i.id,
                i.principal,
                if i.rekey {
                    "  [re-key: replaces its current key]"
                } else {
                    ""
                },
                i.created_at,
                expires,
                i.attempts,
                store::MAX_INVITE_ATTEMPTS
            )?;
        }
    }
    Ok(0)
}

/// `duo owner invite cancel`: withdraw an open invite.
fn invite_cancel(home: &Path, id: &str, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let id = id.trim().to_ascii_lowercase();
    let inv = open_owner(&dir)?.store_mut().cancel_invite(&id)?;
    if json.json {
        print_json(&serde_json::json!({
            "invite": inv.id, "principal": inv.principal, "rekey": inv.rekey,
        }))?;
    } else {
        outln!(
            "cancelled invite {} for `{}`: its code no longer pairs",
            inv.id,
            inv.principal
        )?;
    }
    Ok(0)
}

/// `duo owner fi list`: the paired FIs.
fn fi_list(home: &Path, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let o = open_owner(&dir)?;
    let list = o.store().pairings()?;
    if json.json {
        print_json(&list)?;
    } else if list.is_empty() {
        outln!("no FI is paired; make an invite with `duo owner invite --fi NAME`")?;
    } else {
        for p in list {
            let expires = chrono::DateTime::from_timestamp(p.expires_at, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            outln!(
                "{}  [{}]\n  key {}; paired {}; expires {}; last seen {}; {} pending request(s)",
                p.principal,
                p.state,
                p.fingerprint,
                p.paired_at,
                expires,
                p.last_seen.as_deref().unwrap_or("never"),
                p.pending
            )?;
        }
    }
    Ok(0)
}

/// `duo owner fi revoke`: cut an FI off.
fn fi_revoke(home: &Path, principal: &str, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let mut o = open_owner(&dir)?;
    let cancelled = o.store_mut().revoke(principal)?;
    if json.json {
        print_json(&serde_json::json!({
            "principal": principal, "cancelled_requests": cancelled.requests,
            "cancelled_invites": cancelled.invites,
        }))?;
    } else {
        outln!(
            "revoked `{principal}`: its sessions close now; {} pending request(s) and {} open invite(s) cancelled",
            cancelled.requests.len(),
            cancelled.invites.len()
        )?;
    }
    Ok(0)
}

/// `duo owner dataset delete`: every version of one dataset's rows, after asking.
fn dataset_delete(home: &Path, name: &str, yes: bool) -> Result<i32> {
    let dir = ensure_owner(home)?;
    if !yes && !confirm(&format!("delete every version of the rows of `{name}`?"))? {
        return Ok(1);
    }
    let mut o = open_owner(&dir)?;
    let n = o.delete_dataset(name)?;
    outln!("deleted {n} version(s) of `{name}`; the log keeps what was released from it")?;
    Ok(0)
}

/// `duo owner forget`: every dataset's rows, after asking.
fn forget(home: &Path, yes: bool) -> Result<i32> {
    let dir = ensure_owner(home)?;
    if !yes && !confirm("delete ALL loaded data on this node?")? {
        return Ok(1);
    }
    let mut o = open_owner(&dir)?;
    let names: Vec<String> = o
        .store()
        .datasets()?
        .into_iter()
        .map(|d| d.meta.name)
        .collect();
    for name in &names {
        o.store_mut().delete_dataset(name)?;
    }
    o.store().scrub()?;
    outln!(
        "deleted {} dataset(s); the log, pairings and history are kept",
        names.len()
    )?;
    Ok(0)
}

/// `duo owner requests`: the pending requests, each with what approving it would release.
fn requests(home: &Path, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let o = open_owner(&dir)?;
    let views = o
        .pending_ids()?
        .into_iter()
        .map(|id| o.pending_view(id))
        .collect::<Result<Vec<_>, _>>()?;
    if json.json {
        print_json(&views)?;
    } else if views.is_empty() {
        outln!("no requests are waiting for you")?;
    } else {
        for v in &views {
            outln!("{}", show::pending(v))?;
        }
    }
    Ok(0)
}

/// `duo owner approve`: exit 1, with what approving would mean now, if anything shown has changed.
fn approve(home: &Path, args: ApproveArgs) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let mut o = open_owner(&dir)?;
    match o.approve(args.id, args.seen.as_deref()) {
        Ok(v) => {
            emit(args.json, &v, |v| {
                format!("released:\n{}", show::request(v))
            })?;
            Ok(0)
        }
        Err(duo::node::Error::Stale { why, .. }) => {
            // What approving would mean now, read again; it may have stopped waiting meanwhile.
            let fresh = o.pending_view(args.id);
            if args.json.json {
                let fresh = fresh.ok();
                print_json(
                    &serde_json::json!({ "error": "stale", "message": why, "fresh": fresh }),
                )?;
            } else {
                match fresh {
                    Ok(fresh) => {
                        errln!("not approved: {why}\nhere is what approving would mean now:\n");
                        errln!("{}", show::pending(&fresh));
                    }
                    Err(e) => errln!("not approved: {why}\n({e})"),
                }
            }
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

/// `duo owner deny`: the FI sees `reason`.
fn deny(home: &Path, id: u64, reason: &str, json: JsonFlag) -> Result<i32> {
    let dir = ensure_owner(home)?;
    let mut o = open_owner(&dir)?;
    let v = o.deny(id, reason)?;
    emit(json, &v, |v| format!("denied:\n{}", show::request(v)))?;
    Ok(0)
}
