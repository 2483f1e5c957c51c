//! Admission of connections to a server, so that connections that never authenticate cannot lock out
//! the clients that do.
//!
//! * A connection still in its handshake holds one of [`GateLimits::max_pending`] cheap places. When
//!   they are all taken, a new connection takes the place of the **oldest** unauthenticated one,
//!   which is told to stop ([`PendingSlot::evicted`]) instead of the new one being refused: an
//!   attacker must open connections faster than a real client finishes its handshake (a few round
//!   trips) to push that client out, and the silence deadlines of the transport
//!   ([`crate::net::transport::Limits`]) end idle ones within seconds anyway.
//! * A connection that finished its handshake leaves that pool for its own allowance of
//!   [`GateLimits::max_sessions`] sessions, which unauthenticated connections never use.
//! * All connections together, including evicted ones still saying goodbye, are capped at
//!   [`GateLimits::max_total`], so memory stays bounded; over it a connection is refused at once.
//! * What was dropped is counted ([`Gate::take_pressure`]) so the server can say it is under pressure.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// The sizes of a [`Gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    /// Connections not yet authenticated held at once (the oldest is evicted for a new one).
    pub max_pending: usize,
    /// Authenticated sessions at once.
    pub max_sessions: usize,
    /// All connections at once, whatever their state.
    pub max_total: usize,
}

impl GateLimits {
    /// `max_pending` unauthenticated places, `max_sessions` sessions, and a total with room for as many
    /// evicted connections again as there are places (they close within about a second).
    pub fn new(max_pending: usize, max_sessions: usize) -> Self {
        let max_pending = max_pending.max(1);
        let max_sessions = max_sessions.max(1);
        GateLimits {
            max_pending,
            max_sessions,
            max_total: max_pending.saturating_mul(2).saturating_add(max_sessions),
        }
    }
}

/// What the gate dropped since it was last asked ([`Gate::take_pressure`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Unauthenticated connections evicted to make room for newer ones.
    pub evicted: u64,
    /// Connections refused at once because the total cap was reached.
    pub refused: u64,
    /// Unauthenticated connections that stayed silent past a deadline.
    pub timed_out: u64,
    /// Authenticated clients refused because every session place was taken.
    pub sessions_full: u64,
}

impl Pressure {
    /// Whether anything was dropped.
    pub fn any(&self) -> bool {
        self.evicted + self.refused + self.timed_out + self.sessions_full > 0
    }
}

#[derive(Debug, Default)]
struct Counters {
    evicted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    sessions_full: AtomicU64,
}

/// Unauthenticated connections by age (ids only grow), each with the means to tell it to stop.
#[derive(Debug, Default)]
struct Pending {
    next: u64,
    slots: BTreeMap<u64, oneshot::Sender<()>>,
}

/// The admission control of one server (see the module docs).
#[derive(Debug)]
pub struct Gate {
    limits: GateLimits,
    pending: Mutex<Pending>,
    sessions: Arc<Semaphore>,
    total: Arc<Semaphore>,
    counters: Counters,
}

/// A connection's place at the server: held until the connection ends.
#[derive(Debug)]
pub struct Admission {
    /// Its place among all connections.
    _total: OwnedSemaphorePermit,
    /// Its place among the unauthenticated ones (taken back by [`Admission::slot`]).
    pending: Option<PendingSlot>,
}

impl Admission {
    /// The connection's unauthenticated place, to hold during its handshake and drop after.
    pub fn slot(&mut self) -> Option<PendingSlot> {
        self.pending.take()
    }
}

/// A place among the unauthenticated connections; dropping it gives the place back.
#[derive(Debug)]
pub struct PendingSlot {
    gate: Arc<Gate>,
    id: u64,
    evicted: Option<oneshot::Receiver<()>>,
}

