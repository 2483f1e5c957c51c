//! Shared set-up: an owner node with sample data, and paired FIs.

use duo::node::fi::{self as client, Client, FiHome};
use duo::node::owner::{self, RunningNode, ServeConfig};
use duo::node::owner::{DatasetCache, Owner};
use duo::node::store;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

/// A policy for tests: deny row-level, approve catalogue attributes, deny anything reading `subscriptions`,
/// ask for the rest.
pub const TEST_POLICY: &str = r#"
default = "ask"

[[rule]]
name = "no-rows"
row_level = true
action = "deny"
reason = "row-level data never leaves this node"

[[rule]]
name = "no-subscriptions"
datasets = ["subscriptions"]
action = "deny"
reason = "subscriptions are private"

[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"
"#;

pub struct OwnerNode {
    pub home: TempDir,
    pub dir: PathBuf,
}

impl OwnerNode {
    pub fn store(&self) -> Owner {
        Owner::open(&self.dir, store::Sync::Normal, DatasetCache::default()).unwrap()
    }

    pub async fn start(&self) -> RunningNode {
        self.start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// Start on a given address (a restart reuses the address FIs have paired with).
    pub async fn start_at(&self, addr: std::net::SocketAddr) -> RunningNode {
        let mut cfg = ServeConfig::new(&self.dir);
        cfg.sync = store::Sync::Normal;
        owner::spawn(cfg, addr).await.unwrap()
    }
}

/// An owner node with the sample data (reliable profile, seed 7, ending at the last full month) loaded.
pub fn owner_with_sample(policy: &str) -> OwnerNode {
    let home = tempfile::tempdir().unwrap();
    let dir = duo::sample_owner(
        home.path(),
        policy,
        7,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap();
    OwnerNode { home, dir }
}

pub struct Fi {
    pub _dir: TempDir,
    pub home: FiHome,
}

/// A fresh FI paired with the node as `principal`.
pub async fn paired_fi(owner: &OwnerNode, node: &RunningNode, principal: &str) -> Fi {
    let dir = tempfile::tempdir().unwrap();
    let home = FiHome::new(dir.path());
    let code = owner::invite(&owner.dir, principal, Duration::from_secs(600)).unwrap();
    client::pair(&home, &node.url(), &code.to_string(), "owner")
        .await
        .unwrap();
    Fi { _dir: dir, home }
}

pub async fn connect(fi: &Fi) -> Client {
    Client::connect(&fi.home, None).await.unwrap()
}

impl OwnerNode {
    /// The owner's database, opened directly: for tests that read rows or play an attacker who edits them.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(duo::node::store::db_path(&self.dir)).unwrap()
    }
}
