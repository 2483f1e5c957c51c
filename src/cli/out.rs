//! Printing that a closed pipe cannot crash: `duo owner log | head -1` stops quietly.
//!
//! Rust programs ignore SIGPIPE, so once the reader of standard output has gone every write fails with a
//! broken pipe, and `println!` panics on it. The command line prints through [`outln!`] and [`out!`] instead:
//! they return the write's error, which the caller passes on with `?`; a broken pipe comes back as
//! [`StdoutClosed`], which `main` turns into a quiet exit. Messages to standard error go through [`errln!`],
//! which drops what cannot be written (there is nowhere left to report it).

use std::fmt;
use std::io::{self, Write};

/// Standard output was closed by its reader: nothing more can be shown, and nothing went wrong.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// The exit status after standard output was closed: that of a process ended by SIGPIPE (128 + 13), as a
/// Unix tool writing into a closed pipe ends, so that a script with `pipefail` does not take a cut-short
/// command for one that finished.
pub const CLOSED_STATUS: i32 = 141;

/// Whether `e` is (or was caused by) standard output being closed.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// Write `args` to standard output (used by [`outln!`] and [`out!`]).
pub fn stdout(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    write(&mut io::stdout().lock(), args)
}

/// Write `args` to `w`; a broken pipe becomes [`StdoutClosed`].
fn write(w: &mut impl Write, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    w.write_fmt(args).map_err(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            anyhow::Error::new(StdoutClosed)
        } else {
            anyhow::Error::new(e).context("writing to standard output")
        }
    })
}

/// A failed command's error as JSON on standard output, for `--json`: `{"error": CODE, "message": TEXT}`. The
/// code is the node's (`not_found`, `refused`, …, or the owner node's code for an error it sent); `error` for
/// anything else.
pub fn json_error(e: &anyhow::Error) -> anyhow::Result<()> {
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<duo::node::Error>())
        .map_or("error", duo::node::Error::reported_code);
    let v = serde_json::json!({ "error": code, "message": format!("{e:#}") });
    stdout(format_args!("{}\n", serde_json::to_string_pretty(&v)?))
}

/// Write `args` to standard error, dropping it if standard error is closed (used by [`errln!`]).
pub fn stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `println!` that returns an error instead of panicking; use it with `?`.
macro_rules! outln {
    () => {
        $crate::cli::out::stdout(format_args!("\n"))
    };
    ($($arg:tt)+) => {
        $crate::cli::out::stdout(format_args!("{}\n", format_args!($($arg)+)))
    };
}

/// `print!` that returns an error instead of panicking; use it with `?`.
macro_rules! out {
    ($($arg:tt)+) => {
        $crate::cli::out::stdout(format_args!($($arg)+))
    };
}

/// `eprintln!` that never panics: a message standard error cannot take is dropped.
macro_rules! errln {
    ($($arg:tt)+) => {
        $crate::cli::out::stderr(format_args!("{}\n", format_args!($($arg)+)))
    };
}

pub(crate) use {errln, out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that has gone away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that fails for another reason.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_told_apart_from_other_failures() {
        let closed = write(&mut Closed, format_args!("x")).unwrap_err();
        assert!(is_closed(&closed));
        assert!(is_closed(&closed.context("printing the log")));
        let full = write(&mut Full, format_args!("x")).unwrap_err();
        assert!(!is_closed(&full));
        assert!(full.to_string().contains("standard output"));
        let mut buf = Vec::new();
        write(&mut buf, format_args!("{}-{}", 1, 2)).unwrap();
        assert_eq!(buf, b"1-2");
    }
}
