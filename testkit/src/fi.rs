//! The FI side: FIs paired with an owner node over loopback, and their sessions.

use crate::owner::OwnerNode;
use duo_node::fi::{self as client, Client, FiHome};
use duo_node::owner::{self, RunningNode};
use duo_node::Error;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// The name an FI made here gives the owner it pairs with.
pub const OWNER_NAME: &str = "owner";

/// How long an invite made here stays valid.
pub const INVITE_TTL: Duration = Duration::from_secs(600);

/// Pairs a new FI, whose home is `fi_dir`, with the owner in `owner_dir` whose node serves `url`, as
/// `principal`: the owner makes an invite ([`INVITE_TTL`]) and the FI pairs with it, naming the owner
/// [`OWNER_NAME`].
pub async fn pair(
    owner_dir: &Path,
    url: &str,
    principal: &str,
    fi_dir: &Path,
) -> Result<FiHome, Error> {
    let home = FiHome::new(fi_dir);
    let code = owner::invite(owner_dir, principal, INVITE_TTL)?;
    client::pair(&home, url, &code.to_string(), OWNER_NAME).await?;
    Ok(home)
}

/// [`pair`], then opens a session as the new FI.
pub async fn pair_and_connect(
    owner_dir: &Path,
    url: &str,
    principal: &str,
    fi_dir: &Path,
) -> Result<Client, Error> {
    let home = pair(owner_dir, url, principal, fi_dir).await?;
    Client::connect(&home, None).await
}

/// An FI paired with an owner node, its home in a temporary directory removed when this is dropped.
#[derive(Debug)]
pub struct Fi {
    /// The temporary directory holding the FI's home (keys, pairings, receipts, model openings).
    pub dir: TempDir,
    /// The FI's home.
    pub home: FiHome,
}

impl Fi {
    /// Opens a session with the owner it is paired with.
    ///
    /// # Panics
    ///
    /// If the session cannot be opened.
    pub async fn connect(&self) -> Client {
        Client::connect(&self.home, None)
            .await
            .unwrap_or_else(|e| panic!("connect as the FI in {}: {e}", self.dir.path().display()))
    }
}

/// A new FI paired with `owner`'s running `node` as `principal`.
///
/// # Panics
///
/// If the pairing fails.
pub async fn paired_fi(owner: &OwnerNode, node: &RunningNode, principal: &str) -> Fi {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("make a home for FI {principal}: {e}"));
    let home = pair(&owner.dir, &node.url(), principal, dir.path())
        .await
        .unwrap_or_else(|e| panic!("pair FI {principal} with {}: {e}", node.url()));
    Fi { dir, home }
}

/// Opens a session as `fi` ([`Fi::connect`]).
///
/// # Panics
///
/// If the session cannot be opened.
pub async fn connect(fi: &Fi) -> Client {
    fi.connect().await
}
