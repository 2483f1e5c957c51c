//! Garbled circuits: half-gates with free-XOR and point-and-permute, over a named hash.
//!
//! # Constructions
//!
//! - **Half-gates**: Zahur, Rosulek and Evans, "Two Halves Make a Whole: Reducing Data Transfer in Garbled
//!   Circuits using Half Gates" (EUROCRYPT 2015): two ciphertexts (32 bytes) per AND gate; XOR and INV are free.
//! - **Free-XOR**: Kolesnikov and Schneider, "Improved Garbled Circuit: Free XOR Gates and Applications"
//!   (ICALP 2008): every wire's one label is its zero label `⊕ Δ` for one secret `Δ`.
//! - **Point-and-permute**: `lsb(Δ) = 1`, so the lsb of a label selects the table row to use.
//! - **Hash**: the tweakable circular correlation-robust hash of Guo, Katz, Wang and Yu, "Efficient and Secure
//!   Multiparty Computation from Fixed-Key Block Ciphers" (IEEE S&P 2020): `H(x, i) = π(π(x) ⊕ i) ⊕ π(x)` with
//!   `π` fixed-key AES-128 ([`hash`]).
//!
//! # Tweaks
//!
//! AND gate number `k` of a session (counted across every circuit garbled under one `Δ`) hashes with the tweaks
//! `2k` (garbler half gate) and `2k + 1` (evaluator half gate). The counter lives in [`Garbler`], which owns its
//! [`Delta`] (not `Clone`); garbling reserves the gate numbers of a circuit before garbling it and no API
//! chooses or rewinds them, so a tweak is never used for two gates under one `Δ`. The evaluator reads the
//! circuit's first gate number from [`GarbledHeader::tweak_base`].
//!
//! # Roles and messages
//!
//! The owner garbles; the FI evaluates. Sans-io: each step takes the peer's message and returns the next.
//!
//! ```text
//!  owner (Garbler)                                             FI (Evaluator)
//!  garble()  --- GarbledHeader, GarbledTables (chunked), ----->
//!                OutputCommitments (PendingOutput::commitments)
//!            === evaluator input labels by OT (crate::ot) ===>
//!                                                               evaluate()
//!                                   OutputCommitments::check() (each label must be one the owner committed to)
//!            <-- OutputLabels (labels of the OWNER's outputs) --
//!  PendingOutput::check(): each label must be one of the two labels of its wire, or the run aborts
//!            --- OutputDecoding (bits for the FI's outputs) --->
//!                                                               AwaitingDecoding::decode()
//! ```
//!
//! # Speed
//!
//! AND gates are garbled layer by layer in batches of 64 independent gates, so each batch is two
//! `encrypt_blocks` calls of up to 256 blocks (garbling) or 128 blocks (evaluation); wire-label buffers are kept
//! across runs and nothing is allocated per gate. [`Garbler::garble_streaming`] hands the tables to a sink in
//! 64 KiB chunks instead of storing them, which matters for circuits with millions of AND gates.
//!
//! - **Shared first halves.** The hash is `π(π(x) ⊕ i) ⊕ π(x)`, and its first half `π(x)` does not depend on
//!   the tweak. A wire that feeds two or more AND gates of a layer (found when the circuit is built) has
//!   `π(L0)` and `π(L0 ⊕ Δ)` (garbler) or `π(L)` (evaluator) computed once for the layer, and each gate then
//!   costs only the second permutations: 4 AES calls per AND gate to garble and 2 to evaluate instead of 8
//!   and 4 when every input is shared, as in a multiplier or a comparison against many values. The hash
//!   values, and so the tables, are exactly those of hashing gate by gate. In the schedule such an input names
//!   its slot among the layer's shared wires, so a gate stays 12 bytes and its label is read from the layer's
//!   short list.
//! - **Few labels in memory.** Linear gates run right after the AND batch that completes their inputs, and the
//!   labels live in reused slots rather than one per wire ([`circuit`]), so the labels of a circuit with
//!   millions of wires take as much memory as its widest moment needs.
//!
//! # Security model
//!
//! - The FI (evaluator) may be malicious. It sees the tables, the owner's input labels, one label per FI input
//!   wire (by OT) and, after the check, the decoding bits of its own outputs; by the half-gates security
//!   theorem (with the hash TCCR and tweaks never reused under `Δ`) this reveals nothing beyond its outputs.
//!   It cannot make the owner accept an output the circuit did not compute: the owner accepts a label only if
//!   it equals one of the two labels of its output wire, and producing the other label (or any other valid
//!   one) without `Δ` is as hard as guessing a 127-bit secret (authenticity). The owner sends the FI's decoding
//!   bits only after that check, so an FI that cheats gets nothing. Which FI input the result is for is up to
//!   the FI (the ideal functionality allows it any input); OT with a malicious-secure extension delivers its
//!   labels.
//! - The owner is semi-honest toward the FI's inputs (the FI's model), with one guard: the evaluator returns a
//!   label on a garbler output wire only if it is one of the two labels the garbler committed to with the
//!   circuit ([`commit`]), and aborts otherwise. Without it a garbler that hands out wrong input labels gets
//!   back a label that encodes the evaluator's inputs (a whole weight from one run). With it an owner that
//!   garbles a wrong circuit or hands out wrong labels can still learn about one bit per owner output wire per
//!   run, by selective failure (the abort) or by the output itself, which is why the scoring circuits give the
//!   owner a single output wire by default, and why the FI stops scoring an owner after such an abort.
//! - Nothing here gives the evaluator correct outputs against a modified garbler: the garbler chooses the
//!   decoding bits (and could garble another circuit), so the evaluator's decoded output is what the garbler
//!   wants it to be.
//! - The garbler's secret state ([`Delta`], [`EvaluatorLabelPairs`], [`PendingOutput`]) has opaque `Debug` and
//!   is zeroized on drop. Garbling and evaluation run the same instructions whatever the label values, except
//!   for the table lookups they index by public wire numbers.
//!
//! # Errors
//!
//! [`Error::Peer`] means the other party sent something no honest party sends (abort the run, log it);
//! [`Error::Misuse`] means this party's caller broke the API's contract.

