//! Private scoring: the FI's linear model against the owner's attributes, revealing only the agreed output.
//!
//! # What is computed
//!
//! The owner holds `n` attributes `x_i`, each clamped to public bounds and encoded at scale `2^16`
//! ([`crate::fixed`]); the FI holds a [`FixedModel`]: weights `w_i` (scale `2^16`), a bias and a threshold
//! (scale `2^32`), and for banded outputs private band thresholds. Both learn one [`Outcome`], fixed in public
//! by [`Reveal`]:
//!
//! | reveal             | output                                   | bits revealed |
//! |--------------------|------------------------------------------|---------------|
//! | [`Reveal::Decision`] | `Σ w_i x_i + bias ≥ threshold`          | 1             |
//! | [`Reveal::Bands`]    | how many of the FI's `k − 1` band thresholds the score reaches | `log2 k` |
//! | [`Reveal::DecisionReasons`] | the decision and, on a decline, the `k` attributes furthest below their best contribution | `ceil(log2(n!/(n−k)!)) + 1` |
//! | [`Reveal::Score`]    | the score itself (scale `2^32`)         | 64            |
//!
//! The result is bit-exact with [`FixedModel::score_reference`] and [`ideal`]: nothing is truncated.
//!
//! # Reasons
//!
//! With [`Reveal::DecisionReasons`] the Gilboa shares are kept per attribute (step 1 gives them for free:
//! the `64` OTs of attribute `i` sum to shares of `w_i x_i`), and the circuit ([`reasons_circuit`]) ranks
//! the attributes by their shortfall `best_i − w_i x_i`, where `best_i = max(w_i lo_i, w_i hi_i)` is the
//! best contribution within the public bounds ("points below maximum"). `best_i` depends on the sign of
//! the FI's weight, so the FI computes it and folds it into its input (`best_i − its share`); the owner
//! never sees it. On an approval the reason wires are all ones whatever the ranking. Ties go to the lower
//! attribute index. The plaintext definition is [`fixed::shortfalls`] and [`fixed::worst_reasons`].
//!
//! # Construction
//!
//! 1. **Products by correlated OT** (Gilboa, "Two Party RSA Key Generation", CRYPTO 1999): weights are 32-bit
//!    signed integers ([`fixed::WEIGHT_BITS`]), which the FI inputs offset by `2^31` as unsigned 32-bit
//!    numbers `w_i + 2^31`. For every attribute and every bit `j` of that number, one correlated OT over
//!    `Z_2^64` in which the FI chooses with the bit and the owner's correlation is `x_i · 2^j`. The FI gets
//!    `u_i + (w_i + 2^31)·x_i` summed over the bits, the owner `−u_i − 2^31·x_i`: additive shares of `w_i·x_i`,
//!    `32·n` OTs in all. The OTs come from the KOS extension ([`crate::ot::kos`]), the owner as extension
//!    sender and the FI as receiver, so the FI's weight bits are the extension's choice bits and the KOS check
//!    holds the FI to one choice per OT, hence to one weight in `[−2^31, 2^31)` per attribute. The FI sends
//!    the extension matrix in parts ([`FiRun::start_streamed`]) and the owner absorbs each as it comes; each
//!    side hashes its OTs for the products while the other computes ([`OwnerRun::work_ahead`],
//!    [`FiRun::work_ahead`]).
//! 2. **The FI folds its constants into its share**: `bias − threshold` for a decision, `bias` otherwise.
//! 3. **A garbled circuit** ([`crate::gc`], half-gates over the GKWY hash), garbled by the owner with its share
//!    as garbler input and evaluated by the FI with its share (and band thresholds) as evaluator input:
//!    the sign of the sum ([`decision_circuit`], 63 AND gates), the band index ([`bands_circuit`]), or the sum
//!    ([`score_circuit`]). The FI's input labels travel by chosen-message OT, derandomized from extension OTs
//!    with random choices: the FI sends `e = input ⊕ r` and the owner swaps each label pair where `e` is 1.
//! 4. **Outputs**: with the garbled circuit the owner commits to both labels of each of its output wires (a hash
//!    of each, [`crate::gc::commit`]); the FI returns its label on an owner output wire only if it is one of
//!    the two committed ones, and aborts otherwise ([`Error::AfterFiInputs`]). The owner accepts the returned
//!    labels only if each is one of its wire's two labels ([`crate::gc::PendingOutput::check`]), then sends the
//!    FI's decoding bits.
//!
//! ```text
//!  owner                                                         FI
//!  [cold] BaseReceiver ------------------>   <------------------ BaseSender [cold]
//!                           <-------------- Matrix (choices: weight bits ‖ random)
//!  Challenge -------------->
//!                           <-------------- Response
//!  (KOS check)  Corrections, Garbled (with output-label commitments) ---->
//!                           <-------------- Flips (e = FI input ⊕ r)
//!  Labels ------------------>
//!                                           (evaluate; each output label must be a committed one)
//!                           <-------------- OutputLabels ‖ transcript hash
//!  (label check, transcript) Decoding ‖ transcript tag ---->           (transcript, decode)
//! ```
//!
//! A warm run (base OTs kept from an earlier run: [`OwnerRun::start`] and [`FiRun::start`] take the extension
//! state back) starts at the matrix: four round trips.
//!
//! # Transcript confirmation
//!
//! Each side hashes every message it sent and received, except the extension matrix, after the session id and
//! the public parameters (BLAKE3 in its key-derivation mode). The FI's output-label message carries its hash,
//! which the owner compares with its own before it accepts any output; the owner's decoding message carries a
//! hash of the whole transcript including the decoding bits, which the FI compares before it decodes. So a
//! message changed in transit makes the run abort rather than give a wrong output: the matrix is left out
//! because the KOS check already covers it (a changed matrix column either fails the check or, where the bit of `Δ` is 0, changes
//! nothing). Against a network attacker who rewrites messages consistently, the protection is the node's
//! authenticated session, not this hash.
//!
//! # Security model
//!
//! - **Against a malicious FI** the owner gets an abort or the ideal output for *some* FI input `(w, c)`, each
//!   weight in `[−2^31, 2^31)` and `c` in `Z_2^64`: the KOS check binds the FI to one weight per attribute, and
//!   it may pick any share, that is any constant `c`. One run reveals at most the bits of [`Reveal::bits`] of one function of the attributes of
//!   the FI's choosing. A model whose sum wraps (weights beyond the headroom check, which only an honest FI
//!   runs) still yields one bit per output wire, for example one bit of one attribute: count runs, not models.
//!   The KOS check leaks at most `c` bits of `Δ` with probability `2^-c` (see [`crate::ot`]); the owner's
//!   extension state is consumed by a failed check.
//! - **Against a modified owner the FI's model is protected to about one bit per owner output wire per run.**
//!   The FI's weights reach the owner only as OT choice bits (hidden by the extension) and its share only as
//!   garbled inputs; what comes back to the owner is the FI's label on each owner output wire. Without a check
//!   that label could encode the FI's inputs: an owner that garbles honestly but hands the FI shifted labels
//!   for the top `k` bits of its share, with its Gilboa input set to `2^(64-k)`, reads `k` bits of a weight
//!   from one decision run by trying the `2^k` candidates (the test
//!   `a_modified_owner_cannot_read_a_weight_from_the_output_label`). The output-label commitments of step 4
//!   stop that: the label the FI returns is one of two the owner fixed before it saw anything of the FI, or
//!   the FI aborts, so a modified owner learns about one bit per output wire (which label, or whether the FI
//!   aborted: selective failure). An abort after the FI's inputs entered the circuit
//!   ([`Error::AfterFiInputs`]) is the owner's doing; the FI should not score that owner again without its
//!   operator's decision (the node keeps such a flag). A decision gives the owner one output wire; a raw score
//!   gives it 64; a decision with `k` reasons of `n` attributes `1 + k·⌈log2(n+1)⌉`.
//! - **What the protocol does not give the FI.** No guarantee that its output is correct against a modified
//!   owner: the owner chooses the decoding bits of the FI's outputs (and could garble another circuit), so the
//!   FI decodes whatever the owner wants, and the run ends normally. For reasons the FI refuses what the
//!   circuit cannot output ([`PeerMisbehaved::MalformedReasons`]), but any well-formed outcome passes. And since the FI picks the model, a
//!   decision can be any one bit of any requested attribute (a model that weights one attribute, with the
//!   threshold at the bit's place), and a raw score can return every requested attribute exactly in one run
//!   (weights at powers of two far enough apart): the owner approves the reveal, not the model.
//! - **The owner never accepts an output the circuit did not compute**: see step 4 and [`crate::gc`].
//! - The model commitment the FI shows the owner is asserted by the FI and not enforced by this protocol.

