//! `duo bench ui`: the owner UI's speed with a full store. An owner node (`duo owner serve`, its own process,
//! with its UI) gets 1,000 requests from a paired FI (plaintext and DP releases, approved by its policy, and a
//! few left for the owner) and log entries up to 10,000; then each page is fetched over loopback many times
//! (the time from connecting to the last byte of the answer: the server's time plus loopback), and the time
//! from the FI sending a request the owner must decide to the `change` event on an open `/events` stream, and
//! to the new request being in the queue the page then fetches.

use super::measure::{Machine, Micros};
use crate::cli::out::errln;
use anyhow::{anyhow, bail, Context, Result};
use duo::node::fi::Client;
use duo::node::owner::{DatasetCache, Owner};
use duo::node::proto::request::DpParams;
use duo::node::store::{self, prelude::*};
use duo::policies::{Backend, Scope};
use duo_testkit::owner::BENCH_SEED;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Approve catalogue attributes in plaintext and DP releases costing at most 0.5; ask the owner about the rest.
const POLICY: &str = r#"
default = "ask"
[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"
[[rule]]
name = "small-dp"
backend = ["dp"]
max_cost = "0.5"
action = "approve"
"#;

/// The pages measured: (name, path).
const PAGES: [(&str, &str); 6] = [
    ("Home", "/"),
    ("Requests", "/requests"),
    ("Log, page 1", "/log"),
    ("Log, page 150", "/log?page=150"),
    ("Log filtered by kind, page 10", "/log?kind=release&page=10"),
    ("Budgets", "/budgets"),
];

/// The goals of issue 11: a page's server time (p50) and a new request's way to an open page.
const PAGE_GOAL_US: u64 = 5_000;
const EVENT_GOAL_US: u64 = 250_000;

/// Options of `duo bench ui`.
#[derive(clap::Args, Debug, Clone)]
pub struct UiArgs {
    /// Requests in the store.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Of the requests, how many are left waiting for the owner (the Requests page shows each). The node lets
    /// one FI have 32 waiting, and the event measurement adds `--events` more.
    #[arg(long, default_value_t = 10)]
    pub waiting: usize,
    /// Log entries in the store (topped up with cap changes after the requests' own entries).
    #[arg(long, default_value_t = 10_000)]
    pub log_entries: u64,
    /// Fetches of each page measured (after 10 unmeasured).
    #[arg(long, default_value_t = 200)]
    pub fetches: usize,
    /// New requests whose way to the open page is measured.
    #[arg(long, default_value_t = 20)]
    pub events: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One page's times.
#[derive(Debug, Clone, Serialize)]
pub struct PageTime {
    /// The page.
    pub page: String,
    /// Its path.
    pub path: String,
    /// Median, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Size of the answer, bytes.
    pub bytes: usize,
}

/// What `duo bench ui` measured.
#[derive(Debug, Clone, Serialize)]
pub struct UiReport {
    /// Where it ran.
    pub machine: Machine,
    /// Requests in the store.
    pub requests: u64,
    /// Of them, waiting for the owner (before the event measurement adds its own).
    pub waiting: usize,
    /// Log entries in the store.
    pub log_entries: u64,
    /// Each page.
    pub pages: Vec<PageTime>,
    /// From the FI sending a request to the `change` event on the open stream: median, microseconds.
    pub event_p50_us: u64,
    /// The same, 99th percentile.
    pub event_p99_us: u64,
    /// From the FI sending to the request being in the queue the page fetches on the event: median.
    pub shown_p50_us: u64,
    /// The same, 99th percentile.
    pub shown_p99_us: u64,
    /// Whether every page's median is under 5 ms and the event's under 250 ms.
    pub goals_met: bool,
}

impl UiReport {
    /// The report as text.
    pub fn text(&self) -> String {
        let ms = |us: u64| format!("{:.2} ms", us as f64 / 1e3);
        let mut out = format!(
            "{}\nstore: {} requests ({} waiting for the owner), {} log entries\nserver time per page over loopback (connect to last byte), \
             goal p50 < 5 ms:\n",
            self.machine.line(),
            self.requests,
            self.waiting,
            self.log_entries
        );
        for p in &self.pages {
            out.push_str(&format!(
                "  {:<32} p50 {:>9}  p99 {:>9}  {} bytes{}\n",
                p.page,
                ms(p.p50_us),
                ms(p.p99_us),
                p.bytes,
                if p.p50_us < PAGE_GOAL_US {
                    ""
                } else {
                    "  OVER THE GOAL"
                }
            ));
        }
        out.push_str(&format!(
            "new request to an open page (goal < 250 ms): event p50 {} p99 {}; in the fetched queue p50 {} p99 {}\n{}",
            ms(self.event_p50_us),
            ms(self.event_p99_us),
            ms(self.shown_p50_us),
            ms(self.shown_p99_us),
            if self.goals_met {
                "goals met"
            } else {
                "GOALS NOT MET"
            }
        ));
        out
    }
}

/// The UI's address: `127.0.0.1:PORT` and the cookie it gave for the secret.
struct Ui {
    host: String,
    cookie: String,
}

/// One GET over a fresh connection: (status, body, time from connecting to the last byte).
fn get(ui: &Ui, path: &str, cookie: bool) -> Result<(u16, String, Duration)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(&ui.host)?;
    s.set_nodelay(true)?;
    let cookie = if cookie {
        format!("Cookie: {}\r\n", ui.cookie)
    } else {
        String::new()
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{cookie}Connection: close\r\n\r\n",
        ui.host
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body, took))
}