pub mod aes_circuit;
pub mod builder;
pub mod circuit;
pub mod commit;
pub mod eval;
pub mod garble;
pub mod hash;

#[cfg(test)]
mod tests;

pub use builder::{Bit, CircuitBuilder};
pub use circuit::{Circuit, CircuitError, Gate, WireId};
pub use commit::{output_label_hash, OutputCommitments};
pub use eval::{AwaitingDecoding, Evaluator};
pub use garble::{
    AcceptedOutput, Delta, EvaluatorLabelPairs, Garbler, Garbling, PendingOutput, StreamedGarbling,
};

use crate::block::Block;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An error of the garbling protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent something an honest peer never sends: abort the run.
    #[error("peer misbehaved: {0}")]
    Peer(#[from] PeerMisbehaved),
    /// The caller broke the API's contract.
    #[error("API misuse: {0}")]
    Misuse(#[from] ApiMisuse),
}

/// Ways a peer's message can be wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// The message is for another circuit (its digest differs).
    #[error("the message is for a different circuit")]
    CircuitMismatch,
    /// The garbled tables have the wrong length.
    #[error("garbled tables have {got} bytes, the circuit needs {expected}")]
    TableLength {
        /// Bytes the circuit needs.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The garbler sent the wrong number of input labels.
    #[error("{got} garbler input labels, the circuit has {expected} garbler inputs")]
    InputLabelCount {
        /// The circuit's garbler input count.
        expected: usize,
        /// Labels received.
        got: usize,
    },
    /// The tweak range of the header overflows.
    #[error("the tweak range of the garbled circuit overflows")]
    TweakRange,
    /// The evaluator returned the wrong number of output labels.
    #[error("{got} output labels, the circuit has {expected} garbler outputs")]
    OutputLabelCount {
        /// The circuit's garbler output count.
        expected: usize,
        /// Labels received.
        got: usize,
    },
    /// An output label is neither of its wire's two labels: the circuit did not compute it.
    #[error("output label {index} is not a label of its wire; the circuit did not compute it")]
    InvalidOutputLabel {
        /// Index among the garbler's outputs.
        index: usize,
    },
    /// The evaluator's label on a garbler output wire is neither label the garbler committed to: the garbler
    /// handed out wrong input labels or garbled other tables ([`commit`]).
    #[error(
        "the label of the owner's output wire {index} is neither label the owner committed to: it garbled \
         or delivered labels dishonestly"
    )]
    UncommittedOutputLabel {
        /// Index among the garbler's outputs.
        index: usize,
    },
    /// The decoding message has the wrong length.
    #[error("{got} decoding bits, the circuit has {expected} evaluator outputs")]
    DecodingLength {
        /// The circuit's evaluator output count.
        expected: usize,
        /// Bits received.
        got: usize,
    },
}

