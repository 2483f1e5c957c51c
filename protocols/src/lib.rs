//! Duo's cryptographic and statistical protocols, free of sockets and async (sans-io).
//!
//! Nothing in this crate opens a socket, spawns a task or reads a clock. Each two-party protocol is a state
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
#![deny(missing_docs)]

pub mod block;
