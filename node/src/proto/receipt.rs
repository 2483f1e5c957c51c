//! Signed receipts: what an owner node attests about each answer it released.
//!
//! The owner node has a long-term ed25519 signing key (separate from its Noise key). Every released answer
//! carries a [`Receipt`] signed over the request id, the principal, the backend, the lineage, the answer, the
//! privacy cost, and the sequence number and hash of the audit-log entry that recorded the release. The FI
//! keeps its receipts in its own hash-chained file; anyone with the node's public key (an auditor) can check a
//! receipt with `duo verify-receipt`.
//!
//! What a receipt proves: the holder of the node's signing key released this answer to this principal for this
//! lineage, and at that moment its audit log's entry `log_seq` had hash `log_hash`. Because every entry's hash
//! covers all earlier entries, the owner's `log --verify --receipt FILE` then detects any edit, reordering or
//! deletion of entries up to `log_seq`; entries after the last receipt given out are covered only by the chain
//! and by the cross-check against the requests table.

use crate::error::Error;
use crate::proto::digest::{hash_fields, unhex};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Receipt format version.
pub const RECEIPT_VERSION: u32 = 1;

/// A signed statement of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Receipt {
    /// Format version ([`RECEIPT_VERSION`]).
    pub v: u32,
    /// The node's ed25519 public key, hex.
    pub node_key: String,
    /// Request id, as the principal numbers its requests (1, 2, 3, ... per principal).
    pub request: u64,
    /// The principal the answer was released to.
    pub principal: String,
    /// Backend (`plaintext`, `dp`, `2pc`).
    pub backend: String,
    /// The resolved lineage, as JSON text (signed as is).
    pub lineage: String,
    /// The answer, as JSON text (signed as is).
    pub answer: String,
    /// Privacy cost charged, in 1e-9 units of the node's measure (0 for plaintext).
    pub cost_nanos: u64,
    /// Sequence number of the audit-log entry recording the release.
    pub log_seq: u64,
    /// Hash of that entry (it covers every earlier entry).
    pub log_hash: String,
    /// When it was issued (RFC 3339, UTC).
    pub issued_at: String,
    /// Ed25519 signature over [`Receipt::signed_bytes`], hex.
    pub signature: String,
}

impl Receipt {
    /// The bytes the signature covers: SHA-256 over every field but the signature, each length-prefixed, under
    /// a domain tag. Fields are signed as the strings they are stored as, so verifying never re-serializes.
    pub fn signed_bytes(&self) -> [u8; 32] {
        hash_fields(
            b"duo receipt v1\n",
            [
                self.v.to_string().as_str(),
                &self.node_key,
                &self.request.to_string(),
                &self.principal,
                &self.backend,
                &self.lineage,
                &self.answer,
                &self.cost_nanos.to_string(),
                &self.log_seq.to_string(),
                &self.log_hash,
                &self.issued_at,
            ],
        )
    }

    /// Check the signature against `expected_key` (hex), or against the key the receipt names when `None`.
    pub fn verify(&self, expected_key: Option<&str>) -> Result<(), Error> {
        if self.v != RECEIPT_VERSION {
            return Err(Error::Refused(format!(
                "receipt version {} is not supported",
                self.v
            )));
        }
        if let Some(k) = expected_key {
            if !k.trim().eq_ignore_ascii_case(&self.node_key) {
                return Err(Error::Refused(
                    "the receipt was signed by a different node key".into(),
                ));
            }
        }
        let key = parse_verifying_key(&self.node_key)?;
        let sig = unhex(&self.signature)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| Error::Refused("the receipt's signature is malformed".into()))?;
        key.verify(&self.signed_bytes(), &sig).map_err(|_| {
            Error::Refused(
                "the receipt's signature does not verify: it was forged or altered".into(),
            )
        })
    }
}

/// Parse a hex ed25519 public key.
pub fn parse_verifying_key(hex_key: &str) -> Result<VerifyingKey, Error> {
    unhex(hex_key.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| Error::Refused("not an ed25519 public key (64 hex digits)".into()))
}
