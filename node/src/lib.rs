//! The Duo node: everything that runs. Its rooms, with dependencies pointing one way (down this list):
//!
//! - [`web`]: the owner's web UI, a loopback listener beside the service, on the same calls as the CLI;
//! - [`owner`]: the owner's node: the release path and its backends, the owner's decisions, private scoring
//!   runs, setting up a node, and the service FIs connect to;
//! - [`fi`]: the FI's client, its home on disk and its model file (it imports nothing from [`owner`]);
//! - [`store`]: the owner's SQLite store: all of its SQL, behind typed queries;
//! - [`net`]: keys and invite codes, the WebSocket + Noise channel, scoring runs' chunks on it;
//! - [`proto`]: every message both sides exchange, receipts, and the hashing they share;
//! - [`error`], [`home`]: the error type and data directories.
#![forbid(unsafe_code)]

pub mod error;
pub mod fi;
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
#[doc(hidden)]
pub mod loopback;
pub mod net;
pub mod owner;
pub mod proto;
pub mod relay;
pub mod store;
pub mod web;

pub use error::Error;
