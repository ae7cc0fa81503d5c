"""What the bench scripts share: free ports, a server process to measure, CPU time, statistics."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

UNREACHED_LIMITS = {
    "STAFFGRAPH_RATE_LIMIT_PER_MINUTE": "10000000",
    "STAFFGRAPH_RATE_LIMIT_BURST": "10000000",
    "STAFFGRAPH_MAX_CONCURRENT_RUNS": "1000000",
}
"""Per-caller limits that are checked on every request and run but never reached: a bench of
one client measures the server, with what the limits cost, rather than the limits."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def spread(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    """``median (min–max)`` of one figure over rounds, e.g. ``14.60 ms (12.10–25.60)``."""
    real = [v for v in values if v == v]  # NaN-free
    if not real:
        return "n/a"
    med = statistics.median(real)
    if len(real) == 1:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} ({min(real):.{digits}f}–{max(real):.{digits}f})"


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, its live children and the children it reaped.

    Reaped children count through the parent's ``children_*`` times (Postgres backends that
    exited, for the postmaster). A process that vanished counts as zero.
    """
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for child in children:
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return total


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process alone: not the servers it started, whose
    time :func:`tree_cpu_seconds` of this process would add."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


@dataclass
class ServerProcess:
    """A server started by a bench: its URL, process, log and when it answered."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: str
    spawned_at: float
    """``time.perf_counter()`` when the process was spawned."""
    ok_after_s: float
    """Seconds from spawning the process to the first 200 from ``/ok``."""
    ok_cpu_s: float
    """CPU seconds the process (and its children) had used by then: start-up's cost without
    the wait for a busy machine's cores."""


def wait_for(
    url: str,
    path: str,
    *,
    process: subprocess.Popen[bytes] | None,
    name: str,
    timeout: float,
    log_path: str = "",
) -> None:
    """Poll ``url + path`` every 20 ms until it answers 200.

    Raises:
        RuntimeError: the process exited or did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited early; log in {log_path}")
            try:
                if client.get(f"{url}{path}").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not answer {path} in {timeout:.0f} s; log {log_path}"
                )
            time.sleep(0.02)  # the process gives no event to wait on other than answering


@contextmanager
def run_server(
    name: str,
    argv: list[str],
    env: dict[str, str],
    port: int,
    *,
    cwd: Path = REPO,
    timeout: float = 180,
) -> Iterator[ServerProcess]:
    """Start a server process, wait for ``/ok``, yield it, and stop it (SIGTERM, then SIGKILL)."""
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, "/ok", process=proc, name=name, timeout=timeout, log_path=log.name)
        ok_after = time.perf_counter() - started
        yield ServerProcess(url, proc, log.name, started, ok_after, tree_cpu_seconds(proc.pid))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:  # it exited, its whole group with it
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
