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

/// Correlated OTs over Z_2^64 prepared ahead of sending ([`CotSender::prepare_correlated_u64`],
/// [`super::kos::SenderCheck::prepare_correlated_u64`]): the corrections for the OTs from `first_index` on, and
/// the sender's outputs `x_j` summed in groups of `group` consecutive OTs. Secret until sent (the sums are the
/// sender's shares); zeroed on drop.
pub struct PreparedU64 {
    first_index: u64,
    sums: Vec<u64>,
    /// The corrections as the message's bytes (8 per OT, with room for a message tag).
    y: Vec<u8>,
}

/// The receiver's side of correlated OTs over Z_2^64, hashed ahead of use ([`CotReceiver::pads_u64`]): the
/// low 64 bits of `H(T_j, j)` and the choice `r_j` for the OTs from `first_index` on, all the receiver needs
/// to take the sender's corrections ([`ReceiverPadsU64::receive_correlated_u64`]), so the batch's buffers can
/// be reused at once. Secret; zeroed on drop.
pub struct ReceiverPadsU64 {
    first_index: u64,
    h: Vec<u64>,
    choices: Vec<bool>,
}

impl fmt::Debug for PreparedU64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedU64")
            .field("first_index", &self.first_index)
            .field("len", &(self.y.len() / 8))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ReceiverPadsU64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverPadsU64")
            .field("first_index", &self.first_index)
            .field("len", &self.h.len())
            .finish_non_exhaustive()
    }
}

impl Drop for PreparedU64 {
    fn drop(&mut self) {
        self.sums.zeroize();
        self.y.zeroize();
    }
}

impl Drop for ReceiverPadsU64 {
    fn drop(&mut self) {
        self.h.zeroize();
        self.choices.zeroize();
    }
}

impl ReceiverPadsU64 {
    /// Number of OTs.
    pub fn len(&self) -> usize {
        self.h.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// Correlated OT over Z_2^64: `x_j + r_j·δ_j (mod 2^64)` from the sender's corrections.
    pub fn receive_correlated_u64(self, msg: &CorrectionsU64) -> Result<Vec<u64>, Error> {
        self.receive_sums_u64(msg, 1)
    }

    /// [`ReceiverPadsU64::receive_correlated_u64`] summed in groups of `group` consecutive OTs (at least 1).
    pub fn receive_sums_u64(self, msg: &CorrectionsU64, group: usize) -> Result<Vec<u64>, Error> {
        check_peer_len("Z_2^64 corrections", 8, self.h.len(), msg.len())?;
        let mut sums = GroupSums::new(self.h.len(), group);
        for ((h, y), &r) in self.h.iter().zip(msg.values()).zip(&self.choices) {
            sums.add(h.wrapping_add(y & 0u64.wrapping_sub(r as u64)));
        }
        Ok(sums.sums)
    }
}

impl PreparedU64 {
    /// Prepares correlated OTs over Z_2^64 on `q` (OT `k` of it has global index `first_index + k`) under
    /// `delta` for `deltas`, one per OT, the outputs summed in groups of `group` (at least 1).
    pub(crate) fn of(
        q: &[Block],
        delta: Block,
        first_index: u64,
        deltas: &[u64],
        group: usize,
    ) -> Result<PreparedU64, Error> {
        check_len("Z_2^64 correlations", q.len(), deltas.len())?;
        Ok(Self::of_with(
            q,
            delta,
            first_index,
            deltas.iter().copied(),
            group,
        ))
    }

    /// [`PreparedU64::of`] with the correlations given in order by `deltas`, which has at least as many as `q`
    /// has OTs.
    pub(crate) fn of_with(
        q: &[Block],
        delta: Block,
        first_index: u64,
        mut deltas: impl Iterator<Item = u64>,
        group: usize,
    ) -> PreparedU64 {
        let mut sums = GroupSums::new(q.len(), group);
        let mut y = Vec::with_capacity(8 * q.len() + 1);
        hashed_pairs(q, delta, first_index, |_, p| {
            for (h, d) in p.iter().zip(&mut deltas) {
                let (h0, h1) = (h[0].0 as u64, h[1].0 as u64);
                sums.add(h0);
                y.extend_from_slice(&h0.wrapping_sub(h1).wrapping_add(d).to_le_bytes());
            }
        });
        PreparedU64 {
            first_index,
            sums: sums.sums,
            y,
        }
    }

