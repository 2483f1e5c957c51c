//! The garbler (the owner): half-gates garbling with free-XOR, and the check of the evaluator's output labels.

use super::circuit::{run_linear, Circuit, Step, SHARED};
use super::hash::{aes_u128, gate_tweaks, to_aes_u128, AesBlock, Tccr};
use super::{
    ApiMisuse, Error, GarbledHeader, GarbledTables, OutputDecoding, OutputLabels, PeerMisbehaved,
};
use crate::block::Block;
use rand::RngCore;
use std::fmt;
use zeroize::Zeroize;

pub(crate) use super::circuit::BATCH;

/// The free-XOR offset `Δ`: the one label of every wire is its zero label `⊕ Δ`. Its least significant bit is 1,
/// so the two labels of a wire have different point-and-permute bits. Secret; not `Clone`, so that a `Δ` is
/// moved into exactly one [`Garbler`], which owns the tweak counter for it. Zeroized on drop.
pub struct Delta(Block);

impl Delta {
    /// A `Δ` from a block (e.g. the owner's OT-extension correlation); refused unless its lsb is 1.
    pub fn new(block: Block) -> Result<Delta, Error> {
        if block.lsb() {
            Ok(Delta(block))
        } else {
            Err(ApiMisuse::DeltaLsbZero.into())
        }
    }

    /// A uniformly random `Δ` with lsb 1.
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Delta {
        Delta(Block(Block::random(rng).0 | 1))
    }

    /// The block (to set up the correlated OTs that deliver the evaluator's labels).
    pub fn block(&self) -> Block {
        self.0
    }
}

impl Drop for Delta {
    fn drop(&mut self) {
        self.0 .0.zeroize();
    }
}

impl fmt::Debug for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Delta(..)")
    }
}

/// The garbling side of a session: `Δ` and the gate counter that numbers AND gates (hence tweaks) across every
/// circuit garbled under this `Δ`. Keep one `Garbler` for as long as its `Δ` is in use (several circuits in one
/// session, warm runs reusing OT-extension state): a fresh `Garbler` would restart the counter and reuse tweaks.
pub struct Garbler {
    delta: Delta,
    next_gate: u64,
    hash: Tccr,
    /// Wire labels, reused across garblings (no page faults per call); zeroized on drop.
    labels: Vec<Block>,
}

impl Drop for Garbler {
    fn drop(&mut self) {
        for l in self.labels.iter_mut() {
            l.0.zeroize();
        }
    }
}

impl fmt::Debug for Garbler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Garbler")
            .field("next_gate", &self.next_gate)
            .finish_non_exhaustive()
    }
}

/// What garbling produces: the messages for the evaluator, the evaluator's label pairs (for OT), and the
/// garbler's state awaiting the evaluator's output labels.
#[derive(Debug)]
pub struct Garbling {
    /// To the evaluator: circuit digest, tweak base, and the garbler's own input labels.
    pub header: GarbledHeader,
    /// To the evaluator: the garbled tables (32 bytes per AND gate), chunkable.
    pub tables: GarbledTables,
    /// The evaluator's input label pairs, to be delivered by oblivious transfer. Secret.
    pub evaluator_labels: EvaluatorLabelPairs,
    /// The garbler's state until the evaluator returns the garbler's output labels.
    pub pending: PendingOutput,
}

/// The two labels of each evaluator input wire (`zero`, `zero ⊕ Δ`). Secret: the evaluator must get exactly one
/// of each pair, by OT. Zeroized on drop.
pub struct EvaluatorLabelPairs {
    zero: Vec<Block>,
    delta: Block,
}

impl EvaluatorLabelPairs {
    /// Number of evaluator input wires.
    pub fn len(&self) -> usize {
        self.zero.len()
    }

    /// Whether the evaluator has no inputs.
    pub fn is_empty(&self) -> bool {
        self.zero.is_empty()
    }

