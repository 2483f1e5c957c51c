//! A minimal message channel for driving the sans-io protocols in tests and benches.
//!
//! The protocols in this crate never do I/O: they hand back byte messages and take the peer's. [`Channel`] is
//! the smallest thing that moves those messages, and [`pair`] gives an in-memory duplex of two [`End`]s, one per
//! party, that can be moved to two threads. Each end counts the bytes it sent and received, so benches can
//! report bytes on the wire. The node carries the same byte messages over its encrypted session instead.
//!
//! ```
//! use duo_protocols::channel::{self, Channel};
//!
//! let (mut a, mut b) = channel::pair();
//! let t = std::thread::spawn(move || {
//!     let m = b.recv().unwrap();
//!     b.send(m.iter().map(|x| x + 1).collect()).unwrap();
//! });
//! a.send(vec![1, 2, 3]).unwrap();
//! assert_eq!(a.recv().unwrap(), vec![2, 3, 4]);
//! t.join().unwrap();
//! assert_eq!((a.bytes_sent(), a.bytes_received()), (3, 3));
//! ```

use std::sync::mpsc;

/// Moves whole byte messages to the peer, in order.
pub trait Channel {
    /// Sends one message.
    fn send(&mut self, msg: Vec<u8>) -> Result<(), ChannelError>;
    /// Receives the next message, waiting for it.
    fn recv(&mut self) -> Result<Vec<u8>, ChannelError>;
}

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The other end was dropped: the peer went away.
    #[error("the peer closed the channel")]
    Closed,
}

/// One end of an in-memory duplex channel made by [`pair`].
#[derive(Debug)]
pub struct End {
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
    sent: u64,
    received: u64,
    messages_sent: u64,
    messages_received: u64,
}

/// Two connected ends: what one sends, the other receives.
pub fn pair() -> (End, End) {
    let (tx_a, rx_b) = mpsc::channel();
    let (tx_b, rx_a) = mpsc::channel();
    let end = |tx, rx| End {
        tx,
        rx,
        sent: 0,
        received: 0,
        messages_sent: 0,
        messages_received: 0,
    };
    (end(tx_a, rx_a), end(tx_b, rx_b))
}

impl End {
    /// Bytes sent from this end so far (message payloads only).
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Bytes received by this end so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Messages sent from this end so far.
    pub fn messages_sent(&self) -> u64 {
        self.messages_sent
    }

    /// Messages received by this end so far.
    pub fn messages_received(&self) -> u64 {
        self.messages_received
    }
}

impl Channel for End {
    fn send(&mut self, msg: Vec<u8>) -> Result<(), ChannelError> {
        let n = msg.len() as u64;
        self.tx.send(msg).map_err(|_| ChannelError::Closed)?;
        self.sent += n;
        self.messages_sent += 1;
        Ok(())
    }

    fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        let msg = self.rx.recv().map_err(|_| ChannelError::Closed)?;
        self.received += msg.len() as u64;
        self.messages_received += 1;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_in_order_and_are_counted() {
        let (mut a, mut b) = pair();
        a.send(vec![1]).unwrap();
        a.send(vec![2, 3]).unwrap();
        b.send(vec![]).unwrap();
        assert_eq!(b.recv().unwrap(), vec![1]);
        assert_eq!(b.recv().unwrap(), vec![2, 3]);
        assert_eq!(a.recv().unwrap(), Vec::<u8>::new());
        assert_eq!((a.bytes_sent(), a.bytes_received()), (3, 0));
        assert_eq!((b.bytes_sent(), b.bytes_received()), (0, 3));
        assert_eq!((a.messages_sent(), b.messages_received()), (2, 2));
    }

    #[test]
    fn a_dropped_peer_is_an_error_not_a_hang() {
        let (mut a, b) = pair();
        drop(b);
        assert_eq!(a.send(vec![1]), Err(ChannelError::Closed));
        assert_eq!(a.recv(), Err(ChannelError::Closed));
        assert_eq!(a.bytes_sent(), 0);
    }
}
