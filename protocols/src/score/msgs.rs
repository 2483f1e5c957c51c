//! The byte format of scoring messages: the body, then one type byte (last, so that framing a megabyte
//! matrix and taking it apart move no bytes).
//!
//! Bodies of OT messages are the [`crate::ot::msgs`] encodings. The others, all parsed to exact lengths:
//!
//! | type | body |
//! |------|------|
//! | `Garbled` | circuit digest (32) ‖ tweak base (u64 LE) ‖ 16 bytes per garbler input label ‖ 64 bytes per owner output wire (the two label hashes of [`crate::gc::commit`], in point-and-permute order) ‖ tables (32 per AND) |
//! | `Flips`, decoding bits | bits packed LSB first into `⌈n/8⌉` bytes, unused bits zero |
//! | `OutputLabels` | circuit digest (32) ‖ 16 bytes per owner output label ‖ transcript hash (32) |
//! | `Decoding` | packed decoding bits ‖ transcript tag (32) |

use super::PeerMisbehaved;
use crate::block::Block;
use crate::gc::{Circuit, GarbledHeader, GarbledTables, OutputCommitments, OutputLabels};

/// Most attributes one run may score (bounds every buffer a peer can make the other side allocate).
pub const MAX_ATTRIBUTES: usize = 4096;

/// Most band thresholds (so at most 16 bands, 4 bits).
pub const MAX_BAND_THRESHOLDS: usize = 15;

/// The type byte of a scoring message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// FI → owner, cold runs: base-OT sender message.
    BaseSender = 1,
    /// Owner → FI, cold runs: base-OT receiver message.
    BaseReceiver = 2,
    /// FI → owner: the extension matrix.
    Matrix = 3,
    /// Owner → FI: the KOS challenge.
    Challenge = 4,
    /// FI → owner: the KOS response.
    Response = 5,
    /// Owner → FI: corrections of the product OTs.
    Corrections = 6,
    /// Owner → FI: the garbled circuit with the owner's input labels.
    Garbled = 7,
    /// FI → owner: its circuit inputs XOR its random OT choices.
    Flips = 8,
    /// Owner → FI: the FI's input labels (chosen-message OT).
    Labels = 9,
    /// FI → owner: labels of the owner's outputs and the FI's transcript hash.
    OutputLabels = 10,
    /// Owner → FI: decoding bits of the FI's outputs and the owner's transcript tag.
    Decoding = 11,
}

impl Tag {
    /// The tag of a type byte.
    pub fn from_byte(b: u8) -> Option<Tag> {
        Some(match b {
            1 => Tag::BaseSender,
            2 => Tag::BaseReceiver,
            3 => Tag::Matrix,
            4 => Tag::Challenge,
            5 => Tag::Response,
            6 => Tag::Corrections,
            7 => Tag::Garbled,
            8 => Tag::Flips,
            9 => Tag::Labels,
            10 => Tag::OutputLabels,
            11 => Tag::Decoding,
            _ => return None,
        })
    }

    /// A short name for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Tag::BaseSender => "base-OT sender message",
            Tag::BaseReceiver => "base-OT receiver message",
            Tag::Matrix => "extension matrix",
            Tag::Challenge => "consistency challenge",
            Tag::Response => "consistency response",
            Tag::Corrections => "product corrections",
            Tag::Garbled => "garbled circuit",
            Tag::Flips => "input flips",
            Tag::Labels => "input labels",
            Tag::OutputLabels => "output labels",
            Tag::Decoding => "output decoding",
        }
    }
}

/// The message: the body, then the type byte (at the end, so that framing and unframing move no bytes).
pub(super) fn frame(tag: Tag, mut body: Vec<u8>) -> Vec<u8> {
    body.push(tag as u8);
    body
}

/// The body of a message whose type [`expect`] accepted.
pub(super) fn body(mut msg: Vec<u8>) -> Vec<u8> {
    msg.pop();
    msg
}

pub(super) fn unexpected(expected: &'static str, msg: &[u8]) -> PeerMisbehaved {
    PeerMisbehaved::Unexpected {
        expected,
        got: match msg.last() {
            None => "empty".into(),
            Some(&b) => match Tag::from_byte(b) {
                Some(t) => t.name().into(),
                None => format!("type {b}"),
            },
        },
    }
}

/// Checks that the type of `msg` is `tag`.
pub(super) fn expect(msg: &[u8], tag: Tag) -> Result<(), PeerMisbehaved> {
    match msg.last() {
        Some(&b) if b == tag as u8 => Ok(()),
        _ => Err(unexpected(tag.name(), msg)),
    }
}

