//! Datasets: every version of each, with its published metadata and what the node inferred at load.

use super::{now_text, write_tx, HasConn, Log, Store};
use crate::error::Error;
use duo_engine::{Column, Dataset, DatasetMeta, Suggestions};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A dataset as listed for the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    /// Published metadata.
    pub meta: DatasetMeta,
    /// Current version.
    pub version: u64,
    /// Rows loaded (owner-only).
    pub rows: u64,
    /// When it was loaded.
    pub loaded_at: String,
    /// What the node inferred at load (owner-only).
    pub suggestions: Suggestions,
}

/// One version of a dataset, as the owner's Data store lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersion {
    /// The version.
    pub version: u64,
    /// Rows it held (owner-only).
    pub rows: u64,
    /// When it was loaded.
    pub loaded_at: String,
    /// Whether it is the version requests are answered from.
    pub current: bool,
    /// When the owner deleted its rows, if they did.
    pub deleted_at: Option<String>,
}

/// Queries on datasets, for a [`super::Store`] or a [`super::Tx`].
pub trait Datasets: HasConn {
    /// The current datasets (metadata and facts for the owner), by name.
    fn datasets(&self) -> Result<Vec<DatasetRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT meta, version, rows, loaded_at, suggestions FROM datasets WHERE current = 1 ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (meta, version, n, loaded_at, sugg) = row?;
            out.push(DatasetRow {
                meta: serde_json::from_str(&meta)?,
                version: version as u64,
                rows: n as u64,
                loaded_at,
                suggestions: serde_json::from_str(&sugg)?,
            });
        }
        Ok(out)
    }

    /// Every version of every dataset (deleted ones too), by name, newest version first.
    fn dataset_versions(&self) -> Result<BTreeMap<String, Vec<DatasetVersion>>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, version, rows, loaded_at, current, deleted_at FROM datasets \
             ORDER BY name, version DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                DatasetVersion {
                    version: r.get::<_, i64>(1)? as u64,
                    rows: r.get::<_, i64>(2)? as u64,
                    loaded_at: r.get(3)?,
                    current: r.get::<_, i64>(4)? != 0,
                    deleted_at: r.get(5)?,
                },
            ))
        })?;
        let mut out: BTreeMap<String, Vec<DatasetVersion>> = BTreeMap::new();
        for row in rows {
            let (name, v) = row?;
            out.entry(name).or_default().push(v);
        }
        Ok(out)
    }

    /// The published metadata of the current datasets, by name.
    fn metas(&self) -> Result<BTreeMap<String, DatasetMeta>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, meta FROM datasets WHERE current = 1")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, meta) = row?;
            out.insert(name, serde_json::from_str(&meta)?);
        }
        Ok(out)
    }

    /// The current version of each dataset, by name.
    fn versions(&self) -> Result<BTreeMap<String, u64>, Error> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT name, version FROM datasets WHERE current = 1")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, v) = row?;
            out.insert(name, v as u64);
        }
        Ok(out)
    }

    /// The published metadata of one version of a dataset.
    fn dataset_meta(&self, name: &str, version: u64) -> Result<DatasetMeta, Error> {
        let conn = self.conn();
        let meta: String = conn
            .prepare_cached("SELECT meta FROM datasets WHERE name = ?1 AND version = ?2")?
            .query_row(params![name, version as i64], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("dataset `{name}` version {version}")))?;
        Ok(serde_json::from_str(&meta)?)
    }

    /// Load one version of a dataset.
    fn load_dataset(&self, name: &str, version: u64) -> Result<Dataset, Error> {
        let conn = self.conn();
        let (meta, data, deleted): (String, Vec<u8>, Option<String>) = conn
            .query_row(
                "SELECT meta, data, deleted_at FROM datasets WHERE name = ?1 AND version = ?2",
                params![name, version as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("dataset `{name}` version {version}")))?;
        if let Some(at) = deleted {
            return Err(Error::NotFound(format!(
                "dataset `{name}`: the owner deleted its rows ({at})"
            )));
        }
        let columns: Vec<Column> = postcard::from_bytes(&data)
            .map_err(|e| Error::Internal(format!("stored dataset: {e}")))?;
        Ok(Dataset {
            meta: serde_json::from_str(&meta)?,
            version,
            columns,
        })
    }
}

impl<T: HasConn + ?Sized> Datasets for T {}

impl Store {
    /// Store a new version of a dataset under its name, in one transaction with its log entry. Returns the version.
    pub fn put_dataset(&mut self, ds: &Dataset, sugg: &Suggestions) -> Result<u64, Error> {
        let conn = &mut self.conn;
        let tx = write_tx(conn)?;
        let name = &ds.meta.name;
        let version: u64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM datasets WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )? as u64;
        let data = postcard::to_stdvec(&ds.columns).map_err(|e| Error::Internal(e.to_string()))?;
        tx.execute("UPDATE datasets SET current = 0 WHERE name = ?1", [name])?;
        tx.execute(
            "INSERT INTO datasets (name, version, meta, suggestions, data, rows, loaded_at, current)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
            params![
                name,
                version as i64,
                serde_json::to_string(&ds.meta)?,
                serde_json::to_string(sugg)?,
                data,
                ds.rows() as i64,
                now_text()
            ],
        )?;
        tx.append_log("dataset_loaded",
            None,
            &serde_json::json!({ "dataset": name, "version": version, "columns": ds.meta.columns.len() }),
        )?;
        fail::fail_point!("store::mid_ingest");
        tx.commit()?;
        Ok(version)
    }
}