    /// The pair `(label of 0, label of 1)` of evaluator input `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn pair(&self, i: usize) -> (Block, Block) {
        (self.zero[i], self.zero[i] ^ self.delta)
    }

    /// The labels for the given input bits: the ideal OT, for tests and for the trusted-party version.
    ///
    /// # Panics
    /// If `bits` has the wrong length.
    pub fn select(&self, bits: &[bool]) -> Vec<Block> {
        assert_eq!(bits.len(), self.zero.len(), "select: wrong number of bits");
        self.zero
            .iter()
            .zip(bits)
            .map(|(&z, &b)| z ^ self.delta.and_bit(b))
            .collect()
    }
}

impl Drop for EvaluatorLabelPairs {
    fn drop(&mut self) {
        for z in self.zero.iter_mut() {
            z.0.zeroize();
        }
        self.delta.0.zeroize();
    }
}

impl fmt::Debug for EvaluatorLabelPairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EvaluatorLabelPairs({} pairs, ..)", self.zero.len())
    }
}

/// The garbler after garbling, waiting for the evaluator's [`OutputLabels`]. Holds the zero labels of the
/// garbler's output wires, `Δ`, and the decoding bits of the evaluator's outputs. Zeroized on drop.
pub struct PendingOutput {
    digest: [u8; 32],
    garbler_zero: Vec<Block>,
    evaluator_decoding: Vec<bool>,
    delta: Block,
}

impl fmt::Debug for PendingOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PendingOutput({} garbler outputs, {} evaluator outputs, ..)",
            self.garbler_zero.len(),
            self.evaluator_decoding.len()
        )
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        for z in self.garbler_zero.iter_mut() {
            z.0.zeroize();
        }
        self.evaluator_decoding.zeroize();
        self.delta.0.zeroize();
    }
}

/// The garbler's result once the evaluator's output labels are accepted.
#[derive(Debug)]
pub struct AcceptedOutput {
    /// The garbler's output bits, in [`Circuit::garbler_outputs`] order.
    pub garbler_outputs: Vec<bool>,
    /// To the evaluator: the decoding bits of its outputs, sent only now.
    pub decoding: OutputDecoding,
}

impl PendingOutput {
    /// The commitments to both labels of every garbler output wire, sent with the garbled circuit
    /// ([`super::commit`]); `context` binds them to the run (the session id and the circuit digest).
    pub fn commitments(&self, context: &[u8]) -> super::OutputCommitments {
        super::OutputCommitments::of(context, &self.garbler_zero, self.delta)
    }

    /// Checks the evaluator's labels for the garbler's output wires. Each must be exactly one of that wire's
    /// two labels; anything else (a label the circuit did not compute, a wrong count, another circuit) is
    /// refused and the run must abort. Only on success does the garbler learn its outputs and release the
    /// evaluator's decoding bits. Consumes the state: one answer per garbling.
    pub fn check(self, labels: &OutputLabels) -> Result<AcceptedOutput, Error> {
        if labels.circuit_digest != self.digest {
            return Err(PeerMisbehaved::CircuitMismatch.into());
        }
        if labels.labels.len() != self.garbler_zero.len() {
            return Err(PeerMisbehaved::OutputLabelCount {
                expected: self.garbler_zero.len(),
                got: labels.labels.len(),
            }
            .into());
        }
        let mut outputs = Vec::with_capacity(self.garbler_zero.len());
        let mut bad: Option<usize> = None;
        for (i, (&got, &zero)) in labels.labels.iter().zip(&self.garbler_zero).enumerate() {
            let d = (got ^ zero).0;
            let is_zero = ct_is_zero(d);
            let is_one = ct_is_zero(d ^ self.delta.0);
            if !(is_zero | is_one) && bad.is_none() {
                bad = Some(i);
            }
            outputs.push(is_one);
        }
        if let Some(index) = bad {
            return Err(PeerMisbehaved::InvalidOutputLabel { index }.into());
        }
        Ok(AcceptedOutput {
            garbler_outputs: outputs,
            decoding: OutputDecoding {
                circuit_digest: self.digest,
                bits: self.evaluator_decoding.clone(),
            },
        })
    }
}

