//! Boolean circuits: wires, XOR/AND/INV gates, inputs split between the garbler and the evaluator, and outputs
//! for each of them.
//!
//! A [`Circuit`] is public: both parties build it from the same public description (the scoring program, the
//! AES-128 test circuit) and [`Circuit::digest`] lets them check they did. Every wire is assigned exactly once
//! (by an input or by one gate) and gates appear in topological order; [`Circuit::new`] checks both.
//!
//! For garbling, the circuit is also kept as a *layered schedule*: the AND depth of each wire is computed, and
//! all AND gates of one depth (which are independent of each other) are garbled together in batches, so the
//! hash's AES calls pipeline. The schedule fixes the index of each AND gate (by depth, then list order), hence
//! its tweak and its place in the tables. Two more things are settled when the circuit is built; neither
//! changes the AND order, the tweaks or a byte of the tables:
//!
//! - XOR and INV gates of depth `d` run right after the batch of depth-`d` AND gates that completes their
//!   inputs (in their original order among themselves), so an AND output is consumed while it is in cache.
//! - Labels are kept in *slots*, not one per wire: a wire's slot is taken again after the step that reads the
//!   wire for the last time (outputs are kept to the end). A wide layer whose outputs are folded as they come
//!   needs a few hundred labels instead of two per gate, so garbling it barely leaves the cache.

use crate::block::Block;
use sha2::{Digest, Sha256};
use std::fmt;

/// A wire of a circuit (an index below [`Circuit::num_wires`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct WireId(pub u32);

impl WireId {
    /// The index as `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A gate. INV costs nothing under free-XOR (the garbler flips the meaning of the label).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gate {
    /// `out = a ⊕ b`.
    Xor {
        /// First input.
        a: WireId,
        /// Second input.
        b: WireId,
        /// Output.
        out: WireId,
    },
    /// `out = a ∧ b`: two ciphertexts with half-gates.
    And {
        /// First input.
        a: WireId,
        /// Second input.
        b: WireId,
        /// Output.
        out: WireId,
    },
    /// `out = ¬a`.
    Inv {
        /// Input.
        a: WireId,
        /// Output.
        out: WireId,
    },
}

impl Gate {
    /// The wire the gate writes.
    pub fn output(&self) -> WireId {
        match *self {
            Gate::Xor { out, .. } | Gate::And { out, .. } | Gate::Inv { out, .. } => out,
        }
    }
}

/// Why a gate list is not a circuit. These come from local code building a circuit, never from the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CircuitError {
    /// A wire index is not below the circuit's wire count.
    #[error("wire {wire} is out of range (the circuit has {num_wires} wires)")]
    WireOutOfRange {
        /// The wire.
        wire: u32,
        /// The circuit's wire count.
        num_wires: u32,
    },
    /// A wire is assigned twice (two inputs, two gates, or an input and a gate).
    #[error("wire {0} is assigned more than once")]
    AssignedTwice(u32),
    /// A gate reads a wire before any input or gate assigned it.
    #[error("gate {gate} reads wire {wire} before it is assigned")]
    UsedBeforeAssigned {
        /// Index of the gate in the list.
        gate: usize,
        /// The wire.
        wire: u32,
    },
    /// An output wire is never assigned.
    #[error("output wire {0} is never assigned")]
    OutputUnassigned(u32),
    /// More than 2^31 wires.
    #[error("too many wires (at most 2^31)")]
    TooManyWires,
    /// A constant output was requested from a circuit without any input wire to derive it from.
    #[error("a constant output needs at least one input wire")]
    ConstantWithoutInputs,
}

/// An AND gate in the layered schedule. An input is a wire index, or, with [`SHARED`] set, the slot of one of
/// its layer's shared inputs (see [`Layer`]), whose label and first halves are computed once for the layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AndGate {
    pub a: u32,
    pub b: u32,
    pub out: u32,
}

/// Marks an AND gate's input as a slot among its layer's shared inputs rather than a wire (wire indices stay
/// below it).
pub(crate) const SHARED: u32 = 1 << 31;

/// A free gate in the layered schedule: `out = a ⊕ b`, or `out = ¬a` when `b == INV_MARK`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinearGate {
    pub a: u32,
    pub b: u32,
    pub out: u32,
}

pub(crate) const INV_MARK: u32 = u32::MAX;

/// AND gates garbled per batch (4 hashed blocks each, so up to 256 blocks per AES call); the schedule runs linear
/// gates between batches.
pub(crate) const BATCH: usize = 64;

