//! Correlated OTs and what Duo derives from them.
//!
//! A batch of correlated OTs: the sender holds `Δ` and `Q_j`, the receiver holds its choice `r_j` and
//! `T_j = Q_j ⊕ r_j·Δ`. With the TCCR hash `H` ([`super::hash`]) and the OT's global index `j` as tweak:
//!
//! - **random OT**: the sender gets `(H(Q_j, j), H(Q_j ⊕ Δ, j))`, the receiver `H(T_j, j)`, which equals the
//!   `r_j`-th of the pair;
//! - **chosen-message OT** (garbled input labels): the sender sends `c_j^b = m_j^b ⊕ H(Q_j ⊕ b·Δ, j)`, the
//!   receiver outputs `c_j^{r_j} ⊕ H(T_j, j) = m_j^{r_j}`;
//! - **correlated OT over Z_2^64** (Gilboa products): with `h_j^b` the low 64 bits of `H(Q_j ⊕ b·Δ, j)`, the
//!   sender outputs `x_j = h_j^0` and sends `y_j = h_j^0 - h_j^1 + δ_j (mod 2^64)`; the receiver outputs
//!   `h_j^{r_j} + r_j·y_j`, which is `x_j` when `r_j = 0` and `h_j^1 + h_j^0 - h_j^1 + δ_j = x_j + δ_j` when
//!   `r_j = 1`. So the receiver gets `x_j + r_j·δ_j` for the sender's chosen `δ_j`.
//!
//! Each derivation consumes the batch (`self`), so an OT index, hence a hash tweak, is used once. Batches can
//! be split first ([`CotSender::split_at`], [`CotReceiver::split_at`]) to serve several uses.
//!
//! What the receiver learns: `H(T_j ⊕ Δ, j)` stays pseudorandom to it (TCCR), so `m_j^{1-r_j}` and, for
//! `r_j = 0`, `x_j + δ_j` stay hidden. A malicious receiver that passed the KOS check while guessing `c` bits of
//! `Δ` did so with probability `2^-c` (see [`super::kos`]). Modified corrections (the sender's messages) are not
//! detected here: they shift the receiver's output, which higher layers detect (the owner is semi-honest).

use super::hash::tccr_many;
use super::msgs::{ChosenMsg, CorrectionsU64};
use super::{ApiMisuse, Error, PeerMisbehaved};
use crate::block::Block;
use std::fmt;
use zeroize::Zeroize;

/// OTs hashed per batch in the derivations (bounded stack buffers).
const BATCH: usize = 256;

/// The sender's side of a batch of correlated OTs: `Δ` and `Q_j`.
pub struct CotSender {
    delta: Block,
    q: Vec<Block>,
    first_index: u64,
}

/// The receiver's side of a batch of correlated OTs: choices `r_j` and `T_j = Q_j ⊕ r_j·Δ`.
pub struct CotReceiver {
    choices: Vec<bool>,
    t: Vec<Block>,
    first_index: u64,
}

impl fmt::Debug for CotSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CotSender")
            .field("len", &self.q.len())
            .field("first_index", &self.first_index)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CotReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CotReceiver")
            .field("len", &self.t.len())
            .field("first_index", &self.first_index)
            .finish_non_exhaustive()
    }
}

impl Drop for CotSender {
    fn drop(&mut self) {
        self.delta.0.zeroize();
    }
}

impl Drop for CotReceiver {
    fn drop(&mut self) {
        self.choices.zeroize();
    }
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), Error> {
    if expected != got {
        return Err(ApiMisuse::LengthMismatch {
            what,
            expected,
            got,
        }
        .into());
    }
    Ok(())
}

fn check_peer_len(
    what: &'static str,
    unit: usize,
    expected: usize,
    got: usize,
) -> Result<(), Error> {
    if expected != got {
        return Err(PeerMisbehaved::WrongLength {
            what,
            expected: unit * expected,
            got: unit * got,
        }
        .into());
    }
    Ok(())
}