#[cfg(test)]
mod hostile;
mod msgs;
mod reveal;
#[cfg(test)]
mod tests;

pub use msgs::{Tag, MAX_ATTRIBUTES, MAX_BAND_THRESHOLDS};
pub use reveal::{bits_text, ordered_choices, Reveal, RevealParseError};

use crate::block::Block;
use crate::channel::{Channel, ChannelError};
use crate::fixed::{self, Bounds, FixedError, FixedModel, SCORE_FRAC_BITS};
use crate::gc::builder::{bits_to_u64, u64_to_bits};
use crate::gc::{
    self, AwaitingDecoding, Circuit, Delta, Evaluator, EvaluatorLabelPairs, GarbledHeader,
    GarbledTables, Garbler, OutputCommitments, OutputDecoding, PendingOutput,
};
use crate::ot::msgs::{
    BaseReceiverMsg, BaseSenderMsg, ChallengeMsg, ChosenMsg, CorrectionsU64, MatrixMsg, ResponseMsg,
};
use crate::ot::{self, kos, CotReceiver, CotSender, SessionId};
use rand::{CryptoRng, RngCore};
use std::fmt;
use std::sync::{Arc, Mutex};
use zeroize::Zeroize;

pub use crate::gc::builder::{bands_circuit, decision_circuit, reason_index_bits, reasons_circuit};

/// Matrix chunks (2048 OTs each, 32 KiB) per message when the FI streams its extension matrix
/// ([`FiRun::start_streamed`]): small enough for the owner to start on the first part early, large enough to
/// keep the messages few.
pub const MATRIX_PART_CHUNKS: usize = 3;

/// Most attributes a run with reasons may score: the ranking costs about `140·k·n` AND gates, so this bounds
/// the garbled circuit to a few megabytes.
pub const MAX_REASON_ATTRIBUTES: usize = 256;

/// Bits of each weight the FI inputs, one extension OT each ([`fixed::WEIGHT_BITS`]).
pub const WEIGHT_BITS: usize = fixed::WEIGHT_BITS as usize;

/// What the FI adds to each weight to input it as an unsigned [`WEIGHT_BITS`]-bit number; the owner takes
/// `offset·x_i` back out of its share.
const WEIGHT_OFFSET: u64 = 1 << (WEIGHT_BITS - 1);

/// Circuits kept built for the next runs.
const CIRCUITS_KEPT: usize = 8;

/// The circuit of `reveal` over `n` attributes. Building one checks and schedules every gate (tens of milliseconds for
/// reasons over 256 attributes), and each run needs it on both sides, so the last eight built in
/// this process are kept and shared. The circuit is public and the same for every run with the same reveal
/// and attribute count (a band run's thresholds are the FI's private input, not part of it).
pub fn circuit_for(reveal: Reveal, n: usize) -> Arc<Circuit> {
    static KEPT: Mutex<Recent<(Reveal, usize), Arc<Circuit>>> = Mutex::new(Recent::new());
    let key = (reveal, n);
    if let Some(c) = KEPT.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return c;
    }
    // Built outside the lock: another thread may build the same circuit meanwhile, which only costs time.
    let c = Arc::new(reveal.circuit(n));
    KEPT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .put(key, Arc::clone(&c), CIRCUITS_KEPT);
    c
}

/// A few values by key, the most recently used first.
struct Recent<K, V>(Vec<(K, V)>);

impl<K: PartialEq, V: Clone> Recent<K, V> {
    const fn new() -> Self {
        Recent(Vec::new())
    }

    /// The value for `key`, which becomes the most recently used.
    fn get(&mut self, key: &K) -> Option<V> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        let hit = self.0.remove(i);
        let v = hit.1.clone();
        self.0.insert(0, hit);
        Some(v)
    }

    /// Keeps `value` for `key` as the most recently used, and at most `keep` values in all.
    fn put(&mut self, key: K, value: V, keep: usize) {
        self.0.retain(|(k, _)| *k != key);
        self.0.insert(0, (key, value));
        self.0.truncate(keep);
    }
}

/// The raw-score circuit: the sum of the two 64-bit shares, output to both (63 AND gates).
pub fn score_circuit() -> Circuit {
    let mut b = gc::CircuitBuilder::new();
    let owner = b.garbler_inputs(64);
    let fi = b.evaluator_inputs(64);
    let sum = b.add(&owner, &fi);
    for &bit in &sum {
        b.garbler_output(bit);
        b.evaluator_output(bit);
    }
    b.build().expect("the score circuit is well formed")
}

/// The public parameters of one run, the same on both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Binds every hash of the run (derive it from the session and the request).
    pub session: SessionId,
    /// Public bounds of each attribute, in the model's order (from the catalogue).
    pub bounds: Vec<Bounds>,
    /// What the run reveals.
    pub reveal: Reveal,
}

impl Params {
    /// Checks the parameters: `1..=MAX_ATTRIBUTES` attributes with ordered finite bounds, at most
    /// [`MAX_BAND_THRESHOLDS`] band thresholds, and for reasons `1..=4` reasons of at least as many and at
    /// most [`MAX_REASON_ATTRIBUTES`] attributes.
    pub fn validate(&self) -> Result<(), Error> {
        let n = self.bounds.len();
        if n == 0 || n > MAX_ATTRIBUTES {
            return Err(ApiMisuse::AttributeCount { got: n }.into());
        }
        for (i, b) in self.bounds.iter().enumerate() {
            if !(b.lo.is_finite() && b.hi.is_finite() && b.lo <= b.hi) {
                return Err(Error::Fixed(FixedError::EmptyBounds {
                    index: i,
                    lo: b.lo,
                    hi: b.hi,
                }));
            }
        }
        if let Reveal::DecisionReasons { k } = self.reveal {
            if !self.reveal.is_valid() || k as usize > n || n > MAX_REASON_ATTRIBUTES {
                return Err(ApiMisuse::ReasonCount { k, n }.into());
            }
        }
        if !self.reveal.is_valid() {
            return Err(ApiMisuse::BandCount {
                got: self.reveal.thresholds(),
            }
            .into());
        }
        Ok(())
    }

