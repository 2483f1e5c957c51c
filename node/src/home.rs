//! Data directories: where the owner's store and the FI's keys live.
//!
//! `--home DIR` or `DUO_HOME` choose the directory; otherwise `$XDG_DATA_HOME/duo` (or `~/.local/share/duo`).
//! The owner's files are under `owner/`, the FI's under `fi/`, so one home can hold both roles (as the demo does).
//! Directories are created with mode 0700 and files with 0600.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The default home directory when neither `--home` nor `DUO_HOME` is given.
pub fn default_home() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("duo");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/duo");
    }
    PathBuf::from(".duo")
}

/// Create a directory (and parents) readable only by this user.
pub fn private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    set_mode(path, 0o700)
}

/// Write a file readable only by this user, atomically (write to a temporary file, sync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    set_mode(&tmp, 0o600)?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Set a file's permission bits (no-op off Unix).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Refuse a secret or trusted file that group or others may write: whoever can write the policy or a key file
/// can make the node approve anything or impersonate it. The error says how to fix it. (Nothing is checked off
/// Unix.)
pub fn refuse_writable_by_others(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} can be written by other users (mode {:o}), so the node will not trust it; run `chmod 600 {}` \
                     (and check nobody else changed it)",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The file in an owner directory that a running owner node holds locked, with its process id inside.
pub const SERVE_LOCK_FILE: &str = "serve.lock";

/// The exclusive lock a running owner node holds on its owner directory (an advisory `flock` on
/// [`SERVE_LOCK_FILE`], `LockFileEx` on Windows), so that only one node serves one store: two would each
/// think they alone hand out sessions, per-FI limits and pressure reports. Released when dropped, and by the
/// system when the process ends however it ends.
#[derive(Debug)]
pub struct ServeLock {
    file: fs::File,
}

impl ServeLock {
    /// Take the lock on `owner_dir` without waiting, writing this process's id into the lock file.
    ///
    /// # Errors
    /// [`io::ErrorKind::WouldBlock`] with a sentence naming the directory and the holder's process id when
    /// another node holds it; any other error opening the file.
    pub fn take(owner_dir: &Path) -> io::Result<ServeLock> {
        private_dir(owner_dir)?;
        let path = owner_dir.join(SERVE_LOCK_FILE);
        let mut opts = fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&path)?;
        loop {
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {
                    let pid = fs::read_to_string(&path).unwrap_or_default();
                    let pid = pid.trim();
                    let holder = if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    };
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "another `duo owner serve` is running on {}{holder}; stop it first, or serve \
                             another home with --home",
                            owner_dir.display()
                        ),
                    ));
                }
                Err(fs4::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    continue
                }
                Err(fs4::TryLockError::Error(e)) => return Err(e),
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(ServeLock { file })
    }
}

/// The process id of the `duo owner serve` running on `owner_dir` now, if one is: [`SERVE_LOCK_FILE`] is held
/// (tested with a shared lock taken and released at once) and names it. `None` when no node holds the lock,
/// however the last one ended (a `kill -9` leaves its process id in the file but releases the lock).
pub fn serve_running(owner_dir: &Path) -> Option<u32> {
    let path = owner_dir.join(SERVE_LOCK_FILE);
    let file = fs::File::open(&path).ok()?;
    match fs4::FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = fs4::FileExt::unlock(&file);
            None
        }
        Err(fs4::TryLockError::WouldBlock) => fs::read_to_string(&path).ok()?.trim().parse().ok(),
        Err(fs4::TryLockError::Error(_)) => None,
    }
}

impl Drop for ServeLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = fs4::FileExt::unlock(&self.file);
    }
}
