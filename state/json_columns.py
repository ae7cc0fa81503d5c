"""json and jsonb columns read with orjson, exactly as the standard library reads them.

psycopg parses every ``json``/``jsonb`` value it fetches with ``json.loads``. Runs, threads,
checkpoints and store items all come back as JSON, so that parse is on every request's path;
orjson does it several times faster. The two agree on every document Postgres returns but two
kinds, which go to ``json.loads`` instead:

- integers of 19 digits or more (orjson keeps 64-bit integers exact and turns longer ones into
  floats, losing digits; ``json.loads`` keeps them as exact ints). A run of 19 digits anywhere,
  strings included, takes the exact path: rarely taken, and always right;
- numbers beyond a double's range, such as ``1e400``, which orjson refuses (``json.loads`` reads
  ``inf``). Any document orjson refuses is handed to ``json.loads``, which then decides.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from psycopg.abc import AdaptContext
from psycopg.types.json import set_json_loads

__all__ = ["load_json", "register_json_loads"]

_LONG_DIGITS = re.compile(rb"\d{19}")
"""19 digits: past the longest integer orjson keeps exact (2**64 - 1 has 20, 2**63 - 1 has 19)."""


def load_json(data: str | bytes) -> Any:
    """Parse a JSON document from Postgres: the value ``json.loads`` gives, found faster."""
    if isinstance(data, str):  # psycopg passes bytes; its signature allows text
        data = data.encode()
    if _LONG_DIGITS.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def register_json_loads(context: AdaptContext) -> None:
    """Read ``json`` and ``jsonb`` values of ``context`` (a connection) with :func:`load_json`."""
    set_json_loads(load_json, context)
