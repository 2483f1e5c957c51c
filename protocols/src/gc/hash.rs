//! The garbling hash: the tweakable circular correlation-robust (TCCR) hash of Guo, Katz, Wang and Yu,
//! "Efficient and Secure Multiparty Computation from Fixed-Key Block Ciphers" (IEEE S&P 2020), §7.3:
//!
//! ```text
//! H(x, i) = π(π(x) ⊕ i) ⊕ π(x)        π = AES-128 under a fixed, public key
//! ```
//!
//! Two calls to the fixed-key permutation per hash. GKWY prove `H` is TCCR when `π` is modelled as a random
//! permutation, which is what half-gates garbling needs: for a secret `Δ`, the values `H(x ⊕ Δ, i)` look random
//! to anyone who does not know `Δ`, **as long as each tweak `i` is used with at most one pair `{x, x ⊕ Δ}`**.
//!
//! # Tweak invariant
//!
//! Under one `Δ`, a tweak must never be used for two different gates. The hash itself cannot enforce that; the
//! garbler does ([`crate::gc::Garbler`] owns a per-`Δ` gate counter, hands AND gate `k` of its session the tweaks
//! `2k` and `2k + 1`, and offers no way to choose or reset them). See [`gate_tweaks`].
//!
//! # Batching
//!
//! [`Tccr::hash_many`] hashes a slice of blocks with two `encrypt_blocks` calls, so AES-NI pipelines eight blocks
//! at a time. The garbler and evaluator call its two halves apart on whole batches of independent AND gates, so
//! that a label hashed under several tweaks has its first half computed once ([`Tccr::first_halves`]); they XOR
//! the tweaks in as they gather the first halves, and take the second permutation out of place
//! ([`Tccr::second_halves_of_masked`]), so each hash costs one pass over its blocks.

use crate::block::Block;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use std::fmt;
use std::sync::OnceLock;

/// The fixed public AES-128 key of `π`: the first 16 bytes of the SHA-256 digest of
/// `"duo/gc/fixed-key-aes/v1"`, written out so it cannot drift.
pub const FIXED_KEY: [u8; 16] = [
    0xf7, 0xe6, 0x6f, 0x68, 0xde, 0x7d, 0xd8, 0xe3, 0x63, 0xaf, 0xd6, 0x98, 0x8f, 0xb4, 0x15, 0x2b,
];

/// The AES block type of the `aes` crate (16 bytes).
pub type AesBlock = aes::Block;

/// `π`: AES-128 under a fixed public key, used as a public random permutation.
#[derive(Clone)]
pub struct FixedKeyAes {
    cipher: Aes128,
}

impl fmt::Debug for FixedKeyAes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FixedKeyAes(..)")
    }
}

impl FixedKeyAes {
    /// `π` under an explicit key (tests, other protocols). Garbling uses [`FixedKeyAes::fixed`].
    pub fn new(key: [u8; 16]) -> FixedKeyAes {
        FixedKeyAes {
            cipher: Aes128::new(&key.into()),
        }
    }

    /// `π` under [`FIXED_KEY`], built once per process.
    pub fn fixed() -> &'static FixedKeyAes {
        static PI: OnceLock<FixedKeyAes> = OnceLock::new();
        PI.get_or_init(|| FixedKeyAes::new(FIXED_KEY))
    }

    /// `π(x)` for one block.
    pub fn permute(&self, x: Block) -> Block {
        let mut b = to_aes(x);
        self.cipher.encrypt_block(&mut b);
        from_aes(&b)
    }

    /// `π` applied in place to every block of `blocks`, pipelined by the cipher backend.
    pub fn permute_many(&self, blocks: &mut [AesBlock]) {
        self.cipher.encrypt_blocks(blocks);
    }

    /// `out[j] = π(blocks[j])`, pipelined by the cipher backend.
    ///
    /// # Panics
    /// If the two slices differ in length.
    pub fn permute_many_into(&self, blocks: &[AesBlock], out: &mut [AesBlock]) {
        self.cipher
            .encrypt_blocks_b2b(blocks, out)
            .expect("permute_many_into: slices of equal length");
    }
}

/// The TCCR hash `H(x, i) = π(π(x) ⊕ i) ⊕ π(x)` of Guo–Katz–Wang–Yu (S&P 2020).
#[derive(Clone, Debug)]
pub struct Tccr {
    pi: &'static FixedKeyAes,
}

impl Default for Tccr {
    fn default() -> Self {
        Tccr::new()
    }
}

impl Tccr {
    /// The hash over the fixed-key permutation [`FixedKeyAes::fixed`].
    pub fn new() -> Tccr {
        Tccr {
            pi: FixedKeyAes::fixed(),
        }
    }

    /// `H(x, tweak)` for one block.
    pub fn hash(&self, x: Block, tweak: u128) -> Block {
        let y = self.pi.permute(x);
        self.pi.permute(Block(y.0 ^ tweak)) ^ y
    }

    /// Hashes `blocks[j]` in place into `H(blocks[j], tweak(j))`, with two batched AES calls. `scratch` must be
    /// at least as long as `blocks` (its contents are overwritten).
    ///
    /// # Panics
    /// If `scratch` is shorter than `blocks`.
    #[inline]
    pub fn hash_many(
        &self,
        blocks: &mut [AesBlock],
        scratch: &mut [AesBlock],
        tweak: impl Fn(usize) -> u128,
    ) {
        // blocks := π(x), scratch := π(π(x) ⊕ i)
        self.first_halves(blocks);
        self.second_halves(blocks, scratch, tweak);
        // blocks := π(π(x) ⊕ i) ⊕ π(x)
        for (b, s) in blocks.iter_mut().zip(scratch.iter()) {
            *b = to_aes_u128(aes_u128(b) ^ aes_u128(s));
        }
    }

