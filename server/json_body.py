"""Request bodies as JSON: strict, within a budget, and refused with the field that is wrong.

Python's ``json`` (what Starlette uses) accepts things nothing downstream can hold: integers
beyond 64 bits (orjson refuses to write them back), lone UTF-16 surrogates (``"\\ud800"``, not
Unicode), ``NaN`` / ``Infinity`` / ``1e400``, and ``\\u0000`` (Postgres text and jsonb refuse
NUL). Each would end in a 500 somewhere later; here it is a 422 naming the field.

Memory is bounded by what a body parses to, not only by its bytes: nine MiB of ``[{},{},…]``
is three million dicts. Before anything is materialised the body's JSON values are counted
from its bytes (an upper bound from its commas and brackets, made exact only when the bound is
over budget), and a body over ``STAFFGRAPH_MAX_BODY_VALUES`` values is a 413 without being
parsed. Nesting deeper than ``STAFFGRAPH_MAX_BODY_DEPTH`` is a 413 too.

The common body costs one ``orjson.loads`` plus a few byte scans: the slower, exact parse that
names a field runs only for a body orjson refuses or one that may hold a problem.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson
from fastapi import HTTPException
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from server.direct_routes import direct_handler

__all__ = [
    "BodyBudget",
    "BodyValueInvalid",
    "JsonRoute",
    "body_problem",
    "budget_of",
    "parse_json_body",
]

_MIN_INT = -(2**63)
_MAX_INT = 2**64 - 1
# A JSON string, unrolled so that it runs in linear time: used to count values outside strings.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class BodyValueInvalid(HTTPException):
    """A 422 naming the field: ``{"detail": "body.a.b: ...", "errors": [{loc, msg, type}]}``.

    An ``HTTPException`` (not a ``RequestValidationError``) because FastAPI lets only those
    out of body parsing unchanged; the error handler adds :attr:`extra` to the body.
    """

    def __init__(self, loc: tuple[Any, ...], message: str, kind: str) -> None:
        where = ".".join(str(part) for part in loc)
        super().__init__(422, detail=f"{where}: {message}")
        self.extra = {"errors": [{"loc": list(loc), "msg": message, "type": kind}]}


@dataclass(frozen=True)
class BodyBudget:
    """How much one request body may parse to."""

    max_values: int = 100_000
    """JSON values (objects, arrays, and the items and members in them)."""
    max_depth: int = 100
    """Nesting of objects and arrays."""


def parse_json_body(body: bytes, budget: BodyBudget) -> Any:
    """Parse a request body strictly and within ``budget``.

    Raises:
        HTTPException: 413 when the body holds more values or deeper nesting than allowed.
        BodyValueInvalid: 422 naming the field that holds a value nothing can store.
        json.JSONDecodeError: the body is not JSON (FastAPI answers its usual 422).
    """
    opens = body.count(b"{") + body.count(b"[")
    if opens + body.count(b",") + 1 > budget.max_values:
        _check_count(body, budget)
    suspicious = b"\\u0000" in body or _LONG_NUMBER in body.translate(_DIGITS_AS_ZERO)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # Maybe valid JSON by Python's lax reading but with a value we refuse: name it.
        _raise_problem(_lenient(body, exc), budget)
        raise
    if suspicious:
        exact = _lenient(body, None)
        _raise_problem(exact, budget)
        return exact
    if opens > budget.max_depth and _too_deep(body, budget.max_depth):
        _raise_problem(value, budget)
    return value


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
"""Integers orjson cannot keep exactly have 19 digits or more (it turns them into floats)."""


def _depth(body: bytes) -> int:
    """How deep ``body``'s brackets nest (brackets inside strings count too), in C loops."""
    steps = map(_STEP.__getitem__, body.translate(None, delete=_NOT_BRACKETS))
    return max(accumulate(steps), default=0)


def _too_deep(body: bytes, max_depth: int) -> bool:
    # The raw count is an upper bound; strings are taken out only when it is over.
    return _depth(body) > max_depth and _depth(_STRING.sub(b'""', body)) > max_depth


