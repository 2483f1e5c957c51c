//! Carrying a private scoring run's protocol messages over the session: chunking, timeouts, and a peer that
//! gives up (see [`crate::proto::scoring`] for the framing).

use crate::net::transport::{SecureChannel, TransportError};
use crate::proto::sanitize;
use crate::proto::scoring::{CHUNK, CHUNK_MARK, STEP_TIMEOUT};
use duo_protocols::score;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a run over the session ended without an output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The protocol failed (the peer misbehaved, or an input was refused).
    #[error("{0}")]
    Protocol(#[from] score::Error),
    /// The peer sent nothing for [`STEP_TIMEOUT`].
    #[error("no message from the peer for {0:?} while waiting for {1}")]
    Timeout(Duration, &'static str),
    /// The channel failed or closed.
    #[error("the channel failed: {0}")]
    Transport(#[from] TransportError),
    /// The peer sent a control message instead of a protocol message: it gave up.
    #[error("the peer ended the run: {0}")]
    PeerEnded(String),
    /// The owner revoked the FI's pairing (or it expired) during the run.
    #[error("the owner revoked or ended this FI's pairing during the run")]
    Revoked,
    /// A protocol chunk was malformed, or a message outgrew the run's limit.
    #[error("bad protocol chunk: {0}")]
    BadChunk(String),
    /// The owner's side only: the run computed an output the owner's node does not release (the detail may
    /// quote the output: it goes to the owner's log, never to the FI).
    #[error("the output was withheld: {0}")]
    Withheld(String),
}

impl RunError {
    /// What the owner's node tells the FI about an abort: a fixed phrase per kind of failure, never the detail
    /// (which can quote the owner's output or data; it goes to the owner's log).
    pub fn wire_reason(&self) -> &'static str {
        match self {
            RunError::Protocol(e) if e.is_peer() => "the FI's protocol messages were refused",
            RunError::Timeout(..) => "no protocol message from the FI in time",
            RunError::Transport(_) => "the channel failed",
            RunError::PeerEnded(_) => "the FI ended the run",
            RunError::Revoked => "the owner revoked or ended this FI's pairing during the run",
            RunError::BadChunk(_) => "a malformed protocol chunk from the FI",
            RunError::Protocol(_) | RunError::Withheld(_) => "the owner's node ended the run",
        }
    }
}

/// Counters of one run on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBytes {
    /// Protocol bytes sent (chunk payloads, without the two-byte chunk header and channel overhead).
    pub sent: u64,
    /// Protocol bytes received.
    pub received: u64,
}

/// Sends one protocol message as chunks.
pub(crate) async fn send_msg<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    msg: &[u8],
    bytes: &mut RunBytes,
) -> Result<(), RunError> {
    // A chunk and its two header bytes make one transport message.
    const { assert!(CHUNK + 2 == crate::net::transport::MAX_CHUNK) };
    let mut chunks = msg.chunks(CHUNK).peekable();
    let mut buf = Vec::with_capacity(CHUNK + 2);
    if msg.is_empty() {
        chan.send(&[CHUNK_MARK, 1]).await?;
    }
    while let Some(c) = chunks.next() {
        buf.clear();
        buf.push(CHUNK_MARK);
        buf.push(chunks.peek().is_none() as u8);
        buf.extend_from_slice(c);
        chan.send(&buf).await?;
    }
    bytes.sent += msg.len() as u64;
    Ok(())
}

/// Receives the next protocol message by `deadline`. Cancel-safe: the chunks received so far stay in `partial`.
pub(crate) async fn recv_msg<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    max: usize,
    waiting_for: &'static str,
    bytes: &mut RunBytes,
    partial: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, RunError> {
    let msg = partial;
    loop {
        let got = tokio::time::timeout_at(deadline, chan.recv())
            .await
            .map_err(|_| RunError::Timeout(STEP_TIMEOUT, waiting_for))??;
        let Some(payload) = got else {
            return Err(RunError::Transport(TransportError::Closed));
        };
        match payload.split_first() {
            Some((&CHUNK_MARK, rest)) => {
                let (&last, body) = rest
                    .split_first()
                    .ok_or_else(|| RunError::BadChunk("a chunk without its header".into()))?;
                if last > 1 {
                    return Err(RunError::BadChunk(format!("chunk flag {last}")));
                }
                if msg.len() + body.len() > max {
                    return Err(RunError::BadChunk(format!(
                        "a protocol message over {max} bytes, the limit for this run"
                    )));
                }
                msg.extend_from_slice(body);
                if last == 1 {
                    bytes.received += msg.len() as u64;
                    return Ok(std::mem::take(msg));
                }
            }
            _ => {
                let text = String::from_utf8_lossy(&payload);
                let why = serde_json::from_slice::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/body/message")
                            .or_else(|| v.pointer("/body/reason"))
                            .and_then(|m| m.as_str().map(str::to_string))
                    })
                    .unwrap_or_else(|| text.chars().take(200).collect());
                return Err(RunError::PeerEnded(sanitize(&why)));
            }
        }
    }
}
