"""json and jsonb columns read with orjson, exactly as the standard library reads them.

psycopg parses every ``json``/``jsonb`` value it fetches with ``json.loads``. Runs, threads,
checkpoints and store items all come back as JSON, so that parse is on every request's path;
orjson does it several times faster. The two agree on every document Postgres returns but two
kinds, which go to ``json.loads`` instead:

- numbers with a run of 19 digits or more (orjson keeps 64-bit integers exact and turns longer
  ones into floats, losing digits; ``json.loads`` keeps them as exact ints). The check looks at
  runs where a number's digits can start (after ``[ , :``, whitespace, ``- + . e E`` or at the
  start of the document), so a long run inside a string usually does not trigger it: the
  version strings of every checkpoint (``"00000000000000000000000000000181.0.52…"``) follow a
  quote. A string that holds ``": 1234567890123456789"`` is read by the slow path, which is
  still exact;
- numbers beyond a double's range, such as ``1e400``, which orjson refuses (``json.loads`` reads
  ``inf``). Any document orjson refuses is handed to ``json.loads``, which then decides.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from psycopg.abc import AdaptContext
from psycopg.types.json import set_json_loads

__all__ = ["load_json", "needs_standard_parser", "register_json_loads"]

_LONG = 19
"""Digits in a run that may not be exact through orjson (2**64 - 1 has 20, 2**63 - 1 has 19)."""

_RUN_STARTS = b"-+.eE:,[ \t\r\n"
_MARK_RUN_STARTS = bytes.maketrans(b"123456789" + _RUN_STARTS, b"0" * 9 + b"#" * len(_RUN_STARTS))
"""Every digit becomes ``0`` and every byte a number's digits can follow becomes ``#``."""

_LONG_RUN = b"#" + b"0" * _LONG


def needs_standard_parser(data: bytes) -> bool:
    """Whether ``data`` may hold a number with a run of 19 digits or more (an over-estimate:
    such a run in a string after one of the bytes a number can follow counts too).

    A regular expression (``\\d{19}``) took 12 µs on a 1,354-byte run row, more than
    ``json.loads`` itself; two passes in C (a byte translation, then a substring search) take
    about 1.6 µs on it, and orjson's parse 2 to 3.
    """
    marked = data.translate(_MARK_RUN_STARTS)
    return _LONG_RUN in marked or marked.startswith(_LONG_RUN[1:])


def load_json(data: str | bytes) -> Any:
    """Parse a JSON document from Postgres: the value ``json.loads`` gives, found faster."""
    if isinstance(data, str):  # psycopg passes bytes; its signature allows text
        data = data.encode()
    if not needs_standard_parser(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def register_json_loads(context: AdaptContext) -> None:
    """Read ``json`` and ``jsonb`` values of ``context`` (a connection) with :func:`load_json`."""
    set_json_loads(load_json, context)
