//! The FI client: pairing, sessions, and pointers to the owner's data.
//!
//! Pointers are lazy. Every method that makes a pointer sends the operation to the owner's node, which
//! type-checks it against the published metadata and extends the lineage; nothing is computed and nothing
//! data-dependent comes back. Only [`Client::request`] asks for a release, which the owner's policy (or the owner)
//! decides.

use crate::error::Error;
use crate::keys::{fingerprint, InviteCode, Keypair};
use crate::release::{RequestState, RequestView};
use crate::transport::{self, Limits, Mode, SecureChannel};
use crate::wire::{self, ClientMsg, PointerInfo, PublishedDataset, ServerMsg};
use duo_engine::catalogue::CatalogueInfo;
use duo_engine::{AggKind, ArithOp, CmpOp, Expr, Pred, Type, Value};
use duo_policies::Backend;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

/// The FI's directory inside a Duo home.
pub fn fi_dir(home: &Path) -> PathBuf {
    home.join("fi")
}

/// An owner node this FI is paired with, as kept in the FI's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingRecord {
    /// Local name for the owner node (default `owner`).
    pub name: String,
    /// Where the node listens.
    pub url: String,
    /// The owner node key's fingerprint, pinned at pairing.
    pub fingerprint: String,
    /// The principal name the owner gave this FI.
    pub principal: String,
    /// When the pairing was made.
    pub paired_at: String,
}

/// The FI's keys and pairings on disk (directory 0700, files 0600).
#[derive(Debug, Clone)]
pub struct FiHome {
    dir: PathBuf,
}

impl FiHome {
    /// The FI home in `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        FiHome {
            dir: dir.to_path_buf(),
        }
    }

    /// The FI's static key, made on first use.
    pub fn key(&self) -> Result<Keypair, Error> {
        crate::home::private_dir(&self.dir)?;
        let path = self.dir.join("fi.key");
        if let Ok(bytes) = std::fs::read(&path) {
            return Keypair::from_file_bytes(&bytes)
                .map_err(|e| Error::Internal(format!("{}: {e}", path.display())));
        }
        let kp = Keypair::generate();
        crate::home::write_private(&path, &kp.to_file_bytes())?;
        Ok(kp)
    }

    /// All pairings.
    pub fn pairings(&self) -> Result<Vec<PairingRecord>, Error> {
        match std::fs::read(self.dir.join("pairings.json")) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The pairing with this name, or the only (or most recent) one when `name` is `None`.
    pub fn pairing(&self, name: Option<&str>) -> Result<PairingRecord, Error> {
        let all = self.pairings()?;
        match name {
            Some(n) => all.into_iter().find(|p| p.name == n).ok_or_else(|| {
                Error::NotFound(format!("no pairing named `{n}`; see `duo fi pair --help`"))
            }),
            None => all.into_iter().last().ok_or_else(|| {
                Error::NotFound(
                    "this FI is not paired with any owner node; run `duo fi pair URL CODE` with the owner's invite code"
                        .into(),
                )
            }),
        }
    }

    fn save(&self, rec: PairingRecord) -> Result<(), Error> {
        let mut all = self.pairings()?;
        all.retain(|p| p.name != rec.name);
        all.push(rec);
        crate::home::private_dir(&self.dir)?;
        crate::home::write_private(
            &self.dir.join("pairings.json"),
            &serde_json::to_vec_pretty(&all)?,
        )?;
        Ok(())
    }
}

/// A pointer to an object on the owner's node: an id and static facts, never data.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    /// Pointer id in this session.
    pub id: u64,
    /// Static type.
    pub ty: Type,
    /// The lineage in plain words.
    pub description: String,
}

impl From<PointerInfo> for Pointer {
    fn from(p: PointerInfo) -> Self {
        Pointer {
            id: p.id,
            ty: p.ty,
            description: p.description,
        }
    }
}

fn ptr(p: &Pointer) -> Box<Expr> {
    Box::new(Expr::Ptr { id: p.id })
}

