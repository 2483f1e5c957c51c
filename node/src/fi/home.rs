//! The FI's home on disk: its key, its pairings, the receipts it was given (hash-chained), and what it asked
//! of private scoring.
//!
//! # Several processes on one home
//!
//! Several `duo fi` commands (and several [`FiHome`] values in one process) may use one home at once. Every
//! change to it holds an exclusive advisory lock on the file `lock` in the home (`flock` on Unix, `LockFileEx`
//! on Windows, through the `fs4` crate), taken afresh for each change and released when it is done: appending
//! to the receipt log `receipts.jsonl`, rewriting `pairings.json`, `scoring_requests.json`,
//! `score_runs.json` or `score_aborts.json` (read, changed and written back under the one lock, so no writer loses another's
//! record), and creating `fi.key`. A [`FiHome`] keeps the receipt log's tail (its length, next sequence number,
//! last hash and the receipts it holds) in memory; under the lock it compares the file's length with the one
//! it indexed and reads the log again when another writer appended meanwhile, so each entry gets the next
//! number and chains to the entry really before it. Reading the receipt log ([`FiHome::receipts`],
//! [`FiHome::verify_receipts`]) takes the same lock shared, so it never sees half of an appended line; when
//! the lock file cannot be opened (no home yet, or a read-only copy of one) it reads without it. The other
//! files are replaced whole (written to a temporary file, then renamed), so reading them needs no lock. The
//! lock is advisory: a program that writes the home without taking it (a `duo` from before the lock) is not
//! held back.

use crate::error::Error;
use crate::fi::model::ModelFile;
use crate::net::keys::Keypair;
use crate::proto::digest::{hex, FieldHasher, GENESIS_HASH};
use crate::proto::receipt::Receipt;
use crate::proto::scoring::ScoringSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file in an FI home whose lock every change to the home holds.
const LOCK_FILE: &str = "lock";

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
    /// The owner node's receipt-signing key (hex), pinned at pairing.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// When a session with the owner node last opened (RFC 3339); absent until one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// One entry of the FI's receipt log: a verified receipt, hash-chained to the entry before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEntry {
    /// Position in the FI's log (1, 2, ...).
    pub seq: u64,
    /// The local name of the owner node that issued it.
    pub owner: String,
    /// The receipt.
    pub receipt: Receipt,
    /// Hash of the previous entry.
    pub prev: String,
    /// Hash of this entry: SHA-256 over `prev`, `seq`, `owner` and the receipt's signed digest and signature.
    pub hash: String,
}

impl ReceiptEntry {
    fn compute_hash(prev: &str, seq: u64, owner: &str, receipt: &Receipt) -> String {
        let seq = seq.to_string();
        let mut h = FieldHasher::new(b"duo fi receipts v1\n");
        h.field(prev).field(&seq).field(owner);
        h.raw(receipt.signed_bytes())
            .raw(receipt.signature.as_bytes());
        hex(&h.finish())
    }
}

/// The FI's keys and pairings on disk (directory 0700, files 0600).
#[derive(Debug, Clone)]
pub struct FiHome {
    dir: PathBuf,
    receipt_index: std::sync::Arc<std::sync::Mutex<Option<ReceiptIndex>>>,
}

/// The tail of the receipt log, so appending does not re-read it.
#[derive(Debug)]
struct ReceiptIndex {
    file_len: u64,
    next_seq: u64,
    last_hash: String,
    /// Signatures of the receipts kept (a signature identifies a receipt).
    seen: std::collections::HashSet<String>,
}

/// An advisory lock on an FI home's lock file, released when dropped.
#[derive(Debug)]
struct HomeLock {
    file: std::fs::File,
}

