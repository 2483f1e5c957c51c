"""Limits and control: an owner's per-FI limit raised as duo.Limit, and Ctrl-C during one long Rust call."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import duo

#: The owner node's default for `duo owner serve --sessions-per-fi`.
SESSIONS_PER_FI = 8


def test_the_owners_session_limit_per_fi_raises_limit(node):
    # The suite's client holds one session; the owner allows this FI eight at once.
    opened = []
    try:
        with pytest.raises(duo.Limit) as e:
            for _ in range(SESSIONS_PER_FI + 2):
                opened.append(duo.Client(home=node.fi_home))
        assert len(opened) == SESSIONS_PER_FI - 1
        assert e.value.code == "limit" and "sessions open" in e.value.message, e.value
    finally:
        for c in opened:
            c.close()
    # Closing sessions makes room again (the node notices a closed session at once, or nearly).
    deadline = time.monotonic() + 5
    while True:
        try:
            duo.Client(home=node.fi_home).close()
            break
        except duo.Limit:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


#: Run in a child process: one long call into Rust, interrupted by the parent's SIGINT.
CHILD = textwrap.dedent(
    """
    import sys, time, duo
    mode, url, code, home = sys.argv[1:]
    fi = None
    try:
        if mode == "pair":
            print("calling", flush=True)
            duo.pair(url, code, home=home, owner="silent")
        else:
            fi = duo.Client(home=home)
            req = fi.request("count(transactions)", reason="interrupt me")
            assert req.state == "pending", req
            print("calling", flush=True)
            if mode == "result":
                req.result(wait=60)
            else:
                fi._s.status(req.id, 60.0)  # one call into Rust that waits a minute
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        if mode == "result":
            # The session is still usable: the interrupted call ends in the background first.
            t = time.monotonic()
            n = len(fi.datasets())
            print(f"datasets {n} after {time.monotonic() - t:.2f}s", flush=True)
        sys.exit(0)
    print("not interrupted", flush=True)
    sys.exit(3)
    """
)


def _interrupt(mode, url, code, home):
    """Start the child, send SIGINT 0.5 s into its call, and return (seconds from SIGINT to exit, stdout, stderr)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, url, code, str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "calling", line + child.stderr.read()
        time.sleep(0.5)
        assert child.poll() is None, "the call ended before the interrupt"
        child.send_signal(signal.SIGINT)
        t = time.monotonic()
        out, err = child.communicate(timeout=20)
        return time.monotonic() - t, line + out, err, child.returncode
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ctrl_c_interrupts_a_connect_to_a_silent_address(node, tmp_path):
    # A listener that never accepts: the TCP connection is made, and nothing ever answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        code = node.duo("owner", "invite", "--fi", "Silent FI")["code"]
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}"
        took, out, err, rc = _interrupt("pair", url, code, tmp_path / "fi")
    finally:
        silent.close()
    assert (rc, out.split()) == (0, ["calling", "interrupted"]), out + err
    assert took < 1.0, took
    assert "panic" not in err, err


@pytest.mark.parametrize("mode", ["status", "result"])
def test_ctrl_c_interrupts_a_long_wait_on_the_owner(node, mode):
    try:
        took, out, err, rc = _interrupt(mode, node.url, "", node.fi_home)
    finally:
        # The owner denies the child's request, so the rest of the suite sees no request waiting.
        for r in node.pending():
            if r.get("principal") == node.principal and r.get("reason") == "interrupt me":
                node.duo("owner", "deny", str(r["id"]), "--reason", "the test is over")
    assert rc == 0 and out.startswith("calling\ninterrupted\n"), out + err
    assert took < (1.0 if mode == "status" else 3.0), took
    assert "panic" not in err, err
    if mode == "result":
        # Request.result waits in calls of a second at most, so the session is free again within about that.
        n, after = out.split()[-3], float(out.split()[-1].rstrip("s"))
        assert int(n) == 3 and after < 2.0, out
