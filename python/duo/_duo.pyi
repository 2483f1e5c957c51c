"""Type stubs of ``duo._duo``, the Rust core of the ``duo`` package (python/src/lib.rs).

Structured results come back as JSON text (the wire's serde forms); the ``duo`` package parses them.
Errors are raised as the classes of :mod:`duo.errors`, chosen by the wire error code.
"""

from typing import Optional, Tuple, final

def pair(url: str, code: str, home: Optional[str] = None, name: str = "owner") -> str:
    """Pair with an owner node using its invite code; the pairing record as JSON."""

def owners(home: Optional[str] = None, probe: Optional[float] = None) -> str:
    """The pairings of an FI home, as JSON; with ``probe`` (seconds) each says whether it is reachable now."""

def run_batch(
    ask: str,
    owners: Optional[str] = None,
    batch: Optional[str] = None,
    resume: bool = False,
    concurrency: int = 8,
    wait: float = 0.0,
    max_runs: Optional[int] = None,
    home: Optional[str] = None,
) -> str:
    """Run a new portfolio batch (``ask`` as JSON, ``owners`` ``all``/``a,b``/``@FILE``), or continue ``batch``
    (or, with ``resume``, the newest unfinished one asking the same); the batch as JSON."""

def batches(home: Optional[str] = None) -> str:
    """The batches of an FI home, oldest first, as JSON."""

def receipts(home: Optional[str] = None) -> str:
    """The FI home's receipt log, as JSON."""

def verify_receipts(home: Optional[str] = None) -> str:
    """The problems found checking the receipt log (a JSON list; empty when all verify)."""

def requests(home: Optional[str] = None) -> str:
    """The requests this FI made, as last seen, as JSON."""

def verify_receipt(receipt: str, key: str) -> None:
    """Check one receipt (JSON) against a hex signing key; raises ``duo.Refused`` when it does not verify."""

def parse(src: str) -> None:
    """Parse an expression locally; raises ``duo.ParseError`` pointing at the position."""

@final
class Session:
    """A session with one paired owner node; calls from several threads take turns on it."""

    def __init__(self, home: Optional[str] = None, owner: Optional[str] = None) -> None: ...
    @property
    def principal(self) -> str:
        """The name the owner gave this FI."""
    @property
    def owner(self) -> str:
        """The local name of the paired owner node."""
    def datasets(self) -> str:
        """The owner's published datasets, as JSON."""
    def catalogue(self) -> str:
        """The catalogue of named attributes, as JSON."""
    def expr(self, src: str) -> Tuple[int, str, str]:
        """A pointer: (id, static type as JSON, lineage in words)."""
    def cost(
        self,
        pointer: int,
        epsilon: Optional[float] = None,
        rho: Optional[float] = None,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
    ) -> str:
        """A DP release's cost and expected error, as JSON; nothing is charged."""
    def request(
        self,
        pointer: int,
        reason: str,
        backend: str = "plaintext",
        epsilon: Optional[float] = None,
        rho: Optional[float] = None,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
    ) -> str:
        """Ask for a release; the request's view as JSON (its receipt already verified)."""
    def status(self, request: int, wait: float = 0.0) -> str:
        """A request's state, waiting up to ``wait`` seconds for a decision, as JSON."""
    def score(
        self,
        model: str,
        reason: Optional[str] = None,
        reveal: str = "decision",
        wait: float = 0.0,
        request: Optional[int] = None,
        max_runs: Optional[int] = None,
    ) -> str:
        """Score the owner privately (2PC) with a model file's TOML text; the run's report as JSON, or
        ``{"state": "pending", "request": ID}`` when the owner has not decided yet."""
    def close(self) -> None:
        """Close the session."""
