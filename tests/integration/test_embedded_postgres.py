"""The embedded PostgreSQL: data survives restarts, handles are shared, the last one stops it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
from typing_extensions import TypedDict

from state.embedded import EmbeddedPostgres
from tests.support.fixtures import (
    assert_postgres_stopped,
    fresh_home,  # noqa: F401  (fixture `home`)
    postmaster_pid,
)
from tests.support.server import REPO

# A second process taking a handle on the same home. It prints one JSON line, then either
# releases at once, waits for a line on stdin before releasing, or dies without releasing.
_HOLDER = """
import json, os, signal, sys
from pathlib import Path
import psycopg
from state.embedded import EmbeddedPostgres

handle = EmbeddedPostgres(Path(sys.argv[1]))
url = handle.start()
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("INSERT INTO notes (body) VALUES ('from the second process')")
    count = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
pid = int((handle.pgdata / "postmaster.pid").read_text().split()[0])
print(json.dumps({"url": url, "postmaster": pid, "count": count}), flush=True)
if sys.argv[2] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[2] == "wait":
    sys.stdin.readline()
handle.stop()
"""


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _query(url: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def _holder(home: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(home), mode],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class HolderReport(TypedDict):
    url: str
    postmaster: int
    count: int


def _report(process: subprocess.Popen[str]) -> HolderReport:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=30)
        raise AssertionError(f"holder exited with {process.returncode}: {process.stderr}")
    report: HolderReport = json.loads(line)
    return report


def test_restart_on_the_same_home_keeps_data(home: Path) -> None:
    first = EmbeddedPostgres(home)
    url = first.start()
    _query(url, "CREATE TABLE notes (body text)")
    _query(url, "INSERT INTO notes (body) VALUES ('written before the restart')")
    pid = postmaster_pid(home)
    first.stop()
    assert_postgres_stopped(home, pid)

    second = EmbeddedPostgres(home)
    url = second.start()
    try:
        assert postmaster_pid(home) != pid  # a new server on the old data
        assert _query(url, "SELECT body FROM notes") == [("written before the restart",)]
    finally:
        second.stop()


def test_second_process_shares_the_running_server(home: Path) -> None:
    first = EmbeddedPostgres(home)
    url = first.start()
    _query(url, "CREATE TABLE notes (body text)")
    _query(url, "INSERT INTO notes (body) VALUES ('from the first process')")
    pid = postmaster_pid(home)

    holder = _holder(home, "release")
    report = _report(holder)
    assert holder.wait(timeout=30) == 0, holder.stderr

    assert report["url"] == url
    assert report["postmaster"] == pid
    assert report["count"] == 2  # it saw our row and added its own
    # The second process released its handle; the server keeps running for the first.
    assert _running(pid)
    assert sorted(_query(url, "SELECT body FROM notes")) == [
        ("from the first process",),
        ("from the second process",),
    ]

    first.stop()
    assert_postgres_stopped(home, pid)


def test_last_handle_stops_the_server_even_after_another_process_died(home: Path) -> None:
    setup = EmbeddedPostgres(home)
    _query(setup.start(), "CREATE TABLE notes (body text)")

    crashed = _holder(home, "crash")
    pid = _report(crashed)["postmaster"]
    assert crashed.wait(timeout=30) < 0  # killed without releasing its handle
    setup.stop()
    assert _running(pid)  # the dead process still counted as a holder

    last = EmbeddedPostgres(home)
    last.start()
    last.stop()
    assert_postgres_stopped(home, pid)


def test_handles_in_one_process_are_counted(home: Path) -> None:
    one, two = EmbeddedPostgres(home), EmbeddedPostgres(home)
    url = one.start()
    assert two.start() == url
    pid = postmaster_pid(home)

    one.stop()
    assert _query(url, "SELECT 1") == [(1,)]

    two.stop()
    assert_postgres_stopped(home, pid)


def test_handle_taken_again_after_release_keeps_the_server(home: Path) -> None:
    setup = EmbeddedPostgres(home)
    _query(setup.start(), "CREATE TABLE notes (body text)")
    holder = _holder(home, "wait")
    pid = _report(holder)["postmaster"]
    setup.stop()  # the holder still has it: the server keeps running

    again = EmbeddedPostgres(home)
    url = again.start()
    assert holder.stdin is not None
    holder.stdin.write("release\n")
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0, holder.stderr

    # The holder was not the last handle: this process took one again after releasing its own.
    assert postmaster_pid(home) == pid
    assert _query(url, "SELECT count(*) FROM notes") == [(1,)]
    again.stop()
    assert_postgres_stopped(home, pid)
