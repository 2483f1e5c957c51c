//! The owner node's receipt-signing key.

use crate::error::Error;
use crate::proto::digest::{hex, unhex};
use crate::proto::receipt::{Receipt, RECEIPT_VERSION};
use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use std::path::Path;
use zeroize::Zeroizing;

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
            crate::home::refuse_writable_by_others(path)
                .map_err(|e| Error::Refused(e.to_string()))?;
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