/// `x == 0`, computed without a data-dependent branch.
#[inline]
fn ct_is_zero(x: u128) -> bool {
    let folded = (x as u64) | ((x >> 64) as u64);
    // (folded | -folded) has its top bit set iff folded != 0.
    ((folded | folded.wrapping_neg()) >> 63) == 0
}

impl Garbler {
    /// A garbler for a fresh session under `delta`, its gate counter at 0.
    pub fn new(delta: Delta) -> Garbler {
        Garbler {
            delta,
            next_gate: 0,
            hash: Tccr::new(),
            labels: Vec::new(),
        }
    }

    /// `Δ` (for the correlated OTs that deliver the evaluator's labels).
    pub fn delta(&self) -> Block {
        self.delta.0
    }

    /// Number of AND gates garbled so far under this `Δ` (the next gate's number).
    pub fn gates_garbled(&self) -> u64 {
        self.next_gate
    }

    /// Garbles `circuit` with the garbler's input bits; the evaluator's zero labels are drawn at random.
    pub fn garble<R: RngCore + ?Sized>(
        &mut self,
        circuit: &Circuit,
        garbler_inputs: &[bool],
        rng: &mut R,
    ) -> Result<Garbling, Error> {
        let zero: Vec<Block> = (0..circuit.evaluator_inputs().len())
            .map(|_| Block::random(rng))
            .collect();
        self.garble_with_evaluator_labels(circuit, garbler_inputs, zero, rng)
    }

    /// Garbles `circuit` with the evaluator's zero labels given (from correlated OT with correlation `Δ`:
    /// the evaluator's labels are then already in its hands, and the returned pairs are for reference).
    pub fn garble_with_evaluator_labels<R: RngCore + ?Sized>(
        &mut self,
        circuit: &Circuit,
        garbler_inputs: &[bool],
        evaluator_zero: Vec<Block>,
        rng: &mut R,
    ) -> Result<Garbling, Error> {
        // The rows are written in place: no chunk buffer, no copy.
        let mut tables = vec![0u8; circuit.table_bytes()];
        let s = self.garble_rows(
            circuit,
            garbler_inputs,
            evaluator_zero,
            rng,
            &mut tables,
            |_| {},
        )?;
        Ok(Garbling {
            header: s.header,
            tables: GarbledTables::from_vec_unchecked(tables),
            evaluator_labels: s.evaluator_labels,
            pending: s.pending,
        })
    }

    /// Garbles `circuit` and hands the tables to `sink` in order, in chunks of whole gates of at most
    /// [`STREAM_CHUNK`] bytes, as they are produced: the tables of a large circuit never need to be held in
    /// memory. Concatenated, the chunks are the [`GarbledTables`] of [`Garbler::garble_with_evaluator_labels`].
    pub fn garble_streaming<R: RngCore + ?Sized>(
        &mut self,
        circuit: &Circuit,
        garbler_inputs: &[bool],
        evaluator_zero: Vec<Block>,
        rng: &mut R,
        sink: impl FnMut(&[u8]),
    ) -> Result<StreamedGarbling, Error> {
        let mut out = vec![0u8; STREAM_CHUNK];
        self.garble_rows(circuit, garbler_inputs, evaluator_zero, rng, &mut out, sink)
    }

