//! OT extension: Keller, Orsini and Scholl, "Actively Secure OT Extension with Optimal Overhead" (CRYPTO
//! 2015), with the consistency check of the paper's revised version (IACR ePrint 2015/546, Fig. 10), which is
//! the check of Roy, "SoftSpokenOT: Quieter OT Extension from Small-Field Silent VOLE in the Minicrypt Model"
//! (CRYPTO 2022). The original KOS check (Fig. 7) relied on a lemma Roy showed false; libOTe and CryProt
//! moved to the revised check for the same reason.
//!
//! # Protocol
//!
//! Setup (128 base OTs, roles reversed, see [`crate::ot::base`]): the sender draws `Δ ∈ {0,1}^128` and learns
//! `k_i^{Δ_i}`; the receiver holds both `k_i^0, k_i^1`. `G(k)` is AES-128-CTR under `k`, continuing from where
//! the previous extension stopped; a scoring run first keys both sides for itself ([`Sender::for_run`],
//! [`Receiver::for_run`]), so each run's `G` is a fresh stream.
//!
//! Extension of `m` OTs with receiver choices `r ∈ {0,1}^m`:
//!
//! 1. The receiver pads `r` with at least `k + s = 128 + 64` uniformly random bits to `m'` (a multiple of 128;
//!    the last 128 rows are the mask block of the check) and sends the column-major matrix
//!    `u^i = G(k_i^0) ⊕ G(k_i^1) ⊕ r` for `i < 128` ([`MatrixMsg`], `16·m'` bytes). Its correlation is
//!    `t^i = G(k_i^0)`.
//! 2. After all of `U` has arrived the sender sends a fresh 16-byte seed ([`ChallengeMsg`]), which expands
//!    (AES-128-CTR) into one independent POLYVAL key `H_c` per 2048-row chunk. `U` may come in parts of whole
//!    chunks ([`ReceiverParts`], [`SenderExtend::receive_part`]); the sender then draws the seed when the first
//!    part arrives, to hash each part as it comes, and sends nothing until the last part is in, so the receiver
//!    has fixed all of `U` before it learns anything about the seed.
//! 3. With the linear hash `h(v) = v_mask ⊕ Σ_c POLYVAL_{H_c}(chunk c of v)` (each column read as 128-bit
//!    blocks; its last block `v_mask` is a one-time mask; see `ColumnHasher` in the source), the receiver answers
//!    ([`ResponseMsg`]) `x = h(r)` and `t_i = h(t^i)` for every column.
//! 4. The sender computes `q^i = G(k_i^{Δ_i}) ⊕ Δ_i·u^i` (so honestly `q^i = t^i ⊕ Δ_i·r`), and accepts iff
//!    `h(q^i) = t_i ⊕ Δ_i·x` for all 128 columns; otherwise it aborts with
//!    [`PeerMisbehaved::ConsistencyCheckFailed`] and is consumed.
//! 5. Transposing, row `j < m` gives the correlated OT `Q_j = T_j ⊕ r_j·Δ` ([`CotSender`], [`CotReceiver`]).
//!
//! **One deliberate deviation**, for speed without `unsafe` in this crate: Fig. 10 combines the blocks of a
//! column with independent random coefficients `χ_b`; here the coefficients are independent per chunk of 16
//! blocks and powers of that chunk's key inside it, so POLYVAL's aggregated-reduction Horner loop (hardware
//! carry-less multiplication, detected at run time by the `polyval` crate) does the field arithmetic. The
//! only property the analysis uses is that `h` is GF(2)-linear and ε-almost-universal; `ε` goes from `2^-128`
//! to `16·2^-128 = 2^-124` (a nonzero polynomial of degree ≤ 16 in the uniform key of some chunk).
//!
//! # What the check buys (malicious receiver)
//!
//! A cheating receiver sends `u^i` with effective choice vector `x^i = u^i ⊕ G(k_i^0) ⊕ G(k_i^1)` per column.
//! `h` is linear, so column `i` passes iff `Δ_i·(h(x^i) ⊕ x) = t_i ⊕ h(t^i)`. Fix the claimed `x`: a column with
//! `h(x^i) ≠ x` passes only if the receiver's response matches the unknown bit `Δ_i` (probability 1/2,
//! independently per column, since `Δ` is uniform and hidden by the base OTs). Columns with `h(x^i) = x` but
//! `x^i ≠ x^{i'}` for another such column need `h(x^i ⊕ x^{i'}) = 0` for a nonzero vector, which has
//! probability at most `2^-124` over the keys drawn after `U` was fixed (at most `128²/2 · 2^-124 = 2^-111`
//! over all pairs). So, except with probability `2^-111`, passing while inconsistent in `c` columns means having
//! guessed `c` bits of `Δ`, which happens with probability `2^-c`: the receiver "learns" `c` bits of `Δ` only
//! with probability `2^-c`, the leakage the KOS/SoftSpokenOT proof tolerates, and outputs hashed with the
//! correlation-robust hash stay pseudorandom. The mask block (uniform rows the receiver never reveals) makes
//! `x` and `t_i` uniform, so the response says nothing about `r` (statistical security `s = 64` from the
//! remaining padding rows, computational `k = 128`). Note that flipping a bit of `u^i` in a column where
//! `Δ_i = 0` is invisible by design: the sender does not use `u^i` there, so its outputs are unchanged.
//!
//! The sender is semi-honest in Duo's model; nothing protects the receiver from a deviating sender beyond the
//! base OTs hiding the receiver's keys.
//!
//! # Cost
//!
//! Per OT: about 3 AES blocks (receiver: 2 for `U`, 1 to regenerate `t^i` in its second pass) or 1 (sender) of
//! PRG; one POLYVAL block per OT on each side; a word-parallel 64×64 Eklundh transpose
//! (no per-bit loop). Both the sender's pass and the receiver's passes work chunk by chunk in cache. The
//! receiver transposes `t^i` into its outputs while it makes `U` (they do not depend on the challenge), so its
//! pass after the challenge, which the sender waits for, only regenerates and hashes the columns; from
//! [`PARALLEL_CHECK_CHUNKS`] chunks on, that pass is split over up to four scoped threads (the hash is a sum
//! over chunks), since the sender has nothing left to do but wait for it.
//! To overlap the parties' work, the sender should call [`SenderCheck::precompute`] right after sending the
//! challenge (the channel drivers here do).
//!
//! # Memory
//!
//! The channel drivers send `U` in parts of [`PART_CHUNKS`] chunks (512 KiB): the sender processes each part
//! while the receiver computes the next, and neither holds the 16 MiB matrix of 2^20 OTs. What remains is the
//! outputs (`Q_j` or `T_j`, 16 bytes per OT); [`Sender::recycle`] and [`Receiver::recycle`] hand a spent
//! batch's buffers back so the next extension writes into memory already mapped instead of faulting in fresh
//! pages (25-30% of the time of a 2^20 extension with fresh buffers).

