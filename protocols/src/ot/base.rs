//! Base OT: the endemic OT of Masny and Rindal, "Endemic Oblivious Transfer" (ACM CCS 2019), instantiated with
//! Diffie–Hellman key agreement on Ristretto255 and the one-hash programmable-once public function.
//!
//! # Construction (exactly what runs)
//!
//! `G` is the Ristretto255 basepoint, `H_j : point → point` is hash-to-group,
//! `H_j(r) = from_uniform_bytes(SHA-512("duo/ot/mr19/h2g/v1" ‖ sid ‖ j ‖ enc(r)))`, and
//! `KDF_j(c, P) = SHA-512("duo/ot/mr19/key/v1" ‖ sid ‖ j ‖ enc(A) ‖ enc(r0_j) ‖ enc(r1_j) ‖ c ‖ enc(P))[..16]`.
//! For OTs `j = 0..n`:
//!
//! ```text
//! sender                                        receiver (choice b_j)
//! s <- Z_q, A = s·G          --- A --->          a_j, x_j <- Z_q
//!                                               r_{1-b} = 2·x_j·G        (a uniform point)
//!                                               r_b = a_j·G - H_j(r_{1-b})
//!                            <--- (r0_j, r1_j) ---
//! M_c = r_c + H_j(r_{1-c})    (c = 0, 1)         key = KDF_j(b, 2·a_j·A)
//! key_c = KDF_j(c, 2·s·M_c)
//! ```
//!
//! The doublings are there for speed only: `double_and_compress_batch` encodes twice each point of a batch
//! with a single field inversion, and doubling is a bijection of the prime-order group, so `2·s·M_c` is
//! exactly as hard to compute as `s·M_c` and `2·x_j·G` exactly as uniform as `x_j·G`. (The receiver knowing
//! the discrete log of `r_{1-b}` does not help it: `M_{1-b} = r_{1-b} + H_j(r_b)` still has an unknown one.)
//! The curve arithmetic of a batch is split over up to four scoped threads (`crate::par::map`); it does no I/O.
//!
//! So the receiver's pair satisfies `r_b + H_j(r_{1-b}) = a_j·G`; the sender cannot tell which index does, since
//! `(r0, r1)` is a uniform pair for either choice bit (perfect receiver privacy, whatever the sender does). A
//! receiver that wanted both keys would need `r_0 + H(r_1)` and `r_1 + H(r_0)` both with known discrete logs,
//! which in the random-oracle model means CDH (the endemic-security argument of the paper). The two messages do
//! not depend on each other, so the protocol is one round: both parties may send first.
//!
//! Outputs are random 128-bit keys (`key_0, key_1` to the sender, `key_b` to the receiver), bound to the session
//! id, the OT index and that OT's transcript. Every point from the peer must be a canonical encoding of a point
//! other than the identity ([`BaseSenderMsg::from_bytes`], [`BaseReceiverMsg::from_bytes`]); the sender also
//! rejects `M_c` = identity. In Duo the owner is this protocol's **receiver** (its choice bits are the
//! extension's `Δ`) and the FI its sender: see [`crate::ot::kos`].

use super::msgs::{BaseReceiverMsg, BaseSenderMsg};
use super::{ApiMisuse, Error, PeerMisbehaved, SessionId};
use crate::block::Block;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use std::fmt;
use subtle::{Choice, ConditionallySelectable};
use zeroize::Zeroize;

/// The largest batch of base OTs one message may carry.
pub const MAX_BASE_OTS: usize = 4096;

fn random_scalar<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut b = [0u8; 64];
    rng.fill_bytes(&mut b);
    let s = Scalar::from_bytes_mod_order_wide(&b);
    b.zeroize();
    s
}

fn hash_to_group(sid: &SessionId, j: usize, r: &CompressedRistretto) -> RistrettoPoint {
    let mut h = Sha512::new();
    h.update(b"duo/ot/mr19/h2g/v1");
    h.update(sid.0);
    h.update((j as u64).to_le_bytes());
    h.update(r.as_bytes());
    let out: [u8; 64] = h.finalize().into();
    RistrettoPoint::from_uniform_bytes(&out)
}

fn kdf(
    sid: &SessionId,
    j: usize,
    a: &CompressedRistretto,
    pair: &[CompressedRistretto; 2],
    c: u8,
    doubled: &CompressedRistretto,
) -> Block {
    let mut h = Sha512::new();
    h.update(b"duo/ot/mr19/key/v1");
    h.update(sid.0);
    h.update((j as u64).to_le_bytes());
    h.update(a.as_bytes());
    h.update(pair[0].as_bytes());
    h.update(pair[1].as_bytes());
    h.update([c]);
    h.update(doubled.as_bytes());
    let out = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&out[..16]);
    Block::from_bytes(k)
}

/// The base-OT sender after sending `A`, waiting for the receiver's pairs. Holds the secret `s`.
pub struct Sender {
    sid: SessionId,
    s: Scalar,
    a: CompressedRistretto,
    n: usize,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("base::Sender")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.s.zeroize();
    }
}

impl Sender {
    /// Starts `n` base OTs as the sender: returns the state and the message `A` to send.
    pub fn new<R: RngCore + CryptoRng + ?Sized>(
        sid: SessionId,
        n: usize,
        rng: &mut R,
    ) -> Result<(Sender, BaseSenderMsg), Error> {
        if n == 0 || n > MAX_BASE_OTS {
            return Err(ApiMisuse::BadCount {
                what: "base OTs",
                got: n,
                max: MAX_BASE_OTS,
            }
            .into());
        }
        let s = random_scalar(rng);
        let point = RistrettoPoint::mul_base(&s);
        let encoded = point.compress();
        let msg = BaseSenderMsg { encoded, point };
        Ok((
            Sender {
                sid,
                s,
                a: encoded,
                n,
            },
            msg,
        ))
    }

