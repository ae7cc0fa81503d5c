"""Cron schedules: what croniter accepts, timezones, next ticks, the run a firing makes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.runtime.cron import (
    ScheduleError,
    check_schedule,
    check_timezone,
    next_run_date,
    run_body,
)


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 9 * * 1-5", "@daily", "* * * * * */10"])
def test_schedules_the_reference_accepts(schedule: str) -> None:
    check_schedule(schedule)


@pytest.mark.parametrize("schedule", ["not a cron", "61 * * * *", "", "* * * * * * * *"])
def test_unreadable_schedules_are_refused_with_the_reference_wording(schedule: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        check_schedule(schedule)
    assert str(caught.value).startswith(f"Invalid cron schedule: '{schedule}'. Reason:")


def test_a_schedule_that_never_fires_is_refused() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        check_schedule("0 0 31 2 *")  # 31 February
    assert next_run_date("0 0 31 2 *", None, after=datetime.now(UTC)) is None


def test_timezones() -> None:
    check_timezone(None)
    check_timezone("America/New_York")
    with pytest.raises(ScheduleError) as caught:
        check_timezone("Mars/Base")
    assert str(caught.value) == (
        "Invalid timezone: 'Mars/Base'. Use IANA timezone format (e.g. 'America/New_York')."
    )


def test_next_run_date_reads_the_schedule_in_its_timezone() -> None:
    after = datetime(2026, 12, 2, 3, 59, tzinfo=UTC)
    # The reference answered exactly these next_run_date values for the same schedules.
    assert next_run_date("0 9 * * *", None, after=after) == datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert next_run_date("0 9 * * *", "Europe/Paris", after=after) == datetime(
        2026, 12, 2, 8, tzinfo=UTC
    )
    assert next_run_date("0 10 * * *", "Asia/Tokyo", after=after) == datetime(
        2026, 12, 3, 1, tzinfo=UTC
    )
    assert next_run_date("*/10 * * * * *", None, after=after) == datetime(
        2026, 12, 2, 4, 0, tzinfo=UTC
    )  # six fields: the sixth is seconds
    summer = datetime(2026, 7, 1, 3, 59, tzinfo=UTC)
    assert next_run_date("0 9 * * *", "Europe/Paris", after=summer) == datetime(
        2026, 7, 1, 7, tzinfo=UTC
    )  # daylight saving time
    assert next_run_date("*/1 * * * *", None, after=after) == datetime(2026, 12, 2, 4, tzinfo=UTC)
    on_tick = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    assert next_run_date("*/1 * * * *", None, after=on_tick) == datetime(
        2026, 12, 2, 4, 1, tzinfo=UTC
    )  # strictly after: a tick that just fired is not due again


def _cron(**overrides: object) -> dict[str, object]:
    cron: dict[str, object] = {
        "thread_id": None,
        "on_run_completed": "delete",
        "metadata": {"from": "cron", "both": "cron"},
        "payload": {
            "assistant_id": "simple",
            "schedule": "* * * * *",
            "input": {"x": 1},
            "metadata": {"both": "payload"},
            "config": {"configurable": {"cron_id": "c-1"}},
        },
    }
    cron.update(overrides)
    return cron


def test_a_firing_runs_the_payload_with_the_crons_metadata_under_its_own() -> None:
    body = run_body(_cron())
    assert body.assistant_id == "simple" and body.input == {"x": 1}
    assert body.metadata == {"from": "cron", "both": "payload"}
    assert body.on_completion == "delete"
    assert body.config is not None and body.config.configurable == {"cron_id": "c-1"}


def test_stateless_keep_and_stateful_defaults() -> None:
    assert run_body(_cron(on_run_completed="keep")).on_completion == "keep"
    stateful = run_body(_cron(thread_id="t-1", on_run_completed=None))
    assert stateful.multitask_strategy == "enqueue" and stateful.on_completion is None
