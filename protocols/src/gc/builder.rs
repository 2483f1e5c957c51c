//! Building circuits: a [`CircuitBuilder`] with constant folding and the arithmetic the scoring program needs.
//!
//! Values are [`Bit`]s: a wire or a public constant. Gates with a constant input are folded away (`x ∧ 0 = 0`,
//! `x ⊕ 1 = ¬x`, ...), so comparing against a public threshold costs no more than the comparison itself.
//! Words are `Vec<Bit>` / `&[Bit]`, least significant bit first, read as two's complement where signed.
//!
//! Costs (AND gates) for `n`-bit words: [`CircuitBuilder::add`] and [`CircuitBuilder::sub`] `n − 1`;
//! [`CircuitBuilder::sign_of_sum`] `n − 1` (63 for the scoring decision); [`CircuitBuilder::ge_signed`] and
//! [`CircuitBuilder::ge_unsigned`] `n` (fewer against constants); [`CircuitBuilder::eq`] `n − 1`;
//! [`CircuitBuilder::mux`] 1 per bit; [`CircuitBuilder::quantize`] `k − 1` comparisons for `k` bands, the band
//! index itself is XOR-only.

use super::circuit::{Circuit, CircuitError, Gate, WireId};

/// A value in a circuit under construction: a wire, or a public constant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Bit {
    /// A public constant.
    Const(bool),
    /// A wire.
    Wire(WireId),
}

impl Bit {
    /// The constant zero.
    pub const ZERO: Bit = Bit::Const(false);
    /// The constant one.
    pub const ONE: Bit = Bit::Const(true);
}

/// Builds a [`Circuit`] gate by gate. See the module docs.
#[derive(Debug, Default)]
pub struct CircuitBuilder {
    num_wires: u32,
    garbler_inputs: Vec<WireId>,
    evaluator_inputs: Vec<WireId>,
    gates: Vec<Gate>,
    garbler_outputs: Vec<Bit>,
    evaluator_outputs: Vec<Bit>,
}

impl CircuitBuilder {
    /// An empty builder.
    pub fn new() -> CircuitBuilder {
        CircuitBuilder::default()
    }

    fn fresh(&mut self) -> WireId {
        let w = WireId(self.num_wires);
        self.num_wires += 1;
        w
    }

    /// One garbler input bit.
    pub fn garbler_input(&mut self) -> Bit {
        let w = self.fresh();
        self.garbler_inputs.push(w);
        Bit::Wire(w)
    }

    /// `n` garbler input bits (a word, LSB first).
    pub fn garbler_inputs(&mut self, n: usize) -> Vec<Bit> {
        (0..n).map(|_| self.garbler_input()).collect()
    }

    /// One evaluator input bit.
    pub fn evaluator_input(&mut self) -> Bit {
        let w = self.fresh();
        self.evaluator_inputs.push(w);
        Bit::Wire(w)
    }

    /// `n` evaluator input bits (a word, LSB first).
    pub fn evaluator_inputs(&mut self, n: usize) -> Vec<Bit> {
        (0..n).map(|_| self.evaluator_input()).collect()
    }

    /// Marks a bit as an output the garbler learns.
    pub fn garbler_output(&mut self, b: Bit) {
        self.garbler_outputs.push(b);
    }

    /// Marks a bit as an output the evaluator learns.
    pub fn evaluator_output(&mut self, b: Bit) {
        self.evaluator_outputs.push(b);
    }

    /// Number of AND gates emitted so far.
    pub fn and_count(&self) -> usize {
        self.gates
            .iter()
            .filter(|g| matches!(g, Gate::And { .. }))
            .count()
    }

    /// `a ⊕ b`.
    pub fn xor(&mut self, a: Bit, b: Bit) -> Bit {
        match (a, b) {
            (Bit::Const(x), Bit::Const(y)) => Bit::Const(x ^ y),
            (Bit::Const(false), w) | (w, Bit::Const(false)) => w,
            (Bit::Const(true), w) | (w, Bit::Const(true)) => self.not(w),
            (Bit::Wire(x), Bit::Wire(y)) => {
                let out = self.fresh();
                self.gates.push(Gate::Xor { a: x, b: y, out });
                Bit::Wire(out)
            }
        }
    }

