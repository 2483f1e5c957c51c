//! The Duo transport: a WebSocket carrying a Noise channel.
//!
//! The FI is the initiator (WebSocket client, [`connect`]); the owner node is the responder
//! (WebSocket server, [`accept`]). After the handshake both sides hold a [`SecureChannel`] that
//! sends and receives whole application messages (opaque bytes), encrypted and authenticated.
//!
//! # Wire protocol, versions 2 and 1
//!
//! The two versions differ only in the Noise cipher (step 2): AES-256-GCM in version 2, ChaCha20-Poly1305
//! in version 1. A client offers both; a server picks the newer.
//!
//! All frames are WebSocket frames (RFC 6455). **Binary** frames carry the cleartext negotiation
//! (hello, welcome) and every Noise message. **Text** frames carry only cleartext error reports
//! (step 4). Ping and pong frames may appear at any time and are ignored (the WebSocket layer
//! answers pings). Every frame, and every WebSocket message, is at most [`Limits::max_frame`]
//! bytes (65 600 by default); larger ones are refused by the WebSocket layer.
//!
//! ## 1. Negotiation (cleartext)
//! The client's first WebSocket message is a binary frame holding the UTF-8 JSON *hello*:
//! ```json
//! {"duo":"hello","versions":[2,1],"mode":"session"}
//! {"duo":"hello","versions":[2,1],"mode":"pair","invite":"abcd2345"}
//! ```
//! `versions` lists the protocol versions the client speaks. `mode` is `"session"` (a later
//! session between already-paired keys) or `"pair"` (pairing with an invite code; `invite` is
//! the invite id, 1 to 64 printable ASCII characters, normally the 8-character id of the code).
//! Unknown fields are ignored; a hello is at most [`MAX_HELLO`] (1024) bytes. The server picks the highest version both sides speak (this
//! implementation speaks [`PROTOCOL_VERSIONS`], 2 and 1) and answers with a binary frame holding
//! ```json
//! {"duo":"welcome","version":2}
//! ```
//! or, instead, an error report (step 4) and closes: code `bad_hello` if the first message is not
//! a binary frame holding a well-formed hello, `unsupported_version` if no version is common,
//! `unknown_invite` if the server has no usable invite with that id (unknown, expired, used,
//! cancelled or burned; the message says which when the server knows). The client aborts unless
//! the chosen version is one it offered.
//!
//! ## 2. Noise handshake
//! Protocol name `Noise_XX_25519_AESGCM_SHA256` for `"session"`,
//! `Noise_XXpsk3_25519_AESGCM_SHA256` for `"pair"` (in version 1: `ChaChaPoly` in place of `AESGCM`;
//! [`noise_protocol_name`]), whose PSK is the invite's pre-shared key
//! ([`crate::net::keys::psk_from_secret`]: `SHA-256("duo invite psk v1" || id || secret)`). The
//! prologue is `b"duo/1\n" || H || b"\n" || W` (in both versions) where `H` and `W` are the exact bytes of the
//! hello and welcome frames, so the cleartext negotiation is authenticated by the handshake: stripping
//! version 2 from a hello breaks the handshake rather than downgrading the cipher.
//! Static keys are the nodes' X25519 keys ([`crate::net::keys::Keypair`]). Each handshake message is
//! one binary frame, with an empty payload (a non-empty payload is refused):
//! ```text
//! client -> server   message 1: e
//! server -> client   message 2: e, ee, s, es
//! client -> server   message 3: s, se            (pairing: s, se, psk)
//! ```
//! After message 2 the client computes [`crate::net::keys::fingerprint`] of the server's static key
//! and aborts unless it equals the expected owner fingerprint (pinned from the invite code or
//! from the FI's stored pairing). After message 3 the server decides whether to accept the
//! client's static key (for a session: is it the key of a paired principal; for pairing: is
//! the invite still usable). If it accepts, it switches to transport mode and sends an
//! encrypted **ok**: one binary frame holding a Noise transport message whose plaintext is
//! empty (no application chunk is ever empty, step 3). The client must receive the ok before
//! it sends application data. If message 3 fails to decrypt (for pairing: normally a wrong
//! invite secret), or the server refuses the key, the server sends an error report instead
//! and closes: code `bad_invite_secret` (pairing) or `handshake_failed` (session), or the
//! verifier's code (for example `unknown_key`). A malformed message 1 gives
//! `handshake_failed`; a handshake not finished within [`Limits::handshake_timeout`], or a
//! client silent past a silence deadline (its whole upgrade request within
//! [`Limits::upgrade_timeout`], each of its handshake messages within [`Limits::message_timeout`]),
//! may give `handshake_timeout`. A server shedding load sends `busy` (step 4). Message 3 of a pairing cannot tell a wrong secret from a
//! tampered message, so an attacker on the path can use up an invite's failure allowance
//! (a denial of service, not a break).
//!
//! ## 3. Transport messages
//! Each binary frame holds exactly one Noise transport message (at most 65 535 bytes,
//! including the 16-byte tag), encrypted with the sender's cipher state (nonces count up from
//! 0 in each direction; the server's ok uses nonce 0 of the server-to-client direction). The
//! plaintext is one flag byte followed by a chunk of an application message:
//! `0x00` = last chunk of the message, `0x01` = more chunks follow. A message of `n` bytes is
//! sent as `max(1, ceil(n / 65 518))` chunks in order (an empty message is one chunk `[0x00]`);
//! a sender may use smaller chunks, and a receiver accepts any chunk size up to 65 518 bytes,
//! including empty non-final chunks.
//! The receiver concatenates chunks up to its [`Limits::max_message`] (1 MiB by default) and
//! closes the connection if a message grows beyond it. A frame that fails to decrypt, an
//! empty plaintext, an unknown flag, or a text frame after the handshake is fatal: the receiver
//! closes the connection. A WebSocket close ends the session (a close in the middle of a
//! chunked message is an error); closes are not authenticated, so the application protocol
//! must not read meaning into a clean close beyond "the session ended".
//!
//! ## 4. Error reports
//! During negotiation and handshake the server reports a refusal with a **text** frame holding
//! ```json
//! {"duo":"error","code":"unknown_invite","message":"a sentence for a person"}
//! ```
//! and then closes the connection. `code` is stable and meant for programs; `message` is for
//! people. Code `busy` means the server dropped this connection before authenticating it to make
//! room for newer ones, or has no room for another session: the client should try again in a
//! moment ([`TransportError::Busy`]). A server over its cap on all connections answers the upgrade
//! request with [`BUSY_HTTP_RESPONSE`] (HTTP 503) instead, which the client reads as busy too. These reports are not authenticated (an attacker on the network could forge one,
//! just as it could cut the connection).

use std::fmt;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zeroize::Zeroizing;

use crate::net::keys::{fingerprint, normalize_fingerprint, Keypair};

/// The transport protocol versions this implementation speaks, newest first: a client offers them all, a
/// server picks the first of them the client offered.
pub const PROTOCOL_VERSIONS: [u32; 2] = [2, 1];
/// The newest transport protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u32 = PROTOCOL_VERSIONS[0];
pub use crate::net::keys::{
    noise_protocol_name, PAIRING_NOISE_PARAMS, PAIRING_NOISE_PARAMS_V1, SESSION_NOISE_PARAMS,
    SESSION_NOISE_PARAMS_V1,
};
/// Largest Noise message (and so largest binary frame after the handshake).
pub const NOISE_MAX_MESSAGE: usize = 65_535;
/// Length of the authentication tag of a Noise transport message.
const TAG_LEN: usize = 16;
/// Largest application chunk in one transport message (65 535 - 16 tag - 1 flag).
pub const MAX_CHUNK: usize = NOISE_MAX_MESSAGE - TAG_LEN - 1;
/// Flag byte: last chunk of a message.
const FLAG_FINAL: u8 = 0x00;
/// Flag byte: more chunks follow.
const FLAG_MORE: u8 = 0x01;
/// First bytes of the Noise prologue.
const PROLOGUE_PREFIX: &[u8] = b"duo/1\n";
/// Longest accepted invite id in a hello.
const MAX_INVITE_ID: usize = 64;
/// How long a side waits to deliver an error report and close frame before dropping the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The same, for a server closing a connection that never finished its handshake.
const PRE_AUTH_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Longest `message` kept from a peer's error report.
const MAX_REPORT_CHARS: usize = 1000;

/// Stable error codes of cleartext error reports (module docs, step 4).
pub mod codes {
    /// The first message was not a well-formed hello.
    pub const BAD_HELLO: &str = "bad_hello";
    /// No protocol version in common.
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    /// Pairing with an invite id the owner node does not know (or no longer has).
    pub const UNKNOWN_INVITE: &str = "unknown_invite";
    /// Pairing handshake message 3 failed to decrypt: normally a wrong invite secret.
    pub const BAD_INVITE_SECRET: &str = "bad_invite_secret";
    /// The Noise handshake failed (malformed or tampered message).
    pub const HANDSHAKE_FAILED: &str = "handshake_failed";
    /// The handshake took longer than the server allows.
    pub const HANDSHAKE_TIMEOUT: &str = "handshake_timeout";
    /// Suggested verifier code: the client's static key is not a paired principal's key.
    pub const UNKNOWN_KEY: &str = "unknown_key";
    /// The server is shedding load (too many connections): nothing is wrong with the client's
    /// URL, key or invite; try again in a moment.
    pub const BUSY: &str = "busy";
}

/// The sentence of a `busy` report sent to a client whose unauthenticated connection was dropped.
pub const BUSY_MESSAGE: &str =
    "the owner node is busy with many connections and dropped this one before it was authenticated; \
     try again in a moment";

/// The body of a relay's HTTP 404 for an owner address nobody serves (the relay room), read as
/// [`TransportError::NotAtRelay`].
pub const NO_OWNER_AT_RELAY: &str = "no owner with this key is connected to the relay";

/// The body of a relay's HTTP 504 when the owner it asked to join a session did not come in time, read as
/// [`TransportError::OwnerSilentAtRelay`].
pub const OWNER_SILENT_AT_RELAY: &str = "the owner's node did not answer through the relay in time";

/// Largest hello accepted, in bytes (a real one is under 100 bytes).
pub const MAX_HELLO: usize = 1024;