/// `a` if `!bit`, `b` if `bit`, without branching on `bit`.
#[inline]
fn select(a: Block, b: Block, bit: bool) -> Block {
    a ^ (a ^ b).and_bit(bit)
}

impl CotSender {
    /// A batch from its parts (the extension, the ideal functionality, tests).
    pub(crate) fn new(delta: Block, q: Vec<Block>, first_index: u64) -> CotSender {
        CotSender {
            delta,
            q,
            first_index,
        }
    }

    /// The buffer of `Q_j`, for the extension to reuse ([`super::kos::Sender::recycle`]).
    pub(crate) fn into_buffer(mut self) -> Vec<Block> {
        std::mem::take(&mut self.q)
    }

    /// Number of OTs.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// The correlation `Δ`.
    pub fn delta(&self) -> Block {
        self.delta
    }

    /// The sender's values `Q_j`; the receiver holds `Q_j ⊕ r_j·Δ`.
    pub fn q(&self) -> &[Block] {
        &self.q
    }

    /// Global index of the first OT (the hash tweak of OT `k` is `first_index + k`).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Splits into the first `n` OTs and the rest (indices stay attached).
    pub fn split_at(mut self, n: usize) -> Result<(CotSender, CotSender), Error> {
        if n > self.q.len() {
            return Err(ApiMisuse::LengthMismatch {
                what: "split point",
                expected: self.q.len(),
                got: n,
            }
            .into());
        }
        let rest = self.q.split_off(n);
        let second = CotSender::new(self.delta, rest, self.first_index + n as u64);
        let first = CotSender::new(self.delta, std::mem::take(&mut self.q), self.first_index);
        Ok((first, second))
    }

    /// Calls `f(k0, pairs)` with `pairs[k] = [H(Q_j, j), H(Q_j ⊕ Δ, j)]` for `j = k0 + k`, batch by batch.
    fn hashed_pairs(&self, mut f: impl FnMut(usize, &[[Block; 2]])) {
        let mut input = [Block::ZERO; 2 * BATCH];
        let mut out = [Block::ZERO; 2 * BATCH];
        let mut pairs = [[Block::ZERO; 2]; BATCH];
        for (c, q) in self.q.chunks(BATCH).enumerate() {
            let n = q.len();
            for (k, &q) in q.iter().enumerate() {
                input[2 * k] = q;
                input[2 * k + 1] = q ^ self.delta;
            }
            let base = self.first_index as u128 + (c * BATCH) as u128;
            tccr_many(
                &input[..2 * n],
                |k| base + (k / 2) as u128,
                &mut out[..2 * n],
            );
            for (p, o) in pairs.iter_mut().zip(out[..2 * n].chunks_exact(2)) {
                *p = [o[0], o[1]];
            }
            f(c * BATCH, &pairs[..n]);
        }
    }

    /// Random OT: `[H(Q_j, j), H(Q_j ⊕ Δ, j)]` for every OT.
    pub fn into_random(self) -> Vec<[Block; 2]> {
        let mut out = Vec::with_capacity(self.q.len());
        self.hashed_pairs(|_, p| out.extend_from_slice(p));
        out
    }

    /// Chosen-message OT: the receiver will learn `msgs[j][r_j]` and nothing about the other message.
    pub fn send_chosen(self, msgs: &[[Block; 2]]) -> Result<ChosenMsg, Error> {
        check_len("chosen-OT messages", self.q.len(), msgs.len())?;
        let mut c = Vec::with_capacity(msgs.len());
        self.hashed_pairs(|k0, p| {
            c.extend(
                p.iter()
                    .zip(&msgs[k0..k0 + p.len()])
                    .map(|(h, m)| [m[0] ^ h[0], m[1] ^ h[1]]),
            )
        });
        Ok(ChosenMsg { c })
    }