/// A session with an owner node.
pub struct Client {
    chan: SecureChannel<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    principal: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// Pair with an owner node using an invite code, and remember the pairing under `name`.
pub async fn pair(
    home: &FiHome,
    url: &str,
    code: &str,
    name: &str,
) -> Result<PairingRecord, Error> {
    let code = InviteCode::parse(code).map_err(|e| Error::Refused(format!("invite code: {e}")))?;
    let key = home.key()?;
    let mode = Mode::Pair {
        invite: code.id.clone(),
    };
    let chan = transport::connect(
        url,
        &key,
        mode,
        Some(code.psk()),
        &code.fingerprint,
        &Limits::default(),
    )
    .await
    .map_err(|e| Error::Transport(e.to_string()))?;
    let client = Client::start(chan).await?;
    let rec = PairingRecord {
        name: name.to_string(),
        url: url.to_string(),
        fingerprint: code.fingerprint.clone(),
        principal: client.principal.clone(),
        paired_at: crate::store::now_text(),
    };
    home.save(rec.clone())?;
    client.close().await;
    Ok(rec)
}

impl Client {
    /// Open a session with a paired owner node (`name` as in [`FiHome::pairing`]).
    pub async fn connect(home: &FiHome, name: Option<&str>) -> Result<Client, Error> {
        let rec = home.pairing(name)?;
        let key = home.key()?;
        Self::connect_with(&rec.url, &key, &rec.fingerprint).await
    }

    /// Open a session with explicit keys.
    pub async fn connect_with(
        url: &str,
        key: &Keypair,
        owner_fingerprint: &str,
    ) -> Result<Client, Error> {
        let chan = transport::connect(
            url,
            key,
            Mode::Session,
            None,
            owner_fingerprint,
            &Limits::default(),
        )
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
        Self::start(chan).await
    }

    async fn start(mut chan: SecureChannel<MaybeTlsStream<TcpStream>>) -> Result<Client, Error> {
        let bytes = chan
            .recv()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?
            .ok_or_else(|| Error::Transport("the owner node closed the session".into()))?;
        match wire::decode_server(&bytes)? {
            (_, ServerMsg::Welcome { principal, .. }) => Ok(Client {
                chan,
                next_id: 1,
                principal,
            }),
            (_, ServerMsg::Error { code, message }) => Err(Error::Remote { code, message }),
            (_, other) => Err(Error::Transport(format!(
                "unexpected first message from the owner node: {other:?}"
            ))),
        }
    }

    /// The principal name the owner gave this FI.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Send one message and wait for its reply; an `error` reply becomes [`Error::Remote`].
    pub async fn call(&mut self, msg: &ClientMsg) -> Result<ServerMsg, Error> {
        let id = self.next_id;
        self.next_id += 1;
        self.chan
            .send(&wire::encode(id, msg))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let bytes = self
            .chan
            .recv()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?
            .ok_or_else(|| Error::Transport("the owner node closed the session".into()))?;
        let (rid, reply) = wire::decode_server(&bytes)?;
        if rid != id {
            return Err(Error::Transport(format!(
                "reply to message {rid} while waiting for {id}"
            )));
        }
        match reply {
            ServerMsg::Error { code, message } => Err(Error::Remote { code, message }),
            other => Ok(other),
        }
    }

    /// The published metadata of the owner's datasets.
    pub async fn datasets(&mut self) -> Result<Vec<PublishedDataset>, Error> {
        match self.call(&ClientMsg::ListDatasets).await? {
            ServerMsg::Datasets { datasets } => Ok(datasets),
            other => Err(unexpected(other)),
        }
    }

