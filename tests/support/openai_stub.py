"""A loopback OpenAI-compatible endpoint for tests of the real provider path.

``POST /v1/chat/completions`` (plain and ``stream: true`` SSE, with
``stream_options.include_usage``) and ``POST /v1/embeddings`` served by uvicorn in a background
thread on 127.0.0.1. Replies are scripted (:meth:`OpenAIStub.script_reply`) or rule based:
with ``tools`` and a user message last, a call to the tool whose name appears in the user text
(else the first tool); otherwise ``"stub reply: <last message>"``. Every request is recorded
so tests can assert what the client sent.

Register with ``pytest_plugins = ["tests.support.openai_stub"]`` to get the session-scoped
``openai_stub`` fixture.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

MAX_BODY_BYTES = 1_000_000
EMBEDDING_DIMS = 16


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class ScriptedReply:
    """A reply to send instead of the rule-based one."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class OpenAIStub:
    """State shared between the test and the server thread."""

    def __init__(self) -> None:
        self.base_url = ""
        self.embedding_dims = EMBEDDING_DIMS
        self.requests: list[RecordedRequest] = []
        self._script: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._calls = 0

    def script_reply(
        self, content: str = "", *, tool_calls: list[dict[str, Any]] | None = None
    ) -> None:
        """Queue the next chat completion's reply.

        Args:
            content: assistant text.
            tool_calls: ``{"name": ..., "arguments": {...}}`` entries.
        """
        with self._lock:
            self._script.append(ScriptedReply(content=content, tool_calls=tool_calls or []))

    def reset(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self.requests.clear()
            self._script.clear()

    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of the chat completion requests received so far."""
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    def _record(self, request: Request, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(
                RecordedRequest(path=request.url.path, headers=dict(request.headers), body=body)
            )

    def _next_reply(self, body: dict[str, Any]) -> ScriptedReply:
        with self._lock:
            self._calls += 1
            if self._script:
                return self._script.popleft()
        return _rule_reply(body)

    def _call_id(self) -> str:
        with self._lock:
            return f"call_stub_{self._calls}"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict)).strip()
    return ""


def _rule_reply(body: dict[str, Any]) -> ScriptedReply:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    text = _text_of(last.get("content"))
    tools = [t.get("function", {}) for t in body.get("tools") or [] if isinstance(t, dict)]
    if tools and last.get("role") == "user":
        lowered = text.lower()
        chosen = next((t for t in tools if str(t.get("name", "")).lower() in lowered), tools[0])
        params = chosen.get("parameters") or {}
        args = {
            name: text if (schema or {}).get("type", "string") == "string" else 1
            for name, schema in (params.get("properties") or {}).items()
            if name in (params.get("required") or [])
        }
        return ScriptedReply(tool_calls=[{"name": chosen.get("name", ""), "arguments": args}])
    return ScriptedReply(content=f"stub reply: {text}")


def _usage(body: dict[str, Any], reply: ScriptedReply) -> dict[str, int]:
    prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
    completion = max(1, (len(reply.content) + len(json.dumps(reply.tool_calls))) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _tool_calls(stub: OpenAIStub, reply: ScriptedReply) -> list[dict[str, Any]]:
    base = stub._call_id()
    return [
        {
            "id": f"{base}_{i}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
        for i, call in enumerate(reply.tool_calls)
    ]


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


def _stream(
    body: dict[str, Any], reply: ScriptedReply, calls: list[dict[str, Any]], created: int
) -> Iterator[bytes]:
    model = body.get("model", "stub")
    head = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    for piece in re.findall(r"\S+\s*|\s+", reply.content):
        yield chunk({"content": piece})
    for index, call in enumerate(calls):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 8):
            yield chunk(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": arguments[start : start + 8]}}
                    ]
                }
            )
    yield chunk({}, "tool_calls" if calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield _sse({**head, "choices": [], "usage": _usage(body, reply)})
    yield _sse("[DONE]")


def _embedding(text: str, dims: int) -> list[float]:
    digest = hashlib.blake2b(text.encode(), digest_size=dims).digest()
    vector = [b / 255.0 - 0.5 for b in digest]
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def _embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    """The answer to an embeddings request: one deterministic vector per input."""
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and 1 <= dims <= 64 else EMBEDDING_DIMS
    data = []
    for index, item in enumerate(texts[:2048]):
        vector = _embedding(item if isinstance(item, str) else json.dumps(item), dims)
        encoded: list[float] | str = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(str(t)) for t in texts) // 4 + 1
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "stub"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def build_app(stub: OpenAIStub) -> FastAPI:
    """The stub's FastAPI app, bound to ``stub`` for its recordings and script."""
    app = FastAPI()

    async def read_json(request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return JSONResponse({"error": {"message": "body too large"}}, status_code=413)
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": {"message": "invalid JSON"}}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": {"message": "expected an object"}}, status_code=400)
        stub._record(request, body)
        return body

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        reply = stub._next_reply(body)
        calls = _tool_calls(stub, reply)
        created = 1_700_000_000
        if body.get("stream"):
            return StreamingResponse(
                _stream(body, reply, calls, created), media_type="text/event-stream"
            )
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": created,
                "model": body.get("model", "stub"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if calls else "stop",
                    }
                ],
                "usage": _usage(body, reply),
            }
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        return JSONResponse(_embeddings_body(body))

    return app


@pytest.fixture(scope="session")
def openai_stub() -> Iterator[OpenAIStub]:
    """Serve the stub on a free loopback port for the whole session."""
    stub = OpenAIStub()
    # Listening before the server thread starts: clients can connect at once, no waiting.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    stub.base_url = f"http://127.0.0.1:{port}/v1"
    config = uvicorn.Config(build_app(stub), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
