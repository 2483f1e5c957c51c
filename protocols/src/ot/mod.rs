//! Oblivious transfer: base OTs, OT extension, and the correlations the 2PC layers need.
//!
//! # Pieces
//!
//! - [`base`]: 1-out-of-2 random OT on Ristretto255, the endemic OT of Masny and Rindal, "Endemic Oblivious
//!   Transfer" (ACM CCS 2019), instantiated with Diffie–Hellman key agreement. One round, 128 of them
//!   seed the extension.
//! - [`kos`]: OT extension of Keller, Orsini and Scholl, "Actively Secure OT Extension with Optimal Overhead"
//!   (CRYPTO 2015), with the consistency check of the paper's **revised** version (ePrint 2015/546, Fig. 10),
//!   which follows the check of Roy's SoftSpokenOT (CRYPTO 2022): the original check (Fig. 7) rested on a lemma
//!   that Roy showed false. Output: correlated OT, `Q_j = T_j ⊕ r_j·Δ`.
//! - [`CotSender`] / [`CotReceiver`]: correlated OTs and what is derived from them with the tweakable
//!   correlation-robust hash of Guo, Katz, Wang and Yu (IEEE S&P 2020, [`hash`]): random OT, chosen-message OT
//!   (garbled input labels), and correlated OT over Z_2^64 (Gilboa products).
//! - [`ideal`]: trusted-party versions of every functionality with the same output types, to test higher
//!   layers without running real OT.
//!
//! # Roles in Duo
//!
//! ```text
//!   owner (garbler)                                   FI (evaluator)
//!   base-OT RECEIVER, choice bits = Δ   <-- base -->  base-OT SENDER, keys (k0_i, k1_i)
//!   extension SENDER: Q_j, Δ            <-- kos  -->  extension RECEIVER: choices r_j, T_j
//! ```
//!
//! The roles reverse for the base OTs: [`kos::Sender::setup`] (owner) starts a base-OT receiver whose choice
//! bits are its fresh `Δ`, and [`kos::Receiver::setup`] (FI) starts a base-OT sender. The two base-OT messages
//! are independent, so both are sent at once: one message each way.
//!
//! # Security model
//!
//! - **Malicious FI (extension receiver, base-OT sender).** The owner is protected by the KOS consistency check:
//!   a receiver that uses different choice vectors in different columns of its matrix passes the check only by
//!   guessing the bits of `Δ` in those columns, each guess right with probability 1/2, so it passes while
//!   having "learned" `c` bits of `Δ` with probability at most `2^-c` (plus `2^-124` per pair of columns for
//!   the universal hash). This is the leakage the KOS/SoftSpokenOT analysis allows; outputs derived with the
//!   correlation-robust hash stay secure. After a failed check the owner's [`kos::Sender`] is consumed: a new
//!   `Δ` (new base OTs) is needed, so an FI cannot accumulate guesses across runs. Base-OT receiver privacy
//!   (hiding `Δ` from the FI) is perfect: the owner's pair `(r0, r1)` is uniform whatever the choice bit.
//! - **Owner (extension sender, base-OT receiver) is semi-honest**, as in Duo's 2PC model. Nothing here stops
//!   a deviating owner from, e.g., sending inconsistent corrections; higher layers check what they must
//!   (the FI returns the owner's output label, which the owner checks).
//! - **Network.** Messages are parsed strictly (exact lengths, canonical points, no identity); a modified
//!   message yields an abort or, where the protocol cannot notice it, an output that is still correct (see
//!   the tests in this module and the notes on each message type). Messages are not authenticated here: the
//!   node's session does that.
//! - Hashes and PRGs: SHA-512 and hash-to-Ristretto are random oracles; AES-128 under a fixed public key is an
//!   ideal permutation (for the TCCR hash); AES-128 keyed by a base-OT output is the PRG.
//!
//! # Constant time
//!
//! Secret-dependent choices (bits of `Δ`, choice bits) select with masks, not branches; comparisons of check
//! values fold all differences before one branch. Table lookups are never indexed by secrets. The curve
//! arithmetic is curve25519-dalek's constant-time code; the single variable-time step is parsing peer bytes.
//! Secret types have opaque `Debug`. AES key schedules held by the states are not zeroized (the `aes` crate's
//! `zeroize` feature is off); scalars and `Δ` are.

pub mod base;
mod cot;
pub mod hash;
pub mod ideal;
pub mod kos;
mod matrix;
pub mod msgs;
#[cfg(test)]
mod tests;

pub use cot::{CotReceiver, CotSender, PreparedU64, ReceiverPadsU64};

use crate::channel::ChannelError;

/// Identifies one protocol session; bound into every hash that derives keys, so transcripts of different
/// sessions cannot be mixed. Both parties must use the same value (the node derives it from its session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

/// Any failure of an OT protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent something the protocol does not allow; abort the session.
    #[error("peer misbehaved: {0}")]
    Peer(#[from] PeerMisbehaved),
    /// The caller used the API wrongly (a bug on this side, not the peer's).
    #[error("API misuse: {0}")]
    Misuse(#[from] ApiMisuse),
    /// The channel carrying the messages failed (only from the channel drivers).
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
}

/// Ways the peer can break an OT protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// A message had the wrong length.
    #[error("{what}: expected {expected} bytes, got {got}")]
    WrongLength {
        /// Which message.
        what: &'static str,
        /// The length required here.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A group element was not the canonical encoding of a Ristretto255 point.
    #[error("{what}: element {index} is not a canonical Ristretto255 encoding")]
    NonCanonicalPoint {
        /// Which message.
        what: &'static str,
        /// Position of the element in the message.
        index: usize,
    },
    /// A group element was the identity.
    #[error("{what}: element {index} is the identity")]
    IdentityPoint {
        /// Which message.
        what: &'static str,
        /// Position of the element in the message.
        index: usize,
    },
    /// The KOS consistency check failed: the receiver's matrix is not consistent with one choice vector (or a
    /// message was modified in transit).
    #[error("the OT extension consistency check failed")]
    ConsistencyCheckFailed,
}

/// Ways the caller can misuse the OT API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// Two inputs that must have the same length do not.
    #[error("{what}: expected {expected} items, got {got}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// An OT count outside what the protocol supports.
    #[error("{what}: count {got} outside 1..={max}")]
    BadCount {
        /// Which input.
        what: &'static str,
        /// The count given.
        got: usize,
        /// The largest count allowed.
        max: usize,
    },
    /// The OT index space (2^64 OTs under one base-OT setup) ran out.
    #[error("OT index space exhausted; run new base OTs")]
    IndexExhausted,
    /// The extension receiver asked to go on to the challenge before sending all of its matrix.
    #[error("OT extension: the matrix was not sent whole before the challenge")]
    MatrixNotSent,
}
