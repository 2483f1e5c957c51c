//! An AES-128 circuit, generated in code: the standard benchmark circuit of the garbling literature.
//!
//! The S-box is the 113-gate circuit of Boyar and Peralta ("A new combinational logic minimization technique
//! with applications to cryptology", SEA 2010; eprint 2009/191): 32 AND gates, the rest XOR/XNOR. AES-128 with
//! its key schedule runs 200 S-boxes (160 in the rounds, 40 in the key expansion), so the circuit has
//! 200 · 32 = 6400 AND gates; ShiftRows is wiring and MixColumns / AddRoundKey are XOR-only.
//!
//! Layout: the garbler inputs the 128 key bits, the evaluator the 128 plaintext bits, and the evaluator learns
//! the 128 ciphertext bits. Byte `j` of a block, bit `i` (LSB first) is input/output index `8j + i`; see
//! [`bytes_to_bits`] and [`bits_to_bytes`].

use super::builder::{Bit, CircuitBuilder};
use super::circuit::Circuit;

/// The AES S-box on one byte (`x[i]` = bit `i`, LSB first), as the Boyar–Peralta circuit (32 AND gates).
pub fn sbox(b: &mut CircuitBuilder, x: [Bit; 8]) -> [Bit; 8] {
    // The paper numbers bits MSB first: x0 is the high bit.
    let [x7, x6, x5, x4, x3, x2, x1, x0] = x;
    macro_rules! xor {
        ($a:expr, $b:expr) => {
            b.xor($a, $b)
        };
    }
    macro_rules! and {
        ($a:expr, $b:expr) => {
            b.and($a, $b)
        };
    }
    macro_rules! xnor {
        ($a:expr, $b:expr) => {{
            let t = b.xor($a, $b);
            b.not(t)
        }};
    }
    // Top linear transformation.
    let y14 = xor!(x3, x5);
    let y13 = xor!(x0, x6);
    let y9 = xor!(x0, x3);
    let y8 = xor!(x0, x5);
    let t0 = xor!(x1, x2);
    let y1 = xor!(t0, x7);
    let y4 = xor!(y1, x3);
    let y12 = xor!(y13, y14);
    let y2 = xor!(y1, x0);
    let y5 = xor!(y1, x6);
    let y3 = xor!(y5, y8);
    let t1 = xor!(x4, y12);
    let y15 = xor!(t1, x5);
    let y20 = xor!(t1, x1);
    let y6 = xor!(y15, x7);
    let y10 = xor!(y15, t0);
    let y11 = xor!(y20, y9);
    let y7 = xor!(x7, y11);
    let y17 = xor!(y10, y11);
    let y19 = xor!(y10, y8);
    let y16 = xor!(t0, y11);
    let y21 = xor!(y13, y16);
    let y18 = xor!(x0, y16);
    // Shared non-linear middle: inversion in GF(2^4)^2.
    let t2 = and!(y12, y15);
    let t3 = and!(y3, y6);
    let t4 = xor!(t3, t2);
    let t5 = and!(y4, x7);
    let t6 = xor!(t5, t2);
    let t7 = and!(y13, y16);
    let t8 = and!(y5, y1);
    let t9 = xor!(t8, t7);
    let t10 = and!(y2, y7);
    let t11 = xor!(t10, t7);
    let t12 = and!(y9, y11);
    let t13 = and!(y14, y17);
    let t14 = xor!(t13, t12);
    let t15 = and!(y8, y10);
    let t16 = xor!(t15, t12);
    let t17 = xor!(t4, t14);
    let t18 = xor!(t6, t16);
    let t19 = xor!(t9, t14);
    let t20 = xor!(t11, t16);
    let t21 = xor!(t17, y20);
    let t22 = xor!(t18, y19);
    let t23 = xor!(t19, y21);
    let t24 = xor!(t20, y18);
    let t25 = xor!(t21, t22);
    let t26 = and!(t21, t23);
    let t27 = xor!(t24, t26);
    let t28 = and!(t25, t27);
    let t29 = xor!(t28, t22);
    let t30 = xor!(t23, t24);
    let t31 = xor!(t22, t26);
    let t32 = and!(t31, t30);
    let t33 = xor!(t32, t24);
    let t34 = xor!(t23, t33);
    let t35 = xor!(t27, t33);
    let t36 = and!(t24, t35);
    let t37 = xor!(t36, t34);
    let t38 = xor!(t27, t36);
    let t39 = and!(t29, t38);
    let t40 = xor!(t25, t39);
    let t41 = xor!(t40, t37);
    let t42 = xor!(t29, t33);
    let t43 = xor!(t29, t40);
    let t44 = xor!(t33, t37);
    let t45 = xor!(t42, t41);
    let z0 = and!(t44, y15);
    let z1 = and!(t37, y6);
    let z2 = and!(t33, x7);
    let z3 = and!(t43, y16);
    let z4 = and!(t40, y1);
    let z5 = and!(t29, y7);
    let z6 = and!(t42, y11);
    let z7 = and!(t45, y17);
    let z8 = and!(t41, y10);
    let z9 = and!(t44, y12);
    let z10 = and!(t37, y3);
    let z11 = and!(t33, y4);
    let z12 = and!(t43, y13);
    let z13 = and!(t40, y5);
    let z14 = and!(t29, y2);
    let z15 = and!(t42, y9);
    let z16 = and!(t45, y14);
    let z17 = and!(t41, y8);
    // Bottom linear transformation.
    let t46 = xor!(z15, z16);
    let t47 = xor!(z10, z11);
    let t48 = xor!(z5, z13);
    let t49 = xor!(z9, z10);
    let t50 = xor!(z2, z12);
    let t51 = xor!(z2, z5);
    let t52 = xor!(z7, z8);
    let t53 = xor!(z0, z3);
    let t54 = xor!(z6, z7);
    let t55 = xor!(z16, z17);
    let t56 = xor!(z12, t48);
    let t57 = xor!(t50, t53);
    let t58 = xor!(z4, t46);
    let t59 = xor!(z3, t54);
    let t60 = xor!(t46, t57);
    let t61 = xor!(z14, t57);
    let t62 = xor!(t52, t58);
    let t63 = xor!(t49, t58);
    let t64 = xor!(z4, t59);
    let t65 = xor!(t61, t62);
    let t66 = xor!(z1, t63);
    let s0 = xor!(t59, t63);
    let s6 = xnor!(t56, t62);
    let s7 = xnor!(t48, t60);
    let t67 = xor!(t64, t65);
    let s3 = xor!(t53, t66);
    let s4 = xor!(t51, t66);
    let s5 = xor!(t47, t65);
    let s1 = xnor!(t64, s3);
    let s2 = xnor!(t55, t67);
    [s7, s6, s5, s4, s3, s2, s1, s0]
}