use super::matrix::{self, ColChunk, Counters, Prg, CHUNK_WORDS};
use super::msgs::{
    BaseReceiverMsg, BaseSenderMsg, ChallengeMsg, MatrixMsg, ResponseMsg, ROWS_PER_BLOCK,
};
use super::{
    base, ApiMisuse, CotReceiver, CotSender, Error, PeerMisbehaved, PreparedU64, SessionId,
};
use crate::block::Block;
use crate::channel::Channel;
use rand::{CryptoRng, RngCore};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// Number of base OTs: the computational security parameter `k` and the width of a correlation.
pub const BASE_OTS: usize = 128;
/// Statistical security parameter `s`.
pub const STAT_SECURITY: usize = 64;
/// Random rows the receiver appends: at least `k + s`, rounded up so `m'` is a multiple of 128.
pub const MIN_PADDING_ROWS: usize = BASE_OTS + STAT_SECURITY;
/// The largest number of OTs in one extension (the matrix is then 16 GiB).
pub const MAX_OTS: usize = 1 << 30;

/// Rows of the matrix for `m` OTs: `m` plus at least [`MIN_PADDING_ROWS`], a multiple of 128.
pub fn padded_rows(m: usize) -> usize {
    (m + MIN_PADDING_ROWS).div_ceil(ROWS_PER_BLOCK) * ROWS_PER_BLOCK
}

fn check_count(m: usize) -> Result<(), Error> {
    if m == 0 || m > MAX_OTS {
        return Err(ApiMisuse::BadCount {
            what: "OT extension",
            got: m,
            max: MAX_OTS,
        }
        .into());
    }
    Ok(())
}

/// Advances the OT index and PRG block counters for an extension of `m` OTs.
fn advance(next_index: u64, next_block: u64, m: usize) -> Result<(u64, u64), Error> {
    let blocks = (padded_rows(m) / ROWS_PER_BLOCK) as u64;
    match (
        next_index.checked_add(m as u64),
        next_block.checked_add(blocks),
    ) {
        (Some(i), Some(b)) => Ok((i, b)),
        _ => Err(ApiMisuse::IndexExhausted.into()),
    }
}

fn empty_chunk() -> Box<ColChunk> {
    Box::new([[0u64; CHUNK_WORDS]; 128])
}

// ---------------------------------------------------------------------------------------------------------
// Sender (owner)
// ---------------------------------------------------------------------------------------------------------

/// The extension sender (the owner), ready to extend. Holds `Δ` and the PRGs keyed by `k_i^{Δ_i}`.
pub struct Sender {
    delta: Block,
    delta_masks: [u64; BASE_OTS],
    prgs: Vec<Prg>,
    /// The base-OT keys `k_i^{Δ_i}` the PRGs are keyed by, for the state at rest ([`Sender::to_rest`]).
    seeds: Zeroizing<Vec<u128>>,
    next_index: u64,
    next_block: u64,
    /// The output buffer of an earlier batch, handed back by [`Sender::recycle`], for the next extension.
    spare: Vec<Block>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kos::Sender")
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.delta.0.zeroize();
        self.delta_masks.zeroize();
    }
}

/// The sender during setup: a base-OT receiver whose choice bits are `Δ`.
pub struct SenderSetup {
    delta: Zeroizing<u128>,
    base: base::Receiver,
}

impl fmt::Debug for SenderSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kos::SenderSetup").finish_non_exhaustive()
    }
}

impl Sender {
    /// Starts the setup: draws `Δ` and returns the base-OT receiver message to send to the FI.
    pub fn setup<R: RngCore + CryptoRng + ?Sized>(
        sid: SessionId,
        rng: &mut R,
    ) -> Result<(SenderSetup, BaseReceiverMsg), Error> {
        let delta = Block::random(rng);
        let mut choices: Vec<bool> = (0..BASE_OTS).map(|i| (delta.0 >> i) & 1 == 1).collect();
        let (base, msg) = base::Receiver::new(sid, &choices, rng)?;
        choices.zeroize();
        Ok((
            SenderSetup {
                delta: Zeroizing::new(delta.0),
                base,
            },
            msg,
        ))
    }