/// Ways the caller can misuse the API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// An input of the wrong length.
    #[error("{party} input has {got} entries, the circuit takes {expected}")]
    InputLength {
        /// `"garbler"` or `"evaluator"`.
        party: &'static str,
        /// What the circuit takes.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// `Δ` must have lsb 1 (point-and-permute).
    #[error("Δ must have its least significant bit set")]
    DeltaLsbZero,
    /// This `Δ` has numbered 2^63 AND gates; start a new session with a new `Δ`.
    #[error("the gate counter of this Δ is exhausted; start a new session")]
    TweaksExhausted,
}

/// Garbler → evaluator: which circuit, the first gate number (tweak base), and the garbler's input labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbledHeader {
    /// [`Circuit::digest`] of the garbled circuit.
    pub circuit_digest: [u8; 32],
    /// The session gate number of the circuit's first AND gate (gate `k` hashes with tweaks `2k`, `2k + 1`).
    pub tweak_base: u64,
    /// The label of each garbler input wire for the garbler's actual input.
    pub garbler_labels: Vec<Block>,
}

/// Garbler → evaluator: the garbled tables, 32 bytes per AND gate (`T_G ‖ T_E`, little-endian), in schedule
/// order. Sent in chunks ([`GarbledTables::chunks`]) and reassembled by a [`TableReceiver`].
#[derive(Clone, PartialEq, Eq)]
pub struct GarbledTables {
    bytes: Vec<u8>,
}

impl fmt::Debug for GarbledTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GarbledTables({} bytes)", self.bytes.len())
    }
}

impl GarbledTables {
    pub(crate) fn from_vec_unchecked(bytes: Vec<u8>) -> GarbledTables {
        GarbledTables { bytes }
    }

    /// Tables received in one piece, checked against the circuit's AND count.
    pub fn from_bytes(circuit: &Circuit, bytes: Vec<u8>) -> Result<GarbledTables, Error> {
        if bytes.len() != circuit.table_bytes() {
            return Err(PeerMisbehaved::TableLength {
                expected: circuit.table_bytes(),
                got: bytes.len(),
            }
            .into());
        }
        Ok(GarbledTables { bytes })
    }

    /// The tables as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The tables in chunks of at most `max_bytes` (rounded down to whole gates, at least one gate).
    pub fn chunks(&self, max_bytes: usize) -> impl Iterator<Item = &[u8]> {
        let size = (max_bytes / 32).max(1) * 32;
        self.bytes.chunks(size)
    }

    /// Flips one bit of the tables (tests of tampering).
    #[cfg(test)]
    pub(crate) fn flip_bit(&mut self, bit: usize) {
        self.bytes[bit / 8] ^= 1 << (bit % 8);
    }
}

/// Reassembles [`GarbledTables`] from chunks, refusing more bytes than the circuit needs.
#[derive(Debug)]
pub struct TableReceiver {
    expected: usize,
    bytes: Vec<u8>,
}

impl TableReceiver {
    /// A receiver for the tables of `circuit`.
    pub fn new(circuit: &Circuit) -> TableReceiver {
        TableReceiver {
            expected: circuit.table_bytes(),
            bytes: Vec::with_capacity(circuit.table_bytes()),
        }
    }

    /// Appends a chunk; refuses one that would exceed the circuit's table size.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let got = self.bytes.len().saturating_add(chunk.len());
        if got > self.expected {
            return Err(PeerMisbehaved::TableLength {
                expected: self.expected,
                got,
            }
            .into());
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// Bytes still missing.
    pub fn remaining(&self) -> usize {
        self.expected - self.bytes.len()
    }

    /// The tables, once all bytes arrived.
    pub fn finish(self) -> Result<GarbledTables, Error> {
        if self.bytes.len() != self.expected {
            return Err(PeerMisbehaved::TableLength {
                expected: self.expected,
                got: self.bytes.len(),
            }
            .into());
        }
        Ok(GarbledTables { bytes: self.bytes })
    }
}

/// Evaluator → garbler: the labels the evaluator obtained on the garbler's output wires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLabels {
    /// [`Circuit::digest`] of the evaluated circuit.
    pub circuit_digest: [u8; 32],
    /// One label per garbler output wire.
    pub labels: Vec<Block>,
}

/// Garbler → evaluator, after the garbler accepted [`OutputLabels`]: the point-and-permute bit of the zero label
/// of each evaluator output wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDecoding {
    /// [`Circuit::digest`] of the circuit.
    pub circuit_digest: [u8; 32],
    /// One bit per evaluator output wire.
    pub bits: Vec<bool>,
}
