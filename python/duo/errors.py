"""Duo's exceptions: one class per wire error code, all under :class:`DuoError`.

Every error the SDK raises carries the code the owner's node (or the local client) gave it, in ``.code``,
and its message, in ``.message``. The codes are those of ``docs/protocol.md`` plus a few local ones:
``parse`` (an expression that does not parse, raised before anything is sent), ``usage`` (arguments that do
not fit together), ``transport`` (the owner's node cannot be reached, or the connection broke), ``denied``
(a request the owner or the owner's policy denied), ``budget`` (a denial because a privacy budget would be
exceeded), ``closed`` (a call on a closed client).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "DuoError",
    "ParseError",
    "CheckError",
    "TypeError_",
    "Refused",
    "NotFound",
    "Limit",
    "Pending",
    "Stale",
    "PolicyUnavailable",
    "EvalError",
    "Integrity",
    "TransportError",
    "UsageError",
    "Denied",
    "BudgetExceeded",
    "from_code",
]


class DuoError(Exception):
    """Base class of every Duo error: ``code`` is the wire error code, ``message`` what happened and what to do."""

    #: The wire error code this class stands for (the base class stands for any other code).
    CODE: Optional[str] = None

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ParseError(DuoError, ValueError):
    """The expression does not parse; the message points at the position. Raised before anything is sent."""

    CODE = "parse"


class CheckError(DuoError, TypeError):
    """The expression does not type-check against the owner's published metadata (code ``type_error``)."""

    CODE = "type_error"


#: Another name of :class:`CheckError`, for readers who look for the wire code's name.
TypeError_ = CheckError


class Refused(DuoError):
    """The action was refused: a bad invite code, a receipt that does not verify, a request the node will not take."""

    CODE = "refused"


class NotFound(DuoError, LookupError):
    """Something named does not exist: a pairing, a dataset, a request, an attribute."""

    CODE = "not_found"


class Limit(DuoError):
    """A per-FI limit of the owner's node was reached (requests per hour, sessions); try again later."""

    CODE = "limit"


class Pending(DuoError):
    """The request still waits for the owner's decision; ask again later with ``Request.result(wait=...)``."""

    CODE = "pending"


class Stale(DuoError):
    """The state the owner saw has changed since."""

    CODE = "stale"


class PolicyUnavailable(DuoError):
    """The owner's policy file cannot be used right now; the owner has to fix it. Nothing was decided."""

    CODE = "policy_unavailable"


class EvalError(DuoError):
    """The owner's node could not evaluate the expression."""

    CODE = "eval_error"


class Integrity(DuoError):
    """The owner's node found stored state that does not match its audit log, and will not use it."""

    CODE = "integrity"


class TransportError(DuoError, ConnectionError):
    """The owner's node cannot be reached, or the connection broke."""

    CODE = "transport"


class UsageError(DuoError, ValueError):
    """Arguments that do not fit together (for example a dp request without epsilon, rho or alpha)."""

    CODE = "usage"


class Denied(DuoError):
    """The owner (or the owner's policy) denied the request; ``message`` is their reason, ``request`` its id."""

    CODE = "denied"

    def __init__(self, code: str, message: str, request: Optional[int] = None) -> None:
        super().__init__(code, message)
        self.request = request


class BudgetExceeded(Denied):
    """A DP request denied because it would exceed a privacy budget, with that budget's numbers.

    ``spent``, ``requested``, ``remaining`` and ``cap`` are ``decimal.Decimal`` in the node's ``measure``
    (``"epsilon"`` or ``"rho"``); ``scope`` says whose budget (``"global"``, ``"principal"`` for this FI's own,
    or ``"dataset"``, with its ``name``). They come from the owner's node as fields of the denial (the wire's
    ``budget``), never from the message's words; a node too old to send them is answered with
    :class:`Denied` instead, its message stating the numbers.
    """

    CODE = "budget"

    def __init__(
        self,
        code: str,
        message: str,
        request: Optional[int] = None,
        budget: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(code, message, request)
        b = dict(budget or {})
        self.scope: Optional[str] = b.get("scope")
        self.name: Optional[str] = b.get("name")
        self.measure: Optional[str] = b.get("measure")
        self.cap = _decimal(b.get("cap"))
        self.spent = _decimal(b.get("spent"))
        self.requested = _decimal(b.get("requested"))
        self.remaining = _decimal(b.get("remaining"))


def _decimal(text: Optional[str]) -> Optional[Decimal]:
    """A wire decimal string as ``Decimal``; ``None`` stays ``None``."""
    return None if text is None else Decimal(text)


_BY_CODE: Dict[str, Type[DuoError]] = {
    cls.CODE: cls
    for cls in (
        ParseError,
        CheckError,
        Refused,
        NotFound,
        Limit,
        Pending,
        Stale,
        PolicyUnavailable,
        EvalError,
        Integrity,
        TransportError,
        UsageError,
        Denied,
        BudgetExceeded,
    )
    if cls.CODE is not None
}


def from_code(code: str, message: str) -> DuoError:
    """The exception for a wire error code: its own class when it has one, else :class:`DuoError`."""
    return _BY_CODE.get(code, DuoError)(code, message)
