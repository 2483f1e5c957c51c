//! Caches of immutable things shared by a node's sessions.

use crate::error::Error;
use crate::store::prelude::*;
use crate::store::Conn;
use duo_engine::{DataSource, Dataset, DatasetMeta};
use duo_policies::Policy;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Caches of immutable things, shared by the sessions of a node: dataset versions and their metadata by
/// (name, version), and the parsed policy by the hash of its text. A dataset version never changes once stored,
/// and the policy file is read again for every decision (only parsing is skipped when its text is unchanged), so
/// these caches can never contradict the store or the file.
#[derive(Debug, Clone, Default)]
pub struct DatasetCache(Arc<Mutex<CacheInner>>);

#[derive(Debug, Default)]
struct CacheInner {
    data: HashMap<(String, u64), Arc<Dataset>>,
    metas: HashMap<(String, u64), Arc<DatasetMeta>>,
    policy: Option<(String, Arc<Policy>)>,
}

impl DatasetCache {
    pub(crate) fn get(
        &self,
        conn: &dyn Conn,
        name: &str,
        version: u64,
    ) -> Result<Arc<Dataset>, Error> {
        let key = (name.to_string(), version);
        if let Some(ds) = self.0.lock().map_err(poisoned)?.data.get(&key) {
            return Ok(ds.clone());
        }
        let ds = Arc::new(conn.load_dataset(name, version)?);
        let mut inner = self.0.lock().map_err(poisoned)?;
        if inner.data.len() > 64 {
            inner.data.clear();
        }
        inner.data.insert(key, ds.clone());
        Ok(ds)
    }

    /// The published metadata of the current datasets.
    pub(crate) fn metas(&self, conn: &dyn Conn) -> Result<BTreeMap<String, DatasetMeta>, Error> {
        let versions = conn.versions()?;
        let mut out = BTreeMap::new();
        for (name, v) in versions {
            let key = (name.clone(), v);
            let cached = self.0.lock().map_err(poisoned)?.metas.get(&key).cloned();
            let meta = match cached {
                Some(m) => m,
                None => {
                    let m = Arc::new(conn.dataset_meta(&name, v)?);
                    let mut inner = self.0.lock().map_err(poisoned)?;
                    if inner.metas.len() > 1024 {
                        inner.metas.clear();
                    }
                    inner.metas.insert(key, m.clone());
                    m
                }
            };
            out.insert(name, (*meta).clone());
        }
        Ok(out)
    }

    /// The policy for this text, parsed once per distinct text.
    pub(crate) fn policy(&self, text: &str) -> Result<(Arc<Policy>, String), Error> {
        let hash = duo_policies::policy_hash(text);
        if let Some((h, p)) = &self.0.lock().map_err(poisoned)?.policy {
            if *h == hash {
                return Ok((p.clone(), hash));
            }
        }
        let policy = Arc::new(Policy::parse(text)?);
        self.0.lock().map_err(poisoned)?.policy = Some((hash.clone(), policy.clone()));
        Ok((policy, hash))
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("dataset cache lock poisoned".into())
}

/// Dataset versions loaded for one evaluation.
pub(crate) struct Loaded(pub(crate) BTreeMap<String, Arc<Dataset>>);

impl DataSource for Loaded {
    fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.0.get(name).map(|d| d.as_ref())
    }
}
