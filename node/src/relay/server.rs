//! `duo relay`: the server. See the [module docs](super) and `docs/protocol.md` ("Relay").
//!
//! Every TCP connection first sends an HTTP request head (at most [`MAX_HEAD`] bytes, within
//! [`RelayLimits::head_timeout`]); its path says what it is:
//! * `GET /control` (a WebSocket upgrade): an owner's control connection. The relay answers it with the node's
//!   own transport ([`crate::net::transport::accept_evictable`]) as a responder with the relay's key; the owner
//!   pins that key, and the handshake proves the owner's static key, whose fingerprint becomes its address.
//! * `GET /o/FINGERPRINT` (a WebSocket upgrade): an FI. Unknown owner: HTTP 404 at once. Otherwise the relay
//!   sends the owner [`ControlMsg::Waiting`] with a fresh token, waits for `GET /join/TOKEN` from the owner,
//!   writes the FI's request head to it, and forwards bytes both ways.
//! * `GET /join/TOKEN`: an owner's data connection.
//!
//! Until a connection is an owner's (control handshake done, or a join with a valid token) or joined to an owner
//! it holds an unauthenticated place in two [`Gate`]s, the relay's and its source address's: when either is full
//! the oldest unauthenticated connection there is evicted for the new one, as on the owner node, so a flood of
//! silent connections cannot keep a real owner out.

use super::PING_EVERY;
use super::{ControlMsg, CONTROL_IDLE, CONTROL_PATH, JOIN_PREFIX, NO_OWNER_MESSAGE, OWNER_PREFIX};
use crate::net::gate::{Admission, Gate, GateLimits, PendingSlot};
use crate::net::keys::{fingerprint, normalize_fingerprint, Keypair};
use crate::net::transport::OWNER_SILENT_AT_RELAY;
use crate::net::transport::{self, Limits, Mode};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::time::Instant;

/// Largest HTTP request head the relay reads.
pub const MAX_HEAD: usize = 8 * 1024;
/// What the relay writes on a connection it cannot take at all (over its cap on connections), before closing it.
const RELAY_BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 62\r\nConnection: close\r\n\r\nthe relay is busy with many connections; try again in a moment";
/// The WebSocket close code the relay sends an FI whose frame is over the limit (RFC 6455: message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The relay's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// FI sessions one owner may have through the relay at once.
    pub sessions_per_owner: usize,
    /// Bytes per second forwarded for one owner, both directions and all its sessions together.
    pub bytes_per_sec: u64,
    /// Largest WebSocket frame an FI may send (header excluded); the owner node's own limit is 65 600.
    pub max_frame: u64,
    /// A joined session with no byte either way for this long is closed.
    pub idle: Duration,
    /// How long an FI waits for its owner's data connection.
    pub join_timeout: Duration,
    /// The whole request head must arrive within this time.
    pub head_timeout: Duration,
    /// Unauthenticated connections held at once (the oldest is evicted for a new one).
    pub max_pending: usize,
    /// Unauthenticated connections from one source address held at once (its oldest is evicted).
    pub max_pending_per_ip: usize,
    /// Owners connected at once. Each costs the relay about 36-58 KiB (measured by `duo bench relay`), so
    /// the default 10 000 bounds owner state near 0.6 GB.
    pub max_owners: usize,
    /// Owners connected at once from one source address (an IPv6 source counts by its /64, which one host
    /// usually holds whole), so one address cannot take the relay's memory or all its owner places.
    pub max_owners_per_source: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            sessions_per_owner: 16,
            bytes_per_sec: 8 << 20,
            max_frame: 65_600,
            idle: Duration::from_secs(300),
            join_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(3),
            max_pending: 1024,
            max_pending_per_ip: 64,
            max_owners: 10_000,
            max_owners_per_source: 256,
        }
    }
}

