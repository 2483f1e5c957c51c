"""Duo for FI analysts: ask a data owner's Duo node questions from Python.

A financial institution (FI) pairs once with an owner's node (:func:`pair`), then opens a :class:`Client`,
looks at what the owner published (:meth:`Client.datasets`, :meth:`Client.catalogue`), makes lazy
:class:`Pointer` s to the owner's data (:meth:`Client.expr`), previews what a differentially private (DP)
release would cost (:meth:`Client.cost`) and asks for releases (:meth:`Client.request`). The owner, or the
owner's policy, approves or denies each request; an approved answer comes with a receipt signed by the owner's
node, checked against the key pinned at pairing before the answer is shown (:class:`Receipt`).

Everything runs in Duo's Rust FI client (the extension module ``duo._duo``): the same pairing, Noise transport,
wire messages and receipt checks as the ``duo fi`` commands, sharing their FI home (``HOME/fi``; ``home=None``
means ``$DUO_HOME``, else ``$XDG_DATA_HOME/duo``, else ``~/.local/share/duo``).

Money: the owner's node counts money in cents; the SDK gives money answers (by the answer's static type) as
``decimal.Decimal`` **dollars**, exact to the cent for sums and counts, and to 1e-6 cent for means.

Example::

    import duo
    duo.pair("ws://127.0.0.1:7878", "duo1-...")          # once, with the owner's invite code
    fi = duo.Client()
    fi.catalogue().to_pandas()                            # needs pandas
    p = fi.expr("mean(clamp(rent.amount, 0, 300000))")
    print(p)                                              # the lineage in words
    fi.cost(p, epsilon=0.5)                               # nothing is charged
    req = fi.request(p, reason="underwriting", backend="dp", epsilon=0.5)
    print(req.result(wait=60), req.receipt.verify())
"""

from __future__ import annotations

import datetime
import os
import json
import math
import re
import time
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Optional, Union

from . import _duo, errors
from .errors import (
    BudgetExceeded,
    CheckError,
    Denied,
    DuoError,
    EvalError,
    Integrity,
    Limit,
    NotFound,
    ParseError,
    Pending,
    PolicyUnavailable,
    Refused,
    Stale,
    TransportError,
    TypeError_,
    UsageError,
)

__all__ = [
    "pair",
    "owners",
    "receipts",
    "Client",
    "Portfolio",
    "Batch",
    "Pointer",
    "Request",
    "Receipt",
    "Cost",
    "Score",
    "Condition",
    "Records",
    "REQUEST_COLUMNS",
    "RECEIPT_COLUMNS",
    # The exceptions (duo.errors), each named once there.
    *(name for name in errors.__all__ if name != "from_code"),
]

PathLike = Union[str, "os.PathLike[str]"]


class Records(list):
    """A list of dicts (one per row) that can become a pandas DataFrame with :meth:`to_pandas`.

    pandas is optional: install it (``pip install pandas``) for :meth:`to_pandas`; everything else works without.
    """

    def to_pandas(self) -> "pandas.DataFrame":  # type: ignore[name-defined]  # noqa: F821
        """The rows as a ``pandas.DataFrame``, one column per key.

        ``decimal.Decimal`` values (money in dollars, privacy costs in the node's measure) become floats, and a
        column of numbers (or missing values) becomes ``float64``, so it sums, plots and describes like any
        number; the records themselves keep the exact ``Decimal``. A column mixing kinds (the ``answer`` of a
        count, a money mean and a monthly vector) keeps Python objects, with the money still in dollars.
        """
        try:
            import pandas
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install pandas") from e
        df = pandas.DataFrame(list(self))
        for col in df.columns:
            cells = [float(v) if isinstance(v, Decimal) else v for v in df[col]]
            if not any(isinstance(v, Decimal) for v in df[col]):
                continue
            numbers = [v for v in cells if v is not None]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
                df[col] = pandas.Series(cells, index=df.index, dtype="float64")
            else:
                df[col] = pandas.Series(cells, index=df.index, dtype=object)
        return df


def _home(home: Optional[PathLike]) -> Optional[str]:
    return None if home is None else str(home)


def pair(url: str, code: str, home: Optional[PathLike] = None, owner: str = "owner") -> Dict[str, Any]:
    """Pair this FI with an owner node, using the one-time invite code the owner gave you.

    ``url`` is the node's address (``ws://HOST:PORT``), ``code`` the invite (``duo1-...``), ``owner`` the local
    name to keep the pairing under (``Client(owner=...)`` takes it). Pins the node's keys in the FI home and
    returns the pairing record (name, url, fingerprint, principal, paired_at, signing_key). A second owner under
    a name in use is refused (:class:`Refused`) before the code is spent.
    """
    return json.loads(_duo.pair(url, code, _home(home), owner))


def owners(home: Optional[PathLike] = None, probe: bool = False, timeout: float = 3.0) -> Records:
    """The owner nodes this FI home is paired with (name, url, fingerprint, principal, paired_at, signing_key,
    last_seen: when a session last opened). With ``probe``, every node is contacted at once (each within
    ``timeout`` seconds) and each row says ``reachable`` (True/False, with ``probe_error``); without, ``reachable``
    is None."""
    return Records(json.loads(_duo.owners(_home(home), float(timeout) if probe else None)))


