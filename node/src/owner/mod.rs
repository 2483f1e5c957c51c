//! The owner side: the node's store, policy and signer ([`Owner`]), the release path every request takes
//! ([`release`], with the [`backend`]s behind it), the owner's own decisions ([`decide`]), private scoring runs
//! ([`scoring`]), setting up a node ([`setup`]) and the service FIs connect to ([`service`], [`session`]).
//!
//! A release (the decision, the stored answer, the charge, the release index, the log entries and the receipt)
//! is one `BEGIN IMMEDIATE` transaction, committed before the answer leaves the node.

pub mod backend;
pub mod cache;
pub mod decide;
pub mod relay;
pub mod release;
pub mod scoring;
pub mod service;
pub mod session;
pub mod setup;
mod shown;
pub mod signer;
pub mod view;

pub use cache::DatasetCache;
pub use release::Ask;
pub use service::{spawn, EventSink, NodeEvent, PrincipalLimits, RunningNode, ServeConfig};
pub use setup::{
    check_load, init, invite, invite_for, load, load_from, load_with, node_key, owner_dir,
    rekey_invite, InitReport, LoadReport, DEFAULT_PAIRING,
};
pub use view::{DpView, PendingView};

use crate::error::Error;
use crate::store::prelude::*;
use crate::store::{self, Conn, Store};
use cache::Loaded;
use duo_engine::{check, evaluate, Answer, CheckContext, Checked, Expr, Limits};
use duo_policies::{Amount, Ledger, Measure, Policy, Scope};
use signer::{signing_key_path, NodeSigner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The owner's node as one process sees it: the store, the policy file, the receipt signer and a cache of
/// immutable dataset versions.
pub struct Owner {
    dir: PathBuf,
    store: Store,
    cache: DatasetCache,
    limits: Limits,
    signer: Arc<NodeSigner>,
    max_pending: u64,
}

/// Path of the policy file in an owner directory.
pub fn policy_path(owner_dir: &Path) -> PathBuf {
    owner_dir.join("policy.toml")
}

impl Owner {
    /// Open the owner's store in `dir` (which must have been initialised).
    pub fn open(dir: &Path, sync: store::Sync, cache: DatasetCache) -> Result<Owner, Error> {
        Ok(Owner {
            dir: dir.to_path_buf(),
            store: Store::open(dir, sync)?,
            signer: Arc::new(NodeSigner::load_or_create(&signing_key_path(dir))?),
            cache,
            limits: Limits::default(),
            max_pending: u64::MAX,
        })
    }

    /// Refuse new requests from a principal that already has this many waiting for the owner.
    pub fn with_max_pending(mut self, max: u64) -> Owner {
        self.max_pending = max;
        self
    }

    /// The owner directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store (typed queries only).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, to write.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Delete every version of a dataset's rows (`duo owner dataset delete`, the UI's Data store), with its log
    /// entry, then scrub the freed pages from the database files. Its metadata, the log and what was released
    /// from it stay. Returns how many versions held rows.
    pub fn delete_dataset(&mut self, name: &str) -> Result<u64, Error> {
        let n = self.store.delete_dataset(name)?;
        self.store.scrub()?;
        Ok(n)
    }

    /// Read the policy file (every time: it is the record) and parse it (once per distinct text); returns the
    /// policy and the hash of its text. A missing, unreadable, invalid or group/other-writable file is
    /// [`Error::PolicyUnavailable`]: the owner's detail, which never reaches an FI.
    pub fn policy(&self) -> Result<(Arc<Policy>, String), Error> {
        let path = policy_path(&self.dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::PolicyUnavailable(format!(
                "policy file {}: {e} (run `duo owner init` to write the default policy)",
                path.display()
            ))
        })?;
        crate::home::refuse_writable_by_others(&path)
            .map_err(|e| Error::PolicyUnavailable(e.to_string()))?;
        self.cache.policy(&text).map_err(|e| match e {
            Error::Policy(e) => {
                Error::PolicyUnavailable(format!("policy file {}: {e}", path.display()))
            }
            other => other,
        })
    }

    /// Type-check a lineage against the current published metadata.
    pub fn check(&self, expr: &Expr) -> Result<Checked, Error> {
        let metas = self.cache.metas(&self.store)?;
        let ctx = CheckContext {
            metas: &metas,
            today: chrono::Utc::now().date_naive(),
            limits: self.limits,
        };
        Ok(check(expr, &ctx)?)
    }

    /// Evaluate a checked lineage on the current dataset versions.
    pub(crate) fn evaluate_now(&self, checked: &Checked) -> Result<Answer, Error> {
        let versions = versions_read(&self.store, checked)?;
        evaluate_at(&self.cache, &self.store, checked, &versions)
    }

    /// Set a budget cap (only this raises a cap), with its log entry, in one transaction. The first cap set on a
    /// node chooses its measure; later ones must use the same. Returns the previous cap.
    pub fn set_cap(
        &mut self,
        scope: &Scope,
        cap: Amount,
        measure: Measure,
    ) -> Result<Option<Amount>, Error> {
        let tx = self.store.write()?;
        let mut ledger = tx.ledger()?;
        // The first cap chooses the measure. (The global account is always listed, so "no accounts" never
        // held: a new node could not be switched to zCDP.)
        if ledger.is_blank() && ledger.measure() != measure {
            ledger = Ledger::new(measure);
        }
        if ledger.measure() != measure {
            return Err(Error::Refused(format!(
                "this node's budgets are in {}; give --{} instead",
                ledger.measure().name(),
                ledger.measure().name()
            )));
        }
        let old = ledger.set_cap(scope, cap);
        let ledger_sha256 = tx.save_ledger(&ledger)?;
        tx.append_log(
            "budget_set",
            None,
            &serde_json::json!({
                "scope": scope, "cap": cap.to_string(), "previous": old.map(|a| a.to_string()),
                "measure": measure.name(), "ledger_sha256": ledger_sha256,
            }),
        )?;
        tx.commit()?;
        Ok(old)
    }
}

/// The tags the owner gave each dataset a lineage reads.
fn tags_with(
    cache: &DatasetCache,
    conn: &dyn Conn,
    checked: &Checked,
) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let metas = cache.metas(conn)?;
    Ok(checked
        .datasets
        .iter()
        .map(|d| {
            (
                d.clone(),
                metas.get(d).map(|m| m.tags.clone()).unwrap_or_default(),
            )
        })
        .collect())
}

/// The current version of each dataset a lineage reads.
fn versions_read(conn: &dyn Conn, checked: &Checked) -> Result<BTreeMap<String, u64>, Error> {
    let all = conn.versions()?;
    checked
        .datasets
        .iter()
        .map(|d| {
            all.get(d)
                .map(|v| (d.clone(), *v))
                .ok_or_else(|| Error::NotFound(format!("dataset `{d}`")))
        })
        .collect()
}

/// The dataset versions a lineage reads, loaded.
fn load_versions(
    cache: &DatasetCache,
    conn: &dyn Conn,
    versions: &BTreeMap<String, u64>,
) -> Result<Loaded, Error> {
    let mut loaded = BTreeMap::new();
    for (name, v) in versions {
        loaded.insert(name.clone(), cache.get(conn, name, *v)?);
    }
    Ok(Loaded(loaded))
}

/// Evaluate a checked lineage on the given dataset versions, exactly.
fn evaluate_at(
    cache: &DatasetCache,
    conn: &dyn Conn,
    checked: &Checked,
    versions: &BTreeMap<String, u64>,
) -> Result<Answer, Error> {
    Ok(evaluate(
        &checked.expr,
        &load_versions(cache, conn, versions)?,
    )?)
}