/// How to run a relay.
#[derive(Debug)]
pub struct RelayConfig {
    /// The relay's static key (owners pin its fingerprint).
    pub key: Keypair,
    /// Its limits.
    pub limits: RelayLimits,
    /// Tests only: every byte the relay forwards between an FI and an owner is appended here.
    pub capture: Option<Arc<Capture>>,
}

/// Tests only: the bytes a relay forwarded, by direction, exactly as they crossed it.
#[derive(Debug, Default)]
pub struct Capture {
    /// From FIs to owners (starting with each FI's HTTP request head; its WebSocket frames are masked).
    pub to_owner: Mutex<Vec<u8>>,
    /// From owners to FIs.
    pub to_fi: Mutex<Vec<u8>>,
}

/// What a relay serves, counted since it started (gauges are "now").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelayStats {
    /// Owners connected now.
    pub owners: u64,
    /// FI sessions joined now.
    pub sessions: u64,
    /// FI sessions joined since start.
    pub sessions_total: u64,
    /// Bytes forwarded (both directions) since start.
    pub bytes: u64,
    /// FIs refused because no owner with that key was connected.
    pub unknown_owner: u64,
    /// FIs refused because their owner had its maximum of sessions.
    pub owner_busy: u64,
    /// FIs refused because their owner did not join the session in time (HTTP 504).
    pub owner_silent: u64,
    /// Sessions cut for a frame over the limit.
    pub oversized: u64,
    /// Unauthenticated connections evicted or refused to make room.
    pub dropped: u64,
    /// Owners refused because the relay, or their source address, had its maximum of owners.
    pub owners_refused: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sessions: AtomicU64,
    sessions_total: AtomicU64,
    bytes: AtomicU64,
    unknown_owner: AtomicU64,
    owner_busy: AtomicU64,
    owner_silent: AtomicU64,
    oversized: AtomicU64,
    dropped: AtomicU64,
    owners_refused: AtomicU64,
}

/// One connected owner.
struct OwnerEntry {
    /// Which control connection holds the address (a reconnect replaces an older one).
    generation: u64,
    /// The source it connected from ([`source_of`]), whose count of owners it holds.
    source: IpAddr,
    control: mpsc::Sender<ControlMsg>,
    sessions: Arc<Semaphore>,
    bucket: Arc<tokio::sync::Mutex<Bucket>>,
}

/// A token bucket of bytes, refilled at the owner's rate, holding at most one second's worth.
struct Bucket {
    rate: u64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Wait until `n` bytes may pass.
    async fn take(&mut self, n: usize) {
        let rate = self.rate.max(1) as f64;
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / rate)).await;
        }
    }
}

/// The connected owners by fingerprint, and how many there are from each source.
#[derive(Default)]
struct Owners {
    by_key: HashMap<String, OwnerEntry>,
    per_source: HashMap<IpAddr, usize>,
}

impl Owners {
    /// Register `entry` as `owner` (replacing its older control connection), or say why not.
    fn register(
        &mut self,
        owner: &str,
        entry: OwnerEntry,
        limits: &RelayLimits,
    ) -> Result<(), String> {
        let source = entry.source;
        let replaces = self.by_key.get(owner).map(|e| e.source);
        let here = self.per_source.get(&source).copied().unwrap_or(0);
        if replaces != Some(source) && here >= limits.max_owners_per_source {
            return Err(format!(
                "the relay has its maximum of {} owners from your address {source}; stop some nodes there, or \
                 ask the relay's operator to raise --max-owners-per-source",
                limits.max_owners_per_source
            ));
        }
        if replaces.is_none() && self.by_key.len() >= limits.max_owners {
            return Err(format!(
                "the relay has its maximum of {} owners; try again later, or use another relay",
                limits.max_owners
            ));
        }
        if let Some(old) = self.by_key.insert(owner.to_string(), entry) {
            self.forget_source(old.source);
        }
        *self.per_source.entry(source).or_insert(0) += 1;
        Ok(())
    }