    /// A sender from base-OT outputs made elsewhere: `keys[i] = k_i^{Δ_i}` for the 128 bits of `delta`.
    pub fn from_base(delta: Block, keys: &[Block]) -> Result<Sender, Error> {
        if keys.len() != BASE_OTS {
            return Err(ApiMisuse::LengthMismatch {
                what: "base-OT keys",
                expected: BASE_OTS,
                got: keys.len(),
            }
            .into());
        }
        let mut delta_masks = [0u64; BASE_OTS];
        for (i, m) in delta_masks.iter_mut().enumerate() {
            *m = 0u64.wrapping_sub(((delta.0 >> i) & 1) as u64);
        }
        Ok(Sender {
            delta,
            delta_masks,
            prgs: keys.iter().map(|k| Prg::new(*k)).collect(),
            seeds: Zeroizing::new(keys.iter().map(|k| k.0).collect()),
            next_index: 0,
            next_block: 0,
            spare: Vec::new(),
        })
    }

    /// The global correlation `Δ` (the owner's own secret).
    pub fn delta(&self) -> Block {
        self.delta
    }

    /// Index of the next OT this sender will produce (indices are the hash tweaks and never repeat).
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Takes back the buffer of a batch of correlated OTs that is no longer needed, so that the next extension
    /// writes its outputs there instead of into freshly allocated (and freshly page-faulted) memory: 16 MiB at
    /// 2^20 OTs. The batch's values stay in the buffer until the next extension overwrites them or this sender
    /// is dropped, as they would stay in freed memory.
    pub fn recycle(&mut self, cot: CotSender) {
        let q = cot.into_buffer();
        if q.capacity() > self.spare.capacity() {
            self.spare = q;
        }
    }

    /// Starts an extension of `m` OTs; next, the receiver's matrix, whole ([`SenderExtend::receive_matrix`]) or
    /// in parts ([`SenderExtend::receive_part`]).
    pub fn extend(mut self, m: usize) -> Result<SenderExtend, Error> {
        check_count(m)?;
        advance(self.next_index, self.next_block, m)?;
        let words = padded_rows(m) / 64;
        let mut q = std::mem::take(&mut self.spare);
        q.clear();
        q.reserve(m);
        Ok(SenderExtend {
            sender: self,
            m,
            pass: SenderPass {
                words,
                done: 0,
                keys: Vec::new(),
                seed: [0; 16],
                acc: Box::new([0u128; BASE_OTS]),
                q,
                cols: empty_chunk(),
            },
        })
    }
}

/// The sender's single pass over the matrix, chunk by chunk as its parts arrive: `q^i = G(k_i^{Δ_i}) ⊕
/// Δ_i·u^i`, the check hash of each column chunk, and the transpose into the outputs `Q_j`.
struct SenderPass {
    /// Words per column of the whole matrix.
    words: usize,
    /// Words per column processed so far (a whole number of chunks, or all).
    done: usize,
    /// The check keys, from `seed`; empty until the first part arrives.
    keys: Vec<polyval::Key>,
    /// The challenge seed, drawn when the first part arrives and sent only after the last.
    seed: [u8; 16],
    acc: Box<[u128; BASE_OTS]>,
    q: Vec<Block>,
    cols: Box<ColChunk>,
}

impl SenderPass {
    /// Draws the challenge seed (once), before any part is hashed.
    fn draw_seed<R: RngCore + CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        if self.keys.is_empty() {
            rng.fill_bytes(&mut self.seed);
            self.keys = matrix::check_keys(self.seed, matrix::chunks(self.words));
        }
    }

    /// Words per column in the part `bytes` starting at word `from`, if it is a whole number of chunks that does
    /// not run past the matrix.
    fn part_words(&self, from: usize, bytes: usize) -> Option<usize> {
        let mut w0 = from;
        let mut at = 0;
        while at < bytes {
            if w0 >= self.words {
                return None;
            }
            let g = (self.words - w0).min(CHUNK_WORDS);
            at += 8 * BASE_OTS * g;
            w0 += g;
        }
        (at == bytes).then_some(w0 - from)
    }

    /// Processes `bytes`, whole chunks starting at word `self.done` (checked by [`SenderPass::part_words`]).
    fn absorb(&mut self, s: &Sender, m: usize, bytes: &[u8]) {
        let hasher = matrix::ColumnHasher::new(self.words * 64 / ROWS_PER_BLOCK);
        let mut at = 0;
        while at < bytes.len() {
            let w0 = self.done;
            let g = (self.words - w0).min(CHUNK_WORDS);
            let mut ctr = Counters::new(s.next_block + (w0 / 2) as u64);
            for (i, col) in self.cols.iter_mut().enumerate() {
                let col = &mut col[..g];
                ctr.fill(&s.prgs[i], col);
                let mask = s.delta_masks[i];
                let src = &bytes[at + 8 * g * i..at + 8 * g * (i + 1)];
                for (c, b) in col.iter_mut().zip(src.chunks_exact(8)) {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(b);
                    *c ^= mask & u64::from_le_bytes(w);
                }
            }
            let c = w0 / CHUNK_WORDS;
            hasher.chunk(&mut self.acc, &self.cols, c, g, &self.keys[c]);
            matrix::transpose_chunk(&self.cols, g, m.saturating_sub(64 * w0), &mut self.q);
            at += 8 * BASE_OTS * g;
            self.done += g;
        }
    }
}

/// What [`SenderExtend::receive_part`] leads to.
#[derive(Debug)]
pub enum SenderPart {
    /// More of the matrix is due.
    More(SenderExtend),
    /// That was the last part: send the challenge, then call [`SenderCheck::precompute`].
    Complete(SenderCheck, ChallengeMsg),
}

// ---------------------------------------------------------------------------------------------------------
// State at rest, and one stream per run
// ---------------------------------------------------------------------------------------------------------

