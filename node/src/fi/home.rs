//! The FI's home on disk: its key, its pairings, the receipts it was given (hash-chained), and what it asked
//! of private scoring.
//!
//! # Several processes on one home
//!
//! Several `duo fi` commands (and several [`FiHome`] values in one process) may use one home at once. Every
//! change to it holds an exclusive advisory lock on the file `lock` in the home (`flock` on Unix, `LockFileEx`
//! on Windows, through the `fs4` crate), taken afresh for each change and released when it is done: appending
//! to the receipt log `receipts.jsonl` or the request journal `requests.jsonl`, rewriting `pairings.json`, `scoring_requests.json`,
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
use duo_protocols::ot::kos;
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

    /// Where the OT-extension state kept for scoring runs with the owner of this key fingerprint lies at rest.
    fn ot_state_path(&self, owner_key: &str) -> PathBuf {
        self.dir.join("ot").join(format!("{owner_key}.state"))
    }

    /// Whether an OT-extension state is kept for the owner of this key fingerprint.
    pub(crate) fn has_ot_state(&self, owner_key: &str) -> bool {
        self.ot_state_path(owner_key).exists()
    }

    /// Take the OT-extension state kept for the owner of this key fingerprint, with its id: the file is removed (and
    /// the removal made durable) before the state is returned, so a state is extended by one run at most. A
    /// file that does not read back as a state is removed too, and gives none.
    pub(crate) fn take_ot_state(
        &self,
        owner_key: &str,
    ) -> Result<Option<(kos::Receiver, String)>, Error> {
        let _lock = self.lock()?;
        let path = self.ot_state_path(owner_key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        std::fs::remove_file(&path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        let (id, state) = bytes.split_at(bytes.len().min(64));
        let id = std::str::from_utf8(id)
            .ok()
            .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(id.and_then(|id| Some((kos::Receiver::from_rest(state).ok()?, id.to_string()))))
    }

    /// Keep the OT-extension state a finished run left for the owner of this key fingerprint, in place of any other
    /// (mode 0600: it is as secret as the FI's key).
    pub(crate) fn put_ot_state(
        &self,
        owner_key: &str,
        id: &str,
        ot: &kos::Receiver,
    ) -> Result<(), Error> {
        let _lock = self.lock()?;
        let path = self.ot_state_path(owner_key);
        if let Some(dir) = path.parent() {
            crate::home::private_dir(dir)?;
        }
        let mut bytes = zeroize::Zeroizing::new(id.as_bytes().to_vec());
        bytes.extend_from_slice(&ot.to_rest());
        crate::home::write_private(&path, &bytes)?;
        Ok(())
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

    /// The requests this FI made, as each was last seen (oldest first): `duo fi requests`. The journal
    /// `requests.jsonl` is folded: the last line about a request is its state, its first line gives when it was
    /// asked, and the order is that of each request's last line. A torn last line (a crash mid-append) is
    /// skipped. Records from `requests.json`, the whole-file form homes had before the journal, come first.
    pub fn requests(&self) -> Result<Vec<AskedRequest>, Error> {
        let mut lines: Vec<AskedRequest> = match std::fs::read(self.dir.join("requests.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        match std::fs::read(self.dir.join(REQUESTS_JOURNAL)) {
            Ok(bytes) => {
                let all: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
                for (i, line) in all.iter().enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<AskedRequest>(line) {
                        Ok(r) => lines.push(r),
                        // Only the last line may be torn; anything else is damage to report.
                        Err(_) if i + 1 == all.len() => {}
                        Err(e) => {
                            return Err(Error::Integrity(format!(
                                "{}: line {} is not a request record ({e}); move the file away to start a new one",
                                self.dir.join(REQUESTS_JOURNAL).display(),
                                i + 1
                            )))
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(fold_requests(lines))
    }

    /// Record a request of owner `owner` (the pairing's name) as now seen: one line appended to the journal,
    /// whatever the history's length. When the journal outgrows [`MAX_KEPT_REQUESTS`] lines' worth, it is
    /// rewritten with the newest [`MAX_KEPT_REQUESTS`] requests, once.
    pub(crate) fn keep_request(
        &self,
        owner: &str,
        v: &crate::proto::request::RequestView,
    ) -> Result<(), Error> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let _lock = self.lock()?;
        let state = match v.state {
            crate::proto::request::RequestState::Pending => "pending",
            crate::proto::request::RequestState::Approved => "approved",
            crate::proto::request::RequestState::Denied => "denied",
        };
        let now = crate::proto::now_text();
        let record = AskedRequest {
            owner: owner.to_string(),
            id: v.id,
            state: state.to_string(),
            backend: v.backend.name().to_string(),
            description: v.description.clone(),
            reason: v.reason.clone(),
            // The reader keeps the first line's time as when it was asked.
            asked_at: now.clone(),
            seen_at: now,
            why: v.why.clone(),
            decided_by: v.decided_by.clone(),
            cost: v.cost.clone(),
            accuracy95: v.accuracy95,
            ty: Some(v.ty.clone()),
            answer: v.answer.clone(),
            budget: v.budget.clone(),
        };
        let path = self.dir.join(REQUESTS_JOURNAL);
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path)?;
        let mut len = f.metadata()?.len();
        if len > 0 {
            // A torn last line (a writer that crashed mid-append) is cut off before appending, so it never
            // sits inside the journal. Records are far smaller than the tail read here.
            let mut last = [0u8];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                let from = len.saturating_sub(1 << 20);
                let mut tail = Vec::new();
                f.seek(SeekFrom::Start(from))?;
                f.read_to_end(&mut tail)?;
                len = match tail.iter().rposition(|b| *b == b'\n') {
                    Some(i) => from + i as u64 + 1,
                    None if from == 0 => 0,
                    None => {
                        return Err(Error::Integrity(format!(
                            "{}: its last line is longer than any request record; move the file away to start a new one",
                            path.display()
                        )))
                    }
                };
                f.set_len(len)?;
            }
        }
        let mut line = Vec::new();
        serde_json::to_writer(&mut line, &record)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()?;
        if len + line.len() as u64 > JOURNAL_COMPACT_BYTES {
            let mut all = self.requests()?;
            let extra = all.len().saturating_sub(MAX_KEPT_REQUESTS);
            all.drain(..extra);
            let mut text = Vec::new();
            for r in &all {
                serde_json::to_writer(&mut text, r)?;
                text.push(b'\n');
            }
            crate::home::write_private(&path, &text)?;
            match std::fs::remove_file(self.dir.join("requests.json")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Record that a session with the owner node paired as `name` just opened (its `last_seen`, to the
    /// minute: within a minute of the recorded time nothing is written). A pairing removed meanwhile is left
    /// removed.
    pub(crate) fn touch(&self, name: &str) -> Result<(), Error> {
        let now = chrono::Utc::now();
        let fresh = |p: &PairingRecord| {
            p.last_seen
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| now.signed_duration_since(t) < LAST_SEEN_GRAIN)
        };
        // Most sessions find it fresh: no lock, no write (a session per request must not pay a synced
        // rewrite of the pairings).
        if self.pairings()?.iter().any(|p| p.name == name && fresh(p)) {
            return Ok(());
        }
        let _lock = self.lock()?;
        let mut all = self.pairings()?;
        let Some(p) = all.iter_mut().find(|p| p.name == name) else {
            return Ok(());
        };
        if fresh(p) {
            return Ok(());
        }
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

/// How precisely a pairing's `last_seen` is kept: a session within this of the recorded time does not rewrite
/// the pairings.
const LAST_SEEN_GRAIN: chrono::Duration = chrono::Duration::seconds(60);

/// How many of its requests an FI home remembers for `duo fi requests` (the newest).
pub const MAX_KEPT_REQUESTS: usize = 10_000;

/// The journal of the requests this FI made: one JSON line each time it sees one ([`FiHome::keep_request`]).
const REQUESTS_JOURNAL: &str = "requests.jsonl";

/// The journal's size past which it is rewritten with only the newest [`MAX_KEPT_REQUESTS`] requests: about
/// four lines per kept request, so a rewrite comes once in thousands of requests.
const JOURNAL_COMPACT_BYTES: u64 = 4 * 1024 * MAX_KEPT_REQUESTS as u64;

/// Fold request records, oldest first, into one per (owner, id): the last record's state, the first one's
/// `asked_at`, ordered by each one's last record.
fn fold_requests(lines: Vec<AskedRequest>) -> Vec<AskedRequest> {
    use std::collections::HashMap;
    let mut first_asked: HashMap<(String, u64), String> = HashMap::new();
    let mut last: HashMap<(String, u64), usize> = HashMap::new();
    for (i, r) in lines.iter().enumerate() {
        let key = (r.owner.clone(), r.id);
        first_asked
            .entry(key.clone())
            .or_insert_with(|| r.asked_at.clone());
        last.insert(key, i);
    }
    let mut out: Vec<AskedRequest> = lines
        .into_iter()
        .enumerate()
        .filter(|(i, r)| last.get(&(r.owner.clone(), r.id)) == Some(i))
        .map(|(_, mut r)| {
            if let Some(at) = first_asked.remove(&(r.owner.clone(), r.id)) {
                r.asked_at = at;
            }
            r
        })
        .collect();
    let extra = out.len().saturating_sub(MAX_KEPT_REQUESTS);
    out.drain(..extra);
    out
}

/// A request this FI made, as it last saw it. The fields after `seen_at` are absent from records kept before
/// they were added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Why it was denied, or why it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Who decided: `policy`, `owner` or `store`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// DP: the privacy cost in the node's measure (decimal text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// DP: half-width of a 95% interval around the exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy95: Option<f64>,
    /// The answer's static type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<duo_engine::Type>,
    /// The answer, once approved (its receipt is in the receipt log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<duo_engine::Answer>,
    /// DP: the numbers of the budget a denied request would have exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::proto::request::BudgetShortfall>,
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

    /// A request view as the node sends it, in state `state`.
    fn view(
        id: u64,
        state: crate::proto::request::RequestState,
    ) -> crate::proto::request::RequestView {
        serde_json::from_value(serde_json::json!({
            "id": id, "state": state, "backend": "plaintext", "reason": "r", "description": "d",
            "ty": {"kind": "scalar", "dtype": "i64", "bounds": null}
        }))
        .unwrap()
    }

    #[test]
    fn the_request_journal_appends_a_line_per_sighting_and_folds_to_the_last_state() {
        use crate::proto::request::RequestState::{Approved, Pending};
        let dir = tempfile::tempdir().unwrap();
        let home = FiHome::new(dir.path());
        home.keep_request("a", &view(1, Pending)).unwrap();
        home.keep_request("a", &view(2, Pending)).unwrap();
        home.keep_request("b", &view(1, Pending)).unwrap();
        let first_asked = home.requests().unwrap()[0].asked_at.clone();
        std::thread::sleep(Duration::from_millis(5));
        home.keep_request("a", &view(1, Approved)).unwrap();
        // Append-only: one line per sighting, nothing rewritten.
        let text = std::fs::read_to_string(dir.path().join(REQUESTS_JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 4);
        let got = home.requests().unwrap();
        let keys: Vec<(&str, u64, &str)> = got
            .iter()
            .map(|r| (r.owner.as_str(), r.id, r.state.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("a", 2, "pending"),
                ("b", 1, "pending"),
                ("a", 1, "approved")
            ],
            "one record per request, in the order last seen"
        );
        assert_eq!(got[2].asked_at, first_asked, "asked when first seen");
        assert_ne!(got[2].seen_at, first_asked);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_record_starts_a_fresh_line() {
        use crate::proto::request::RequestState::Pending;
        let dir = tempfile::tempdir().unwrap();
        let home = FiHome::new(dir.path());
        home.keep_request("a", &view(1, Pending)).unwrap();
        let path = dir.path().join(REQUESTS_JOURNAL);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"owner":"a","id":2,"sta"#);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            home.requests().unwrap().len(),
            1,
            "the torn line is skipped"
        );
        home.keep_request("a", &view(3, Pending)).unwrap();
        let ids: Vec<u64> = home.requests().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 3]);
        // Damage before the last line is an error that says what to do, not a silent loss.
        std::fs::write(&path, b"not json\n{}\n").unwrap();
        let e = home.requests().unwrap_err().to_string();
        assert!(
            e.contains("line 1") && e.contains("move the file away"),
            "{e}"
        );
    }

    #[test]
    fn records_of_the_whole_file_form_are_still_read_and_folded_into_the_journal() {
        use crate::proto::request::RequestState::{Approved, Pending};
        let dir = tempfile::tempdir().unwrap();
        let home = FiHome::new(dir.path());
        home.keep_request("a", &view(1, Pending)).unwrap();
        home.keep_request("a", &view(2, Pending)).unwrap();
        let old = home.requests().unwrap();
        std::fs::write(
            dir.path().join("requests.json"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        std::fs::remove_file(dir.path().join(REQUESTS_JOURNAL)).unwrap();
        home.keep_request("a", &view(1, Approved)).unwrap();
        let got = home.requests().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].id, got[1].state.as_str()), (1, "approved"));
        assert_eq!(got[1].asked_at, old[0].asked_at);
    }

    #[test]
    fn last_seen_is_kept_to_the_minute_without_a_write_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        paired_home(dir.path(), keys.path());
        let home = FiHome::new(dir.path());
        home.touch("owner").unwrap();
        let first = std::fs::read(dir.path().join("pairings.json")).unwrap();
        assert!(home.pairing(Some("owner")).unwrap().last_seen.is_some());
        std::thread::sleep(Duration::from_millis(5));
        home.touch("owner").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("pairings.json")).unwrap(),
            first,
            "a second session within the minute rewrote the pairings"
        );
    }
}
