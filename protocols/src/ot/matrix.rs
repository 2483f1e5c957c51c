//! The hot loops of the extension: column PRGs, the 128 × m bit-matrix transpose, and the check hash.
//!
//! Layout: the extension matrix has 128 columns (one per base OT) of `m'` bits; a column is `2·L` little-endian
//! `u64` words (`L = m'/128` blocks), bit `j` of the column being bit `j % 64` of word `j / 64`. Rows are
//! [`Block`]s whose bit `i` is column `i`'s bit for that row.
//!
//! Everything works on chunks of [`CHUNK_WORDS`] words per column (2048 rows, 32 KiB for the 128 columns), so
//! the PRG output, the transpose and the check hash of a chunk happen while it is in cache, and the big matrix
//! is never materialised column-major on the side that transposes.

use crate::block::Block;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128Enc;
use polyval::universal_hash::UniversalHash;
use polyval::Polyval;

/// Words per column per chunk: 32 words = 16 AES blocks = 2048 rows.
pub(crate) const CHUNK_WORDS: usize = 32;
const CHUNK_BLOCKS: usize = CHUNK_WORDS / 2;

/// Index (in words) of word `w` of column `col` in the chunk-major matrix encoding of [`MatrixMsg`]
/// (columns of `words` words): chunk after chunk, and inside a chunk column after column.
///
/// [`MatrixMsg`]: super::msgs::MatrixMsg
#[cfg(test)]
pub(crate) fn word_index(words: usize, col: usize, w: usize) -> usize {
    let c = w / CHUNK_WORDS;
    let g = (words - c * CHUNK_WORDS).min(CHUNK_WORDS);
    c * CHUNK_WORDS * 128 + col * g + (w - c * CHUNK_WORDS)
}

/// One chunk of all 128 columns.
pub(crate) type ColChunk = [[u64; CHUNK_WORDS]; 128];

/// AES-128 in counter mode, keyed by a base-OT output: block `k` of the stream is `AES_key(k)`.
pub(crate) struct Prg {
    aes: Aes128Enc,
}

/// The counter blocks `first, first + 1, ...` of one chunk ([`CHUNK_BLOCKS`] of them) and a buffer for their
/// encryption. All 128 column PRGs are at the same position in their streams, so a chunk's counters are built
/// once and encrypted under each column's key in turn ([`Counters::fill`]).
pub(crate) struct Counters {
    ctr: [aes::Block; CHUNK_BLOCKS],
    buf: [aes::Block; CHUNK_BLOCKS],
}

impl Counters {
    pub(crate) fn new(first: u64) -> Counters {
        Counters {
            ctr: std::array::from_fn(|k| (first as u128 + k as u128).to_le_bytes().into()),
            buf: [aes::Block::default(); CHUNK_BLOCKS],
        }
    }

    /// Fills `out` (an even number of words, at most [`CHUNK_WORDS`]) with `prg`'s stream blocks at these
    /// counters, in order, each block giving a low then a high word.
    #[inline]
    pub(crate) fn fill(&mut self, prg: &Prg, out: &mut [u64]) {
        let n = out.len() / 2;
        prg.aes
            .encrypt_blocks_b2b(&self.ctr[..n], &mut self.buf[..n])
            .expect("equal lengths");
        for (o, b) in out.chunks_exact_mut(2).zip(&self.buf) {
            let (lo, hi) = b.split_at(8);
            o[0] = u64::from_le_bytes(lo.try_into().expect("8 bytes"));
            o[1] = u64::from_le_bytes(hi.try_into().expect("8 bytes"));
        }
    }
}

impl Prg {
    pub(crate) fn new(key: Block) -> Prg {
        Prg {
            aes: Aes128Enc::new(&key.to_bytes().into()),
        }
    }

    /// Fills `out` (an even number of words) with stream blocks `first, first + 1, ...`, each block giving a
    /// low then a high word.
    #[cfg(test)]
    pub(crate) fn fill(&self, first: u64, out: &mut [u64]) {
        for (i, out) in out.chunks_mut(CHUNK_WORDS).enumerate() {
            Counters::new(first + (i * CHUNK_BLOCKS) as u64).fill(self, out);
        }
    }
}

/// The check keys: `H_c = AES_seed(c)` for chunk `c` of every column (one key per [`CHUNK_WORDS`] words,
/// i.e. per 16 blocks of 128 rows).
pub(crate) fn check_keys(seed: [u8; 16], chunks: usize) -> Vec<polyval::Key> {
    let aes = Aes128Enc::new(&seed.into());
    let mut buf: Vec<aes::Block> = (0..chunks as u128)
        .map(|c| c.to_le_bytes().into())
        .collect();
    aes.encrypt_blocks(&mut buf);
    buf.iter().map(|b| <[u8; 16]>::from(*b).into()).collect()
}

