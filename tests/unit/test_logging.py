"""Structured logs: JSON lines with ids, request ids over HTTP, and secrets never written."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from server.observability.logging import (
    JsonFormatter,
    RedactionFilter,
    RequestIdMiddleware,
    TextFormatter,
    configure_logging,
    current_log_context,
    log_context,
)
from state.settings import (
    DatabaseSettings,
    ModelSettings,
    ObservabilitySettings,
    ServerSettings,
    Settings,
    TracingSettings,
)

OPENAI_KEY = "sk-proj-Abc123def456GHI789jkl012MNO345"
DB_PASSWORD = "Tr0ub4dor-and-3"
DB_URL = f"postgresql://staff:{DB_PASSWORD}@db.internal:5432/staffgraph"
LANGSMITH_KEY = "lsv2_pt_0123456789abcdef0123456789abcdef_a1b2c3d4e5"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back after each test."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "server.access", "httpx", "httpcore"]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def secret_settings(*, log_format: str = "json", level: str = "info") -> Settings:
    return Settings(
        database=DatabaseSettings(url=DB_URL),
        model=ModelSettings(OPENAI_API_KEY=OPENAI_KEY),
        tracing=TracingSettings(api_key=LANGSMITH_KEY),
        server=ServerSettings(log_level=level),
        observability=ObservabilitySettings(log_format=log_format),
    )


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def capture(
    *, formatter: logging.Formatter | None = None, secrets: tuple[str, ...] = ()
) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or JsonFormatter())
    handler.addFilter(RedactionFilter(secrets=secrets))
    logger = logging.getLogger(f"test.capture.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_line_has_ts_level_logger_message_ids_and_extras() -> None:
    logger, stream = capture()
    with log_context(run_id="run-1", thread_id="thread-1"), log_context(request_id="req-9"):
        logger.info("run %s finished", "run-1", extra={"status": "success", "tokens": 42})
    logger.info("outside")

    first, second = lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == logger.name
    assert first["message"] == "run run-1 finished"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert (first["request_id"], first["thread_id"], first["run_id"]) == (
        "req-9",
        "thread-1",
        "run-1",
    )
    assert first["status"] == "success" and first["tokens"] == 42
    assert "run_id" not in second  # leaving the block unbinds the ids
    assert current_log_context() == {}


async def test_log_context_reaches_tasks_started_inside() -> None:
    logger, stream = capture()

    async def worker() -> None:
        logger.info("from a task")

    with log_context(run_id="r-async"):
        await asyncio.create_task(worker())
    assert lines(stream)[0]["run_id"] == "r-async"


def test_openai_key_postgres_password_and_authorization_header_are_redacted() -> None:
    logger, stream = capture()
    logger.warning(
        "calling %s with key %s; headers %s",
        DB_URL,
        OPENAI_KEY,
        {"Authorization": f"Bearer {OPENAI_KEY}", "accept": "application/json"},
    )
    logger.error("upstream said: Authorization: Basic dXNlcjpzM2NyM3Q= was rejected")
    logger.info("request", extra={"headers": {"x-api-key": "k-998877665544", "host": "api"}})
    text = stream.getvalue()
    for secret in (OPENAI_KEY, DB_PASSWORD, "dXNlcjpzM2NyM3Q", "k-998877665544"):
        assert secret not in text
    first, second, third = lines(stream)
    assert "postgresql://staff:***@db.internal:5432/staffgraph" in first["message"]
    assert "'Authorization': '***'" in first["message"]
    assert "application/json" in first["message"]  # ordinary values stay readable
    assert "Authorization: ***" in second["message"]
    assert third["headers"] == {"x-api-key": "***", "host": "api"}


def test_exceptions_and_exact_secret_values_are_redacted() -> None:
    logger, stream = capture(secrets=(DB_PASSWORD, "plain-secret-value"))
    try:
        raise ConnectionError(f"could not connect to {DB_URL}; token=abcdef123456")
    except ConnectionError:
        logger.exception("database down (%s)", "plain-secret-value")
    event = lines(stream)[0]
    assert "plain-secret-value" not in event["message"]
    assert "ConnectionError" in event["exc"]
    assert DB_PASSWORD not in event["exc"] and "abcdef123456" not in event["exc"]


def test_ordinary_text_is_left_alone() -> None:
    logger, stream = capture()
    message = "used 120 total_tokens, max_tokens=512; refreshed the token, basic setup done"
    logger.info(message)
    assert lines(stream)[0]["message"] == message


def test_configure_logging_covers_root_and_uvicorn(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure_logging(secret_settings(level="warning"))
    logging.getLogger("staffgraph.test").warning("db at %s", DB_URL)
    logging.getLogger("staffgraph.test").info("hidden at warning level")
    # uvicorn applies the returned dict itself; its loggers then write through our handler.
    uvicorn.Config(app=FastAPI(), log_config=config)
    logging.getLogger("uvicorn.error").error("Invalid HTTP request from %s", "sk-" + "z" * 30)

    err = capsys.readouterr().err
    events = [orjson.loads(line) for line in err.splitlines()]
    assert [e["logger"] for e in events] == ["staffgraph.test", "uvicorn.error"]
    assert DB_PASSWORD not in err and "z" * 30 not in err
    assert events[1]["message"] == "Invalid HTTP request from ***"


def test_http_client_request_lines_are_not_logged(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # httpx logs each request's URL at INFO; a webhook URL can hold a credential in its path.
    configure_logging(secret_settings(level="debug"))
    hook = "https://hooks.example.com/services/T000/B000/aV3ryS3cretP4thToken"
    logging.getLogger("httpx").info('HTTP Request: POST %s "HTTP/1.1 200 OK"', hook)
    logging.getLogger("httpcore.http11").debug("send_request_headers.started")
    logging.getLogger("httpx").warning("connection pool is full")

    events = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["message"] for e in events] == ["connection pool is full"]


def test_exact_settings_secrets_are_masked_everywhere(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(secret_settings())
    logging.getLogger("staffgraph.test").info("password alone: %s", DB_PASSWORD)
    assert DB_PASSWORD not in capsys.readouterr().err


def test_text_format(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(secret_settings(log_format="text"))
    with log_context(run_id="r-7"):
        logging.getLogger("staffgraph.test").info("hello %s", OPENAI_KEY)
    err = capsys.readouterr().err.strip()
    assert "INFO" in err and "staffgraph.test: hello ***" in err and "run_id=r-7" in err


def test_text_formatter_appends_traceback() -> None:
    logger, stream = capture(formatter=TextFormatter())
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    assert "failed" in stream.getvalue() and "ValueError: bad" in stream.getvalue()


# -- request ids ---------------------------------------------------------------------------


def request_app(seen: list[dict[str, str]]) -> RequestIdMiddleware:
    app = FastAPI()

    @app.get("/threads/{thread_id}")
    async def read(thread_id: str) -> dict[str, str]:
        with log_context(thread_id=thread_id):
            seen.append(dict(current_log_context()))
            logging.getLogger("server.test").info("reading thread")
        return {"thread_id": thread_id}

    return RequestIdMiddleware(app)


async def test_request_id_is_honoured_echoed_and_logged(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(secret_settings())
    seen: list[dict[str, str]] = []
    transport = httpx.ASGITransport(app=request_app(seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        given = await client.get("/threads/t-1", headers={"X-Request-Id": "abc-123.x"})
        made = await client.get("/threads/t-2?api_key=sk-should-not-show-up-anywhere")
        hostile = await client.get("/threads/t-3", headers={"X-Request-Id": "x" * 500})

    assert given.headers["x-request-id"] == "abc-123.x"
    assert seen[0] == {"request_id": "abc-123.x", "thread_id": "t-1"}
    assert len(made.headers["x-request-id"]) == 32
    assert seen[1]["request_id"] == made.headers["x-request-id"]
    assert hostile.headers["x-request-id"] != "x" * 500

    err = capsys.readouterr().err
    events = [orjson.loads(line) for line in err.splitlines()]
    handler_lines = [e for e in events if e["logger"] == "server.test"]
    assert handler_lines[0]["request_id"] == "abc-123.x"
    assert handler_lines[0]["thread_id"] == "t-1"
    access = [e for e in events if e["logger"] == "server.access"]
    assert [e["status"] for e in access] == [200, 200, 200]
    assert access[0]["message"] == "GET /threads/t-1 200"
    assert access[0]["request_id"] == "abc-123.x"
    assert "should-not-show-up" not in err  # query strings are not logged