fn array32(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[..32]);
    a
}

fn block_at(b: &[u8]) -> Block {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Block::from_bytes(a)
}

pub(super) fn encode_garbled(
    header: &GarbledHeader,
    commitments: &OutputCommitments,
    tables: &GarbledTables,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        40 + 16 * header.garbler_labels.len()
            + 64 * commitments.hashes.len()
            + tables.as_bytes().len(),
    );
    out.extend_from_slice(&header.circuit_digest);
    out.extend_from_slice(&header.tweak_base.to_le_bytes());
    for l in &header.garbler_labels {
        out.extend_from_slice(&l.to_bytes());
    }
    for [h0, h1] in &commitments.hashes {
        out.extend_from_slice(h0);
        out.extend_from_slice(h1);
    }
    out.extend_from_slice(tables.as_bytes());
    out
}

/// The parts of a `Garbled` message.
pub(super) struct Garbled {
    pub header: GarbledHeader,
    pub commitments: OutputCommitments,
    pub tables: GarbledTables,
}

pub(super) fn decode_garbled(body: &[u8], circuit: &Circuit) -> Result<Garbled, super::Error> {
    let labels = circuit.garbler_inputs().len();
    let outputs = circuit.garbler_outputs().len();
    let expected = 40 + 16 * labels + 64 * outputs + circuit.table_bytes();
    if body.len() != expected {
        return Err(PeerMisbehaved::WrongLength {
            what: "garbled circuit",
            expected,
            got: body.len(),
        }
        .into());
    }
    let mut tweak = [0u8; 8];
    tweak.copy_from_slice(&body[32..40]);
    let header = GarbledHeader {
        circuit_digest: array32(body),
        tweak_base: u64::from_le_bytes(tweak),
        garbler_labels: body[40..40 + 16 * labels]
            .chunks_exact(16)
            .map(block_at)
            .collect(),
    };
    let at = 40 + 16 * labels;
    let commitments = OutputCommitments {
        hashes: body[at..at + 64 * outputs]
            .chunks_exact(64)
            .map(|h| [array32(h), array32(&h[32..])])
            .collect(),
    };
    let tables = GarbledTables::from_bytes(circuit, body[at + 64 * outputs..].to_vec())?;
    Ok(Garbled {
        header,
        commitments,
        tables,
    })
}

pub(super) fn encode_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        out[i / 8] |= (b as u8) << (i % 8);
    }
    out
}

pub(super) fn decode_bits(
    body: &[u8],
    n: usize,
    what: &'static str,
) -> Result<Vec<bool>, PeerMisbehaved> {
    let expected = n.div_ceil(8);
    let wrong = PeerMisbehaved::WrongLength {
        what,
        expected,
        got: body.len(),
    };
    if body.len() != expected {
        return Err(wrong);
    }
    // Unused bits of the last byte must be zero: one encoding per message.
    if n % 8 != 0 && body[expected - 1] >> (n % 8) != 0 {
        return Err(wrong);
    }
    Ok((0..n).map(|i| (body[i / 8] >> (i % 8)) & 1 == 1).collect())
}

pub(super) fn encode_output_labels(labels: &OutputLabels, hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 16 * labels.labels.len());
    out.extend_from_slice(&labels.circuit_digest);
    for l in &labels.labels {
        out.extend_from_slice(&l.to_bytes());
    }
    out.extend_from_slice(hash);
    out
}

pub(super) fn decode_output_labels(
    body: &[u8],
    circuit: &Circuit,
) -> Result<(OutputLabels, [u8; 32]), PeerMisbehaved> {
    let n = circuit.garbler_outputs().len();
    let expected = 64 + 16 * n;
    if body.len() != expected {
        return Err(PeerMisbehaved::WrongLength {
            what: "output labels",
            expected,
            got: body.len(),
        });
    }
    let labels = OutputLabels {
        circuit_digest: array32(body),
        labels: body[32..32 + 16 * n]
            .chunks_exact(16)
            .map(block_at)
            .collect(),
    };
    Ok((labels, array32(&body[32 + 16 * n..])))
}

pub(super) fn decode_decoding(
    body: &[u8],
    n: usize,
) -> Result<(Vec<bool>, [u8; 32]), PeerMisbehaved> {
    let bytes = n.div_ceil(8);
    if body.len() != bytes + 32 {
        return Err(PeerMisbehaved::WrongLength {
            what: "output decoding",
            expected: bytes + 32,
            got: body.len(),
        });
    }
    let bits = decode_bits(&body[..bytes], n, "output decoding")?;
    Ok((bits, array32(&body[bytes..])))
}
