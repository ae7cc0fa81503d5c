"""Embedding vectors as query parameters: one pgvector literal each, serialised in C.

psycopg sends a Python list as a Postgres array and dumps it one element at a time, in
Python: about half a millisecond for a 384-float embedding, twice per Store search (LangGraph's
search query names the vector twice) and once per stored item. An embedder that returns
:class:`Vector` lists, on a connection configured with :func:`register_vector_dumper`, has
each sent as one ``[x,y,...]`` text literal instead (orjson writes it in microseconds), which
``::vector`` and ``::halfvec`` casts and ``vector`` columns read directly. The numbers are the
same shortest round-trip decimals either way, so the stored and compared values do not change.
Elsewhere a :class:`Vector` is an ordinary list (and is sent as an array).
"""

from __future__ import annotations

import orjson
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Dumper

__all__ = ["Vector", "VectorDumper", "register_vector_dumper"]


class Vector(list[float]):
    """A list of floats that a configured connection sends as one pgvector literal."""

    __slots__ = ()


class VectorDumper(Dumper):
    """Dumps a :class:`Vector` as the text ``[x,y,...]``, typed by the query's cast/column."""

    oid = 0  # unknown: Postgres takes the type from ``::vector`` or the target column

    def dump(self, obj: list[float]) -> Buffer:
        """The vector as pgvector's text form (JSON's array of numbers is the same form)."""
        return orjson.dumps(obj)


def register_vector_dumper(context: AdaptContext) -> None:
    """Send :class:`Vector` parameters of ``context`` (a connection) as pgvector literals."""
    context.adapters.register_dumper(Vector, VectorDumper)