type Byte = [Bit; 8];

fn xor_byte(b: &mut CircuitBuilder, x: Byte, y: Byte) -> Byte {
    std::array::from_fn(|i| b.xor(x[i], y[i]))
}

/// Multiplication by `x` in GF(2^8) (linear: shift, then reduce by 0x1b).
fn xtime(b: &mut CircuitBuilder, a: Byte) -> Byte {
    let hi = a[7];
    [
        hi,
        b.xor(a[0], hi),
        a[1],
        b.xor(a[2], hi),
        b.xor(a[3], hi),
        a[4],
        a[5],
        a[6],
    ]
}

fn const_byte(v: u8) -> Byte {
    std::array::from_fn(|i| Bit::Const((v >> i) & 1 == 1))
}

/// The AES-128 key expansion: 11 round keys of 16 bytes.
fn expand_key(b: &mut CircuitBuilder, key: [Byte; 16]) -> Vec<[Byte; 16]> {
    const RCON: [u8; 10] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36];
    let mut w: Vec<[Byte; 4]> = (0..4)
        .map(|i| [key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
        .collect();
    for i in 4..44 {
        let mut t = w[i - 1];
        if i % 4 == 0 {
            t = [t[1], t[2], t[3], t[0]];
            for byte in t.iter_mut() {
                *byte = sbox(b, *byte);
            }
            t[0] = xor_byte(b, t[0], const_byte(RCON[i / 4 - 1]));
        }
        let prev = w[i - 4];
        let next: [Byte; 4] = std::array::from_fn(|j| xor_byte(b, prev[j], t[j]));
        w.push(next);
    }
    (0..11)
        .map(|r| std::array::from_fn(|j| w[4 * r + j / 4][j % 4]))
        .collect()
}

/// AES-128 encryption of `block` under `key` as gates (bytes in the standard order, column-major state).
pub fn aes128(b: &mut CircuitBuilder, key: [Byte; 16], block: [Byte; 16]) -> [Byte; 16] {
    let rk = expand_key(b, key);
    let mut s: [Byte; 16] = std::array::from_fn(|j| xor_byte(b, block[j], rk[0][j]));
    for (round, round_key) in rk.iter().enumerate().skip(1) {
        // SubBytes
        for byte in s.iter_mut() {
            *byte = sbox(b, *byte);
        }
        // ShiftRows: state[r + 4c] <- state[r + 4((c + r) mod 4)]
        let shifted: [Byte; 16] = std::array::from_fn(|j| {
            let (r, c) = (j % 4, j / 4);
            s[r + 4 * ((c + r) % 4)]
        });
        s = shifted;
        // MixColumns (not in the last round)
        if round != 10 {
            for c in 0..4 {
                let a = [s[4 * c], s[4 * c + 1], s[4 * c + 2], s[4 * c + 3]];
                let x2: [Byte; 4] = std::array::from_fn(|i| xtime(b, a[i]));
                for r in 0..4 {
                    // 2·a_r ⊕ 3·a_{r+1} ⊕ a_{r+2} ⊕ a_{r+3}
                    let a1 = a[(r + 1) % 4];
                    let t = xor_byte(b, x2[r], x2[(r + 1) % 4]);
                    let t = xor_byte(b, t, a1);
                    let t = xor_byte(b, t, a[(r + 2) % 4]);
                    s[4 * c + r] = xor_byte(b, t, a[(r + 3) % 4]);
                }
            }
        }
        // AddRoundKey
        s = std::array::from_fn(|j| xor_byte(b, s[j], round_key[j]));
    }
    s
}

/// The AES-128 circuit: garbler inputs the key (128 bits), evaluator the plaintext (128 bits); the evaluator
/// learns the ciphertext (128 bits). 6400 AND gates.
pub fn aes128_circuit() -> Circuit {
    let mut b = CircuitBuilder::new();
    let key_bits = b.garbler_inputs(128);
    let msg_bits = b.evaluator_inputs(128);
    let key: [Byte; 16] = std::array::from_fn(|j| std::array::from_fn(|i| key_bits[8 * j + i]));
    let msg: [Byte; 16] = std::array::from_fn(|j| std::array::from_fn(|i| msg_bits[8 * j + i]));
    let out = aes128(&mut b, key, msg);
    for byte in out {
        for bit in byte {
            b.evaluator_output(bit);
        }
    }
    b.build().expect("the AES-128 circuit is well formed")
}

/// Bytes to bits, byte by byte, LSB first within a byte.
pub fn bytes_to_bits(bytes: &[u8]) -> Vec<bool> {
    bytes
        .iter()
        .flat_map(|&x| (0..8).map(move |i| (x >> i) & 1 == 1))
        .collect()
}

/// Bits (as from [`bytes_to_bits`]) back to bytes; a trailing partial byte is zero-padded.
pub fn bits_to_bytes(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &b)| acc | ((b as u8) << i))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockEncrypt, KeyInit};
    use rand::{RngCore, SeedableRng};

    /// The S-box from its definition: inversion in GF(2^8) mod x^8+x^4+x^3+x+1, then the affine map.
    fn sbox_reference(x: u8) -> u8 {
        fn mul(mut a: u8, mut b: u8) -> u8 {
            let mut p = 0u8;
            while b != 0 {
                if b & 1 == 1 {
                    p ^= a;
                }
                let hi = a & 0x80;
                a <<= 1;
                if hi != 0 {
                    a ^= 0x1b;
                }
                b >>= 1;
            }
            p
        }
        let inv = if x == 0 {
            0
        } else {
            (1..=255u8).find(|&y| mul(x, y) == 1).unwrap()
        };
        inv ^ inv.rotate_left(1)
            ^ inv.rotate_left(2)
            ^ inv.rotate_left(3)
            ^ inv.rotate_left(4)
            ^ 0x63
    }

    #[test]
    fn sbox_circuit_is_the_aes_sbox_on_all_bytes() {
        let mut b = CircuitBuilder::new();
        let x = b.garbler_inputs(8);
        let y = sbox(&mut b, std::array::from_fn(|i| x[i]));
        for bit in y {
            b.garbler_output(bit);
        }
        let c = b.build().unwrap();
        assert_eq!(c.and_count(), 32);
        assert_eq!(sbox_reference(0), 0x63);
        assert_eq!(sbox_reference(0x53), 0xed);
        for v in 0..=255u8 {
            let out = c.eval_plain(&bytes_to_bits(&[v]), &[]).unwrap();
            assert_eq!(
                bits_to_bytes(&out.garbler)[0],
                sbox_reference(v),
                "S-box at {v:#04x}"
            );
        }
    }

    #[test]
    fn aes_circuit_matches_the_aes_crate() {
        let c = aes128_circuit();
        assert_eq!(c.and_count(), 6400);
        // FIPS-197 Appendix C.1.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = std::array::from_fn(|i| (i as u8) * 0x11);
        let out = c
            .eval_plain(&bytes_to_bits(&key), &bytes_to_bits(&pt))
            .unwrap();
        assert_eq!(
            bits_to_bytes(&out.evaluator),
            [
                0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
                0xc5, 0x5a
            ]
        );
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        for _ in 0..16 {
            let mut key = [0u8; 16];
            let mut pt = [0u8; 16];
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut pt);
            let out = c
                .eval_plain(&bytes_to_bits(&key), &bytes_to_bits(&pt))
                .unwrap();
            let mut blk = aes::Block::from(pt);
            aes::Aes128::new(&key.into()).encrypt_block(&mut blk);
            assert_eq!(bits_to_bytes(&out.evaluator), blk.to_vec());
        }
    }
}