    /// The second permutation of the hash, for callers that already hold `π(x_j)` (computed once for a label
    /// hashed under several tweaks): afterwards `out[j] = π(pis[j] ⊕ tweak(j))`, so
    /// `H(x_j, tweak(j)) = pis[j] ⊕ out[j]`.
    ///
    /// # Panics
    /// If `out` is shorter than `pis`.
    #[inline]
    pub fn second_halves(
        &self,
        pis: &[AesBlock],
        out: &mut [AesBlock],
        tweak: impl Fn(usize) -> u128,
    ) {
        let out = &mut out[..pis.len()];
        for (j, (o, p)) in out.iter_mut().zip(pis).enumerate() {
            *o = to_aes_u128(aes_u128(p) ^ tweak(j));
        }
        self.pi.permute_many(out);
    }

    /// The second permutation out of place, for callers that already XORed each tweak into its first half:
    /// `out[j] = π(masked[j])`, so for `masked[j] = π(x_j) ⊕ tweak_j`, `H(x_j, tweak_j) = out[j] ⊕ masked[j] ⊕
    /// tweak_j`. Saves the pass over the blocks that [`Tccr::second_halves`] makes to add the tweaks.
    ///
    /// # Panics
    /// If `out` is shorter than `masked`.
    #[inline]
    pub fn second_halves_of_masked(&self, masked: &[AesBlock], out: &mut [AesBlock]) {
        self.pi.permute_many_into(masked, &mut out[..masked.len()]);
    }

    /// `π(x)` in place for every block: the first half of the hash, shared by every tweak a label is hashed
    /// under.
    #[inline]
    pub fn first_halves(&self, blocks: &mut [AesBlock]) {
        self.pi.permute_many(blocks);
    }
}

/// The two tweaks of AND gate number `gate` of a session (counted from 0 under one `Δ`): `(2·gate, 2·gate + 1)`,
/// the first for the garbler's half gate (hashing the labels of input `a`), the second for the evaluator's half
/// gate (hashing the labels of input `b`). Distinct gates get disjoint tweaks.
#[inline]
pub fn gate_tweaks(gate: u64) -> (u128, u128) {
    let t = (gate as u128) << 1;
    (t, t | 1)
}

#[inline]
pub(crate) fn aes_u128(b: &AesBlock) -> u128 {
    let bytes: [u8; 16] = (*b).into();
    u128::from_le_bytes(bytes)
}

#[inline]
pub(crate) fn to_aes_u128(x: u128) -> AesBlock {
    AesBlock::from(x.to_le_bytes())
}

#[inline]
pub(crate) fn to_aes(x: Block) -> AesBlock {
    to_aes_u128(x.0)
}

#[inline]
pub(crate) fn from_aes(b: &AesBlock) -> Block {
    Block(aes_u128(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sha2::{Digest, Sha256};

    #[test]
    fn fixed_key_is_the_documented_digest() {
        let d = Sha256::digest(b"duo/gc/fixed-key-aes/v1");
        assert_eq!(&d[..16], &FIXED_KEY[..]);
    }

    #[test]
    fn batched_hash_equals_single_hash_and_depends_on_tweak() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let h = Tccr::new();
        let xs: Vec<Block> = (0..37).map(|_| Block::random(&mut rng)).collect();
        let mut buf: Vec<AesBlock> = xs.iter().map(|x| to_aes(*x)).collect();
        let mut scratch = vec![AesBlock::default(); 40];
        h.hash_many(&mut buf, &mut scratch, |j| 1000 + j as u128);
        for (j, x) in xs.iter().enumerate() {
            let single = h.hash(*x, 1000 + j as u128);
            assert_eq!(from_aes(&buf[j]), single);
            assert_ne!(single, h.hash(*x, 1001 + j as u128));
            // The definition, spelled out.
            let pi = FixedKeyAes::fixed();
            let y = pi.permute(*x);
            assert_eq!(single, pi.permute(Block(y.0 ^ (1000 + j as u128))) ^ y);
        }
        // The out-of-place second half, on first halves with the tweaks XORed in.
        let mut masked: Vec<AesBlock> = xs.iter().map(|x| to_aes(*x)).collect();
        h.first_halves(&mut masked);
        for (j, m) in masked.iter_mut().enumerate() {
            *m = to_aes_u128(aes_u128(m) ^ (1000 + j as u128));
        }
        let mut out = vec![AesBlock::default(); 40];
        h.second_halves_of_masked(&masked, &mut out);
        for (j, x) in xs.iter().enumerate() {
            let got = aes_u128(&out[j]) ^ aes_u128(&masked[j]) ^ (1000 + j as u128);
            assert_eq!(Block(got), h.hash(*x, 1000 + j as u128));
        }
    }

    #[test]
    fn fixed_key_aes_matches_the_aes_crate() {
        let pi = FixedKeyAes::new([0u8; 16]);
        // FIPS-197 style check: AES-128 with an all-zero key and block.
        let out = pi.permute(Block::ZERO).to_bytes();
        let expected = [
            0x66, 0xe9, 0x4b, 0xd4, 0xef, 0x8a, 0x2c, 0x3b, 0x88, 0x4c, 0xfa, 0x59, 0xca, 0x34,
            0x2b, 0x2e,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn gate_tweaks_are_disjoint() {
        let mut seen = std::collections::HashSet::new();
        for g in 0..10_000u64 {
            let (a, b) = gate_tweaks(g);
            assert!(seen.insert(a));
            assert!(seen.insert(b));
        }
    }
}
