"""A loopback HTTP receiver for webhook tests: records every POST, answers scripted statuses."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed."""
        return json.loads(self.body)


class WebhookReceiver:
    """State shared between the test and the server thread."""

    def __init__(self) -> None:
        self.url = ""
        self._received: queue.Queue[Delivery] = queue.Queue()
        self._statuses: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def answer(self, path: str, *statuses: int) -> None:
        """Answer the next POSTs to ``path`` with ``statuses`` in turn (then 200)."""
        with self._lock:
            self._statuses[path] = list(statuses)

    def _status_for(self, path: str) -> int:
        with self._lock:
            pending = self._statuses.get(path)
            return pending.pop(0) if pending else 200

    async def next(self, *, timeout: float = 30.0) -> Delivery:
        """The next POST received (waits for it)."""
        return await asyncio.to_thread(self._received.get, True, timeout)

    def drain(self) -> list[Delivery]:
        """Everything received and not yet taken."""
        out = []
        while not self._received.empty():
            out.append(self._received.get_nowait())
        return out


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(length, 5_000_000))
            status = receiver._status_for(self.path)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
            receiver._received.put(Delivery(self.path, dict(self.headers.items()), body))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.1 for one test."""
    receiver = WebhookReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
