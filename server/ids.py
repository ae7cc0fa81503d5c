"""Identifiers."""

from __future__ import annotations

from langchain_core.utils.uuid import uuid7

__all__ = ["new_id"]


def new_id() -> str:
    """A time-ordered UUIDv7 as a string: ids sort by creation like the official server's.

    langchain-core's ``uuid7`` (RFC 9562, monotonic within a millisecond) does the work.
    """
    return str(uuid7())