/// Size and time limits of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket frame and message accepted (default 65 536 + 64, room for one Noise
    /// message). Values below 65 535 also shrink the chunks this side sends.
    pub max_frame: usize,
    /// Largest application message accepted by [`SecureChannel::recv`] and sent by
    /// [`SecureChannel::send`] (default 1 MiB).
    pub max_message: usize,
    /// Bound on the whole connection set-up: WebSocket upgrade, hello and Noise handshake
    /// (default 10 s).
    pub handshake_timeout: Duration,
    /// Server side: the client's whole WebSocket upgrade request must arrive within this time of
    /// the connection being accepted (default 3 s), so a silent or trickling connection gives its
    /// place up quickly.
    pub upgrade_timeout: Duration,
    /// Server side: each handshake message of the client (hello, Noise messages 1 and 3) must
    /// arrive within this time of the server's previous step (default 3 s).
    pub message_timeout: Duration,
    /// Longest wait for the next frame in [`SecureChannel::recv`], and for each frame to be
    /// written in [`SecureChannel::send`] (default 300 s). Ping and pong frames count as activity.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 65_536 + 64,
            max_message: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            upgrade_timeout: Duration::from_secs(3),
            message_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// What a connection is for, sent in the hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// A session between an FI and the owner node it is already paired with.
    Session,
    /// Pairing with an invite code.
    Pair {
        /// The invite id (the second part of the invite code).
        invite: String,
    },
}

/// The client's hello (module docs, step 1).
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    duo: String,
    versions: Vec<u32>,
    #[serde(flatten)]
    mode: Mode,
}

/// The server's welcome (module docs, step 1).
#[derive(Debug, Serialize)]
struct Welcome {
    duo: &'static str,
    version: u32,
}

/// A cleartext error report (module docs, step 4).
#[derive(Debug, Serialize)]
struct ErrorReport<'a> {
    duo: &'static str,
    code: &'a str,
    message: &'a str,
}

/// Any cleartext control message, as read by the client.
#[derive(Debug, Deserialize)]
struct Control {
    duo: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Errors of the client side and of an established [`SecureChannel`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The caller passed inconsistent parameters.
    #[error("invalid connection parameters: {0}")]
    InvalidArgument(String),
    /// The owner node, or the relay it serves through, is shedding load and dropped this connection before
    /// authenticating it (a `busy` report, or an HTTP 503 answer to the upgrade). Nothing is wrong with the
    /// URL, key or invite.
    #[error("{}", busy_text(.0))]
    Busy(String),
    /// A relay answered that no owner with the key in the URL is connected to it (HTTP 404 at the upgrade).
    #[error("{0}: the owner's node is not running or not connected to the relay now; check the URL, or try \
             again when the owner is online")]
    NotAtRelay(String),
    /// A relay answered that the owner's node, connected to it, did not join the session in time (HTTP 504 at
    /// the upgrade): it may be busy, or its link to the relay broke a moment ago. Nothing reached the owner.
    #[error("{0}: the node may be busy or just lost its link to the relay; try again in a moment")]
    OwnerSilentAtRelay(String),
    /// The WebSocket connection could not be opened.
    #[error("could not open a WebSocket connection to {url}: {source}; check the URL and that the owner node is running")]
    Connect {
        /// The URL given.
        url: String,
        /// What failed.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The WebSocket connection failed.
    #[error("the WebSocket connection failed: {0}")]
    WebSocket(#[source] Box<tungstenite::Error>),
    /// The handshake did not finish in time.
    #[error(
        "the handshake did not finish within {0:?}; check the URL and the network, then retry"
    )]
    Timeout(Duration),
    /// The peer closed the connection during the handshake without saying why.
    #[error(
        "the owner node closed the connection during the handshake without saying why: it may be busy, so \
         try again in a moment; if it keeps happening, check the URL"
    )]
    HandshakeClosed,
    /// The owner node refused the connection with an error report.
    #[error("the owner node refused the connection ({code}): {message}")]
    Rejected {
        /// Stable code (see [`codes`]).
        code: String,
        /// Explanation for a person (from the peer, truncated to 1000 characters, control
        /// characters replaced by spaces).
        message: String,
    },
    /// The owner node's static key does not have the expected fingerprint.
    #[error("the owner node's key (fingerprint {actual}) does not match the fingerprint in the invite code or pairing ({expected}); check the code or the URL: this may not be the owner's node")]
    OwnerKeyMismatch {
        /// The fingerprint expected.
        expected: String,
        /// The fingerprint of the key the server presented.
        actual: String,
    },
    /// The Noise handshake failed (malformed or tampered handshake message).
    #[error("the secure handshake failed: {0}")]
    Handshake(String),
    /// A frame failed to decrypt or authenticate; the connection was closed.
    #[error("a message from the peer failed to decrypt or authenticate (tampered or corrupted); the connection was closed")]
    Crypto,
    /// The peer broke the transport protocol; the connection was closed.
    #[error("the peer broke the Duo transport protocol: {0}; the connection was closed")]
    Protocol(String),
    /// A message is larger than [`Limits::max_message`].
    #[error("a message is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Nothing was received (or nothing could be written) for [`Limits::idle_timeout`].
    #[error("the connection was idle for {0:?} and was closed")]
    IdleTimeout(Duration),
    /// The peer closed the connection with an error close code.
    #[error("the peer closed the connection (close code {code}: {reason})")]
    PeerClosed {
        /// The WebSocket close code.
        code: u16,
        /// The close reason given by the peer.
        reason: String,
    },
    /// The channel was already ended by an earlier error.
    #[error("the secure channel is closed after an earlier error; open a new connection")]
    Closed,
    /// A local cryptographic operation failed (should not happen).
    #[error("internal transport error: {0}")]
    Internal(String),
}

/// Errors of the server side ([`accept`]). Each one means the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The WebSocket upgrade or connection failed.
    #[error("the WebSocket connection failed: {0}")]
    WebSocket(#[source] Box<tungstenite::Error>),
    /// The client did not finish the handshake within [`Limits::handshake_timeout`].
    #[error("the client did not finish the handshake within {0:?}")]
    Timeout(Duration),
    /// The client closed the connection during the handshake.
    #[error("the client closed the connection during the handshake")]
    PeerClosed,
    /// The server dropped the connection to make room for newer ones (reported as `busy` when
    /// the WebSocket upgrade had finished).
    #[error("the connection was dropped before authentication to make room (the node is busy)")]
    Evicted,
    /// The first message was not a well-formed hello (reported as `bad_hello`).
    #[error("the client's hello was malformed: {0}")]
    BadHello(String),
    /// No protocol version in common (reported as `unsupported_version`).
    #[error(
        "the client speaks none of our protocol versions (it offered {offered:?}, we speak {PROTOCOL_VERSIONS:?})"
    )]
    UnsupportedVersion {
        /// The versions the client offered (at most the first 16).
        offered: Vec<u32>,
    },
    /// Pairing with an invite id we do not know (reported as `unknown_invite`).
    #[error("a client tried to pair with unknown invite {invite_id:?}")]
    UnknownInvite {
        /// The invite id from the hello.
        invite_id: String,
    },
    /// Pairing message 3 failed to decrypt: a wrong invite secret (or a tampered message).
    /// Count it as a failed attempt against the invite (reported as `bad_invite_secret`).
    #[error("a client tried to pair with invite {invite_id:?} using a wrong invite secret")]
    BadPsk {
        /// The invite id from the hello.
        invite_id: String,
    },
    /// The Noise handshake failed (reported as `handshake_failed`).
    #[error("the secure handshake failed: {0}")]
    Handshake(String),
    /// The client broke the protocol during the handshake.
    #[error("the client broke the Duo transport protocol: {0}")]
    Protocol(String),
    /// The verifier refused the client's key (reported with the verifier's code).
    #[error("the client's key was refused ({code}): {message}")]
    Rejected {
        /// The verifier's code.
        code: String,
        /// The verifier's message.
        message: String,
    },
    /// A local cryptographic operation failed (should not happen).
    #[error("internal transport error: {0}")]
    Internal(String),
}

/// An established, encrypted and mutually authenticated channel over a WebSocket.
///
/// Every error returned by [`send`](Self::send) or [`recv`](Self::recv) except
/// [`TransportError::TooLarge`] from `send` (nothing was sent) is fatal: the channel closes
/// and further calls return [`TransportError::Closed`].
pub struct SecureChannel<S> {
    ws: WebSocketStream<S>,
    /// The transport version negotiated.
    version: u32,
    noise: snow::TransportState,
    remote_static: [u8; 32],
    handshake_hash: Vec<u8>,
    limits: Limits,
    /// Chunks of the message being received (kept here so `recv` is cancel-safe).
    partial: Vec<u8>,
    /// Whether a chunked message has started and not finished.
    in_message: bool,
    /// Scratch buffer for Noise.
    buf: Vec<u8>,
    /// Set after a fatal error.
    broken: bool,
}

impl<S> fmt::Debug for SecureChannel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureChannel")
            .field("remote_fingerprint", &fingerprint(&self.remote_static))
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// Largest chunk this side sends, given its frame limit.
fn chunk_capacity(limits: &Limits) -> usize {
    limits
        .max_frame
        .min(NOISE_MAX_MESSAGE)
        .saturating_sub(TAG_LEN + 1)
        .max(1)
}