def receipts(home: Optional[PathLike] = None, verify: bool = True) -> Records:
    """The FI home's receipt log, oldest first, one flat row per receipt (see :data:`RECEIPT_COLUMNS`).

    ``answer`` is the signed answer (money in ``Decimal`` dollars when the request's type is known: it is for
    requests kept since the FI home records types), ``cost`` the DP cost charged (``Decimal``, in the node's
    measure; 0 for other releases and for repeats answered from the store), and ``receipt`` the
    :class:`Receipt` itself. With ``verify`` (the default) the log's hash chain and every signature are checked
    against the keys pinned at pairing first, and :class:`Integrity` is raised listing the problems if any entry
    fails.
    """
    if verify:
        problems = json.loads(_duo.verify_receipts(_home(home)))
        if problems:
            raise Integrity("integrity", "the receipt log does not verify: " + "; ".join(problems))
    types = {(r["owner"], r["id"]): r.get("ty") or {} for r in json.loads(_duo.requests(_home(home)))}
    out = Records()
    for e in json.loads(_duo.receipts(_home(home))):
        r = e["receipt"]
        try:
            answer = _answer(json.loads(r["answer"]), types.get((e["owner"], r["request"]), {}))
        except (TypeError, ValueError):
            answer = r.get("answer")
        out.append(
            {
                "seq": e["seq"],
                "owner": e["owner"],
                "request": r["request"],
                "principal": r.get("principal"),
                "backend": r["backend"],
                "answer": answer,
                "cost": Decimal(r["cost_nanos"]) / NANOS,
                "cost_nanos": r["cost_nanos"],
                "issued_at": _timestamp(r.get("issued_at")),
                "log_seq": r.get("log_seq"),
                "log_hash": r.get("log_hash"),
                "node_key": r.get("node_key"),
                "receipt": Receipt(r),
            }
        )
    return out


#: Nano-units per unit of a privacy measure (receipts state costs in nano-units).
NANOS = Decimal(1_000_000_000)

#: The columns of :func:`receipts` and :meth:`Client.receipts`, in order.
RECEIPT_COLUMNS = (
    "seq", "owner", "request", "principal", "backend", "answer", "cost", "cost_nanos", "issued_at", "log_seq",
    "log_hash", "node_key", "receipt",
)

#: The columns of :meth:`Client.requests`, in order: the request as last seen, its answer (money in ``Decimal``
#: dollars), DP cost and expected error, and, for a denial by a budget, that budget's numbers.
REQUEST_COLUMNS = (
    "owner", "id", "state", "backend", "description", "reason", "asked_at", "seen_at", "decided_by", "why",
    "dtype", "answer", "cost", "accuracy95", "budget_scope", "budget_measure", "budget_cap", "budget_spent",
    "budget_requested", "budget_remaining",
)


def _timestamp(text: Optional[str]) -> Any:
    """An RFC 3339 timestamp as a timezone-aware ``datetime``; the text as it is if it does not parse."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text


def _request_row(r: Dict[str, Any]) -> Dict[str, Any]:
    """A request record of the FI home as one flat row of :data:`REQUEST_COLUMNS`."""
    ty = r.get("ty") or {}
    dtype = _dtype(ty)
    acc = r.get("accuracy95")
    b = r.get("budget") or {}
    dec = lambda x: None if x is None else Decimal(x)  # noqa: E731
    return {
        "owner": r["owner"],
        "id": r["id"],
        "state": r["state"],
        "backend": r["backend"],
        "description": r.get("description", ""),
        "reason": r.get("reason", ""),
        "asked_at": _timestamp(r.get("asked_at")),
        "seen_at": _timestamp(r.get("seen_at")),
        "decided_by": r.get("decided_by"),
        "why": r.get("why"),
        "dtype": dtype,
        "answer": _answer(r.get("answer"), ty),
        "cost": dec(r.get("cost")),
        "accuracy95": None if acc is None else (_money(float(acc)) if dtype == "money" else acc),
        "budget_scope": b.get("scope"),
        "budget_measure": b.get("measure"),
        "budget_cap": dec(b.get("cap")),
        "budget_spent": dec(b.get("spent")),
        "budget_requested": dec(b.get("requested")),
        "budget_remaining": dec(b.get("remaining")),
    }


def _dtype(ty: Dict[str, Any]) -> Optional[str]:
    """The element type (``money``, ``int``, ``float``, ...) of a static type, if it has one."""
    for v in ty.values():
        if isinstance(v, dict) and "dtype" in v:
            return v["dtype"]
    return ty.get("dtype")


def _money(v: Any) -> Any:
    """Cents (int or float) as Decimal dollars; other values as they are."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    if isinstance(v, int):
        return Decimal(v) / 100
    return Decimal(repr(v)) / 100


def _value(v: Any, money: bool) -> Any:
    """A wire Value (``{"type": "float", "value": 1.5}``, ``{"type": "null"}``, ...) as a Python value."""
    if isinstance(v, dict) and "type" in v:
        kind, x = v["type"], v.get("value")
        if kind in ("int", "float"):
            return _money(x) if money else x
        if kind == "date" and isinstance(x, str):
            import datetime

            return datetime.date.fromisoformat(x)
        return x
    return _money(v) if money else v


def _answer(answer: Optional[Dict[str, Any]], ty: Dict[str, Any]) -> Any:
    """An Answer as Python: a scalar's value, a vector's {label: value}, a histogram's (edges, counts), rows; a
    batch's, a list of its questions' answers in order."""
    if answer is None:
        return None
    if answer.get("kind") == "batch":
        types = ty.get("items") or []
        return [_answer(a, types[i] if i < len(types) else {}) for i, a in enumerate(answer["items"])]
    money = _dtype(ty) == "money"
    if answer.get("kind") == "scalar" or "value" in answer:
        return _value(answer["value"], money)
    if "labels" in answer:
        return {l: _value(v, money) for l, v in zip(answer["labels"], answer["values"])}
    if "edges" in answer:
        return {"edges": answer["edges"], "counts": answer["counts"]}
    if "rows" in answer:
        return Records(dict(zip(answer["columns"], [_value(x, False) for x in row])) for row in answer["rows"])
    return answer