    /// The catalogue of attributes.
    pub async fn catalogue(&mut self) -> Result<Vec<CatalogueInfo>, Error> {
        match self.call(&ClientMsg::ListCatalogue).await? {
            ServerMsg::Catalogue { entries } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Make a pointer from an expression (which may refer to this session's pointers).
    pub async fn pointer(&mut self, expr: Expr) -> Result<Pointer, Error> {
        match self.call(&ClientMsg::Pointer { expr }).await? {
            ServerMsg::Pointer(p) => Ok(p.into()),
            other => Err(unexpected(other)),
        }
    }

    /// Parse an expression in the syntax of [`duo_engine::parse`] and make a pointer from it.
    pub async fn expr(&mut self, src: &str) -> Result<Pointer, Error> {
        let expr = duo_engine::parse::parse_expr(src)
            .map_err(|e| Error::Refused(format!("expression:\n{}", e.render(src))))?;
        self.pointer(expr).await
    }

    /// A pointer to a whole dataset.
    pub async fn dataset(&mut self, name: &str) -> Result<Pointer, Error> {
        self.pointer(Expr::Dataset { name: name.into() }).await
    }

    /// A pointer to a catalogue attribute over the window ending at the last full month.
    pub async fn attribute(&mut self, name: &str) -> Result<Pointer, Error> {
        self.pointer(Expr::Catalogue {
            name: name.into(),
            window_end: None,
        })
        .await
    }

    /// One column of a table pointer.
    pub async fn column(&mut self, table: &Pointer, name: &str) -> Result<Pointer, Error> {
        let e = Expr::Column {
            input: ptr(table),
            name: name.into(),
        };
        self.pointer(e).await
    }

    /// The rows of a table pointer that satisfy a predicate.
    pub async fn filter(&mut self, table: &Pointer, pred: Pred) -> Result<Pointer, Error> {
        let e = Expr::Filter {
            input: ptr(table),
            pred,
        };
        self.pointer(e).await
    }

    /// The rows of a table pointer where `column == value`.
    pub async fn filter_eq(
        &mut self,
        table: &Pointer,
        column: &str,
        value: Value,
    ) -> Result<Pointer, Error> {
        let pred = Pred::Compare {
            column: column.into(),
            op: CmpOp::Eq,
            value,
        };
        self.filter(table, pred).await
    }

    /// The rows of a table pointer in the last `months` full months.
    pub async fn last_months(&mut self, table: &Pointer, months: u32) -> Result<Pointer, Error> {
        let pred = Pred::LastMonths {
            months,
            column: None,
        };
        self.filter(table, pred).await
    }

    /// Clamp a numeric pointer into `[lo, hi]`.
    pub async fn clamp(&mut self, p: &Pointer, lo: f64, hi: f64) -> Result<Pointer, Error> {
        let e = Expr::Clamp {
            input: ptr(p),
            lo,
            hi,
        };
        self.pointer(e).await
    }

    /// Arithmetic between two pointers.
    pub async fn arith(&mut self, op: ArithOp, a: &Pointer, b: &Pointer) -> Result<Pointer, Error> {
        let e = Expr::Arith {
            op,
            left: ptr(a),
            right: ptr(b),
        };
        self.pointer(e).await
    }

    /// An aggregate of a pointer.
    pub async fn aggregate(&mut self, kind: AggKind, p: &Pointer) -> Result<Pointer, Error> {
        let e = Expr::Aggregate {
            kind,
            input: ptr(p),
        };
        self.pointer(e).await
    }

    /// Mean of a pointer.
    pub async fn mean(&mut self, p: &Pointer) -> Result<Pointer, Error> {
        self.aggregate(AggKind::Mean, p).await
    }

    /// Sum of a pointer.
    pub async fn sum(&mut self, p: &Pointer) -> Result<Pointer, Error> {
        self.aggregate(AggKind::Sum, p).await
    }

    /// Count of a pointer.
    pub async fn count(&mut self, p: &Pointer) -> Result<Pointer, Error> {
        self.aggregate(AggKind::Count, p).await
    }

    /// Ask for the release of a pointer through a backend, with a reason. The reply says whether it was
    /// approved (with the answer), denied (with the reason) or is waiting for the owner.
    pub async fn request(
        &mut self,
        p: &Pointer,
        backend: Backend,
        reason: &str,
    ) -> Result<RequestView, Error> {
        let msg = ClientMsg::Request {
            pointer: p.id,
            backend,
            reason: reason.into(),
        };
        match self.call(&msg).await? {
            ServerMsg::Request(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// The state of a request, waiting up to `wait` for a decision.
    pub async fn status(&mut self, request: u64, wait: Duration) -> Result<RequestView, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = ClientMsg::Status {
                request,
                wait_ms: (left.as_millis() as u64).min(wire::MAX_WAIT_MS),
            };
            let view = match self.call(&msg).await? {
                ServerMsg::Request(v) => v,
                other => return Err(unexpected(other)),
            };
            if view.state != RequestState::Pending || tokio::time::Instant::now() >= deadline {
                return Ok(view);
            }
        }
    }

    /// Close the session.
    pub async fn close(self) {
        self.chan.close().await;
    }
}

fn unexpected(m: ServerMsg) -> Error {
    Error::Transport(format!("unexpected reply from the owner node: {m:?}"))
}

/// The fingerprint of this FI's key (the owner sees it in its pairing list).
pub fn key_fingerprint(home: &FiHome) -> Result<String, Error> {
    Ok(fingerprint(&home.key()?.public))
}