/// Runs linear gates on the labels: `out = a ⊕ b`, or `out = a ⊕ inv` for an inverter (`Δ` for the garbler,
/// whose labels are zero labels; 0 for the evaluator).
#[inline]
pub(crate) fn run_linear(gates: &[LinearGate], labels: &mut [Block], inv: u128) {
    for g in gates {
        let a = labels[g.a as usize].0;
        labels[g.out as usize] = Block(if g.b == INV_MARK {
            a ^ inv
        } else {
            a ^ labels[g.b as usize].0
        });
    }
}

/// One layer of the schedule: AND gates `and_start..and_end`, then linear gates `lin_start..lin_end`. The wires
/// `shared[shared_start..shared_end]` of [`Circuit`] are this layer's shared AND inputs: each feeds at least two
/// of its AND gates, so the first permutation `π(x)` of the garbling hash `H(x, i) = π(π(x) ⊕ i) ⊕ π(x)` is
/// computed once per shared wire and layer instead of once per use (the hash values are the same). Empty when
/// most of the layer's AND inputs feed one gate only.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layer {
    pub and_end: u32,
    pub lin_end: u32,
    pub shared_end: u32,
}

/// A validated boolean circuit with its garbling schedule. See the module docs.
#[derive(Clone)]
pub struct Circuit {
    num_wires: u32,
    garbler_inputs: Vec<WireId>,
    evaluator_inputs: Vec<WireId>,
    gates: Vec<Gate>,
    garbler_outputs: Vec<WireId>,
    evaluator_outputs: Vec<WireId>,
    // The schedule.
    pub(crate) and_gates: Vec<AndGate>,
    pub(crate) linear_gates: Vec<LinearGate>,
    pub(crate) layers: Vec<Layer>,
    /// For each batch of [`BATCH`] AND gates of each layer, in order: the end of the linear gates that run right
    /// after it (see [`interleave_linear`]).
    pub(crate) batch_lin_end: Vec<u32>,
    /// Where each wire's label is kept while garbling or evaluating (see [`allocate_slots`]).
    pub(crate) slots: Slots,
    /// The shared AND inputs of every layer, layer after layer (see [`Layer`]).
    pub(crate) shared: Vec<u32>,
    digest: [u8; 32],
}

impl fmt::Debug for Circuit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Circuit")
            .field("num_wires", &self.num_wires)
            .field("garbler_inputs", &self.garbler_inputs.len())
            .field("evaluator_inputs", &self.evaluator_inputs.len())
            .field("gates", &self.gates.len())
            .field("and_gates", &self.and_gates.len())
            .field("and_depth", &self.layers.len().saturating_sub(1))
            .field("garbler_outputs", &self.garbler_outputs.len())
            .field("evaluator_outputs", &self.evaluator_outputs.len())
            .finish()
    }
}

/// The plaintext outputs of a circuit, split by the party that learns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainOutputs {
    /// The garbler's output bits, in [`Circuit::garbler_outputs`] order.
    pub garbler: Vec<bool>,
    /// The evaluator's output bits, in [`Circuit::evaluator_outputs`] order.
    pub evaluator: Vec<bool>,
}

/// Inputs of the wrong length given to [`Circuit::eval_plain`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{party} input has {got} bits, the circuit takes {expected}")]
pub struct InputLengthError {
    /// `"garbler"` or `"evaluator"`.
    pub party: &'static str,
    /// What the circuit takes.
    pub expected: usize,
    /// What was given.
    pub got: usize,
}

