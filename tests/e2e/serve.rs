//! `duo owner serve` as a process: one per owner home (issue 10, item 5), a line per event and `--quiet` (item
//! 23), and a prompt stop on SIGTERM whatever the node is computing (item 14).

use duo::node::fi::{Client, FiHome};
use duo::node::proto::request::DpParams;
use duo::policies::Backend;
use duo_testkit::owner::TEST_SEED;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `duo owner serve`: the process, its URL, and its standard error line by line.
struct Serve {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// `duo owner serve` on a free loopback port with `extra` arguments and `env` variables: the process, the
/// address it printed first, and its standard error as it comes, line by line.
pub(crate) fn spawn_serve(
    home: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(home)
        .args([
            "owner",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sync",
            "normal",
        ])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url:?}");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    (child, url, stderr)
}

impl Serve {
    /// Starts `duo owner serve` ([`spawn_serve`]).
    fn start(home: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let (child, url, stderr) = spawn_serve(home, extra, env);
        Serve { child, url, stderr }
    }

    /// Sends SIGTERM and waits up to `limit` for the process to end; how long it took (`None`: it did not end,
    /// and was killed).
    fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let sent = Instant::now();
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        while sent.elapsed() < limit {
            if self.child.try_wait().unwrap().is_some() {
                return Some(sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// What it printed on standard error so far.
    fn printed(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_home(policy: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = duo_testkit::sample_owner(
        tmp.path(),
        policy,
        TEST_SEED,
        duo::engine::sample::Profile::Reliable,
    )
    .unwrap();
    (tmp, dir)
}

fn duo_ok(home: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Before, a second `duo owner serve` on the same home started and served the same store beside the first.
#[test]
fn a_second_serve_on_one_home_is_refused_while_the_first_runs() {
    let (tmp, _dir) = sample_home(duo_testkit::policy::TEST_POLICY);
    let mut first = Serve::start(tmp.path(), &[], &[]);
    let mut second = Command::new(env!("CARGO_BIN_EXE_duo"))
        .arg("--home")
        .arg(tmp.path())
        .args(["owner", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while second.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let still_serving = second.try_wait().unwrap().is_none();
    let _ = second.kill();
    let second = second.wait_with_output().unwrap();
    assert!(!still_serving, "a second serve started on the same home");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let pid = first.child.id().to_string();
    assert!(
        err.contains("another `duo owner serve` is running on") && err.contains(&pid),
        "{err}"
    );
    // Once the first has stopped, a new one starts.
    assert!(first.terminate(Duration::from_secs(20)).is_some());
    let mut again = Serve::start(tmp.path(), &[], &[]);
    assert!(again.terminate(Duration::from_secs(20)).is_some());
}

/// Before, SIGTERM waited for every session to end, so a cost preview computing for minutes held the node up
/// as long (here a failpoint makes the preview sleep 60 s on its thread, as a long computation would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_promptly_while_a_preview_computes() {
    let (tmp, dir) = sample_home(duo_testkit::policy::DP_POLICY);
    let mut node = Serve::start(
        tmp.path(),
        &[],
        &[("DUO_TEST_FAILPOINTS", "owner::cost_preview=sleep(60000)")],
    );
    let fi = duo_testkit::fi::pair(&dir, &node.url, "Acme Bank", &tmp.path().join("fi"))
        .await
        .unwrap();
    let mut c = Client::connect(&fi, None).await.unwrap();
    let p = c.expr("count(rent)").await.unwrap();
    let params = DpParams {
        epsilon: Some(0.5),
        ..DpParams::default()
    };
    let preview = tokio::spawn(async move { c.cost(&p, params).await });
    // Let the preview reach its computation.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !preview.is_finished(),
        "the preview should still be computing"
    );
    let took = tokio::task::spawn_blocking(move || {
        let took = node.terminate(Duration::from_secs(20));
        (took, node.printed())
    })
    .await
    .unwrap();
    let (took, printed) = took;
    let took =
        took.unwrap_or_else(|| panic!("serve did not stop within 20 s of SIGTERM:\n{printed}"));
    // About a second is the aim; a loaded CI machine gets room.
    assert!(took < Duration::from_secs(5), "serve took {took:?} to stop");
    assert!(
        preview.await.unwrap().is_err(),
        "the FI hears the session end"
    );
    // The store is intact: its log verifies, and a new node serves it.
    duo_ok(tmp.path(), &["owner", "log", "--verify"]);
    let mut again = Serve::start(tmp.path(), &[], &[]);
    assert!(again.terminate(Duration::from_secs(20)).is_some());
}

/// One FI's session: it pairs, asks a catalogue attribute (answered by the policy) and an ad-hoc value (queued
/// for the owner) with a reason that carries a right-to-left override, and leaves.
async fn one_fi_story(dir: &Path, url: &str, fi_dir: &Path) {
    let fi: FiHome = duo_testkit::fi::pair(dir, url, "Acme Bank", fi_dir)
        .await
        .unwrap();
    let mut c = Client::connect(&fi, None).await.unwrap();
    let p = c.expr("rent_on_time_ratio_12m()").await.unwrap();
    let v = c
        .request(&p, Backend::Plaintext, "underwriting")
        .await
        .unwrap();
    assert!(v.answer.is_some());
    let q = c.expr("mean(clamp(rent.amount, 0, 300000))").await.unwrap();
    c.request(&q, Backend::Plaintext, "afford\u{202E}ytilib")
        .await
        .unwrap();
    c.close().await;
}

/// Waits up to 10 s for `serve` to have printed a line containing each of `wanted`.
fn wait_for_lines(serve: &Serve, wanted: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let printed = serve.printed();
        if wanted.iter().all(|w| printed.contains(w)) || start.elapsed() > Duration::from_secs(10) {
            return printed;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Before, `duo owner serve` printed nothing when FIs paired, connected, asked or were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_a_line_per_event_and_quiet_hides_them() {
    let (tmp, dir) = sample_home(duo_testkit::policy::TEST_POLICY);
    let mut node = Serve::start(tmp.path(), &[], &[]);
    one_fi_story(&dir, &node.url, &tmp.path().join("fi")).await;
    let wanted = [
        "Acme Bank paired",
        "Acme Bank connected",
        "Acme Bank asked #",
        "(plaintext): \"underwriting\"",
        " answered",
        " queued for your decision",
        "Acme Bank disconnected",
    ];
    let printed = wait_for_lines(&node, &wanted);
    for w in wanted {
        assert!(printed.contains(w), "no {w:?} in:\n{printed}");
    }
    // The FI's reason reaches the owner's terminal neutralised.
    assert!(!printed.contains('\u{202E}'), "{printed}");
    assert!(node.terminate(Duration::from_secs(20)).is_some());

    // --quiet: the same story prints none of it.
    let (tmp, dir) = sample_home(duo_testkit::policy::TEST_POLICY);
    let mut quiet = Serve::start(tmp.path(), &["--quiet"], &[]);
    one_fi_story(&dir, &quiet.url, &tmp.path().join("fi")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(quiet.terminate(Duration::from_secs(20)).is_some());
    let printed = quiet.printed();
    assert!(!printed.contains("Acme Bank"), "{printed}");
}
