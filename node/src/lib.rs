//! The Duo node: everything that runs.
//!
//! - [`transport`]: WebSocket carrying a Noise channel; [`keys`]: static keys, fingerprints and invite codes;
//! - [`wire`]: the application messages inside the channel;
//! - [`store`]: the owner's SQLite store and the hash-chained audit log;
//! - [`release`]: requests, decisions and releases (one transaction each); [`receipt`]: signed receipts;
//! - [`owner`]: initialising the owner node, loading data, invites and the service FIs connect to;
//! - [`scoring`]: private scoring (backend `2pc`): requests, runs over the session, the FI's model file;
//! - [`client`]: the FI client with lazy pointers;
//! - [`home`]: data directories.
#![forbid(unsafe_code)]

pub mod client;
pub mod dp;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
pub mod keys;
pub mod owner;
pub mod receipt;
pub mod release;
pub mod scoring;
pub mod store;
pub mod transport;
pub mod wire;

pub use error::Error;
