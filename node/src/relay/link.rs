//! Where an owner's node finds its relay ([`RelayTarget`]), and how long it waits between attempts ([`backoff`]).
//! The link itself is the owner's (`owner::relay`).

use super::base_url;
use crate::error::Error;
use crate::net::keys::normalize_fingerprint;
use std::time::Duration;

/// First pause before reconnecting to the relay.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// Longest pause between reconnection attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The relay an owner node serves through: its URL and the fingerprint of its key, which the node pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTarget {
    /// `ws://host:port`.
    pub url: String,
    /// The relay key's fingerprint (as `duo relay` prints it).
    pub fingerprint: String,
}

impl RelayTarget {
    /// Reads `ws://host:port#FINGERPRINT`, the line `duo relay` prints.
    ///
    /// # Errors
    /// When the URL is not `ws://` or the fingerprint is missing or malformed.
    pub fn parse(s: &str) -> Result<RelayTarget, Error> {
        let s = s.trim();
        let (url, fp) = s.split_once('#').ok_or_else(|| {
            Error::Refused(
                "give the relay as ws://HOST:PORT#FINGERPRINT, as `duo relay` prints it (the fingerprint pins \
                 the relay's key)"
                    .into(),
            )
        })?;
        if !url.starts_with("ws://") {
            return Err(Error::Refused(format!(
                "the relay URL {url:?} must start with ws://"
            )));
        }
        let fingerprint = normalize_fingerprint(fp).ok_or_else(|| {
            Error::Refused(format!(
                "{fp:?} is not a key fingerprint (32 base32 characters, as `duo relay` prints it)"
            ))
        })?;
        Ok(RelayTarget {
            url: base_url(url).to_string(),
            fingerprint,
        })
    }

    /// `host:port` for a TCP connection.
    pub fn host_port(&self) -> &str {
        self.url.strip_prefix("ws://").unwrap_or(&self.url)
    }
}

/// The pause before attempt `n` (from 0): exponential from [`BACKOFF_FIRST`], capped at [`BACKOFF_CAP`], then
/// between half and all of it, at random (so owners cut off together do not return together).
pub fn backoff(n: u32) -> Duration {
    let full = BACKOFF_FIRST
        .saturating_mul(1u32 << n.min(16))
        .min(BACKOFF_CAP);
    let half = full / 2;
    half + Duration::from_millis(rand::random::<u64>() % (half.as_millis() as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for n in 0..40 {
            let full = BACKOFF_FIRST
                .saturating_mul(1 << n.min(16))
                .min(BACKOFF_CAP);
            let d = backoff(n);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {n}: {d:?} outside [{:?}, {full:?}]",
                full / 2
            );
        }
        let draws: std::collections::BTreeSet<_> = (0..20).map(|_| backoff(10)).collect();
        assert!(draws.len() > 1, "jittered");
    }

    #[test]
    fn a_relay_target_needs_its_pin() {
        let t = RelayTarget::parse("ws://10.0.0.1:7879#OLARIGWT4V3BPAZJZMLATH2526QVRJPF").unwrap();
        assert_eq!(t.url, "ws://10.0.0.1:7879");
        assert_eq!(t.fingerprint, "olarigwt4v3bpazjzmlath2526qvrjpf");
        assert!(RelayTarget::parse("ws://10.0.0.1:7879").is_err());
        assert!(RelayTarget::parse("http://h:1#olarigwt4v3bpazjzmlath2526qvrjpf").is_err());
        assert!(RelayTarget::parse("ws://h:1#short").is_err());
    }
}