    /// `a ∧ b` (one AND gate unless an input is constant).
    pub fn and(&mut self, a: Bit, b: Bit) -> Bit {
        match (a, b) {
            (Bit::Const(x), Bit::Const(y)) => Bit::Const(x & y),
            (Bit::Const(false), _) | (_, Bit::Const(false)) => Bit::ZERO,
            (Bit::Const(true), w) | (w, Bit::Const(true)) => w,
            (Bit::Wire(x), Bit::Wire(y)) => {
                let out = self.fresh();
                self.gates.push(Gate::And { a: x, b: y, out });
                Bit::Wire(out)
            }
        }
    }

    /// `¬a` (free).
    pub fn not(&mut self, a: Bit) -> Bit {
        match a {
            Bit::Const(x) => Bit::Const(!x),
            Bit::Wire(x) => {
                let out = self.fresh();
                self.gates.push(Gate::Inv { a: x, out });
                Bit::Wire(out)
            }
        }
    }

    /// `a ∨ b = a ⊕ b ⊕ (a ∧ b)` (one AND).
    pub fn or(&mut self, a: Bit, b: Bit) -> Bit {
        let x = self.xor(a, b);
        let y = self.and(a, b);
        self.xor(x, y)
    }

    /// `if sel { b } else { a }` = `a ⊕ sel ∧ (a ⊕ b)` (one AND).
    pub fn mux(&mut self, sel: Bit, a: Bit, b: Bit) -> Bit {
        let d = self.xor(a, b);
        let m = self.and(sel, d);
        self.xor(a, m)
    }

    /// Word-wise [`CircuitBuilder::mux`]: `if sel { b } else { a }`.
    ///
    /// # Panics
    /// If the widths differ.
    pub fn mux_word(&mut self, sel: Bit, a: &[Bit], b: &[Bit]) -> Vec<Bit> {
        assert_eq!(a.len(), b.len(), "mux_word: widths differ");
        a.iter()
            .zip(b)
            .map(|(&x, &y)| self.mux(sel, x, y))
            .collect()
    }

    /// A public constant word: the low `width` bits of `value`, LSB first.
    pub fn constant(&self, value: u64, width: usize) -> Vec<Bit> {
        (0..width)
            .map(|i| Bit::Const(i < 64 && (value >> i) & 1 == 1))
            .collect()
    }

    /// The carry into each position of `a + b + cin`: returns `(carries[0..=n])` with `carries[0] = cin`.
    /// Each carry costs one AND: `c' = c ⊕ ((a ⊕ c) ∧ (b ⊕ c))`.
    fn carries(&mut self, a: &[Bit], b: &[Bit], cin: Bit, upto: usize) -> Vec<Bit> {
        let mut c = Vec::with_capacity(upto + 1);
        c.push(cin);
        for i in 0..upto {
            let ci = c[i];
            let x = self.xor(a[i], ci);
            let y = self.xor(b[i], ci);
            let t = self.and(x, y);
            let next = self.xor(ci, t);
            c.push(next);
        }
        c
    }

    /// `a + b mod 2^n` (ripple carry, `n − 1` ANDs).
    ///
    /// # Panics
    /// If the widths differ.
    pub fn add(&mut self, a: &[Bit], b: &[Bit]) -> Vec<Bit> {
        assert_eq!(a.len(), b.len(), "add: widths differ");
        self.add_with_carry(a, b, Bit::ZERO)
    }

    fn add_with_carry(&mut self, a: &[Bit], b: &[Bit], cin: Bit) -> Vec<Bit> {
        let n = a.len();
        if n == 0 {
            return Vec::new();
        }
        let c = self.carries(a, b, cin, n - 1);
        (0..n)
            .map(|i| {
                let s = self.xor(a[i], b[i]);
                self.xor(s, c[i])
            })
            .collect()
    }

    /// `a − b mod 2^n` = `a + ¬b + 1` (`n − 1` ANDs).
    ///
    /// # Panics
    /// If the widths differ.
    pub fn sub(&mut self, a: &[Bit], b: &[Bit]) -> Vec<Bit> {
        assert_eq!(a.len(), b.len(), "sub: widths differ");
        let nb: Vec<Bit> = b.iter().map(|&x| self.not(x)).collect();
        self.add_with_carry(a, &nb, Bit::ONE)
    }

