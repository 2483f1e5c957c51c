//! The `duo` command line: parses the arguments and hands each subcommand to its module in `cli/`.

// Print through cli::out (outln!, out!, errln!): println! and friends panic when a pipe closes.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use clap::{Parser, Subcommand};
use cli::bench::BenchArgs;
use cli::fi::FiCmd;
use cli::out::errln;
use cli::owner::OwnerCmd;
use std::path::{Path, PathBuf};

/// Duo: keep your alternative credit data on your own computer, and let a lender learn only what you approve.
#[derive(Parser, Debug)]
#[command(name = "duo", version, about, long_about = None)]
struct Cli {
    /// Data directory (owner data under owner/, FI keys under fi/). Default: $DUO_HOME, else $XDG_DATA_HOME/duo.
    #[arg(long, global = true, env = "DUO_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the whole story on this machine: an owner node and an FI client over loopback, on sample data.
    Demo(cli::demo::DemoArgs),
    /// Write realistic sample data (CSV files plus metadata files that `duo owner load` accepts).
    Sample(cli::sample::SampleArgs),
    /// Commands for the data owner.
    #[command(subcommand)]
    Owner(OwnerCmd),
    /// Commands for the financial institution.
    #[command(subcommand)]
    Fi(FiCmd),
    /// Measurements for researchers and operators; with no subcommand, the default set (`--json` for JSON).
    Bench(BenchArgs),
    /// Run a relay: owners behind NAT connect out to it (`duo owner serve --relay`) and FIs reach them through
    /// it; it forwards ciphertext it cannot read.
    Relay(cli::relay::RelayArgs),
    /// Check a receipt (a JSON file, as `duo fi receipts --json` or `duo fi result --json` prints it) against an
    /// owner node's public signing key. Exit 0 if it verifies, 1 if not.
    VerifyReceipt(cli::receipt::VerifyArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error, with --json: JSON on standard output too. (Help and the version print as text.)
        Err(e) if json_requested() && e.use_stderr() => {
            let v = serde_json::json!({ "error": "usage", "message": e.render().to_string() });
            let _ = cli::out::stdout(format_args!("{v:#}\n"));
            std::process::exit(2)
        }
        Err(e) => e.exit(),
    };
    let home = cli
        .home
        .clone()
        .unwrap_or_else(duo::node::home::default_home);
    let code = match run(cli.cmd, &home) {
        Ok(code) => code,
        // The reader of standard output has gone (`duo owner log | head -1`): stop quietly, with the status
        // of a Unix tool that the closed pipe ended.
        Err(e) if cli::out::is_closed(&e) => cli::out::CLOSED_STATUS,
        Err(e) if json_requested() => match cli::out::json_error(&e) {
            Err(e) if cli::out::is_closed(&e) => cli::out::CLOSED_STATUS,
            _ => 2,
        },
        Err(e) => {
            errln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code)
}

/// Whether the command line asked for JSON (`--json` before any `--`): its errors are then JSON on standard
/// output too. (Each subcommand has its own `--json` flag, so the parsed command cannot be asked once it failed.)
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Run one subcommand: the process's exit code, or an error (exit 2).
fn run(cmd: Cmd, home: &Path) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Demo(args) => cli::demo::run(args),
        Cmd::Sample(args) => cli::sample::run(args),
        Cmd::Owner(cmd) => cli::owner::run(cmd, home),
        Cmd::Fi(cmd) => cli::fi::run(cmd, home),
        Cmd::Bench(cmd) => cli::bench::run(cmd),
        Cmd::Relay(args) => cli::relay::run(args, home),
        Cmd::VerifyReceipt(args) => cli::receipt::verify(args),
    }
}