/// Number of chunks of a column of `words` words.
pub(crate) fn chunks(words: usize) -> usize {
    words.div_ceil(CHUNK_WORDS)
}

/// The check hash of one column, summed over its chunks. With `v_{c,k}` the `k`-th 128-bit block of chunk
/// `c` and the column's last block `v_mask` set apart as a one-time mask:
///
/// ```text
/// h(v) = v_mask ⊕ Σ_c POLYVAL_{H_c}(v_{c,0}, ..., v_{c,n_c-1})
///      = v_mask ⊕ Σ_c Σ_k v_{c,k} · h_c^{n_c-k}          (h_c = H_c · x^-128, n_c ≤ 16)
/// ```
///
/// GF(2)-linear in `v`, so `h(t ⊕ Δ_i·x) = h(t) ⊕ Δ_i·h(x)`. For a fixed nonzero `d` outside the mask, some
/// chunk has `d_c ≠ 0`, and `Σ_c POLYVAL_{H_c}(d_c)` hits any given value with probability at most
/// `16 / 2^128 = 2^-124` over the independent key of that chunk (a nonzero polynomial of degree ≤ 16 in a
/// uniform `h_c`, with no constant term). This is the revised KOS check's random linear combination with
/// independent coefficients per 2048-row chunk and powers of one key inside a chunk, which lets POLYVAL's
/// aggregated-reduction Horner loop (4 blocks per reduction) do the multiplications.
pub(crate) struct ColumnHasher {
    mask_block: usize,
}

impl ColumnHasher {
    /// A hasher for columns of `blocks` blocks (the last one is the mask).
    pub(crate) fn new(blocks: usize) -> ColumnHasher {
        ColumnHasher {
            mask_block: blocks - 1,
        }
    }

    /// Adds to `acc` the hash of chunk `chunk` of every column, the chunk holding `words` words per column.
    pub(crate) fn chunk(
        &self,
        acc: &mut [u128; 128],
        cols: &ColChunk,
        chunk: usize,
        words: usize,
        key: &polyval::Key,
    ) {
        let mut p = Polyval::new(key);
        for (acc, col) in acc.iter_mut().zip(cols) {
            *acc ^= self.column_chunk(&mut p, &col[..words], chunk);
        }
    }

    /// The hash of one whole column given as words (the receiver's choice vector).
    pub(crate) fn words(&self, words: &[u64], keys: &[polyval::Key]) -> u128 {
        words
            .chunks(CHUNK_WORDS)
            .zip(keys)
            .enumerate()
            .fold(0, |acc, (c, (w, key))| {
                acc ^ self.column_chunk(&mut Polyval::new(key), w, c)
            })
    }

    /// The hash of one column's chunk under `p`'s key; `p` is left reset for the next column.
    fn column_chunk(&self, p: &mut Polyval, words: &[u64], chunk: usize) -> u128 {
        let first_block = chunk * CHUNK_BLOCKS;
        let block =
            |w: &[u64]| polyval::Block::from((w[0] as u128 | (w[1] as u128) << 64).to_le_bytes());
        if words.len() == CHUNK_WORDS && self.mask_block >= first_block + CHUNK_BLOCKS {
            // A whole chunk without the mask block (all but the last).
            let blocks: [polyval::Block; CHUNK_BLOCKS] =
                std::array::from_fn(|k| block(&words[2 * k..2 * k + 2]));
            p.update(&blocks);
            return u128::from_le_bytes(p.finalize_reset().into());
        }
        let mut blocks = [polyval::Block::default(); CHUNK_BLOCKS];
        let mut n = 0;
        let mut mask = 0u128;
        for (k, w) in words.chunks_exact(2).enumerate() {
            if first_block + k == self.mask_block {
                mask = w[0] as u128 | (w[1] as u128) << 64;
            } else {
                blocks[n] = block(w);
                n += 1;
            }
        }
        p.update(&blocks[..n]);
        let tag: [u8; 16] = p.finalize_reset().into();
        u128::from_le_bytes(tag) ^ mask
    }
}

/// Bands of 64 rows transposed together: words `k .. k + BANDS` of every column.
const BANDS: usize = 2;

/// [`BANDS`] bands of 64 rows of the 128 columns. Before the transpose, `x[c][b]` is word `k + b` of column `c`
/// and `x[c][BANDS + b]` the same word of column `64 + c`; after it, `x[r][b]` and `x[r][BANDS + b]` are the low
/// and high halves of row `64·(k + b) + r`. Each lane is an independent 64 × 64 bit matrix.
type Bands = [[u64; 2 * BANDS]; 64];