    /// The most significant bit of `a + b mod 2^n`: the sign of the sum of two two's-complement shares (`n − 1`
    /// ANDs; 63 for 64-bit shares).
    ///
    /// # Panics
    /// If the widths differ or are zero.
    pub fn sign_of_sum(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        assert_eq!(a.len(), b.len(), "sign_of_sum: widths differ");
        let n = a.len();
        assert!(n > 0, "sign_of_sum: empty words");
        let c = self.carries(a, b, Bit::ZERO, n - 1);
        let s = self.xor(a[n - 1], b[n - 1]);
        self.xor(s, c[n - 1])
    }

    /// `a ≥ b` as unsigned integers: the carry out of `a + ¬b + 1` (`n` ANDs).
    ///
    /// # Panics
    /// If the widths differ.
    pub fn ge_unsigned(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        assert_eq!(a.len(), b.len(), "ge_unsigned: widths differ");
        let nb: Vec<Bit> = b.iter().map(|&x| self.not(x)).collect();
        let c = self.carries(a, &nb, Bit::ONE, a.len());
        c[a.len()]
    }

    /// `a ≥ b` as two's-complement integers (`n` ANDs): unsigned comparison with both sign bits flipped.
    ///
    /// # Panics
    /// If the widths differ or are zero.
    pub fn ge_signed(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        assert_eq!(a.len(), b.len(), "ge_signed: widths differ");
        let n = a.len();
        assert!(n > 0, "ge_signed: empty words");
        let mut a2 = a.to_vec();
        let mut b2 = b.to_vec();
        a2[n - 1] = self.not(a[n - 1]);
        b2[n - 1] = self.not(b[n - 1]);
        self.ge_unsigned(&a2, &b2)
    }

    /// `a < b` as two's-complement integers.
    ///
    /// # Panics
    /// If the widths differ or are zero.
    pub fn lt_signed(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        let ge = self.ge_signed(a, b);
        self.not(ge)
    }

    /// `a = b` (`n − 1` ANDs, a balanced tree).
    ///
    /// # Panics
    /// If the widths differ.
    pub fn eq(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        assert_eq!(a.len(), b.len(), "eq: widths differ");
        let mut level: Vec<Bit> = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| {
                let d = self.xor(x, y);
                self.not(d)
            })
            .collect();
        if level.is_empty() {
            return Bit::ONE;
        }
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len().div_ceil(2));
            for pair in level.chunks(2) {
                next.push(if pair.len() == 2 {
                    self.and(pair[0], pair[1])
                } else {
                    pair[0]
                });
            }
            level = next;
        }
        level[0]
    }

    /// Quantizes a signed value into `k = thresholds.len() + 1` bands: the band index is the number of thresholds
    /// `t` with `x ≥ t` (signed), output in `⌈log2 k⌉` bits, LSB first. With thresholds in ascending order the
    /// comparison bits form a thermometer code and the index is XOR-only; with thresholds out of order (which
    /// only a private threshold can be) the output is still a function of `x` of `⌈log2 k⌉` bits.
    ///
    /// # Panics
    /// If a threshold's width differs from `x`'s.
    pub fn quantize(&mut self, x: &[Bit], thresholds: &[Vec<Bit>]) -> Vec<Bit> {
        let k = thresholds.len() + 1;
        let bits = band_bits(k);
        let ge: Vec<Bit> = thresholds.iter().map(|t| self.ge_signed(x, t)).collect();
        // Bit m of the count c of a thermometer code g_1..g_{k-1} (g_j = 1 iff j ≤ c) is the parity of
        // #{j ≤ c : 2^m | j} = XOR of g_j over j divisible by 2^m.
        (0..bits)
            .map(|m| {
                let step = 1usize << m;
                let mut acc = Bit::ZERO;
                let mut j = step;
                while j < k {
                    acc = self.xor(acc, ge[j - 1]);
                    j += step;
                }
                acc
            })
            .collect()
    }

    /// [`CircuitBuilder::quantize`] against public thresholds, which must be strictly ascending.
    pub fn quantize_public(
        &mut self,
        x: &[Bit],
        thresholds: &[i64],
    ) -> Result<Vec<Bit>, BandError> {
        if let Some(i) = thresholds.windows(2).position(|w| w[0] >= w[1]) {
            return Err(BandError::NotAscending { index: i + 1 });
        }
        let ts: Vec<Vec<Bit>> = thresholds
            .iter()
            .map(|&t| self.constant(t as u64, x.len()))
            .collect();
        Ok(self.quantize(x, &ts))
    }

    /// Finishes the circuit. A constant output becomes a wire `w ⊕ w` (zero) or its inverse, from the first
    /// input wire.
    pub fn build(mut self) -> Result<Circuit, CircuitError> {
        let garbler_outputs = std::mem::take(&mut self.garbler_outputs);
        let evaluator_outputs = std::mem::take(&mut self.evaluator_outputs);
        let mut zero: Option<WireId> = None;
        let mut materialize = |b: &mut Self, bit: Bit| -> Result<WireId, CircuitError> {
            match bit {
                Bit::Wire(w) => Ok(w),
                Bit::Const(v) => {
                    let z = match zero {
                        Some(z) => z,
                        None => {
                            let src = *b
                                .garbler_inputs
                                .first()
                                .or(b.evaluator_inputs.first())
                                .ok_or(CircuitError::ConstantWithoutInputs)?;
                            let z = b.fresh();
                            b.gates.push(Gate::Xor {
                                a: src,
                                b: src,
                                out: z,
                            });
                            zero = Some(z);
                            z
                        }
                    };
                    if v {
                        let o = b.fresh();
                        b.gates.push(Gate::Inv { a: z, out: o });
                        Ok(o)
                    } else {
                        Ok(z)
                    }
                }
            }
        };
        let mut go = Vec::with_capacity(garbler_outputs.len());
        for bit in garbler_outputs {
            go.push(materialize(&mut self, bit)?);
        }
        let mut eo = Vec::with_capacity(evaluator_outputs.len());
        for bit in evaluator_outputs {
            eo.push(materialize(&mut self, bit)?);
        }
        Circuit::new(
            self.num_wires as usize,
            self.garbler_inputs,
            self.evaluator_inputs,
            self.gates,
            go,
            eo,
        )
    }
}

