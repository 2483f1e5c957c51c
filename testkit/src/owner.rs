//! The owner side: an owner directory with the sample data loaded, and its node serving on loopback.

use duo_engine::sample::{self, Profile, SampleConfig};
use duo_node::owner::{self, InitReport, LoadReport, RunningNode, ServeConfig};
use duo_node::owner::{DatasetCache, Owner};
use duo_node::store::prelude::*;
use duo_node::{store, Error};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The seed of the sample data in the end-to-end and crash-safety tests ([`owner_with_sample`]).
pub const TEST_SEED: u64 = 7;

/// The seed of the sample data in the benches and `duo bench load`.
pub const BENCH_SEED: u64 = 1;

/// How many months of sample data an owner gets, ending with the last full month.
pub const SAMPLE_MONTHS: u32 = 24;

/// The loopback address on a port the system picks: where every test and bench node listens.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Makes an owner in `home` with `policy` and the sample data loaded: [`SAMPLE_MONTHS`] months ending at the
/// last full month, generated from `seed` with the payment behaviour `profile`. The sample files are written
/// to `home/sample` (see [`OwnerNode::sample_dir`]); the owner directory is returned.
///
/// What the demo, `duo bench load`, the benches and the end-to-end tests start from; [`SampleOwner::create`]
/// does the same and also returns what each step reported.
pub fn sample_owner(
    home: &Path,
    policy: &str,
    seed: u64,
    profile: Profile,
) -> Result<PathBuf, Error> {
    SampleOwner::create(home, policy, seed, profile).map(|s| s.dir)
}

/// An owner made by [`SampleOwner::create`], with what its set-up reported (for a program that shows it,
/// like the demo).
#[derive(Debug, Clone)]
pub struct SampleOwner {
    /// The owner directory (`home/owner`).
    pub dir: PathBuf,
    /// What making the owner directory, its key and its policy did.
    pub init: InitReport,
    /// One report per sample dataset loaded, in load order.
    pub loaded: Vec<LoadReport>,
}

impl SampleOwner {
    /// Makes an owner in `home` with `policy` and the sample data of `seed` and `profile`, as
    /// [`sample_owner`] does.
    pub fn create(
        home: &Path,
        policy: &str,
        seed: u64,
        profile: Profile,
    ) -> Result<SampleOwner, Error> {
        let dir = owner::owner_dir(home);
        let init = owner::init(&dir, Some(policy))?;
        let cfg = SampleConfig {
            seed,
            profile,
            end_month: sample::last_full_month(chrono::Utc::now().date_naive()),
            months: SAMPLE_MONTHS,
        };
        let files = sample::generate(&cfg);
        let data = sample_dir(home);
        sample::write_dir(&data, &files)?;
        let mut loaded = Vec::with_capacity(files.len());
        for f in &files {
            loaded.push(owner::load(
                &dir,
                &data.join(format!("{}.csv", f.name)),
                &f.name,
                &f.meta_toml,
            )?);
        }
        Ok(SampleOwner { dir, init, loaded })
    }
}

fn sample_dir(home: &Path) -> PathBuf {
    home.join("sample")
}

/// An owner with the sample data in a temporary home, removed when this is dropped.
///
/// The node is not running: start it with [`OwnerNode::start`] (or a variant), on loopback.
#[derive(Debug)]
pub struct OwnerNode {
    /// The temporary home: the owner directory and the sample files are inside.
    pub home: TempDir,
    /// The owner directory (`home/owner`).
    pub dir: PathBuf,
}

impl OwnerNode {
    /// An owner with `policy` and the sample data of `seed` and `profile`, in a new temporary home.
    pub fn sample(policy: &str, seed: u64, profile: Profile) -> Result<OwnerNode, Error> {
        let home = tempfile::tempdir()?;
        let dir = sample_owner(home.path(), policy, seed, profile)?;
        Ok(OwnerNode { home, dir })
    }

    /// Where the sample CSV files and their metadata were written (`home/sample`).
    pub fn sample_dir(&self) -> PathBuf {
        sample_dir(self.home.path())
    }

