"""A local LangSmith ingestion endpoint that records the runs the ``langsmith`` client sends.

It serves what the installed client (0.14) calls when tracing:

* ``GET /info``: instance flags and the batch-ingest config. ``compression=True`` announces
  ``zstd_compression_enabled`` so the client sends zstd-compressed multipart bodies;
  ``multipart=False`` tells it to use ``/runs/batch`` instead.
* ``POST /runs/multipart``: ``multipart/form-data`` parts named ``post.<id>``,
  ``patch.<id>`` (the run without its big fields) and ``post.<id>.inputs``, ``.outputs``,
  ``.events``, ``.extra``, ``.error``, ``.serialized``; ``feedback.<id>``;
  ``attachment.<id>.<name>``. Bodies may be ``Content-Encoding: zstd`` or ``gzip``.
* ``POST /runs/batch``: JSON ``{"post": [run, ...], "patch": [run, ...]}``.
* ``POST /runs`` and ``PATCH /runs/<id>``: one run, when the client is not batching.

It lives in ``bench/`` because ``bench/tracing_overhead.py`` traces to it; the tracing tests
import it from here too (bench never imports tests).

Anything else is answered 404 and listed in :attr:`LangSmithCollector.unhandled`.

The server is uvicorn in a thread on a socket bound before the thread starts, so it accepts
connections from the moment :meth:`start` returns. :meth:`stop` closes it (connections are
then refused: a LangSmith outage); :meth:`stall` makes ingestion hang until
:meth:`resume` (a slow LangSmith).
"""

from __future__ import annotations

import gzip
import io
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
import zstandard
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["LangSmithCollector", "TraceNode"]

_MAX_BODY = 64 * 1024 * 1024
_STALL_LIMIT = 30.0
_DISPOSITION_NAME = re.compile(rb'name="([^"]*)"')
_RUN_FIELDS = ("inputs", "outputs", "events", "extra", "error", "serialized")


