//! The `duo` subcommands, one module each, and what they share: the `--json` flag, printing (through
//! [`out`](mod@out), which a closed pipe cannot crash), the async runtime, opening the owner's node and
//! asking before a deletion.
//!
//! `main.rs` parses the command line and calls one function here per subcommand; each returns the process's
//! exit code (0 done, 1 a negative answer such as a denial or a failed check) or an error (exit 2; 141 when
//! standard output was closed before everything was printed).

pub mod bench;
pub mod budget;
pub mod demo;
pub mod fi;
pub mod log;
pub mod out;
pub mod owner;
pub mod policy;
pub mod receipt;
pub mod relay;
pub mod sample;
pub mod show;
pub mod ttl;
pub mod ui;

use anyhow::{bail, Result};
use clap::Args;
use duo::node::owner as node_owner;
use duo::node::owner::{DatasetCache, Owner};
use duo::node::store;
use out::{errln, out, outln};
use std::path::{Path, PathBuf};

/// `--json`: print JSON instead of text.
#[derive(Args, Debug, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A multi-threaded tokio runtime for the commands that talk over the network.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Print `v` as pretty JSON, in the CLI's JSON conventions ([`script_json`]).
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(&script_json(v)?)?)?;
    Ok(())
}

/// `v` as JSON for people's scripts: every `expires_at` held as Unix seconds becomes RFC 3339 text (as every
/// other time in the CLI's JSON), and a log entry's `body`, stored as JSON text, becomes the object it holds.
fn script_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    fn fix(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(t) = m.get("expires_at").and_then(serde_json::Value::as_i64) {
                    if let Some(t) = chrono::DateTime::from_timestamp(t, 0) {
                        m.insert(
                            "expires_at".into(),
                            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into(),
                        );
                    }
                }
                if let Some(body) = m.get("body").and_then(serde_json::Value::as_str) {
                    if let Ok(parsed) = serde_json::from_str::<serde_json::Value>(body) {
                        m.insert("body".into(), parsed);
                    }
                }
                m.values_mut().for_each(fix);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(fix),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(v)?;
    fix(&mut v);
    Ok(v)
}

/// Print `v` as JSON with `--json`, else as the text `text` makes of it.
pub fn emit<T: serde::Serialize>(
    json: JsonFlag,
    v: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<()> {
    if json.json {
        print_json(v)
    } else {
        out!("{}", text(v))?;
        Ok(())
    }
}

/// The owner directory under `home`, initialised (key, store, default policy) if it is not yet.
pub fn ensure_owner(home: &Path) -> Result<PathBuf> {
    let dir = node_owner::owner_dir(home);
    if !dir.join("node.key").exists() {
        let r = node_owner::init(&dir, None)?;
        errln!(
            "initialised a new owner node in {} (key {})",
            dir.display(),
            r.fingerprint
        );
    }
    Ok(dir)
}

/// The owner's node in `dir`, its store synced in full.
pub fn open_owner(dir: &Path) -> Result<Owner> {
    Ok(Owner::open(
        dir,
        store::Sync::Full,
        DatasetCache::default(),
    )?)
}

/// Ask on the terminal; refuses (with how to proceed) when there is no terminal.
///
/// The answer must be the word `yes`, typed out: this guards deletions that cannot be undone. Without a
/// terminal on standard input (a script, a pipe) nothing is read and the command fails, naming `--yes`.
///
/// This is std on purpose rather than a prompt crate: dialoguer's `Confirm` takes a single `y` keystroke
/// (too easy for a deletion of everything) and decides whether it may prompt from standard error, not
/// standard input, so `echo yes | duo owner forget` would no longer be refused; its text `Input` would still
/// need the check above, and would bring the console crate for one line of reading.
pub fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        bail!("{question} This cannot be undone; pass --yes to confirm");
    }
    out::stderr(format_args!(
        "{question} This cannot be undone. Type yes to go on: "
    ));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