/// The masked swap of Eklundh's round `j` between rows `a` and `b = a + j`, on every lane at once (the same
/// word-parallel operations on each lane, which the compiler turns into vector instructions).
#[inline(always)]
fn swap(a: &mut [u64; 2 * BANDS], b: &mut [u64; 2 * BANDS], j: usize, m: u64) {
    for (a, b) in a.iter_mut().zip(b.iter_mut()) {
        let t = ((*a >> j) ^ *b) & m;
        *a ^= t << j;
        *b ^= t;
    }
}

/// Rounds `2·j` (mask `m2`) then `j` (mask `m1`) of Eklundh's block swap in one pass: the two rounds mix only
/// the rows `r, r + j, r + 2j, r + 3j` of each group of `4j`, so each such quadruple is loaded, swapped twice
/// in registers and stored once.
#[inline(always)]
fn swap_rounds(x: &mut Bands, j: usize, m2: u64, m1: u64) {
    for g in (0..64).step_by(4 * j) {
        for r in g..g + j {
            let (mut r0, mut r1, mut r2, mut r3) = (x[r], x[r + j], x[r + 2 * j], x[r + 3 * j]);
            swap(&mut r0, &mut r2, 2 * j, m2);
            swap(&mut r1, &mut r3, 2 * j, m2);
            swap(&mut r0, &mut r1, j, m1);
            swap(&mut r2, &mut r3, j, m1);
            (x[r], x[r + j], x[r + 2 * j], x[r + 3 * j]) = (r0, r1, r2, r3);
        }
    }
}

/// In-place transpose of every lane's 64 × 64 bit matrix (`out[r]` bit `c` = `in[c]` bit `r`): Eklundh's
/// recursive block swap, six rounds (32, 16, 8, 4, 2, 1) of word-parallel masked swaps done in three passes,
/// no per-bit loop.
#[inline(always)]
fn transpose_bands(x: &mut Bands) {
    swap_rounds(x, 16, 0x0000_0000_FFFF_FFFF, 0x0000_FFFF_0000_FFFF);
    swap_rounds(x, 4, 0x00FF_00FF_00FF_00FF, 0x0F0F_0F0F_0F0F_0F0F);
    swap_rounds(x, 1, 0x3333_3333_3333_3333, 0x5555_5555_5555_5555);
}

/// Transposes the first `words` words of a chunk of 128 columns into `64·words` rows, appending to `out`
/// only the rows before `row_limit` (relative to the chunk's first row).
pub(crate) fn transpose_chunk(
    cols: &ColChunk,
    words: usize,
    row_limit: usize,
    out: &mut Vec<Block>,
) {
    const { assert!(CHUNK_WORDS % BANDS == 0) };
    let mut x: Bands = [[0u64; 2 * BANDS]; 64];
    let (cols_lo, cols_hi) = cols.split_at(64);
    let mut k = 0;
    while k < words && 64 * k < row_limit {
        // Whole groups of BANDS words (the chunk holds CHUNK_WORDS, a multiple of BANDS); bands past `words`
        // are transposed but not output.
        for (x, (a, b)) in x.iter_mut().zip(cols_lo.iter().zip(cols_hi)) {
            let (xa, xb) = x.split_at_mut(BANDS);
            xa.copy_from_slice(&a[k..k + BANDS]);
            xb.copy_from_slice(&b[k..k + BANDS]);
        }
        transpose_bands(&mut x);
        for band in 0..BANDS.min(words - k) {
            let first_row = 64 * (k + band);
            if first_row >= row_limit {
                break;
            }
            let n = (row_limit - first_row).min(64);
            out.extend(
                x[..n]
                    .iter()
                    .map(|r| Block(r[band] as u128 | (r[BANDS + band] as u128) << 64)),
            );
        }
        k += BANDS;
    }
}