/// Sign in with the printed address's secret: the cookie.
fn sign_in(url: &str) -> Result<Ui> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not a UI address: {url}"))?;
    let (host, secret) = rest
        .split_once("/?k=")
        .ok_or_else(|| anyhow!("no secret in {url}"))?;
    let mut s = TcpStream::connect(host)?;
    write!(
        s,
        "GET /?k={secret} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let cookie = raw
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| anyhow!("the UI gave no cookie: {raw}"))?;
    Ok(Ui {
        host: host.to_string(),
        cookie: cookie.to_string(),
    })
}

/// Run the bench.
pub async fn ui(args: UiArgs) -> Result<UiReport> {
    if args.requests < 20
        || args.fetches == 0
        || args.events == 0
        || args.waiting > args.requests
        || args.waiting + args.events > 32
    {
        bail!(
            "--requests must be at least 20, --fetches and --events at least 1, --waiting at most --requests, \
             and --waiting plus --events at most 32 (the node's limit of requests waiting from one FI)"
        );
    }
    let machine = Machine::now();
    let tmp = tempfile::Builder::new().prefix("duo-bench-ui-").tempdir()?;
    let dir = duo_testkit::sample_owner(
        tmp.path(),
        POLICY,
        BENCH_SEED,
        duo::engine::sample::Profile::Reliable,
    )?;
    {
        let mut o = Owner::open(&dir, store::Sync::Normal, DatasetCache::default())?;
        o.set_cap(
            &Scope::Global,
            "1000000".parse()?,
            duo::policies::Measure::PureEpsilon,
        )?;
    }
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(tmp.path())
        .args([
            "owner",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sync",
            "normal",
        ])
        .args(["--requests-per-hour", &usize::MAX.to_string()])
        .arg("--quiet")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let url = super::node_url(&mut child).await?;
    let say = |m: String| {
        if !args.json {
            errln!("{m}");
        }
    };
    say(format!("filling the store: {} requests...", args.requests));
    let mut c =
        duo_testkit::fi::pair_and_connect(&dir, &url, "Acme Bank", &tmp.path().join("fi")).await?;
    fill(&mut c, args.requests, args.waiting).await?;
    let requests = args.requests as u64;
    let log_entries = top_up(&dir, args.log_entries)?;
    let ui_url = ui_address(&dir).await?;
    let ui = sign_in(&ui_url)?;
    say(format!(
        "{log_entries} log entries; fetching each page {} times...",
        args.fetches
    ));
    let mut pages = Vec::new();
    for (name, path) in PAGES {
        pages.push(page_time(&ui, name, path, args.fetches)?);
    }
    say(format!("{} new requests to the open page...", args.events));
    let (event, shown) = events(&ui, &mut c, args.events).await?;
    c.close().await;
    let _ = child.kill().await;
    let goals_met = pages.iter().all(|p| p.p50_us < PAGE_GOAL_US)
        && event.quantile(0.5) < EVENT_GOAL_US
        && shown.quantile(0.5) < EVENT_GOAL_US;
    Ok(UiReport {
        machine,
        requests,
        waiting: args.waiting,
        log_entries,
        pages,
        event_p50_us: event.quantile(0.5),
        event_p99_us: event.quantile(0.99),
        shown_p50_us: shown.quantile(0.5),
        shown_p99_us: shown.quantile(0.99),
        goals_met,
    })
}