def _name(name: str) -> str:
    """A column name in the expression syntax: as is when it is a plain name, else in backticks."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name not in _RESERVED:
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_RESERVED = {"true", "false", "null", "and", "or", "not"}


def _lit(v: Any) -> str:
    """A Python value as a literal of the expression syntax (a pointer as ``$ID``)."""
    if isinstance(v, Pointer):
        return f"${v.id}"
    if isinstance(v, Condition):
        return f"${v.pointer().id}"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (float, Decimal)):
        if not math.isfinite(float(v)):
            raise UsageError("usage", f"{v} is not a number the owner's node takes")
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in "\\\"":
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append("\\u{%x}" % ord(ch))
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    raise UsageError("usage", f"cannot use a {type(v).__name__} in an expression")


class Condition:
    """A condition on a table's columns, made by comparing column pointers (``t.category == "income"``) and
    combined with ``&`` (and), ``|`` (or) and ``~`` (not). :meth:`Pointer.filter` takes it; used anywhere else
    (``(t.paid_date <= t.due_date).mean()``) it is the element-wise comparison of the two columns."""

    __slots__ = ("src", "_expr", "_client", "_ptr")

    def __init__(self, client: "Client", src: str, expr: Optional[str]) -> None:
        self._client = client
        self.src = src
        self._expr = expr
        self._ptr: Optional[Pointer] = None

    def __and__(self, other: "Condition") -> "Condition":
        return Condition(self._client, f"({self.src}) and ({_cond(other)})", None)

    def __or__(self, other: "Condition") -> "Condition":
        return Condition(self._client, f"({self.src}) or ({_cond(other)})", None)

    def __invert__(self) -> "Condition":
        return Condition(self._client, f"not ({self.src})", None)

    def pointer(self) -> "Pointer":
        """The element-wise comparison as a pointer (a column of booleans)."""
        if self._expr is None:
            raise UsageError("usage", "a combined condition goes in filter(...); compare two columns to get a column")
        if self._ptr is None:
            self._ptr = self._client.expr(self._expr)
        return self._ptr

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.pointer(), name)

    def __repr__(self) -> str:
        return self.src


def _cond(c: Union[Condition, str]) -> str:
    if isinstance(c, Condition):
        return c.src
    if isinstance(c, str):
        return c
    raise UsageError("usage", "filter(...) takes a condition such as t.category == \"income\" (or its text)")


class Pointer:
    """A lazy pointer to something on the owner's node: an id, its static type and its lineage in words.

    Nothing is computed and nothing data-dependent comes back when a pointer is made; the owner's node has only
    type-checked it against the published metadata (a type error raises :class:`CheckError` at once, before any
    request). ``repr(p)`` is the lineage in the owner's words; ``p.ty`` the static type (a dict, as the wire
    spec's section 8.3 gives it); ``p.expr`` the expression it was made from.

    Pointers compose like the expression syntax: ``t.amount`` (or ``t["amount"]``) is a column,
    ``t.filter(t.category == "income")`` the rows where a condition holds (``&``, ``|``, ``~`` combine
    conditions), ``x.clamp(0, 500_000)``, ``x + y``, ``x * 2``, and the aggregates ``x.sum()``, ``x.mean()``,
    ``x.count()``, ``x.variance()``, ``x.stdev()``, ``x.min()``, ``x.max()``, ``x.median()``, ``x.quantile(0.5)``,
    ``x.histogram([0, 100000])``, ``x.by_month("sum")``, ``x.by_category("category", "sum")``;
    ``t.last_months(12)``. A column whose name is one of
    these methods is reached with ``t["name"]``. Money is in cents in expressions, as in the data.
    """

    __slots__ = ("id", "ty", "description", "expr", "_client", "_column")

    def __init__(
        self,
        client: "Client",
        id: int,
        ty: Dict[str, Any],
        description: str,
        expr: str,
        column: Optional[str] = None,
    ) -> None:
        self._client = client
        self.id = id
        self.ty = ty
        self.description = description
        self.expr = expr
        self._column = column

    @property
    def dtype(self) -> Optional[str]:
        """The element type (``money``, ``int``, ``float``, ``bool``, ...), if the type has one."""
        return _dtype(self.ty)

    def _derive(self, src: str, column: Optional[str] = None) -> "Pointer":
        p = self._client.expr(src)
        p._column = column
        return p

    # Tables.
    def __getattr__(self, name: str) -> "Pointer":
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> "Pointer":
        """The column ``name`` of this table."""
        return self._derive(f"${self.id}.{_name(name)}", column=name)

    def filter(self, condition: Union[Condition, str]) -> "Pointer":
        """The rows of this table where ``condition`` holds (a :class:`Condition`, or its text)."""
        return self._derive(f"filter(${self.id}, {_cond(condition)})")

    def last_months(self, months: int) -> "Pointer":
        """The rows of this table in the last ``months`` full months (by its time column)."""
        return self._derive(f"last_months(${self.id}, {int(months)})")

    # Element-wise.
    def clamp(self, lo: float, hi: float) -> "Pointer":
        """The values clamped into ``[lo, hi]`` (cents for money): what bounds a DP release's sensitivity."""
        return self._derive(f"clamp(${self.id}, {_lit(lo)}, {_lit(hi)})")

    def _arith(self, op: str, other: Any, reverse: bool = False) -> "Pointer":
        a, b = (_lit(other), f"${self.id}") if reverse else (f"${self.id}", _lit(other))
        return self._derive(f"({a} {op} {b})")

    def __add__(self, o: Any) -> "Pointer":
        return self._arith("+", o)

    def __radd__(self, o: Any) -> "Pointer":
        return self._arith("+", o, True)

    def __sub__(self, o: Any) -> "Pointer":
        return self._arith("-", o)

    def __rsub__(self, o: Any) -> "Pointer":
        return self._arith("-", o, True)

    def __mul__(self, o: Any) -> "Pointer":
        return self._arith("*", o)

    def __rmul__(self, o: Any) -> "Pointer":
        return self._arith("*", o, True)

    def __truediv__(self, o: Any) -> "Pointer":
        return self._arith("/", o)

    def __rtruediv__(self, o: Any) -> "Pointer":
        return self._arith("/", o, True)

    # Conditions (on columns).
    def _cmp(self, op: str, other: Any) -> Condition:
        if self._column is None:
            raise UsageError("usage", "comparisons are between a table's columns (t.amount > 0), for filter(...)")
        if isinstance(other, Pointer):
            if other._column is None:
                raise UsageError("usage", "compare a column with another column or a single value")
            right, right_expr = _name(other._column), f"${other.id}"
        else:
            right = right_expr = _lit(other)
        expr = f"${self.id} {op} {right_expr}" if isinstance(other, Pointer) else None
        return Condition(self._client, f"{_name(self._column)} {op} {right}", expr)

    def __eq__(self, o: Any) -> Condition:  # type: ignore[override]
        return self._cmp("==", o)

    def __ne__(self, o: Any) -> Condition:  # type: ignore[override]
        return self._cmp("!=", o)

    def __lt__(self, o: Any) -> Condition:
        return self._cmp("<", o)

    def __le__(self, o: Any) -> Condition:
        return self._cmp("<=", o)

    def __gt__(self, o: Any) -> Condition:
        return self._cmp(">", o)

    def __ge__(self, o: Any) -> Condition:
        return self._cmp(">=", o)

    __hash__ = object.__hash__

    # Aggregates.
    def count(self) -> "Pointer":
        """The number of rows (or values)."""
        return self._derive(f"count(${self.id})")

    def sum(self) -> "Pointer":
        """The sum (clamp first: a DP sum needs bounds)."""
        return self._derive(f"sum(${self.id})")

    def mean(self) -> "Pointer":
        """The mean."""
        return self._derive(f"mean(${self.id})")

    def variance(self) -> "Pointer":
        """The variance."""
        return self._derive(f"variance(${self.id})")

    def stdev(self) -> "Pointer":
        """The (population) standard deviation: the square root of the variance."""
        return self._derive(f"stdev(${self.id})")

    def min(self) -> "Pointer":
        """The smallest value (with DP: the quantile mechanism at 0, which answers at or below it)."""
        return self._derive(f"min(${self.id})")

    def max(self) -> "Pointer":
        """The largest value (with DP: the quantile mechanism at 1, which answers at or above it)."""
        return self._derive(f"max(${self.id})")

    def median(self) -> "Pointer":
        """The median."""
        return self._derive(f"median(${self.id})")

    def quantile(self, q: float) -> "Pointer":
        """The ``q`` quantile (0 to 1)."""
        return self._derive(f"quantile(${self.id}, {_lit(float(q))})")

    def histogram(self, edges: Iterable[float]) -> "Pointer":
        """Counts in the public bins between ``edges``."""
        return self._derive(f"histogram(${self.id}, {_lit(list(edges))})")

    def by_month(self, aggregate: str = "sum") -> "Pointer":
        """One ``aggregate`` (``sum``, ``count``, ``mean``, ...) per month: a vector labelled by month. With DP
        (``count``, ``sum`` or ``mean``) it is one release of the whole vector, costing one ungrouped aggregate."""
        if not re.fullmatch(r"[a-z_]+", aggregate):
            raise UsageError("usage", f"unknown aggregate `{aggregate}`")
        return self._derive(f"by_month({aggregate}, ${self.id})")

    def by_category(self, column: str, aggregate: str = "sum") -> "Pointer":
        """One ``aggregate`` (``sum``, ``count``, ``mean``, ...) per category of ``column``, a category column of
        this column's table: a vector labelled by the categories its metadata declares (all of them, also those
        with no rows). With DP (``count``, ``sum`` or ``mean``) it is one release of the whole vector, costing one
        ungrouped aggregate."""
        if not re.fullmatch(r"[a-z_]+", aggregate):
            raise UsageError("usage", f"unknown aggregate `{aggregate}`")
        return self._derive(f"by_category({aggregate}, ${self.id}, {_name(column)})")

    def dot(self, weights: Iterable[float]) -> "Pointer":
        """The weighted sum of a vector's entries."""
        return self._derive(f"dot(${self.id}, {_lit(list(weights))})")

    # Releases.
    def cost(self, **dp: Any) -> "Cost":
        """:meth:`Client.cost` of this pointer."""
        return self._client.cost(self, **dp)

    def request(self, reason: str, **kw: Any) -> "Request":
        """:meth:`Client.request` of this pointer."""
        return self._client.request(self, reason, **kw)

    def __repr__(self) -> str:
        return self.description

    def __str__(self) -> str:
        return self.description


