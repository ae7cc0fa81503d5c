"""The one line a failed start of ``staffgraph serve`` ends with.

Start-up errors of their own kind (a graph that does not load, a custom auth module that fails
to import, an unreadable price table, an unreachable database, a failed migration) carry the
line to show; anything else is logged with its traceback first. The error classes are imported
when a start fails, so the CLI imports none of the app to be able to say why.
"""

from __future__ import annotations

import logging

__all__ = ["start_failure"]

log = logging.getLogger("staffgraph")  # the CLI's logger: a failed start logs as before


def start_failure(exc: Exception) -> str:
    """The one line for a start that raised ``exc``: a start-up error's own message; anything
    else is logged with its traceback first."""
    from server.auth import CustomAuthError
    from server.graphs import GraphLoadError
    from server.observability import PriceTableError
    from server.startup import StartupError
    from state.db import DatabaseUnavailable
    from state.embedded import EmbeddedPostgresError

    known = (
        CustomAuthError,
        DatabaseUnavailable,
        EmbeddedPostgresError,
        GraphLoadError,
        PriceTableError,
        StartupError,
    )
    if isinstance(exc, known):
        return str(exc)
    log.error("start-up failed", exc_info=exc)
    return f"start-up failed: {type(exc).__name__}: {exc}"