    /// The sender's output sums and the corrections to send, for `batch`, the correlated OTs these were
    /// prepared on: an error if they are other OTs. Taking the batch, which exists only once the extension's
    /// check has passed, keeps corrections prepared before the check from leaving before it.
    pub fn send(mut self, batch: &CotSender) -> Result<(Vec<u64>, CorrectionsU64), Error> {
        check_prepared(
            batch.first_index,
            batch.q.len(),
            self.first_index,
            self.y.len() / 8,
        )?;
        let y = std::mem::take(&mut self.y);
        Ok((std::mem::take(&mut self.sums), CorrectionsU64::from_wire(y)))
    }
}

/// Sums (mod 2^64) of consecutive groups of `group` values (at least 1; the last group may be shorter), added in
/// order, without a division per value.
struct GroupSums {
    sums: Vec<u64>,
    group: usize,
    /// Values the last group still takes.
    left: usize,
}

impl GroupSums {
    /// Room for the sums of `n` values.
    fn new(n: usize, group: usize) -> GroupSums {
        let group = group.max(1);
        GroupSums {
            sums: Vec::with_capacity(n.div_ceil(group)),
            group,
            left: 0,
        }
    }

    fn add(&mut self, v: u64) {
        if self.left == 0 {
            self.sums.push(0);
            self.left = self.group;
        }
        if let Some(sum) = self.sums.last_mut() {
            *sum = sum.wrapping_add(v);
        }
        self.left -= 1;
    }
}

/// Whether what was made ahead is for exactly the OTs `first_index .. first_index + len`.
fn check_prepared(
    first_index: u64,
    len: usize,
    pads_first: u64,
    pads_len: usize,
) -> Result<(), Error> {
    if pads_first != first_index {
        return Err(ApiMisuse::LengthMismatch {
            what: "first OT index of what was prepared",
            expected: first_index as usize,
            got: pads_first as usize,
        }
        .into());
    }
    check_len("OTs prepared", len, pads_len)
}

/// Calls `f(k0, pairs)` with `pairs[k] = [H(Q_j, j), H(Q_j ⊕ Δ, j)]` for `j = first_index + k0 + k`, batch by
/// batch.
fn hashed_pairs(
    q: &[Block],
    delta: Block,
    first_index: u64,
    mut f: impl FnMut(usize, &[[Block; 2]]),
) {
    let mut input = [Block::ZERO; 2 * BATCH];
    let mut out = [Block::ZERO; 2 * BATCH];
    let mut pairs = [[Block::ZERO; 2]; BATCH];
    for (c, q) in q.chunks(BATCH).enumerate() {
        let n = q.len();
        for (k, &q) in q.iter().enumerate() {
            input[2 * k] = q;
            input[2 * k + 1] = q ^ delta;
        }
        let base = first_index as u128 + (c * BATCH) as u128;
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
    fn hashed_pairs(&self, f: impl FnMut(usize, &[[Block; 2]])) {
        hashed_pairs(&self.q, self.delta, self.first_index, f);
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

    /// Correlated OTs over Z_2^64 for `deltas` prepared ahead of sending ([`PreparedU64::send`]), the
    /// sender's outputs summed in groups of `group`.
    pub fn prepare_correlated_u64(
        &self,
        deltas: &[u64],
        group: usize,
    ) -> Result<PreparedU64, Error> {
        PreparedU64::of(&self.q, self.delta, self.first_index, deltas, group)
    }

    /// Correlated OT over Z_2^64: returns the sender's `x_j` and the corrections to send; the receiver will
    /// get `x_j + r_j·deltas[j] (mod 2^64)`.
    pub fn send_correlated_u64(self, deltas: &[u64]) -> Result<(Vec<u64>, CorrectionsU64), Error> {
        self.prepare_correlated_u64(deltas, 1)?.send(&self)
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

    /// The first `n` OTs (all of them if `n` is larger) hashed for correlated OTs over Z_2^64, ahead of the
    /// sender's corrections (for example while the sender checks the extension).
    pub fn pads_u64(&self, n: usize) -> ReceiverPadsU64 {
        let t = &self.t[..n.min(self.t.len())];
        let mut h = Vec::with_capacity(t.len());
        let mut out = [Block::ZERO; BATCH];
        for (c, t) in t.chunks(BATCH).enumerate() {
            let base = self.first_index as u128 + (c * BATCH) as u128;
            let out = &mut out[..t.len()];
            tccr_many(t, |k| base + k as u128, out);
            h.extend(out.iter().map(|h| h.0 as u64));
        }
        ReceiverPadsU64 {
            first_index: self.first_index,
            h,
            choices: self.choices[..t.len()].to_vec(),
        }
    }

    /// Correlated OT over Z_2^64: `x_j + r_j·δ_j (mod 2^64)` from the sender's corrections.
    pub fn receive_correlated_u64(self, msg: &CorrectionsU64) -> Result<Vec<u64>, Error> {
        check_peer_len("Z_2^64 corrections", 8, self.t.len(), msg.len())?;
        self.pads_u64(self.t.len()).receive_correlated_u64(msg)
    }
}
