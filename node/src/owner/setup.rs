//! Setting up an owner node: its directory, node key, policy file and signing key; loading data; invites.

use super::policy_path;
use super::signer::{signing_key_path, NodeSigner};
use crate::error::Error;
use crate::net::keys::{fingerprint, InviteCode, Keypair};
use crate::store::{self, Store, Sync};
use duo_engine::ingest::{load_csv, parse_meta, IngestLimits};
use duo_engine::{Dataset, Suggestions};
use duo_policies::Policy;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The owner's directory inside a Duo home.
pub fn owner_dir(home: &Path) -> PathBuf {
    home.join("owner")
}

fn key_path(owner_dir: &Path) -> PathBuf {
    owner_dir.join("node.key")
}

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Whether a new node key was made.
    pub new_key: bool,
    /// Whether the policy file was written.
    pub wrote_policy: bool,
    /// The node key's fingerprint.
    pub fingerprint: String,
}

/// Create the owner directory, the node key and the policy file if they are missing (existing ones are kept).
/// `policy_text` replaces the default policy when the file does not exist yet.
pub fn init(owner_dir: &Path, policy_text: Option<&str>) -> Result<InitReport, Error> {
    crate::home::private_dir(owner_dir)?;
    let kp = key_path(owner_dir);
    let new_key = !kp.exists();
    if new_key {
        crate::home::write_private(&kp, &Keypair::generate().to_file_bytes())?;
    }
    let pp = policy_path(owner_dir);
    let wrote_policy = !pp.exists();
    if wrote_policy {
        let text = policy_text.unwrap_or(Policy::default_text());
        Policy::parse(text)?;
        crate::home::write_private(&pp, text.as_bytes())?;
    }
    NodeSigner::load_or_create(&signing_key_path(owner_dir))?;
    Store::open(owner_dir, Sync::Full)?;
    let key = node_key(owner_dir)?;
    Ok(InitReport {
        new_key,
        wrote_policy,
        fingerprint: fingerprint(&key.public),
    })
}

/// The owner node's static key.
pub fn node_key(owner_dir: &Path) -> Result<Keypair, Error> {
    let bytes = std::fs::read(key_path(owner_dir)).map_err(|e| {
        Error::NotFound(format!(
            "node key in {}: {e} (run `duo owner init`)",
            owner_dir.display()
        ))
    })?;
    crate::home::refuse_writable_by_others(&key_path(owner_dir))
        .map_err(|e| Error::Refused(e.to_string()))?;
    Keypair::from_file_bytes(&bytes).map_err(|e| Error::Internal(format!("node key: {e}")))
}

/// The result of loading a CSV file.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Dataset name.
    pub name: String,
    /// New version.
    pub version: u64,
    /// Rows loaded.
    pub rows: u64,
    /// What the node inferred (owner-only).
    pub suggestions: Suggestions,
}

/// Load a CSV file as a new version of dataset `name`, with the metadata in `meta_text`. A bad file changes
/// nothing.
pub fn load(
    owner_dir: &Path,
    csv_path: &Path,
    name: &str,
    meta_text: &str,
) -> Result<LoadReport, Error> {
    load_with(owner_dir, csv_path, name, meta_text, false)
}

/// [`load`], and with `allow_empty` a file with no data rows too (it replaces the dataset with an empty
/// version); without it such a file is refused, since a header-only file is far more often a mistake.
pub fn load_with(
    owner_dir: &Path,
    csv_path: &Path,
    name: &str,
    meta_text: &str,
    allow_empty: bool,
) -> Result<LoadReport, Error> {
    let file = std::fs::File::open(csv_path)
        .map_err(|e| Error::NotFound(format!("{}: {e}", csv_path.display())))?;
    let label = csv_path.display().to_string();
    load_from(
        owner_dir,
        std::io::BufReader::new(file),
        &label,
        name,
        meta_text,
        allow_empty,
    )
}

/// [`load_with`] from any reader (`label` names it in errors, as the file name does): what `duo owner load`
/// does, for the UI's uploads too.
pub fn load_from<R: Read>(
    owner_dir: &Path,
    input: R,
    label: &str,
    name: &str,
    meta_text: &str,
    allow_empty: bool,
) -> Result<LoadReport, Error> {
    let (ds, sugg) = read_checked(input, label, name, meta_text, allow_empty)?;
    let version = Store::open(owner_dir, Sync::Full)?.put_dataset(&ds, &sugg)?;
    Ok(LoadReport {
        name: name.to_string(),
        version,
        rows: ds.rows() as u64,
        suggestions: sugg,
    })
}

