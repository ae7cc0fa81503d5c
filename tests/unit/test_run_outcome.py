"""A run's final state is serialised once: its last ``values`` event, the ``runs/wait`` output
and the thread's values (sent to Postgres as those bytes) share one JSON document."""

from __future__ import annotations

from typing import Any

from server.runtime.events import StreamConverter
from server.runtime.outcome import succeeded


class _Counted:
    """A state value that counts how often it is serialised (:mod:`server.serde` calls
    ``to_json`` for objects it has no other rule for)."""

    def __init__(self) -> None:
        self.calls = 0

    def to_json(self) -> Any:
        self.calls += 1
        return "counted"


async def test_the_end_reuses_the_json_of_the_last_values_event() -> None:
    counted = _Counted()
    converter = StreamConverter(["values"])
    [(event, data)] = converter.convert((), "values", {"n": 1, "c": counted})

    outcome = await succeeded(None, "thread", converter)  # type: ignore[arg-type]

    assert event == "values" and data == b'{"n":1,"c":"counted"}'
    assert outcome.output is data and outcome.values_json is data
    assert outcome.values == {"n": 1, "c": counted}
    assert counted.calls == 1


async def test_without_a_values_event_the_state_is_serialised_once_at_the_end() -> None:
    counted = _Counted()
    converter = StreamConverter(["updates"])
    assert converter.convert((), "values", {"c": counted}) == []
    assert counted.calls == 0

    outcome = await succeeded(None, "thread", converter)  # type: ignore[arg-type]

    assert outcome.output == b'{"c":"counted"}' and outcome.values_json is outcome.output
    assert counted.calls == 1


async def test_a_subgraphs_values_are_not_the_runs_state() -> None:
    converter = StreamConverter(["values"])
    converter.convert((), "values", {"n": 1})
    converter.convert(("child:1",), "values", {"n": 2})

    outcome = await succeeded(None, "thread", converter)  # type: ignore[arg-type]

    assert outcome.output == b'{"n":1}' and outcome.values == {"n": 1}


async def test_a_state_with_its_interrupts_taken_out_is_serialised_anew_for_the_thread() -> None:
    converter = StreamConverter(["values"])
    [(_, data)] = converter.convert((), "values", {"n": 1, "__interrupt__": []})

    outcome = await succeeded(None, "thread", converter)  # type: ignore[arg-type]

    assert outcome.output is data  # runs/wait shows the interrupts, as the reference does
    assert outcome.values == {"n": 1} and outcome.values_json is None


async def test_a_run_that_produced_no_state_outputs_an_empty_object() -> None:
    outcome = await succeeded(None, "thread", StreamConverter(["values"]))  # type: ignore[arg-type]

    assert outcome.output == b"{}" and outcome.values is None and outcome.values_json is None
