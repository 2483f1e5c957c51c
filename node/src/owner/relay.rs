//! The owner node's link to its relay (`duo owner serve --relay`): a control connection kept up with capped,
//! jittered exponential backoff, and a data connection per waiting FI, served as any FI connection.

use super::service::Shared;
use crate::net::transport::{self, Limits, Mode};
use crate::relay::link::backoff;
use crate::relay::{ControlMsg, RelayTarget, CONTROL_IDLE, CONTROL_PATH, JOIN_PREFIX, PING_EVERY};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Where the link stands, for the owner to see ([`crate::owner::RunningNode::relay_url`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected (yet, or again); the last reason, if any.
    Down(Option<String>),
    /// Connected: FIs reach the node at this URL.
    Up(String),
}

/// Keep the node reachable through `target` until `shutdown`.
pub(crate) async fn run(
    target: RelayTarget,
    shared: Arc<Shared>,
    state: watch::Sender<LinkState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            _ = shutdown.changed() => return,
            o = serve_once(&target, &shared, &state) => o,
        };
        if outcome.connected {
            attempt = 0;
        }
        let _ = state.send(LinkState::Down(Some(outcome.why)));
        let pause = backoff(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

struct Outcome {
    connected: bool,
    why: String,
}

/// One control connection, from its handshake to its end.
async fn serve_once(
    target: &RelayTarget,
    shared: &Arc<Shared>,
    state: &watch::Sender<LinkState>,
) -> Outcome {
    let limits = Limits {
        idle_timeout: CONTROL_IDLE,
        ..Limits::default()
    };
    let url = format!("{}{CONTROL_PATH}", target.url);
    let mut chan = match transport::connect(
        &url,
        &shared.key,
        Mode::Session,
        None,
        &target.fingerprint,
        &limits,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                connected: false,
                why: format!("could not connect to the relay {}: {e}", target.url),
            }
        }
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut connected = false;
    let why = loop {
        tokio::select! {
            got = chan.recv() => {
                let msg = match got {
                    Ok(Some(bytes)) => serde_json::from_slice::<ControlMsg>(&bytes).ok(),
                    Ok(None) => break "the relay closed the connection".to_string(),
                    Err(e) => break format!("the relay connection failed: {e}"),
                };
                match msg {
                    Some(ControlMsg::Ready { path }) => {
                        connected = true;
                        let _ = state.send(LinkState::Up(format!("{}{path}", target.url)));
                    }
                    Some(ControlMsg::Waiting { token }) => {
                        tokio::spawn(join(target.clone(), token, shared.clone()));
                    }
                    Some(ControlMsg::Refused { reason }) => {
                        break format!("the relay {} refused this node: {reason}", target.url);
                    }
                    // Pings, and messages of later versions, only show the relay is alive.
                    Some(ControlMsg::Ping) | None => {}
                }
            }
            _ = ping.tick() => {
                let Ok(bytes) = serde_json::to_vec(&ControlMsg::Ping) else { continue };
                if let Err(e) = chan.send(&bytes).await {
                    break format!("the relay connection failed: {e}");
                }
            }
        }
    };
    chan.close().await;
    Outcome { connected, why }
}

/// Open the data connection for a waiting FI and serve it as any FI connection.
async fn join(target: RelayTarget, token: String, shared: Arc<Shared>) {
    if !token.bytes().all(|b| b.is_ascii_hexdigit()) || token.len() > 64 {
        return;
    }
    let Ok(Ok(mut tcp)) = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect(target.host_port()),
    )
    .await
    else {
        return;
    };
    let request = format!(
        "GET {JOIN_PREFIX}{token} HTTP/1.1\r\nHost: {}\r\n\r\n",
        target.host_port()
    );
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let Some(admission) = shared.gate.admit() else {
        return;
    };
    let Ok(peer) = tcp.peer_addr() else {
        return;
    };
    let mut stop = shared.stopping.clone();
    tokio::select! {
        () = super::session::session(tcp, peer, shared, admission) => {}
        _ = stop.changed() => {}
    }
}