impl PendingSlot {
    /// Completes when the gate evicted this connection to make room for a newer one.
    pub fn evicted(&mut self) -> impl Future<Output = ()> + '_ {
        let rx = self.evicted.as_mut();
        async move {
            match rx {
                // A sender dropped without a word also means the place is gone.
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        if let Ok(mut p) = self.gate.pending.lock() {
            p.slots.remove(&self.id);
        }
    }
}

impl Gate {
    /// A gate of these sizes.
    pub fn new(limits: GateLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            pending: Mutex::new(Pending::default()),
            sessions: Arc::new(Semaphore::new(limits.max_sessions)),
            total: Arc::new(Semaphore::new(limits.max_total)),
            counters: Counters::default(),
        })
    }

    /// Its sizes.
    pub fn limits(&self) -> GateLimits {
        self.limits
    }

    /// A place for a new connection, evicting the oldest unauthenticated one when they are all taken.
    /// `None` (counted as refused) when the total cap is reached: close the connection at once.
    pub fn admit(self: &Arc<Self>) -> Option<Admission> {
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut p = self.pending.lock().ok()?;
            while p.slots.len() >= self.limits.max_pending {
                let Some((_, oldest)) = p.slots.pop_first() else {
                    break;
                };
                let _ = oldest.send(());
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            }
            let id = p.next;
            p.next += 1;
            p.slots.insert(id, tx);
            id
        };
        Some(Admission {
            _total: total,
            pending: Some(PendingSlot {
                gate: self.clone(),
                id,
                evicted: Some(rx),
            }),
        })
    }

    /// A session place for a connection that finished its handshake; `None` (counted) when all are taken.
    pub fn session(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.sessions.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.counters.sessions_full.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }

    /// Count an unauthenticated connection that stayed silent past a deadline.
    pub fn timed_out(&self) {
        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Unauthenticated connections held now.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.slots.len()).unwrap_or(0)
    }

    /// What was dropped since the last call (the counters restart at zero).
    pub fn take_pressure(&self) -> Pressure {
        let c = &self.counters;
        Pressure {
            evicted: c.evicted.swap(0, Ordering::Relaxed),
            refused: c.refused.swap(0, Ordering::Relaxed),
            timed_out: c.timed_out.swap(0, Ordering::Relaxed),
            sessions_full: c.sessions_full.swap(0, Ordering::Relaxed),
        }
    }

    /// Whether anything was dropped since the last [`Gate::take_pressure`] (the counters are kept).
    pub fn under_pressure(&self) -> bool {
        let c = &self.counters;
        [&c.evicted, &c.refused, &c.timed_out, &c.sessions_full]
            .iter()
            .any(|n| n.load(Ordering::Relaxed) > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_pool_evicts_its_oldest_connection_not_the_newest() {
        let gate = Gate::new(GateLimits::new(3, 2));
        let mut held: Vec<Admission> = (0..3).map(|_| gate.admit().unwrap()).collect();
        let mut oldest = held[0].slot().unwrap();
        let mut second = held[1].slot().unwrap();
        // The fourth connection gets in; the first is told to stop, the second is not.
        let _newest = gate.admit().unwrap();
        tokio::time::timeout(Duration::from_secs(5), oldest.evicted())
            .await
            .expect("the oldest connection was evicted");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.evicted())
                .await
                .is_err(),
            "only the oldest is evicted"
        );
        assert_eq!(gate.pending(), 3);
        let p = gate.take_pressure();
        assert_eq!((p.evicted, p.refused), (1, 0));
        assert!(!gate.take_pressure().any(), "the counters restart");
    }

    #[test]
    fn sessions_have_their_own_places_and_the_total_is_capped() {
        let gate = Gate::new(GateLimits {
            max_pending: 2,
            max_sessions: 1,
            max_total: 3,
        });
        let mut a = gate.admit().unwrap();
        // The handshake finished: the pending place is given back, a session place taken.
        drop(a.slot());
        let _session = gate.session().unwrap();
        assert!(gate.session().is_none(), "one session place");
        assert_eq!(gate.pending(), 0);
        let _b = gate.admit().unwrap();
        let _c = gate.admit().unwrap();
        assert!(gate.admit().is_none(), "the total cap of 3 is reached");
        let p = gate.take_pressure();
        assert_eq!((p.refused, p.sessions_full), (1, 1));
    }
}