/// `n` requests: `waiting` plaintext ones the owner must decide (left waiting, spread out), DP releases of
/// varying cost (each charged), and plaintext catalogue releases (approved, the rest answered from the store).
async fn fill(c: &mut Client, n: usize, waiting: usize) -> Result<()> {
    let ask = c.expr("count(rent)").await?;
    let catalogue = c.expr("rent_on_time_ratio_12m()").await?;
    let noisy = c.expr("count(transactions)").await?;
    for i in 0..n {
        if waiting > 0 && i % (n / waiting) == 0 && i / (n / waiting) < waiting {
            c.request(&ask, Backend::Plaintext, "bench: for the owner")
                .await?;
        } else if i % 3 == 0 {
            let params = DpParams {
                epsilon: Some(0.001 * (1 + i % 400) as f64),
                ..DpParams::default()
            };
            c.request_dp(&noisy, params, "bench: noisy count").await?;
        } else {
            c.request(&catalogue, Backend::Plaintext, "bench: catalogue")
                .await?;
        }
    }
    Ok(())
}

/// Add cap changes to the log until it holds `want` entries; the entries it holds.
fn top_up(dir: &Path, want: u64) -> Result<u64> {
    let mut o = Owner::open(dir, store::Sync::Normal, DatasetCache::default())?;
    let mut have = o.store().log_len()?;
    let measure = o.store().ledger()?.measure();
    while have < want {
        let cap = if have % 2 == 0 { "1000000" } else { "999999" };
        o.set_cap(&Scope::Global, cap.parse()?, measure)?;
        have += 1;
    }
    Ok(o.store().log_len()?)
}

/// The address `duo owner serve` wrote for its UI.
async fn ui_address(dir: &Path) -> Result<String> {
    let file = duo::node::web::address_file(dir);
    for _ in 0..200 {
        if let Ok(url) = std::fs::read_to_string(&file) {
            return Ok(url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the owner node wrote no UI address to {}", file.display())
}

/// One page fetched `n` times after 10 unmeasured fetches.
fn page_time(ui: &Ui, name: &str, path: &str, n: usize) -> Result<PageTime> {
    let mut times = Micros::new();
    let mut bytes = 0;
    for i in 0..n + 10 {
        let (status, body, took) = get(ui, path, true)?;
        if status != 200 {
            bail!("{path} answered {status}: {body}");
        }
        if i >= 10 {
            times.record(&took);
        }
        bytes = body.len();
    }
    Ok(PageTime {
        page: name.to_string(),
        path: path.to_string(),
        p50_us: times.quantile(0.5),
        p99_us: times.quantile(0.99),
        bytes,
    })
}

/// Open `/events` as the page does; then `n` times: the FI asks something the owner must decide, and the
/// time to the `change` event announcing it, and to the queue (fetched on the event) holding it.
async fn events(ui: &Ui, c: &mut Client, n: usize) -> Result<(Micros, Micros)> {
    let mut s = TcpStream::connect(&ui.host)?;
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nSec-Fetch-Site: same-origin\r\n\r\n",
        ui.host, ui.cookie
    )?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, u64)>();
    // A thread reads the stream: each `change` event's count, with when it arrived.
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(k) = s.read(&mut buf) {
            if k == 0 {
                break;
            }
            let at = Instant::now();
            seen.push_str(&String::from_utf8_lossy(&buf[..k]));
            while let Some(end) = seen.find("\n\n") {
                let ev: String = seen.drain(..end + 2).collect();
                if let Some(count) = ev
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| d.trim().parse().ok())
                {
                    if tx.send((at, count)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("no first event on /events")?
        .ok_or_else(|| anyhow!("the event stream closed"))?;
    let mut waiting = first.1;
    let p = c.expr("count(rent)").await?;
    let (mut event, mut shown) = (Micros::new(), Micros::new());
    for i in 0..n {
        // Let the watcher's 100 ms poll fall anywhere relative to the request.
        tokio::time::sleep(Duration::from_millis(37 * (i as u64 % 5))).await;
        while rx.try_recv().is_ok() {}
        let t = Instant::now();
        let v = c
            .request(&p, Backend::Plaintext, "bench: live queue")
            .await?;
        let at = loop {
            let (at, count) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .context("no event for a new request within 10 s")?
                .ok_or_else(|| anyhow!("the event stream closed"))?;
            if count > waiting {
                waiting = count;
                break at;
            }
        };
        event.record(&(at - t));
        let (_, queue, _) = get(ui, "/requests/queue", true)?;
        // One FI: its own request numbers are the owner's.
        if !queue.contains(&format!("data-id=\"{}\"", v.id)) {
            bail!("request {} is not in the queue after its event", v.id);
        }
        shown.record(&t.elapsed());
    }
    Ok((event, shown))
}