    /// The circuit of this run ([`Reveal::circuit`] for this run's attribute count), built once and shared by
    /// the runs that need the same one (see [`circuit_for`]).
    pub fn circuit(&self) -> Arc<Circuit> {
        circuit_for(self.reveal, self.n())
    }

    /// Number of attributes.
    pub fn n(&self) -> usize {
        self.bounds.len()
    }

    /// Extension OTs one run uses: [`WEIGHT_BITS`]`·n` for the products plus one per FI circuit input.
    pub fn ots(&self) -> usize {
        WEIGHT_BITS * self.n() + self.fi_inputs()
    }

    fn fi_inputs(&self) -> usize {
        // The FI's share, then its band thresholds (none unless the reveal is bands) or, for reasons, one
        // word per attribute.
        64 * (1 + self.reveal.thresholds() + self.per_attribute_words())
    }

    /// Words of 64 bits each side inputs per attribute besides its share: one for reasons, else none.
    fn per_attribute_words(&self) -> usize {
        match self.reveal {
            Reveal::DecisionReasons { .. } => self.n(),
            _ => 0,
        }
    }

    /// The largest message either side may receive in a run with these parameters, in bytes (for the
    /// transport's reassembly limit).
    pub fn max_message_bytes(&self) -> usize {
        let rows = kos::padded_rows(self.ots());
        let ot = (16 * rows).max(8 * WEIGHT_BITS * self.n());
        // The garbled circuit: 16 bytes per garbler input label, 64 per owner output wire, 32 per AND.
        let garbled = match self.reveal {
            Reveal::DecisionReasons { k } => {
                let (n, k) = (self.n(), k as usize);
                let b = reason_index_bits(n);
                let ands = 64 + 64 * n + k * (n * (2 * 65 + 2 * b + 2)) + k * b;
                16 * 64 * (1 + n) + 64 * (1 + k * b) + 32 * ands
            }
            _ => 0,
        };
        ot.max(garbled) + 1 + 64 * 1024
    }

    fn transcript(&self) -> Transcript {
        let mut h = blake3::Hasher::new_derive_key("duo/score/transcript/v2");
        h.update(&self.session.0);
        h.update(&(self.n() as u64).to_le_bytes());
        for b in &self.bounds {
            h.update(&b.lo.to_le_bytes());
            h.update(&b.hi.to_le_bytes());
        }
        let (kind, t) = match self.reveal {
            Reveal::Decision => (0u8, 0u64),
            Reveal::Bands { .. } => (1, self.reveal.thresholds() as u64),
            Reveal::Score => (2, 0),
            Reveal::DecisionReasons { k } => (3, u64::from(k)),
        };
        h.update(&[kind]);
        h.update(&t.to_le_bytes());
        Transcript(h)
    }
}

/// The FI's private input: an encoded model and, for [`Reveal::Bands`], its band thresholds.
#[derive(Clone, PartialEq)]
pub struct FiModel {
    model: FixedModel,
    bands: Vec<i64>,
}

impl fmt::Debug for FiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FiModel({} attributes, ..)", self.model.weights().len())
    }
}

impl FiModel {
    /// A model with band thresholds (in score units, strictly ascending; empty unless the reveal is bands).
    pub fn new(model: FixedModel, bands: &[f64]) -> Result<FiModel, Error> {
        let mut enc = Vec::with_capacity(bands.len());
        for (i, &t) in bands.iter().enumerate() {
            let e = fixed::encode(t, SCORE_FRAC_BITS, || format!("band threshold {i}"))?;
            if enc.last().is_some_and(|&prev| e <= prev) {
                return Err(ApiMisuse::BandsNotAscending { index: i }.into());
            }
            enc.push(e);
        }
        Ok(FiModel { model, bands: enc })
    }

    /// The encoded model.
    pub fn model(&self) -> &FixedModel {
        &self.model
    }

    /// The encoded band thresholds.
    pub fn bands(&self) -> &[i64] {
        &self.bands
    }

    fn check(&self, params: &Params) -> Result<(), Error> {
        if self.model.bounds() != params.bounds.as_slice() {
            return Err(ApiMisuse::ModelBounds.into());
        }
        let want = params.reveal.thresholds();
        if self.bands.len() != want {
            return Err(ApiMisuse::BandCount {
                got: self.bands.len(),
            }
            .into());
        }
        Ok(())
    }

    /// What the FI adds to its share: `bias − threshold` for a decision (with or without reasons), `bias`
    /// otherwise.
    fn offset(&self, reveal: Reveal) -> u64 {
        match reveal {
            Reveal::Decision | Reveal::DecisionReasons { .. } => self.model.decision_offset(),
            _ => self.model.bias() as u64,
        }
    }
}

/// The attributes a decline names, worst first: at most [`Reveal::MAX_REASONS`] distinct indices into the
/// model's attributes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reasons {
    len: u8,
    indices: [u16; Reveal::MAX_REASONS as usize],
}

impl Reasons {
    /// The reasons with these attribute indices, worst first; `None` for more than
    /// [`Reveal::MAX_REASONS`], an index above `u16::MAX` or an index named twice.
    pub fn new(indices: &[usize]) -> Option<Reasons> {
        if indices.len() > Reveal::MAX_REASONS as usize {
            return None;
        }
        let mut r = Reasons::default();
        for (i, &index) in indices.iter().enumerate() {
            let index = u16::try_from(index).ok()?;
            if r.indices[..i].contains(&index) {
                return None;
            }
            r.indices[i] = index;
        }
        r.len = indices.len() as u8;
        Some(r)
    }

    /// The attribute indices, worst first.
    pub fn indices(&self) -> &[u16] {
        &self.indices[..self.len as usize]
    }

    /// Whether no reason is named (an approval).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.indices()).finish()
    }
}

/// The output of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Whether the score reaches the threshold.
    Decision(bool),
    /// The band index, `0..k` for `k` bands (how many of the `k - 1` band thresholds the score reaches).
    Band(u32),
    /// The score, encoded at scale `2^32` (see [`fixed::decode_score`]).
    Score(u64),
    /// The decision and, on a decline, the attributes furthest below their best contribution, worst first
    /// (none on an approval).
    DecisionReasons {
        /// Whether the score reaches the threshold.
        approve: bool,
        /// On a decline the `k` reasons; on an approval none.
        reasons: Reasons,
    },
}

impl Outcome {
    /// The outcome of a run over `n` attributes from its decoded output bits. Reasons must be well formed:
    /// all-ones indices on an approval, `k` distinct indices below `n` on a decline (an honestly garbled
    /// circuit gives nothing else, whatever the FI inputs; a modified owner's decoding bits may).
    fn from_bits(reveal: Reveal, n: usize, bits: &[bool]) -> Result<Outcome, PeerMisbehaved> {
        Ok(match reveal {
            Reveal::Decision => Outcome::Decision(bits.first().copied().unwrap_or(false)),
            Reveal::Bands { .. } => Outcome::Band(bits_to_u64(bits) as u32),
            Reveal::Score => Outcome::Score(bits_to_u64(bits)),
            Reveal::DecisionReasons { k } => {
                let width = reason_index_bits(n);
                let approve = bits.first().copied().unwrap_or(false);
                let words: Vec<u64> = bits
                    .get(1..)
                    .unwrap_or_default()
                    .chunks(width)
                    .map(bits_to_u64)
                    .collect();
                let sentinel = (1u64 << width) - 1;
                if words.len() != k as usize {
                    return Err(PeerMisbehaved::MalformedReasons);
                }
                let reasons = if approve {
                    if words.iter().any(|&w| w != sentinel) {
                        return Err(PeerMisbehaved::MalformedReasons);
                    }
                    Reasons::default()
                } else {
                    let indices: Vec<usize> = words.iter().map(|&w| w as usize).collect();
                    if indices.iter().any(|&i| i >= n) {
                        return Err(PeerMisbehaved::MalformedReasons);
                    }
                    Reasons::new(&indices).ok_or(PeerMisbehaved::MalformedReasons)?
                };
                Outcome::DecisionReasons { approve, reasons }
            }
        })
    }
}