@dataclass
class TraceNode:
    """One run in a trace tree."""

    run: dict[str, Any]
    children: list[TraceNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.run.get("name"))

    @property
    def run_type(self) -> str:
        return str(self.run.get("run_type"))

    @property
    def metadata(self) -> dict[str, Any]:
        extra = self.run.get("extra") or {}
        metadata = extra.get("metadata") if isinstance(extra, dict) else None
        return metadata if isinstance(metadata, dict) else {}

    @property
    def error(self) -> str | None:
        error = self.run.get("error")
        return str(error) if error else None

    def walk(self) -> Iterator[TraceNode]:
        """This node and every descendant, depth first in start order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, name: str) -> list[TraceNode]:
        """Every node in this subtree with ``name``."""
        return [node for node in self.walk() if node.name == name]

    def outline(self, depth: int = 0) -> str:
        """An indented ``name (run_type)`` listing, for assertion messages."""
        lines = ["  " * depth + f"{self.name} ({self.run_type})" + (" !" if self.error else "")]
        lines.extend(child.outline(depth + 1) for child in self.children)
        return "\n".join(lines)


def _decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body))
        data = reader.read(_MAX_BODY + 1)
    elif encoding == "gzip":
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as handle:
            data = handle.read(_MAX_BODY + 1)
    elif encoding in ("", "identity"):
        data = body
    else:
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    if len(data) > _MAX_BODY:
        raise ValueError("decoded body too large")
    return data


def _multipart_parts(body: bytes, content_type: str) -> Iterator[tuple[str, bytes]]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode()
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = None
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition"):
                found = _DISPOSITION_NAME.search(line)
                name = found.group(1).decode() if found else None
        if name is not None:
            yield name, data.removesuffix(b"\r\n")


class LangSmithCollector:
    """Records runs ingested over LangSmith's HTTP API. Use as a context manager."""

    def __init__(self, *, compression: bool = True, multipart: bool = True) -> None:
        """Configure what ``/info`` announces.

        Args:
            compression: announce zstd support (the client then compresses).
            multipart: announce the multipart endpoint (else the client uses /runs/batch).
        """
        self.compression = compression
        self.multipart = multipart
        self.requests: list[tuple[str, str]] = []
        self.content_encodings: list[str] = []
        """``Content-Encoding`` of each ingestion request (``""`` when none)."""
        self.unhandled: list[tuple[str, str]] = []
        self.feedback: list[dict[str, Any]] = []
        self.attachments: dict[str, bytes] = {}
        self._creates: dict[str, dict[str, Any]] = {}
        self._patches: dict[str, list[dict[str, Any]]] = {}
        self._changed = threading.Condition()
        self._flowing = threading.Event()
        self._flowing.set()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LangSmithCollector:
        """Listen on 127.0.0.1 on a free port; :attr:`url` is the endpoint to configure."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: from now on connections are refused."""
        self._flowing.set()  # let stalled requests finish so shutdown does not wait on them
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def stall(self) -> None:
        """Accept ingestion requests but answer none until :meth:`resume` (or 30 s)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Answer ingestion requests again."""
        self._flowing.set()

    def __enter__(self) -> LangSmithCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what was received ------------------------------------------------------------------

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run by id: its create merged with its updates (set fields win)."""
        with self._changed:
            merged: dict[str, dict[str, Any]] = {}
            for run_id in self._creates.keys() | self._patches.keys():
                run = dict(self._creates.get(run_id, {}))
                for patch in self._patches.get(run_id, []):
                    run.update({k: v for k, v in patch.items() if v is not None})
                merged[run_id] = run
            return merged

    def tree(self) -> list[TraceNode]:
        """Root runs with their descendants, children in start order."""
        runs = self.runs
        nodes = {run_id: TraceNode(run) for run_id, run in runs.items()}
        roots: list[TraceNode] = []
        for node in nodes.values():
            parent = node.run.get("parent_run_id")
            if parent and str(parent) in nodes:
                nodes[str(parent)].children.append(node)
            else:
                roots.append(node)

        def order(node: TraceNode) -> str:
            return str(node.run.get("dotted_order") or node.run.get("start_time") or "")

        for node in nodes.values():
            node.children.sort(key=order)
        return sorted(roots, key=order)

    def wait_for(self, predicate: Callable[[LangSmithCollector], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds after some ingestion, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # -- ingestion --------------------------------------------------------------------------

    def _record(self, operation: str, run: dict[str, Any]) -> None:
        run_id = str(run.get("id"))
        with self._changed:
            if operation == "post":
                self._creates[run_id] = {**self._creates.get(run_id, {}), **run}
            else:
                self._patches.setdefault(run_id, []).append(run)
            self._changed.notify_all()

    def _ingest_multipart(self, body: bytes, content_type: str) -> None:
        pieces: dict[tuple[str, str], dict[str, Any]] = {}
        for name, data in _multipart_parts(body, content_type):
            kind, _, rest = name.partition(".")
            if kind == "feedback":
                self.feedback.append(orjson.loads(data))
                continue
            if kind == "attachment":
                self.attachments[rest] = data
                continue
            if kind not in ("post", "patch"):
                continue
            run_id, _, part = rest.partition(".")
            run = pieces.setdefault((kind, run_id), {"id": run_id})
            if part in _RUN_FIELDS:
                run[part] = orjson.loads(data)
            elif not part:
                run.update(orjson.loads(data))
        for (kind, _), run in pieces.items():
            self._record(kind, run)

    async def _wait_if_stalled(self) -> None:
        if not self._flowing.is_set():
            await run_in_threadpool(self._flowing.wait, _STALL_LIMIT)

    def _app(self) -> Starlette:
        async def info(request: Request) -> Response:
            self.requests.append((request.method, request.url.path))
            return JSONResponse(
                {
                    "version": "0.0.0-collector",
                    "instance_flags": {"zstd_compression_enabled": self.compression},
                    "batch_ingest_config": {
                        "use_multipart_endpoint": self.multipart,
                        "scale_up_qsize_trigger": 1000,
                        "scale_up_nthreads_limit": 1,
                        "scale_down_nempty_trigger": 4,
                        "size_limit": 100,
                        "size_limit_bytes": 20_971_520,
                    },
                }
            )

        async def ingest(request: Request) -> Response:
            self.requests.append((request.method, request.url.path))
            await self._wait_if_stalled()
            raw = await request.body()
            self.content_encodings.append(request.headers.get("content-encoding", ""))
            if len(raw) > _MAX_BODY:
                return JSONResponse({"detail": "too large"}, status_code=413)
            try:
                body = _decode(raw, request.headers.get("content-encoding", ""))
                path = request.url.path
                if path == "/runs/multipart":
                    self._ingest_multipart(body, request.headers.get("content-type", ""))
                elif path == "/runs/batch":
                    batch = orjson.loads(body)
                    for kind in ("post", "patch"):
                        for run in batch.get(kind) or []:
                            self._record(kind, run)
                elif request.method == "PATCH":
                    self._record("patch", {**orjson.loads(body), "id": request.path_params["id"]})
                else:
                    self._record("post", orjson.loads(body))
            except (ValueError, orjson.JSONDecodeError, zstandard.ZstdError) as exc:
                return JSONResponse({"detail": str(exc)}, status_code=422)
            return JSONResponse({}, status_code=202)

        async def unknown(request: Request) -> Response:
            self.unhandled.append((request.method, request.url.path))
            return JSONResponse({"detail": "not implemented by the collector"}, status_code=404)

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/info", info, methods=["GET"]),
                Route("/runs/multipart", ingest, methods=["POST"]),
                Route("/runs/batch", ingest, methods=["POST"]),
                Route("/runs", ingest, methods=["POST"]),
                Route("/runs/{id}", ingest, methods=["PATCH"]),
                Route("/{path:path}", unknown, methods=methods),
            ]
        )
