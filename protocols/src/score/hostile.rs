//! Tests only: a modified owner node that runs the protocol honestly except where it reads the FI's model.
//!
//! The attack (issue 10, item 8): the owner sets its one Gilboa input to `2^(64-k)`, so the FI's share of the
//! sum is `u + w·2^(64-k) + c` (the owner knows `u`; `c` is the FI's bias minus threshold), whose top `k`
//! bits hold the low `k` bits of the weight `w`. It garbles honestly but hands the FI *shifted* labels (neither
//! of the wire's two labels) for the top `k` bits of its own share. The FI evaluates; the label it gets on the
//! output wire is then a pseudorandom function of its top `k` share bits, and it returns that label. The owner,
//! who knows every label of the circuit, re-evaluates the circuit for each of the `2^k` candidate weights and
//! finds the one that gives the returned label: the whole weight from one "1-bit" decision run. It then sends
//! the FI whatever decoding bit makes the decision the one it chose.

use super::Outcome;
use crate::block::Block;
use crate::gc::builder::u64_to_bits;
use crate::gc::{Circuit, Evaluator, GarbledHeader, GarbledTables, Garbling, OutputLabels};
use rand::RngCore;

/// The modified owner's deviations and what it keeps to read the FI's answer.
pub(super) struct HostileOwner {
    /// Bits of the weight it reads (`k`): its Gilboa input is `2^(64-k)`, its top `k` share labels shifted.
    bits: usize,
    /// The decision it makes the FI accept.
    pub decision: bool,
    /// Its own share of the sum (`-u`).
    share: u64,
    /// Both labels of every FI input wire, to re-evaluate the circuit for a candidate FI input.
    pairs: Vec<(Block, Block)>,
    /// What the FI was given.
    garbled: Option<(GarbledHeader, GarbledTables)>,
    /// The label the FI returned on the owner's output wire, if it returned one.
    pub returned: Option<Block>,
}

impl HostileOwner {
    /// An owner that reads the low `bits` bits of the weight of the run's one attribute.
    pub fn new(bits: usize, decision: bool) -> HostileOwner {
        assert!((1..=24).contains(&bits));
        HostileOwner {
            bits,
            decision,
            share: 0,
            pairs: Vec::new(),
            garbled: None,
            returned: None,
        }
    }

    /// Replaces the owner's encoded attribute by `2^(64-k)`.
    pub fn gilboa_inputs(&mut self, x: &mut [u64]) {
        x[0] = 1u64 << (64 - self.bits);
    }

    /// After honest garbling: shifts the top `k` garbler input labels and keeps what it needs to re-evaluate.
    pub fn garbled<R: RngCore + ?Sized>(&mut self, g: &mut Garbling, share: u64, rng: &mut R) {
        self.share = share;
        let n = g.header.garbler_labels.len();
        for l in &mut g.header.garbler_labels[n - self.bits..] {
            *l ^= Block(Block::random(rng).0 & !1);
        }
        self.pairs = (0..g.evaluator_labels.len())
            .map(|i| g.evaluator_labels.pair(i))
            .collect();
        self.garbled = Some((g.header.clone(), g.tables.clone()));
    }

    /// The FI's output labels arrived: keep the label, and decode the FI's output to the chosen decision.
    pub fn output(&mut self, labels: &OutputLabels) -> (Outcome, Vec<bool>) {
        let label = labels.labels[0];
        self.returned = Some(label);
        (
            Outcome::Decision(self.decision),
            vec![label.lsb() ^ self.decision],
        )
    }

    /// The weights (low `k` bits) whose FI share gives the returned label, assuming the FI's bias equals its
    /// threshold (`c = 0`; otherwise the owner reads the top bits of `w·2^(64-k) + c`). About `2^k` trial
    /// evaluations of the circuit.
    pub fn recover(&self, circuit: &Circuit) -> Vec<u64> {
        let (Some(returned), Some((header, tables))) = (self.returned, &self.garbled) else {
            return Vec::new();
        };
        let u = self.share.wrapping_neg();
        let shift = 64 - self.bits;
        let mut eval = Evaluator::new();
        (0..1u64 << self.bits)
            .filter(|&w| {
                let fi_share = u.wrapping_add(w << shift);
                let labels: Vec<Block> = u64_to_bits(fi_share, 64)
                    .iter()
                    .zip(&self.pairs)
                    .map(|(&b, &(l0, l1))| if b { l1 } else { l0 })
                    .collect();
                eval.evaluate(circuit, header, tables, &labels)
                    .is_ok_and(|(out, _)| out.labels[0] == returned)
            })
            .collect()
    }
}
