"""A real owner node on loopback, with sample data, for trying the SDK and for tests.

:func:`owner_node` runs the ``duo`` program (``$DUO_BIN``, else ``duo`` on ``PATH``, else ``target/debug/duo``
or ``target/release/duo`` in the source tree this package was built from) in a temporary home: ``duo sample``,
``duo owner init``, the three sample datasets loaded, the policy you give, ``duo owner serve`` on a free loopback
port and an invite; then pairs a fresh FI home with it and yields an :class:`OwnerNode` whose ``client`` is a
paired :class:`duo.Client`. The owner's decisions go through the owner's own CLI (:meth:`OwnerNode.approve`,
:meth:`OwnerNode.deny`). Everything is removed on exit.

Example::

    from duo.testing import owner_node
    with owner_node() as node:
        fi = node.client
        req = fi.request("mean(clamp(rent.amount, 0, 300000))", reason="try it")
        node.approve(req.id)
        print(req.result(wait=10))
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import duo

__all__ = ["owner_node", "OwnerNode", "duo_bin"]

#: No rule: the owner decides every request (the node's default policy asks too).
ASK_ALL = 'default = "ask"\n'

#: A lender-friendly owner policy for trying the SDK: catalogue attributes in plaintext, private decisions and
#: DP releases costing at most 0.5 are approved; row-level releases are denied; the owner decides the rest.
SAMPLE_POLICY = """
default = "ask"

[[rule]]
name = "no-rows"
row_level = true
action = "deny"
reason = "row-level data never leaves this node"

