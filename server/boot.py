"""The port answers from the first moment: ``/ok`` while the app starts behind it.

Starting the app is seconds of work on a small machine: importing LangGraph, langchain and the
API, starting or joining Postgres, migrating it, starting the run workers. ``staffgraph serve``
binds its port first and serves a :class:`StartingApp` there, which starts the real app in the
background (the imports in a thread, its lifespan on the event loop) and, until it is up:

* answers ``GET /ok`` (liveness: the process is up and serving) with ``{"ok": true}``;
* answers ``GET /ready`` with 503 and a ``startup`` check that is not ok yet;
* holds every other request until the app is up (at most :data:`START_WAIT` seconds), then
  hands it to the app; if the start fails, or takes longer, it answers 503 with a JSON body.

Once the app is up every request goes straight to it, ``/ok`` and ``/ready`` included. A start
that fails calls ``on_failure`` with the one line to show the operator; the CLI then stops the
server and exits with it. A shutdown during the start cancels it and waits for it to unwind
(at most :data:`START_STOP_WAIT` seconds); a start that fails once the shutdown has begun was
interrupted by it, not a failure.

This module imports nothing heavy: it is what runs before the port opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["BUILD_STOP_WAIT", "START_STOP_WAIT", "START_WAIT", "StartingApp"]

log = logging.getLogger(__name__)

START_WAIT = 60.0
"""Seconds a request that came while the app was starting waits for it before a 503."""

BUILD_STOP_WAIT = 30.0
"""Seconds a shutdown during the start waits for ``build`` to return: what it started (the
embedded Postgres) is released once it has. A ``build`` stuck longer is abandoned with the
process: it runs in a daemon thread."""

START_STOP_WAIT = 30.0
"""Seconds a shutdown during the start waits for the app's lifespan start, once cancelled, to
unwind what it had opened. One that takes longer (something in it ignored the cancellation) is
left behind: the rest of the shutdown goes on without it, and if the start still holds the
process's exit, the hard stop (:mod:`server.hard_stop`) ends it."""

_OK = orjson.dumps({"ok": True})
_NOT_READY = orjson.dumps(
    {"status": "unavailable", "checks": {"startup": {"ok": False, "error": "starting"}}}
)


class StartingApp:
    """An ASGI app that serves ``/ok`` at once and the real app once :attr:`build` made it.

    Args:
        build: makes the real app; called in a thread of its own (it may import for seconds
            and block on I/O). Its lifespan is entered on the event loop afterwards.
        describe: the one line to show for an exception raised by ``build`` or the lifespan's
            start-up (log the unexpected ones there).
        started: called on the event loop once the app's lifespan has started, before any
            request reaches the app.
        stop_wait: seconds a shutdown waits for a cancelled lifespan start to unwind.
    """

    def __init__(
        self,
        build: Callable[[], Starlette],
        *,
        describe: Callable[[Exception], str],
        started: Callable[[], None] | None = None,
        stop_wait: float = START_STOP_WAIT,
    ) -> None:
        self._build = build
        self._stop_wait = stop_wait
        self._stopping = False
        self._closing = False
        self._describe = describe
        self._started = started
        self.on_failure: Callable[[], None] = _nothing
        """Called when the start fails, or :meth:`fail` is called; :attr:`failure` says why."""
        self.app: Starlette | None = None
        """The real app, once its lifespan has started."""
        self.failure: str | None = None
        """The one line to stop with: the first failure, if any."""
        self._settled = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._builder: threading.Thread | None = None
        self._lifespan: AbstractAsyncContextManager[Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if app is not None:
            await app(scope, receive, send)
            return
        kind = scope["type"]
        if kind == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        if kind == "http" and scope["method"] == "GET" and scope["path"] in ("/ok", "/ready"):
            ok = scope["path"] == "/ok"
            await _respond(send, 200 if ok else 503, _OK if ok else _NOT_READY)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), START_WAIT)
        app = self.app
        if app is not None:
            await app(scope, receive, send)
        elif kind == "http":
            detail = (
                "the server is still starting; retry shortly"
                if self.failure is None
                else "the server could not start"
            )
            await _respond(send, 503, orjson.dumps({"detail": detail}), retry_after=True)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1013})

    def fail(self, message: str) -> None:
        """Stop serving because of ``message`` (from any thread): ``on_failure`` is called."""
        if self.failure is None:
            self.failure = message
        self.on_failure()
        self._settle()

    def stop_waiting(self) -> None:
        """A shutdown has begun (from any thread, signal handlers too): answer the requests held
        for the start now. A start that fails from here on was interrupted by the shutdown (a
        signal to the process group also ends the embedded Postgres's ``pg_ctl``): it is logged at
        info level, not reported as a failure."""
        self._stopping = True
        self._settle()

    def _settle(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settled.set)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._start(), name="staffgraph-start")
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self._stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def _start(self) -> None:
        try:
            app = await self._built()
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
        except Exception as exc:
            message = self._describe(exc)
            if self._stopping:
                # Info, not a warning: the operator asked for the stop, or (a child of
                # ``serve --processes N``) another process's failure did, and that one is told.
                log.info("the start was interrupted by the shutdown: %s", message)
                self._settle()
            else:
                self.fail(message)
            return
        if self._stopping:
            # The shutdown began meanwhile (its cancellation, if it came, was absorbed on the
            # way): close what just started; the shutdown waits for it rather than cancel it.
            self._closing = True
            await self._exit(lifespan)
            return
        self._lifespan = lifespan
        if self._started is not None:
            self._started()
        self.app = app
        self._settled.set()

    def _built(self) -> asyncio.Future[Starlette]:
        """Run ``build`` in a daemon thread (not the loop's executor: a shutdown must not wait
        for it without bound); its result or exception arrives on the loop."""
        built: Future[Starlette] = Future()

        def run() -> None:
            if not built.set_running_or_notify_cancel():  # the start was cancelled already
                return
            try:
                built.set_result(self._build())
            except BaseException as exc:
                built.set_exception(exc)

        self._builder = threading.Thread(target=run, name="staffgraph-start", daemon=True)
        self._builder.start()
        return asyncio.wrap_future(built)

    async def _stop(self) -> None:
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            if not self._closing:  # a start closing what it opened is not cut short
                task.cancel()
            # Bounded: a lifespan start that swallows the cancellation and waits on must not
            # hold the rest of the shutdown. The task is left behind: asyncio cancels it again
            # as the loop closes, and the process's hard stop (server.hard_stop) ends a process
            # it still holds.
            await asyncio.wait({task}, timeout=self._stop_wait)
            if not task.done():
                log.warning(
                    "the app's start did not stop within %.0f s of the shutdown; "
                    "shutting down without it",
                    self._stop_wait,
                )
        builder = self._builder
        if builder is not None and builder.is_alive():
            await asyncio.to_thread(builder.join, BUILD_STOP_WAIT)
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await self._exit(lifespan)

    @staticmethod
    async def _exit(lifespan: AbstractAsyncContextManager[Any]) -> None:
        try:
            await lifespan.__aexit__(None, None, None)
        except Exception:
            log.exception("the app's shutdown failed")


def _nothing() -> None:
    pass


async def _respond(send: Send, status: int, body: bytes, *, retry_after: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