/// Everything [`load_from`] checks, without storing anything: the rows and what the node inferred from them,
/// or the error `load_from` would give (naming the line and column to fix).
pub fn check_load<R: Read>(
    input: R,
    label: &str,
    name: &str,
    meta_text: &str,
    allow_empty: bool,
) -> Result<Suggestions, Error> {
    read_checked(input, label, name, meta_text, allow_empty).map(|(_, s)| s)
}

fn read_checked<R: Read>(
    input: R,
    label: &str,
    name: &str,
    meta_text: &str,
    allow_empty: bool,
) -> Result<(Dataset, Suggestions), Error> {
    let mut meta = parse_meta(meta_text).map_err(|e| Error::Refused(format!("metadata: {e}")))?;
    meta.name = name.to_string();
    // Re-validate with the chosen name.
    let meta_text = toml::to_string(&meta).map_err(|e| Error::Internal(e.to_string()))?;
    let meta = parse_meta(&meta_text).map_err(|e| Error::Refused(format!("metadata: {e}")))?;
    let (ds, sugg) = load_csv(input, &meta, &IngestLimits::default())
        .map_err(|e| Error::Refused(format!("{label}: {e}")))?;
    if ds.rows() == 0 && !allow_empty {
        return Err(Error::Refused(format!(
            "{label} has a header but no data rows; loading it would make dataset `{name}` empty (nothing was \
             changed). If that is what you want, pass --allow-empty (in the web UI, tick \"load it anyway\")"
        )));
    }
    Ok((ds, sugg))
}

/// How long a pairing lasts unless the invite says otherwise.
pub const DEFAULT_PAIRING: Duration = Duration::from_secs(90 * 24 * 3600);

/// Make an invite code for `principal`, valid for `ttl`; the pairing it makes lasts [`DEFAULT_PAIRING`].
/// Refused if `principal` is already paired (see [`rekey_invite`]).
pub fn invite(owner_dir: &Path, principal: &str, ttl: Duration) -> Result<InviteCode, Error> {
    invite_for(owner_dir, principal, ttl, DEFAULT_PAIRING)
}

/// Make an invite code for `principal`, valid for `ttl`, whose pairing lasts `pairing`. Refused if
/// `principal` is already paired (an active pairing that has not expired): pairing it again would replace its
/// key, which only a [`rekey_invite`] does. The first of a principal's invites to be used cancels the others.
pub fn invite_for(
    owner_dir: &Path,
    principal: &str,
    ttl: Duration,
    pairing: Duration,
) -> Result<InviteCode, Error> {
    make_invite(owner_dir, principal, ttl, pairing, false)
}

/// Make a code that re-keys `principal`, which must be paired, valid for `ttl`, whose pairing lasts `pairing`.
/// When it is used, the FI key it pairs replaces the current one: the old key stops working at once (its
/// holder is told its pairing was re-keyed) and the new key inherits the principal's budgets, counters,
/// requests and answers. For an FI that lost its key or wants a new one; whoever holds the code can take the
/// principal's place, so it must reach the FI as safely as a first invite.
pub fn rekey_invite(
    owner_dir: &Path,
    principal: &str,
    ttl: Duration,
    pairing: Duration,
) -> Result<InviteCode, Error> {
    make_invite(owner_dir, principal, ttl, pairing, true)
}

fn make_invite(
    owner_dir: &Path,
    principal: &str,
    ttl: Duration,
    pairing: Duration,
    rekey: bool,
) -> Result<InviteCode, Error> {
    let principal = principal.trim();
    if principal.is_empty() || principal.len() > 128 || principal.chars().any(char::is_control) {
        return Err(Error::Refused(
            "the principal name must be 1 to 128 printable characters".into(),
        ));
    }
    let key = node_key(owner_dir)?;
    let code = InviteCode::generate(&key.public);
    let expires_at = store::now_unix() + ttl.as_secs() as i64;
    let mut store = Store::open(owner_dir, Sync::Full)?;
    if rekey {
        store.create_rekey_invite(&code.id, principal, &code.psk(), expires_at, pairing)?;
    } else {
        store.create_invite(&code.id, principal, &code.psk(), expires_at, pairing)?;
    }
    Ok(code)
}
