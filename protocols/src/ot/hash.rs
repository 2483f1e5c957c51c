//! The hash that turns correlated OTs into random ones: the tweakable correlation-robust (TCCR) hash of Guo,
//! Katz, Wang and Yu, "Efficient and Secure Multiparty Computation from Fixed-Key Block Ciphers" (IEEE S&P
//! 2020), from a fixed-key permutation:
//!
//! ```text
//! H(x, i) = π(π(x) ⊕ i) ⊕ π(x)        π = AES-128 under the fixed public key OT_FIXED_KEY
//! ```
//!
//! GKWY prove it TCCR with `π` an ideal permutation: for a secret `Δ` and fresh tweaks, `H(x ⊕ Δ, i)` looks
//! random to whoever knows `x` but not `Δ`. In OT extension the sender's pair for OT `j` is
//! `(H(Q_j, j), H(Q_j ⊕ Δ, j))` and the receiver knows one input; **each tweak is used for exactly one OT
//! under a given `Δ`**: tweaks are the global OT indices that [`crate::ot::kos::Sender`] hands out from a
//! counter and never reuses. The key differs from the garbling hash's key, so the two uses are separate
//! permutations.
//!
//! Both calls to `π` go through `encrypt_blocks` on batches, so AES-NI pipelines eight blocks at a time.

use crate::block::Block;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128Enc;
use std::sync::OnceLock;

/// The fixed public AES-128 key of `π` for OT: the ASCII bytes of `"duo/ot/tccr/v1.\0"`.
pub const OT_FIXED_KEY: [u8; 16] = *b"duo/ot/tccr/v1.\0";

/// How many blocks one batch hashes (bounded stack buffers).
const BATCH: usize = 64;

fn pi() -> &'static Aes128Enc {
    static PI: OnceLock<Aes128Enc> = OnceLock::new();
    PI.get_or_init(|| Aes128Enc::new(&OT_FIXED_KEY.into()))
}

/// `H(x, i)` for one block (tests and small inputs; use [`tccr_many`] for batches).
pub fn tccr(x: Block, tweak: u128) -> Block {
    let mut out = [Block::ZERO];
    tccr_many(&[x], |_| tweak, &mut out);
    out[0]
}

/// `out[k] = H(xs[k], tweak(k))` for every `k`. `xs` and `out` must have the same length.
///
/// # Panics
/// If the lengths differ (a bug in the caller; all callers in this crate pass equal lengths).
pub fn tccr_many(xs: &[Block], tweak: impl Fn(usize) -> u128, out: &mut [Block]) {
    assert_eq!(xs.len(), out.len(), "tccr_many: length mismatch");
    let pi = pi();
    let mut a = [aes::Block::default(); BATCH];
    let mut b = [aes::Block::default(); BATCH];
    for (c, (xs, out)) in xs.chunks(BATCH).zip(out.chunks_mut(BATCH)).enumerate() {
        let n = xs.len();
        for (a, x) in a.iter_mut().zip(xs) {
            *a = x.to_bytes().into();
        }
        pi.encrypt_blocks(&mut a[..n]);
        for (k, (b, a)) in b.iter_mut().zip(&a[..n]).enumerate() {
            let y = u128::from_le_bytes((*a).into()) ^ tweak(c * BATCH + k);
            *b = y.to_le_bytes().into();
        }
        pi.encrypt_blocks(&mut b[..n]);
        for ((o, a), b) in out.iter_mut().zip(&a[..n]).zip(&b[..n]) {
            *o = Block(u128::from_le_bytes((*a).into()) ^ u128::from_le_bytes((*b).into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_and_depends_on_the_tweak() {
        let x = Block(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let enc = |v: u128| {
            let mut b: aes::Block = v.to_le_bytes().into();
            pi().encrypt_block(&mut b);
            u128::from_le_bytes(b.into())
        };
        let px = enc(x.0);
        assert_eq!(tccr(x, 5), Block(enc(px ^ 5) ^ px));
        assert_ne!(tccr(x, 5), tccr(x, 6));
        // Batch path (several chunks, with a ragged end) agrees with the single path.
        let xs: Vec<Block> = (0..150u128).map(|k| Block(k * 0x9e37_79b9 + 1)).collect();
        let mut out = vec![Block::ZERO; xs.len()];
        tccr_many(&xs, |k| 1000 + k as u128, &mut out);
        for (k, (x, o)) in xs.iter().zip(&out).enumerate() {
            assert_eq!(*o, tccr(*x, 1000 + k as u128));
        }
    }
}
