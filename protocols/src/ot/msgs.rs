//! The messages of the OT protocols and their compact byte encodings.
//!
//! Every message has `to_bytes` and a strict `from_bytes`: exact lengths (or an exact multiple of a unit), and
//! for group elements canonical Ristretto255 encodings other than the identity. Parsing never panics on peer
//! bytes; it returns [`PeerMisbehaved`]. Counts that depend on the session (how many base OTs, how many
//! extended OTs) are checked again by the state machine that receives the message.

use super::PeerMisbehaved;
use crate::block::Block;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::IsIdentity;
use std::fmt;

/// Bytes of one compressed Ristretto255 point.
pub const POINT_BYTES: usize = 32;
/// Bytes of one base-OT receiver pair `(r0, r1)`.
pub const PAIR_BYTES: usize = 2 * POINT_BYTES;
/// Rows of the extension matrix per 128-bit block of a column.
pub(crate) const ROWS_PER_BLOCK: usize = 128;
/// Unit of a [`MatrixMsg`]: 128 columns of one 128-bit block each.
pub const MATRIX_UNIT_BYTES: usize = 128 * 16;
/// Bytes of a [`ResponseMsg`]: `x` and 128 column values `t_i`.
pub const RESPONSE_BYTES: usize = 16 * 129;

fn decode_point(
    what: &'static str,
    index: usize,
    bytes: &[u8],
) -> Result<(CompressedRistretto, RistrettoPoint), PeerMisbehaved> {
    // `from_slice` only fails on a length other than 32; callers pass exact 32-byte chunks.
    let c = CompressedRistretto::from_slice(bytes).map_err(|_| PeerMisbehaved::WrongLength {
        what,
        expected: POINT_BYTES,
        got: bytes.len(),
    })?;
    let p = c
        .decompress()
        .ok_or(PeerMisbehaved::NonCanonicalPoint { what, index })?;
    if p.is_identity() {
        return Err(PeerMisbehaved::IdentityPoint { what, index });
    }
    Ok((c, p))
}

/// Base-OT sender → receiver: the sender's key-agreement message `A = s·G` (32 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct BaseSenderMsg {
    pub(crate) encoded: CompressedRistretto,
    pub(crate) point: RistrettoPoint,
}

impl BaseSenderMsg {
    const WHAT: &'static str = "base-OT sender message";

    /// The 32-byte compressed point.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encoded.to_bytes().to_vec()
    }

    /// Parses exactly 32 bytes holding a canonical, non-identity point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PeerMisbehaved> {
        if bytes.len() != POINT_BYTES {
            return Err(PeerMisbehaved::WrongLength {
                what: Self::WHAT,
                expected: POINT_BYTES,
                got: bytes.len(),
            });
        }
        let (encoded, point) = decode_point(Self::WHAT, 0, bytes)?;
        Ok(BaseSenderMsg { encoded, point })
    }
}

impl fmt::Debug for BaseSenderMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseSenderMsg").finish_non_exhaustive()
    }
}

/// Base-OT receiver → sender: one pair `(r0, r1)` per OT (64 bytes each), with `r_b + H(r_{1-b}) = a·G`.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseReceiverMsg {
    pub(crate) encoded: Vec<[CompressedRistretto; 2]>,
    pub(crate) points: Vec<[RistrettoPoint; 2]>,
}

impl BaseReceiverMsg {
    const WHAT: &'static str = "base-OT receiver message";

