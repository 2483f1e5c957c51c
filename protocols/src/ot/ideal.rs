//! Ideal (trusted-party) OT functionalities, with the same output types as the real protocols.
//!
//! A trusted party that sees both parties' inputs computes the outputs directly, with no messages and no
//! security: use these to test layers above OT (garbled input labels, Gilboa products) without running base
//! OTs and the extension, and as the reference the real protocols are tested against.

use super::cot::{CotReceiver, CotSender};
use super::{ApiMisuse, Error};
use crate::block::Block;
use rand::RngCore;

fn same_len(what: &'static str, expected: usize, got: usize) -> Result<(), Error> {
    if expected != got {
        return Err(ApiMisuse::LengthMismatch {
            what,
            expected,
            got,
        }
        .into());
    }
    Ok(())
}

/// Correlated OT: uniform `Q_j`, `T_j = Q_j ⊕ r_j·Δ`, OT indices from `first_index`. The derived
/// functionalities of [`CotSender`] and [`CotReceiver`] then work exactly as after a real extension.
pub fn cot<R: RngCore + ?Sized>(
    delta: Block,
    choices: &[bool],
    first_index: u64,
    rng: &mut R,
) -> (CotSender, CotReceiver) {
    let q: Vec<Block> = choices.iter().map(|_| Block::random(rng)).collect();
    let t = q
        .iter()
        .zip(choices)
        .map(|(&q, &r)| q ^ delta.and_bit(r))
        .collect();
    (
        CotSender::new(delta, q, first_index),
        CotReceiver::new(choices.to_vec(), t, first_index),
    )
}

/// Random OT: the sender gets uniform pairs, the receiver the entry its choice selects.
pub fn random_ot<R: RngCore + ?Sized>(
    choices: &[bool],
    rng: &mut R,
) -> (Vec<[Block; 2]>, Vec<Block>) {
    let pairs: Vec<[Block; 2]> = choices
        .iter()
        .map(|_| [Block::random(rng), Block::random(rng)])
        .collect();
    let chosen = pairs
        .iter()
        .zip(choices)
        .map(|(p, &r)| p[r as usize])
        .collect();
    (pairs, chosen)
}

/// Chosen-message OT: the receiver gets `msgs[j][r_j]`.
pub fn chosen_ot(msgs: &[[Block; 2]], choices: &[bool]) -> Result<Vec<Block>, Error> {
    same_len("chosen-OT messages", choices.len(), msgs.len())?;
    Ok(msgs
        .iter()
        .zip(choices)
        .map(|(m, &r)| m[r as usize])
        .collect())
}

/// Correlated OT over Z_2^64: the sender gets uniform `x_j`, the receiver `x_j + r_j·deltas[j] (mod 2^64)`.
pub fn correlated_u64<R: RngCore + ?Sized>(
    deltas: &[u64],
    choices: &[bool],
    rng: &mut R,
) -> Result<(Vec<u64>, Vec<u64>), Error> {
    same_len("Z_2^64 correlations", choices.len(), deltas.len())?;
    let x: Vec<u64> = deltas.iter().map(|_| rng.next_u64()).collect();
    let y = x
        .iter()
        .zip(deltas)
        .zip(choices)
        .map(|((&x, &d), &r)| if r { x.wrapping_add(d) } else { x })
        .collect();
    Ok((x, y))
}