impl HomeLock {
    /// Wait for the lock on `file`: shared when `shared`, else exclusive.
    fn take(file: std::fs::File, shared: bool) -> std::io::Result<HomeLock> {
        loop {
            // Through the trait: `File` has inherent `lock` and `lock_shared` only from Rust 1.89, newer than
            // the workspace's rust-version.
            let locked = if shared {
                fs4::FileExt::lock_shared(&file)
            } else {
                fs4::FileExt::lock(&file)
            };
            match locked {
                Ok(()) => return Ok(HomeLock { file }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for HomeLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first releases it at once on every platform.
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

/// How the lock file is opened: read-write, created 0600 if missing, never truncated.
fn lock_file_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

impl FiHome {
    /// The FI home in `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        FiHome {
            dir: dir.to_path_buf(),
            receipt_index: Default::default(),
        }
    }

    /// The home's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the home's lock exclusively (see the module docs), creating the home and its lock file if need be.
    fn lock(&self) -> Result<HomeLock, Error> {
        crate::home::private_dir(&self.dir)?;
        let file = lock_file_options().open(self.dir.join(LOCK_FILE))?;
        Ok(HomeLock::take(file, false)?)
    }

    /// Take the home's lock shared, for reading the receipt log. `None` when the lock file cannot be opened:
    /// there is no home yet (so no log to read), or it is a read-only copy (so no writer to wait for).
    fn lock_shared(&self) -> Result<Option<HomeLock>, Error> {
        let path = self.dir.join(LOCK_FILE);
        let file = match lock_file_options().open(&path) {
            Ok(f) => f,
            Err(_) => match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(_) => return Ok(None),
            },
        };
        Ok(Some(HomeLock::take(file, true)?))
    }

    /// The FI's static key, made on first use.
    pub fn key(&self) -> Result<Keypair, Error> {
        let path = self.dir.join("fi.key");
        let read = || -> Option<Result<Keypair, Error>> {
            let bytes = std::fs::read(&path).ok()?;
            if let Err(e) = crate::home::refuse_writable_by_others(&path) {
                return Some(Err(Error::Refused(e.to_string())));
            }
            Some(
                Keypair::from_file_bytes(&bytes)
                    .map_err(|e| Error::Internal(format!("{}: {e}", path.display()))),
            )
        };
        if let Some(kp) = read() {
            crate::home::private_dir(&self.dir)?;
            return kp;
        }
        let _lock = self.lock()?;
        // Another process may have made it while this one waited for the lock.
        if let Some(kp) = read() {
            return kp;
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

    fn receipts_path(&self) -> PathBuf {
        self.dir.join("receipts.jsonl")
    }

    /// The FI's receipt log, oldest first.
    pub fn receipts(&self) -> Result<Vec<ReceiptEntry>, Error> {
        let _lock = self.lock_shared()?;
        self.read_receipts()
    }

    /// The receipt log as it is on disk; the caller holds the home's lock.
    fn read_receipts(&self) -> Result<Vec<ReceiptEntry>, Error> {
        let text = match std::fs::read_to_string(self.receipts_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Ok(serde_json::from_str(l)?))
            .collect()
    }

    /// Check the receipt log: every entry chains to the one before, and every receipt's signature verifies
    /// against the signing key pinned for its owner node. Returns the problems found.
    pub fn verify_receipts(&self) -> Result<Vec<String>, Error> {
        let pairings = self.pairings()?;
        let mut problems = Vec::new();
        let mut prev = GENESIS_HASH.to_string();
        for (i, e) in self.receipts()?.iter().enumerate() {
            let seq = i as u64 + 1;
            if e.seq != seq || e.prev != prev {
                problems.push(format!(
                    "entry {} is out of place (removed or reordered entries before it)",
                    e.seq
                ));
            }
            if ReceiptEntry::compute_hash(&e.prev, e.seq, &e.owner, &e.receipt) != e.hash {
                problems.push(format!("entry {} was edited", e.seq));
            }
            let pinned = pairings
                .iter()
                .find(|p| p.name == e.owner)
                .and_then(|p| p.signing_key.clone());
            if let Err(err) = e.receipt.verify(pinned.as_deref()) {
                problems.push(format!("entry {}: {err}", e.seq));
            }
            prev = e.hash.clone();
        }
        Ok(problems)
    }

    /// Keep the opening of a model commitment (the salt and the model) for an auditor, in
    /// `models/COMMITMENT.json`.
    pub fn keep_model_opening(
        &self,
        commitment: &str,
        salt: &[u8; 32],
        model: &ModelFile,
    ) -> Result<PathBuf, Error> {
        let dir = self.dir.join("models");
        crate::home::private_dir(&self.dir)?;
        crate::home::private_dir(&dir)?;
        let path = dir.join(format!("{commitment}.json"));
        let body = serde_json::json!({
            "commitment": commitment,
            "salt": hex(salt),
            "model": model,
            "how": "SHA-256 of the bytes \"duo/model-commitment/v1\", the salt's 32 bytes and the model's JSON with keys sorted and no whitespace",
        });
        crate::home::write_private(&path, &serde_json::to_vec_pretty(&body)?)?;
        Ok(path)
    }

    /// The scoring requests this FI made (what it asked for, and its commitments' salts).
    pub fn asked_scorings(&self) -> Result<Vec<AskedScoring>, Error> {
        match std::fs::read(self.dir.join("scoring_requests.json")) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn keep_asked_scoring(&self, asked: AskedScoring) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut all = self.asked_scorings()?;
        all.retain(|a| !(a.owner == asked.owner && a.request == asked.request));
        all.push(asked);
        crate::home::write_private(
            &self.dir.join("scoring_requests.json"),
            &serde_json::to_vec(&all)?,
        )?;
        Ok(())
    }

    /// The scoring runs this FI started, with the applicant and owner key of each (for its own limit).
    pub fn score_runs(&self) -> Result<Vec<ScoreRunRecord>, Error> {
        match std::fs::read(self.dir.join("score_runs.json")) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn add_score_run(&self, rec: ScoreRunRecord) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut all = self.score_runs()?;
        // Older than a year is never inside a window.
        let year_ago = rec.at - 366 * 86_400;
        all.retain(|r| r.at > year_ago);
        all.push(rec);
        crate::home::write_private(
            &self.dir.join("score_runs.json"),
            &serde_json::to_vec(&all)?,
        )?;
        Ok(())
    }

    /// The scoring runs that ended with a failed check of the owner's messages after this FI's inputs had
    /// entered the circuit ([`ScoreAbortRecord`]). While one names an owner, this FI scores it no more.
    pub fn score_aborts(&self) -> Result<Vec<ScoreAbortRecord>, Error> {
        match std::fs::read(self.dir.join("score_aborts.json")) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The abort records that stop scoring of the owner paired as `applicant` with key `owner`: those naming
    /// either.
    pub fn score_aborts_for(
        &self,
        applicant: &str,
        owner: &str,
    ) -> Result<Vec<ScoreAbortRecord>, Error> {
        let mut all = self.score_aborts()?;
        all.retain(|r| r.names(applicant, owner));
        Ok(all)
    }

    pub(crate) fn add_score_abort(&self, rec: ScoreAbortRecord) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut all = self.score_aborts()?;
        all.push(rec);
        crate::home::write_private(
            &self.dir.join("score_aborts.json"),
            &serde_json::to_vec_pretty(&all)?,
        )?;
        Ok(())
    }

    /// The operator's decision to score the owner paired as `applicant` (key `owner`) again after an abort:
    /// removes the records naming either, and returns them.
    pub fn clear_score_aborts(
        &self,
        applicant: &str,
        owner: &str,
    ) -> Result<Vec<ScoreAbortRecord>, Error> {
        let _lock = self.lock()?;
        let (cleared, kept): (Vec<_>, Vec<_>) = self
            .score_aborts()?
            .into_iter()
            .partition(|r| r.names(applicant, owner));
        if !cleared.is_empty() {
            crate::home::write_private(
                &self.dir.join("score_aborts.json"),
                &serde_json::to_vec_pretty(&kept)?,
            )?;
        }
        Ok(cleared)
    }

    /// Append a verified receipt to the log, unless the same receipt is already there. The log's tail is
    /// indexed in memory and read again only when the file changed under us: under the home's lock, so no
    /// other writer appends between reading the tail and writing the entry.
    pub(crate) fn keep_receipt(&self, owner: &str, receipt: &Receipt) -> Result<(), Error> {
        let mut index = self
            .receipt_index
            .lock()
            .map_err(|_| Error::Internal("receipt index lock poisoned".into()))?;
        let _lock = self.lock()?;
        let len_now = std::fs::metadata(self.receipts_path()).map_or(0, |m| m.len());
        if index.as_ref().is_none_or(|i| i.file_len != len_now) {
            let existing = self.read_receipts()?;
            *index = Some(ReceiptIndex {
                file_len: len_now,
                next_seq: existing.len() as u64 + 1,
                last_hash: existing
                    .last()
                    .map(|e| e.hash.clone())
                    .unwrap_or_else(|| GENESIS_HASH.to_string()),
                seen: existing
                    .iter()
                    .map(|e| e.receipt.signature.clone())
                    .collect(),
            });
        }
        let Some(idx) = index.as_mut() else {
            return Err(Error::Internal("receipt index missing".into()));
        };
        if idx.seen.contains(&receipt.signature) {
            return Ok(());
        }
        let seq = idx.next_seq;
        let prev = idx.last_hash.clone();
        let entry = ReceiptEntry {
            hash: ReceiptEntry::compute_hash(&prev, seq, owner, receipt),
            seq,
            owner: owner.to_string(),
            receipt: receipt.clone(),
            prev,
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        let path = self.receipts_path();
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        use std::io::Write;
        let mut f = opts.open(&path)?;
        // No fsync per receipt: a receipt lost to a power cut can be fetched again from the owner node
        // (`duo fi result ID`), which keeps every receipt it gave out.
        f.write_all(&line)?;
        idx.file_len += line.len() as u64;
        idx.next_seq += 1;
        idx.last_hash = entry.hash;
        idx.seen.insert(receipt.signature.clone());
        Ok(())
    }

    /// The requests this FI made, as each was last seen (oldest first): `duo fi requests`.
    pub fn requests(&self) -> Result<Vec<AskedRequest>, Error> {
        match std::fs::read(self.dir.join("requests.json")) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Record a request of owner `owner` (the pairing's name) as now seen, replacing its earlier record. The
    /// newest [`MAX_KEPT_REQUESTS`] are kept.
    pub(crate) fn keep_request(
        &self,
        owner: &str,
        v: &crate::proto::request::RequestView,
    ) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut all = self.requests()?;
        let state = match v.state {
            crate::proto::request::RequestState::Pending => "pending",
            crate::proto::request::RequestState::Approved => "approved",
            crate::proto::request::RequestState::Denied => "denied",
        };
        let asked_at = all
            .iter()
            .find(|r| r.owner == owner && r.id == v.id)
            .map_or_else(crate::proto::now_text, |r| r.asked_at.clone());
        all.retain(|r| !(r.owner == owner && r.id == v.id));
        all.push(AskedRequest {
            owner: owner.to_string(),
            id: v.id,
            state: state.to_string(),
            backend: v.backend.name().to_string(),
            description: v.description.clone(),
            reason: v.reason.clone(),
            asked_at,
            seen_at: crate::proto::now_text(),
        });
        let extra = all.len().saturating_sub(MAX_KEPT_REQUESTS);
        all.drain(..extra);
        crate::home::write_private(&self.dir.join("requests.json"), &serde_json::to_vec(&all)?)?;
        Ok(())
    }

    /// Record that a session with the owner node paired as `name` just opened (its `last_seen`). A pairing
    /// removed meanwhile is left removed.
    pub(crate) fn touch(&self, name: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut all = self.pairings()?;
        let Some(p) = all.iter_mut().find(|p| p.name == name) else {
            return Ok(());
        };
        p.last_seen = Some(crate::proto::now_text());
        crate::home::write_private(
            &self.dir.join("pairings.json"),
            &serde_json::to_vec_pretty(&all)?,
        )?;
        Ok(())
    }

    pub(crate) fn save(&self, rec: PairingRecord) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut all = self.pairings()?;
        all.retain(|p| p.name != rec.name);
        all.push(rec);
        crate::home::write_private(
            &self.dir.join("pairings.json"),
            &serde_json::to_vec_pretty(&all)?,
        )?;
        Ok(())
    }
}

/// How many of its requests an FI home remembers for `duo fi requests` (the newest).
pub const MAX_KEPT_REQUESTS: usize = 10_000;

/// A request this FI made, as it last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskedRequest {
    /// The owner node, by the name this FI paired it under.
    pub owner: String,
    /// The request's id (this FI's own numbering on that node).
    pub id: u64,
    /// `pending`, `approved` or `denied`, when last seen.
    pub state: String,
    /// The backend asked for.
    pub backend: String,
    /// The lineage in plain words.
    pub description: String,
    /// The reason given.
    pub reason: String,
    /// When it was asked (RFC 3339).
    pub asked_at: String,
    /// When its state was last seen (RFC 3339).
    pub seen_at: String,
}

/// A scoring request this FI made: what it asked for and the salt of its model commitment, so that a run of it
/// uses exactly the committed model and what the request said it would reveal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskedScoring {
    /// The owner node's key fingerprint.
    pub owner: String,
    /// The request id the owner gave it.
    pub request: u64,
    /// What was asked.
    pub spec: ScoringSpec,
    /// The commitment's salt, hex.
    pub salt: String,
}

/// One scoring run this FI started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreRunRecord {
    /// The owner node's key fingerprint.
    pub owner: String,
    /// When (Unix seconds).
    pub at: i64,
    /// The applicant: the name this FI paired the owner node under (absent in records from before it was
    /// kept, which count by key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicant: Option<String>,
}

impl ScoreRunRecord {
    /// Whether the run counts against the applicant paired as `applicant` with key `owner`: a run under that
    /// name, or with that key (an owner key is free to make, a pairing name is the FI's own).
    pub fn counts_for(&self, applicant: &str, owner: &str) -> bool {
        self.applicant.as_deref() == Some(applicant) || self.owner == owner
    }
}

/// A scoring run whose owner's messages failed a check after this FI's inputs had entered the circuit: only a
/// modified owner node fails it, and the abort itself may have told it about a bit of the model. While the
/// record is kept this FI does not score that owner (by pairing name or key) again; the operator removes it
/// with `duo fi score --allow-after-abort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreAbortRecord {
    /// The name this FI paired the owner node under.
    pub applicant: String,
    /// The owner node's key fingerprint.
    pub owner: String,
    /// The scoring request.
    pub request: u64,
    /// The run.
    pub run: u64,
    /// When (Unix seconds).
    pub at: i64,
    /// The failed check.
    pub why: String,
}

impl ScoreAbortRecord {
    fn names(&self, applicant: &str, owner: &str) -> bool {
        self.applicant == applicant || self.owner == owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::signer::NodeSigner;
    use duo_policies::Reveal;
    use std::collections::BTreeSet;
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    /// Writers at once on one home, as eight `duo fi request` would be.
    const WRITERS: usize = 8;
    /// Rounds: each starts all the writers together.
    const ROUNDS: usize = 5;
    /// Receipts each writer keeps per round.
    const PER_ROUND: usize = 4;

    /// A signing key (outside the FI home) and a pairing that pins it, as `duo fi pair` leaves them.
    fn paired_home(fi: &Path, keys: &Path) -> NodeSigner {
        let signer = NodeSigner::load_or_create(&keys.join("signing.key")).unwrap();
        FiHome::new(fi)
            .save(PairingRecord {
                name: "owner".into(),
                url: "ws://127.0.0.1:1".into(),
                fingerprint: "ab".repeat(32),
                principal: "Acme".into(),
                paired_at: "2025-01-01T00:00:00Z".into(),
                signing_key: Some(signer.public_hex()),
                last_seen: None,
            })
            .unwrap();
        signer
    }

    /// A distinct receipt for each (round, writer, i).
    fn receipt(signer: &NodeSigner, round: usize, writer: usize, i: usize) -> Receipt {
        let request = (round * 10_000 + writer * 100 + i) as u64 + 1;
        signer.sign(
            request,
            "Acme",
            "plaintext",
            "{\"node\":\"catalogue\"}".into(),
            "{\"kind\":\"scalar\"}".into(),
            0,
            request,
            "ab".repeat(32),
        )
    }

    /// The log verifies, numbers 1..=n each once, and holds n distinct receipts.
    fn assert_one_chain(dir: &Path, n: usize, errors: &[String]) {
        let home = FiHome::new(dir);
        let problems = home.verify_receipts().unwrap();
        let entries = home.receipts().unwrap();
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        let mut dup = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for s in &seqs {
            if !seen.insert(*s) {
                dup.insert(*s);
            }
        }
        let requests: BTreeSet<u64> = entries.iter().map(|e| e.receipt.request).collect();
        assert!(
            errors.is_empty()
                && problems.is_empty()
                && dup.is_empty()
                && seqs == (1..=n as u64).collect::<Vec<_>>()
                && requests.len() == n,
            "{n} receipts kept at once: {} errors {errors:?}; {} entries, sequence numbers kept twice {dup:?}, \
             {} distinct receipts; verify: {problems:?}",
            errors.len(),
            entries.len(),
            requests.len(),
        );
    }

    #[test]
    fn parallel_homes_keep_one_receipt_chain() {
        let fi = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let signer = paired_home(fi.path(), keys.path());
        let start = Barrier::new(WRITERS);
        let errors = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let (start, errors, signer, dir) = (&start, &errors, &signer, fi.path());
                s.spawn(move || {
                    // Its own `FiHome`: no state shared in memory, as with separate processes.
                    let home = FiHome::new(dir);
                    for round in 0..ROUNDS {
                        start.wait();
                        for i in 0..PER_ROUND {
                            if let Err(e) =
                                home.keep_receipt("owner", &receipt(signer, round, w, i))
                            {
                                errors.lock().unwrap().push(e.to_string());
                            }
                        }
                    }
                });
            }
        });
        let errors = errors.into_inner().unwrap();
        assert_one_chain(fi.path(), WRITERS * ROUNDS * PER_ROUND, &errors);
    }

    /// Set in the processes that [`parallel_processes_keep_one_receipt_chain`] starts: the FI home, the signing
    /// key, the file that says go, and the round and writer, one a line.
    const CHILD: &str = "DUO_TEST_FI_HOME_WRITER";

    #[test]
    fn parallel_processes_keep_one_receipt_chain() {
        if let Ok(spec) = std::env::var(CHILD) {
            let lines: Vec<&str> = spec.lines().collect();
            let [fi, key, go, round, writer] = lines[..] else {
                panic!("{CHILD}: {spec:?}");
            };
            let signer = NodeSigner::load_or_create(Path::new(key)).unwrap();
            let (round, writer) = (round.parse().unwrap(), writer.parse().unwrap());
            let home = FiHome::new(Path::new(fi));
            let deadline = Instant::now() + Duration::from_secs(20);
            while !Path::new(go).exists() {
                assert!(Instant::now() < deadline, "no go file");
                std::thread::sleep(Duration::from_millis(1));
            }
            for i in 0..PER_ROUND {
                home.keep_receipt("owner", &receipt(&signer, round, writer, i))
                    .unwrap();
            }
            return;
        }
        let fi = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        paired_home(fi.path(), keys.path());
        let exe = std::env::current_exe().unwrap();
        let mut errors = Vec::new();
        for round in 0..ROUNDS {
            let go = keys.path().join(format!("go-{round}"));
            let children: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let spec = [
                        fi.path().display().to_string(),
                        keys.path().join("signing.key").display().to_string(),
                        go.display().to_string(),
                        round.to_string(),
                        w.to_string(),
                    ]
                    .join("\n");
                    std::process::Command::new(&exe)
                        .args([
                            "--exact",
                            "fi::home::tests::parallel_processes_keep_one_receipt_chain",
                            "--test-threads=1",
                            "--nocapture",
                        ])
                        .env(CHILD, spec)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            std::fs::write(&go, b"go").unwrap();
            for c in children {
                let out = c.wait_with_output().unwrap();
                if !out.status.success() {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let why = stderr
                        .lines()
                        .find(|l| l.contains("panicked") || l.contains("Error"))
                        .unwrap_or("")
                        .to_string();
                    errors.push(format!("writer failed ({}): {why}", out.status));
                }
            }
        }
        assert_one_chain(fi.path(), WRITERS * ROUNDS * PER_ROUND, &errors);
    }

    #[test]
    fn parallel_homes_lose_no_pairing_or_scoring_record() {
        let fi = tempfile::tempdir().unwrap();
        let start = Barrier::new(WRITERS);
        let errors = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let (start, errors, dir) = (&start, &errors, fi.path());
                s.spawn(move || {
                    let home = FiHome::new(dir);
                    for round in 0..ROUNDS {
                        start.wait();
                        let id = (round * WRITERS + w) as u64;
                        let results = [
                            home.save(PairingRecord {
                                name: format!("owner-{id}"),
                                url: "ws://127.0.0.1:1".into(),
                                fingerprint: "ab".repeat(32),
                                principal: "Acme".into(),
                                paired_at: "2025-01-01T00:00:00Z".into(),
                                signing_key: None,
                                last_seen: None,
                            }),
                            home.keep_asked_scoring(AskedScoring {
                                owner: "ab".repeat(32),
                                request: id,
                                spec: ScoringSpec {
                                    attributes: vec!["rent_on_time_ratio_12m".into()],
                                    reveal: Reveal::Decision,
                                    commitment: "cd".repeat(32),
                                },
                                salt: "ef".repeat(32),
                            }),
                            home.add_score_run(ScoreRunRecord {
                                owner: "ab".repeat(32),
                                at: 1_750_000_000 + id as i64,
                                applicant: Some("owner".into()),
                            }),
                        ];
                        for r in results {
                            if let Err(e) = r {
                                errors.lock().unwrap().push(e.to_string());
                            }
                        }
                    }
                });
            }
        });
        let errors = errors.into_inner().unwrap();
        let home = FiHome::new(fi.path());
        let n = WRITERS * ROUNDS;
        let counts = (
            home.pairings().unwrap().len(),
            home.asked_scorings().unwrap().len(),
            home.score_runs().unwrap().len(),
        );
        assert!(
            errors.is_empty() && counts == (n, n, n),
            "{n} of each kept at once: (pairings, asked scorings, score runs) on disk {counts:?}; \
             {} errors {errors:?}",
            errors.len()
        );
    }
}