    /// Garbles into `out` (whole gates), handing it to `sink` each time it is full and at the end.
    fn garble_rows<R: RngCore + ?Sized>(
        &mut self,
        circuit: &Circuit,
        garbler_inputs: &[bool],
        evaluator_zero: Vec<Block>,
        rng: &mut R,
        out: &mut [u8],
        sink: impl FnMut(&[u8]),
    ) -> Result<StreamedGarbling, Error> {
        if garbler_inputs.len() != circuit.garbler_inputs().len() {
            return Err(ApiMisuse::InputLength {
                party: "garbler",
                expected: circuit.garbler_inputs().len(),
                got: garbler_inputs.len(),
            }
            .into());
        }
        if evaluator_zero.len() != circuit.evaluator_inputs().len() {
            return Err(ApiMisuse::InputLength {
                party: "evaluator",
                expected: circuit.evaluator_inputs().len(),
                got: evaluator_zero.len(),
            }
            .into());
        }
        let n_and = circuit.and_count() as u64;
        let tweak_base = self.next_gate;
        // Reserve this circuit's gate numbers before anything else: the tweaks 2·gate, 2·gate+1 must fit a u64
        // gate count, and are never handed out again under this Δ.
        let end = tweak_base
            .checked_add(n_and)
            .filter(|&e| e < (1u64 << 63))
            .ok_or(ApiMisuse::TweaksExhausted)?;
        self.next_gate = end;

        let delta = self.delta.0;
        let slots = &circuit.slots;
        if self.labels.len() < slots.count as usize {
            self.labels.resize(slots.count as usize, Block::ZERO);
        }
        let labels = &mut self.labels[..slots.count as usize];
        let mut garbler_labels = Vec::with_capacity(garbler_inputs.len());
        for (&s, &x) in slots.garbler_inputs.iter().zip(garbler_inputs) {
            let z = Block::random(rng);
            labels[s as usize] = z;
            garbler_labels.push(z ^ delta.and_bit(x));
        }
        for (&s, &z) in slots.evaluator_inputs.iter().zip(&evaluator_zero) {
            labels[s as usize] = z;
        }

        garble_into(&self.hash, circuit, delta, tweak_base, labels, out, sink);

        let garbler_zero: Vec<Block> = slots
            .garbler_outputs
            .iter()
            .map(|&s| labels[s as usize])
            .collect();
        let evaluator_decoding: Vec<bool> = slots
            .evaluator_outputs
            .iter()
            .map(|&s| labels[s as usize].lsb())
            .collect();
        let digest = circuit.digest();
        Ok(StreamedGarbling {
            header: GarbledHeader {
                circuit_digest: digest,
                tweak_base,
                garbler_labels,
            },
            evaluator_labels: EvaluatorLabelPairs {
                zero: evaluator_zero,
                delta,
            },
            pending: PendingOutput {
                digest,
                garbler_zero,
                evaluator_decoding,
                delta,
            },
        })
    }
}

/// Bytes of garbled tables per chunk handed to the sink of [`Garbler::garble_streaming`] (whole gates).
pub const STREAM_CHUNK: usize = 32 * 2048;

/// What [`Garbler::garble_streaming`] returns besides the streamed tables.
#[derive(Debug)]
pub struct StreamedGarbling {
    /// To the evaluator: circuit digest, tweak base, and the garbler's own input labels.
    pub header: GarbledHeader,
    /// The evaluator's input label pairs, to be delivered by oblivious transfer. Secret.
    pub evaluator_labels: EvaluatorLabelPairs,
    /// The garbler's state until the evaluator returns the garbler's output labels.
    pub pending: PendingOutput,
}

