"""Identifiers."""

from __future__ import annotations

import datetime as dt
import uuid

__all__ = ["new_id"]


def new_id() -> str:
    """A time-ordered UUID (v7 layout) as a string: ids sort by creation like the official ones."""
    ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
