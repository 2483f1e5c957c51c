//! The FI's side of a private scoring run over its session. A run that fails a check of the owner's messages
//! after the FI's inputs entered the circuit ends with [`duo_protocols::score::Error::AfterFiInputs`]; the
//! client then keeps a flag in the FI home and scores that owner no more until its operator allows it.

use crate::net::run::{recv_msg, send_msg, RunBytes, RunError};
use crate::net::transport::SecureChannel;
use crate::proto::scoring::STEP_TIMEOUT;
use duo_protocols::ot::kos;
use duo_protocols::score::{FiModel, FiRun, FiStep, Outcome, Params};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncRead, AsyncWrite};

/// Drives the FI's side of a run over its session, calling `progress` with what it waits for.
pub async fn drive_fi<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut SecureChannel<S>,
    params: &Params,
    model: &FiModel,
    ot: Option<kos::Receiver>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(Outcome, kos::Receiver, RunBytes), RunError> {
    let mut bytes = RunBytes::default();
    let max = params.max_message_bytes();
    let mut rng = StdRng::from_os_rng();
    let (mut run, out) = FiRun::start_streamed(params, model, ot, &mut rng)?;
    for m in &out {
        send_msg(chan, m, &mut bytes).await?;
    }
    while let Some(m) = run.next_out() {
        send_msg(chan, &m, &mut bytes).await?;
    }
    let mut partial = Vec::new();
    loop {
        progress(run.waiting_for());
        // Give whoever watches the progress a turn before the next message is read, even when it has already
        // arrived: a caller that drops the run on some step (a timeout, the user giving up) then stops it there.
        tokio::task::yield_now().await;
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let msg = recv_msg(
            chan,
            max,
            run.waiting_for(),
            &mut bytes,
            &mut partial,
            deadline,
        )
        .await?;
        match run.handle(msg, &mut rng)? {
            FiStep::Continue(next, out) => {
                for m in &out {
                    send_msg(chan, m, &mut bytes).await?;
                }
                run = *next;
                // The rest of a streamed matrix, made part by part while the owner absorbs the last.
                while let Some(m) = run.next_out() {
                    send_msg(chan, &m, &mut bytes).await?;
                }
                run.work_ahead();
            }
            FiStep::Done { outcome, ot } => return Ok((outcome, ot, bytes)),
        }
    }
}