[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"

[[rule]]
name = "private-decision"
backend = ["2pc"]
reveal = ["decision"]
action = "approve"

[[rule]]
name = "small-dp"
backend = ["dp"]
max_cost = "0.5"
action = "approve"
"""


def duo_bin() -> str:
    """The ``duo`` program to run: ``$DUO_BIN``, ``duo`` on ``PATH``, or a build in this source tree."""
    env = os.environ.get("DUO_BIN")
    if env:
        return env
    found = shutil.which("duo")
    if found:
        return found
    here = Path(__file__).resolve()
    for parent in here.parents:
        for profile in ("debug", "release"):
            cand = parent / "target" / profile / "duo"
            if cand.is_file():
                return str(cand)
    raise FileNotFoundError(
        "the duo program was not found: set DUO_BIN, put duo on PATH, or build it with `cargo build`"
    )


class OwnerNode:
    """A running owner node: ``url``, the owner's ``home``, the FI's ``fi_home``, and ``client``, a paired
    :class:`duo.Client`. Owner actions run the owner's CLI with ``--json`` (:meth:`duo`)."""

    def __init__(
        self, bin: str, home: Path, fi_home: Path, principal: str, serve_args: Sequence[str] = ()
    ) -> None:
        self.bin = bin
        self.serve_args = list(serve_args)
        self.home = home
        self.fi_home = fi_home
        self.principal = principal
        self.url = ""
        self.client: duo.Client  # set once paired
        self._serve: Optional[subprocess.Popen] = None
        self._log: List[str] = []

    def duo(self, *args: str, check: bool = True) -> Any:
        """Run ``duo --home HOME ARGS... --json`` and return its parsed JSON output."""
        out = subprocess.run(
            [self.bin, "--home", str(self.home), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"duo {' '.join(args)} failed ({out.returncode}): {out.stdout}{out.stderr}")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def pending(self) -> List[Dict[str, Any]]:
        """The requests waiting for the owner (``duo owner requests --json``)."""
        out = self.duo("owner", "requests")
        return out if isinstance(out, list) else out.get("requests", [])

    def _owner_request(self, fi_request: int) -> Dict[str, Any]:
        """The pending request that this node's FI numbers ``fi_request``."""
        for r in self.pending():
            if r.get("principal") == self.principal and r.get("fi_request", r.get("request")) == fi_request:
                return r
        raise duo.NotFound("not_found", f"no pending request {fi_request} of {self.principal!r}")

    def approve(self, fi_request: int) -> Any:
        """Approve the FI's pending request ``fi_request`` (the FI's number for it), as the owner would, with the
        ``--seen`` token of what ``duo owner requests`` shows."""
        r = self._owner_request(fi_request)
        return self.duo("owner", "approve", str(r["id"]), "--seen", r["token"])

    def deny(self, fi_request: int, reason: str) -> Any:
        """Deny the FI's pending request ``fi_request`` with ``reason`` (the FI sees it)."""
        r = self._owner_request(fi_request)
        return self.duo("owner", "deny", str(r["id"]), "--reason", reason)

    def set_budget(self, epsilon: float, fi: bool = True) -> Any:
        """Cap this FI's (or, with ``fi=False``, the node's) DP spending at ``epsilon``."""
        who = ["--fi", self.principal] if fi else []
        return self.duo("owner", "budget", "set", *who, "--epsilon", str(epsilon))

    def log(self) -> List[str]:
        """The lines ``duo owner serve`` printed on standard error so far."""
        return list(self._log)

    def _start(self) -> None:
        sync = [] if "--sync" in self.serve_args else ["--sync", "normal"]
        self._serve = subprocess.Popen(
            [self.bin, "--home", str(self.home), "owner", "serve", "--listen", "127.0.0.1:0", *sync, *self.serve_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._serve.stdout is not None and self._serve.stderr is not None
        self.url = self._serve.stdout.readline().strip()
        if not self.url.startswith("ws://"):
            self._serve.kill()
            raise RuntimeError(f"duo owner serve did not start: {self.url}{self._serve.stderr.read()}")
        err = self._serve.stderr
        threading.Thread(target=lambda: self._log.extend(line.rstrip() for line in err), daemon=True).start()

    def _stop(self) -> None:
        if self._serve is not None:
            self._serve.terminate()
            try:
                self._serve.wait(10)
            except subprocess.TimeoutExpired:
                self._serve.kill()
                self._serve.wait()


@contextlib.contextmanager
def owner_node(
    policy: Optional[str] = None,
    principal: str = "Test FI",
    profile: str = "reliable",
    serve_args: Sequence[str] = (),
    seed: Optional[int] = None,
) -> Iterator[OwnerNode]:
    """Start an owner node on loopback with sample data (``duo sample --profile PROFILE [--seed SEED]``) and
    ``policy`` (the text of a ``policy.toml``; default: the node's own default, which asks the owner about every
    request), pair a fresh FI home with it under ``principal``, and yield the :class:`OwnerNode`. ``serve_args``
    go to ``duo owner serve`` (for example ``["--requests-per-hour", "100000", "--sync", "full"]``; the default
    sync is ``normal``). Stops the node and removes both homes on exit."""
    bin = duo_bin()
    tmp = Path(tempfile.mkdtemp(prefix="duo-sdk-"))
    node = OwnerNode(bin, tmp / "owner", tmp / "fi", principal, serve_args)
    try:
        run = lambda *a: subprocess.run([bin, "--home", str(node.home), *a], check=True, capture_output=True)
        data = tmp / "data"
        run("sample", "--out", str(data), "--profile", profile, *([] if seed is None else ["--seed", str(seed)]))
        run("owner", "init")
        if policy is not None:
            (node.home / "owner" / "policy.toml").write_text(policy)
        for name in ("rent", "utilities", "transactions"):
            run("owner", "load", str(data / f"{name}.csv"), "--name", name)
        node._start()
        code = node.duo("owner", "invite", "--fi", principal)["code"]
        duo.pair(node.url, code, home=node.fi_home)
        node.client = duo.Client(home=node.fi_home)
        yield node
    finally:
        client = getattr(node, "client", None)
        if client is not None:
            client.close()
        node._stop()
        shutil.rmtree(tmp, ignore_errors=True)