    /// Remove `owner` if `generation` still holds its address.
    fn remove(&mut self, owner: &str, generation: u64) {
        if self
            .by_key
            .get(owner)
            .is_some_and(|e| e.generation == generation)
        {
            if let Some(old) = self.by_key.remove(owner) {
                self.forget_source(old.source);
            }
        }
    }

    fn forget_source(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

/// The source an owner counts against: its IPv4 address, or the /64 of its IPv6 address.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

struct Relay {
    key: Keypair,
    limits: RelayLimits,
    capture: Option<Arc<Capture>>,
    gate: Arc<Gate>,
    per_ip: Mutex<HashMap<IpAddr, Arc<Gate>>>,
    owners: Mutex<Owners>,
    joins: Mutex<HashMap<String, oneshot::Sender<TcpStream>>>,
    next_generation: AtomicU64,
    counters: Counters,
}

/// A running relay. Dropping it does not stop it; call [`RunningRelay::shutdown`].
pub struct RunningRelay {
    /// The address it listens on.
    pub addr: SocketAddr,
    fingerprint: String,
    relay: Arc<Relay>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    /// `ws://ADDR`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// What an owner passes to `duo owner serve --relay`: `ws://ADDR#FINGERPRINT`.
    pub fn pin(&self) -> String {
        format!("{}#{}", self.url(), self.fingerprint)
    }

    /// The fingerprint of the relay's key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The address FIs use for the owner whose node key has `owner_fingerprint`.
    pub fn owner_url(&self, owner_fingerprint: &str) -> String {
        format!("{}{OWNER_PREFIX}{owner_fingerprint}", self.url())
    }

    /// The counts now.
    pub fn stats(&self) -> RelayStats {
        self.relay.stats()
    }

    /// Stop accepting and drop every connection (owners reconnect to the next relay on this address).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The relay's key in `dir` (`HOME/relay`), made on first use: the file `key`, readable by this user only.
///
/// # Errors
/// When the directory or key cannot be read or written, or the key file is writable by others.
pub fn load_or_create_key(dir: &std::path::Path) -> Result<Keypair, crate::error::Error> {
    use crate::error::Error;
    let path = dir.join("key");
    if path.exists() {
        crate::home::refuse_writable_by_others(&path).map_err(|e| Error::Refused(e.to_string()))?;
        let bytes = std::fs::read(&path)?;
        return Keypair::from_file_bytes(&bytes)
            .map_err(|e| Error::Internal(format!("the relay key {}: {e}", path.display())));
    }
    crate::home::private_dir(dir)?;
    let key = Keypair::try_generate().map_err(|e| Error::Internal(e.to_string()))?;
    crate::home::write_private(&path, &key.to_file_bytes())?;
    Ok(key)
}

/// Start a relay on `listen` (port 0 picks a free port).
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn(cfg: RelayConfig, listen: SocketAddr) -> std::io::Result<RunningRelay> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let fingerprint = cfg.key.fingerprint();
    let limits = cfg.limits;
    let relay = Arc::new(Relay {
        key: cfg.key,
        gate: Gate::new(GateLimits::new(limits.max_pending, limits.max_owners)),
        limits,
        capture: cfg.capture,
        per_ip: Mutex::default(),
        owners: Mutex::default(),
        joins: Mutex::default(),
        next_generation: AtomicU64::new(0),
        counters: Counters::default(),
    });
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, relay.clone(), rx));
    Ok(RunningRelay {
        addr,
        fingerprint,
        relay,
        shutdown,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    relay: Arc<Relay>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let mut prune = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(places) = relay.admit(peer.ip()) else {
                    relay.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    let _ = tcp.try_write(RELAY_BUSY);
                    continue;
                };
                let relay = relay.clone();
                conns.spawn(async move { relay.connection(tcp, places).await });
            }
            _ = prune.tick() => relay.prune(),
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// A connection's places in the relay's gate and in its source address's gate.
struct Places {
    _all: Admission,
    /// Held only while unauthenticated: owners and joined FIs behind one address are not capped by it.
    ip: Option<Admission>,
    slots: Option<(PendingSlot, PendingSlot)>,
}

impl Places {
    /// The connection is an owner's, or joined to one: it gives its unauthenticated places back.
    fn authenticated(&mut self) {
        self.slots = None;
        self.ip = None;
    }

    /// Completes when either gate evicted this connection.
    async fn evicted(slots: &mut Option<(PendingSlot, PendingSlot)>) {
        match slots {
            Some((a, b)) => tokio::select! { () = a.evicted() => {}, () = b.evicted() => {} },
            None => std::future::pending().await,
        }
    }
}

/// The request head of a connection, and any bytes read after it.
struct Head {
    path: String,
    bytes: Vec<u8>,
    extra: Vec<u8>,
}

impl Relay {
    fn stats(&self) -> RelayStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let p = self.gate.take_pressure();
        c.dropped
            .fetch_add(p.evicted + p.refused + p.timed_out, Ordering::Relaxed);
        RelayStats {
            owners: self
                .owners
                .lock()
                .map(|o| o.by_key.len() as u64)
                .unwrap_or(0),
            sessions: g(&c.sessions),
            sessions_total: g(&c.sessions_total),
            bytes: g(&c.bytes),
            unknown_owner: g(&c.unknown_owner),
            owner_busy: g(&c.owner_busy),
            owner_silent: g(&c.owner_silent),
            oversized: g(&c.oversized),
            dropped: g(&c.dropped),
            owners_refused: g(&c.owners_refused),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Places> {
        let ip_gate = {
            let mut map = self.per_ip.lock().ok()?;
            let per = self.limits.max_pending_per_ip;
            map.entry(ip)
                .or_insert_with(|| {
                    Gate::new(GateLimits {
                        max_pending: per.max(1),
                        max_sessions: 1,
                        max_total: per.max(1).saturating_mul(2),
                    })
                })
                .clone()
        };
        let ip = ip_gate.admit();
        let p = ip_gate.take_pressure();
        self.counters
            .dropped
            .fetch_add(p.evicted + p.refused, Ordering::Relaxed);
        let mut ip = ip?;
        let mut all = self.gate.admit()?;
        let slots = all.slot().zip(ip.slot());
        Some(Places {
            _all: all,
            ip: Some(ip),
            slots,
        })
    }

    /// Forget source addresses with nothing pending (their gates live on in the connections that hold them).
    fn prune(&self) {
        if let Ok(mut map) = self.per_ip.lock() {
            map.retain(|_, g| g.pending() > 0);
        }
        if let Ok(mut joins) = self.joins.lock() {
            joins.retain(|_, tx| !tx.is_closed());
        }
    }

    async fn connection(self: Arc<Self>, mut tcp: TcpStream, mut places: Places) {
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + self.limits.head_timeout;
        let head = tokio::select! {
            biased;
            () = Places::evicted(&mut places.slots) => None,
            h = tokio::time::timeout_at(deadline, read_head(&mut tcp)) => h.ok().flatten(),
        };
        let Some(head) = head else {
            return;
        };
        if head.path == CONTROL_PATH {
            self.control(tcp, head, places).await;
        } else if let Some(fp) = head.path.strip_prefix(OWNER_PREFIX) {
            let fp = fp.to_string();
            self.client(tcp, head, &fp, places).await;
        } else if let Some(token) = head.path.strip_prefix(JOIN_PREFIX) {
            let tx = self.joins.lock().ok().and_then(|mut j| j.remove(token));
            match tx {
                Some(tx) => {
                    places.authenticated();
                    let _ = tx.send(tcp);
                }
                None => refuse(tcp, 404, "no FI is waiting for this join token").await,
            }
        } else {
            refuse(
                tcp,
                404,
                "this is a Duo relay: FIs connect to /o/FINGERPRINT, owners to /control",
            )
            .await;
        }
    }

    /// An owner's control connection: the Noise handshake, then its address until it goes away.
    async fn control(self: Arc<Self>, tcp: TcpStream, head: Head, mut places: Places) {
        let Ok(peer) = tcp.peer_addr() else {
            return;
        };
        let stream = Prefixed {
            prefix: [head.bytes, head.extra].concat(),
            pos: 0,
            inner: tcp,
        };
        let checks = transport::Checks {
            psk_for_invite: |_: &str| None,
            invite_refusal: |_: &str| {
                "a relay pairs nobody: pair with the owner's node".to_string()
            },
            verify: |mode: &Mode, _: &[u8; 32]| match mode {
                Mode::Session => Ok(()),
                Mode::Pair { .. } => Err(("bad_hello".into(), "a relay pairs nobody".into())),
            },
            bad_psk: |_: &str| {},
        };
        let limits = Limits {
            idle_timeout: CONTROL_IDLE,
            ..Limits::default()
        };
        let evicted = async {
            match places.slots.as_mut() {
                Some((a, b)) => tokio::select! { () = a.evicted() => {}, () = b.evicted() => {} },
                None => std::future::pending().await,
            }
        };
        let accepted =
            transport::accept_evictable(stream, &self.key, checks, &limits, evicted).await;
        places.authenticated();
        let Ok((mut chan, _)) = accepted else {
            return;
        };
        let owner = fingerprint(&chan.remote_static());
        let (tx, mut rx) = mpsc::channel(64);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let entry = OwnerEntry {
            generation,
            source: source_of(peer.ip()),
            control: tx,
            sessions: Arc::new(Semaphore::new(self.limits.sessions_per_owner.max(1))),
            bucket: Arc::new(tokio::sync::Mutex::new(Bucket {
                rate: self.limits.bytes_per_sec,
                tokens: self.limits.bytes_per_sec as f64,
                at: Instant::now(),
            })),
        };
        // A reconnecting owner replaces its older control connection (which may be dead without knowing).
        let registered = match self.owners.lock() {
            Ok(mut owners) => owners.register(&owner, entry, &self.limits),
            Err(_) => Err("the relay failed; try again later".to_string()),
        };
        if let Err(reason) = registered {
            self.counters.owners_refused.fetch_add(1, Ordering::Relaxed);
            if let Ok(bytes) = serde_json::to_vec(&ControlMsg::Refused { reason }) {
                let _ = chan.send(&bytes).await;
            }
            chan.close().await;
            return;
        }
        let ready = ControlMsg::Ready {
            path: format!("{OWNER_PREFIX}{owner}"),
        };
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut next = Some(ready);
        loop {
            if let Some(msg) = next.take() {
                let Ok(bytes) = serde_json::to_vec(&msg) else {
                    break;
                };
                if chan.send(&bytes).await.is_err() {
                    break;
                }
            }
            tokio::select! {
                got = rx.recv() => match got {
                    Some(msg) => next = Some(msg),
                    None => break,
                },
                got = chan.recv() => match got {
                    // Pings, and anything else an owner may say later, only show it is alive.
                    Ok(Some(_)) => {}
                    _ => break,
                },
                _ = ping.tick() => next = Some(ControlMsg::Ping),
            }
        }
        if let Ok(mut owners) = self.owners.lock() {
            owners.remove(&owner, generation);
        }
        chan.close().await;
    }

    /// An FI asking for the owner with fingerprint `fp`.
    async fn client(self: Arc<Self>, mut fi: TcpStream, head: Head, fp: &str, mut places: Places) {
        let found = normalize_fingerprint(fp).and_then(|fp| {
            let owners = self.owners.lock().ok()?;
            owners
                .by_key
                .get(&fp)
                .map(|e| (e.control.clone(), e.sessions.clone(), e.bucket.clone()))
        });
        let Some((control, sessions, bucket)) = found else {
            self.counters.unknown_owner.fetch_add(1, Ordering::Relaxed);
            return refuse(fi, 404, NO_OWNER_MESSAGE).await;
        };
        let Ok(permit) = sessions.try_acquire_owned() else {
            self.counters.owner_busy.fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "the owner has its maximum of {} sessions open through the relay; try again in a moment",
                self.limits.sessions_per_owner
            );
            return refuse(fi, 503, &why).await;
        };
        let token = hex(&rand::random::<[u8; 16]>());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut joins) = self.joins.lock() {
            joins.insert(token.clone(), tx);
        }
        let asked = control.try_send(ControlMsg::Waiting {
            token: token.clone(),
        });
        let joined = if asked.is_ok() {
            tokio::select! {
                biased;
                () = Places::evicted(&mut places.slots) => None,
                j = tokio::time::timeout(self.limits.join_timeout, rx) => j.ok().and_then(Result::ok),
            }
        } else {
            None
        };
        let Some(mut owner) = joined else {
            if let Ok(mut joins) = self.joins.lock() {
                joins.remove(&token);
            }
            self.counters.owner_silent.fetch_add(1, Ordering::Relaxed);
            return refuse(fi, 504, OWNER_SILENT_AT_RELAY).await;
        };
        places.authenticated();
        let _ = owner.set_nodelay(true);
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        self.counters.sessions_total.fetch_add(1, Ordering::Relaxed);
        let start = [head.bytes, head.extra.clone()].concat();
        if let Some(c) = &self.capture {
            if let Ok(mut c) = c.to_owner.lock() {
                c.extend_from_slice(&start);
            }
        }
        self.counters
            .bytes
            .fetch_add(start.len() as u64, Ordering::Relaxed);
        if owner.write_all(&start).await.is_ok() {
            self.splice(&mut fi, &mut owner, &head.extra, &bucket).await;
        }
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    }

    /// Forward bytes both ways until both sides have closed, a side fails, the session is idle too long, or the
    /// FI sends a frame over the limit (it is then sent a close frame 1009 saying so).
    async fn splice(
        &self,
        fi: &mut TcpStream,
        owner: &mut TcpStream,
        already: &[u8],
        bucket: &tokio::sync::Mutex<Bucket>,
    ) {
        let mut meter = FrameMeter::new(self.limits.max_frame);
        let mut up = vec![0u8; 16 * 1024];
        let mut down = vec![0u8; 16 * 1024];
        let (mut fi_open, mut owner_open) = (true, true);
        let mut last = Instant::now();
        let mut oversized = meter.feed(already).err();
        while oversized.is_none() && (fi_open || owner_open) {
            let (dir_up, n) = tokio::select! {
                r = fi.read(&mut up), if fi_open => (true, r.unwrap_or(0)),
                r = owner.read(&mut down), if owner_open => (false, r.unwrap_or(0)),
                () = tokio::time::sleep_until(last + self.limits.idle) => return,
            };
            last = Instant::now();
            let (data, dst) = if dir_up {
                (up.get(..n).unwrap_or_default(), &mut *owner)
            } else {
                (down.get(..n).unwrap_or_default(), &mut *fi)
            };
            if n == 0 {
                // One side finished: pass the end on, keep the other direction until it finishes too.
                let _ = dst.shutdown().await;
                if dir_up {
                    fi_open = false
                } else {
                    owner_open = false
                }
                continue;
            }
            if dir_up {
                if let Err(size) = meter.feed(data) {
                    oversized = Some(size);
                    break;
                }
            }
            bucket.lock().await.take(n).await;
            if let Some(c) = &self.capture {
                let side = if dir_up { &c.to_owner } else { &c.to_fi };
                if let Ok(mut c) = side.lock() {
                    c.extend_from_slice(data);
                }
            }
            self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if dst.write_all(data).await.is_err() {
                return;
            }
        }
        if let Some(size) = oversized {
            self.counters.oversized.fetch_add(1, Ordering::Relaxed);
            let reason = format!(
                "relay: a {size}-byte frame, over its {}-byte limit",
                self.limits.max_frame
            );
            let _ = fi.write_all(&close_frame(CLOSE_TOO_BIG, &reason)).await;
            let _ = fi.shutdown().await;
        }
    }
}

/// Reads an HTTP request head: `None` if it is malformed, too long, or the peer closed first.
async fn read_head(tcp: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    };
    let extra = buf.split_off(end);
    let line = buf.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, path) = (parts.next()?, parts.next()?);
    if method != "GET" {
        return None;
    }
    Some(Head {
        path: path.to_string(),
        bytes: buf,
        extra,
    })
}