/// Number of output bits for `k` bands: `⌈log2 k⌉` (at least 1).
pub fn band_bits(k: usize) -> usize {
    (usize::BITS - k.saturating_sub(1).leading_zeros()).max(1) as usize
}

/// Public band thresholds that are not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BandError {
    /// Threshold `index` is not above the one before it.
    #[error("band thresholds must be strictly ascending; threshold {index} is not above the one before it")]
    NotAscending {
        /// Index of the offending threshold.
        index: usize,
    },
}

/// The 2PC scoring decision circuit: the garbler (owner) inputs its 64-bit share, the evaluator (FI) its 64-bit
/// share with `bias − threshold` folded in; both learn one bit, `1` iff `(a + b) mod 2^64`, read as signed, is
/// non-negative (63 AND gates).
pub fn decision_circuit() -> Circuit {
    let mut b = CircuitBuilder::new();
    let owner = b.garbler_inputs(64);
    let fi = b.evaluator_inputs(64);
    let sign = b.sign_of_sum(&owner, &fi);
    let decision = b.not(sign);
    b.garbler_output(decision);
    b.evaluator_output(decision);
    b.build().expect("the decision circuit is well formed")
}

/// Bits of one reason index for `n` attributes: the bit length of `n`, so that the all-ones word (the
/// sentinel of an approval) is never an attribute index `0..n`.
pub fn reason_index_bits(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()).max(1) as usize
}