/// The garbling pass over the layered schedule. `labels` holds the zero labels of the input wires and receives
/// every wire's zero label; the tables (32 bytes per AND gate) are written into `out` (a whole number of
/// gates), which `sink` receives each time it is full and, partly filled, at the end.
fn garble_into(
    hash: &Tccr,
    c: &Circuit,
    delta: Block,
    tweak_base: u64,
    labels: &mut [Block],
    out: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) {
    let d = delta.0;
    // Per batch: π(x) of the four hashed labels of each gate (A0, A1, B0, B1), the second permutations, and
    // the zero labels of each gate's inputs.
    let mut pis = vec![AesBlock::default(); 4 * BATCH];
    let mut second = vec![AesBlock::default(); 4 * BATCH];
    let mut inputs = vec![[0u128; 2]; BATCH];
    let mut shared = SharedInputs::new([0, d]);
    let mut filled = 0usize;
    c.steps(|step| match step {
        Step::Layer(wires) => shared.load(wires, labels, hash),
        Step::Ands { first, gates } => {
            let n = gates.len();
            // Blocks 4k, 4k+1 (A0, A1) of gate first+k use tweak 2(first+k), blocks 4k+2, 4k+3 (B0, B1) use
            // 2(first+k)+1: block j uses 2·first + j/2 (see gate_tweaks).
            // Tweaks stay below 2^64 (gate numbers below 2^63, checked when they are reserved), so the sum is
            // done in 64 bits.
            let t0 = gate_tweaks(tweak_base + first as u64).0 as u64;
            let tweak = |j: usize| {
                let t = (t0 + (j >> 1) as u64) as u128;
                #[cfg(test)]
                tweak_log::record(t);
                t
            };
            // pis[j] = π(x_j) ⊕ tweak(j), second[j] = π(pis[j]), so H(x_j) = second[j] ⊕ pis[j] ⊕ tweak(j).
            shared.gather(gates, labels, &mut inputs, &mut pis, hash, tweak);
            hash.second_halves_of_masked(&pis[..4 * n], &mut second);
            // A local copy, so the fill level stays in a register through the batch.
            let mut at = filled;
            let gates = gates
                .iter()
                .zip(inputs.iter())
                .zip(pis.chunks_exact(4).zip(second.chunks_exact(4)));
            if out.len() - at >= 32 * n {
                // The batch's rows fit in the chunk (the usual case: a chunk holds a whole number of full batches).
                let rows = out[at..at + 32 * n].chunks_exact_mut(32);
                for (((g, &[a0, b0]), (x, y)), row) in gates.zip(rows) {
                    let (w, tg, te) = half_gates(x, y, a0, b0, d);
                    labels[g.out as usize] = w;
                    write_row(row, tg, te);
                }
                at += 32 * n;
                if at == out.len() {
                    sink(out);
                    at = 0;
                }
            } else {
                for ((g, &[a0, b0]), (x, y)) in gates {
                    let (w, tg, te) = half_gates(x, y, a0, b0, d);
                    labels[g.out as usize] = w;
                    write_row(&mut out[at..at + 32], tg, te);
                    at += 32;
                    if at == out.len() {
                        sink(out);
                        at = 0;
                    }
                }
            }
            filled = at;
        }
        // Linear gates run between batches, while the outputs they read are in cache.
        Step::Linear(gates) => run_linear(gates, labels, d),
    });
    for b in pis.iter_mut().chain(&mut second) {
        b.as_mut_slice().zeroize();
    }
    inputs.zeroize();
    if filled > 0 {
        sink(&out[..filled]);
    }
}

/// One AND gate garbled from its input zero labels `a0`, `b0` and its hashed blocks: `x` the inputs of the second
/// permutations (A0, A1, B0, B1; first halves with the tweaks XORed in) and `y` their outputs. Returns the output
/// zero label and the table rows `T_G`, `T_E`.
#[inline(always)]
fn half_gates(x: &[AesBlock], y: &[AesBlock], a0: u128, b0: u128, d: u128) -> (Block, u128, u128) {
    // Each hash without its tweak: H(A0) ⊕ t_a, H(A1) ⊕ t_a, H(B0) ⊕ t_b, H(B1) ⊕ t_b.
    let h = |i: usize| aes_u128(&x[i]) ^ aes_u128(&y[i]);
    let (ha0, ha1, hb0, hb1) = (h(0), h(1), h(2), h(3));
    let pa = mask(a0);
    let pb = mask(b0);
    // Garbler half gate: T_G = H(A0) ⊕ H(A1) ⊕ p_b·Δ, W_G = H(A0) ⊕ p_a·T_G.
    let tg = ha0 ^ ha1 ^ (pb & d);
    let wg = ha0 ^ (pa & tg);
    // Evaluator half gate: T_E = H(B0) ⊕ H(B1) ⊕ A0, W_E = H(B0) ⊕ p_b·(T_E ⊕ A0).
    let te = hb0 ^ hb1 ^ a0;
    let we = hb0 ^ (pb & (te ^ a0));
    // The left-out tweaks cancel in T_G and T_E, and leave t_a ⊕ t_b = 2g ⊕ (2g + 1) = 1 in W_G ⊕ W_E.
    (Block(wg ^ we ^ 1), tg, te)
}