impl Circuit {
    /// Checks a gate list and builds its schedule. Wires are `0..num_wires`; every wire is assigned once, by an
    /// input or a gate, and gates only read wires assigned before them.
    pub fn new(
        num_wires: usize,
        garbler_inputs: Vec<WireId>,
        evaluator_inputs: Vec<WireId>,
        gates: Vec<Gate>,
        garbler_outputs: Vec<WireId>,
        evaluator_outputs: Vec<WireId>,
    ) -> Result<Circuit, CircuitError> {
        let n: u32 = u32::try_from(num_wires)
            .ok()
            .filter(|&n| n <= SHARED)
            .ok_or(CircuitError::TooManyWires)?;
        let check = |w: WireId| {
            if w.0 < n {
                Ok(w.index())
            } else {
                Err(CircuitError::WireOutOfRange {
                    wire: w.0,
                    num_wires: n,
                })
            }
        };
        // depth[w] = AND depth of wire w, or u32::MAX while unassigned.
        const UNSET: u32 = u32::MAX;
        let mut depth = vec![UNSET; num_wires];
        for &w in garbler_inputs.iter().chain(evaluator_inputs.iter()) {
            let i = check(w)?;
            if depth[i] != UNSET {
                return Err(CircuitError::AssignedTwice(w.0));
            }
            depth[i] = 0;
        }
        let mut gate_depth = Vec::with_capacity(gates.len());
        for (gi, g) in gates.iter().enumerate() {
            let read = |w: WireId, depth: &[u32]| -> Result<u32, CircuitError> {
                let i = check(w)?;
                match depth[i] {
                    UNSET => Err(CircuitError::UsedBeforeAssigned {
                        gate: gi,
                        wire: w.0,
                    }),
                    d => Ok(d),
                }
            };
            let d = match *g {
                Gate::Xor { a, b, .. } => read(a, &depth)?.max(read(b, &depth)?),
                Gate::And { a, b, .. } => read(a, &depth)?.max(read(b, &depth)?) + 1,
                Gate::Inv { a, .. } => read(a, &depth)?,
            };
            let o = check(g.output())?;
            if depth[o] != UNSET {
                return Err(CircuitError::AssignedTwice(g.output().0));
            }
            depth[o] = d;
            gate_depth.push(d);
        }
        for &w in garbler_outputs.iter().chain(evaluator_outputs.iter()) {
            let i = check(w)?;
            if depth[i] == UNSET {
                return Err(CircuitError::OutputUnassigned(w.0));
            }
        }

        // Layered schedule: bucket gates by depth, ANDs first within a depth, original order otherwise.
        let max_depth = gate_depth.iter().copied().max().unwrap_or(0) as usize;
        let mut and_count = vec![0u32; max_depth + 1];
        let mut lin_count = vec![0u32; max_depth + 1];
        for (g, &d) in gates.iter().zip(&gate_depth) {
            match g {
                Gate::And { .. } => and_count[d as usize] += 1,
                _ => lin_count[d as usize] += 1,
            }
        }
        let mut layers = Vec::with_capacity(max_depth + 1);
        let mut and_pos = Vec::with_capacity(max_depth + 1);
        let mut lin_pos = Vec::with_capacity(max_depth + 1);
        let (mut ae, mut le) = (0u32, 0u32);
        for d in 0..=max_depth {
            and_pos.push(ae);
            lin_pos.push(le);
            ae += and_count[d];
            le += lin_count[d];
            layers.push(Layer {
                and_end: ae,
                lin_end: le,
                shared_end: 0,
            });
        }
        let mut and_gates = vec![AndGate { a: 0, b: 0, out: 0 }; ae as usize];
        let mut linear_gates = vec![LinearGate { a: 0, b: 0, out: 0 }; le as usize];
        for (g, &d) in gates.iter().zip(&gate_depth) {
            let d = d as usize;
            match *g {
                Gate::And { a, b, out } => {
                    and_gates[and_pos[d] as usize] = AndGate {
                        a: a.0,
                        b: b.0,
                        out: out.0,
                    };
                    and_pos[d] += 1;
                }
                Gate::Xor { a, b, out } => {
                    linear_gates[lin_pos[d] as usize] = LinearGate {
                        a: a.0,
                        b: b.0,
                        out: out.0,
                    };
                    lin_pos[d] += 1;
                }
                Gate::Inv { a, out } => {
                    linear_gates[lin_pos[d] as usize] = LinearGate {
                        a: a.0,
                        b: INV_MARK,
                        out: out.0,
                    };
                    lin_pos[d] += 1;
                }
            }
        }
        drop(depth);
        let batch_lin_end = interleave_linear(&and_gates, &mut linear_gates, &layers, num_wires);
        let slots = allocate_slots(
            num_wires,
            &mut and_gates,
            &mut linear_gates,
            &layers,
            &batch_lin_end,
            [
                &garbler_inputs,
                &evaluator_inputs,
                &garbler_outputs,
                &evaluator_outputs,
            ],
        );
        let shared = share_inputs(&mut and_gates, &mut layers, vec![0; slots.count as usize]);

        let digest = digest_of(
            n,
            &garbler_inputs,
            &evaluator_inputs,
            &gates,
            &garbler_outputs,
            &evaluator_outputs,
        );
        Ok(Circuit {
            num_wires: n,
            garbler_inputs,
            evaluator_inputs,
            gates,
            garbler_outputs,
            evaluator_outputs,
            and_gates,
            linear_gates,
            layers,
            batch_lin_end,
            slots,
            shared,
            digest,
        })
    }

