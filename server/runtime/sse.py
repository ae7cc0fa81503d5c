"""Server-sent events exactly as the LangGraph Server API frames them.

``event: <name>\\r\\ndata: <compact JSON>\\r\\n[id: <id>\\r\\n]\\r\\n``, the ``id`` line only for
resumable streams, ``: heartbeat`` comments while idle, and no ``end`` event: the body ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from starlette.responses import StreamingResponse

from server.runtime.broker import DONE_EVENT, parse_event_id
from server.runtime.events import mode_of_event
from server.runtime.outcome import RUN_NOT_FOUND, RUN_NOT_FOUND_ERROR, decode_done
from server.runtime.runtime import Runtime
from server.runtime.thread_runs import UnannouncedRuns
from server.serde import dumps

__all__ = ["HEARTBEAT", "frame", "run_events", "run_not_found", "sse_response", "thread_events"]

HEARTBEAT = b": heartbeat\r\n\r\n"

_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE frame (``data`` is compact JSON, so it never contains a newline)."""
    head = b"event: " + event.encode() + b"\r\ndata: " + data + b"\r\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\r\n"
    return head + b"\r\n"


def sse_response(
    body: AsyncIterator[bytes], *, headers: dict[str, str] | None = None
) -> StreamingResponse:
    """A ``text/event-stream`` response streaming ``body``."""
    return StreamingResponse(
        body,
        media_type="text/event-stream; charset=utf-8",
        headers={**_HEADERS, **(headers or {})},
    )


async def run_not_found() -> AsyncIterator[bytes]:
    """The stream of a run that does not exist, as the reference sends it: one ``error``."""
    yield frame("error", RUN_NOT_FOUND_ERROR)


async def run_events(
    runtime: Runtime,
    run_id: str,
    *,
    thread_id: str,
    after: str | None = None,
    live: bool = False,
    with_ids: bool = False,
    modes: frozenset[str] | None = None,
    cancel_on_disconnect: bool = False,
) -> AsyncIterator[bytes]:
    """SSE frames of one run until it ends (heartbeats while idle).

    Args:
        runtime: the process runtime.
        run_id: the run to follow.
        thread_id: its thread (for cancelling on disconnect).
        after: replay after this event id (``Last-Event-ID``; ``-1`` for everything).
        live: join from now on instead of from the run's first event.
        with_ids: send ``id:`` lines (resumable runs).
        modes: only events of these stream modes (``metadata`` and ``error`` always pass).
        cancel_on_disconnect: cancel the run if the client goes away before it ends.
    """
    finished = False
    try:
        async for event in runtime.follow(run_id, after=after, live=live):
            if event is None:
                yield HEARTBEAT
                continue
            if event.event == DONE_EVENT:
                finished = True
                if decode_done(event.data)[1] == RUN_NOT_FOUND:  # deleted while it ran
                    yield frame("error", RUN_NOT_FOUND_ERROR, event.id if with_ids else None)
                return
            if modes is not None and event.event not in ("metadata", "error"):
                if mode_of_event(event.event) not in modes:
                    continue
            yield frame(event.event, event.data, event.id if with_ids else None)
        finished = True
    finally:
        if not finished and cancel_on_disconnect:
            runtime.spawn(runtime.cancel_on_disconnect(thread_id, run_id))


async def thread_events(
    runtime: Runtime,
    watcher: AsyncGenerator[str | None, None],
    unannounced: UnannouncedRuns,
    *,
    first: list[str],
    run_modes: bool,
    after: str | None = None,
) -> AsyncIterator[bytes]:
    """SSE frames of every run on a thread, current and future, each ending in ``run_done``.

    The stream stays open (with heartbeats) until the client leaves.

    Args:
        runtime: the process runtime.
        watcher: the thread's :meth:`~server.runtime.broker.Broker.watch_thread`, started
            before ``first`` was read (so a run starting in between is in one of them); this
            closes it.
        unannounced: the thread's runs in Postgres that ``watcher`` may not announce, begun
            before it; asked after each run followed and on each idle tick.
        first: runs in flight when the client connected, or that ended as it connected
            (``unannounced``'s first answer), followed before any new one.
        run_modes: send the runs' own frames (else only the ``run_done`` markers).
        after: ``Last-Event-ID`` of a reconnecting client: the runs in ``first`` are replayed
            after it. Broker ids grow across runs, so a run whose first event is newer than
            ``after`` replays from its start and one the client was inside resumes behind it.
    """
    # Only runs already in flight at connect time can hold frames the client has seen.
    replay = {run_id: after for run_id in first} if parse_event_id(after) is not None else {}
    queue = list(first)
    followed: set[str] = set()
    try:
        while True:
            while queue:
                run_id = queue.pop(0)
                if run_id in followed:
                    continue
                followed.add(run_id)
                last_id = "0-0"
                ended = False
                async for event in runtime.follow(run_id, after=replay.get(run_id)):
                    if event is None:
                        yield HEARTBEAT
                        continue
                    last_id = event.id
                    if event.event == DONE_EVENT:
                        ended = True
                        break
                    if run_modes:
                        yield frame(event.event, event.data, event.id)
                # Without the marker the replay began past it: the client saw ``run_done``.
                if ended or run_id not in replay:
                    done = dumps({"status": "run_done", "run_id": run_id})
                    yield frame("metadata", done, last_id)
                # The watcher holds what was announced meanwhile; Postgres also knows a run
                # another process started before the watcher's want reached it.
                queue.extend(await unannounced.check(followed))
            announced = await anext(watcher)
            if announced is None:
                yield HEARTBEAT
                # A broker may tell watchers of a run only once it learnt that they watch
                # (Postgres: a want on its way): ask Postgres for one that ran meanwhile.
                queue.extend(await unannounced.check(followed))
            else:
                queue.append(announced)
    finally:
        await watcher.aclose()