/// A gate's table rows `T_G`, `T_E` into its 32 bytes.
#[inline(always)]
fn write_row(row: &mut [u8], tg: u128, te: u128) {
    row[..16].copy_from_slice(&tg.to_le_bytes());
    row[16..].copy_from_slice(&te.to_le_bytes());
}

/// `blocks[k] = first[k] ⊕ tweak(j + k)`: first halves with their tweaks XORed in, blocks `j..` of a batch.
/// Returns the index of the next block.
#[inline(always)]
fn add_tweaks(
    blocks: &mut [AesBlock],
    first: &[AesBlock],
    tweak: &impl Fn(usize) -> u128,
    j: usize,
) -> usize {
    for (k, (b, f)) in blocks.iter_mut().zip(first).enumerate() {
        *b = to_aes_u128(aes_u128(f) ^ tweak(j + k));
    }
    j + blocks.len()
}

/// The shared AND inputs of the layer being garbled or evaluated, and the batch step that reads them. Each
/// hashed label is an input's label XOR one of `offsets`: the garbler hashes `L0` and `L0 ⊕ Δ` (`[0, Δ]`), the
/// evaluator the one label it holds (`[0]`). Zeroized on drop.
pub(crate) struct SharedInputs<const K: usize> {
    offsets: [u128; K],
    /// The label of each shared input of the layer.
    labels: Vec<u128>,
    /// The first halves `π(label ⊕ offset)` of each shared input, `K` per input.
    pis: Vec<AesBlock>,
    /// Per batch: the blocks of the unshared inputs, then their first halves.
    first: Vec<AesBlock>,
}

impl<const K: usize> SharedInputs<K> {
    pub(crate) fn new(offsets: [u128; K]) -> Self {
        SharedInputs {
            offsets,
            labels: Vec::new(),
            pis: Vec::new(),
            first: vec![AesBlock::default(); 2 * K * BATCH],
        }
    }

    /// Takes the labels of a layer's shared `wires` and computes their first halves once.
    pub(crate) fn load(&mut self, wires: &[u32], labels: &[Block], hash: &Tccr) {
        self.labels.clear();
        self.labels
            .extend(wires.iter().map(|&w| labels[w as usize].0));
        self.pis.clear();
        let offsets = self.offsets;
        self.pis.extend(
            self.labels
                .iter()
                .flat_map(|&l| offsets.map(|o| to_aes_u128(l ^ o))),
        );
        hash.first_halves(&mut self.pis);
    }