/// The ideal functionality: what a run must output, computed in the clear (tests, and the definition).
pub fn ideal(params: &Params, attrs: &[f64], model: &FiModel) -> Result<Outcome, Error> {
    params.validate()?;
    model.check(params)?;
    let x = encode_owner(params, attrs)?;
    let dot = x
        .iter()
        .zip(model.model.weights())
        .fold(0u64, |acc, (&x, &w)| {
            acc.wrapping_add(x.wrapping_mul(w as u64))
        });
    let sum = dot.wrapping_add(model.offset(params.reveal));
    Ok(match params.reveal {
        Reveal::Decision => Outcome::Decision(fixed::decision_of_sum(sum)),
        Reveal::Bands { .. } => Outcome::Band(fixed::band_of(sum, &model.bands)),
        Reveal::Score => Outcome::Score(sum),
        Reveal::DecisionReasons { k } => {
            let approve = fixed::decision_of_sum(sum);
            let reasons = if approve {
                Reasons::default()
            } else {
                let shortfalls = fixed::shortfalls(&model.model, &x);
                Reasons::new(&fixed::worst_reasons(&shortfalls, k as usize))
                    .expect("at most four distinct reasons")
            };
            Outcome::DecisionReasons { approve, reasons }
        }
    })
}

fn encode_owner(params: &Params, attrs: &[f64]) -> Result<Vec<u64>, Error> {
    if attrs.len() != params.n() {
        return Err(ApiMisuse::AttributeCount { got: attrs.len() }.into());
    }
    attrs
        .iter()
        .zip(&params.bounds)
        .map(|(&x, &b)| {
            fixed::encode_attribute(x, b)
                .map(|v| v as u64)
                .map_err(Error::from)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

/// Any failure of a scoring run. After an error the run is over and its extension state is gone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent something an honest peer never sends: abort and log it.
    #[error("peer misbehaved: {0}")]
    Peer(#[from] PeerMisbehaved),
    /// The caller broke the API's contract.
    #[error("API misuse: {0}")]
    Misuse(#[from] ApiMisuse),
    /// Oblivious transfer failed (a peer error or misuse inside the OT layer).
    #[error("oblivious transfer: {0}")]
    Ot(#[from] ot::Error),
    /// The garbled circuit failed (a peer error or misuse inside the GC layer).
    #[error("garbled circuit: {0}")]
    Gc(#[from] gc::Error),
    /// An input could not be encoded, or the model does not fit the headroom.
    #[error("{0}")]
    Fixed(#[from] FixedError),
    /// The channel failed (only from the drivers over a [`Channel`]).
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// The FI's side only: the owner's messages failed a check after the FI's inputs had entered the circuit
    /// (the FI's input labels or the output). Only a modified owner fails it, and whether it fails can depend
    /// on the FI's inputs, so the abort itself may tell the owner about one bit of the model: the FI should
    /// not score this owner again without its operator's decision.
    #[error(
        "{0} (after the FI's inputs entered the circuit: do not score this owner again unchecked)"
    )]
    AfterFiInputs(Box<Error>),
}

impl Error {
    /// Whether the error is the peer's doing (a bad or unexpected message), as opposed to this side's.
    pub fn is_peer(&self) -> bool {
        matches!(
            self,
            Error::Peer(_)
                | Error::Ot(ot::Error::Peer(_))
                | Error::Gc(gc::Error::Peer(_))
                | Error::Channel(_)
                | Error::AfterFiInputs(_)
        )
    }

    /// Whether the FI's run failed a check of the owner's messages after the FI's inputs entered the circuit
    /// ([`Error::AfterFiInputs`]).
    pub fn after_fi_inputs(&self) -> bool {
        matches!(self, Error::AfterFiInputs(_))
    }
}

/// Ways the peer can break a scoring run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// A message arrived that the run does not expect now (or an unknown message type).
    #[error("unexpected message {got} while waiting for {expected}")]
    Unexpected {
        /// What the run waits for.
        expected: &'static str,
        /// The type byte received (or `empty`).
        got: String,
    },
    /// A message had the wrong length.
    #[error("{what}: expected {expected} bytes, got {got}")]
    WrongLength {
        /// Which message.
        what: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The transcripts of the two sides differ: a message was changed in transit.
    #[error("the two sides saw different messages (transcript mismatch); the run is aborted")]
    TranscriptMismatch,
    /// The decoded reasons are not what the circuit can output (an approval with reasons, or a decline
    /// naming an attribute twice or one the run does not score): only the decoding bits of a modified
    /// owner give that.
    #[error("the decoded reasons are malformed (not an output of the reasons circuit)")]
    MalformedReasons,
}

/// Ways the caller can misuse the scoring API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// Attribute count outside `1..=MAX_ATTRIBUTES`, or attributes not matching the parameters.
    #[error("{got} attributes: a run takes 1 to {MAX_ATTRIBUTES}, as many as the parameters list")]
    AttributeCount {
        /// Attributes given.
        got: usize,
    },
    /// Band thresholds not matching the parameters, or too many.
    #[error("{got} band thresholds: bands need 1 to {MAX_BAND_THRESHOLDS}, as many as the parameters say")]
    BandCount {
        /// Thresholds given.
        got: usize,
    },
    /// Band thresholds must be strictly ascending.
    #[error("band threshold {index} is not above the one before it")]
    BandsNotAscending {
        /// Index of the offending threshold.
        index: usize,
    },
    /// The model's attribute bounds are not the run's public bounds.
    #[error("the model was encoded for other attribute bounds than this run's")]
    ModelBounds,
    /// Reasons outside `1..=4`, more reasons than attributes, or more attributes than a run with reasons
    /// takes.
    #[error(
        "{k} reasons of {n} attributes: a run with reasons names 1 to 4 of at most \
         {MAX_REASON_ATTRIBUTES} attributes, and no more reasons than attributes"
    )]
    ReasonCount {
        /// Reasons asked for.
        k: u32,
        /// Attributes scored.
        n: usize,
    },
}

// ---------------------------------------------------------------------------------------------------------
// Transcript
// ---------------------------------------------------------------------------------------------------------

/// The running transcript hash: BLAKE3 in key-derivation mode under a context string of this protocol.
#[derive(Clone)]
struct Transcript(blake3::Hasher);

impl Transcript {
    fn absorb(&mut self, from_owner: bool, msg: &[u8]) {
        self.0.update(&[from_owner as u8]);
        self.0.update(&(msg.len() as u64).to_le_bytes());
        self.0.update(msg);
    }

    fn value(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// What binds the output-label commitments to a run: the session id and the circuit's digest.
fn output_context(session: &SessionId, circuit: &Circuit) -> Vec<u8> {
    let mut c = session.0.to_vec();
    c.extend_from_slice(&circuit.digest());
    c
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------------------------
// Owner (garbler, extension sender)
// ---------------------------------------------------------------------------------------------------------

/// The owner's side of a run, between messages.
pub struct OwnerRun {
    params: Params,
    circuit: Arc<Circuit>,
    x: Vec<u64>,
    transcript: Transcript,
    /// The owner's base-OT message, hashed after the FI's (both messages cross; the transcript orders them).
    deferred: Option<Vec<u8>>,
    state: OwnerState,
    /// Tests only: a modified owner's deviations ([`hostile`]).
    #[cfg(test)]
    hostile: Option<std::sync::Arc<std::sync::Mutex<hostile::HostileOwner>>>,
    /// Tests only: a modified owner that runs honestly but flips these decoding bits of the FI's outputs
    /// (and confirms the transcript over what it sends).
    #[cfg(test)]
    flip_decoding: Vec<bool>,
}

enum OwnerState {
    Base(kos::SenderSetup),
    Matrix(kos::SenderExtend),
    /// The check, and the Gilboa OTs once prepared ahead ([`OwnerRun::work_ahead`]).
    Response(kos::SenderCheck, Option<ot::PreparedU64>),
    Flips {
        sender: kos::Sender,
        labels_cot: CotSender,
        pairs: EvaluatorLabelPairs,
        pending: PendingOutput,
    },
    Output {
        sender: kos::Sender,
        pending: PendingOutput,
    },
    Done,
}

impl fmt::Debug for OwnerRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerRun")
            .field("n", &self.params.n())
            .field("reveal", &self.params.reveal)
            .field("waiting_for", &self.waiting_for())
            .finish_non_exhaustive()
    }
}

impl Drop for OwnerRun {
    fn drop(&mut self) {
        self.x.zeroize();
    }
}

/// What the owner does after a message.
#[derive(Debug)]
pub enum OwnerStep {
    /// Send these messages (possibly none) and wait for the next one.
    Continue(Box<OwnerRun>, Vec<Vec<u8>>),
    /// The run is over: send these messages, and keep the extension state for a warm run.
    Done {
        /// The output.
        outcome: Outcome,
        /// Messages to send (the FI's decoding).
        send: Vec<Vec<u8>>,
        /// The extension sender, for the next run in this session.
        ot: Box<kos::Sender>,
    },
}

impl OwnerRun {
    /// Starts a run with the owner's attributes (clamped to the public bounds). With `ot` from an earlier run
    /// the base OTs are skipped (warm); without, the first message is the base-OT receiver message (cold).
    pub fn start<R: RngCore + CryptoRng + ?Sized>(
        params: &Params,
        attrs: &[f64],
        ot: Option<kos::Sender>,
        rng: &mut R,
    ) -> Result<(OwnerRun, Vec<Vec<u8>>), Error> {
        params.validate()?;
        let x = encode_owner(params, attrs)?;
        let mut run = OwnerRun {
            params: params.clone(),
            circuit: params.circuit(),
            x,
            transcript: params.transcript(),
            deferred: None,
            state: OwnerState::Done,
            #[cfg(test)]
            hostile: None,
            #[cfg(test)]
            flip_decoding: Vec::new(),
        };
        let mut out = Vec::new();
        run.state = match ot {
            Some(sender) => {
                OwnerState::Matrix(sender.for_run(&params.session).extend(params.ots())?)
            }
            None => {
                let (setup, msg) = kos::Sender::setup(params.session, rng)?;
                let msg = msgs::frame(Tag::BaseReceiver, msg.to_bytes());
                run.deferred = Some(msg.clone());
                out.push(msg);
                OwnerState::Base(setup)
            }
        };
        Ok((run, out))
    }

    /// The message the run waits for.
    pub fn waiting_for(&self) -> &'static str {
        match self.state {
            OwnerState::Base(_) => "the FI's base-OT message",
            OwnerState::Matrix(_) => "the FI's extension matrix",
            OwnerState::Response(..) => "the FI's consistency-check response",
            OwnerState::Flips { .. } => "the FI's input flips",
            OwnerState::Output { .. } => "the FI's output labels",
            OwnerState::Done => "nothing",
        }
    }

    fn send(&mut self, tag: Tag, body: Vec<u8>) -> Vec<u8> {
        let msg = msgs::frame(tag, body);
        if tag != Tag::Matrix {
            self.transcript.absorb(true, &msg);
        }
        msg
    }

    /// Does the work that does not depend on the FI's next message (after the challenge: the OT extension's
    /// matrix transposition and check hashes, then the Gilboa OTs' corrections, none of which is sent before
    /// the check passes), so that it runs while the FI computes. Call it after sending the messages of a step;
    /// optional ([`OwnerRun::handle`] does what was left).
    pub fn work_ahead(&mut self) {
        #[cfg(test)]
        if self.hostile.is_some() {
            // A modified owner changes its inputs when the response arrives.
            return;
        }
        if let OwnerState::Response(check, prepared @ None) = &mut self.state {
            // Preparing cannot fail on this run's own extension; should it, `handle` reports it.
            *prepared = gilboa_prepare(check, &self.x).ok();
        }
    }

    /// Takes the FI's next message.
    pub fn handle<R: RngCore + CryptoRng + ?Sized>(
        mut self,
        msg: Vec<u8>,
        rng: &mut R,
    ) -> Result<OwnerStep, Error> {
        let state = std::mem::replace(&mut self.state, OwnerState::Done);
        let expected = match &state {
            OwnerState::Base(_) => Tag::BaseSender,
            OwnerState::Matrix(_) => Tag::Matrix,
            OwnerState::Response(..) => Tag::Response,
            OwnerState::Flips { .. } => Tag::Flips,
            OwnerState::Output { .. } => Tag::OutputLabels,
            OwnerState::Done => return Err(msgs::unexpected("nothing", &msg).into()),
        };
        msgs::expect(&msg, expected)?;
        let before = self.transcript.value();
        if expected != Tag::Matrix {
            self.transcript.absorb(false, &msg);
        }
        let body = msgs::body(msg);
        if let Some(mine) = self.deferred.take() {
            self.transcript.absorb(true, &mine);
        }
        let mut out = Vec::new();
        match state {
            OwnerState::Base(setup) => {
                let a = BaseSenderMsg::from_bytes(&body).map_err(ot::Error::from)?;
                let sender = setup.finish(&a).for_run(&self.params.session);
                self.state = OwnerState::Matrix(sender.extend(self.params.ots())?);
            }
            OwnerState::Matrix(ext) => {
                // The matrix whole or in parts of whole chunks ([`FiRun::start_streamed`]); each part but the
                // last is absorbed at once, while the FI makes the next.
                let u = MatrixMsg::from_bytes(body).map_err(ot::Error::from)?;
                match ext.receive_part(u, rng)? {
                    kos::SenderPart::More(ext) => self.state = OwnerState::Matrix(ext),
                    kos::SenderPart::Complete(check, challenge) => {
                        out.push(self.send(Tag::Challenge, challenge.to_bytes()));
                        // The check's heavy part waits for `work_ahead`, so the challenge leaves at once.
                        self.state = OwnerState::Response(check, None);
                    }
                }
            }
            OwnerState::Response(mut check, prepared) => {
                let resp = ResponseMsg::from_bytes(&body).map_err(ot::Error::from)?;
                #[cfg(test)]
                if let Some(h) = self.hostile.clone() {
                    h.lock().unwrap().gilboa_inputs(&mut self.x);
                }
                let prepared = match prepared {
                    Some(prepared) => prepared,
                    None => gilboa_prepare(&mut check, &self.x)?,
                };
                let (mut sender, cot) = check.receive_response(&resp)?;
                let (products, labels_cot) = cot.split_at(WEIGHT_BITS * self.params.n())?;
                let (mut sums, corrections) = prepared.send(&products)?;
                // The buffer of Q_j serves the next extension.
                sender.recycle(products);
                // The FI's sum for attribute i is u_i + (w_i + offset)·x_i, where -u_i is the sum of the
                // owner's outputs of its OTs; so the owner's share of w_i·x_i is -u_i - offset·x_i.
                for (sum, &x) in sums.iter_mut().zip(&self.x) {
                    *sum = 0u64
                        .wrapping_sub(*sum)
                        .wrapping_sub(x.wrapping_mul(WEIGHT_OFFSET));
                }
                let share = sums.iter().fold(0u64, |acc, &p| acc.wrapping_add(p));
                let mut share_bits = u64_to_bits(share, 64);
                if self.params.per_attribute_words() > 0 {
                    // Reasons: the owner's share of each attribute's contribution too.
                    for &term in &sums {
                        share_bits.extend(u64_to_bits(term, 64));
                    }
                }
                sums.zeroize();
                out.push(self.send(Tag::Corrections, corrections.into_bytes()));
                let mut garbler = Garbler::new(Delta::random(rng));
                #[allow(unused_mut)]
                let mut g = garbler.garble(&self.circuit, &share_bits, rng)?;
                share_bits.zeroize();
                #[cfg(test)]
                if let Some(h) = &self.hostile {
                    h.lock().unwrap().garbled(&mut g, share, rng);
                }
                let commitments = g
                    .pending
                    .commitments(&output_context(&self.params.session, &self.circuit));
                let garbled = msgs::encode_garbled(&g.header, &commitments, &g.tables);
                out.push(self.send(Tag::Garbled, garbled));
                self.state = OwnerState::Flips {
                    sender,
                    labels_cot,
                    pairs: g.evaluator_labels,
                    pending: g.pending,
                };
            }
            OwnerState::Flips {
                sender,
                labels_cot,
                pairs,
                pending,
            } => {
                let flips = msgs::decode_bits(&body, pairs.len(), "input flips")?;
                let chosen: Vec<[Block; 2]> = flips
                    .iter()
                    .enumerate()
                    .map(|(i, &flip)| {
                        let (l0, l1) = pairs.pair(i);
                        // Swap the pair where the flip is 1, without branching on it.
                        let d = (l0 ^ l1).and_bit(flip);
                        [l0 ^ d, l1 ^ d]
                    })
                    .collect();
                let c = labels_cot.send_chosen(&chosen)?;
                out.push(self.send(Tag::Labels, c.to_bytes()));
                self.state = OwnerState::Output { sender, pending };
            }
            OwnerState::Output { sender, pending } => {
                let (labels, fi_hash) = msgs::decode_output_labels(&body, &self.circuit)?;
                // The FI hashed everything before its own message, as `before` does here.
                if !ct_eq(&fi_hash, &before) {
                    return Err(PeerMisbehaved::TranscriptMismatch.into());
                }
                #[cfg(test)]
                if let Some(h) = self.hostile.clone() {
                    // The modified owner keeps the label and sends the decoding bits it likes.
                    let (outcome, bits) = h.lock().unwrap().output(&labels);
                    drop(pending);
                    return Ok(self.finish(outcome, &bits, out, sender));
                }
                let accepted = pending.check(&labels)?;
                let outcome = Outcome::from_bits(
                    self.params.reveal,
                    self.params.n(),
                    &accepted.garbler_outputs,
                )?;
                #[allow(unused_mut)]
                let mut bits = accepted.decoding.bits.clone();
                #[cfg(test)]
                for (b, f) in bits.iter_mut().zip(&self.flip_decoding) {
                    *b ^= f;
                }
                return Ok(self.finish(outcome, &bits, out, sender));
            }
            OwnerState::Done => {}
        }
        Ok(OwnerStep::Continue(Box::new(self), out))
    }

    /// The last step: the FI's decoding bits with the transcript tag over them.
    fn finish(
        &self,
        outcome: Outcome,
        bits: &[bool],
        mut out: Vec<Vec<u8>>,
        sender: kos::Sender,
    ) -> OwnerStep {
        let decoding = msgs::encode_bits(bits);
        let mut confirm = self.transcript.clone();
        confirm.absorb(true, &msgs::frame(Tag::Decoding, decoding.clone()));
        let mut body = decoding;
        body.extend_from_slice(&confirm.value());
        out.push(msgs::frame(Tag::Decoding, body));
        OwnerStep::Done {
            outcome,
            send: out,
            ot: Box::new(sender),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// FI (evaluator, extension receiver)
// ---------------------------------------------------------------------------------------------------------

/// The FI's side of a run, between messages.
pub struct FiRun {
    /// Matrix chunks per message: [`MATRIX_PART_CHUNKS`] when streamed, all of them otherwise.
    part_chunks: usize,
    params: Params,
    circuit: Arc<Circuit>,
    model: FiModel,
    transcript: Transcript,
    state: FiState,
}

enum FiState {
    Base {
        setup: kos::ReceiverSetup,
        choices: Vec<bool>,
    },
    /// Sending the matrix in parts ([`FiRun::next_out`]).
    Matrix(kos::ReceiverParts),
    Challenge(kos::ReceiverExtend),
    Corrections {
        receiver: kos::Receiver,
        ots: FiOts,
    },
    Garbled {
        receiver: kos::Receiver,
        labels_cot: CotReceiver,
        inputs: Vec<bool>,
    },
    Labels {
        receiver: kos::Receiver,
        labels_cot: CotReceiver,
        header: GarbledHeader,
        commitments: OutputCommitments,
        tables: GarbledTables,
    },
    Decoding {
        receiver: kos::Receiver,
        awaiting: AwaitingDecoding,
    },
    Done,
}

/// Gilboa's correlated OTs prepared on the extension `check` will give: OT `(i, j)` carries `x_i·2^j`, and the
/// owner's outputs are summed per attribute.
fn gilboa_prepare(check: &mut kos::SenderCheck, x: &[u64]) -> Result<ot::PreparedU64, Error> {
    Ok(check.prepare_shifted_u64(x, WEIGHT_BITS)?)
}

/// The FI's correlated OTs while it waits for the owner's corrections.
enum FiOts {
    /// As the extension gave them.
    Batch(CotReceiver),
    /// Hashed ahead ([`FiRun::work_ahead`]): the Gilboa OTs' pads, and the OTs for the circuit's inputs.
    Hashed {
        products: ot::ReceiverPadsU64,
        labels_cot: CotReceiver,
    },
}

impl FiOts {
    /// Hashes the Gilboa OTs (the first `products` of the batch) if that is not done, handing their buffers
    /// back to `receiver` for its next extension.
    fn hash(
        self,
        receiver: &mut kos::Receiver,
        products: usize,
    ) -> Result<(ot::ReceiverPadsU64, CotReceiver), Error> {
        match self {
            FiOts::Batch(cot) => {
                let (batch, labels_cot) = cot.split_at(products)?;
                let products = batch.pads_u64(products);
                receiver.recycle(batch);
                Ok((products, labels_cot))
            }
            FiOts::Hashed {
                products,
                labels_cot,
            } => Ok((products, labels_cot)),
        }
    }
}

impl fmt::Debug for FiRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FiRun")
            .field("n", &self.params.n())
            .field("reveal", &self.params.reveal)
            .field("waiting_for", &self.waiting_for())
            .finish_non_exhaustive()
    }
}

/// What the FI does after a message.
#[derive(Debug)]
pub enum FiStep {
    /// Send these messages (possibly none) and wait for the next one.
    Continue(Box<FiRun>, Vec<Vec<u8>>),
    /// The run is over; keep the extension state for a warm run.
    Done {
        /// The output.
        outcome: Outcome,
        /// The extension receiver, for the next run in this session.
        ot: kos::Receiver,
    },
}

impl FiRun {
    /// Starts a run with the FI's model. With `ot` from an earlier run the base OTs are skipped (warm) and the
    /// first message is the extension matrix; without, it is the base-OT sender message (cold).
    pub fn start<R: RngCore + CryptoRng + ?Sized>(
        params: &Params,
        model: &FiModel,
        ot: Option<kos::Receiver>,
        rng: &mut R,
    ) -> Result<(FiRun, Vec<Vec<u8>>), Error> {
        Self::start_with(params, model, ot, usize::MAX, rng)
    }

    /// [`FiRun::start`], the extension matrix streamed: the messages returned (and those of
    /// [`FiRun::handle`]) hold at most its first [`MATRIX_PART_CHUNKS`] chunks, and [`FiRun::next_out`] makes
    /// the rest one part at a time, so that the owner absorbs each part while the FI makes the next. The
    /// caller must send every message `next_out` gives before it waits for the owner.
    pub fn start_streamed<R: RngCore + CryptoRng + ?Sized>(
        params: &Params,
        model: &FiModel,
        ot: Option<kos::Receiver>,
        rng: &mut R,
    ) -> Result<(FiRun, Vec<Vec<u8>>), Error> {
        Self::start_with(params, model, ot, MATRIX_PART_CHUNKS, rng)
    }

    fn start_with<R: RngCore + CryptoRng + ?Sized>(
        params: &Params,
        model: &FiModel,
        ot: Option<kos::Receiver>,
        part_chunks: usize,
        rng: &mut R,
    ) -> Result<(FiRun, Vec<Vec<u8>>), Error> {
        params.validate()?;
        model.check(params)?;
        // Choices: the bits of every weight (LSB first), then random bits for the circuit-input OTs.
        let mut choices = Vec::with_capacity(params.ots());
        for &w in model.model.weights() {
            choices.extend(u64_to_bits(
                (w as u64).wrapping_add(WEIGHT_OFFSET),
                WEIGHT_BITS,
            ));
        }
        let mut random = vec![0u8; params.fi_inputs().div_ceil(8)];
        rng.fill_bytes(&mut random);
        choices.extend((0..params.fi_inputs()).map(|i| (random[i / 8] >> (i % 8)) & 1 == 1));
        random.zeroize();
        let mut run = FiRun {
            part_chunks,
            params: params.clone(),
            circuit: params.circuit(),
            model: model.clone(),
            transcript: params.transcript(),
            state: FiState::Done,
        };
        let mut out = Vec::new();
        run.state = match ot {
            Some(receiver) => {
                let parts = receiver
                    .for_run(&params.session)
                    .extend_in_parts(&choices, rng)?;
                choices.zeroize();
                run.first_part(parts, &mut out)?
            }
            None => {
                let (setup, msg) = kos::Receiver::setup(params.session, rng)?;
                out.push(run.send(Tag::BaseSender, msg.to_bytes()));
                FiState::Base { setup, choices }
            }
        };
        Ok((run, out))
    }

    /// The message the run waits for.
    pub fn waiting_for(&self) -> &'static str {
        match self.state {
            FiState::Base { .. } => "the owner's base-OT message",
            FiState::Matrix(_) => "its own matrix to be sent",
            FiState::Challenge(_) => "the owner's challenge",
            FiState::Corrections { .. } => "the owner's product corrections",
            FiState::Garbled { .. } => "the owner's garbled circuit",
            FiState::Labels { .. } => "the owner's input labels",
            FiState::Decoding { .. } => "the owner's output decoding",
            FiState::Done => "nothing",
        }
    }

    /// The first part of the matrix into `out` (all of it unless streamed), and the state after it.
    fn first_part(
        &mut self,
        mut parts: kos::ReceiverParts,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<FiState, Error> {
        if let Some(part) = parts.next_part(self.part_chunks) {
            out.push(self.send(Tag::Matrix, part.into_bytes()));
        }
        Self::after_part(parts)
    }

    /// `Matrix` while parts remain, then `Challenge`.
    fn after_part(parts: kos::ReceiverParts) -> Result<FiState, Error> {
        Ok(if parts.remaining() {
            FiState::Matrix(parts)
        } else {
            FiState::Challenge(parts.finish()?)
        })
    }

    /// The next message to send before waiting for the owner, if any: the next part of a streamed matrix
    /// ([`FiRun::start_streamed`]). Call it until it gives `None`.
    pub fn next_out(&mut self) -> Option<Vec<u8>> {
        let FiState::Matrix(parts) = &mut self.state else {
            return None;
        };
        let part = parts.next_part(self.part_chunks)?;
        let msg = self.send(Tag::Matrix, part.into_bytes());
        if let FiState::Matrix(parts) = std::mem::replace(&mut self.state, FiState::Done) {
            // `finish` cannot fail once every part is out; should it, the run is left `Done` and ends there.
            if let Ok(next) = Self::after_part(parts) {
                self.state = next;
            }
        }
        Some(msg)
    }

    /// Does the work that does not depend on the owner's next message (after the check response: the hashes of
    /// the Gilboa OTs), so that it runs while the owner computes. Call it after sending the messages of a step;
    /// optional ([`FiRun::handle`] does what was left).
    pub fn work_ahead(&mut self) {
        if let FiState::Corrections { receiver, ots } = &mut self.state {
            if let FiOts::Batch(_) = ots {
                let batch = std::mem::replace(
                    ots,
                    FiOts::Batch(CotReceiver::new(Vec::new(), Vec::new(), 0)),
                );
                // Splitting a batch this run made cannot fail; should it, `handle` reports the empty batch left.
                if let Ok((products, labels_cot)) =
                    batch.hash(receiver, WEIGHT_BITS * self.params.n())
                {
                    *ots = FiOts::Hashed {
                        products,
                        labels_cot,
                    };
                }
            }
        }
    }

    fn send(&mut self, tag: Tag, body: Vec<u8>) -> Vec<u8> {
        let msg = msgs::frame(tag, body);
        if tag != Tag::Matrix {
            self.transcript.absorb(false, &msg);
        }
        msg
    }

    /// Takes the owner's next message. A peer error once the FI's inputs are in the circuit (at the input
    /// labels or later) is an [`Error::AfterFiInputs`].
    pub fn handle<R: RngCore + CryptoRng + ?Sized>(
        self,
        msg: Vec<u8>,
        rng: &mut R,
    ) -> Result<FiStep, Error> {
        let inputs_in = matches!(
            self.state,
            FiState::Labels { .. } | FiState::Decoding { .. }
        );
        self.step(msg, rng).map_err(|e| {
            if inputs_in && e.is_peer() {
                Error::AfterFiInputs(Box::new(e))
            } else {
                e
            }
        })
    }

    fn step<R: RngCore + CryptoRng + ?Sized>(
        mut self,
        msg: Vec<u8>,
        rng: &mut R,
    ) -> Result<FiStep, Error> {
        let state = std::mem::replace(&mut self.state, FiState::Done);
        let expected = match &state {
            FiState::Base { .. } => Tag::BaseReceiver,
            FiState::Matrix(_) => return Err(Error::Ot(ot::ApiMisuse::MatrixNotSent.into())),
            FiState::Challenge(_) => Tag::Challenge,
            FiState::Corrections { .. } => Tag::Corrections,
            FiState::Garbled { .. } => Tag::Garbled,
            FiState::Labels { .. } => Tag::Labels,
            FiState::Decoding { .. } => Tag::Decoding,
            FiState::Done => return Err(msgs::unexpected("nothing", &msg).into()),
        };
        msgs::expect(&msg, expected)?;
        if expected != Tag::Decoding {
            self.transcript.absorb(true, &msg);
        }
        let body = msgs::body(msg);
        let mut out = Vec::new();
        match state {
            FiState::Base { setup, mut choices } => {
                let pairs = BaseReceiverMsg::from_bytes(&body).map_err(ot::Error::from)?;
                let receiver = setup.finish(&pairs)?.for_run(&self.params.session);
                let parts = receiver.extend_in_parts(&choices, rng)?;
                choices.zeroize();
                self.state = self.first_part(parts, &mut out)?;
            }
            FiState::Challenge(ext) => {
                let challenge = ChallengeMsg::from_bytes(&body).map_err(ot::Error::from)?;
                let (receiver, resp, cot) = ext.receive_challenge(&challenge);
                out.push(self.send(Tag::Response, resp.to_bytes()));
                self.state = FiState::Corrections {
                    receiver,
                    ots: FiOts::Batch(cot),
                };
            }
            FiState::Corrections { mut receiver, ots } => {
                let corrections = CorrectionsU64::from_vec(body).map_err(ot::Error::from)?;
                let (products, labels_cot) =
                    ots.hash(&mut receiver, WEIGHT_BITS * self.params.n())?;
                // The sum of attribute i's OTs' outputs: u_i + (w_i + offset)·x_i, the FI's share of w_i·x_i
                // (the owner takes the offset out of its own).
                let mut got = products.receive_sums_u64(&corrections, WEIGHT_BITS)?;
                let share = got
                    .iter()
                    .fold(self.model.offset(self.params.reveal), |acc, &v| {
                        acc.wrapping_add(v)
                    });
                let mut inputs = u64_to_bits(share, 64);
                for &t in &self.model.bands {
                    inputs.extend(u64_to_bits(t as u64, 64));
                }
                if self.params.per_attribute_words() > 0 {
                    // Reasons: best_i minus the FI's share of w_i x_i, for each attribute.
                    let best = fixed::best_contributions(&self.model.model);
                    for (&term, best) in got.iter().zip(best) {
                        inputs.extend(u64_to_bits(best.wrapping_sub(term), 64));
                    }
                }
                got.zeroize();
                self.state = FiState::Garbled {
                    receiver,
                    labels_cot,
                    inputs,
                };
            }
            FiState::Garbled {
                receiver,
                labels_cot,
                mut inputs,
            } => {
                let msgs::Garbled {
                    header,
                    commitments,
                    tables,
                } = msgs::decode_garbled(&body, &self.circuit)?;
                let flips: Vec<bool> = inputs
                    .iter()
                    .zip(labels_cot.choices())
                    .map(|(&c, &r)| c ^ r)
                    .collect();
                inputs.zeroize();
                out.push(self.send(Tag::Flips, msgs::encode_bits(&flips)));
                self.state = FiState::Labels {
                    receiver,
                    labels_cot,
                    header,
                    commitments,
                    tables,
                };
            }
            FiState::Labels {
                receiver,
                labels_cot,
                header,
                commitments,
                tables,
            } => {
                let c = ChosenMsg::from_bytes(&body).map_err(ot::Error::from)?;
                let labels = labels_cot.receive_chosen(&c)?;
                let (output, awaiting) =
                    Evaluator::new().evaluate(&self.circuit, &header, &tables, &labels)?;
                // Only a label the owner committed to leaves this side: any other could encode the FI's
                // inputs.
                commitments.check(
                    &output_context(&self.params.session, &self.circuit),
                    &output,
                )?;
                let hash = self.transcript.value();
                let body = msgs::encode_output_labels(&output, &hash);
                out.push(self.send(Tag::OutputLabels, body));
                self.state = FiState::Decoding { receiver, awaiting };
            }
            FiState::Decoding { receiver, awaiting } => {
                let (bits, tag) =
                    msgs::decode_decoding(&body, self.circuit.evaluator_outputs().len())?;
                let mut confirm = self.transcript.clone();
                confirm.absorb(true, &msgs::frame(Tag::Decoding, msgs::encode_bits(&bits)));
                if !ct_eq(&tag, &confirm.value()) {
                    return Err(PeerMisbehaved::TranscriptMismatch.into());
                }
                let decoded = awaiting.decode(&OutputDecoding {
                    circuit_digest: self.circuit.digest(),
                    bits,
                })?;
                let outcome = Outcome::from_bits(self.params.reveal, self.params.n(), &decoded)?;
                return Ok(FiStep::Done {
                    outcome,
                    ot: receiver,
                });
            }
            FiState::Matrix(_) | FiState::Done => {}
        }
        Ok(FiStep::Continue(Box::new(self), out))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Drivers over a channel (tests, benches)
// ---------------------------------------------------------------------------------------------------------

/// Runs the owner's side over `ch`; returns the outcome and the extension state for a warm run.
pub fn owner_over<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    params: &Params,
    attrs: &[f64],
    ot: Option<kos::Sender>,
    rng: &mut R,
) -> Result<(Outcome, kos::Sender), Error> {
    let (mut run, out) = OwnerRun::start(params, attrs, ot, rng)?;
    for m in out {
        ch.send(m)?;
    }
    loop {
        match run.handle(ch.recv()?, rng)? {
            OwnerStep::Continue(next, out) => {
                for m in out {
                    ch.send(m)?;
                }
                run = *next;
                run.work_ahead();
            }
            OwnerStep::Done { outcome, send, ot } => {
                for m in send {
                    ch.send(m)?;
                }
                return Ok((outcome, *ot));
            }
        }
    }
}

/// Runs the FI's side over `ch`; returns the outcome and the extension state for a warm run.
pub fn fi_over<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    params: &Params,
    model: &FiModel,
    ot: Option<kos::Receiver>,
    rng: &mut R,
) -> Result<(Outcome, kos::Receiver), Error> {
    let (mut run, out) = FiRun::start_streamed(params, model, ot, rng)?;
    for m in out {
        ch.send(m)?;
    }
    while let Some(m) = run.next_out() {
        ch.send(m)?;
    }
    loop {
        match run.handle(ch.recv()?, rng)? {
            FiStep::Continue(next, out) => {
                for m in out {
                    ch.send(m)?;
                }
                run = *next;
                while let Some(m) = run.next_out() {
                    ch.send(m)?;
                }
                run.work_ahead();
            }
            FiStep::Done { outcome, ot } => return Ok((outcome, ot)),
        }
    }
}
