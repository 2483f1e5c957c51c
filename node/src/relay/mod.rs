//! The relay: owners behind NAT stay reachable through a small server they connect out to.
//!
//! * [`server`]: `duo relay`. It has its own static key; an owner proves its node key to it with the
//!   node's own Noise handshake ([`crate::net::transport`]) over a *control connection* and becomes
//!   reachable at `/o/FINGERPRINT` on the relay. An FI connects to that address exactly as to an owner node;
//!   the relay asks the owner (over the control connection) to open a fresh *data connection*, then joins the
//!   two TCP streams and forwards their bytes without reading them (it only reads WebSocket frame headers of
//!   the FI's side, to enforce the frame size limit). The FI's Noise handshake, pairing and pinning are end to
//!   end with the owner node and unchanged.
//! * [`link`] and the owner room's `relay` module: the owner's side, started by `duo owner serve --relay ws://HOST:PORT#FINGERPRINT`
//!   ([`RelayTarget`]): it keeps the control connection up (reconnecting with capped exponential backoff and
//!   jitter) and hands each data connection to the node's ordinary session code.
//!
//! The messages are specified in `docs/protocol.md` ("Relay").

pub mod link;
pub mod server;

pub use link::RelayTarget;
pub use server::{spawn, Capture, RelayConfig, RelayLimits, RelayStats, RunningRelay};

use serde::{Deserialize, Serialize};

/// The path of the control connection on the relay.
pub const CONTROL_PATH: &str = "/control";
/// The path prefix of an owner's address on the relay (`/o/FINGERPRINT`).
pub const OWNER_PREFIX: &str = "/o/";
/// The path prefix of an owner's data connection (`/join/TOKEN`).
pub const JOIN_PREFIX: &str = "/join/";
/// The sentence of the relay's HTTP 404 for an owner address nobody serves.
pub const NO_OWNER_MESSAGE: &str = crate::net::transport::NO_OWNER_AT_RELAY;

/// A message on the control connection (JSON inside the Noise channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "relay", rename_all = "snake_case")]
pub enum ControlMsg {
    /// Relay to owner, once after the handshake: the path FIs use to reach this owner.
    Ready {
        /// `/o/FINGERPRINT`.
        path: String,
    },
    /// Relay to owner: an FI is waiting; open a data connection to `/join/TOKEN`.
    Waiting {
        /// 32 hex characters, single use, valid for the relay's join timeout.
        token: String,
    },
    /// Either way, every [`PING_EVERY`]: the other side is alive.
    Ping,
    /// Relay to owner, instead of [`ControlMsg::Ready`], before closing: the relay will not serve this owner
    /// (it has its maximum of owners, in all or from the owner's source address).
    Refused {
        /// Why, and what to do; shown to the owner.
        reason: String,
    },
}

/// How often each side of a control connection says it is alive.
pub const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(20);
/// A control connection silent this long is dead (three missed pings).
pub const CONTROL_IDLE: std::time::Duration = std::time::Duration::from_secs(65);

/// `ws://host:port` of a relay URL, without path or fragment.
pub(crate) fn base_url(url: &str) -> &str {
    let url = url.split('#').next().unwrap_or(url);
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    let end = rest.find('/').map(|i| i + 5).unwrap_or(url.len());
    url.get(..end).unwrap_or(url).trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_drops_path_and_fragment() {
        assert_eq!(base_url("ws://1.2.3.4:9/o/abc#fp"), "ws://1.2.3.4:9");
        assert_eq!(base_url("ws://h:1#fp"), "ws://h:1");
        assert_eq!(base_url("ws://h:1/"), "ws://h:1");
    }

    #[test]
    fn control_messages_have_a_stable_form() {
        assert_eq!(
            serde_json::to_string(&ControlMsg::Refused { reason: "r".into() }).unwrap(),
            r#"{"relay":"refused","reason":"r"}"#
        );
        let m = ControlMsg::Waiting { token: "ab".into() };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"relay":"waiting","token":"ab"}"#
        );
        assert_eq!(
            serde_json::to_string(&ControlMsg::Ping).unwrap(),
            r#"{"relay":"ping"}"#
        );
    }
}
