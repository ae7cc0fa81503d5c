"""Structured logs: one JSON event a line, with request, thread and run ids, and no secrets.

* :func:`log_context` binds ids (``run_id``, ``thread_id``, ...) to everything logged inside
  it, in this task and the tasks it starts; :class:`RequestIdMiddleware` binds ``request_id``
  for each HTTP request (taking a well-formed incoming ``X-Request-Id``, echoing it back).
* :class:`JsonFormatter` writes ``ts, level, logger, message``, the bound ids, the record's
  extras and the traceback; :class:`TextFormatter` writes the same for a terminal.
* :class:`RedactionFilter` rewrites every record before any handler formats it: API keys
  (``sk-…``, ``lsv2_…``), bearer and basic credentials, ``Authorization`` / ``X-Api-Key`` /
  cookie / password / token values, passwords in URLs, and the exact values of the settings
  that are secrets.
* :func:`configure_logging` installs all of it on the root logger and on uvicorn's loggers
  and returns the same configuration as a ``dictConfig`` dict for ``uvicorn.run(log_config=)``.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

import orjson
from pydantic import BaseModel, SecretStr
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state.settings import Settings

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RedactionFilter",
    "Redactor",
    "RequestIdMiddleware",
    "TextFormatter",
    "configure_logging",
    "current_log_context",
    "log_context",
    "secret_values",
]

REQUEST_ID_HEADER = "x-request-id"

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar(
    "staffgraph_log_context", default=MappingProxyType({})
)
_ID_ORDER = ("request_id", "thread_id", "run_id", "assistant_id", "graph_id", "user_id")
_MAX_CONTEXT_VALUE = 200
_MAX_MESSAGE = 32_000
_MAX_EXTRA = 4_000
_MAX_DEPTH = 6
# Incoming request ids are echoed into logs and headers: only short, plain tokens qualify.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

# Attributes every LogRecord has; anything else on a record is an ``extra``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "color_message"}
)


# -- context ------------------------------------------------------------------------------


@contextmanager
def log_context(**fields: object) -> Iterator[Mapping[str, str]]:
    """Bind ids to every record logged inside the block (and in tasks started there).

    ``None`` values are skipped; others are turned into bounded strings. Nested blocks add to
    (and may override) the outer ones; leaving a block restores what was there.

    Example:
        ``with log_context(run_id=run_id, thread_id=thread_id): await execute(run)``
    """
    current = dict(_CONTEXT.get())
    for key, value in fields.items():
        if value is not None:
            current[key] = str(value)[:_MAX_CONTEXT_VALUE]
    bound = MappingProxyType(current)
    token = _CONTEXT.set(bound)
    try:
        yield bound
    finally:
        _CONTEXT.reset(token)


def current_log_context() -> Mapping[str, str]:
    """The ids bound right now."""
    return _CONTEXT.get()


# -- redaction ----------------------------------------------------------------------------

_MASK = "***"
_KEY_NAMES = (
    r"authorization|proxy-authorization|x-api-key|api[-_ ]?key|apikey|x-auth-token|"
    r"access[-_]?token|refresh[-_]?token|id[-_]?token|token|secret|client[-_]?secret|"
    r"password|passwd|pwd|cookie|set-cookie|session[-_]?id"
)
_VALUE = r"[^\s\"',;}&)\]]+"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host -> scheme://user:***@host
    (
        re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]{0,30}://[^\s:/@'\"]{0,256}:)[^\s@/'\"]{1,512}@"),
        rf"\g<1>{_MASK}@",
    ),
    # Bearer credentials anywhere (an Authorization header echoed in an error message).
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"), rf"\g<1>{_MASK}"),
    # Cookies: the whole header value, every pair in it.
    (re.compile(r"(?i)\b((?:set-)?cookie[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+"), rf"\g<1>{_MASK}"),
    # key: value, key=value, "key": "value", ('key', 'value'), (b'key', b'value') for
    # sensitive keys, including prefixed ones (OPENAI_API_KEY, db_password). A header value
    # with a scheme ("Basic dXNl...") is masked whole. Repetitions are bounded so a long
    # run of words cannot make the scan quadratic.
    (
        re.compile(
            rf"(?i)((?<![A-Za-z0-9])(?:[A-Za-z0-9]{{1,40}}[-_]){{0,4}}(?:{_KEY_NAMES})"
            r"(?:[\"']?\s*[:=]\s*|[\"']\s*,\s*b?)[\"']?)"
            rf"((?:bearer|basic|digest|token)\s+{_VALUE}|{_VALUE})"
        ),
        rf"\g<1>{_MASK}",
    ),
    # Provider keys wherever they appear.
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), _MASK),
    (re.compile(r"\blsv2_[A-Za-z0-9]{2,4}_[A-Za-z0-9_]{16,}"), _MASK),
    (re.compile(r"\bls__[A-Za-z0-9]{20,}"), _MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), _MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), _MASK),
)
_SENSITIVE_KEY = re.compile(rf"(?i)^(?:[A-Za-z0-9]{{1,40}}[-_]){{0,4}}(?:{_KEY_NAMES})$")


class Redactor:
    """Removes secrets from text: known patterns plus exact secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Create a redactor.

        Args:
            secrets: exact values to mask wherever they appear (settings marked secret).
                Values shorter than 6 characters are ignored: masking them would garble
                ordinary text and they are no real secret anyway.
        """
        values = sorted({s for s in secrets if isinstance(s, str) and len(s) >= 6}, key=len)
        self._secrets = (
            re.compile("|".join(re.escape(v) for v in reversed(values))) if values else None
        )

    def text(self, value: str) -> str:
        """``value`` with every secret replaced by ``***``."""
        if self._secrets is not None:
            value = self._secrets.sub(_MASK, value)
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any, *, depth: int = 0) -> Any:
        """Redact strings inside ``value`` (mappings, sequences), masking sensitive keys."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):  # raw ASGI headers and bodies
            decoded = value[:_MAX_EXTRA].decode("latin-1")
            redacted = self.text(decoded)
            return value if redacted == decoded and len(value) <= _MAX_EXTRA else redacted
        if isinstance(value, SecretStr):
            return _MASK
        if depth >= _MAX_DEPTH:
            return "…"
        if isinstance(value, Mapping):
            return {
                key: _MASK
                if isinstance(key, str) and _SENSITIVE_KEY.match(key) and val
                else self.value(val, depth=depth + 1)
                for key, val in value.items()
            }
        if isinstance(value, list | tuple):
            if (
                len(value) == 2
                and isinstance(value[0], str | bytes)
                and _SENSITIVE_KEY.match(
                    value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
                )
            ):
                return (value[0], _MASK)  # a (header, value) pair
            return [self.value(item, depth=depth + 1) for item in value]
        return value


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in ``settings``, plus the password inside secret URLs."""
    found: list[str] = []

    def visit(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                visit(value)
            elif isinstance(value, SecretStr):
                secret = value.get_secret_value()
                found.append(secret)
                match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:([^\s@/]+)@", secret)
                if match:
                    found.append(match.group(1))

    visit(settings)
    return [value for value in found if value]


class RedactionFilter(logging.Filter):
    """Rewrites each record's message, arguments, extras and traceback without secrets.

    Attach it to handlers (a logger's filters do not see records propagated from child
    loggers). It never drops a record.
    """

    def __init__(self, name: str = "", *, secrets: Iterable[str] = ()) -> None:
        super().__init__(name)
        self.redactor = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, still redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redactor.text(message[:_MAX_MESSAGE])
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            record.__dict__[key] = (
                _MASK if _SENSITIVE_KEY.match(key) and value else redactor.value(value)
            )
        return True


# -- formatters ---------------------------------------------------------------------------


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _RECORD_ATTRS or key.startswith("_"):
            continue
        if not isinstance(value, str | int | float | bool | type(None) | list | dict | tuple):
            value = repr(value)
        if isinstance(value, str) and len(value) > _MAX_EXTRA:
            value = value[:_MAX_EXTRA] + "…"
        extras[key] = value
    return extras


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts, level, logger, message``, bound ids, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage()[:_MAX_MESSAGE],
        }
        context = _CONTEXT.get()
        for key in _ID_ORDER:
            if key in context:
                event[key] = context[key]
        for key, value in context.items():
            event.setdefault(key, value)
        for key, value in _extras(record).items():
            event.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["exc"] = record.exc_text
        if record.stack_info:
            event["stack"] = record.stack_info
        return orjson.dumps(
            event, default=repr, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
        ).decode()


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", f"{record.name}:"]
        parts.append(record.getMessage()[:_MAX_MESSAGE])
        fields = {**_CONTEXT.get(), **_extras(record)}
        if fields:
            parts.append(" ".join(f"{k}={v}" for k, v in fields.items()))
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


# -- configuration ------------------------------------------------------------------------


def configure_logging(
    settings: Settings,
    *,
    log_format: Literal["auto", "json", "text"] | None = None,
    apply: bool = True,
) -> dict[str, Any]:
    """Send every log record, uvicorn's included, through redaction and our formatter.

    Args:
        settings: level from ``STAFFGRAPH_LOG_LEVEL``, format from ``STAFFGRAPH_LOG_FORMAT``,
            secrets from every settings group.
        log_format: overrides the settings' format.
        apply: install it now with ``logging.config.dictConfig``, and route Python warnings
            (``py.warnings``) through it.

    Returns:
        The ``dictConfig`` dict; pass it to ``uvicorn.run(log_config=...)`` so uvicorn keeps
        it instead of installing its own. uvicorn's access log is left at WARNING because
        :class:`RequestIdMiddleware` writes access lines that carry the request id.
    """
    chosen = log_format or settings.observability.log_format
    if chosen == "auto":
        chosen = "text" if sys.stderr.isatty() else "json"
    formatter = JsonFormatter if chosen == "json" else TextFormatter
    level = settings.server.log_level.upper()
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactionFilter, "secrets": secret_values(settings)}},
        "formatters": {"staffgraph": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "staffgraph",
                "filters": ["redact"],
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # HTTP clients log every request's full URL at INFO (a webhook or model endpoint
            # URL can carry a credential in its path, past any pattern redaction) and headers
            # at DEBUG: only their warnings and errors are logged.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }
    if apply:
        logging.config.dictConfig(config)
        # Python warnings would otherwise go to stderr as bare text, past redaction and
        # between the JSON lines.
        logging.captureWarnings(True)
    return config


# -- request ids --------------------------------------------------------------------------

_access_log = logging.getLogger("server.access")


class RequestIdMiddleware:
    """ASGI middleware giving each HTTP request an id for its logs and its response.

    A well-formed incoming ``X-Request-Id`` (1-128 of ``A-Za-z0-9._:-``) is kept, so ids
    from a proxy or client carry through; otherwise a new one is made. The id is bound with
    :func:`log_context` for the request's whole handling and sent back in ``X-Request-Id``.
    With ``access_log`` one line per request is logged to ``server.access``: method, path
    (no query string: it can hold secrets), status and milliseconds to the response headers.
    """

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = MutableHeaders(scope=scope).get(REQUEST_ID_HEADER)
        request_id = incoming if incoming and _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        elapsed_ms = 0.0

        async def send_with_id(message: Message) -> None:
            nonlocal status, elapsed_ms
            if message["type"] == "http.response.start":
                status = int(message["status"])
                elapsed_ms = (time.perf_counter() - start) * 1000
                message["headers"] = list(message.get("headers") or [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if self.access_log and _access_log.isEnabledFor(logging.INFO):
                    _access_log.info(
                        "%s %s %d",
                        scope.get("method", ""),
                        scope.get("path", ""),
                        status,
                        extra={"status": status, "duration_ms": round(elapsed_ms, 2)},
                    )