    /// For a batch of the layer: each gate's two input labels into `inputs`, and into `pis` the first halves of
    /// its `2K` hashed blocks (input `a`'s `K`, then `b`'s) XOR each block's `tweak` (by its index in `pis`): the
    /// inputs of [`Tccr::second_halves_of_masked`]. The first halves are taken from the layer's list for a shared
    /// input and computed here for the others. In a layer without shared inputs every block is hashed in place.
    pub(crate) fn gather(
        &mut self,
        gates: &[super::circuit::AndGate],
        labels: &[Block],
        inputs: &mut [[u128; 2]],
        pis: &mut [AesBlock],
        hash: &Tccr,
        tweak: impl Fn(usize) -> u128,
    ) {
        let pis = &mut pis[..2 * K * gates.len()];
        if self.labels.is_empty() {
            for ((g, ins), blocks) in gates
                .iter()
                .zip(inputs.iter_mut())
                .zip(pis.chunks_exact_mut(2 * K))
            {
                *ins = [labels[g.a as usize].0, labels[g.b as usize].0];
                for (l, blocks) in ins.iter().zip(blocks.chunks_exact_mut(K)) {
                    for (b, o) in blocks.iter_mut().zip(self.offsets) {
                        *b = to_aes_u128(l ^ o);
                    }
                }
            }
            hash.first_halves(pis);
            for (j, b) in pis.iter_mut().enumerate() {
                *b = to_aes_u128(aes_u128(b) ^ tweak(j));
            }
            return;
        }
        if gates.iter().all(|g| g.a & g.b & SHARED != 0) {
            // Every input is shared (a wide layer): one pass.
            let mut j = 0;
            for ((g, ins), blocks) in gates
                .iter()
                .zip(inputs.iter_mut())
                .zip(pis.chunks_exact_mut(2 * K))
            {
                for ((x, l), blocks) in [g.a, g.b]
                    .into_iter()
                    .zip(ins.iter_mut())
                    .zip(blocks.chunks_exact_mut(K))
                {
                    let i = (x ^ SHARED) as usize;
                    *l = self.labels[i];
                    j = add_tweaks(blocks, &self.pis[K * i..K * i + K], &tweak, j);
                }
            }
            return;
        }
        let mut unshared = 0;
        for (g, ins) in gates.iter().zip(inputs.iter_mut()) {
            for (x, l) in [g.a, g.b].into_iter().zip(ins.iter_mut()) {
                if x & SHARED == 0 {
                    *l = labels[x as usize].0;
                    for (b, o) in self.first[unshared..unshared + K]
                        .iter_mut()
                        .zip(self.offsets)
                    {
                        *b = to_aes_u128(*l ^ o);
                    }
                    unshared += K;
                } else {
                    *l = self.labels[(x ^ SHARED) as usize];
                }
            }
        }
        hash.first_halves(&mut self.first[..unshared]);
        let mut next = 0;
        let mut j = 0;
        for (g, blocks) in gates.iter().zip(pis.chunks_exact_mut(2 * K)) {
            for (x, blocks) in [g.a, g.b].into_iter().zip(blocks.chunks_exact_mut(K)) {
                let from = if x & SHARED == 0 {
                    next += K;
                    &self.first[next - K..next]
                } else {
                    let s = K * (x ^ SHARED) as usize;
                    &self.pis[s..s + K]
                };
                j = add_tweaks(blocks, from, &tweak, j);
            }
        }
    }
}

impl<const K: usize> Drop for SharedInputs<K> {
    fn drop(&mut self) {
        self.labels.zeroize();
        for b in self.pis.iter_mut().chain(&mut self.first) {
            b.as_mut_slice().zeroize();
        }
    }
}

/// All ones if the label's point-and-permute bit is 1, else zero.
#[inline(always)]
pub(crate) fn mask(label: u128) -> u128 {
    // The low bit negated in 64 bits and sign-extended: no 128-bit arithmetic.
    (0i64.wrapping_sub((label as i64) & 1)) as i128 as u128
}

/// In tests: every tweak the garbler hashed with on this thread, once per hashed block (so each tweak should
/// appear exactly twice: for a label and for that label ⊕ Δ).
#[cfg(test)]
pub(crate) mod tweak_log {
    use std::cell::RefCell;
    thread_local! {
        static LOG: RefCell<Vec<u128>> = const { RefCell::new(Vec::new()) };
    }
    pub fn record(t: u128) {
        LOG.with(|l| l.borrow_mut().push(t));
    }
    pub fn take() -> Vec<u128> {
        LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}