impl<S> SecureChannel<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn new(
        ws: WebSocketStream<S>,
        version: u32,
        noise: snow::TransportState,
        remote_static: [u8; 32],
        handshake_hash: Vec<u8>,
        limits: Limits,
    ) -> Self {
        SecureChannel {
            ws,
            version,
            noise,
            remote_static,
            handshake_hash,
            limits,
            partial: Vec::new(),
            in_message: false,
            buf: vec![0u8; NOISE_MAX_MESSAGE],
            broken: false,
        }
    }

    /// Sends one application message (split into chunks as needed).
    ///
    /// Not cancel-safe: dropping the future mid-way may leave a partial message on the wire;
    /// treat that as the end of the channel.
    ///
    /// # Errors
    /// [`TransportError::TooLarge`] if `payload` is longer than [`Limits::max_message`]
    /// (nothing is sent; the channel stays usable); otherwise a fatal error.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), TransportError> {
        if self.broken {
            return Err(TransportError::Closed);
        }
        if payload.len() > self.limits.max_message {
            return Err(TransportError::TooLarge {
                limit: self.limits.max_message,
            });
        }
        let result = self.send_chunks(payload).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn send_chunks(&mut self, payload: &[u8]) -> Result<(), TransportError> {
        let cap = chunk_capacity(&self.limits);
        let idle = self.limits.idle_timeout;
        let mut plaintext = Vec::with_capacity(cap.min(payload.len()) + 1);
        let mut rest = payload;
        loop {
            let take = rest.len().min(cap);
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            plaintext.clear();
            plaintext.push(if rest.is_empty() {
                FLAG_FINAL
            } else {
                FLAG_MORE
            });
            plaintext.extend_from_slice(chunk);
            let n = self
                .noise
                .write_message(&plaintext, &mut self.buf)
                .map_err(|e| TransportError::Internal(e.to_string()))?;
            let frame = Message::Binary(self.buf.get(..n).unwrap_or_default().to_vec());
            match tokio::time::timeout(idle, self.ws.feed(frame)).await {
                Err(_) => return Err(TransportError::IdleTimeout(idle)),
                Ok(Err(e)) => return Err(TransportError::WebSocket(Box::new(e))),
                Ok(Ok(())) => {}
            }
            if rest.is_empty() {
                break;
            }
        }
        match tokio::time::timeout(idle, self.ws.flush()).await {
            Err(_) => Err(TransportError::IdleTimeout(idle)),
            Ok(Err(e)) => Err(TransportError::WebSocket(Box::new(e))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Receives the next application message. `Ok(None)` means the peer closed the connection
    /// cleanly between messages (closes are not authenticated; see the module docs).
    ///
    /// Cancel-safe: if the future is dropped, chunks already received are kept for the next
    /// call.
    ///
    /// # Errors
    /// Any error is fatal and closes the channel: [`TransportError::Crypto`] for a frame that
    /// fails to decrypt, [`TransportError::TooLarge`] for a message over
    /// [`Limits::max_message`], [`TransportError::IdleTimeout`], [`TransportError::Protocol`],
    /// [`TransportError::PeerClosed`], [`TransportError::WebSocket`].
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        if self.broken {
            return Err(TransportError::Closed);
        }
        match self.recv_inner().await {
            Ok(m) => Ok(m),
            Err((err, close)) => {
                self.broken = true;
                if let Some(code) = close {
                    let frame = CloseFrame {
                        code,
                        reason: "".into(),
                    };
                    let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.close(Some(frame))).await;
                }
                Err(err)
            }
        }
    }

    /// Like `recv`; on error also says which close code to send (None: do not send a close).
    async fn recv_inner(&mut self) -> Result<Option<Vec<u8>>, (TransportError, Option<CloseCode>)> {
        let idle = self.limits.idle_timeout;
        loop {
            let next = match tokio::time::timeout(idle, self.ws.next()).await {
                Err(_) => {
                    return Err((TransportError::IdleTimeout(idle), Some(CloseCode::Away)));
                }
                Ok(next) => next,
            };
            let msg = match next {
                None
                | Some(Err(tungstenite::Error::ConnectionClosed))
                | Some(Err(tungstenite::Error::AlreadyClosed)) => {
                    return self.end_of_stream(None);
                }
                Some(Err(e)) => {
                    let code = match &e {
                        tungstenite::Error::Capacity(_) => Some(CloseCode::Size),
                        tungstenite::Error::Protocol(_) => Some(CloseCode::Protocol),
                        _ => None,
                    };
                    return Err((TransportError::WebSocket(Box::new(e)), code));
                }
                Some(Ok(msg)) => msg,
            };
            match msg {
                Message::Binary(data) => {
                    let n = match self.noise.read_message(&data, &mut self.buf) {
                        Ok(n) => n,
                        Err(_) => return Err((TransportError::Crypto, Some(CloseCode::Protocol))),
                    };
                    let plaintext = self.buf.get(..n).unwrap_or_default();
                    let Some((&flag, chunk)) = plaintext.split_first() else {
                        return Err((
                            TransportError::Protocol("empty transport message".into()),
                            Some(CloseCode::Protocol),
                        ));
                    };
                    if flag != FLAG_FINAL && flag != FLAG_MORE {
                        return Err((
                            TransportError::Protocol(format!("unknown chunk flag {flag:#04x}")),
                            Some(CloseCode::Protocol),
                        ));
                    }
                    if self.partial.len().saturating_add(chunk.len()) > self.limits.max_message {
                        return Err((
                            TransportError::TooLarge {
                                limit: self.limits.max_message,
                            },
                            Some(CloseCode::Size),
                        ));
                    }
                    self.partial.extend_from_slice(chunk);
                    if flag == FLAG_FINAL {
                        self.in_message = false;
                        return Ok(Some(std::mem::take(&mut self.partial)));
                    }
                    self.in_message = true;
                }
                Message::Text(_) => {
                    return Err((
                        TransportError::Protocol("a text frame after the handshake".into()),
                        Some(CloseCode::Protocol),
                    ));
                }
                Message::Close(frame) => {
                    // Deliver the close reply the WebSocket layer queued.
                    let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.flush()).await;
                    return self.end_of_stream(frame);
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The peer closed (with `frame`, or without a close frame).
    fn end_of_stream(
        &mut self,
        frame: Option<CloseFrame<'static>>,
    ) -> Result<Option<Vec<u8>>, (TransportError, Option<CloseCode>)> {
        if self.in_message {
            return Err((
                TransportError::Protocol("the connection closed in the middle of a message".into()),
                None,
            ));
        }
        match frame {
            Some(f) if !matches!(f.code, CloseCode::Normal | CloseCode::Away) => Err((
                TransportError::PeerClosed {
                    code: u16::from(f.code),
                    reason: truncate(&f.reason, MAX_REPORT_CHARS),
                },
                None,
            )),
            _ => Ok(None),
        }
    }

    /// The transport protocol version the two sides agreed on (module docs, step 1); it fixes the cipher.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The peer's static X25519 public key, authenticated by the handshake.
    pub fn remote_static(&self) -> [u8; 32] {
        self.remote_static
    }

    /// The Noise handshake hash: a value both sides share and that identifies this session
    /// (useful for channel binding, e.g. in signed receipts).
    pub fn handshake_hash(&self) -> &[u8] {
        &self.handshake_hash
    }

    /// The limits this channel applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Closes the connection: sends a WebSocket close and waits briefly (at most 2 s) for the
    /// peer's close.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if self.ws.close(None).await.is_ok() {
                // Wait for the peer's close (the end of the closing handshake).
                while let Some(Ok(msg)) = self.ws.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            }
        })
        .await;
    }
}