/// The base-OT keys as keyed for one run: `BLAKE3-derive-key("duo/ot/run-key/v1", k || session)` for each key
/// `k`, truncated to 128 bits (zeroed on drop). The context is hashed once, and its hasher copied for each key.
fn run_keys(keys: impl Iterator<Item = u128>, session: &SessionId) -> Zeroizing<Vec<u128>> {
    let context = blake3::Hasher::new_derive_key("duo/ot/run-key/v1");
    keys.map(|key| {
        let mut h = context.clone();
        h.update(&key.to_le_bytes());
        h.update(&session.0);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        u128::from_le_bytes(out)
    })
    .collect::<Vec<u128>>()
    .into()
}

/// First bytes of a sender's state at rest.
const SENDER_REST: &[u8; 8] = b"duokosS1";
/// First bytes of a receiver's state at rest.
const RECEIVER_REST: &[u8; 8] = b"duokosR1";

/// Reads a state at rest: its tag, then 16-byte words, then the next OT index and PRG block.
fn read_rest(
    bytes: &[u8],
    tag: &[u8; 8],
    words: usize,
    what: &'static str,
) -> Result<(Vec<u128>, u64, u64), Error> {
    let want = tag.len() + 16 * words + 16;
    if bytes.len() != want || !bytes.starts_with(tag) {
        return Err(ApiMisuse::LengthMismatch {
            what,
            expected: want,
            got: bytes.len(),
        }
        .into());
    }
    let body = &bytes[tag.len()..];
    let word = |i: usize| {
        let mut w = [0u8; 16];
        w.copy_from_slice(&body[16 * i..16 * (i + 1)]);
        u128::from_le_bytes(w)
    };
    let mut tail = [0u8; 8];
    let at = 16 * words;
    tail.copy_from_slice(&body[at..at + 8]);
    let next_index = u64::from_le_bytes(tail);
    tail.copy_from_slice(&body[at + 8..at + 16]);
    let next_block = u64::from_le_bytes(tail);
    Ok(((0..words).map(word).collect(), next_index, next_block))
}

/// Writes a state at rest (the layout [`read_rest`] reads).
fn write_rest(
    tag: &[u8; 8],
    words: impl Iterator<Item = u128>,
    next_index: u64,
    next_block: u64,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(tag.len() + 16 * (2 * BASE_OTS + 1) + 16));
    out.extend_from_slice(tag);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&next_index.to_le_bytes());
    out.extend_from_slice(&next_block.to_le_bytes());
    out
}

impl Sender {
    /// This sender keyed for one run with protocol session id `session`: every PRG is keyed by the base-OT key
    /// and `session` (a BLAKE3 key derivation) and starts at block 0, and the OT index goes on. Runs have distinct session
    /// ids (bound to the channel's handshake, the request and the run), so no two runs extend from the same
    /// stream, even a state at rest continued twice (restored from a backup, say): reusing a stream with other
    /// choices would give away the difference of the receiver's choice bits, and the sender's inputs through
    /// the products. The receiver must key itself for the same session ([`Receiver::for_run`]).
    pub fn for_run(mut self, session: &SessionId) -> Sender {
        self.prgs = run_keys(self.seeds.iter().copied(), session)
            .iter()
            .map(|k| Prg::new(Block(*k)))
            .collect();
        self.next_block = 0;
        self
    }

    /// This sender's state, to keep at rest until the next run with the same FI, so that run skips the base OTs:
    /// `Δ`, the 128 keys `k_i^{Δ_i}`, and the next OT index and PRG block. As secret as the node's private key:
    /// with it and the FI's extension messages, the FI's choice bits could be read. A state must be used once:
    /// the caller removes it from rest before an extension from it starts (docs/scoring.md).
    pub fn to_rest(&self) -> Zeroizing<Vec<u8>> {
        write_rest(
            SENDER_REST,
            std::iter::once(self.delta.0).chain(self.seeds.iter().copied()),
            self.next_index,
            self.next_block,
        )
    }

    /// The sender a state at rest ([`Sender::to_rest`]) describes, continuing at its next OT index and PRG block.
    pub fn from_rest(bytes: &[u8]) -> Result<Sender, Error> {
        let (words, next_index, next_block) =
            read_rest(bytes, SENDER_REST, 1 + BASE_OTS, "a KOS sender at rest")?;
        let words = Zeroizing::new(words);
        let keys: Vec<Block> = words[1..].iter().map(|w| Block(*w)).collect();
        let mut s = Sender::from_base(Block(words[0]), &keys)?;
        s.next_index = next_index;
        s.next_block = next_block;
        Ok(s)
    }
}

impl Receiver {
    /// This receiver keyed for one run with protocol session id `session`, as [`Sender::for_run`] keys the
    /// sender: both PRGs of every base OT keyed by their key and `session`, starting at block 0.
    pub fn for_run(mut self, session: &SessionId) -> Receiver {
        let keys = run_keys(self.seeds.iter().flat_map(|[a, b]| [*a, *b]), session);
        self.prgs = keys
            .chunks_exact(2)
            .map(|k| [Prg::new(Block(k[0])), Prg::new(Block(k[1]))])
            .collect();
        self.next_block = 0;
        self
    }

    /// This receiver's state, to keep at rest until the next run with the same owner: both keys of the 128
    /// base OTs and the next OT index and PRG block. As secret as the FI's private key: with it, the owner
    /// could read the FI's choice bits (its model's inputs) from its extension messages. A state must be used
    /// once: the caller removes it from rest before an extension from it starts (docs/scoring.md).
    pub fn to_rest(&self) -> Zeroizing<Vec<u8>> {
        write_rest(
            RECEIVER_REST,
            self.seeds.iter().flat_map(|[a, b]| [*a, *b]),
            self.next_index,
            self.next_block,
        )
    }

