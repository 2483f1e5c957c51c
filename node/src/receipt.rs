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
use crate::store::hex;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use zeroize::Zeroizing;

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
    /// Request id on the owner's node.
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
        let mut h = Sha256::new();
        h.update(b"duo receipt v1\n");
        for field in [
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
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        h.finalize().into()
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

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// The owner node's signing key.
pub struct NodeSigner {
    key: SigningKey,
}

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeSigner({})", self.public_hex())
    }
}

impl NodeSigner {
    /// Load the key from `path`, creating it (mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<NodeSigner, Error> {
        if let Ok(bytes) = std::fs::read(path) {
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::Internal(format!("{}: not a signing key file", path.display()))
            })?;
            let secret = text
                .lines()
                .find_map(|l| l.strip_prefix("secret: "))
                .and_then(unhex)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    Error::Internal(format!("{}: not a signing key file", path.display()))
                })?;
            return Ok(NodeSigner {
                key: SigningKey::from_bytes(&secret),
            });
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(secret.as_mut());
        let key = SigningKey::from_bytes(&secret);
        let text = Zeroizing::new(format!(
            "duo node signing key v1\npublic: {}\nsecret: {}\n",
            hex(key.verifying_key().as_bytes()),
            hex(secret.as_ref())
        ));
        crate::home::write_private(path, text.as_bytes())?;
        Ok(NodeSigner { key })
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    /// Sign a receipt for a release (fills `node_key`, `v` and `signature`).
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        request: u64,
        principal: &str,
        backend: &str,
        lineage: String,
        answer: String,
        cost_nanos: u64,
        log_seq: u64,
        log_hash: String,
    ) -> Receipt {
        let mut r = Receipt {
            v: RECEIPT_VERSION,
            node_key: self.public_hex(),
            request,
            principal: principal.to_string(),
            backend: backend.to_string(),
            lineage,
            answer,
            cost_nanos,
            log_seq,
            log_hash,
            issued_at: crate::store::now_text(),
            signature: String::new(),
        };
        r.signature = hex(&self.key.sign(&r.signed_bytes()).to_bytes());
        r
    }
}

/// Path of the signing key in an owner directory.
pub fn signing_key_path(owner_dir: &Path) -> std::path::PathBuf {
    owner_dir.join("signing.key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (tempfile::TempDir, NodeSigner) {
        let d = tempfile::tempdir().unwrap();
        let s = NodeSigner::load_or_create(&d.path().join("k")).unwrap();
        (d, s)
    }

    fn receipt(s: &NodeSigner) -> Receipt {
        s.sign(
            7,
            "Acme",
            "plaintext",
            "{\"node\":\"catalogue\"}".into(),
            "{\"kind\":\"scalar\"}".into(),
            0,
            12,
            "ab".repeat(32),
        )
    }

    #[test]
    fn a_receipt_verifies_and_any_change_breaks_it() {
        let (_d, s) = signer();
        let r = receipt(&s);
        r.verify(None).unwrap();
        r.verify(Some(&s.public_hex())).unwrap();
        let mut edits: Vec<Receipt> = Vec::new();
        for i in 0..9 {
            let mut x = r.clone();
            match i {
                0 => x.request += 1,
                1 => x.principal.push('x'),
                2 => x.backend = "dp".into(),
                3 => x.lineage.push(' '),
                4 => x.answer = "{\"kind\":\"rows\"}".into(),
                5 => x.cost_nanos = 1,
                6 => x.log_seq -= 1,
                7 => x.log_hash = "cd".repeat(32),
                _ => x.issued_at.push('Z'),
            }
            edits.push(x);
        }
        for (i, x) in edits.iter().enumerate() {
            assert!(x.verify(None).is_err(), "edit {i} was not detected");
        }
    }

    #[test]
    fn a_receipt_from_another_key_is_refused() {
        let (_d, s) = signer();
        let (_e, other) = signer();
        let r = receipt(&s);
        assert!(r.verify(Some(&other.public_hex())).is_err());
        // A forger who swaps in its own key still fails against the pinned key.
        let mut forged = receipt(&other);
        forged.request = r.request;
        assert!(forged.verify(Some(&s.public_hex())).is_err());
    }

    #[test]
    fn the_key_survives_a_reload() {
        let d = tempfile::tempdir().unwrap();
        let a = NodeSigner::load_or_create(&d.path().join("k")).unwrap();
        let b = NodeSigner::load_or_create(&d.path().join("k")).unwrap();
        assert_eq!(a.public_hex(), b.public_hex());
        receipt(&a).verify(Some(&b.public_hex())).unwrap();
    }
}