/// The 2PC decision-with-reasons circuit for `n` attributes and `k ≤ n` reasons.
///
/// Inputs, 64-bit words LSB first: the garbler (owner) inputs its share `a` of the decision sum, then its
/// share `a_i` of each attribute's contribution `w_i x_i`; the evaluator (FI) inputs its share `b` of the
/// decision sum (with `bias − threshold` folded in), then `d_i = best_i − b_i` for each attribute, where
/// `b_i` is its share of the contribution and `best_i = max(w_i lo_i, w_i hi_i)` the best contribution
/// within the attribute's public bounds. In the circuit the shortfall of attribute `i` is
/// `s_i = d_i − a_i = best_i − w_i x_i` (non-negative for an honest FI) and the decision is
/// `a + b ≥ 0` (signed), as in [`decision_circuit`].
///
/// Outputs, to both parties: the decision bit, then `k` indices of [`reason_index_bits`]`(n)` bits each:
/// the attributes with the largest shortfalls, largest first, ties to the lower index (round `r` scans
/// the attributes not yet chosen in index order and keeps the first strictly larger shortfall, comparing
/// the shortfalls as unsigned integers). On an approval every index bit is ORed with the decision, so each
/// index reads all ones: the reasons wires then carry nothing but the decision. Whatever the FI inputs,
/// a decline names `k` distinct attributes (a chosen attribute drops out of later rounds by a flag above
/// the shortfall's top bit).
///
/// About `k·n·(2·65 + 2·B) + 63·n` AND gates for `B`-bit indices (about 20 000 for 32 attributes and 4
/// reasons).
///
/// # Panics
/// If `k` is 0 or above `n`.
pub fn reasons_circuit(n: usize, k: usize) -> Circuit {
    assert!(k >= 1 && k <= n, "reasons_circuit: need 1 <= k <= n");
    let idx_bits = reason_index_bits(n);
    let mut b = CircuitBuilder::new();
    let owner_sum = b.garbler_inputs(64);
    let owner_terms: Vec<Vec<Bit>> = (0..n).map(|_| b.garbler_inputs(64)).collect();
    let fi_sum = b.evaluator_inputs(64);
    let fi_terms: Vec<Vec<Bit>> = (0..n).map(|_| b.evaluator_inputs(64)).collect();
    let sign = b.sign_of_sum(&owner_sum, &fi_sum);
    let approve = b.not(sign);
    // Each value: the shortfall (64 bits) and above it the flag "not chosen yet" (bit 64).
    let mut values: Vec<Vec<Bit>> = fi_terms
        .iter()
        .zip(&owner_terms)
        .map(|(d, a)| {
            let mut v = b.sub(d, a);
            v.push(Bit::ONE);
            v
        })
        .collect();
    let mut chosen = Vec::with_capacity(k);
    for round in 0..k {
        let mut best = values[0].clone();
        let mut best_index = b.constant(0, idx_bits);
        for (i, candidate) in values.iter().enumerate().skip(1) {
            let keep = b.ge_unsigned(&best, candidate);
            let take = b.not(keep);
            if i + 1 < n {
                best = b.mux_word(take, &best, candidate);
            }
            let index = b.constant(i as u64, idx_bits);
            best_index = b.mux_word(take, &best_index, &index);
        }
        if round + 1 < k {
            for (i, v) in values.iter_mut().enumerate() {
                let index = b.constant(i as u64, idx_bits);
                let hit = b.eq(&best_index, &index);
                let miss = b.not(hit);
                v[64] = b.and(v[64], miss);
            }
        }
        chosen.push(best_index);
    }
    b.garbler_output(approve);
    b.evaluator_output(approve);
    for index in chosen {
        for bit in index {
            let out = b.or(bit, approve);
            b.garbler_output(out);
            b.evaluator_output(out);
        }
    }
    b.build().expect("the reasons circuit is well formed")
}

/// The band thresholds of a [`bands_circuit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Thresholds {
    /// Public thresholds, strictly ascending (at the score's scale); `k = len + 1` bands.
    Public(Vec<i64>),
    /// `count` thresholds that are FI-private evaluator inputs (64 bits each, after the FI's share, in
    /// ascending order by the FI's choice); `k = count + 1` bands.
    Private {
        /// Number of thresholds.
        count: usize,
    },
}

/// The 2PC banded-score circuit: the score is `(a + b) mod 2^64` (owner share `a`, FI share `b` with the bias
/// folded in), compared against the thresholds; both parties learn the band index in `⌈log2 k⌉` bits.
pub fn bands_circuit(thresholds: &Thresholds) -> Result<Circuit, BandError> {
    let mut b = CircuitBuilder::new();
    let owner = b.garbler_inputs(64);
    let fi = b.evaluator_inputs(64);
    let score = b.add(&owner, &fi);
    let band = match thresholds {
        Thresholds::Public(ts) => b.quantize_public(&score, ts)?,
        Thresholds::Private { count } => {
            let ts: Vec<Vec<Bit>> = (0..*count).map(|_| b.evaluator_inputs(64)).collect();
            b.quantize(&score, &ts)
        }
    };
    for &bit in &band {
        b.garbler_output(bit);
        b.evaluator_output(bit);
    }
    Ok(b.build().expect("the bands circuit is well formed"))
}

/// Bits of a `u64`, LSB first (helper for circuit inputs).
pub fn u64_to_bits(x: u64, width: usize) -> Vec<bool> {
    (0..width).map(|i| i < 64 && (x >> i) & 1 == 1).collect()
}

/// The `u64` whose low bits are `bits` (LSB first; at most 64 bits are read).
pub fn bits_to_u64(bits: &[bool]) -> u64 {
    bits.iter()
        .take(64)
        .enumerate()
        .fold(0u64, |acc, (i, &b)| acc | ((b as u64) << i))
}
