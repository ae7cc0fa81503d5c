"""The watchdog that ends a shutdown overrunning its deadline, with the process's exit replaced."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
import uvicorn
from starlette.applications import Starlette

from server.boot import StartingApp
from server.cli import _GracefulServer
from server.hard_stop import HARD_STOP_EXIT, HardStop


class Ending:
    """Records what a hard stop did, in order, instead of ending the test's process."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.ended = threading.Event()

    def release(self) -> None:
        self.calls.append("release")

    def exit(self, code: int) -> None:
        self.calls.append(f"exit {code}")
        self.ended.set()


def test_a_shutdown_that_overruns_releases_then_exits_70(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ending = Ending()
    stop = HardStop(0.05, release=ending.release, exit_process=ending.exit)
    watcher = stop.start()
    with caplog.at_level(logging.ERROR, logger="server.hard_stop"):
        stop.arm()
        assert ending.ended.wait(10)
        watcher.join(10)
    assert ending.calls == ["release", f"exit {HARD_STOP_EXIT}"]
    assert "the shutdown did not finish within 0 s" in caplog.text


def test_a_shutdown_that_finishes_in_time_ends_nothing() -> None:
    ending = Ending()
    stop = HardStop(0.2, release=ending.release, exit_process=ending.exit)
    watcher = stop.start()
    stop.arm()
    stop.finished()
    watcher.join(10)
    assert not watcher.is_alive()
    assert ending.calls == []


def test_an_unarmed_watchdog_waits_for_ever_and_ends_with_the_server() -> None:
    ending = Ending()
    stop = HardStop(0.0, release=ending.release, exit_process=ending.exit)
    watcher = stop.start()
    assert not ending.ended.wait(0.2)  # never armed: a deadline of 0 s does not count
    stop.finished()
    watcher.join(10)
    assert not watcher.is_alive()
    assert ending.calls == []


class Saying(Ending):
    """Also records the line a hard stop prints for a failed start."""

    def say(self, line: str) -> None:
        self.calls.append(f"say {line}")


def _calls_of_a_hard_stop(begin_shutdown: Callable[[HardStop], None]) -> list[str]:
    """What a hard stop with a short deadline did, once ``begin_shutdown`` armed it."""
    ending = Saying()
    stop = HardStop(0.05, release=ending.release, exit_process=ending.exit, say=ending.say)
    watcher = stop.start()
    begin_shutdown(stop)
    assert ending.ended.wait(10)
    watcher.join(10)
    return ending.calls


def test_a_failed_start_whose_shutdown_overruns_still_says_why() -> None:
    def fail_twice(stop: HardStop) -> None:
        stop.arm("graph 'agent' failed to load: boom")
        stop.arm("a later failure")  # the first one is the start's

    assert _calls_of_a_hard_stop(fail_twice) == [
        "release",
        "say graph 'agent' failed to load: boom",
        f"exit {HARD_STOP_EXIT}",
    ]


def test_the_server_arms_its_hard_stop_with_the_failed_starts_line() -> None:
    def fail_the_start(stop: HardStop) -> None:
        starting = StartingApp(Starlette, describe=str)
        _GracefulServer(uvicorn.Config(starting), starting=starting, hard_stop=stop)
        starting.fail("cannot connect to Postgres at localhost:5432")

    assert _calls_of_a_hard_stop(fail_the_start) == [
        "release",
        "say cannot connect to Postgres at localhost:5432",
        f"exit {HARD_STOP_EXIT}",
    ]
