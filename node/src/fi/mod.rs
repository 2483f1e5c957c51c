//! The FI side: the client that pairs with owner nodes and works through lazy pointers ([`client`]), its home
//! on disk ([`home`]), its model file for private scoring ([`model`]) and its side of a scoring run ([`run`]).
//! Nothing here imports owner code: both sides meet in [`crate::proto`] and [`crate::net`].

pub mod client;
pub mod home;
pub mod model;
pub mod portfolio;
pub mod run;

pub use client::{
    key_fingerprint, pair, pairing_conflict, Client, Pointer, ScoreLimit, ScoreReason, ScoreReport,
};
pub use home::{
    fi_dir, AskedScoring, FiHome, PairingRecord, ReceiptEntry, ScoreAbortRecord, ScoreRunRecord,
};
pub use model::ModelFile;