/// Keeps at most `max_chars` characters of a peer-supplied string, replacing control
/// characters (terminal escapes, newlines) with spaces.
fn truncate(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| {
            if duo_engine::text::is_hidden(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig {
        max_frame_size: Some(limits.max_frame),
        max_message_size: Some(limits.max_frame),
        ..WebSocketConfig::default()
    }
}

fn build_prologue(hello: &[u8], welcome: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(PROLOGUE_PREFIX.len() + hello.len() + 1 + welcome.len());
    p.extend_from_slice(PROLOGUE_PREFIX);
    p.extend_from_slice(hello);
    p.push(b'\n');
    p.extend_from_slice(welcome);
    p
}

/// The Noise parameters of a negotiated `version` (one of [`PROTOCOL_VERSIONS`]) and `mode`.
fn noise_params(version: u32, mode: &Mode) -> Result<snow::params::NoiseParams, String> {
    let name = noise_protocol_name(version, matches!(mode, Mode::Pair { .. }))
        .ok_or_else(|| format!("transport version {version} is not one this node speaks"))?;
    name.parse().map_err(|e: snow::Error| e.to_string())
}

fn to_static_key(key: Option<&[u8]>) -> Option<[u8; 32]> {
    key.and_then(|k| <[u8; 32]>::try_from(k).ok())
}

/// The next data-bearing message (binary, text or close), skipping pings and pongs.
/// `Ok(None)` if the stream ended or a close frame arrived.
async fn next_data<S>(ws: &mut WebSocketStream<S>) -> Result<Option<Message>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None
            | Some(Err(tungstenite::Error::ConnectionClosed))
            | Some(Err(tungstenite::Error::AlreadyClosed)) => return Ok(None),
            Some(Err(e)) => return Err(e),
            Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(m)) => return Ok(Some(m)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Connects to an owner node (client / Noise initiator side).
///
/// * `url`: `ws://host:port/path` (TLS is not enabled in this build; the Noise channel provides
///   confidentiality and authentication).
/// * `local`: the FI's static key.
/// * `mode`: [`Mode::Session`] with `psk = None`, or [`Mode::Pair`] with the invite id and
///   `psk = Some(invite.psk())`.
/// * `expected_fingerprint`: the owner node's key fingerprint, from the invite code or the
///   stored pairing (whitespace and case are ignored).
///
/// The whole set-up is bounded by [`Limits::handshake_timeout`]. Returns once the server
/// accepted the FI's key (the encrypted ok of step 2 arrived).
///
/// # Errors
/// [`TransportError::OwnerKeyMismatch`] if the server's key has another fingerprint,
/// [`TransportError::Rejected`] if the server refused (wrong invite secret, unknown key, ...),
/// [`TransportError::Timeout`], [`TransportError::Connect`], and other handshake errors.
pub async fn connect(
    url: &str,
    local: &Keypair,
    mode: Mode,
    psk: Option<[u8; 32]>,
    expected_fingerprint: &str,
    limits: &Limits,
) -> Result<SecureChannel<MaybeTlsStream<TcpStream>>, TransportError> {
    let psk = psk.map(Zeroizing::new);
    match (&mode, &psk) {
        (Mode::Session, Some(_)) => {
            return Err(TransportError::InvalidArgument(
                "a pre-shared key is only used for pairing".into(),
            ))
        }
        (Mode::Pair { .. }, None) => {
            return Err(TransportError::InvalidArgument(
                "pairing needs the invite's pre-shared key".into(),
            ))
        }
        (Mode::Pair { invite }, Some(_)) if !valid_invite_id(invite) => {
            return Err(TransportError::InvalidArgument(
                "the invite id must be 1 to 64 printable ASCII characters".into(),
            ))
        }
        _ => {}
    }
    let expected = normalize_fingerprint(expected_fingerprint).ok_or_else(|| {
        TransportError::InvalidArgument(
            "the expected owner fingerprint is not 32 base32 characters".into(),
        )
    })?;
    let t = limits.handshake_timeout;
    let offer = Offer {
        versions: &PROTOCOL_VERSIONS,
        mode,
        psk: psk.as_deref(),
    };
    match tokio::time::timeout(t, connect_inner(url, local, offer, &expected, limits)).await {
        Ok(r) => r,
        Err(_) => Err(TransportError::Timeout(t)),
    }
}

/// What a client offers in its hello, and the pairing PSK that goes with the mode.
struct Offer<'a> {
    /// The versions offered, newest first (a subset of [`PROTOCOL_VERSIONS`]).
    versions: &'a [u32],
    mode: Mode,
    psk: Option<&'a [u8; 32]>,
}

/// [`connect`]'s checks done, offering only `versions` (tests speak as an older client with it).
#[cfg(test)]
async fn connect_offering(
    url: &str,
    local: &Keypair,
    versions: &[u32],
    expected_fingerprint: &str,
) -> Result<SecureChannel<MaybeTlsStream<TcpStream>>, TransportError> {
    let offer = Offer {
        versions,
        mode: Mode::Session,
        psk: None,
    };
    connect_inner(url, local, offer, expected_fingerprint, &Limits::default()).await
}

async fn connect_inner(
    url: &str,
    local: &Keypair,
    offer: Offer<'_>,
    expected_fingerprint: &str,
    limits: &Limits,
) -> Result<SecureChannel<MaybeTlsStream<TcpStream>>, TransportError> {
    let Offer {
        versions,
        mode,
        psk,
    } = offer;
    let ws_err = |e: tungstenite::Error| TransportError::WebSocket(Box::new(e));
    let (mut ws, _response) =
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config(limits)), true)
            .await
            .map_err(|e| upgrade_error(url, e))?;

    // 1. Negotiation.
    let hello = Hello {
        duo: "hello".into(),
        versions: versions.to_vec(),
        mode: mode.clone(),
    };
    let hello_bytes =
        serde_json::to_vec(&hello).map_err(|e| TransportError::Internal(e.to_string()))?;
    ws.send(Message::Binary(hello_bytes.clone()))
        .await
        .map_err(ws_err)?;
    // The welcome is a binary frame; an error report (text frame) is turned into `Rejected`.
    let welcome_bytes = handshake_frame(&mut ws).await?;
    let control: Control = serde_json::from_slice(&welcome_bytes).map_err(|_| {
        TransportError::Protocol("the reply to the hello is not a Duo welcome".into())
    })?;
    let version = match (control.duo.as_str(), control.version) {
        ("welcome", Some(v)) if versions.contains(&v) => v,
        ("welcome", _) => {
            return Err(TransportError::Protocol(
                "the server chose a version we did not offer".into(),
            ))
        }
        // Tolerate an error report sent in a binary frame.
        ("error", _) => return Err(rejected(control)),
        _ => {
            return Err(TransportError::Protocol(
                "the reply to the hello is not a Duo welcome".into(),
            ))
        }
    };

    // 2. Noise handshake.
    let prologue = build_prologue(&hello_bytes, &welcome_bytes);
    let params = noise_params(version, &mode).map_err(TransportError::Internal)?;
    let mut builder = snow::Builder::new(params)
        .local_private_key(local.secret())
        .prologue(&prologue);
    if let Some(psk) = psk {
        builder = builder.psk(3, psk);
    }
    let mut hs = builder
        .build_initiator()
        .map_err(|e| TransportError::Internal(e.to_string()))?;
    let mut buf = vec![0u8; NOISE_MAX_MESSAGE];

    let n = hs
        .write_message(&[], &mut buf)
        .map_err(|e| TransportError::Internal(e.to_string()))?;
    ws.send(Message::Binary(buf.get(..n).unwrap_or_default().to_vec()))
        .await
        .map_err(ws_err)?;

    let m2 = handshake_frame(&mut ws).await?;
    let n = hs
        .read_message(&m2, &mut buf)
        .map_err(|e| TransportError::Handshake(format!("handshake message 2: {e}")))?;
    if n != 0 {
        return Err(TransportError::Protocol(
            "handshake message 2 has a payload".into(),
        ));
    }
    let remote = to_static_key(hs.get_remote_static())
        .ok_or_else(|| TransportError::Handshake("the server sent no 32-byte static key".into()))?;
    let actual = fingerprint(&remote);
    if actual != expected_fingerprint {
        let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
        return Err(TransportError::OwnerKeyMismatch {
            expected: expected_fingerprint.to_owned(),
            actual,
        });
    }

    let n = hs
        .write_message(&[], &mut buf)
        .map_err(|e| TransportError::Internal(e.to_string()))?;
    ws.send(Message::Binary(buf.get(..n).unwrap_or_default().to_vec()))
        .await
        .map_err(ws_err)?;
    let handshake_hash = hs.get_handshake_hash().to_vec();
    let mut noise = hs
        .into_transport_mode()
        .map_err(|e| TransportError::Internal(e.to_string()))?;

    // The server's encrypted ok (or an error report).
    let ok = handshake_frame(&mut ws).await?;
    let n = noise
        .read_message(&ok, &mut buf)
        .map_err(|_| TransportError::Crypto)?;
    if n != 0 {
        return Err(TransportError::Protocol(
            "the server's handshake confirmation is not empty".into(),
        ));
    }
    Ok(SecureChannel::new(
        ws,
        version,
        noise,
        remote,
        handshake_hash,
        limits.clone(),
    ))
}

/// Reads a handshake frame on the client: a binary frame, or an error report in a text frame.
async fn handshake_frame<S>(ws: &mut WebSocketStream<S>) -> Result<Vec<u8>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match next_data(ws)
        .await
        .map_err(|e| TransportError::WebSocket(Box::new(e)))?
    {
        None => Err(TransportError::HandshakeClosed),
        Some(Message::Binary(b)) => Ok(b),
        Some(Message::Text(t)) => match serde_json::from_str::<Control>(&t) {
            Ok(c) if c.duo == "error" => Err(rejected(c)),
            _ => Err(TransportError::Protocol(
                "an unexpected text frame during the handshake".into(),
            )),
        },
        Some(_) => Err(TransportError::Protocol("unexpected frame".into())),
    }
}

/// What a [`TransportError::Busy`] says: a relay's refusal (its answers name the relay) in the relay's words,
/// an owner node's as the node being busy.
fn busy_text(why: &str) -> String {
    if why.contains("relay") {
        format!("the relay refused the connection: {why}")
    } else {
        format!("the owner node is busy ({why}); try again in a moment")
    }
}

fn rejected(c: Control) -> TransportError {
    let code = truncate(c.code.as_deref().unwrap_or("unknown"), 64);
    let message = truncate(c.message.as_deref().unwrap_or(""), MAX_REPORT_CHARS);
    if code == codes::BUSY {
        return TransportError::Busy(message);
    }
    TransportError::Rejected { code, message }
}

/// What a failed WebSocket upgrade means for the FI: an owner node shedding load answers 503 or
/// closes a connection it accepted (busy), while a refused TCP connection or another answer means
/// a wrong URL or a node that is not running.
fn upgrade_error(url: &str, e: tungstenite::Error) -> TransportError {
    use std::io::ErrorKind;
    use tungstenite::error::ProtocolError;
    match &e {
        tungstenite::Error::Http(resp) if resp.status().as_u16() == 503 => TransportError::Busy(
            http_body(resp)
                .unwrap_or_else(|| "it answered the upgrade with 503 Service Unavailable".into()),
        ),
        tungstenite::Error::Http(resp) if resp.status().as_u16() == 404 => match http_body(resp) {
            Some(body) if body.starts_with(NO_OWNER_AT_RELAY) => TransportError::NotAtRelay(body),
            _ => TransportError::Connect {
                url: url.to_owned(),
                source: Box::new(e),
            },
        },
        tungstenite::Error::Http(resp) if resp.status().as_u16() == 504 => match http_body(resp) {
            Some(body) if body.starts_with(OWNER_SILENT_AT_RELAY) => {
                TransportError::OwnerSilentAtRelay(body)
            }
            _ => TransportError::Connect {
                url: url.to_owned(),
                source: Box::new(e),
            },
        },
        tungstenite::Error::Protocol(ProtocolError::HandshakeIncomplete) => {
            TransportError::HandshakeClosed
        }
        tungstenite::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
            ) =>
        {
            TransportError::HandshakeClosed
        }
        _ => TransportError::Connect {
            url: url.to_owned(),
            source: Box::new(e),
        },
    }
}

/// The text body of an HTTP answer to the upgrade (a relay says there why it refused), cut to 1000 characters.
fn http_body(resp: &tungstenite::http::Response<Option<Vec<u8>>>) -> Option<String> {
    let body = resp.body().as_ref()?;
    let text = String::from_utf8_lossy(body);
    let text = truncate(text.trim(), MAX_REPORT_CHARS);
    (!text.is_empty()).then_some(text)
}

/// The answer a server writes on a connection it cannot take at all (before reading anything):
/// an HTTP 503 the client's WebSocket upgrade reads as "busy".
pub const BUSY_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain\r\nContent-Length: 52\r\nConnection: close\r\n\r\n\
the owner node is busy; try again in a moment (busy)";

fn valid_invite_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_INVITE_ID && s.bytes().all(|b| b.is_ascii_graphic())
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A server-side failure, and the error report to send for it (if any).
struct Failure {
    error: AcceptError,
    report: Option<(String, String)>,
}

impl Failure {
    fn silent(error: AcceptError) -> Self {
        Failure {
            error,
            report: None,
        }
    }
    fn report(error: AcceptError, code: &str, message: &str) -> Self {
        Failure {
            error,
            report: Some((code.to_owned(), message.to_owned())),
        }
    }
}

/// What the server handshake produced.
struct Established {
    version: u32,
    noise: snow::TransportState,
    remote: [u8; 32],
    hash: Vec<u8>,
    mode: Mode,
}

/// Accepts a connection from an FI (server / Noise responder side) on a freshly accepted stream
/// (normally a [`TcpStream`]).
///
/// * `psk_for_invite(invite_id)`: for [`Mode::Pair`], the pre-shared key stored for a usable
///   invite, or `None` if there is no such invite or it can no longer be used.
/// * `invite_refusal(invite_id)`: called only when `psk_for_invite` returned `None`; the
///   sentence sent to the client in the `unknown_invite` report (e.g. "this invite expired").
/// * `verify(mode, client_static_key)`: called after handshake message 3 decrypted; returns
///   `Err((code, message))` to refuse (e.g. `("unknown_key", "...")` for a session from an
///   unpaired key, or `("busy", ...)` when the server has no room for another session). The code
///   and message are sent to the client in cleartext.
///
/// The whole set-up is bounded by [`Limits::handshake_timeout`], the WebSocket upgrade by
/// [`Limits::upgrade_timeout`] and each client message by [`Limits::message_timeout`]. On success
/// returns the channel and the mode the client asked for.
///
/// # Errors
/// An [`AcceptError`]; notably [`AcceptError::BadPsk`], which `bad_psk` has already been told of (with
/// the invite id) before the client is sent its error report, so a failure is counted before the client can
/// try again. The client has been sent an error report where the module docs say so.
pub async fn accept<S, P, R, F, B>(
    stream: S,
    local: &Keypair,
    psk_for_invite: P,
    invite_refusal: R,
    verify: F,
    bad_psk: B,
    limits: &Limits,
) -> Result<(SecureChannel<S>, Mode), AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: FnOnce(&str) -> Option<[u8; 32]>,
    R: FnOnce(&str) -> String,
    F: FnOnce(&Mode, &[u8; 32]) -> Result<(), (String, String)>,
    B: FnOnce(&str),
{
    let checks = Checks {
        psk_for_invite,
        invite_refusal,
        verify,
        bad_psk,
    };
    accept_evictable(stream, local, checks, limits, std::future::pending()).await
}

