"""A run quiet for 30 s over Redis: waits, streams and joins stay open until it ends.

Before the fix, redis-py's socket timeout equalled the ``XREAD`` block time, so any follower
of a run quiet for 5 s failed (``runs.wait`` answered 500 after 5.1 s).
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph_sdk import get_client

from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

QUIET_SECONDS = 30


async def test_followers_of_a_quiet_run_over_redis_see_its_end(
    redis_url: str,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    server: LiveServer = server_factory(env={"REDIS_URL": redis_url})
    client = get_client(url=server.url, timeout=QUIET_SECONDS + 60)
    waited_thread = (await client.threads.create())["thread_id"]
    streamed_thread = (await client.threads.create())["thread_id"]
    joined = await client.runs.create(
        (await client.threads.create())["thread_id"], "slow", input={"seconds": QUIET_SECONDS}
    )

    async def wait() -> object:
        return await client.runs.wait(waited_thread, "slow", input={"seconds": QUIET_SECONDS})

    async def stream() -> list[str]:
        parts = client.runs.stream(
            streamed_thread, "slow", input={"seconds": QUIET_SECONDS}, stream_mode="values"
        )
        return [part.event async for part in parts]

    async def join_stream() -> list[object]:
        # No stream_mode: the SDK sends an empty ``stream_mode=``, which means every mode.
        parts = client.runs.join_stream(joined["thread_id"], joined["run_id"])
        return [part async for part in parts]

    waited, streamed, join_parts = await asyncio.gather(wait(), stream(), join_stream())
    assert waited == {"seconds": QUIET_SECONDS, "log": [f"slept {QUIET_SECONDS}", "done"]}
    assert streamed[0] == "metadata"
    assert streamed[-3:] == ["values", "values", "values"]  # input, after nap, after done
    joined_values = [p.data for p in join_parts if p.event == "values"]
    assert joined_values[-1]["log"] == [f"slept {QUIET_SECONDS}", "done"]  # type: ignore[index]
    final = await client.runs.join(joined["thread_id"], joined["run_id"])
    assert final["log"] == [f"slept {QUIET_SECONDS}", "done"]
    assert "Traceback" not in server.log()
