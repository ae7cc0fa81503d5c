"""Where Postgres is, decided before anything heavy is imported.

The parent of ``staffgraph serve --processes N`` starts (or joins) the database before it
spawns its children, and must not import the app to do so: this module needs only the settings
and the embedded server's handle. :mod:`server.context` and :mod:`server.startup` re-export
both names.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from state.embedded import EmbeddedPostgres
from state.settings import Settings

__all__ = ["DatabaseTarget", "resolve_database"]


@dataclass(frozen=True)
class DatabaseTarget:
    """Where Postgres is: the URL to connect to and whether we run it ourselves."""

    url: str
    embedded: bool


def resolve_database(settings: Settings, stack: ExitStack) -> DatabaseTarget:
    """``DATABASE_URL`` if set; else start (or join) the embedded server in ``STAFFGRAPH_HOME``.

    The embedded server's handle is released when ``stack`` closes.
    """
    if settings.database.url is not None:
        return DatabaseTarget(settings.database.url.get_secret_value(), embedded=False)
    embedded = EmbeddedPostgres(settings.server.home)
    url = embedded.start()
    stack.callback(embedded.stop)
    return DatabaseTarget(url, embedded=True)
