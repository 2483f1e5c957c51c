//! 128-bit blocks: labels, keys and OT messages.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{BitAnd, BitXor, BitXorAssign};

/// A 128-bit block. The `Debug` output is opaque because blocks are usually secret (labels, keys, OT
/// messages).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct Block(pub u128);

impl Block {
    /// The all-zero block.
    pub const ZERO: Block = Block(0);
    /// The all-one block.
    pub const ONES: Block = Block(u128::MAX);

    /// A uniformly random block.
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Block {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Block(u128::from_le_bytes(b))
    }

    /// The least significant bit (the point-and-permute bit of a label).
    pub fn lsb(self) -> bool {
        self.0 & 1 == 1
    }

    /// Little-endian bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// From little-endian bytes.
    pub fn from_bytes(b: [u8; 16]) -> Block {
        Block(u128::from_le_bytes(b))
    }

    /// `self` if `bit`, else zero, without a branch on `bit`.
    pub fn and_bit(self, bit: bool) -> Block {
        Block(self.0 & (0u128.wrapping_sub(bit as u128)))
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Block(..)")
    }
}

impl BitXor for Block {
    type Output = Block;
    fn bitxor(self, rhs: Block) -> Block {
        Block(self.0 ^ rhs.0)
    }
}

impl BitXorAssign for Block {
    fn bitxor_assign(&mut self, rhs: Block) {
        self.0 ^= rhs.0;
    }
}

impl BitAnd for Block {
    type Output = Block;
    fn bitand(self, rhs: Block) -> Block {
        Block(self.0 & rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bytes_round_trip_and_bit_ops() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = Block::random(&mut rng);
        let b = Block::random(&mut rng);
        assert_ne!(a, b);
        assert_eq!(Block::from_bytes(a.to_bytes()), a);
        assert_eq!((a ^ b) ^ b, a);
        assert_eq!(a.and_bit(true), a);
        assert_eq!(a.and_bit(false), Block::ZERO);
        assert!(Block(3).lsb());
        assert!(!Block(2).lsb());
        assert_eq!(format!("{a:?}"), "Block(..)");
    }
}
