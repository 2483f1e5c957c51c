//! `duo relay`: run a relay that owners behind NAT connect out to, and FIs reach them through.

use super::out::{errln, outln};
use super::JsonFlag;
use anyhow::Result;
use clap::Args;
use duo::node::relay::{self, RelayConfig, RelayLimits};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Options of `duo relay`.
#[derive(Args, Debug)]
pub struct RelayArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:7879")]
    listen: SocketAddr,
    /// FI sessions one owner may have through the relay at once.
    #[arg(long, default_value_t = 16)]
    sessions_per_owner: usize,
    /// Bytes per second forwarded for one owner (both directions, all its sessions).
    #[arg(long, default_value_t = 8 << 20)]
    bytes_per_sec: u64,
    /// Largest WebSocket frame an FI may send through the relay, in bytes.
    #[arg(long, default_value_t = 65_600)]
    max_frame: u64,
    /// A session with no byte either way for this long is closed (e.g. 300s, 10m).
    #[arg(long, default_value = "300s")]
    idle: humantime::Duration,
    /// Unauthenticated connections from one source address held at once (its oldest is dropped for a new one).
    #[arg(long, default_value_t = 64)]
    pending_per_ip: usize,
    /// Owners connected at once from one source address (an IPv6 source counts by its /64); more are refused.
    /// Each owner costs the relay about 36-58 KiB, so 256 bound one address to about 15 MiB.
    #[arg(long, default_value_t = 256)]
    max_owners_per_source: usize,
    /// Owners connected at once in all; more are refused (10 000 bound owner state near 0.6 GB).
    #[arg(long, default_value_t = 10_000)]
    max_owners: usize,
    /// Seconds between two lines of counts.
    #[arg(long, default_value_t = 60)]
    every: u64,
    #[command(flatten)]
    json: JsonFlag,
}

/// `duo relay`: the pin line on standard output, then counts every `--every` seconds until Ctrl-C or SIGTERM
/// (on standard error as text, or on standard output as one JSON object per line with `--json`).
pub fn run(args: RelayArgs, home: &Path) -> Result<i32> {
    let key = relay::server::load_or_create_key(&home.join("relay"))?;
    let limits = RelayLimits {
        sessions_per_owner: args.sessions_per_owner.max(1),
        bytes_per_sec: args.bytes_per_sec.max(1),
        max_frame: args.max_frame,
        idle: args.idle.into(),
        max_pending_per_ip: args.pending_per_ip.max(1),
        max_owners: args.max_owners.max(1),
        max_owners_per_source: args.max_owners_per_source.max(1),
        ..RelayLimits::default()
    };
    let rt = super::runtime()?;
    rt.block_on(async move {
        let running = relay::spawn(
            RelayConfig {
                key,
                limits,
                capture: None,
            },
            args.listen,
        )
        .await?;
        if args.json.json {
            outln!(
                "{}",
                serde_json::json!({"relay": running.pin(), "fingerprint": running.fingerprint()})
            )?;
        } else {
            outln!("{}", running.pin())?;
            errln!(
                "relay listening on {} (key {}); owners serve through it with `duo owner serve --relay {}`, \
                 and FIs reach an owner at {}/o/OWNER_FINGERPRINT (what `duo owner invite` prints); it forwards \
                 ciphertext and keeps no record; Ctrl-C to stop",
                running.url(),
                running.fingerprint(),
                running.pin(),
                running.url()
            );
        }
        let mut tick = tokio::time::interval(Duration::from_secs(args.every.max(1)));
        tick.tick().await;
        loop {
            tokio::select! {
                () = super::owner::shutdown_signal() => break,
                _ = tick.tick() => {
                    let s = running.stats();
                    if args.json.json {
                        outln!("{}", serde_json::to_string(&s)?)?;
                    } else {
                        errln!(
                            "{} owners connected, {} sessions now ({} since start), {} bytes forwarded; refused: \
                             {} unknown owner, {} owner at its session limit, {} owner too slow to join, {} \
                             oversized frames, {} dropped unauthenticated, {} owners over a cap",
                            s.owners, s.sessions, s.sessions_total, s.bytes, s.unknown_owner, s.owner_busy,
                            s.owner_silent, s.oversized, s.dropped, s.owners_refused
                        );
                    }
                }
            }
        }
        errln!("stopping");
        running.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    rt.shutdown_timeout(Duration::from_millis(500));
    Ok(0)
}