class _Attributes:
    """``fi.attr.NAME()`` (or ``fi.attr.NAME(window_end)``, a month's last day) is a pointer to the catalogue
    attribute NAME: ``fi.attr.rent_on_time_ratio_12m()``. ``dir(fi.attr)`` lists the catalogue."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def attribute(window_end: Optional[Union[str, datetime.date]] = None) -> Pointer:
            arg = "" if window_end is None else _lit(
                datetime.date.fromisoformat(window_end) if isinstance(window_end, str) else window_end
            )
            return self._client.expr(f"{_name(name)}({arg})")

        attribute.__name__ = name
        return attribute

    def __dir__(self) -> List[str]:
        return [c["name"] for c in self._client.catalogue()]


class Receipt:
    """The owner node's signed receipt for a released answer.

    Fields as in the wire spec (``request``, ``principal``, ``backend``, ``lineage``, ``answer``, ``cost_nanos``,
    ``log_seq``, ``log_hash``, ``issued_at``, ``node_key``, ``signature``) are attributes; ``raw`` is the dict.
    """

    def __init__(self, raw: Dict[str, Any], key: Optional[str] = None) -> None:
        self.raw = dict(raw)
        self._key = key

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["raw"][name]
        except KeyError:
            raise AttributeError(name) from None

    def verify(self, key: Optional[str] = None) -> bool:
        """Check the signature against ``key`` (hex), by default the signing key pinned when this FI paired.

        Returns ``True``; raises :class:`Refused` when the receipt was altered or signed by another key.
        """
        key = key or self._key or self.raw["node_key"]
        _duo.verify_receipt(json.dumps(self.raw), key)
        return True

    def __repr__(self) -> str:
        return (
            f"Receipt(request={self.raw.get('request')}, backend={self.raw.get('backend')!r}, "
            f"log_seq={self.raw.get('log_seq')}, issued_at={self.raw.get('issued_at')!r})"
        )


def _items(raw: Dict[str, Any], ty: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A batch's questions' plans (``items`` of a cost preview or request): each one's ``cost`` (Decimal),
    ``accuracy95`` (in its answer's unit: Decimal dollars for money) and ``mechanism``."""
    types = ty.get("items") or []
    out = []
    for i, item in enumerate(raw.get("items") or []):
        acc = item.get("accuracy95")
        money = i < len(types) and _dtype(types[i]) == "money"
        out.append({
            "cost": Decimal(item["cost"]),
            "accuracy95": None if acc is None else (_money(float(acc)) if money else acc),
            "mechanism": item.get("mechanism", ""),
        })
    return out