/// Packs booleans into little-endian words (bit `j % 64` of word `j / 64`); `out` must hold enough words.
pub(crate) fn pack_bits(bits: &[bool], out: &mut [u64]) {
    for (w, chunk) in out.iter_mut().zip(bits.chunks(64)) {
        *w = chunk
            .iter()
            .enumerate()
            .fold(0u64, |acc, (k, &b)| acc | (b as u64) << k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn transpose_matches_the_per_bit_definition() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let mut cols: Box<ColChunk> = Box::new([[0u64; CHUNK_WORDS]; 128]);
        for col in cols.iter_mut() {
            for w in col.iter_mut() {
                *w = rng.next_u64();
            }
        }
        for (words, limit) in [(CHUNK_WORDS, 64 * CHUNK_WORDS), (6, 300), (2, 128), (1, 5)] {
            let mut out = Vec::new();
            transpose_chunk(&cols, words, limit, &mut out);
            assert_eq!(out.len(), limit.min(64 * words));
            for (j, row) in out.iter().enumerate() {
                for (i, col) in cols.iter().enumerate() {
                    let bit = (col[j / 64] >> (j % 64)) & 1;
                    assert_eq!((row.0 >> i) & 1, bit as u128, "row {j} column {i}");
                }
            }
        }
    }

    #[test]
    fn prg_is_counter_mode() {
        let prg = Prg::new(Block(77));
        let mut a = vec![0u64; 40];
        prg.fill(5, &mut a);
        let mut b = vec![0u64; 8];
        prg.fill(9, &mut b);
        assert_eq!(&a[8..16], &b[..]);
        assert_ne!(a[0], a[2]);
    }

    /// The chunked hash is linear, treats the last block as a plain mask, and depends on every other block.
    #[test]
    fn column_hash_is_linear_masked_and_sensitive() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
        let words = 2 * CHUNK_WORDS + 6; // two full chunks and a ragged one
        let blocks = words / 2;
        let keys = check_keys([3; 16], chunks(words));
        assert_eq!(keys.len(), 3);
        assert_ne!(keys[0], keys[1]);
        let h = ColumnHasher::new(blocks);
        let a: Vec<u64> = (0..words).map(|_| rng.next_u64()).collect();
        let b: Vec<u64> = (0..words).map(|_| rng.next_u64()).collect();
        let ab: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x ^ y).collect();
        assert_eq!(h.words(&ab, &keys), h.words(&a, &keys) ^ h.words(&b, &keys));
        assert_eq!(h.words(&vec![0; words], &keys), 0);
        // The mask block enters unchanged.
        let mut m = vec![0u64; words];
        m[words - 2] = 5;
        m[words - 1] = 7;
        assert_eq!(h.words(&m, &keys), 5 | 7 << 64);
        // Any single flipped bit elsewhere changes the hash.
        for bit in [
            0usize,
            64,
            127,
            128 * 16,
            128 * 16 + 1,
            128 * (blocks - 1) - 1,
        ] {
            let mut c = a.clone();
            c[bit / 64] ^= 1 << (bit % 64);
            assert_ne!(h.words(&c, &keys), h.words(&a, &keys), "bit {bit}");
        }
        // Chunk-wise accumulation over 128 columns agrees with the whole-column form.
        let mut cols: Box<ColChunk> = Box::new([[0u64; CHUNK_WORDS]; 128]);
        let data: Vec<Vec<u64>> = (0..128)
            .map(|_| (0..words).map(|_| rng.next_u64()).collect())
            .collect();
        let mut acc = [0u128; 128];
        for c in 0..chunks(words) {
            let w = (words - c * CHUNK_WORDS).min(CHUNK_WORDS);
            for (col, d) in cols.iter_mut().zip(&data) {
                col[..w].copy_from_slice(&d[c * CHUNK_WORDS..c * CHUNK_WORDS + w]);
            }
            h.chunk(&mut acc, &cols, c, w, &keys[c]);
        }
        for (acc, d) in acc.iter().zip(&data) {
            assert_eq!(*acc, h.words(d, &keys));
        }
    }

    #[test]
    fn chunk_major_layout_is_a_bijection() {
        for words in [2usize, CHUNK_WORDS, CHUNK_WORDS + 2, 3 * CHUNK_WORDS + 6] {
            let mut seen = vec![false; 128 * words];
            for col in 0..128 {
                for w in 0..words {
                    let k = word_index(words, col, w);
                    assert!(!seen[k], "index {k} used twice");
                    seen[k] = true;
                }
            }
            assert!(seen.iter().all(|&s| s));
            // Inside a chunk, a column's words are contiguous.
            assert_eq!(word_index(words, 5, 1), word_index(words, 5, 0) + 1);
        }
    }

    #[test]
    fn pack_bits_is_little_endian() {
        let bits: Vec<bool> = (0..70).map(|j| j % 3 == 0 || j == 69).collect();
        let mut w = [0u64; 2];
        pack_bits(&bits, &mut w);
        for (j, &b) in bits.iter().enumerate() {
            assert_eq!((w[j / 64] >> (j % 64)) & 1 == 1, b);
        }
        assert_eq!(w[1] >> 6, 0);
    }
}
