"""An orphaned server child ends itself, gracefully or, past a deadline, at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psutil

from tests.support.server import REPO

# A parent that starts one child, names itself in its environment as `serve --processes N`
# does, and prints the child's pid; it is killed at once, usually before the child has even
# started watching. The child either shuts down on SIGTERM or ignores it (a shutdown that
# never ends).
_PARENT = textwrap.dedent(
    """
    import os, subprocess, sys
    env = {**os.environ, "STAFFGRAPH_PARENT_PID": str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env)
    print(child.pid, flush=True)
    child.wait()
    """
)
_CHILD = textwrap.dedent(
    """
    import signal, time
    from server.hard_stop import HardStop
    from server.processes import watch_parent
    if {ignore}:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    hard_stop = HardStop(0.5)
    hard_stop.start()
    watch_parent(hard_stop, every=0.05)
    time.sleep(120)
    """
)


def _orphan(*, ignore_sigterm: bool) -> psutil.Popen:
    parent = psutil.Popen(
        [sys.executable, "-c", _PARENT, _CHILD.format(ignore=ignore_sigterm)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    parent.kill()  # SIGKILL: the parent cannot pass anything on
    parent.wait()
    return child


def test_an_orphan_shuts_down_on_its_own() -> None:
    child = _orphan(ignore_sigterm=False)
    gone, alive = psutil.wait_procs([child], timeout=30)
    for process in alive:
        process.kill()
    assert not alive


def test_an_orphan_whose_shutdown_hangs_exits_hard() -> None:
    child = _orphan(ignore_sigterm=True)
    gone, alive = psutil.wait_procs([child], timeout=30)
    for process in alive:
        process.kill()
    assert not alive
