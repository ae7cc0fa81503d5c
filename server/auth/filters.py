"""Authorization filters: what a handler returns to restrict which resources a caller sees.

The format is LangGraph's (``Auth.types.FilterType``), matched against a resource's
``metadata``: ``{"owner": "u1"}`` (exact), ``{"owner": {"$eq": "u1"}}``,
``{"tags": {"$contains": "a"}}`` (the list holds the value) and
``{"tags": {"$contains": ["a", "b"]}}`` (holds all of them); several keys are AND-ed. The
built-in key policy also uses ``{"$or": [filter, ...]}`` (the per-graph system assistants are
everyone's). The same filter is applied in SQL (searches, counts, bulk operations) and in
Python (one row already read), and both follow the rules above exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from psycopg import sql
from psycopg.types.json import Jsonb

__all__ = ["Filter", "check_filter", "filter_sql", "matches"]

Filter = Mapping[str, Any]

_MAX_KEYS = 50


def check_filter(value: Any) -> Filter:
    """``value`` if it is a filter this server can apply.

    Raises:
        HTTPException: 500 naming the problem: the auth handler returned something unusable
            (a server configuration error, not the client's).
    """
    problem = _problem(value)
    if problem is not None:
        raise HTTPException(500, detail=f"Auth handler returned an invalid filter: {problem}")
    return value  # type: ignore[no-any-return,unused-ignore]


def _problem(value: Any) -> str | None:
    if not isinstance(value, Mapping) or len(value) > _MAX_KEYS:
        return f"expected a dict of at most {_MAX_KEYS} keys"
    for key, cond in value.items():
        if key == "$or":
            if not isinstance(cond, list) or not cond:
                return "$or takes a non-empty list of filters"
            for sub in cond:
                if (found := _problem(sub)) is not None:
                    return found
            continue
        if not isinstance(key, str) or key.startswith("$"):
            return f"unknown operator {key!r}"
        if isinstance(cond, Mapping):
            if set(cond) - {"$eq", "$contains"} or not cond:
                return f"{key}: supported operators are $eq and $contains"
    return None


def _contains(actual: Any, wanted: Any) -> bool:
    if not isinstance(actual, list):
        return False
    if isinstance(wanted, list):
        return all(w in actual for w in wanted)
    return wanted in actual


def matches(flt: Filter | None, metadata: Mapping[str, Any] | None) -> bool:
    """Whether a resource with ``metadata`` passes ``flt`` (``None`` lets everything pass)."""
    if not flt:
        return True
    metadata = metadata or {}
    for key, cond in flt.items():
        if key == "$or":
            if not any(matches(sub, metadata) for sub in cond):
                return False
            continue
        if key not in metadata:
            return False  # as in SQL, where a missing key compares as NULL
        actual = metadata[key]
        if isinstance(cond, Mapping):
            if "$eq" in cond and actual != cond["$eq"]:
                return False
            if "$contains" in cond and not _contains(actual, cond["$contains"]):
                return False
        elif actual != cond:
            return False
    return True


def filter_sql(
    flt: Filter | None, params: dict[str, Any], column: str = "metadata"
) -> sql.Composable:
    """``flt`` as a SQL condition on the jsonb ``column`` (``TRUE`` when there is none).

    Values are bound as named parameters added to ``params`` (``_auth0``, ``_auth1`` …), so use
    named placeholders in the rest of the query.
    """
    if not flt:
        return sql.SQL("TRUE")
    col = sql.Identifier(column)
    parts: list[sql.Composable] = []

    def bind(value: Any) -> sql.Composable:
        name = f"_auth{len(params)}"
        params[name] = Jsonb(value)
        return sql.Placeholder(name)

    for key, cond in flt.items():
        if key == "$or":
            ors = [filter_sql(sub, params, column) for sub in cond]
            parts.append(sql.SQL("(") + sql.SQL(" OR ").join(ors) + sql.SQL(")"))
            continue
        field = sql.SQL("({} -> {})").format(col, sql.Literal(key))
        conds = cond if isinstance(cond, Mapping) else {"$eq": cond}
        if "$eq" in conds:
            parts.append(sql.SQL("{} = {}::jsonb").format(field, bind(conds["$eq"])))
        if "$contains" in conds:
            wanted = conds["$contains"]
            wanted = wanted if isinstance(wanted, list) else [wanted]
            parts.append(
                sql.SQL("(jsonb_typeof({f}) = 'array' AND {f} @> {v}::jsonb)").format(
                    f=field, v=bind(wanted)
                )
            )
    return sql.SQL("(") + sql.SQL(" AND ").join(parts) + sql.SQL(")")
