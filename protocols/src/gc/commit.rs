//! Commitments to the garbler's output labels: what lets the evaluator refuse to return a label the circuit
//! did not give it.
//!
//! With the garbled circuit the garbler sends, for every garbler output wire `i`, a hash of each of the wire's
//! two labels `L`: `H(context, i, L)`, BLAKE3 in key-derivation mode under `duo/gc/output-label/v1`, placed at
//! position `lsb(L)` (the point-and-permute bit, so the order says nothing about which label means 0). After
//! evaluation the evaluator returns its label on wire `i` only if it hashes to the commitment at position
//! `lsb(label)`; otherwise it aborts. A garbler that handed out wrong input labels (or garbled wrong tables)
//! then gets back one of two labels it fixed in advance, or an abort: about one bit, however it deviated,
//! instead of a label that can encode the evaluator's inputs.

use super::{Error, OutputLabels, PeerMisbehaved};
use crate::block::Block;

/// The key-derivation context of the output-label hash.
const CONTEXT: &str = "duo/gc/output-label/v1";

/// Garbler → evaluator, with the garbled circuit: two hashes per garbler output wire, each at the position of
/// its label's point-and-permute bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputCommitments {
    /// For each garbler output wire, `[hash of the label with lsb 0, hash of the label with lsb 1]`.
    pub hashes: Vec<[[u8; 32]; 2]>,
}

/// The hash of `label` as the label of garbler output wire `index`, under `context` (the run's session id
/// and circuit digest, so that a commitment means nothing in another run).
pub fn output_label_hash(context: &[u8], index: usize, label: Block) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(&(context.len() as u64).to_le_bytes());
    h.update(context);
    h.update(&(index as u64).to_le_bytes());
    h.update(&label.to_bytes());
    *h.finalize().as_bytes()
}

impl OutputCommitments {
    /// The commitments to the two labels `(zero, zero ⊕ Δ)` of each garbler output wire.
    pub(crate) fn of(context: &[u8], zeros: &[Block], delta: Block) -> OutputCommitments {
        let hashes = zeros
            .iter()
            .enumerate()
            .map(|(i, &zero)| {
                let one = zero ^ delta;
                let (h0, h1) = (
                    output_label_hash(context, i, zero),
                    output_label_hash(context, i, one),
                );
                // Δ has lsb 1, so the two labels have different lsbs: one hash per position.
                if zero.lsb() {
                    [h1, h0]
                } else {
                    [h0, h1]
                }
            })
            .collect();
        OutputCommitments { hashes }
    }

    /// The evaluator's check before it returns `labels`: as many labels as commitments, each hashing to the
    /// commitment at the position of its lsb. Refuses the first that does not ([`PeerMisbehaved`]: the
    /// garbler's labels or tables were not what it committed to).
    pub fn check(&self, context: &[u8], labels: &OutputLabels) -> Result<(), Error> {
        if labels.labels.len() != self.hashes.len() {
            return Err(PeerMisbehaved::OutputLabelCount {
                expected: self.hashes.len(),
                got: labels.labels.len(),
            }
            .into());
        }
        for (i, (&label, pair)) in labels.labels.iter().zip(&self.hashes).enumerate() {
            let want = &pair[label.lsb() as usize];
            let got = output_label_hash(context, i, label);
            let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff != 0 {
                return Err(PeerMisbehaved::UncommittedOutputLabel { index: i }.into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::{CircuitBuilder, Delta, Evaluator, Garbler};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn only_committed_labels_pass_and_the_order_hides_the_value() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut b = CircuitBuilder::new();
        let g = b.garbler_inputs(2);
        let e = b.evaluator_inputs(2);
        for i in 0..2 {
            let x = b.and(g[i], e[i]);
            b.garbler_output(x);
        }
        let c = b.build().unwrap();
        let mut garbler = Garbler::new(Delta::random(&mut rng));
        let gb = garbler.garble(&c, &[true, true], &mut rng).unwrap();
        let ctx = b"run-1";
        let commitments = gb.pending.commitments(ctx);
        let labels = gb.evaluator_labels.select(&[true, false]);
        let (out, _) = Evaluator::new()
            .evaluate(&c, &gb.header, &gb.tables, &labels)
            .unwrap();
        commitments.check(ctx, &out).unwrap();
        // Each label sits at its lsb's position, whatever value it means.
        for (i, l) in out.labels.iter().enumerate() {
            assert_eq!(
                commitments.hashes[i][l.lsb() as usize],
                output_label_hash(ctx, i, *l)
            );
        }
        // Another run's context, a shifted label, or a label moved to another wire: refused.
        assert!(commitments.check(b"run-2", &out).is_err());
        let mut bad = out.clone();
        bad.labels[1] ^= Block(2);
        assert_eq!(
            commitments.check(ctx, &bad),
            Err(PeerMisbehaved::UncommittedOutputLabel { index: 1 }.into())
        );
        let mut swapped = out.clone();
        swapped.labels.swap(0, 1);
        assert!(commitments.check(ctx, &swapped).is_err());
        swapped.labels.pop();
        assert!(commitments.check(ctx, &swapped).is_err());
    }
}