class Cost:
    """A DP release's preview: ``cost`` (Decimal, in ``measure``: ``epsilon`` or ``rho``), ``accuracy95`` (the
    half-width of a 95% interval around the exact value, in the answer's unit: Decimal dollars for money),
    ``mechanism`` and the pointer's ``lineage``. Nothing was charged."""

    def __init__(self, raw: Dict[str, Any], pointer: Pointer) -> None:
        self.raw = raw
        self.cost = Decimal(raw["cost"])
        self.measure: str = raw["measure"]
        acc = raw.get("accuracy95")
        self.accuracy95 = None if acc is None else (_money(float(acc)) if pointer.dtype == "money" else acc)
        self.mechanism: str = raw.get("mechanism", "")
        self.lineage = pointer.description
        #: For a batch (:meth:`Client.batch`): each question's cost and expected error, in order; ``cost`` is
        #: their sum. Empty otherwise.
        self.items: List[Dict[str, Any]] = _items(raw, pointer.ty)

    def __repr__(self) -> str:
        return f"Cost({self.measure}={self.cost}, accuracy95={self.accuracy95}, mechanism={self.mechanism!r})"


class Request:
    """A request for a release, as the owner's node last showed it.

    ``id`` (this FI's own numbering), ``state`` (``pending``, ``approved``, ``denied``), ``backend``, ``reason``,
    ``description`` (the lineage in words), ``ty``, ``why`` (the reason of a denial or of a wait),
    ``decided_by``, ``cost`` (Decimal, DP), ``accuracy95`` (in the answer's unit, as :class:`Cost` gives it); once
    approved, ``answer`` (money as Decimal dollars)
    and ``receipt`` (a :class:`Receipt`, already verified against the pinned key when it arrived).
    """

    def __init__(self, client: "Client", raw: Dict[str, Any]) -> None:
        self._client = client
        self._update(raw)

    def _update(self, raw: Dict[str, Any]) -> None:
        self.raw = raw
        self.id: int = raw["id"]
        self.state: str = raw["state"]
        self.backend: str = raw["backend"]
        self.reason: str = raw.get("reason", "")
        self.description: str = raw.get("description", "")
        self.ty: Dict[str, Any] = raw.get("ty", {})
        self.why: Optional[str] = raw.get("why")
        self.decided_by: Optional[str] = raw.get("decided_by")
        self.cost: Optional[Decimal] = Decimal(raw["cost"]) if raw.get("cost") is not None else None
        acc = raw.get("accuracy95")
        money = _dtype(self.ty) == "money"
        #: Half-width of a 95% interval around the exact value, in the answer's unit (Decimal dollars for money).
        self.accuracy95: Any = None if acc is None else (_money(float(acc)) if money else acc)
        self.answer: Any = _answer(raw.get("answer"), self.ty)
        #: For a DP batch: each question's cost and expected error, in order (``cost`` is their sum).
        self.items: List[Dict[str, Any]] = _items(raw, self.ty)
        rc = raw.get("receipt")
        self.receipt: Optional[Receipt] = Receipt(rc, self._client._signing_key) if rc else None

    def refresh(self, wait: float = 0) -> "Request":
        """Ask the owner's node for this request's state now, waiting up to ``wait`` seconds for a decision."""
        self._update(self._client._status(self.id, wait))
        return self

    def result(self, wait: float = 60) -> Any:
        """The answer, waiting up to ``wait`` seconds for the owner's decision.

        Raises :class:`Denied` (or :class:`BudgetExceeded`, with the numbers) on a denial, and :class:`Pending`
        if the owner has not decided within ``wait``. The wait is cut into short calls, so Ctrl-C stops it.
        """
        deadline = time.monotonic() + max(0.0, wait)
        while self.state == "pending":
            left = deadline - time.monotonic()
            if left <= 0:
                raise Pending("pending", f"request {self.id} still waits for the owner; call result(wait=...) again")
            self.refresh(min(left, 1.0))
        if self.state == "denied":
            why = self.why or "denied"
            budget = self.raw.get("budget")
            if budget:
                raise BudgetExceeded("budget", why, self.id, budget)
            raise Denied("denied", why, self.id)
        return self.answer

    def __repr__(self) -> str:
        tail = f", answer={self.answer!r}" if self.state == "approved" else (f", why={self.why!r}" if self.why else "")
        return f"Request(id={self.id}, state={self.state!r}, backend={self.backend!r}, {self.description!r}{tail})"