/// The server's look-ups during a handshake (see [`accept`] for each one's meaning).
pub struct Checks<P, R, F, B> {
    /// The pre-shared key of a usable invite.
    pub psk_for_invite: P,
    /// Why an invite cannot be used.
    pub invite_refusal: R,
    /// Whether to accept the client's static key.
    pub verify: F,
    /// Told of a wrong invite secret before the client is.
    pub bad_psk: B,
}

/// [`accept`], for a server that may drop this connection before it is authenticated to make room
/// for newer ones: when `evicted` completes first, the handshake stops, the client is sent a `busy`
/// report (if its WebSocket upgrade had finished) and the connection is closed within 1 s.
///
/// # Errors
/// As [`accept`], and [`AcceptError::Evicted`].
pub async fn accept_evictable<S, P, R, F, B, E>(
    stream: S,
    local: &Keypair,
    checks: Checks<P, R, F, B>,
    limits: &Limits,
    evicted: E,
) -> Result<(SecureChannel<S>, Mode), AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: FnOnce(&str) -> Option<[u8; 32]>,
    R: FnOnce(&str) -> String,
    F: FnOnce(&Mode, &[u8; 32]) -> Result<(), (String, String)>,
    B: FnOnce(&str),
    E: std::future::Future<Output = ()>,
{
    let t = limits.handshake_timeout;
    let start = Instant::now();
    let deadline = start + t;
    tokio::pin!(evicted);
    let upgrade = tokio::time::timeout_at(
        (start + limits.upgrade_timeout).min(deadline),
        tokio_tungstenite::accept_async_with_config(stream, Some(ws_config(limits))),
    );
    let mut ws = tokio::select! {
        biased;
        () = &mut evicted => return Err(AcceptError::Evicted),
        upgraded = upgrade => match upgraded {
            Err(_) => return Err(AcceptError::Timeout(limits.upgrade_timeout.min(t))),
            Ok(Err(e)) => return Err(AcceptError::WebSocket(Box::new(e))),
            Ok(Ok(ws)) => ws,
        },
    };
    let Checks {
        psk_for_invite,
        invite_refusal,
        verify,
        bad_psk,
    } = checks;
    let handshake = tokio::time::timeout_at(
        deadline,
        server_handshake(
            &mut ws,
            local,
            psk_for_invite,
            invite_refusal,
            verify,
            limits,
        ),
    );
    let timed_out = || {
        Failure::report(
            AcceptError::Timeout(t),
            codes::HANDSHAKE_TIMEOUT,
            "the handshake took too long",
        )
    };
    let outcome = tokio::select! {
        biased;
        () = &mut evicted => Err(Failure::report(AcceptError::Evicted, codes::BUSY, BUSY_MESSAGE)),
        done = handshake => done.unwrap_or_else(|_| Err(timed_out())),
    };
    let failure = match outcome {
        Ok(est) => {
            let channel = SecureChannel::new(
                ws,
                est.version,
                est.noise,
                est.remote,
                est.hash,
                limits.clone(),
            );
            return Ok((channel, est.mode));
        }
        Err(failure) => {
            if let AcceptError::BadPsk { invite_id } = &failure.error {
                bad_psk(invite_id);
            }
            failure
        }
    };
    // A client still in its handshake gets a short grace to read the report: a silent one must not hold
    // its connection long after it lost its place.
    let _ = tokio::time::timeout(PRE_AUTH_CLOSE_GRACE, async {
        if let Some((code, message)) = &failure.report {
            let report = ErrorReport {
                duo: "error",
                code,
                message,
            };
            if let Ok(text) = serde_json::to_string(&report) {
                let _ = ws.send(Message::Text(text)).await;
            }
        }
        if ws.close(None).await.is_ok() {
            // Wait for the client's close so the report is not lost to a reset.
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
    Err(failure.error)
}

/// The hello, its checks and the welcome: the hello and welcome bytes (for the prologue), the hello,
/// and the invite's pre-shared key for a pairing.
struct Negotiated {
    /// The version chosen.
    version: u32,
    hello_bytes: Vec<u8>,
    welcome_bytes: Vec<u8>,
    hello: Hello,
    psk: Option<Zeroizing<[u8; 32]>>,
}

async fn server_negotiate<S, P, R>(
    ws: &mut WebSocketStream<S>,
    psk_for_invite: P,
    invite_refusal: R,
    limits: &Limits,
) -> Result<Negotiated, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: FnOnce(&str) -> Option<[u8; 32]>,
    R: FnOnce(&str) -> String,
{
    let bad_hello = |why: &str| {
        Failure::report(
            AcceptError::BadHello(why.to_owned()),
            codes::BAD_HELLO,
            &format!("the first message must be a Duo hello: {why}"),
        )
    };
    let hello_bytes = match within(limits, "the hello", next_data(ws)).await? {
        Err(e) => return Err(Failure::silent(AcceptError::WebSocket(Box::new(e)))),
        Ok(None) => return Err(Failure::silent(AcceptError::PeerClosed)),
        Ok(Some(Message::Binary(b))) => b,
        Ok(Some(_)) => return Err(bad_hello("expected a binary frame")),
    };
    if hello_bytes.len() > MAX_HELLO {
        return Err(bad_hello("the hello is longer than 1024 bytes"));
    }
    let hello: Hello = match serde_json::from_slice(&hello_bytes) {
        Ok(h) => h,
        Err(_) => return Err(bad_hello("not a JSON hello with duo, versions and mode")),
    };
    if hello.duo != "hello" {
        return Err(bad_hello("\"duo\" must be \"hello\""));
    }
    let Some(version) = PROTOCOL_VERSIONS
        .into_iter()
        .find(|v| hello.versions.contains(v))
    else {
        let offered: Vec<u32> = hello.versions.iter().copied().take(16).collect();
        return Err(Failure::report(
            AcceptError::UnsupportedVersion { offered },
            codes::UNSUPPORTED_VERSION,
            "this owner node speaks Duo transport versions 2 and 1 only; update one side",
        ));
    };
    let psk = match &hello.mode {
        Mode::Session => None,
        Mode::Pair { invite } => {
            if !valid_invite_id(invite) {
                return Err(bad_hello(
                    "the invite id must be 1 to 64 printable ASCII characters",
                ));
            }
            match psk_for_invite(invite) {
                Some(psk) => Some(Zeroizing::new(psk)),
                None => {
                    let message = invite_refusal(invite);
                    return Err(Failure::report(
                        AcceptError::UnknownInvite {
                            invite_id: invite.clone(),
                        },
                        codes::UNKNOWN_INVITE,
                        &message,
                    ));
                }
            }
        }
    };
    let welcome = Welcome {
        duo: "welcome",
        version,
    };
    let welcome_bytes = serde_json::to_vec(&welcome)
        .map_err(|e| Failure::silent(AcceptError::Internal(e.to_string())))?;
    ws.send(Message::Binary(welcome_bytes.clone()))
        .await
        .map_err(|e| Failure::silent(AcceptError::WebSocket(Box::new(e))))?;
    Ok(Negotiated {
        version,
        hello_bytes,
        welcome_bytes,
        hello,
        psk,
    })
}

/// `fut` within [`Limits::message_timeout`]; a `handshake_timeout` report naming `what` if not.
async fn within<T>(
    limits: &Limits,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    tokio::time::timeout(limits.message_timeout, fut)
        .await
        .map_err(|_| {
            Failure::report(
                AcceptError::Timeout(limits.message_timeout),
                codes::HANDSHAKE_TIMEOUT,
                &format!("{what} did not arrive within {:?}", limits.message_timeout),
            )
        })
}

async fn server_handshake<S, P, R, F>(
    ws: &mut WebSocketStream<S>,
    local: &Keypair,
    psk_for_invite: P,
    invite_refusal: R,
    verify: F,
    limits: &Limits,
) -> Result<Established, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: FnOnce(&str) -> Option<[u8; 32]>,
    R: FnOnce(&str) -> String,
    F: FnOnce(&Mode, &[u8; 32]) -> Result<(), (String, String)>,
{
    let ws_err = |e: tungstenite::Error| Failure::silent(AcceptError::WebSocket(Box::new(e)));
    let internal = |e: snow::Error| Failure::silent(AcceptError::Internal(e.to_string()));

    // 1. Negotiation.
    let Negotiated {
        version,
        hello_bytes,
        welcome_bytes,
        hello,
        psk,
    } = server_negotiate(ws, psk_for_invite, invite_refusal, limits).await?;

    // 2. Noise handshake.
    let prologue = build_prologue(&hello_bytes, &welcome_bytes);
    drop((hello_bytes, welcome_bytes));
    let params = noise_params(version, &hello.mode)
        .map_err(|e| Failure::silent(AcceptError::Internal(e)))?;
    let mut builder = snow::Builder::new(params)
        .local_private_key(local.secret())
        .prologue(&prologue);
    if let Some(psk) = &psk {
        builder = builder.psk(3, psk.as_slice());
    }
    let mut hs = builder.build_responder().map_err(internal)?;

    let handshake_failed = |why: String| {
        Failure::report(
            AcceptError::Handshake(why),
            codes::HANDSHAKE_FAILED,
            "the secure handshake failed",
        )
    };
    // Handshake messages are small: buffers the size of what arrived, not of the largest Noise message.
    let m1 = within(limits, "handshake message 1", server_handshake_frame(ws)).await??;
    let mut buf = vec![0u8; m1.len()];
    let n = hs
        .read_message(&m1, &mut buf)
        .map_err(|e| handshake_failed(format!("handshake message 1: {e}")))?;
    if n != 0 {
        return Err(handshake_failed("handshake message 1 has a payload".into()));
    }
    let mut buf = vec![0u8; HANDSHAKE_REPLY_MAX];
    let n = hs.write_message(&[], &mut buf).map_err(internal)?;
    ws.send(Message::Binary(buf.get(..n).unwrap_or_default().to_vec()))
        .await
        .map_err(ws_err)?;

    let m3 = within(limits, "handshake message 3", server_handshake_frame(ws)).await??;
    let mut buf = vec![0u8; m3.len().max(HANDSHAKE_REPLY_MAX)];
    let read3 = hs.read_message(&m3, &mut buf);
    let n = match (read3, &hello.mode) {
        (Ok(n), _) => n,
        (Err(_), Mode::Pair { invite }) => {
            return Err(Failure::report(
                AcceptError::BadPsk {
                    invite_id: invite.clone(),
                },
                codes::BAD_INVITE_SECRET,
                "the invite code was not accepted: check that it was copied exactly; \
                 after a few failures the owner must make a new one",
            ))
        }
        (Err(e), Mode::Session) => {
            return Err(handshake_failed(format!("handshake message 3: {e}")))
        }
    };
    if n != 0 {
        return Err(handshake_failed("handshake message 3 has a payload".into()));
    }
    let remote = to_static_key(hs.get_remote_static())
        .ok_or_else(|| handshake_failed("no 32-byte client static key".into()))?;
    if let Err((code, message)) = verify(&hello.mode, &remote) {
        let error = if code == codes::BUSY {
            AcceptError::Evicted
        } else {
            AcceptError::Rejected {
                code: code.clone(),
                message: message.clone(),
            }
        };
        return Err(Failure {
            error,
            report: Some((code, message)),
        });
    }
    let hash = hs.get_handshake_hash().to_vec();
    let mut noise = hs.into_transport_mode().map_err(internal)?;
    let n = noise.write_message(&[], &mut buf).map_err(internal)?;
    ws.send(Message::Binary(buf.get(..n).unwrap_or_default().to_vec()))
        .await
        .map_err(ws_err)?;
    Ok(Established {
        version,
        noise,
        remote,
        hash,
        mode: hello.mode,
    })
}

/// Room for the server's handshake message 2 (96 bytes) and its ok (16 bytes).
const HANDSHAKE_REPLY_MAX: usize = 256;

/// Reads a handshake frame on the server: must be binary.
async fn server_handshake_frame<S>(ws: &mut WebSocketStream<S>) -> Result<Vec<u8>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match next_data(ws).await {
        Err(e) => Err(Failure::silent(AcceptError::WebSocket(Box::new(e)))),
        Ok(None) => Err(Failure::silent(AcceptError::PeerClosed)),
        Ok(Some(Message::Binary(b))) => Ok(b),
        Ok(Some(_)) => Err(Failure::report(
            AcceptError::Protocol("a text frame during the handshake".into()),
            codes::HANDSHAKE_FAILED,
            "handshake messages must be binary frames",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::keys::InviteCode;
    use std::collections::HashMap;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// Generous bound on any single test step.
    const STEP: Duration = Duration::from_secs(30);

    type ServerResult = Result<(SecureChannel<TcpStream>, Mode), AcceptError>;

    struct Server {
        url: String,
        handle: JoinHandle<ServerResult>,
        /// Invite ids the server was told of a wrong secret for, in order.
        bad_psk: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    /// Starts a server that accepts one connection. `known` is the set of client keys the
    /// verifier accepts for sessions; pairing is accepted for any key with the right psk.
    async fn server(
        owner: Keypair,
        invites: HashMap<String, [u8; 32]>,
        known: Vec<[u8; 32]>,
        limits: Limits,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bad_psk = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let told = bad_psk.clone();
        let handle = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(
                tcp,
                &owner,
                |id: &str| invites.get(id).copied(),
                |_: &str| "no such invite; ask the owner for a new code".to_owned(),
                |mode: &Mode, key: &[u8; 32]| match mode {
                    Mode::Pair { .. } => Ok(()),
                    Mode::Session if known.contains(key) => Ok(()),
                    Mode::Session => Err((
                        codes::UNKNOWN_KEY.to_owned(),
                        "this key is not paired".to_owned(),
                    )),
                },
                move |id: &str| told.lock().unwrap().push(id.to_owned()),
                &limits,
            )
            .await
        });
        Server {
            url: format!("ws://{addr}/duo"),
            handle,
            bad_psk,
        }
    }

    /// A server with default limits that knows `fi` as paired.
    async fn paired_server(owner: &Keypair, fi: &Keypair) -> Server {
        server(
            owner.clone(),
            HashMap::new(),
            vec![fi.public],
            Limits::default(),
        )
        .await
    }

    async fn join(h: JoinHandle<ServerResult>) -> ServerResult {
        tokio::time::timeout(STEP, h).await.unwrap().unwrap()
    }

    fn keys() -> (Keypair, Keypair) {
        (Keypair::generate(), Keypair::generate())
    }

    #[tokio::test]
    async fn session_round_trips_messages_of_all_sizes() {
        let (owner, fi) = keys();
        let limits = Limits::default();
        let srv = server(
            owner.clone(),
            HashMap::new(),
            vec![fi.public],
            limits.clone(),
        )
        .await;
        let mut client = connect(
            &srv.url,
            &fi,
            Mode::Session,
            None,
            &owner.fingerprint().to_uppercase(),
            &limits,
        )
        .await
        .unwrap();
        let (mut server_chan, mode) = join(srv.handle).await.unwrap();
        assert_eq!(mode, Mode::Session);
        assert_eq!(client.remote_static(), owner.public);
        assert_eq!(server_chan.remote_static(), fi.public);
        assert_eq!(client.handshake_hash(), server_chan.handshake_hash());
        assert_eq!(client.handshake_hash().len(), 32);

        let sizes = [0usize, 1, 65_000, MAX_CHUNK, MAX_CHUNK + 1, 300_000];
        let echo = tokio::spawn(async move {
            while let Some(m) = server_chan.recv().await.unwrap() {
                let mut reply = m.clone();
                reply.reverse();
                server_chan.send(&reply).await.unwrap();
            }
            server_chan
        });
        for (i, &size) in sizes.iter().enumerate() {
            let msg: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
            client.send(&msg).await.unwrap();
            let got = tokio::time::timeout(STEP, client.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let mut expected = msg.clone();
            expected.reverse();
            assert_eq!(got.len(), size);
            assert_eq!(got, expected);
        }
        client.close().await;
        // The server sees a clean end of stream.
        tokio::time::timeout(STEP, echo).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn pairing_with_right_psk_succeeds() {
        let (owner, fi) = keys();
        let invite = InviteCode::generate(&owner.public);
        let parsed = InviteCode::parse(&invite.to_string()).unwrap();
        let invites = HashMap::from([(invite.id.clone(), invite.psk())]);
        let limits = Limits::default();
        // The verifier knows no session keys: pairing does not need one.
        let srv = server(owner.clone(), invites, vec![], limits.clone()).await;
        let mut client = connect(
            &srv.url,
            &fi,
            Mode::Pair {
                invite: parsed.id.clone(),
            },
            Some(parsed.psk()),
            &parsed.fingerprint,
            &limits,
        )
        .await
        .unwrap();
        let (mut server_chan, mode) = join(srv.handle).await.unwrap();
        assert_eq!(
            mode,
            Mode::Pair {
                invite: invite.id.clone()
            }
        );
        assert_eq!(server_chan.remote_static(), fi.public);
        client.send(b"register me").await.unwrap();
        assert_eq!(
            server_chan.recv().await.unwrap().unwrap(),
            b"register me".to_vec()
        );
        server_chan.send(b"welcome, Acme Bank").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            b"welcome, Acme Bank".to_vec()
        );
    }

    #[tokio::test]
    async fn pairing_with_wrong_psk_is_bad_psk_and_rejected() {
        let (owner, fi) = keys();
        let invite = InviteCode::generate(&owner.public);
        let invites = HashMap::from([(invite.id.clone(), invite.psk())]);
        let limits = Limits::default();
        let srv = server(owner.clone(), invites, vec![], limits.clone()).await;
        let mut wrong = invite.psk();
        wrong[0] ^= 1;
        let err = connect(
            &srv.url,
            &fi,
            Mode::Pair {
                invite: invite.id.clone(),
            },
            Some(wrong),
            &invite.fingerprint,
            &limits,
        )
        .await
        .unwrap_err();
        match err {
            TransportError::Rejected { code, .. } => assert_eq!(code, codes::BAD_INVITE_SECRET),
            other => panic!("unexpected client error {other:?}"),
        }
        // The server counted the failure before the client could read its report, so a retry at once already
        // finds the invite's new state.
        assert_eq!(
            *srv.bad_psk.lock().unwrap(),
            std::slice::from_ref(&invite.id)
        );
        match join(srv.handle).await {
            Err(AcceptError::BadPsk { invite_id }) => assert_eq!(invite_id, invite.id),
            other => panic!("unexpected server result {other:?}"),
        }
    }

    #[tokio::test]
    async fn pairing_with_unknown_invite_is_rejected() {
        let (owner, fi) = keys();
        let invite = InviteCode::generate(&owner.public);
        let limits = Limits::default();
        let srv = server(owner.clone(), HashMap::new(), vec![], limits.clone()).await;
        let err = connect(
            &srv.url,
            &fi,
            Mode::Pair {
                invite: invite.id.clone(),
            },
            Some(invite.psk()),
            &invite.fingerprint,
            &limits,
        )
        .await
        .unwrap_err();
        match &err {
            TransportError::Rejected { code, message } => {
                assert_eq!(code, codes::UNKNOWN_INVITE);
                assert_eq!(message, "no such invite; ask the owner for a new code");
            }
            other => panic!("unexpected client error {other:?}"),
        }
        assert!(matches!(
            join(srv.handle).await,
            Err(AcceptError::UnknownInvite { invite_id }) if invite_id == invite.id
        ));
    }

    #[tokio::test]
    async fn fingerprint_mismatch_aborts() {
        let (owner, fi) = keys();
        let impostor_fp = Keypair::generate().fingerprint();
        let limits = Limits::default();
        let srv = server(
            owner.clone(),
            HashMap::new(),
            vec![fi.public],
            limits.clone(),
        )
        .await;
        let err = connect(&srv.url, &fi, Mode::Session, None, &impostor_fp, &limits)
            .await
            .unwrap_err();
        match err {
            TransportError::OwnerKeyMismatch { expected, actual } => {
                assert_eq!(expected, impostor_fp);
                assert_eq!(actual, owner.fingerprint());
            }
            other => panic!("unexpected client error {other:?}"),
        }
        // The server never completes.
        assert!(join(srv.handle).await.is_err());
    }

    #[tokio::test]
    async fn verifier_rejection_reaches_client() {
        let (owner, fi) = keys();
        let limits = Limits::default();
        let srv = server(owner.clone(), HashMap::new(), vec![], limits.clone()).await;
        let err = connect(
            &srv.url,
            &fi,
            Mode::Session,
            None,
            &owner.fingerprint(),
            &limits,
        )
        .await
        .unwrap_err();
        match err {
            TransportError::Rejected { code, message } => {
                assert_eq!(code, "unknown_key");
                assert_eq!(message, "this key is not paired");
            }
            other => panic!("unexpected client error {other:?}"),
        }
        assert!(matches!(
            join(srv.handle).await,
            Err(AcceptError::Rejected { code, .. }) if code == "unknown_key"
        ));
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_before_connecting() {
        let (owner, fi) = keys();
        let limits = Limits::default();
        let url = "ws://127.0.0.1:9/never";
        let fp = owner.fingerprint();
        for (mode, psk, fp) in [
            (Mode::Session, Some([0u8; 32]), fp.as_str()),
            (
                Mode::Pair {
                    invite: "abcdefgh".into(),
                },
                None,
                fp.as_str(),
            ),
            (
                Mode::Pair {
                    invite: String::new(),
                },
                Some([0u8; 32]),
                fp.as_str(),
            ),
            (Mode::Session, None, "not a fingerprint"),
        ] {
            let err = connect(url, &fi, mode, psk, fp, &limits).await.unwrap_err();
            assert!(matches!(err, TransportError::InvalidArgument(_)), "{err:?}");
        }
    }

    /// Opens a raw WebSocket to the server and sends `first`, returning the reply frame.
    async fn raw_first_frame(url: &str, first: Message) -> Option<Message> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(first).await.unwrap();
        tokio::time::timeout(STEP, next_data(&mut ws))
            .await
            .unwrap()
            .unwrap()
    }

    fn error_code(reply: Option<Message>) -> String {
        match reply {
            Some(Message::Text(t)) => {
                let c: Control = serde_json::from_str(&t).unwrap();
                assert_eq!(c.duo, "error");
                c.code.unwrap()
            }
            other => panic!("expected an error report, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unsupported_version_gets_error_reply() {
        let (owner, _) = keys();
        let srv = server(owner, HashMap::new(), vec![], Limits::default()).await;
        let hello = br#"{"duo":"hello","versions":[3,4],"mode":"session"}"#.to_vec();
        let reply = raw_first_frame(&srv.url, Message::Binary(hello)).await;
        assert_eq!(error_code(reply), codes::UNSUPPORTED_VERSION);
        assert!(matches!(
            join(srv.handle).await,
            Err(AcceptError::UnsupportedVersion { offered }) if offered == vec![3, 4]
        ));
    }

    #[tokio::test]
    async fn the_newest_common_version_is_chosen_and_a_version_1_client_still_connects() {
        for (offered, chosen) in [(&PROTOCOL_VERSIONS[..], 2), (&[1][..], 1), (&[2][..], 2)] {
            let (owner, fi) = keys();
            let srv = paired_server(&owner, &fi).await;
            let mut client = connect_offering(&srv.url, &fi, offered, &owner.fingerprint())
                .await
                .unwrap();
            let (mut server_chan, _) = join(srv.handle).await.unwrap();
            assert_eq!((client.version(), server_chan.version()), (chosen, chosen));
            let msg: Vec<u8> = (0..MAX_CHUNK + 7).map(|i| (i % 251) as u8).collect();
            client.send(&msg).await.unwrap();
            assert_eq!(server_chan.recv().await.unwrap().unwrap(), msg);
            server_chan.send(b"back").await.unwrap();
            assert_eq!(client.recv().await.unwrap().unwrap(), b"back");
        }
        // `connect` offers every version, newest first.
        let (client, server_chan) = session_pair(Limits::default(), Limits::default()).await;
        assert_eq!(client.version(), PROTOCOL_VERSION);
        assert_eq!(server_chan.version(), PROTOCOL_VERSION);
    }

    #[tokio::test]
    async fn a_node_that_picks_a_version_not_offered_is_refused() {
        let (owner, fi) = keys();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A hostile node: answers any hello with version 2 (or a version nobody speaks).
        let node = tokio::spawn(async move {
            for version in [2u32, 7] {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let _hello = next_data(&mut ws).await.unwrap();
                let welcome = format!(r#"{{"duo":"welcome","version":{version}}}"#);
                ws.send(Message::Binary(welcome.into_bytes()))
                    .await
                    .unwrap();
                let _ = next_data(&mut ws).await;
            }
        });
        for offered in [&[1u32][..], &PROTOCOL_VERSIONS[..]] {
            let err =
                connect_offering(&format!("ws://{addr}/"), &fi, offered, &owner.fingerprint())
                    .await
                    .unwrap_err();
            assert!(
                matches!(&err, TransportError::Protocol(m) if m.contains("did not offer")),
                "{err:?}"
            );
        }
        node.abort();
    }

    /// A raw session handshake up to message 2, by a client that sends `sent` as its hello but puts `believed`
    /// in its prologue (what it sent before a man in the middle edited it), with Noise protocol `name`.
    /// Returns the version the server chose and whether message 2 decrypted.
    async fn raw_handshake(
        url: &str,
        fi: &Keypair,
        sent: &[u8],
        believed: &[u8],
        name: &str,
    ) -> (u32, Result<(), snow::Error>) {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::Binary(sent.to_vec())).await.unwrap();
        let Some(Message::Binary(welcome)) = next_data(&mut ws).await.unwrap() else {
            panic!("no welcome");
        };
        let control: Control = serde_json::from_slice(&welcome).unwrap();
        let mut hs = snow::Builder::new(name.parse().unwrap())
            .local_private_key(fi.secret())
            .prologue(&build_prologue(believed, &welcome))
            .build_initiator()
            .unwrap();
        let mut buf = vec![0u8; NOISE_MAX_MESSAGE];
        let n = hs.write_message(&[], &mut buf).unwrap();
        ws.send(Message::Binary(buf[..n].to_vec())).await.unwrap();
        let Some(Message::Binary(m2)) = next_data(&mut ws).await.unwrap() else {
            panic!("no handshake message 2");
        };
        (
            control.version.unwrap(),
            hs.read_message(&m2, &mut buf).map(|_| ()),
        )
    }

    #[tokio::test]
    async fn the_cipher_is_the_chosen_versions_and_a_downgraded_hello_breaks_the_handshake() {
        let (owner, fi) = keys();
        let both = br#"{"duo":"hello","versions":[2,1],"mode":"session"}"#;
        let old = br#"{"duo":"hello","versions":[1],"mode":"session"}"#;
        // (hello sent, hello in the client's prologue, client's protocol name, version chosen, message 2 read)
        type Case<'a> = (&'a [u8], &'a [u8], &'a str, u32, bool);
        let cases: [Case; 5] = [
            (both, both, SESSION_NOISE_PARAMS, 2, true),
            (old, old, SESSION_NOISE_PARAMS_V1, 1, true),
            // The server really runs AES-GCM under version 2 and ChaCha20-Poly1305 under version 1.
            (both, both, SESSION_NOISE_PARAMS_V1, 2, false),
            (old, old, SESSION_NOISE_PARAMS, 1, false),
            // An attacker strips version 2 from the hello, so both sides would run version 1: the client's
            // prologue holds the hello it sent, the node's the one it got, and message 2 fails.
            (old, both, SESSION_NOISE_PARAMS_V1, 1, false),
        ];
        for (sent, believed, name, version, ok) in cases {
            let srv = paired_server(&owner, &fi).await;
            let (chosen, read) = raw_handshake(&srv.url, &fi, sent, believed, name).await;
            assert_eq!(chosen, version, "{name}");
            assert_eq!(read.is_ok(), ok, "{name} under version {version}: {read:?}");
            srv.handle.abort();
        }
    }

    #[tokio::test]
    async fn garbage_first_frame_is_bad_hello() {
        let (owner, _) = keys();
        for first in [
            Message::Binary(vec![0xff, 0x00, 0x13]),
            Message::Binary(br#"{"duo":"hi","versions":[1],"mode":"session"}"#.to_vec()),
            Message::Binary(br#"{"duo":"hello","versions":[1],"mode":"dance"}"#.to_vec()),
            Message::Binary(br#"{"duo":"hello","versions":[1],"mode":"pair"}"#.to_vec()),
            Message::Text(r#"{"duo":"hello","versions":[1],"mode":"session"}"#.into()),
        ] {
            let srv = server(owner.clone(), HashMap::new(), vec![], Limits::default()).await;
            let reply = raw_first_frame(&srv.url, first).await;
            assert_eq!(error_code(reply), codes::BAD_HELLO);
            assert!(matches!(
                join(srv.handle).await,
                Err(AcceptError::BadHello(_))
            ));
        }
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let kp = Keypair::from_secret([1u8; 32]).unwrap();
        let limits = Limits::default();
        let fp = kp.fingerprint();
        let c = connect("ws://127.0.0.1:9/", &kp, Mode::Session, None, &fp, &limits);
        assert_send(&c);
        let (a, _b) = tokio::io::duplex(64);
        let s = accept(
            a,
            &kp,
            |_: &str| None,
            |_: &str| String::new(),
            |_: &Mode, _: &[u8; 32]| Ok(()),
            |_: &str| {},
            &limits,
        );
        assert_send(&s);
    }

    #[test]
    fn peer_strings_are_truncated_and_defanged() {
        assert_eq!(truncate("ok\u{1b}[31mred\n", 100), "ok [31mred ");
        assert_eq!(truncate("ééé", 2), "éé");
    }

    #[test]
    fn hello_json_shape() {
        let hello = Hello {
            duo: "hello".into(),
            versions: vec![1],
            mode: Mode::Pair {
                invite: "abcd2345".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&hello).unwrap(),
            r#"{"duo":"hello","versions":[1],"mode":"pair","invite":"abcd2345"}"#
        );
        let session: Hello =
            serde_json::from_str(r#"{"mode":"session","versions":[1],"duo":"hello","x":0}"#)
                .unwrap();
        assert_eq!(session.mode, Mode::Session);
        let welcome = Welcome {
            duo: "welcome",
            version: 1,
        };
        assert_eq!(
            serde_json::to_string(&welcome).unwrap(),
            r#"{"duo":"welcome","version":1}"#
        );
    }

    /// Connects a session and returns both ends.
    async fn session_pair(
        client_limits: Limits,
        server_limits: Limits,
    ) -> (
        SecureChannel<MaybeTlsStream<TcpStream>>,
        SecureChannel<TcpStream>,
    ) {
        let (owner, fi) = keys();
        let srv = server(
            owner.clone(),
            HashMap::new(),
            vec![fi.public],
            server_limits,
        )
        .await;
        let client = connect(
            &srv.url,
            &fi,
            Mode::Session,
            None,
            &owner.fingerprint(),
            &client_limits,
        )
        .await
        .unwrap();
        let (server_chan, _) = join(srv.handle).await.unwrap();
        (client, server_chan)
    }

    #[tokio::test]
    async fn message_over_limit_is_too_large_on_receiver() {
        let small = Limits {
            max_message: 100_000,
            ..Limits::default()
        };
        let big = Limits {
            max_message: 1 << 20,
            ..Limits::default()
        };
        let (mut client, mut server_chan) = session_pair(big, small.clone()).await;
        // The sender's own limit is checked too, without breaking the channel.
        let err = server_chan.send(&vec![0u8; 100_001]).await.unwrap_err();
        assert!(matches!(err, TransportError::TooLarge { limit: 100_000 }));
        // Exactly at the limit is fine.
        client.send(&vec![1u8; 100_000]).await.unwrap();
        assert_eq!(server_chan.recv().await.unwrap().unwrap().len(), 100_000);
        client.send(&vec![2u8; 100_001]).await.unwrap();
        let err = server_chan.recv().await.unwrap_err();
        assert!(
            matches!(err, TransportError::TooLarge { limit: 100_000 }),
            "{err:?}"
        );
        assert!(server_chan.partial.len() <= 100_000);
        // The channel is now closed.
        assert!(matches!(
            server_chan.recv().await,
            Err(TransportError::Closed)
        ));
        assert!(matches!(
            server_chan.send(b"x").await,
            Err(TransportError::Closed)
        ));
    }

    #[tokio::test]
    async fn tampered_ciphertext_is_crypto_error() {
        let (mut client, mut server_chan) =
            session_pair(Limits::default(), Limits::default()).await;
        // A well-formed message first, so the tampering is not at nonce 0.
        client.send(b"first").await.unwrap();
        assert_eq!(
            server_chan.recv().await.unwrap().unwrap(),
            b"first".to_vec()
        );
        // Encrypt a valid chunk with the client's cipher state, flip one bit, send it raw.
        let mut buf = vec![0u8; NOISE_MAX_MESSAGE];
        let n = client.noise.write_message(b"\x00second", &mut buf).unwrap();
        let mut frame = buf[..n].to_vec();
        frame[3] ^= 0x40;
        client.ws.send(Message::Binary(frame)).await.unwrap();
        let err = server_chan.recv().await.unwrap_err();
        assert!(matches!(err, TransportError::Crypto), "{err:?}");
        assert!(matches!(
            server_chan.recv().await,
            Err(TransportError::Crypto | TransportError::Closed)
        ));
    }

    #[tokio::test]
    async fn random_frame_and_text_frame_after_handshake_are_fatal() {
        let (mut client, mut server_chan) =
            session_pair(Limits::default(), Limits::default()).await;
        client
            .ws
            .send(Message::Binary(vec![0x5a; 200]))
            .await
            .unwrap();
        assert!(matches!(
            server_chan.recv().await,
            Err(TransportError::Crypto)
        ));

        let (mut client, mut server_chan) =
            session_pair(Limits::default(), Limits::default()).await;
        client.ws.send(Message::Text("hello".into())).await.unwrap();
        assert!(matches!(
            server_chan.recv().await,
            Err(TransportError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn bad_flag_and_empty_plaintext_are_protocol_errors() {
        for plaintext in [&b"\x02abc"[..], b""] {
            let (mut client, mut server_chan) =
                session_pair(Limits::default(), Limits::default()).await;
            let mut buf = vec![0u8; NOISE_MAX_MESSAGE];
            let n = client.noise.write_message(plaintext, &mut buf).unwrap();
            client
                .ws
                .send(Message::Binary(buf[..n].to_vec()))
                .await
                .unwrap();
            let err = server_chan.recv().await.unwrap_err();
            assert!(matches!(err, TransportError::Protocol(_)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn close_mid_message_is_an_error_and_clean_close_is_none() {
        let (mut client, mut server_chan) =
            session_pair(Limits::default(), Limits::default()).await;
        let mut buf = vec![0u8; NOISE_MAX_MESSAGE];
        let n = client.noise.write_message(b"\x01part", &mut buf).unwrap();
        client
            .ws
            .send(Message::Binary(buf[..n].to_vec()))
            .await
            .unwrap();
        client.close().await;
        let err = server_chan.recv().await.unwrap_err();
        assert!(matches!(err, TransportError::Protocol(_)), "{err:?}");

        let (client, mut server_chan) = session_pair(Limits::default(), Limits::default()).await;
        client.close().await;
        assert!(server_chan.recv().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn idle_timeout_ends_recv() {
        let short = Limits {
            idle_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (_client, mut server_chan) = session_pair(Limits::default(), short).await;
        let err = tokio::time::timeout(STEP, server_chan.recv())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, TransportError::IdleTimeout(_)), "{err:?}");
    }

    #[tokio::test]
    async fn handshake_timeout_when_client_is_silent() {
        let (owner, _) = keys();
        let short = Limits {
            handshake_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        // A TCP client that never starts the WebSocket upgrade.
        let srv = server(owner.clone(), HashMap::new(), vec![], short.clone()).await;
        let addr = srv.url.trim_start_matches("ws://").trim_end_matches("/duo");
        let _tcp = TcpStream::connect(addr).await.unwrap();
        assert!(matches!(
            join(srv.handle).await,
            Err(AcceptError::Timeout(_))
        ));

        // A WebSocket client that never sends its hello.
        let srv = server(owner, HashMap::new(), vec![], short).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(srv.url.as_str())
            .await
            .unwrap();
        assert!(matches!(
            join(srv.handle).await,
            Err(AcceptError::Timeout(_))
        ));
        // The server told the client why before closing.
        let reply = tokio::time::timeout(STEP, next_data(&mut ws))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(error_code(reply), codes::HANDSHAKE_TIMEOUT);
    }

    #[tokio::test]
    async fn client_handshake_timeout_when_server_is_silent() {
        let (_, fi) = keys();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::time::sleep(STEP).await;
            drop(tcp);
        });
        let short = Limits {
            handshake_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let fp = fi.fingerprint();
        let err = connect(
            &format!("ws://{addr}/"),
            &fi,
            Mode::Session,
            None,
            &fp,
            &short,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TransportError::Timeout(_)), "{err:?}");
        hold.abort();
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_by_websocket_layer() {
        let (mut client, mut server_chan) =
            session_pair(Limits::default(), Limits::default()).await;
        let _ = client.ws.send(Message::Binary(vec![0u8; 70_000])).await;
        let err = server_chan.recv().await.unwrap_err();
        assert!(matches!(err, TransportError::WebSocket(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_trickled_upgrade_is_cut_at_the_upgrade_deadline() {
        let (owner, _) = keys();
        let limits = Limits {
            upgrade_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let srv = server(owner, HashMap::new(), vec![], limits).await;
        let addr = srv.url.trim_start_matches("ws://").trim_end_matches("/duo");
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        // One byte every 100 ms: never silent for long, never done.
        let trickle = async {
            for b in b"GET /duo HTTP/1.1\r\nHost: x\r\n".iter() {
                use tokio::io::AsyncWriteExt;
                if tcp.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let (result, ()) = tokio::join!(join(srv.handle), trickle);
        assert!(matches!(result, Err(AcceptError::Timeout(_))), "{result:?}");
        // Cut at the 300 ms upgrade deadline, not the 10 s handshake timeout.
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn each_handshake_message_has_its_own_deadline() {
        let (owner, _) = keys();
        let limits = Limits {
            message_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let srv = server(owner, HashMap::new(), vec![], limits).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(srv.url.as_str())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            join(srv.handle).await,
            Err(AcceptError::Timeout(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        let reply = tokio::time::timeout(STEP, next_data(&mut ws))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(error_code(reply), codes::HANDSHAKE_TIMEOUT);
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told_busy() {
        let (owner, _) = keys();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/duo", listener.local_addr().unwrap());
        let (evict, evicted) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let checks = Checks {
                psk_for_invite: |_: &str| None,
                invite_refusal: |_: &str| String::new(),
                verify: |_: &Mode, _: &[u8; 32]| Ok(()),
                bad_psk: |_: &str| {},
            };
            let limits = Limits::default();
            accept_evictable(tcp, &owner, checks, &limits, async {
                let _ = evicted.await;
            })
            .await
            .map(|_| ())
        });
        // Upgraded, but no hello yet: the server makes room for a newer connection.
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        evict.send(()).unwrap();
        let reply = tokio::time::timeout(STEP, next_data(&mut ws))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(error_code(reply), codes::BUSY);
        let result = tokio::time::timeout(STEP, handle).await.unwrap().unwrap();
        assert!(matches!(result, Err(AcceptError::Evicted)), "{result:?}");
    }

    #[tokio::test]
    async fn the_client_reads_busy_as_busy_not_as_a_wrong_url() {
        let (owner, fi) = keys();
        let fp = owner.fingerprint();
        // A busy report from the verifier (no session place left).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/duo", listener.local_addr().unwrap());
        let server_key = owner.clone();
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = accept(
                tcp,
                &server_key,
                |_: &str| None,
                |_: &str| String::new(),
                |_: &Mode, _: &[u8; 32]| {
                    Err((codes::BUSY.to_owned(), "no session place".to_owned()))
                },
                |_: &str| {},
                &Limits::default(),
            )
            .await;
        });
        let err = connect(&url, &fi, Mode::Session, None, &fp, &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Busy(_)), "{err:?}");
        assert!(err.to_string().contains("busy") && !err.to_string().contains("URL"));
        srv.await.unwrap();

        // An HTTP 503 answer to the upgrade (the node's answer over its connection cap).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/duo", listener.local_addr().unwrap());
        let srv = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            tcp.write_all(BUSY_HTTP_RESPONSE).await.unwrap();
        });
        let err = connect(&url, &fi, Mode::Session, None, &fp, &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Busy(_)), "{err:?}");
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn a_hello_over_1024_bytes_is_refused() {
        let (owner, _) = keys();
        let srv = server(owner, HashMap::new(), vec![], Limits::default()).await;
        let pad = "x".repeat(MAX_HELLO);
        let hello = format!(r#"{{"duo":"hello","versions":[1],"mode":"session","pad":"{pad}"}}"#);
        let reply = raw_first_frame(&srv.url, Message::Binary(hello.into_bytes())).await;
        assert_eq!(error_code(reply), codes::BAD_HELLO);
    }
}
