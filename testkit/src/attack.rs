//! A flood of connections that never authenticate, on loopback: what an attacker who knows only the owner
//! node's address can do to lock paired FIs out. For the lockout test and `duo bench lockout`.
//!
//! Three kinds of connection, each re-opened as soon as the node closes it (or after
//! [`AttackShape::reopen_after`], as the attacker of issue 10 did every 9 s):
//!
//! - **silent**: a TCP connection that sends nothing;
//! - **trickling**: a WebSocket upgrade request sent one byte a second (slowloris);
//! - **half-upgraded**: a WebSocket upgrade request sent whole but for its last line break, or sent whole
//!   and then nothing (no Duo hello), alternately.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The WebSocket upgrade request the attack sends (whole, in part, or a byte at a time).
const UPGRADE: &[u8] =
    b"GET /duo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// How many connections of each kind the attack holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttackShape {
    /// Silent TCP connections.
    pub silent: usize,
    /// Connections trickling their upgrade request one byte a second.
    pub trickling: usize,
    /// Half-finished WebSocket upgrades.
    pub half_upgrades: usize,
    /// A connection the node has not closed is re-opened after this long.
    pub reopen_after: Duration,
}

impl AttackShape {
    /// The attack of issue 10's goal: 300 silent connections, 40 trickling, 300 half-finished upgrades,
    /// re-opened every 9 s at the latest.
    pub fn issue_10() -> Self {
        AttackShape {
            silent: 300,
            trickling: 40,
            half_upgrades: 300,
            reopen_after: Duration::from_secs(9),
        }
    }
}

/// A running attack; [`Attack::stop`] ends it (dropping it stops it too, at the tasks' next step).
#[derive(Debug)]
pub struct Attack {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    opened: Arc<AtomicU64>,
}

impl Attack {
    /// Starts the attack on the node at `addr` (on the current Tokio runtime).
    pub fn start(addr: SocketAddr, shape: AttackShape) -> Attack {
        let (stop, stopped) = watch::channel(false);
        let opened = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let kinds = [
            (shape.silent, Kind::Silent),
            (shape.trickling, Kind::Trickle),
            (shape.half_upgrades, Kind::HalfUpgrade),
        ];
        for (count, kind) in kinds {
            for i in 0..count {
                let one = Attacker {
                    addr,
                    kind,
                    odd: i % 2 == 1,
                    reopen_after: shape.reopen_after,
                    opened: opened.clone(),
                };
                tasks.spawn(one.run(stopped.clone()));
            }
        }
        Attack {
            stop,
            tasks,
            opened,
        }
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Ends the attack and closes its connections.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Silent,
    Trickle,
    HalfUpgrade,
}

struct Attacker {
    addr: SocketAddr,
    kind: Kind,
    /// Half-upgrades: odd ones send the whole request (and then no hello), even ones all but its end.
    odd: bool,
    reopen_after: Duration,
    opened: Arc<AtomicU64>,
}

impl Attacker {
    /// Open, hold, and open again, until stopped.
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        // Spread the first connections over a second, as a real flood ramps up.
        let spread = rand::random::<u64>() % 1000;
        tokio::time::sleep(Duration::from_millis(spread)).await;
        while !*stopped.borrow() {
            tokio::select! {
                _ = stopped.changed() => return,
                () = self.one() => {}
            }
        }
    }

    /// One connection, until the node closes it or it is time to re-open.
    async fn one(&self) {
        let Ok(mut tcp) = TcpStream::connect(self.addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        let (mut r, mut w) = tcp.split();
        // What this kind sends; then it waits. A failed write means the node closed the connection.
        let send = async {
            match self.kind {
                Kind::Silent => {}
                Kind::Trickle => {
                    for b in UPGRADE {
                        if w.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Kind::HalfUpgrade => {
                    let part = if self.odd {
                        UPGRADE
                    } else {
                        &UPGRADE[..UPGRADE.len() - 2]
                    };
                    if w.write_all(part).await.is_err() {
                        return;
                    }
                }
            }
            std::future::pending::<()>().await;
        };
        // Read (and drop) whatever the node says until it closes the connection.
        let closed = async {
            let mut buf = [0u8; 512];
            while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        let hold = async {
            tokio::select! {
                () = send => {}
                () = closed => {}
            }
        };
        let _ = tokio::time::timeout(self.reopen_after, hold).await;
    }
}
