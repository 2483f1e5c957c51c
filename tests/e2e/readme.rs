//! The README's walkthrough runs as written: every `sh` block between "## Walkthrough" and the next top-level
//! section, line by line, in a new directory, with the words in angle brackets filled in from what earlier
//! commands printed (as a person would copy them). A command that fails fails the test, naming the line.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Command, Stdio};

/// The command lines of the walkthrough's `sh` blocks, comments dropped.
fn walkthrough_lines(readme: &str) -> Vec<String> {
    let start = readme
        .find("## Walkthrough")
        .expect("a Walkthrough section");
    let rest = &readme[start + 2..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() && !l.starts_with('#') => {
                // A comment is two spaces and a `#` after the command.
                let cmd = l.find("  #").map_or(l, |i| &l[..i]).trim_end();
                lines.push(cmd.to_string());
            }
            _ => {}
        }
    }
    lines
}

/// What earlier commands printed that later lines refer to.
#[derive(Default)]
struct Seen {
    url: String,
    code: String,
    invite: String,
    hex: String,
    /// The pending requests `duo owner requests` listed last, not yet decided here: (id, token).
    pending: VecDeque<(String, String)>,
    /// The last request the owner approved here.
    approved: String,
}

impl Seen {
    /// Take in a command's output.
    fn read(&mut self, args: &[String], out: &str) {
        for word in out.split_whitespace() {
            let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
            if word.starts_with("duo1-") && word.matches('-').count() == 3 {
                self.code = word.to_string();
            }
            if word.len() == 64 && word.chars().all(|c| c.is_ascii_hexdigit()) && args[1] == "owner"
            {
                self.hex = word.to_string();
            }
        }
        if args[1..] == ["owner", "invite", "list"] {
            if let Some(id) = out
                .lines()
                .filter(|l| !l.starts_with(' '))
                .filter_map(|l| l.split_whitespace().next())
                .next_back()
            {
                self.invite = id.to_string();
            }
        }
        if args[1..] == ["owner", "requests"] {
            self.pending = out
                .lines()
                .filter_map(|l| l.trim().strip_prefix("approve: duo owner approve "))
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    let id = w.next()?.to_string();
                    (w.next()? == "--seen").then_some(())?;
                    Some((id, w.next()?.to_string()))
                })
                .collect();
        }
    }

    /// The line's words with the angle-bracket words filled in.
    fn fill(&mut self, mut args: Vec<String>) -> Vec<String> {
        let decides =
            args.len() > 2 && args[1] == "owner" && (args[2] == "approve" || args[2] == "deny");
        let (id, token) = if decides {
            let (id, token) = self
                .pending
                .pop_front()
                .unwrap_or_else(|| panic!("{args:?}: no pending request left to decide"));
            if args[2] == "approve" {
                self.approved = id.clone();
            }
            (id, token)
        } else {
            (self.approved.clone(), String::new())
        };
        for a in &mut args {
            *a = a
                .replace("ws://127.0.0.1:7878", &self.url)
                .replace("<CODE>", &self.code)
                .replace("<INVITE-ID>", &self.invite)
                .replace("<HEX>", &self.hex)
                .replace("<ID>", &id)
                .replace("<TOKEN>", &token);
        }
        args
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let lines = walkthrough_lines(&readme);
    assert!(
        lines.len() > 30,
        "the walkthrough has its commands: {lines:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Seen::default();
    let mut node = None;
    for line in &lines {
        let mut args = shlex::split(line).unwrap_or_else(|| panic!("cannot split {line:?}"));
        assert_eq!(args[0], "duo", "a walkthrough line runs duo: {line:?}");
        let to_file = args.iter().position(|a| a == ">").map(|i| {
            let file = args[i + 1].clone();
            args.truncate(i);
            file
        });
        // `duo owner serve` runs on a free port rather than the README's, and keeps running.
        if args[1..3] == ["owner", "serve"] {
            let (child, url, _) = super::serve::spawn_serve(&dir.path().join("home"), &[], &[]);
            seen.url = url;
            node = Some(child);
            continue;
        }
        let args = seen.fill(args);
        let out = Command::new(env!("CARGO_BIN_EXE_duo"))
            .args(&args[1..])
            .current_dir(dir.path())
            .env("DUO_HOME", dir.path().join("home"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "README line `{line}` (run as {args:?}) failed with {:?}:\n{stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(file) = to_file {
            std::fs::write(dir.path().join(file), &stdout).unwrap();
        }
        seen.read(&args, &stdout);
    }
    if let Some(mut n) = node {
        n.kill().unwrap();
        n.wait().unwrap();
    }
}