    /// Number of OTs (pairs).
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the message holds no pair (never true for a parsed message).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// `r0 || r1` for each OT in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded.len() * PAIR_BYTES);
        for [a, b] in &self.encoded {
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b.as_bytes());
        }
        out
    }

    /// Parses a nonzero multiple of 64 bytes; every point canonical and not the identity. Element `2j + c`
    /// is `r_c` of OT `j` in error reports.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PeerMisbehaved> {
        if bytes.is_empty() || bytes.len() % PAIR_BYTES != 0 {
            return Err(PeerMisbehaved::WrongLength {
                what: Self::WHAT,
                expected: PAIR_BYTES * (bytes.len() / PAIR_BYTES).max(1),
                got: bytes.len(),
            });
        }
        let n = bytes.len() / PAIR_BYTES;
        if n > super::base::MAX_BASE_OTS {
            return Err(PeerMisbehaved::WrongLength {
                what: Self::WHAT,
                expected: PAIR_BYTES * super::base::MAX_BASE_OTS,
                got: bytes.len(),
            });
        }
        // Decompression (a square root per point) is the costly part: in parallel, first error reported.
        let pairs: Vec<&[u8]> = bytes.chunks_exact(PAIR_BYTES).collect();
        let decoded = crate::par::map(&pairs, |j, pair| {
            let (c0, p0) = decode_point(Self::WHAT, 2 * j, &pair[..POINT_BYTES])?;
            let (c1, p1) = decode_point(Self::WHAT, 2 * j + 1, &pair[POINT_BYTES..])?;
            Ok(([c0, c1], [p0, p1]))
        });
        let mut encoded = Vec::with_capacity(n);
        let mut points = Vec::with_capacity(n);
        for d in decoded {
            let (e, p) = d?;
            encoded.push(e);
            points.push(p);
        }
        Ok(BaseReceiverMsg { encoded, points })
    }
}

impl fmt::Debug for BaseReceiverMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseReceiverMsg")
            .field("pairs", &self.points.len())
            .finish()
    }
}

/// Extension receiver → sender: the matrix `U`. Column `i` (for base OT `i`) holds `m'` bits, `m'` = OTs asked
/// for plus the random padding rows, a multiple of 128; bit `j` of a column is bit `j % 64` of its
/// little-endian 64-bit word `j / 64`. Words are laid out chunk-major so that both parties stream through the
/// matrix in order: chunk after chunk of 32 words (2048 rows; the last chunk may be shorter), and inside a
/// chunk column 0's words, then column 1's, and so on. Length `16·m'` bytes.
///
/// Kept as bytes so that sending and receiving 16 MiB for 2^20 OTs copies nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct MatrixMsg {
    pub(crate) bytes: Vec<u8>,
}

impl MatrixMsg {
    const WHAT: &'static str = "extension matrix";

    /// Rows `m'` of the matrix (OTs plus padding).
    pub fn rows(&self) -> usize {
        self.bytes.len() / 16
    }

    /// A copy of the encoding. Prefer [`MatrixMsg::into_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The encoding, without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Takes a nonzero multiple of 2048 bytes (128 columns × whole 128-bit blocks); the sender then checks
    /// that the size matches the extension it expects.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PeerMisbehaved> {
        if bytes.is_empty() || bytes.len() % MATRIX_UNIT_BYTES != 0 {
            return Err(PeerMisbehaved::WrongLength {
                what: Self::WHAT,
                expected: MATRIX_UNIT_BYTES * (bytes.len() / MATRIX_UNIT_BYTES).max(1),
                got: bytes.len(),
            });
        }
        Ok(MatrixMsg { bytes })
    }
}

impl fmt::Debug for MatrixMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatrixMsg")
            .field("rows", &self.rows())
            .finish()
    }
}

/// Extension sender → receiver: the seed of the check coefficients, drawn after `U` arrived (16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChallengeMsg {
    pub(crate) seed: [u8; 16],
}

impl ChallengeMsg {
    const WHAT: &'static str = "extension challenge";

    /// The 16-byte seed.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.seed.to_vec()
    }

    /// Parses exactly 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PeerMisbehaved> {
        let seed = <[u8; 16]>::try_from(bytes).map_err(|_| PeerMisbehaved::WrongLength {
            what: Self::WHAT,
            expected: 16,
            got: bytes.len(),
        })?;
        Ok(ChallengeMsg { seed })
    }
}

/// Extension receiver → sender: the check response, `x = h(r)` and `t_i = h(t^i)` for the 128 columns
/// (2064 bytes: `x` then `t_0 .. t_127`, each 16 bytes little-endian).
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseMsg {
    pub(crate) x: u128,
    pub(crate) t: Box<[u128; 128]>,
}

impl ResponseMsg {
    const WHAT: &'static str = "extension check response";