    /// The receiver a state at rest ([`Receiver::to_rest`]) describes, continuing at its next OT index and PRG
    /// block.
    pub fn from_rest(bytes: &[u8]) -> Result<Receiver, Error> {
        let (words, next_index, next_block) =
            read_rest(bytes, RECEIVER_REST, 2 * BASE_OTS, "a KOS receiver at rest")?;
        let words = Zeroizing::new(words);
        let keys: Vec<[Block; 2]> = words
            .chunks_exact(2)
            .map(|p| [Block(p[0]), Block(p[1])])
            .collect();
        let mut r = Receiver::from_base(&keys)?;
        r.next_index = next_index;
        r.next_block = next_block;
        Ok(r)
    }
}

impl SenderSetup {
    /// Finishes the setup with the FI's base-OT message.
    pub fn finish(self, msg: &BaseSenderMsg) -> Sender {
        let SenderSetup { delta, base } = self;
        let keys = base.finish(msg);
        Sender::from_base(Block(*delta), &keys).expect("the base-OT receiver made 128 keys")
    }
}

/// The sender waiting for the receiver's matrix (or its next part).
pub struct SenderExtend {
    sender: Sender,
    m: usize,
    pass: SenderPass,
}

impl fmt::Debug for SenderExtend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kos::SenderExtend")
            .field("m", &self.m)
            .field("words_received", &self.pass.done)
            .finish_non_exhaustive()
    }
}

impl SenderExtend {
    /// Takes the receiver's whole matrix and returns the challenge to send. Call [`SenderCheck::precompute`]
    /// after sending it, while the receiver computes its response.
    pub fn receive_matrix<R: RngCore + CryptoRng + ?Sized>(
        self,
        msg: MatrixMsg,
        rng: &mut R,
    ) -> Result<(SenderCheck, ChallengeMsg), Error> {
        let rows = padded_rows(self.m);
        if msg.rows() != rows || self.pass.done != 0 {
            return Err(PeerMisbehaved::WrongLength {
                what: "extension matrix",
                expected: 16 * rows,
                got: msg.bytes.len(),
            }
            .into());
        }
        match self.receive_part(msg, rng)? {
            SenderPart::Complete(check, challenge) => Ok((check, challenge)),
            SenderPart::More(_) => unreachable!("a part of the whole matrix's length completes it"),
        }
    }

    /// Takes the next part of the receiver's matrix: whole chunks (2048 rows, the last one possibly shorter) in
    /// order, the concatenation of all parts being the [`MatrixMsg`] of [`SenderExtend::receive_matrix`]. Every
    /// part but the last is processed at once, so the matrix is never held whole; the last is kept for
    /// [`SenderCheck::precompute`], which runs while the receiver answers the challenge.
    ///
    /// The challenge seed is drawn when the first part arrives, before the receiver has sent all of `U`; it is
    /// sent only after the last part, so the receiver still fixes all of `U` before it learns anything about the
    /// seed (the sender sends nothing in between), which is all the check's analysis asks of it.
    pub fn receive_part<R: RngCore + CryptoRng + ?Sized>(
        mut self,
        msg: MatrixMsg,
        rng: &mut R,
    ) -> Result<SenderPart, Error> {
        let from = self.pass.done;
        let Some(g) = self.pass.part_words(from, msg.bytes.len()) else {
            return Err(PeerMisbehaved::WrongLength {
                what: "extension matrix part",
                expected: 16 * 64 * (self.pass.words - from).min(CHUNK_WORDS),
                got: msg.bytes.len(),
            }
            .into());
        };
        self.pass.draw_seed(rng);
        if from + g < self.pass.words {
            self.pass.absorb(&self.sender, self.m, &msg.bytes);
            return Ok(SenderPart::More(self));
        }
        let challenge = ChallengeMsg {
            seed: self.pass.seed,
        };
        Ok(SenderPart::Complete(
            SenderCheck {
                sender: self.sender,
                m: self.m,
                pass: self.pass,
                last: Some(msg),
            },
            challenge,
        ))
    }
}

/// The sender after sending the challenge, waiting for the check response.
pub struct SenderCheck {
    sender: Sender,
    m: usize,
    pass: SenderPass,
    /// The matrix's last part, not yet processed.
    last: Option<MatrixMsg>,
}

impl fmt::Debug for SenderCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kos::SenderCheck")
            .field("m", &self.m)
            .field("precomputed", &self.last.is_none())
            .finish_non_exhaustive()
    }
}

impl SenderCheck {
    /// Processes the matrix's last part now (computing `Q` and the check hashes for it, the heavy part), so that
    /// [`SenderCheck::receive_response`] only compares. Optional: `receive_response` does it if it was not done.
    pub fn precompute(&mut self) {
        if let Some(last) = self.last.take() {
            self.pass.absorb(&self.sender, self.m, &last.bytes);
        }
    }

    /// Correlated OTs over Z_2^64 for `deltas` on the first `deltas.len()` OTs this extension gives if the
    /// check passes, prepared while the receiver answers the challenge ([`CotSender::prepare_correlated_u64`]).
    /// They leave only with the batch [`SenderCheck::receive_response`] returns once the check passes
    /// ([`super::PreparedU64::send`]).
    pub fn prepare_correlated_u64(
        &mut self,
        deltas: &[u64],
        group: usize,
    ) -> Result<PreparedU64, Error> {
        let (q, delta, first_index) = self.first_outputs(deltas.len())?;
        PreparedU64::of(q, delta, first_index, deltas, group)
    }

    /// The first `n` outputs `Q_j` of this extension (the last part processed first), with `Δ` and the index of
    /// the first, for preparing correlations on them; an error if it has fewer.
    fn first_outputs(&mut self, n: usize) -> Result<(&[Block], Block, u64), Error> {
        self.precompute();
        let have = self.pass.q.len();
        let q = self.pass.q.get(..n).ok_or(ApiMisuse::LengthMismatch {
            what: "Z_2^64 correlations",
            expected: have,
            got: n,
        })?;
        Ok((q, self.sender.delta, self.sender.next_index))
    }