    /// Number of wires.
    pub fn num_wires(&self) -> usize {
        self.num_wires as usize
    }

    /// The garbler's input wires, in input order.
    pub fn garbler_inputs(&self) -> &[WireId] {
        &self.garbler_inputs
    }

    /// The evaluator's input wires, in input order.
    pub fn evaluator_inputs(&self) -> &[WireId] {
        &self.evaluator_inputs
    }

    /// The gates, in the topological order they were given.
    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }

    /// The wires whose values the garbler learns.
    pub fn garbler_outputs(&self) -> &[WireId] {
        &self.garbler_outputs
    }

    /// The wires whose values the evaluator learns.
    pub fn evaluator_outputs(&self) -> &[WireId] {
        &self.evaluator_outputs
    }

    /// Number of AND gates (each costs two ciphertexts, 32 bytes).
    pub fn and_count(&self) -> usize {
        self.and_gates.len()
    }

    /// AND depth (number of rounds of dependent AND gates).
    pub fn and_depth(&self) -> usize {
        self.layers.len().saturating_sub(1)
    }

    /// AND-gate inputs (two per gate) that name a wire feeding two or more AND gates of the same layer, whose
    /// first hash permutation is computed once for the layer (see [`crate::gc`], Speed).
    pub fn shared_and_inputs(&self) -> usize {
        self.and_gates
            .iter()
            .map(|g| (g.a & SHARED != 0) as usize + (g.b & SHARED != 0) as usize)
            .sum()
    }

    /// Runs `f` on each step of garbling or evaluation, in order (see [`Step`]).
    #[inline]
    pub(crate) fn steps<'a>(&'a self, f: impl FnMut(Step<'a>)) {
        for_each_step(
            &self.and_gates,
            &self.linear_gates,
            &self.layers,
            &self.batch_lin_end,
            &self.shared,
            f,
        );
    }

    /// Size in bytes of the garbled tables.
    pub fn table_bytes(&self) -> usize {
        self.and_gates.len() * 32
    }

    /// SHA-256 over a canonical encoding of the circuit (wire count, inputs, gates, outputs), under a domain tag.
    /// Garbler and evaluator compare it before evaluating.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Evaluates the circuit in the clear, in the given gate order (independent of the garbling schedule).
    pub fn eval_plain(
        &self,
        garbler: &[bool],
        evaluator: &[bool],
    ) -> Result<PlainOutputs, InputLengthError> {
        if garbler.len() != self.garbler_inputs.len() {
            return Err(InputLengthError {
                party: "garbler",
                expected: self.garbler_inputs.len(),
                got: garbler.len(),
            });
        }
        if evaluator.len() != self.evaluator_inputs.len() {
            return Err(InputLengthError {
                party: "evaluator",
                expected: self.evaluator_inputs.len(),
                got: evaluator.len(),
            });
        }
        let mut v = vec![false; self.num_wires()];
        for (w, &x) in self.garbler_inputs.iter().zip(garbler) {
            v[w.index()] = x;
        }
        for (w, &x) in self.evaluator_inputs.iter().zip(evaluator) {
            v[w.index()] = x;
        }
        for g in &self.gates {
            match *g {
                Gate::Xor { a, b, out } => v[out.index()] = v[a.index()] ^ v[b.index()],
                Gate::And { a, b, out } => v[out.index()] = v[a.index()] & v[b.index()],
                Gate::Inv { a, out } => v[out.index()] = !v[a.index()],
            }
        }
        Ok(PlainOutputs {
            garbler: self.garbler_outputs.iter().map(|w| v[w.index()]).collect(),
            evaluator: self
                .evaluator_outputs
                .iter()
                .map(|w| v[w.index()])
                .collect(),
        })
    }

    /// The circuit in a Bristol-Fashion-like text form: a header line `gates wires`, a line with the garbler's
    /// and the evaluator's input counts, a line with the garbler's and the evaluator's output counts, the input
    /// and output wire lists, then one gate per line (`2 1 a b out XOR|AND`, `1 1 a out INV`).
    pub fn to_bristol(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let list = |s: &mut String, ws: &[WireId]| {
            let parts: Vec<String> = ws.iter().map(|w| w.0.to_string()).collect();
            let _ = writeln!(s, "{}", parts.join(" "));
        };
        let _ = writeln!(s, "{} {}", self.gates.len(), self.num_wires);
        let _ = writeln!(
            s,
            "2 {} {}",
            self.garbler_inputs.len(),
            self.evaluator_inputs.len()
        );
        let _ = writeln!(
            s,
            "2 {} {}",
            self.garbler_outputs.len(),
            self.evaluator_outputs.len()
        );
        list(&mut s, &self.garbler_inputs);
        list(&mut s, &self.evaluator_inputs);
        list(&mut s, &self.garbler_outputs);
        list(&mut s, &self.evaluator_outputs);
        let _ = writeln!(s);
        for g in &self.gates {
            let _ = match *g {
                Gate::Xor { a, b, out } => writeln!(s, "2 1 {} {} {} XOR", a.0, b.0, out.0),
                Gate::And { a, b, out } => writeln!(s, "2 1 {} {} {} AND", a.0, b.0, out.0),
                Gate::Inv { a, out } => writeln!(s, "1 1 {} {} INV", a.0, out.0),
            };
        }
        s
    }
}