    /// The 2064-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RESPONSE_BYTES);
        out.extend_from_slice(&self.x.to_le_bytes());
        for t in self.t.iter() {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Parses exactly 2064 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PeerMisbehaved> {
        if bytes.len() != RESPONSE_BYTES {
            return Err(PeerMisbehaved::WrongLength {
                what: Self::WHAT,
                expected: RESPONSE_BYTES,
                got: bytes.len(),
            });
        }
        let word = |k: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes[16 * k..16 * (k + 1)]);
            u128::from_le_bytes(b)
        };
        let mut t = Box::new([0u128; 128]);
        for (i, t) in t.iter_mut().enumerate() {
            *t = word(i + 1);
        }
        Ok(ResponseMsg { x: word(0), t })
    }
}

impl fmt::Debug for ResponseMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseMsg").finish_non_exhaustive()
    }
}

/// Chosen-message OT, sender → receiver: per OT the pair `(m0 ⊕ H(Q_j, j), m1 ⊕ H(Q_j ⊕ Δ, j))`, 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ChosenMsg {
    pub(crate) c: Vec<[Block; 2]>,
}

impl ChosenMsg {
    const WHAT: &'static str = "chosen-message OT corrections";

    /// Number of OTs.
    pub fn len(&self) -> usize {
        self.c.len()
    }

    /// Whether there is no OT in the message.
    pub fn is_empty(&self) -> bool {
        self.c.is_empty()
    }

    /// 32 bytes per OT.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 * self.c.len());
        for [a, b] in &self.c {
            out.extend_from_slice(&a.to_bytes());
            out.extend_from_slice(&b.to_bytes());
        }
        out
    }

    /// Parses a multiple of 32 bytes; the receiver checks the count against its OTs.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PeerMisbehaved> {
        if bytes.len() % 32 != 0 {
            return Err(PeerMisbehaved::WrongLength {
                what: Self::WHAT,
                expected: bytes.len() / 32 * 32,
                got: bytes.len(),
            });
        }
        let block = |b: &[u8]| {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Block::from_bytes(a)
        };
        let c = bytes
            .chunks_exact(32)
            .map(|p| [block(&p[..16]), block(&p[16..])])
            .collect();
        Ok(ChosenMsg { c })
    }
}

impl fmt::Debug for ChosenMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChosenMsg")
            .field("ots", &self.c.len())
            .finish()
    }
}

/// Correlated OT over Z_2^64, sender → receiver: one correction `y_j` per OT (8 bytes, little-endian), held as
/// those bytes, so that neither side copies the message into another form.
#[derive(Clone, PartialEq, Eq)]
pub struct CorrectionsU64 {
    /// `8·len` bytes.
    bytes: Vec<u8>,
}

impl CorrectionsU64 {
    const WHAT: &'static str = "Z_2^64 correlated OT corrections";

    /// The corrections whose wire bytes `bytes` are (a multiple of 8, with room kept for a message tag).
    pub(crate) fn from_wire(bytes: Vec<u8>) -> CorrectionsU64 {
        debug_assert_eq!(bytes.len() % 8, 0);
        CorrectionsU64 { bytes }
    }

    /// Number of OTs.
    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    /// Whether there is no OT in the message.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The corrections in order.
    pub(crate) fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.bytes.chunks_exact(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    }

    /// 8 bytes per OT (with room for one more, so that a protocol that appends its message tag does not copy
    /// the buffer).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 1);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// [`CorrectionsU64::to_bytes`] without the copy.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Parses a multiple of 8 bytes; the receiver checks the count against its OTs.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PeerMisbehaved> {
        Self::from_vec(bytes.to_vec())
    }

    /// [`CorrectionsU64::from_bytes`], taking the buffer instead of copying it.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self, PeerMisbehaved> {
        if bytes.len() % 8 != 0 {
            return Err(PeerMisbehaved::WrongLength {
                what: Self::WHAT,
                expected: bytes.len() / 8 * 8,
                got: bytes.len(),
            });
        }
        Ok(CorrectionsU64 { bytes })
    }
}

impl fmt::Debug for CorrectionsU64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorrectionsU64")
            .field("ots", &self.len())
            .finish()
    }
}