    /// The owner's database, opened directly: for tests that read rows or play an attacker who edits them.
    ///
    /// # Panics
    ///
    /// If the database cannot be opened.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(store::db_path(&self.dir))
            .unwrap_or_else(|e| panic!("open the owner's database: {e}"))
    }

    /// The owner's store, opened as the node opens it in tests ([`open_store`]).
    ///
    /// # Panics
    ///
    /// If the store cannot be opened.
    pub fn store(&self) -> Owner {
        open_store(&self.dir)
    }

    /// The configuration the test nodes serve with: the defaults, with `synchronous=NORMAL` (a test does not
    /// need its commits to survive a power cut, and runs faster without).
    pub fn serve_config(&self) -> ServeConfig {
        let mut cfg = ServeConfig::new(&self.dir);
        cfg.sync = store::Sync::Normal;
        cfg
    }

    /// Starts the node on loopback, on a port the system picks.
    ///
    /// # Panics
    ///
    /// If the node does not start.
    pub async fn start(&self) -> RunningNode {
        self.start_at(loopback()).await
    }

    /// Starts the node on `addr` (a restart reuses the address FIs have paired with).
    ///
    /// # Panics
    ///
    /// If the node does not start.
    pub async fn start_at(&self, addr: SocketAddr) -> RunningNode {
        self.serve(addr, |_| {}).await
    }

    /// Starts the node on loopback after `configure` has changed the [test configuration](Self::serve_config):
    /// limits, quotas, sync.
    ///
    /// # Panics
    ///
    /// If the node does not start.
    pub async fn start_with(&self, configure: impl FnOnce(&mut ServeConfig)) -> RunningNode {
        self.serve(loopback(), configure).await
    }

    async fn serve(
        &self,
        addr: SocketAddr,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> RunningNode {
        let mut cfg = self.serve_config();
        configure(&mut cfg);
        owner::spawn(cfg, addr)
            .await
            .unwrap_or_else(|e| panic!("start the owner node on {addr}: {e}"))
    }
}

/// The store of the owner in `owner_dir`, opened as the node opens it in tests (`synchronous=NORMAL`): for a
/// task that cannot borrow the [`OwnerNode`].
///
/// # Panics
///
/// If the store cannot be opened.
pub fn open_store(owner_dir: &Path) -> Owner {
    Owner::open(owner_dir, store::Sync::Normal, DatasetCache::default())
        .unwrap_or_else(|e| panic!("open the owner store in {}: {e}", owner_dir.display()))
}

/// An owner with `policy` and the sample data of the tests (seed [`TEST_SEED`], reliable payer), in a new
/// temporary home.
///
/// # Panics
///
/// If the owner cannot be made.
pub fn owner_with_sample(policy: &str) -> OwnerNode {
    OwnerNode::sample(policy, TEST_SEED, Profile::Reliable)
        .unwrap_or_else(|e| panic!("make an owner with the sample data: {e}"))
}

/// The kinds of every entry of the owner's log, in order.
///
/// # Panics
///
/// If the log cannot be read.
pub fn log_kinds(owner: &Owner) -> Vec<String> {
    owner
        .store()
        .log_entries(0, 100_000)
        .unwrap_or_else(|e| panic!("read the owner's log: {e}"))
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::TEST_POLICY;

    #[test]
    fn a_sample_owner_has_the_sample_datasets_and_the_policy_it_was_given() {
        let home = tempfile::tempdir().unwrap();
        let made =
            SampleOwner::create(home.path(), TEST_POLICY, TEST_SEED, Profile::Reliable).unwrap();
        assert_eq!(made.dir, owner::owner_dir(home.path()));
        assert!(made.init.new_key && made.init.wrote_policy);
        let mut names: Vec<&str> = made.loaded.iter().map(|l| l.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["rent", "subscriptions", "transactions", "utilities"]
        );
        for l in &made.loaded {
            assert!(l.rows > 0, "{}: no rows", l.name);
            assert!(sample_dir(home.path())
                .join(format!("{}.csv", l.name))
                .is_file());
        }
        let policy = std::fs::read_to_string(duo_node::owner::policy_path(&made.dir)).unwrap();
        assert_eq!(policy, TEST_POLICY);
    }
}