def _model_toml(model: Union[Dict[str, Any], str, "os.PathLike[str]"]) -> str:
    """A model (a dict like the model file, a path to a TOML model file, or its text) as TOML text."""
    if isinstance(model, dict):
        lines = []
        for key in ("name", "bias", "threshold", "probability", "bands"):
            if key in model:
                lines.append(f"{key} = {_toml_value(model[key])}")
        unknown = set(model) - {"name", "bias", "threshold", "probability", "bands", "weights"}
        if unknown:
            raise UsageError("usage", f"model: unknown keys {sorted(unknown)}; a model has name, bias, threshold "
                             "(or probability, for a logistic model), bands and weights")
        lines.append("[weights]")
        for attr, w in dict(model.get("weights", {})).items():
            lines.append(f"{_toml_value(str(attr))} = {_toml_value(w)}")
        return "\n".join(lines) + "\n"
    text = str(model)
    if "\n" not in text and (text.endswith(".toml") or os.path.exists(text)):
        with open(text, encoding="utf-8") as f:
            return f.read()
    return text


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, list, tuple)):
        raise UsageError("usage", f"model: {v!r} is not a number")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(float(v))


class Score:
    """What a private scoring run gave this FI: ``outcome`` (``{"kind": "decision", "approve": True}``, ``{"kind": "band", "band": 3, "of": 4}``,
    ``{"kind": "decision_reasons", "approve": False, "reasons": ["rent_on_time_ratio_12m", ...]}``, ...),
    ``reasons`` (for a decline with reasons: ``[{"attribute": ..., "reason": "rent paid late in the last 12
    months"}, ...]``, worst first; empty otherwise), ``bits`` revealed, ``attributes`` the model used, ``reveal``, ``request`` and ``run`` ids,
    ``commitment`` (the model commitment the owner saw; its opening is kept in the FI home), ``bytes`` sent and
    received, ``cold`` (whether the run included the base OTs), ``millis`` and the verified ``receipt``."""

    def __init__(self, raw: Dict[str, Any], key: Optional[str]) -> None:
        self.raw = raw
        self.receipt = Receipt(raw["receipt"], key)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["raw"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return (
            f"Score(request={self.raw.get('request')}, outcome={self.raw.get('outcome')!r}, "
            f"bits={self.raw.get('bits')}, millis={self.raw.get('millis')})"
        )


class Client:
    """A session with a paired owner node (``owner``: the pairing's local name, default the most recent).

    Calls from several threads are safe: they take turns on the session, and the GIL is released while a call
    waits on the network. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, home: Optional[PathLike] = None, owner: Optional[str] = None) -> None:
        self._home = _home(home)
        self._s = _duo.Session(self._home, owner)
        rec: Dict[str, Any] = next((p for p in owners(self._home) if p["name"] == self._s.owner), {})
        self._signing_key: Optional[str] = rec.get("signing_key")
        #: Catalogue attributes as calls: ``fi.attr.rent_on_time_ratio_12m()``.
        self.attr = _Attributes(self)

    @property
    def principal(self) -> str:
        """The name the owner gave this FI."""
        return self._s.principal

    @property
    def owner(self) -> str:
        """The local name of the owner node this session is with."""
        return self._s.owner

    def owners(self) -> Records:
        """The owner nodes this FI home is paired with."""
        return owners(self._home)

    def datasets(self) -> Records:
        """The owner's published datasets (metadata and schemas, never rows): one row per dataset, with
        ``name``, ``version``, ``columns`` ({name: type}) and the rest of the published metadata."""
        out = Records()
        for d in json.loads(self._s.datasets()):
            row = dict(d.get("meta", {}))
            row["version"] = d.get("version")
            out.append(row)
        return out

    def catalogue(self) -> Records:
        """The catalogue of named attributes (``name``, description, type, ...), one row each."""
        return Records(json.loads(self._s.catalogue()))

    def expr(self, src: str) -> Pointer:
        """A pointer from an expression, e.g. ``mean(clamp(rent.amount, 0, 300000))`` (syntax: README).

        A syntax error raises :class:`ParseError` before anything is sent; a type error raises
        :class:`CheckError` (the owner's node checks it against its published metadata; no data is read).
        """
        pid, ty, words = self._s.expr(src)
        return Pointer(self, pid, json.loads(ty), words, src)

    def dataset(self, name: str) -> Pointer:
        """A pointer to the owner's dataset ``name`` (a table: take columns, filter, aggregate)."""
        return self.expr(_name(name))

    def attribute(self, name: str, window_end: Optional[Union[str, datetime.date]] = None) -> Pointer:
        """A pointer to the catalogue attribute ``name`` (see :attr:`attr`)."""
        return getattr(self.attr, name)(window_end)

    def batch(self, *questions: Union[Pointer, str]) -> Pointer:
        """One pointer for several questions asked together (``batch(q1, q2, ...)``, at most 32): requested, it
        is one request that the owner approves or denies as a whole; through ``dp`` it is charged the sum of the
        questions' costs at once, or nothing. Its answer is a list, one answer per question in order.

        Not to be confused with :class:`Batch`, one question asked of several owners."""
        if not questions:
            raise UsageError("usage", "a batch needs at least one question")
        return self.expr("batch(" + ", ".join(f"${self._pointer(q).id}" for q in questions) + ")")

    def _pointer(self, p: Union[Pointer, str]) -> Pointer:
        return self.expr(p) if isinstance(p, str) else p

    def cost(
        self,
        p: Union[Pointer, str],
        epsilon: Optional[float] = None,
        rho: Optional[float] = None,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
    ) -> Cost:
        """Preview a DP release of ``p``: its cost and expected error for ``epsilon``, ``rho``, or the target
        accuracy ``alpha`` (within alpha of the exact value with probability 1 - ``beta``). Nothing is charged."""
        p = self._pointer(p)
        return Cost(json.loads(self._s.cost(p.id, epsilon, rho, alpha, beta)), p)

    def request(
        self,
        p: Union[Pointer, str],
        reason: str,
        backend: str = "plaintext",
        epsilon: Optional[float] = None,
        rho: Optional[float] = None,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        wait: float = 0,
    ) -> Request:
        """Ask for the release of ``p`` with a ``reason`` the owner sees.

        ``backend`` is ``"plaintext"`` (the exact value) or ``"dp"`` (a differentially private value, spending
        ``epsilon``, ``rho``, or the budget that reaches accuracy ``alpha``/``beta``). Returns the
        :class:`Request` at once (approved, denied, or pending); with ``wait`` > 0 waits that many seconds for a
        pending one's decision. A denial is a state, not an exception: :meth:`Request.result` raises it.
        """
        p = self._pointer(p)
        req = Request(self, json.loads(self._s.request(p.id, reason, backend, epsilon, rho, alpha, beta)))
        if wait > 0 and req.state == "pending":
            try:
                req.result(wait)
            except DuoError:
                pass
        return req

    def score(
        self,
        model: Union[Dict[str, Any], str, "os.PathLike[str]"],
        reason: Optional[str] = None,
        reveal: str = "decision",
        wait: float = 0,
        request: Optional[int] = None,
        max_runs_per_owner: Optional[int] = None,
    ) -> Score:
        """Score the owner privately (two-party computation): the model never leaves this process in the clear
        and the owner's attribute values never leave the owner's node; both learn only what ``reveal`` says:
        ``"decision"`` (1 bit: the score reaches the threshold), ``"bands:K"`` (which of K bands),
        ``"decision+reasons:K"`` (the decision and, on a decline, the K attributes that cost the most points,
        worst first, in :attr:`Score.reasons`; the owner's policy must allow it), or ``"score"``.

        ``model`` is a dict like the model file (``{"bias": -2.5, "threshold": 0.25, "weights":
        {"rent_on_time_ratio_12m": 2.0}}``; a logistic model may give ``"probability": 0.7`` instead of
        ``"threshold"``), a path to a TOML model file, or its text. Waits up to ``wait``
        seconds for the owner's decision; raises :class:`Pending` (with ``.request``) if the owner has not
        decided: run it later with ``score(model, request=ID)``. A denial or a limit raises :class:`Refused` or
        :class:`Limit`. ``max_runs_per_owner`` is this FI's own cap on runs against this owner per 30 days.
        """
        if request is None and not reason:
            raise UsageError("usage", "a scoring request states a reason (the owner sees it)")
        text = _model_toml(model)
        out = json.loads(self._s.score(text, reason, reveal, 0.0, request, max_runs_per_owner))
        if out.get("state") == "pending" and wait > 0:
            # Wait for the owner in short calls (Ctrl-C stops it), then run the approved request.
            req = self.result(out["request"])
            try:
                req.result(wait)
            except Denied as e:
                raise Refused("refused", f"scoring request {req.id} was denied: {e.message}") from None
            except Pending:
                pass
            else:
                out = json.loads(self._s.score(text, None, reveal, 0.0, req.id, max_runs_per_owner))
        if out.get("state") == "pending":
            waiting = Pending("pending", f"scoring request {out['request']} waits for the owner; once approved, "
                              f"run it with score(model, request={out['request']})")
            waiting.request = out["request"]  # type: ignore[attr-defined]
            raise waiting
        return Score(out, self._signing_key)

    def result(self, request: int, wait: float = 0) -> Request:
        """An earlier request of this FI (by id) as the owner's node shows it now."""
        return Request(self, self._status(request, wait))

    def _status(self, request: int, wait: float) -> Dict[str, Any]:
        # A long wait goes in calls of at most a second, like Request.result: each call holds the session, and
        # one interrupted by Ctrl-C finishes in the background before the next call on it starts.
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            left = deadline - time.monotonic()
            raw: Dict[str, Any] = json.loads(self._s.status(request, max(0.0, min(left, 1.0))))
            if raw.get("state") != "pending" or left <= 1.0:
                return raw

    def requests(self) -> Records:
        """This FI's requests to this owner as last seen, oldest first (``result(id)`` asks again): one flat row
        per request with the columns of :data:`REQUEST_COLUMNS` (``to_pandas()`` for a DataFrame, money in
        dollars). Requests kept before the FI home recorded answers have only the first eight."""
        return Records(_request_row(r) for r in json.loads(_duo.requests(self._home)) if r.get("owner") == self.owner)

    def receipts(self, verify: bool = True) -> Records:
        """The receipts this FI kept from this owner node, one flat row each (see :func:`receipts`)."""
        return Records(r for r in receipts(self._home, verify) if r["owner"] == self.owner)

    def close(self) -> None:
        """End the session."""
        self._s.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(owner={self.owner!r}, principal={self.principal!r})"


class Batch:
    """One question asked of many owners (:class:`Portfolio`), as the FI home keeps it: ``id``, ``created_at``,
    ``ask`` (what it asks), ``complete`` (every owner answered) and ``outcomes``: a :class:`Records` row per owner
    with ``owner``, ``outcome`` (``approved``, ``pending``, ``denied``, ``over_budget``, ``unreachable``,
    ``failed``, ``unknown``, ``not_asked``), ``request`` (the owner's id for it), ``answer`` (money as Decimal
    dollars) or ``score`` (a scoring run's output), ``reason`` (a denial's), ``requested`` and ``remaining`` (over
    budget, Decimal), ``error`` (unreachable or failed) and ``attempts``. Each approved answer's receipt was
    verified and kept in the FI home's receipt log under the owner's name (:func:`receipts`).
    """

    def __init__(self, portfolio: "Portfolio", raw: Dict[str, Any]) -> None:
        self._portfolio = portfolio
        self.raw = raw
        self.id: str = raw["id"]
        self.created_at: str = raw.get("created_at", "")
        self.ask: Dict[str, Any] = raw["ask"]
        self.outcomes = Records()
        for e in raw.get("owners", []):
            ty = e.get("ty") or {}
            row: Dict[str, Any] = {
                "owner": e["owner"],
                "outcome": e["outcome"],
                "request": e.get("request"),
                "answer": _answer(e.get("answer"), ty) if e.get("answer") is not None else None,
                "score": e.get("score"),
                "reason": e.get("reason"),
                "requested": Decimal(e["requested"]) if e.get("requested") else None,
                "remaining": Decimal(e["remaining"]) if e.get("remaining") else None,
                "error": e.get("error"),
                "attempts": e.get("attempts", 0),
            }
            self.outcomes.append(row)

    @property
    def complete(self) -> bool:
        """Whether every owner answered (approved, denied or over budget)."""
        return all(o["outcome"] in ("approved", "denied", "over_budget") for o in self.outcomes)

    def outcome(self, owner: str) -> Dict[str, Any]:
        """The row of one owner."""
        for o in self.outcomes:
            if o["owner"] == owner:
                return o
        raise NotFound("not_found", f"owner {owner!r} is not in batch {self.id}")

    def resume(self, concurrency: int = 8, wait: float = 0, max_runs_per_owner: Optional[int] = None) -> "Batch":
        """Run this batch again: owners that answered are not contacted, requests already made are polled, and
        owners never reached are asked. Never asks an owner twice. Returns the batch as now kept."""
        return self._portfolio._run(json.dumps(self.ask), None, self.id, False, concurrency, wait, max_runs_per_owner)

    def to_pandas(self) -> "pandas.DataFrame":  # type: ignore[name-defined]  # noqa: F821
        """The outcomes as a ``pandas.DataFrame``, one row per owner."""
        return self.outcomes.to_pandas()

    def __repr__(self) -> str:
        counts: Dict[str, int] = {}
        for o in self.outcomes:
            counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
        return f"Batch(id={self.id!r}, {counts})"


class Portfolio:
    """One FI and the many owner nodes its home is paired with (each under its own name).

    :meth:`request` and :meth:`score` ask one question of several owners at once (``owners``: ``"all"``, a list
    of names, ``"a,b"``, or ``"@FILE"`` with one name a line), at most ``concurrency`` at a time, and return a
    :class:`Batch` with each owner's outcome. The batch is kept in the FI home (``fi/batches/ID.json``): resume it
    (:meth:`Batch.resume`, or ``batch=ID`` / ``resume=True``) and no owner is asked twice. The same operations as
    ``duo fi request|score --owners``.

    Example::

        pf = duo.Portfolio()
        pf.owners(probe=True).to_pandas()
        b = pf.request("rent_on_time_ratio_12m()", reason="portfolio review", owners="all")
        b.to_pandas()
        if not b.complete:
            b = b.resume()
    """

    def __init__(self, home: Optional[PathLike] = None) -> None:
        self._home = _home(home)

    def owners(self, probe: bool = True, timeout: float = 3.0) -> Records:
        """The paired owner nodes (see :func:`owners`), probed by default."""
        return owners(self._home, probe, timeout)

    def batches(self) -> List[Batch]:
        """The batches kept in the FI home, oldest first."""
        return [Batch(self, b) for b in json.loads(_duo.batches(self._home))]

    def batch(self, id: str) -> Batch:
        """The kept batch ``id``."""
        for b in self.batches():
            if b.id == id:
                return b
        raise NotFound("not_found", f"no batch {id!r} in this FI home")

    def request(
        self,
        expr: str,
        reason: str,
        owners: Union[str, Iterable[str]] = "all",
        backend: str = "plaintext",
        epsilon: Optional[float] = None,
        rho: Optional[float] = None,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        concurrency: int = 8,
        wait: float = 0,
        batch: Optional[str] = None,
        resume: bool = False,
    ) -> Batch:
        """Ask every selected owner for the release of ``expr`` (plaintext, or ``backend="dp"`` spending
        ``epsilon``, ``rho`` or ``alpha``/``beta``), waiting up to ``wait`` seconds for each owner's decision."""
        _duo.parse(expr)
        dp = {k: v for k, v in (("epsilon", epsilon), ("rho", rho), ("alpha", alpha), ("beta", beta)) if v is not None}
        if backend == "dp" and not dp:
            raise UsageError("usage", "a dp request states what to spend: epsilon=X, rho=X, or alpha=A (and beta=B)")
        if backend != "dp" and dp:
            raise UsageError("usage", 'epsilon, rho and alpha go with backend="dp"')
        ask: Dict[str, Any] = {"kind": "release", "expr": expr, "backend": backend, "reason": reason}
        if dp:
            ask["dp"] = dp
        return self._run(json.dumps(ask), owners, batch, resume, concurrency, wait, None)

    def score(
        self,
        model: Union[Dict[str, Any], str, "os.PathLike[str]"],
        reason: str,
        owners: Union[str, Iterable[str]] = "all",
        reveal: str = "decision",
        concurrency: int = 8,
        wait: float = 0,
        batch: Optional[str] = None,
        resume: bool = False,
        max_runs_per_owner: Optional[int] = None,
    ) -> Batch:
        """Score every selected owner privately with ``model`` (as :meth:`Client.score` takes it), revealing
        ``reveal``; each approved request is run once."""
        ask = {"kind": "score", "model_toml": _model_toml(model), "reveal": reveal, "reason": reason}
        return self._run(json.dumps(ask), owners, batch, resume, concurrency, wait, max_runs_per_owner)

    def _run(
        self,
        ask: str,
        owners: Union[None, str, Iterable[str]],
        batch: Optional[str],
        resume: bool,
        concurrency: int,
        wait: float,
        max_runs: Optional[int],
    ) -> Batch:
        spec = owners if owners is None or isinstance(owners, str) else ",".join(owners)
        raw = _duo.run_batch(ask, spec, batch, resume, int(concurrency), float(wait), max_runs, self._home)
        return Batch(self, json.loads(raw))

    def __repr__(self) -> str:
        return f"Portfolio(home={self._home!r})"
