//! The FI's home on disk: its key, its pairings, the receipts it was given (hash-chained), and what it asked
//! of private scoring.

use crate::error::Error;
use crate::fi::model::ModelFile;
use crate::net::keys::Keypair;
use crate::proto::digest::{hex, FieldHasher, GENESIS_HASH};
use crate::proto::receipt::Receipt;
use crate::proto::scoring::ScoringSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
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

impl FiHome {
    /// The FI home in `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        FiHome {
            dir: dir.to_path_buf(),
            receipt_index: Default::default(),
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

    fn receipts_path(&self) -> PathBuf {
        self.dir.join("receipts.jsonl")
    }

    /// The FI's receipt log, oldest first.
    pub fn receipts(&self) -> Result<Vec<ReceiptEntry>, Error> {
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

    /// Append a verified receipt to the log, unless the same receipt is already there. The log's tail is
    /// indexed in memory and read again only when the file changed under us.
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
        let mut all = self.asked_scorings()?;
        all.retain(|a| !(a.owner == asked.owner && a.request == asked.request));
        all.push(asked);
        crate::home::private_dir(&self.dir)?;
        crate::home::write_private(
            &self.dir.join("scoring_requests.json"),
            &serde_json::to_vec(&all)?,
        )?;
        Ok(())
    }

    /// The scoring runs this FI started, per owner key (for its own limit).
    pub fn score_runs(&self) -> Result<Vec<ScoreRunRecord>, Error> {
        match std::fs::read(self.dir.join("score_runs.json")) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn add_score_run(&self, rec: ScoreRunRecord) -> Result<(), Error> {
        let mut all = self.score_runs()?;
        // Older than a year is never inside a window.
        let year_ago = rec.at - 366 * 86_400;
        all.retain(|r| r.at > year_ago);
        all.push(rec);
        crate::home::private_dir(&self.dir)?;
        crate::home::write_private(
            &self.dir.join("score_runs.json"),
            &serde_json::to_vec(&all)?,
        )?;
        Ok(())
    }

    pub(crate) fn keep_receipt(&self, owner: &str, receipt: &Receipt) -> Result<(), Error> {
        let mut index = self
            .receipt_index
            .lock()
            .map_err(|_| Error::Internal("receipt index lock poisoned".into()))?;
        let len_now = std::fs::metadata(self.receipts_path()).map_or(0, |m| m.len());
        if index.as_ref().is_none_or(|i| i.file_len != len_now) {
            let existing = self.receipts()?;
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
        crate::home::private_dir(&self.dir)?;
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

    pub(crate) fn save(&self, rec: PairingRecord) -> Result<(), Error> {
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
}