def _check_count(body: bytes, budget: BodyBudget) -> None:
    outside = _STRING.sub(b'""', body)
    values = outside.count(b",") + outside.count(b"{") + outside.count(b"[") + 1
    if values > budget.max_values:
        raise HTTPException(
            413,
            detail=f"Request body holds more than {budget.max_values} JSON values; send less "
            "or raise STAFFGRAPH_MAX_BODY_VALUES",
        )


def _lenient(body: bytes, error: orjson.JSONDecodeError | None) -> Any:
    """Python's reading, which keeps big integers, surrogates and non-finite numbers."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        if error is not None:
            raise error from None
        raise


def _raise_problem(value: Any, budget: BodyBudget) -> None:
    found = body_problem(value, max_depth=budget.max_depth)
    if found is None:
        return
    loc, message, kind = found
    if kind == "depth":
        raise HTTPException(
            413,
            detail=f"Request body nests deeper than {budget.max_depth} levels; send less or "
            "raise STAFFGRAPH_MAX_BODY_DEPTH",
        )
    raise BodyValueInvalid(("body", *loc), message, kind)


def body_problem(value: Any, *, max_depth: int) -> tuple[tuple[Any, ...], str, str] | None:
    """The first value in ``value`` that cannot be stored: ``(location, message, kind)``.

    Kinds: ``int_range``, ``float_finite``, ``string_unicode``, ``string_nul``, ``depth``.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, dict | list):
            if len(loc) >= max_depth:
                return loc, "nested too deep", "depth"
            found = _children(item, loc, stack)
        else:
            found = _scalar_problem(item)
        if found is not None:
            where, message, kind = found
            return (*loc, *where), message, kind
    return None


def _children(
    item: dict[Any, Any] | list[Any],
    loc: tuple[Any, ...],
    stack: list[tuple[Any, tuple[Any, ...]]],
) -> tuple[tuple[Any, ...], str, str] | None:
    if isinstance(item, list):
        stack.extend((child, (*loc, i)) for i, child in enumerate(item))
        return None
    for key, child in item.items():
        problem = _string_problem(key)
        if problem is not None:
            # The key goes back in the error body: make it printable, surrogates included.
            shown = key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
            return (shown,), f"{problem[0]} (in the key)", problem[1]
        stack.append((child, (*loc, key)))
    return None


def _scalar_problem(item: Any) -> tuple[tuple[Any, ...], str, str] | None:
    if isinstance(item, str):
        problem = _string_problem(item)
        return None if problem is None else ((), *problem)
    if isinstance(item, bool):
        return None
    if isinstance(item, int) and not _MIN_INT <= item <= _MAX_INT:
        return (), "Integer is outside the 64-bit range", "int_range"
    if isinstance(item, float) and not math.isfinite(item):
        return (), "Number must be finite (not NaN, Infinity or beyond ±1.8e308)", "float_finite"
    return None


def _string_problem(text: str) -> tuple[str, str] | None:
    if "\x00" in text:
        return "Text must not contain NUL characters (\\u0000)", "string_nul"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Text holds a lone UTF-16 surrogate (e.g. \\ud800), which is not Unicode", (
            "string_unicode"
        )
    return None


class _StrictJsonRequest(Request):
    """A request whose ``json()`` is :func:`parse_json_body` under the app's budget."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body(), budget_of(self))
        return self._json


def budget_of(request: Request) -> BodyBudget:
    """The app's body budget (``STAFFGRAPH_MAX_BODY_VALUES`` / ``_DEPTH``; defaults without)."""
    budget = getattr(request.app.state, "body_budget", None)
    return budget if isinstance(budget, BodyBudget) else BodyBudget()


class JsonRoute(APIRoute):
    """Every router's route class: bodies are read with :func:`parse_json_body`, and a route of
    the plain shape is answered by :func:`server.direct_routes.direct_handler`."""

    allow_direct = True
    """Whether a route of the plain shape may skip FastAPI's solver (a subclass may say no)."""
    direct = False
    """Whether the route is answered by :func:`~server.direct_routes.direct_handler`."""

    def get_route_handler(self) -> Any:
        fastapi_handler = super().get_route_handler()
        direct = direct_handler(self, fastapi_handler) if self.allow_direct else None
        handler = direct or fastapi_handler
        self.direct = direct is not None

        async def strict(request: Request) -> Response:
            response: Response = await handler(_StrictJsonRequest(request.scope, request.receive))
            return response

        return strict