/// Answer with an HTTP error whose body says why, and close.
async fn refuse(mut tcp: TcpStream, status: u16, why: &str) {
    let text = match status {
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Gateway Timeout",
    };
    let answer = format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}",
        why.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// A server-to-client WebSocket close frame (unmasked) with `code` and `reason` (cut to 123 bytes).
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut reason = reason.as_bytes();
    reason = reason.get(..reason.len().min(123)).unwrap_or_default();
    let mut f = vec![0x88, (2 + reason.len()) as u8];
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason);
    f
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Follows the WebSocket frames of a byte stream by their headers only (RFC 6455 section 5.2), skipping
/// payloads unread, and reports a frame whose payload is over the limit.
#[derive(Debug)]
struct FrameMeter {
    max: u64,
    header: Vec<u8>,
    remaining: u64,
}

impl FrameMeter {
    fn new(max: u64) -> Self {
        FrameMeter {
            max,
            header: Vec::with_capacity(14),
            remaining: 0,
        }
    }

    /// Follow `data`; `Err(length)` for a frame over the limit.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), u64> {
        while let Some((&first, rest)) = data.split_first() {
            if self.remaining > 0 {
                let k = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= k as u64;
                data = data.get(k..).unwrap_or_default();
                continue;
            }
            self.header.push(first);
            data = rest;
            if let Some(len) = frame_length(&self.header) {
                if len > self.max {
                    return Err(len);
                }
                self.remaining = len;
                self.header.clear();
            }
        }
        Ok(())
    }
}