    /// [`SenderCheck::prepare_correlated_u64`] for shifted correlations, made as they are hashed instead of
    /// read from a list: OT `i·bits + j` (for `j < bits`) carries `x_i·2^j`, and the sums are grouped by `i`, the
    /// shape of products with `bits`-bit numbers (Gilboa). `bits` is from 1 to 64.
    pub fn prepare_shifted_u64(&mut self, x: &[u64], bits: usize) -> Result<PreparedU64, Error> {
        if !(1..=64).contains(&bits) {
            return Err(ApiMisuse::BadCount {
                what: "bits of a shifted correlation",
                got: bits,
                max: 64,
            }
            .into());
        }
        let (q, delta, first_index) = self.first_outputs(x.len().saturating_mul(bits))?;
        Ok(PreparedU64::of_with(
            q,
            delta,
            first_index,
            x.iter().flat_map(|&x| (0..bits).map(move |j| x << j)),
            bits,
        ))
    }

    /// Verifies the receiver's response. On success returns the sender for the next extension and the `m`
    /// correlated OTs; on failure the sender is consumed (a new setup, hence a new `Δ`, is needed).
    pub fn receive_response(mut self, msg: &ResponseMsg) -> Result<(Sender, CotSender), Error> {
        self.precompute();
        let acc = &self.pass.acc;
        let s = &self.sender;
        let mut diff = 0u128;
        for i in 0..BASE_OTS {
            let mask = 0u128.wrapping_sub((s.delta.0 >> i) & 1);
            diff |= acc[i] ^ msg.t[i] ^ (msg.x & mask);
        }
        if diff != 0 {
            return Err(PeerMisbehaved::ConsistencyCheckFailed.into());
        }
        let SenderCheck {
            mut sender,
            m,
            mut pass,
            ..
        } = self;
        let first_index = sender.next_index;
        (sender.next_index, sender.next_block) = advance(sender.next_index, sender.next_block, m)?;
        let cot = CotSender::new(sender.delta, std::mem::take(&mut pass.q), first_index);
        Ok((sender, cot))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Receiver (FI)
// ---------------------------------------------------------------------------------------------------------

/// The extension receiver (the FI), ready to extend. Holds both PRGs of every base OT.
pub struct Receiver {
    prgs: Vec<[Prg; 2]>,
    /// Both base-OT keys of every PRG pair, for the state at rest ([`Receiver::to_rest`]).
    seeds: Zeroizing<Vec<[u128; 2]>>,
    next_index: u64,
    next_block: u64,
    /// The buffers of an earlier batch, handed back by [`Receiver::recycle`], for the next extension (the
    /// choices zeroed).
    spare: (Vec<bool>, Vec<Block>),
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kos::Receiver")
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

/// The receiver during setup: a base-OT sender.
#[derive(Debug)]
pub struct ReceiverSetup {
    base: base::Sender,
}

impl Receiver {
    /// Starts the setup: returns the base-OT sender message `A` to send to the owner.
    pub fn setup<R: RngCore + CryptoRng + ?Sized>(
        sid: SessionId,
        rng: &mut R,
    ) -> Result<(ReceiverSetup, BaseSenderMsg), Error> {
        let (base, msg) = base::Sender::new(sid, BASE_OTS, rng)?;
        Ok((ReceiverSetup { base }, msg))
    }

    /// A receiver from base-OT outputs made elsewhere: `keys[i] = [k_i^0, k_i^1]`.
    pub fn from_base(keys: &[[Block; 2]]) -> Result<Receiver, Error> {
        if keys.len() != BASE_OTS {
            return Err(ApiMisuse::LengthMismatch {
                what: "base-OT key pairs",
                expected: BASE_OTS,
                got: keys.len(),
            }
            .into());
        }
        Ok(Receiver {
            prgs: keys
                .iter()
                .map(|[a, b]| [Prg::new(*a), Prg::new(*b)])
                .collect(),
            seeds: Zeroizing::new(keys.iter().map(|[a, b]| [a.0, b.0]).collect()),
            next_index: 0,
            next_block: 0,
            spare: (Vec::new(), Vec::new()),
        })
    }

    /// Takes back the buffers of a batch of correlated OTs that is no longer needed, so that the next extension
    /// writes its outputs there instead of into freshly allocated memory (the choices are zeroed at once; the
    /// `T_j` stay until the next extension overwrites them or this receiver is dropped).
    pub fn recycle(&mut self, cot: CotReceiver) {
        let (mut choices, t) = cot.into_buffers();
        choices.zeroize();
        if choices.capacity() > self.spare.0.capacity() {
            self.spare.0 = choices;
        }
        if t.capacity() > self.spare.1.capacity() {
            self.spare.1 = t;
        }
    }

    /// Index of the next OT this receiver will produce.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Starts an extension with one OT per choice bit: returns the matrix `U` to send, whole.
    pub fn extend<R: RngCore + CryptoRng + ?Sized>(
        self,
        choices: &[bool],
        rng: &mut R,
    ) -> Result<(ReceiverExtend, MatrixMsg), Error> {
        let mut parts = self.extend_in_parts(choices, rng)?;
        let u = parts
            .next_part(usize::MAX)
            .expect("a matrix has at least one chunk");
        Ok((parts.finish()?, u))
    }

    /// Starts an extension with one OT per choice bit whose matrix `U` is sent in parts
    /// ([`ReceiverParts::next_part`]), so that it is never held whole.
    pub fn extend_in_parts<R: RngCore + CryptoRng + ?Sized>(
        mut self,
        choices: &[bool],
        rng: &mut R,
    ) -> Result<ReceiverParts, Error> {
        let m = choices.len();
        check_count(m)?;
        let first_index = self.next_index;
        let first_block = self.next_block;
        (self.next_index, self.next_block) = advance(self.next_index, self.next_block, m)?;
        let rows = padded_rows(m);
        let words = rows / 64;

        // r: the choices, then uniformly random padding rows.
        let mut r = vec![0u64; words];
        for w in r.iter_mut() {
            *w = rng.next_u64();
        }
        let full = m / 64;
        matrix::pack_bits(&choices[..64 * full], &mut r[..full]);
        if m % 64 != 0 {
            let mut last = [0u64; 1];
            matrix::pack_bits(&choices[64 * full..], &mut last);
            let low = (1u64 << (m % 64)) - 1;
            r[full] = (r[full] & !low) | last[0];
        }
        let mut own = std::mem::take(&mut self.spare.0);
        own.clear();
        own.extend_from_slice(choices);
        let mut t = std::mem::take(&mut self.spare.1);
        t.clear();
        t.reserve(m);
        Ok(ReceiverParts {
            ext: ReceiverExtend {
                receiver: self,
                choices: own,
                r,
                t,
                first_index,
                first_block,
            },
            sent: 0,
            cols: empty_chunk(),
        })
    }
}

/// The receiver sending its matrix `U` in parts.
pub struct ReceiverParts {
    ext: ReceiverExtend,
    /// Words per column sent so far.
    sent: usize,
    /// The current chunk of the columns `t^i = G(k_i^0)`, transposed into the outputs `T_j` as `U` is made.
    cols: Box<ColChunk>,
}

impl fmt::Debug for ReceiverParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kos::ReceiverParts")
            .field("m", &self.ext.choices.len())
            .field("words_sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl ReceiverParts {
    /// The next part of `U`: at most `max_chunks` chunks of 2048 rows (at least one), in the chunk-major layout
    /// of [`MatrixMsg`]; `None` once all of it has been returned.
    pub fn next_part(&mut self, max_chunks: usize) -> Option<MatrixMsg> {
        let e = &mut self.ext;
        let words = e.r.len();
        if self.sent == words {
            return None;
        }
        let end = words.min(
            self.sent
                .saturating_add(max_chunks.max(1).saturating_mul(CHUNK_WORDS)),
        );
        let m = e.choices.len();
        // With room for one more byte, so that a protocol that appends its message tag does not copy the part.
        // Written in order, column after column, so never cleared first.
        let mut bytes = Vec::with_capacity(8 * BASE_OTS * (end - self.sent) + 1);
        let mut t1 = [0u64; CHUNK_WORDS];
        let mut column = [0u8; 8 * CHUNK_WORDS];
        let mut w0 = self.sent;
        while w0 < end {
            let g = (words - w0).min(CHUNK_WORDS);
            let mut ctr = Counters::new(e.first_block + (w0 / 2) as u64);
            for (t0, [g0, g1]) in self.cols.iter_mut().zip(&e.receiver.prgs) {
                let t0 = &mut t0[..g];
                ctr.fill(g0, t0);
                ctr.fill(g1, &mut t1[..g]);
                let out = &mut column[..8 * g];
                for (o, ((a, b), r)) in out
                    .chunks_exact_mut(8)
                    .zip(t0.iter().zip(&t1).zip(&e.r[w0..w0 + g]))
                {
                    o.copy_from_slice(&(a ^ b ^ r).to_le_bytes());
                }
                bytes.extend_from_slice(out);
            }
            // The outputs T_j (rows of t) do not depend on the challenge: transpose them now, while the chunk
            // is in cache, so that the pass after the challenge only regenerates and hashes the columns.
            matrix::transpose_chunk(&self.cols, g, m.saturating_sub(64 * w0), &mut e.t);
            w0 += g;
        }
        self.sent = end;
        Some(MatrixMsg { bytes })
    }

    /// Whether parts of `U` remain to be returned by [`ReceiverParts::next_part`].
    pub fn remaining(&self) -> bool {
        self.sent < self.ext.r.len()
    }

    /// After the last part: the receiver waiting for the challenge. An error if parts remain (the challenge
    /// must not be asked for before all of `U` is out).
    pub fn finish(self) -> Result<ReceiverExtend, Error> {
        if self.sent != self.ext.r.len() {
            return Err(ApiMisuse::MatrixNotSent.into());
        }
        Ok(self.ext)
    }
}

impl ReceiverSetup {
    /// Finishes the setup with the owner's base-OT message.
    pub fn finish(self, msg: &BaseReceiverMsg) -> Result<Receiver, Error> {
        let keys = self.base.finish(msg)?;
        Receiver::from_base(&keys)
    }
}

/// The receiver after sending `U`, waiting for the challenge.
pub struct ReceiverExtend {
    receiver: Receiver,
    choices: Vec<bool>,
    r: Vec<u64>,
    /// The outputs `T_j`, all `m` of them once all of `U` is made.
    t: Vec<Block>,
    first_index: u64,
    first_block: u64,
}

impl fmt::Debug for ReceiverExtend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("kos::ReceiverExtend")
            .field("m", &self.choices.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ReceiverExtend {
    fn drop(&mut self) {
        self.r.zeroize();
        self.choices.zeroize();
    }
}

impl ReceiverExtend {
    /// Takes the challenge and returns the receiver for the next extension, the response to send, and the `m`
    /// correlated OTs. (The outputs are usable only if the sender accepts; a sender that aborts sends nothing
    /// derived from them.)
    pub fn receive_challenge(mut self, msg: &ChallengeMsg) -> (Receiver, ResponseMsg, CotReceiver) {
        let words = self.r.len();
        let rows = 64 * words;
        let chunks = matrix::chunks(words);
        let keys = matrix::check_keys(msg.seed, chunks);
        let hasher = matrix::ColumnHasher::new(rows / ROWS_PER_BLOCK);
        // The sender waits for this pass, and is idle meanwhile: the chunks are split over the cores when there
        // are enough of them to pay for the threads. The hash is a sum over chunks, so the parts' sums add up.
        let (prgs, first_block) = (&self.receiver.prgs, self.first_block);
        let hash_chunks = |range: std::ops::Range<usize>| {
            let mut acc = Box::new([0u128; BASE_OTS]);
            let mut cols = empty_chunk();
            for c in range {
                let w0 = c * CHUNK_WORDS;
                let g = (words - w0).min(CHUNK_WORDS);
                let mut ctr = Counters::new(first_block + (w0 / 2) as u64);
                for (col, [g0, _]) in cols.iter_mut().zip(prgs) {
                    ctr.fill(g0, &mut col[..g]);
                }
                hasher.chunk(&mut acc, &cols, c, g, &keys[c]);
            }
            acc
        };
        let mut acc = Box::new([0u128; BASE_OTS]);
        for part in crate::par::ranges(chunks, PARALLEL_CHECK_CHUNKS, hash_chunks) {
            for (a, p) in acc.iter_mut().zip(part.iter()) {
                *a ^= p;
            }
        }
        let x = hasher.words(&self.r, &keys);
        let choices = std::mem::take(&mut self.choices);
        let t = std::mem::take(&mut self.t);
        let first_index = self.first_index;
        let receiver = std::mem::replace(
            &mut self.receiver,
            Receiver {
                prgs: Vec::new(),
                seeds: Zeroizing::new(Vec::new()),
                next_index: 0,
                next_block: 0,
                spare: (Vec::new(), Vec::new()),
            },
        );
        (
            receiver,
            ResponseMsg { x, t: acc },
            CotReceiver::new(choices, t, first_index),
        )
    }
}

// ---------------------------------------------------------------------------------------------------------
// Drivers over a channel (tests, benches, and the shape the node follows)
// ---------------------------------------------------------------------------------------------------------

/// Runs the sender's (owner's) setup over `ch`: sends the base-OT receiver message, receives `A`.
pub fn sender_setup_over<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    sid: SessionId,
    rng: &mut R,
) -> Result<Sender, Error> {
    let (setup, msg) = Sender::setup(sid, rng)?;
    ch.send(msg.to_bytes())?;
    let reply = BaseSenderMsg::from_bytes(&ch.recv()?)?;
    Ok(setup.finish(&reply))
}

/// Runs the receiver's (FI's) setup over `ch`: sends `A`, receives the owner's pairs.
pub fn receiver_setup_over<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    sid: SessionId,
    rng: &mut R,
) -> Result<Receiver, Error> {
    let (setup, msg) = Receiver::setup(sid, rng)?;
    ch.send(msg.to_bytes())?;
    let reply = BaseReceiverMsg::from_bytes(&ch.recv()?)?;
    setup.finish(&reply)
}

/// Chunks of 2048 rows from which the receiver's pass after the challenge is split over the cores: 64 (2^17
/// rows, about half a millisecond of work on one core), below which the threads would cost more than they save.
pub const PARALLEL_CHECK_CHUNKS: usize = 64;

/// Chunks of 2048 rows per part of the matrix in the channel drivers: 16 (512 KiB), so that neither party
/// holds the matrix whole and its memory is reused from part to part instead of faulted in fresh.
pub const PART_CHUNKS: usize = 16;

/// Runs one extension of `m` OTs as the sender over `ch`, the matrix arriving in parts.
pub fn sender_extend_over<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    sender: Sender,
    m: usize,
    rng: &mut R,
) -> Result<(Sender, CotSender), Error> {
    let mut ext = sender.extend(m)?;
    let (mut check, challenge) = loop {
        let u = MatrixMsg::from_bytes(ch.recv()?)?;
        match ext.receive_part(u, rng)? {
            SenderPart::More(next) => ext = next,
            SenderPart::Complete(check, challenge) => break (check, challenge),
        }
    };
    ch.send(challenge.to_bytes())?;
    check.precompute();
    let resp = ResponseMsg::from_bytes(&ch.recv()?)?;
    check.receive_response(&resp)
}

/// Runs one extension as the receiver over `ch`, one OT per choice bit, the matrix sent in parts of
/// [`PART_CHUNKS`] chunks.
pub fn receiver_extend_over<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    receiver: Receiver,
    choices: &[bool],
    rng: &mut R,
) -> Result<(Receiver, CotReceiver), Error> {
    let mut parts = receiver.extend_in_parts(choices, rng)?;
    while let Some(u) = parts.next_part(PART_CHUNKS) {
        ch.send(u.into_bytes())?;
    }
    let ext = parts.finish()?;
    let challenge = ChallengeMsg::from_bytes(&ch.recv()?)?;
    let (receiver, resp, cot) = ext.receive_challenge(&challenge);
    ch.send(resp.to_bytes())?;
    Ok((receiver, cot))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run keys are the derivation docs/protocol.md states, computed here by BLAKE3's one-shot
    /// key derivation: the first 16 bytes of `derive_key("duo/ot/run-key/v1", k (16 bytes, LE) || session)`.
    #[test]
    fn run_keys_are_the_stated_derivation() {
        let session = SessionId([9; 32]);
        let keys = [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ];
        let got = run_keys(keys.iter().copied(), &session);
        for (k, got) in keys.iter().zip(got.iter()) {
            let mut material = k.to_le_bytes().to_vec();
            material.extend_from_slice(&session.0);
            let want = blake3::derive_key("duo/ot/run-key/v1", &material);
            assert_eq!(got.to_le_bytes(), want[..16]);
        }
        assert_ne!(got[0], got[1]);
    }
}