    /// Correlated OT over Z_2^64: returns the sender's `x_j` and the corrections to send; the receiver will
    /// get `x_j + r_j·deltas[j] (mod 2^64)`.
    pub fn send_correlated_u64(self, deltas: &[u64]) -> Result<(Vec<u64>, CorrectionsU64), Error> {
        check_len("Z_2^64 correlations", self.q.len(), deltas.len())?;
        let mut x = Vec::with_capacity(deltas.len());
        let mut y = Vec::with_capacity(deltas.len());
        self.hashed_pairs(|k0, p| {
            for (h, d) in p.iter().zip(&deltas[k0..k0 + p.len()]) {
                let (h0, h1) = (h[0].0 as u64, h[1].0 as u64);
                x.push(h0);
                y.push(h0.wrapping_sub(h1).wrapping_add(*d));
            }
        });
        Ok((x, CorrectionsU64 { y }))
    }
}

impl CotReceiver {
    /// A batch from its parts (the extension, the ideal functionality, tests).
    pub(crate) fn new(choices: Vec<bool>, t: Vec<Block>, first_index: u64) -> CotReceiver {
        debug_assert_eq!(choices.len(), t.len());
        CotReceiver {
            choices,
            t,
            first_index,
        }
    }

    /// The buffers of the choices and `T_j`, for the extension to reuse ([`super::kos::Receiver::recycle`]).
    pub(crate) fn into_buffers(mut self) -> (Vec<bool>, Vec<Block>) {
        (
            std::mem::take(&mut self.choices),
            std::mem::take(&mut self.t),
        )
    }

    /// Number of OTs.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// The choice bits `r_j`.
    pub fn choices(&self) -> &[bool] {
        &self.choices
    }

    /// The receiver's values `T_j = Q_j ⊕ r_j·Δ`.
    pub fn t(&self) -> &[Block] {
        &self.t
    }

    /// Global index of the first OT.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Splits into the first `n` OTs and the rest.
    pub fn split_at(mut self, n: usize) -> Result<(CotReceiver, CotReceiver), Error> {
        if n > self.t.len() {
            return Err(ApiMisuse::LengthMismatch {
                what: "split point",
                expected: self.t.len(),
                got: n,
            }
            .into());
        }
        let t_rest = self.t.split_off(n);
        let c_rest = self.choices.split_off(n);
        let second = CotReceiver::new(c_rest, t_rest, self.first_index + n as u64);
        let first = CotReceiver::new(
            std::mem::take(&mut self.choices),
            std::mem::take(&mut self.t),
            self.first_index,
        );
        Ok((first, second))
    }

    /// `H(T_j, j)` for every OT.
    fn hashed(&self) -> Vec<Block> {
        let mut out = vec![Block::ZERO; self.t.len()];
        let base = self.first_index as u128;
        tccr_many(&self.t, |k| base + k as u128, &mut out);
        out
    }

    /// Random OT: `H(T_j, j)`, equal to the sender's pair entry `r_j`.
    pub fn into_random(self) -> Vec<Block> {
        self.hashed()
    }

    /// Chosen-message OT: `m_j^{r_j}` from the sender's corrections.
    pub fn receive_chosen(self, msg: &ChosenMsg) -> Result<Vec<Block>, Error> {
        check_peer_len("chosen-OT corrections", 32, self.t.len(), msg.c.len())?;
        let mut h = self.hashed();
        for ((h, c), &r) in h.iter_mut().zip(&msg.c).zip(&self.choices) {
            *h ^= select(c[0], c[1], r);
        }
        Ok(h)
    }

    /// Correlated OT over Z_2^64: `x_j + r_j·δ_j (mod 2^64)` from the sender's corrections.
    pub fn receive_correlated_u64(self, msg: &CorrectionsU64) -> Result<Vec<u64>, Error> {
        check_peer_len("Z_2^64 corrections", 8, self.t.len(), msg.y.len())?;
        let h = self.hashed();
        Ok(h.iter()
            .zip(&msg.y)
            .zip(&self.choices)
            .map(|((h, y), &r)| (h.0 as u64).wrapping_add(y & 0u64.wrapping_sub(r as u64)))
            .collect())
    }
}
