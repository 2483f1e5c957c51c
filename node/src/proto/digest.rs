//! Hashing fields unambiguously, and hex.
//!
//! Every hash the node computes over several fields (log entries, receipts, release keys, the owner's
//! "what you saw" token, the FI's receipt chain, scoring session ids) writes each field as its length (u64,
//! little-endian) followed by its bytes, after a domain tag, so no two lists of fields hash alike. This is the one
//! place that encoding is written.

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};
use sha2::{Digest, Sha256};

/// SHA-256 over a domain tag and length-prefixed fields.
#[derive(Debug, Clone)]
pub struct FieldHasher(Sha256);

impl FieldHasher {
    /// A hasher that starts with `tag` (as is, not length-prefixed; may be empty).
    pub fn new(tag: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(tag);
        FieldHasher(h)
    }

    /// Add one field: its length, then its bytes.
    pub fn field(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Add bytes as they are (fixed-width values such as integers or digests).
    pub fn raw(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.0.update(bytes.as_ref());
        self
    }

    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// SHA-256 over `tag` and `fields`, each field length-prefixed.
pub fn hash_fields<T: AsRef<[u8]>>(tag: &[u8], fields: impl IntoIterator<Item = T>) -> [u8; 32] {
    let mut h = FieldHasher::new(tag);
    for f in fields {
        h.field(f);
    }
    h.finish()
}

/// The hash the first entry of a hash chain (the owner's log, the FI's receipts) chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    HEXLOWER.encode(bytes)
}

/// Bytes from hex (either case); `None` if it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unambiguous() {
        assert_ne!(
            hash_fields(b"t", ["ab", "c"]),
            hash_fields(b"t", ["a", "bc"])
        );
        assert_ne!(hash_fields(b"t", ["ab"]), hash_fields(b"u", ["ab"]));
        // The encoding: length (u64, little-endian), then the bytes.
        let mut manual = Sha256::new();
        manual.update(b"t");
        manual.update(2u64.to_le_bytes());
        manual.update(b"ab");
        assert_eq!(
            hash_fields(b"t", ["ab"]),
            <[u8; 32]>::from(manual.finalize())
        );
    }

    /// Answers are stored and signed as JSON and read back: a float must come back as the same float. (Without
    /// serde_json's `float_roundtrip`, values near 1e-7 or past 1e36 may come back one ULP off.)
    #[test]
    fn floats_read_back_exactly_from_json() {
        let mut x = 1.0e-12_f64;
        while x < 1.0e40 {
            for v in [x, x * 1.234_567_891_234_5, -x * 7.654_321_987_654_3] {
                let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
                assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
            }
            x *= 1.7;
        }
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