    /// Takes the receiver's pairs and returns both keys of every OT, `[key_0, key_1]`.
    pub fn finish(self, msg: &BaseReceiverMsg) -> Result<Vec<[Block; 2]>, Error> {
        if msg.len() != self.n {
            return Err(PeerMisbehaved::WrongLength {
                what: "base-OT receiver message",
                expected: self.n * super::msgs::PAIR_BYTES,
                got: msg.len() * super::msgs::PAIR_BYTES,
            }
            .into());
        }
        // s·M_c for every OT and c (the heavy part, in parallel), then one batch encoding of their doubles.
        let (sid, s) = (&self.sid, &self.s);
        let shared = crate::par::map(&msg.points, |j, pts| {
            let mut out = [RistrettoPoint::default(); 2];
            for c in 0..2 {
                let m = pts[c] + hash_to_group(sid, j, &msg.encoded[j][1 - c]);
                if m.is_identity() {
                    return Err(PeerMisbehaved::IdentityPoint {
                        what: "base-OT receiver message (r_c + H(r_{1-c}))",
                        index: 2 * j + c,
                    });
                }
                out[c] = s * m;
            }
            Ok(out)
        });
        let mut points = Vec::with_capacity(2 * self.n);
        for pair in shared {
            points.extend(pair?);
        }
        let doubled = RistrettoPoint::double_and_compress_batch(&points);
        points.zeroize();
        Ok(msg
            .encoded
            .iter()
            .enumerate()
            .map(|(j, enc)| [0, 1].map(|c| kdf(sid, j, &self.a, enc, c as u8, &doubled[2 * j + c])))
            .collect())
    }
}

/// The base-OT receiver after sending its pairs, waiting for `A`. Holds its secrets `a_j` and choice bits.
pub struct Receiver {
    sid: SessionId,
    choices: Vec<bool>,
    secrets: Vec<Scalar>,
    encoded: Vec<[CompressedRistretto; 2]>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("base::Receiver")
            .field("n", &self.choices.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.secrets.zeroize();
        self.choices.zeroize();
    }
}

impl Receiver {
    /// Starts one base OT per choice bit as the receiver: returns the state and the pairs to send.
    pub fn new<R: RngCore + CryptoRng + ?Sized>(
        sid: SessionId,
        choices: &[bool],
        rng: &mut R,
    ) -> Result<(Receiver, BaseReceiverMsg), Error> {
        let n = choices.len();
        if n == 0 || n > MAX_BASE_OTS {
            return Err(ApiMisuse::BadCount {
                what: "base OTs",
                got: n,
                max: MAX_BASE_OTS,
            }
            .into());
        }
        // Randomness first (the generator stays on this thread), then the curve arithmetic in parallel.
        let secrets: Vec<Scalar> = (0..n).map(|_| random_scalar(rng)).collect();
        let mut xs: Vec<Scalar> = (0..n).map(|_| random_scalar(rng)).collect();
        // r_{1-b} = 2·x_j·G: x_j·G in parallel, then one batch encoding of the doubles.
        let halves = crate::par::map(&xs, |_, x| RistrettoPoint::mul_base(x));
        xs.zeroize();
        let other_enc = RistrettoPoint::double_and_compress_batch(&halves);
        let work: Vec<(usize, &Scalar)> = secrets.iter().enumerate().collect();
        let mine = crate::par::map(&work, |_, &(j, a)| {
            let mine = RistrettoPoint::mul_base(a) - hash_to_group(&sid, j, &other_enc[j]);
            (mine, mine.compress())
        });
        let mut encoded = Vec::with_capacity(n);
        let mut points = Vec::with_capacity(n);
        for (j, ((mine, mine_enc), &b)) in mine.into_iter().zip(choices).enumerate() {
            let other = halves[j] + halves[j];
            // Place (mine, other) at (b, 1 - b) without branching on b.
            let (mut p, mut e) = ([other, mine], [other_enc[j], mine_enc]);
            swap_if(&mut p, &mut e, !b);
            points.push(p);
            encoded.push(e);
        }
        let msg = BaseReceiverMsg {
            encoded: encoded.clone(),
            points,
        };
        Ok((
            Receiver {
                sid,
                choices: choices.to_vec(),
                secrets,
                encoded,
            },
            msg,
        ))
    }

    /// Takes the sender's `A` and returns the chosen key of every OT.
    pub fn finish(self, msg: &BaseSenderMsg) -> Vec<Block> {
        let mut shared = crate::par::map(&self.secrets, |_, a| a * msg.point);
        let doubled = RistrettoPoint::double_and_compress_batch(&shared);
        shared.zeroize();
        self.choices
            .iter()
            .zip(&self.encoded)
            .enumerate()
            .map(|(j, (&b, enc))| kdf(&self.sid, j, &msg.encoded, enc, b as u8, &doubled[j]))
            .collect()
    }
}

/// Swaps the two entries of both arrays when `swap`, in constant time.
fn swap_if(p: &mut [RistrettoPoint; 2], e: &mut [CompressedRistretto; 2], swap: bool) {
    let choice = Choice::from(swap as u8);
    let [p0, p1] = p;
    RistrettoPoint::conditional_swap(p0, p1, choice);
    let (mut x, mut y) = (e[0].to_bytes(), e[1].to_bytes());
    for (x, y) in x.iter_mut().zip(y.iter_mut()) {
        u8::conditional_swap(x, y, choice);
    }
    *e = [CompressedRistretto(x), CompressedRistretto(y)];
}
