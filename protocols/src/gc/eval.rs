//! The evaluator (the FI): half-gates evaluation, returning the garbler's output labels, decoding its own.

use super::circuit::{run_linear, Circuit, Step};
use super::garble::{mask, SharedInputs, BATCH};
use super::hash::{aes_u128, gate_tweaks, AesBlock, Tccr};
use super::{
    ApiMisuse, Error, GarbledHeader, GarbledTables, OutputDecoding, OutputLabels, PeerMisbehaved,
};
use crate::block::Block;
use std::fmt;

/// Evaluates garbled circuits. Keeps its wire-label buffer between evaluations.
#[derive(Default)]
pub struct Evaluator {
    hash: Tccr,
    labels: Vec<Block>,
}

impl fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Evaluator(..)")
    }
}

/// The evaluator after evaluation, waiting for the garbler's [`OutputDecoding`]: holds the labels of its own
/// output wires.
pub struct AwaitingDecoding {
    digest: [u8; 32],
    labels: Vec<Block>,
}

impl fmt::Debug for AwaitingDecoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwaitingDecoding({} outputs, ..)", self.labels.len())
    }
}

impl AwaitingDecoding {
    /// Decodes the evaluator's outputs with the garbler's decoding bits: output `i` is
    /// `lsb(label_i) ⊕ bits_i`.
    pub fn decode(self, msg: &OutputDecoding) -> Result<Vec<bool>, Error> {
        if msg.circuit_digest != self.digest {
            return Err(PeerMisbehaved::CircuitMismatch.into());
        }
        if msg.bits.len() != self.labels.len() {
            return Err(PeerMisbehaved::DecodingLength {
                expected: self.labels.len(),
                got: msg.bits.len(),
            }
            .into());
        }
        Ok(self
            .labels
            .iter()
            .zip(&msg.bits)
            .map(|(l, &d)| l.lsb() ^ d)
            .collect())
    }
}

impl Evaluator {
    /// An evaluator.
    pub fn new() -> Evaluator {
        Evaluator {
            hash: Tccr::new(),
            labels: Vec::new(),
        }
    }

    /// Evaluates `circuit` on the garbler's header and tables and on the evaluator's own input labels (from OT).
    /// Returns the message for the garbler (the labels of the garbler's output wires) and the state that decodes
    /// the evaluator's outputs once the garbler accepts.
    ///
    /// Everything in `header` and `tables` comes from the peer and is checked: the circuit digest, the number of
    /// garbler labels, the table length (by construction of [`GarbledTables`]), and the tweak range.
    pub fn evaluate(
        &mut self,
        circuit: &Circuit,
        header: &GarbledHeader,
        tables: &GarbledTables,
        evaluator_labels: &[Block],
    ) -> Result<(OutputLabels, AwaitingDecoding), Error> {
        if header.circuit_digest != circuit.digest() {
            return Err(PeerMisbehaved::CircuitMismatch.into());
        }
        if header.garbler_labels.len() != circuit.garbler_inputs().len() {
            return Err(PeerMisbehaved::InputLabelCount {
                expected: circuit.garbler_inputs().len(),
                got: header.garbler_labels.len(),
            }
            .into());
        }
        if tables.as_bytes().len() != circuit.table_bytes() {
            return Err(PeerMisbehaved::TableLength {
                expected: circuit.table_bytes(),
                got: tables.as_bytes().len(),
            }
            .into());
        }
        if header
            .tweak_base
            .checked_add(circuit.and_count() as u64)
            .is_none_or(|e| e >= 1u64 << 63)
        {
            return Err(PeerMisbehaved::TweakRange.into());
        }
        if evaluator_labels.len() != circuit.evaluator_inputs().len() {
            return Err(ApiMisuse::InputLength {
                party: "evaluator",
                expected: circuit.evaluator_inputs().len(),
                got: evaluator_labels.len(),
            }
            .into());
        }
        let slots = &circuit.slots;
        if self.labels.len() < slots.count as usize {
            self.labels.resize(slots.count as usize, Block::ZERO);
        }
        let labels = &mut self.labels[..slots.count as usize];
        for (&s, &l) in slots.garbler_inputs.iter().zip(&header.garbler_labels) {
            labels[s as usize] = l;
        }
        for (&s, &l) in slots.evaluator_inputs.iter().zip(evaluator_labels) {
            labels[s as usize] = l;
        }
        evaluate_into(
            &self.hash,
            circuit,
            header.tweak_base,
            labels,
            tables.as_bytes(),
        );
        let garbler = slots
            .garbler_outputs
            .iter()
            .map(|&s| labels[s as usize])
            .collect();
        let own = slots
            .evaluator_outputs
            .iter()
            .map(|&s| labels[s as usize])
            .collect();
        let digest = circuit.digest();
        Ok((
            OutputLabels {
                circuit_digest: digest,
                labels: garbler,
            },
            AwaitingDecoding {
                digest,
                labels: own,
            },
        ))
    }
}

fn evaluate_into(hash: &Tccr, c: &Circuit, tweak_base: u64, labels: &mut [Block], tables: &[u8]) {
    // Per batch: π(W_a), π(W_b) of each gate, the second permutations, and the labels of each gate's inputs.
    let mut pis = vec![AesBlock::default(); 2 * BATCH];
    let mut second = vec![AesBlock::default(); 2 * BATCH];
    let mut inputs = vec![[0u128; 2]; BATCH];
    let mut shared = SharedInputs::new([0]);
    c.steps(|step| match step {
        Step::Layer(wires) => shared.load(wires, labels, hash),
        Step::Ands { first, gates } => {
            let n = gates.len();
            // Block 2k (W_a) of gate first+k uses tweak 2(first+k), block 2k+1 (W_b) 2(first+k)+1: block j uses
            // 2·first + j (see gate_tweaks).
            let t0 = gate_tweaks(tweak_base + first as u64).0;
            // pis[j] = π(x_j) ⊕ tweak(j), second[j] = π(pis[j]), so H(x_j) = second[j] ⊕ pis[j] ⊕ tweak(j).
            shared.gather(gates, labels, &mut inputs, &mut pis, hash, |j| {
                t0 + j as u128
            });
            hash.second_halves_of_masked(&pis[..2 * n], &mut second);
            for (k, (g, &[wa, wb])) in gates.iter().zip(inputs.iter()).enumerate() {
                let off = 32 * (first + k);
                let tg = u128::from_le_bytes(tables[off..off + 16].try_into().expect("16 bytes"));
                let te =
                    u128::from_le_bytes(tables[off + 16..off + 32].try_into().expect("16 bytes"));
                // H(W_a) ⊕ t_a and H(W_b) ⊕ t_b: the tweaks are added back together below.
                let ha = aes_u128(&pis[2 * k]) ^ aes_u128(&second[2 * k]);
                let hb = aes_u128(&pis[2 * k + 1]) ^ aes_u128(&second[2 * k + 1]);
                // W_G = H(W_a) ⊕ s_a·T_G ; W_E = H(W_b) ⊕ s_b·(T_E ⊕ W_a).
                let wg = ha ^ (mask(wa) & tg);
                let we = hb ^ (mask(wb) & (te ^ wa));
                // t_a ⊕ t_b = 2g ⊕ (2g + 1) = 1.
                labels[g.out as usize] = Block(wg ^ we ^ 1);
            }
        }
        Step::Linear(gates) => run_linear(gates, labels, 0),
    });
}