/// The payload length of a complete frame header, `None` while it is incomplete.
fn frame_length(h: &[u8]) -> Option<u64> {
    let b1 = *h.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (ext, short) = match b1 & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let need = 2 + ext + if masked { 4 } else { 0 };
    if h.len() < need {
        return None;
    }
    Some(short.unwrap_or_else(|| {
        h.get(2..2 + ext)
            .unwrap_or_default()
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }))
}

/// A stream whose first bytes were already read: they are read again, then the stream's own.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(left) = this.prefix.get(this.pos..).filter(|l| !l.is_empty()) {
            let k = left.len().min(buf.remaining());
            buf.put_slice(left.get(..k).unwrap_or_default());
            this.pos += k;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_follows_frames_and_flags_a_long_one() {
        let mut m = FrameMeter::new(200);
        // A masked 5-byte frame, then a masked frame with a 16-bit length of 300, fed a byte at a time.
        let mut bytes = vec![0x82, 0x85, 1, 2, 3, 4, b'h', b'e', b'l', b'l', b'o'];
        bytes.extend_from_slice(&[0x82, 0xfe, 0x01, 0x2c, 9, 9, 9, 9]);
        let (ok, long) = bytes.split_at(11);
        for b in ok {
            assert!(m.feed(&[*b]).is_ok());
        }
        assert_eq!(m.feed(long), Err(300));
        let mut m = FrameMeter::new(1 << 20);
        let mut huge = vec![0x82, 0x7f];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            m.feed(&huge),
            Err(u64::MAX),
            "a 64-bit length is refused, not wrapped"
        );
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(c));
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(source_of(v4), v4);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(source_of(mapped), v4);
    }

    #[test]
    fn a_close_frame_is_well_formed() {
        let f = close_frame(1009, &"x".repeat(300));
        assert_eq!(f.len(), 2 + 2 + 123);
        assert_eq!((f[0], f[1], f[2], f[3]), (0x88, 125, 0x03, 0xf1));
    }
}