/// The label slots of a circuit: the schedule's gates name slots, not wires, and a slot is reused once the wire
/// in it is read for the last time, so garbling touches only as many labels as are live at once.
#[derive(Clone, Debug)]
pub(crate) struct Slots {
    /// Number of slots (labels to keep).
    pub count: u32,
    /// The slot of each garbler input, evaluator input, garbler output and evaluator output, in order.
    pub garbler_inputs: Vec<u32>,
    pub evaluator_inputs: Vec<u32>,
    pub garbler_outputs: Vec<u32>,
    pub evaluator_outputs: Vec<u32>,
}

/// One step of garbling or evaluation, in the order they run ([`Circuit::steps`]).
pub(crate) enum Step<'a> {
    /// A layer begins; these are its shared AND inputs (see [`Layer`]).
    Layer(&'a [u32]),
    /// A batch of AND gates, `first` being the schedule index of its first gate (which fixes its tweaks). All of
    /// a batch's inputs are read before any of its outputs is written.
    Ands { first: usize, gates: &'a [AndGate] },
    /// Linear gates, run one after the other.
    Linear(&'a [LinearGate]),
}

/// Calls `f` on each step in the order garbling and evaluation run them: for each layer, its shared inputs,
/// then each batch of [`BATCH`] AND gates followed by the linear gates that run after it, then the layer's
/// remaining linear gates. The one definition of that order: the label slots are allocated by it.
fn for_each_step<'a>(
    and_gates: &'a [AndGate],
    linear_gates: &'a [LinearGate],
    layers: &[Layer],
    batch_lin_end: &[u32],
    shared: &'a [u32],
    mut f: impl FnMut(Step<'a>),
) {
    let (mut and_start, mut lin, mut batch, mut shared_start) = (0usize, 0usize, 0usize, 0usize);
    for layer in layers {
        f(Step::Layer(
            &shared[shared_start..layer.shared_end as usize],
        ));
        shared_start = layer.shared_end as usize;
        let ands = &and_gates[and_start..layer.and_end as usize];
        for (k, gates) in ands.chunks(BATCH).enumerate() {
            f(Step::Ands {
                first: and_start + k * BATCH,
                gates,
            });
            let end = batch_lin_end[batch] as usize;
            f(Step::Linear(&linear_gates[lin..end]));
            lin = end;
            batch += 1;
        }
        let end = layer.lin_end as usize;
        f(Step::Linear(&linear_gates[lin..end]));
        lin = end;
        and_start = layer.and_end as usize;
    }
}

/// Moves each linear gate of a layer to run right after the batch of the layer's AND gates that completes its
/// inputs (stably, so a linear gate still follows the linear gates it reads), and returns, for each batch, the
/// end of the linear gates that run after it. An AND output is then consumed while it is still in cache. The
/// order of the AND gates, hence the tweaks and the tables, does not change.
fn interleave_linear(
    and_gates: &[AndGate],
    linear_gates: &mut [LinearGate],
    layers: &[Layer],
    num_wires: usize,
) -> Vec<u32> {
    // ready[w]: (layer, batch) after which wire w of that layer is available; wires of earlier layers are
    // available from the first batch.
    let mut ready = vec![(u32::MAX, 0u32); num_wires];
    let mut batch_lin_end = Vec::with_capacity(and_gates.len().div_ceil(BATCH));
    let (mut and_start, mut lin_start) = (0usize, 0usize);
    let mut keyed = Vec::new();
    for (li, layer) in layers.iter().enumerate() {
        let li = li as u32;
        let ands = &and_gates[and_start..layer.and_end as usize];
        for (p, g) in ands.iter().enumerate() {
            ready[g.out as usize] = (li, (p / BATCH) as u32);
        }
        let at = |ready: &[(u32, u32)], w: u32| match ready[w as usize] {
            (l, b) if l == li => b,
            _ => 0,
        };
        let lins = &mut linear_gates[lin_start..layer.lin_end as usize];
        keyed.clear();
        for g in lins.iter() {
            let mut b = at(&ready, g.a);
            if g.b != INV_MARK {
                b = b.max(at(&ready, g.b));
            }
            ready[g.out as usize] = (li, b);
            keyed.push((b, *g));
        }
        keyed.sort_by_key(|k| k.0);
        let mut next = 0;
        for batch in 0..ands.len().div_ceil(BATCH) as u32 {
            while next < keyed.len() && keyed[next].0 <= batch {
                next += 1;
            }
            batch_lin_end.push((lin_start + next) as u32);
        }
        for (g, (_, k)) in lins.iter_mut().zip(&keyed) {
            *g = *k;
        }
        and_start = layer.and_end as usize;
        lin_start = layer.lin_end as usize;
    }
    batch_lin_end
}

/// The steps of [`for_each_step`] numbered from 1 (each AND batch is one step, and so is each linear gate), with
/// the wires each reads and writes: `f(step, reads, writes)`.
fn for_each_access(
    and_gates: &[AndGate],
    linear_gates: &[LinearGate],
    layers: &[Layer],
    batch_lin_end: &[u32],
    mut f: impl FnMut(u32, &[u32], &[u32]),
) {
    let (mut step, mut reads, mut writes) = (0u32, Vec::new(), Vec::new());
    for_each_step(
        and_gates,
        linear_gates,
        layers,
        batch_lin_end,
        &[],
        |s| match s {
            Step::Layer(_) => {}
            Step::Ands { gates, .. } => {
                step += 1;
                reads.clear();
                reads.extend(gates.iter().flat_map(|g| [g.a, g.b]));
                writes.clear();
                writes.extend(gates.iter().map(|g| g.out));
                f(step, &reads, &writes);
            }
            Step::Linear(gates) => {
                for g in gates {
                    step += 1;
                    let n = if g.b == INV_MARK { 1 } else { 2 };
                    f(step, &[g.a, g.b][..n], &[g.out]);
                }
            }
        },
    );
}

/// A wire's last read when it is an output: never freed.
const KEPT: u32 = u32::MAX;
/// A wire's last read once its slot is free again.
const FREED: u32 = u32::MAX - 1;

/// The second pass of [`allocate_slots`]: slots taken and given back as the steps run.
struct SlotAllocator {
    /// The step that reads each wire last (see [`allocate_slots`]).
    last: Vec<u32>,
    slot: Vec<u32>,
    free: Vec<u32>,
    count: u32,
}

impl SlotAllocator {
    /// After the reads of `step`: frees `w`'s slot if this was its last read. Every step reads before it
    /// writes, so the step's own outputs may take the slot.
    fn release(&mut self, w: u32, step: u32) {
        if self.last[w as usize] == step {
            self.free.push(self.slot[w as usize]);
            self.last[w as usize] = FREED;
        }
    }

    /// Gives the wires written by a step a slot each, then frees at once those nobody reads.
    fn place(&mut self, written: &[u32]) {
        for &w in written {
            self.slot[w as usize] = self.free.pop().unwrap_or_else(|| {
                self.count += 1;
                self.count - 1
            });
        }
        for &w in written {
            self.release(w, 0);
        }
    }
}

/// Gives every wire a label slot, reusing the slot of a wire after the step that reads it for the last time
/// (outputs are kept to the end), and rewrites the gates to name slots. `io` is the garbler inputs, evaluator
/// inputs, garbler outputs and evaluator outputs.
fn allocate_slots(
    num_wires: usize,
    and_gates: &mut [AndGate],
    linear_gates: &mut [LinearGate],
    layers: &[Layer],
    batch_lin_end: &[u32],
    io: [&[WireId]; 4],
) -> Slots {
    // last[w]: the last step (from 1) that reads w; KEPT for outputs, 0 for a wire never read.
    let mut last = vec![0u32; num_wires];
    for w in io[2].iter().chain(io[3]) {
        last[w.index()] = KEPT;
    }
    for_each_access(
        and_gates,
        linear_gates,
        layers,
        batch_lin_end,
        |step, reads, _| {
            for &w in reads {
                if last[w as usize] != KEPT {
                    last[w as usize] = step;
                }
            }
        },
    );

    let mut slots = SlotAllocator {
        last,
        slot: vec![u32::MAX; num_wires],
        free: Vec::new(),
        count: 0,
    };
    let inputs: Vec<u32> = io[0].iter().chain(io[1]).map(|w| w.0).collect();
    slots.place(&inputs);
    for_each_access(
        and_gates,
        linear_gates,
        layers,
        batch_lin_end,
        |step, reads, writes| {
            for &w in reads {
                slots.release(w, step);
            }
            slots.place(writes);
        },
    );
    let slot = slots.slot;
    let count = slots.count;

    for g in and_gates.iter_mut() {
        (g.a, g.b, g.out) = (slot[g.a as usize], slot[g.b as usize], slot[g.out as usize]);
    }
    for g in linear_gates.iter_mut() {
        g.a = slot[g.a as usize];
        if g.b != INV_MARK {
            g.b = slot[g.b as usize];
        }
        g.out = slot[g.out as usize];
    }
    let slots_of = |ws: &[WireId]| ws.iter().map(|w| slot[w.index()]).collect();
    Slots {
        count,
        garbler_inputs: slots_of(io[0]),
        evaluator_inputs: slots_of(io[1]),
        garbler_outputs: slots_of(io[2]),
        evaluator_outputs: slots_of(io[3]),
    }
}

/// Finds, layer by layer, the slots that feed two or more of the layer's AND gates (as either input), lists them
/// in `shared` (each layer's run ending at its `shared_end`) and replaces them in the gates by their slots, marked
/// [`SHARED`]. A layer where fewer than three in four of the AND inputs are shared keeps plain wires (its gates
/// are hashed one by one without a choice per input, which is faster there). `scratch` has one entry per wire;
/// its contents are overwritten.
fn share_inputs(
    and_gates: &mut [AndGate],
    layers: &mut [Layer],
    mut scratch: Vec<u32>,
) -> Vec<u32> {
    // scratch[w]: 0 = unseen in this layer, 1 = seen once, k + 2 = slot k. Reset for the wires of each layer.
    scratch.fill(0);
    let mut shared = Vec::new();
    let mut start = 0usize;
    for layer in layers.iter_mut() {
        let gates = &mut and_gates[start..layer.and_end as usize];
        let first = shared.len();
        for g in gates.iter() {
            for w in [g.a, g.b] {
                let s = &mut scratch[w as usize];
                match *s {
                    0 => *s = 1,
                    1 => {
                        *s = (shared.len() - first) as u32 + 2;
                        shared.push(w);
                    }
                    _ => {}
                }
            }
        }
        let uses = 2 * gates.len();
        let shared_uses = gates
            .iter()
            .flat_map(|g| [g.a, g.b])
            .filter(|&w| scratch[w as usize] >= 2)
            .count();
        for w in gates.iter().flat_map(|g| [g.a, g.b]) {
            if scratch[w as usize] == 1 || 4 * shared_uses < 3 * uses {
                scratch[w as usize] = 0;
            }
        }
        if 4 * shared_uses < 3 * uses {
            // Too few shared uses: the layer is hashed gate by gate, on the path without a branch per input.
            shared.truncate(first);
        }
        for g in gates.iter_mut() {
            for x in [&mut g.a, &mut g.b] {
                match scratch[*x as usize] {
                    0 => {}
                    k => *x = SHARED | (k - 2),
                }
            }
        }
        for &w in &shared[first..] {
            scratch[w as usize] = 0;
        }
        layer.shared_end = shared.len() as u32;
        start = layer.and_end as usize;
    }
    shared
}

fn digest_of(
    num_wires: u32,
    gi: &[WireId],
    ei: &[WireId],
    gates: &[Gate],
    go: &[WireId],
    eo: &[WireId],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"duo/gc/circuit/v1");
    h.update(num_wires.to_le_bytes());
    for list in [gi, ei, go, eo] {
        h.update((list.len() as u64).to_le_bytes());
        for w in list {
            h.update(w.0.to_le_bytes());
        }
    }
    h.update((gates.len() as u64).to_le_bytes());
    for g in gates {
        let (tag, a, b, out) = match *g {
            Gate::Xor { a, b, out } => (0u8, a.0, b.0, out.0),
            Gate::And { a, b, out } => (1u8, a.0, b.0, out.0),
            Gate::Inv { a, out } => (2u8, a.0, 0, out.0),
        };
        h.update([tag]);
        h.update(a.to_le_bytes());
        h.update(b.to_le_bytes());
        h.update(out.to_le_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(i: u32) -> WireId {
        WireId(i)
    }

    #[test]
    fn rejects_malformed_gate_lists() {
        let and = |a, b, out| Gate::And {
            a: w(a),
            b: w(b),
            out: w(out),
        };
        assert_eq!(
            Circuit::new(
                3,
                vec![w(0)],
                vec![w(1)],
                vec![and(0, 1, 3)],
                vec![],
                vec![]
            )
            .unwrap_err(),
            CircuitError::WireOutOfRange {
                wire: 3,
                num_wires: 3
            }
        );
        assert_eq!(
            Circuit::new(3, vec![w(0)], vec![w(0)], vec![], vec![], vec![]).unwrap_err(),
            CircuitError::AssignedTwice(0)
        );
        assert_eq!(
            Circuit::new(
                3,
                vec![w(0)],
                vec![w(1)],
                vec![and(0, 1, 1)],
                vec![],
                vec![]
            )
            .unwrap_err(),
            CircuitError::AssignedTwice(1)
        );
        assert_eq!(
            Circuit::new(
                4,
                vec![w(0)],
                vec![w(1)],
                vec![and(0, 3, 2), and(0, 1, 3)],
                vec![],
                vec![]
            )
            .unwrap_err(),
            CircuitError::UsedBeforeAssigned { gate: 0, wire: 3 }
        );
        assert_eq!(
            Circuit::new(3, vec![w(0)], vec![w(1)], vec![], vec![w(2)], vec![]).unwrap_err(),
            CircuitError::OutputUnassigned(2)
        );
    }

    #[test]
    fn wire_indices_stay_below_the_shared_mark() {
        // The schedule marks shared AND inputs with bit 31, so a circuit has at most 2^31 wires (refused before
        // anything is allocated for them).
        let too_many = Circuit::new((1 << 31) + 1, vec![], vec![], vec![], vec![], vec![]);
        assert_eq!(too_many.unwrap_err(), CircuitError::TooManyWires);
    }

    #[test]
    fn schedule_layers_and_gates_by_depth() {
        // x0 & x1 -> w2 ; w2 ^ x0 -> w3 ; w3 & x1 -> w4 ; x0 & x1 -> w5 (depth 1, after w3 in the list)
        let gates = vec![
            Gate::And {
                a: w(0),
                b: w(1),
                out: w(2),
            },
            Gate::Xor {
                a: w(2),
                b: w(0),
                out: w(3),
            },
            Gate::And {
                a: w(3),
                b: w(1),
                out: w(4),
            },
            Gate::And {
                a: w(0),
                b: w(1),
                out: w(5),
            },
            Gate::Inv { a: w(0), out: w(6) },
        ];
        let c = Circuit::new(
            7,
            vec![w(0)],
            vec![w(1)],
            gates,
            vec![w(4)],
            vec![w(5), w(6)],
        )
        .unwrap();
        assert_eq!(c.and_count(), 3);
        assert_eq!(c.and_depth(), 2);
        // Depth 1 holds the ANDs making w2 and w5 (in list order), depth 2 the one making w4; the gates name
        // label slots, which the order of the ANDs does not depend on.
        let ends: Vec<u32> = c.layers.iter().map(|l| l.and_end).collect();
        assert_eq!(ends, vec![0, 2, 3]);
        for (x, y) in [(false, false), (false, true), (true, false), (true, true)] {
            let o = c.eval_plain(&[x], &[y]).unwrap();
            assert_eq!(o.garbler, vec![((x & y) ^ x) & y]);
            assert_eq!(o.evaluator, vec![x & y, !x]);
        }
        assert!(c.to_bristol().contains("1 1 0 6 INV"));
        let c2 = Circuit::new(
            7,
            vec![w(0)],
            vec![w(1)],
            c.gates().to_vec(),
            vec![w(4)],
            vec![w(5)],
        )
        .unwrap();
        assert_ne!(c.digest(), c2.digest());
    }
}
