//! Duo's cryptographic and statistical protocols, free of sockets and async (sans-io).
//!
//! Nothing in this crate opens a socket, spawns a task or reads a clock (the base OTs' curve arithmetic
//! and the OT-extension receiver's check pass on long extensions are split over scoped threads, which only
//! compute). Each two-party protocol is a state
//! machine: it takes the peer's message and returns the messages to send and its next state, so the node can
//! drive it over whatever channel a session has, and tests can drive both parties by hand or through the
//! in-memory channel pair.
//!
//! ```text
//!        owner node                                         FI
//!   +-------------------+     messages (bytes)      +-------------------+
//!   |  protocol state   | <-----------------------> |  protocol state   |
//!   |  machine (here)   |   carried by the node's   |  machine (here)   |
//!   +-------------------+   encrypted session       +-------------------+
//! ```
//!
//! Layout:
//! - [`block`]: 128-bit blocks, the unit of oblivious transfer and garbling.
//! - [`dp`]: differentially private releases on OpenDP: plans, costs in 1e-9 units, exact integer aggregation.
//! - [`channel`]: the `Channel` trait and an in-memory duplex pair with byte counters, for tests and benches.
//! - [`ot`]: oblivious transfer: Masny–Rindal base OT, KOS extension, derived correlations, ideal versions.
//! - [`gc`]: garbled circuits (half-gates, free-XOR, the GKWY TCCR hash), circuits and the AES-128 circuit.
//! - [`fixed`]: fixed point in Z_2^64 for private scoring: encoding, headroom check, bit-exact reference.
//! - [`score`]: private scoring: Gilboa products over OT, then a garbled decision, bands or score circuit.
#![deny(missing_docs)]

pub mod block;
pub mod channel;
pub mod dp;
pub mod fixed;
pub mod gc;
pub mod ot;
mod par;
pub mod score;
