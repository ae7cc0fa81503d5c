"""``staffgraph serve --processes N``: one port served by N server processes.

One Python process runs on one core at a time; a server that should use every core runs
several. The parent process starts (or joins) the embedded Postgres once, checks the port, and
starts N children, each a complete ``staffgraph serve`` (API, workers, schedulers) bound to the
same port with ``SO_REUSEPORT``: the kernel spreads incoming connections over them. The
children share Postgres, and run events go through Redis when ``REDIS_URL`` is set, else
through Postgres (``STAFFGRAPH_BROKER=auto`` picks it when ``STAFFGRAPH_PROCESSES`` > 1), so
any child serves, joins, resumes and cancels any run's stream.

The parent forwards SIGTERM/SIGINT to the children and waits for their graceful shutdown. A
child that exits on its own (a start-up error, a crash) stops the others: the server is one
unit, and a supervisor (systemd, Kubernetes) restarts it whole. Children get SIGTERM when the
parent dies, even by SIGKILL (:func:`watch_parent`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from server.hard_stop import HARD_STOP_EXIT, HardStop
from state.settings import Settings

if TYPE_CHECKING:  # the context module imports the whole app; the CLI imports this one first
    from server.database import DatabaseTarget

__all__ = [
    "FAILURE_DIR_ENV",
    "PARENT_PID_ENV",
    "listening_socket",
    "port_problem",
    "report_start_failure",
    "run_children",
    "watch_parent",
]

_BACKLOG = 2048

log = logging.getLogger(__name__)

PARENT_PID_ENV = "STAFFGRAPH_PARENT_PID"
"""Set by the parent for its children: whose child they are, known before they start."""
FAILURE_DIR_ENV = "STAFFGRAPH_START_FAILURES"
"""Internal: the directory a child writes its start-up failure into (one file per process)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes of this user may share.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (``None`` when it can): checked once, by the parent."""
    try:
        listening_socket(host, port).close()
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def run_children(
    settings: Settings, count: int, database: DatabaseTarget, *, insecure: bool
) -> tuple[int, list[str]]:
    """Start ``count`` server processes on the settings' port and wait for them.

    The first child is the lead (``--lead``): it prints the banner once its app is up. A child
    whose start fails writes its one line into a directory of the parent's
    (:data:`FAILURE_DIR_ENV`) instead of printing it: every child reads the same files, so a
    missing graph would otherwise be told once per process, and the parent prints each reason
    once.

    Returns:
        The exit code of the first child that failed (0 after a shutdown by signal in which
        every child exited cleanly or as a shutdown ends it; :data:`HARD_STOP_EXIT` if a
        child's shutdown overran its deadline), and the distinct reasons the children's starts
        failed with, in the order they were written.
    """
    server = settings.server
    reports = tempfile.TemporaryDirectory(prefix="staffgraph-start-")
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "STAFFGRAPH_HOST": server.host,
        "STAFFGRAPH_PORT": str(server.port),
        "STAFFGRAPH_CONFIG": str(server.config),
        "STAFFGRAPH_WORKERS": str(server.workers),
        "STAFFGRAPH_PROCESSES": str(count),
        PARENT_PID_ENV: str(os.getpid()),
        FAILURE_DIR_ENV: reports.name,
    }
    argv = [sys.executable, "-m", "server.cli", "serve", "--reuse-port"]
    if insecure:
        argv.append("--insecure")
    if database.embedded:
        argv.append("--embedded-by-parent")
    lead = subprocess.Popen([*argv, "--lead"], env=env)
    children = {lead.pid: lead}
    children.update(
        (child.pid, child) for child in (subprocess.Popen(argv, env=env) for _ in range(count - 1))
    )
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        del signum, frame
        stopping = True
        _signal_all(children)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    failure = 0
    try:
        while children:
            pid, status = os.wait()
            child = children.pop(pid, None)
            if child is None:
                continue
            child.returncode = os.waitstatus_to_exitcode(status)
            # A child ending during a shutdown is the shutdown, unless its own shutdown overran
            # its deadline: that is told on, as a hard stop of a lone process is.
            overran = child.returncode == HARD_STOP_EXIT
            if child.returncode != 0 and (not stopping or overran):
                failure = failure or (child.returncode if child.returncode > 0 else 1)
            if not stopping:
                # One process gone means the server is broken: stop the rest.
                stopping = True
                _signal_all(children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with reports:
            reasons = _reasons(Path(reports.name))
    return failure, reasons


def report_start_failure(message: str) -> bool:
    """In a child of ``serve --processes N``: hand the start's one-line failure to the parent
    (see :func:`run_children`). False when this process has no parent to tell."""
    directory = os.environ.get(FAILURE_DIR_ENV)
    if not directory:
        return False
    try:
        (Path(directory) / str(os.getpid())).write_text(message, encoding="utf-8")
    except OSError:  # the parent is gone with its directory: say it here
        return False
    return True


def _reasons(directory: Path) -> list[str]:
    """The distinct failure lines the children wrote, oldest first."""
    files = sorted(directory.iterdir(), key=lambda path: path.stat().st_mtime_ns)
    lines = (path.read_text(encoding="utf-8").strip() for path in files)
    return list(dict.fromkeys(line for line in lines if line))


def watch_parent(hard_stop: HardStop, *, parent: int | None = None, every: float = 1.0) -> None:
    """In a child: end this process (SIGTERM, a graceful shutdown) once its parent is gone.

    A parent killed with SIGKILL cannot stop its children; they notice that they were handed
    to another parent and stop themselves within ``every`` seconds. An orphan must not linger
    on the port: ``hard_stop`` is armed at once, so if the graceful shutdown has not ended the
    process by its deadline (a start-up still under way, a stuck run, a signal handler that
    never ran), it exits hard.

    Args:
        hard_stop: the process's hard stop (started by the caller).
        parent: the parent's pid; by default :data:`PARENT_PID_ENV`, else the current parent.
            A child must not take it from ``os.getppid()`` alone: a parent that died while
            the child was starting would leave it watching its new parent (init) forever.
        every: seconds between looks at the parent.
    """
    if parent is None:
        parent = int(os.environ.get(PARENT_PID_ENV) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        log.warning("parent process %d is gone; shutting down", parent)
        hard_stop.arm()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="staffgraph-parent-watch", daemon=True).start()


def _signal_all(children: dict[int, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.returncode is None:
            try:
                child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
