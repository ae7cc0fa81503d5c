"""Process-wide settings, read from the environment once at start-up and validated there.

Each concern has its own group so that the variable names stay the ones people already use
(``DATABASE_URL``, ``REDIS_URL``, ``MODEL``, ``OPENAI_API_KEY``, ``LANGSMITH_*``) while the code
reads ``settings.database.url``. A bad value stops start-up with :func:`describe_error`, one line
per problem that names the variable and what is expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from state.limit_settings import LimitSettings

__all__ = [
    "POOL_MAX_SIZE",
    "DatabaseSettings",
    "EmbeddingsSettings",
    "LimitSettings",
    "ModelSettings",
    "CronSettings",
    "ObservabilitySettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "TracingSettings",
    "SettingsInvalid",
    "WebhookSettings",
    "describe_error",
    "load_settings",
    "redact_url",
]

_COMMON = {"extra": "ignore", "case_sensitive": False, "env_ignore_empty": True}

POOL_MAX_SIZE = 10
"""``DATABASE_POOL_MAX_SIZE``'s default, per process (a connection is held per statement); more
let a busy machine run more backends than cores: on 2, 10 beat 20 in 29 of 38 A/B rounds."""

# libpq also takes the password as a query parameter: postgresql://u@h/db?password=...
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to log or show in ``/info``).

    Hides the password in the user info and in a libpq ``password=`` query parameter. The host
    part is kept as written, so IPv6 brackets and multi-host lists (``h1:5432,h2:5433``) survive.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            userinfo = f"{user}:***"
    netloc = f"{userinfo}@{hostinfo}" if at else hostinfo
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class DatabaseSettings(BaseSettings):
    """Postgres. Without ``DATABASE_URL`` an embedded PostgreSQL 18 + pgvector is started."""

    model_config = SettingsConfigDict(env_prefix="DATABASE_", **_COMMON)  # type: ignore[typeddict-item]

    url: SecretStr | None = Field(
        default=None, description="postgresql:// URL of an external server with `vector`."
    )
    pool_min_size: int = Field(default=1, ge=0, le=100, description="Connections kept open.")
    pool_max_size: int = Field(POOL_MAX_SIZE, ge=1, le=500, description="Most connections open.")
    connect_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds to wait for the first connection."
    )
    pool_timeout: float = Field(
        default=1.5,
        gt=0,
        le=120,
        description="Seconds without a pool connection after which Postgres is probed; when "
        "it is unreachable the request is answered 503 (a busy pool is waited for).",
    )

    @field_validator("url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql://user:password@host:port/dbname URL")
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("DATABASE_POOL_MIN_SIZE must not exceed DATABASE_POOL_MAX_SIZE")
        return self


class RedisSettings(BaseSettings):
    """Redis. Without ``REDIS_URL`` streams and cancellation use an in-process broker."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", **_COMMON)  # type: ignore[typeddict-item]

    url: SecretStr | None = Field(
        default=None, description="redis:// , rediss:// or unix:// URL of the broker."
    )
    stream_ttl_seconds: int = Field(
        default=600, ge=10, le=86_400, description="How long finished run streams can be replayed."
    )
    retry_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long a write to Redis keeps retrying while Redis is unreachable.",
    )

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value


class ModelSettings(BaseSettings):
    """Chat model. ``offline`` (the default with no key) is the deterministic built-in model."""

    model_config = SettingsConfigDict(**_COMMON)  # type: ignore[typeddict-item]

    model: str = Field(
        default="auto",
        validation_alias=AliasChoices("MODEL", "STAFFGRAPH_MODEL"),
        description="`provider:model` for init_chat_model, `offline`, or `auto` "
        "(OpenAI gpt-4o-mini when OPENAI_API_KEY is set, else offline).",
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias="OPENAI_API_KEY", description="Key for OpenAI(-compatible)."
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias="OPENAI_BASE_URL",
        description="Base URL of any OpenAI-compatible server.",
    )

    @field_validator("model")
    @classmethod
    def _model_spec(cls, value: str) -> str:
        value = value.strip()
        if value in ("auto", "offline") or ":" in value:
            return value
        raise ValueError("expected `provider:model` (e.g. openai:gpt-4o-mini), `offline` or `auto`")

    @field_validator("openai_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("expected an http:// or https:// URL")
        return value


class EmbeddingsSettings(BaseSettings):
    """Embeddings for the memory store's vector index."""

    model_config = SettingsConfigDict(**_COMMON)  # type: ignore[typeddict-item]

    spec: str = Field(
        default="auto",
        validation_alias=AliasChoices("EMBEDDINGS", "STAFFGRAPH_EMBEDDINGS"),
        description="`auto`, `local` (all-MiniLM-L6-v2), `hashing`, or `provider:model` "
        "such as openai:text-embedding-3-small.",
    )

    @field_validator("spec")
    @classmethod
    def _embeddings_spec(cls, value: str) -> str:
        value = value.strip()
        if value in ("auto", "local", "hashing") or ":" in value:
            return value
        raise ValueError("expected `auto`, `local`, `hashing` or `provider:model`")


class TracingSettings(BaseSettings):
    """LangSmith tracing (off unless ``LANGSMITH_TRACING=true``)."""

    model_config = SettingsConfigDict(env_prefix="LANGSMITH_", **_COMMON)  # type: ignore[typeddict-item]

    tracing: bool = Field(default=False, description="Send traces to LangSmith.")
    api_key: SecretStr | None = Field(default=None, description="LangSmith API key.")
    endpoint: str | None = Field(default=None, description="LangSmith API URL.")
    project: str | None = Field(default=None, description="Project the traces go to.")

    @model_validator(mode="after")
    def _key_when_tracing(self) -> TracingSettings:
        if self.tracing and self.api_key is None and self.endpoint is None:
            raise ValueError(
                "LANGSMITH_TRACING=true needs LANGSMITH_API_KEY (or LANGSMITH_ENDPOINT)"
            )
        return self


ProcessCount = Annotated[int, Field(ge=1, le=256)] | Literal["auto"]
"""How many server processes ``serve`` runs: 1 to 256, or ``auto``."""

PROCESS_COUNT: TypeAdapter[int | str] = TypeAdapter(ProcessCount)
"""Validates a :data:`ProcessCount` outside the settings (``serve --processes``)."""


def process_count(value: int | str) -> int:
    """A :data:`ProcessCount` as a number. ``auto`` is the cores this process may run on, less
    one left to Postgres (which runs beside the server in the default set-up and spends about
    half a server process's CPU per run), and at least one."""
    if isinstance(value, int):
        return value
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class ServerSettings(BaseSettings):
    """The HTTP server and its workers."""

    model_config = SettingsConfigDict(env_prefix="STAFFGRAPH_", **_COMMON)  # type: ignore[typeddict-item]

    home: Path = Field(default=Path(".staffgraph"), description="Embedded Postgres data etc.")
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8123, ge=1, le=65_535, description="Port to bind.")
    config: Path = Field(
        default=Path("langgraph.json"),
        validation_alias=AliasChoices("STAFFGRAPH_CONFIG", "LANGGRAPH_CONFIG"),
        description="langgraph.json to load.",
    )
    workers: int = Field(default=4, ge=0, le=256, description="Run workers in this process.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest request body accepted."
    )
    env: Literal["development", "production"] = Field(
        default="development", description="Deployment environment."
    )
    runs_per_worker: int = Field(
        default=8, ge=1, le=256, description="Runs one worker executes at a time."
    )
    processes: ProcessCount = Field(
        default="auto",
        description="Server processes sharing the port (`staffgraph serve --processes N`); "
        "`auto`: one per core the process may run on, less one left to Postgres (at least 1).",
    )
    broker: Literal["auto", "memory", "postgres"] = Field(
        default="auto",
        description="Where run events go without REDIS_URL: `memory` (one process), `postgres` "
        "(any process reads any run's stream); `auto`: memory for one process, else postgres. "
        "With REDIS_URL, Redis.",
    )
    lease_seconds: float = Field(
        default=30.0,
        ge=2,
        le=3600,
        description="How long a claimed run stays a worker's "
        "without a heartbeat before the sweeper re-queues it.",
    )
    heartbeat_seconds: float = Field(
        default=10.0, ge=0.5, le=1800, description="How often workers renew their leases."
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="At shutdown, how long runs in flight may take to finish before they are "
        "stopped and put back in the queue.",
    )
    cors_allow_origins: str | None = Field(
        default=None,
        validation_alias="CORS_ALLOW_ORIGINS",
        description="Comma-separated origins browsers may call from when langgraph.json sets "
        "no http.cors origins; unset: LangGraph Studio's and loopback origins.",
    )
    auth: Literal["none", "keys"] = Field(
        default="none",
        description="`keys`: built-in API keys (`staffgraph keys create`); `none`: no "
        "authentication, allowed on a loopback bind only. `auth.path` in langgraph.json wins.",
    )
    metrics_public: bool = Field(default=True, description="Serve /metrics without authentication.")
    docs_public: bool = Field(
        default=True, description="Serve /docs and /openapi.json without authentication."
    )

    @property
    def process_count(self) -> int:
        """How many server processes ``serve`` runs: ``processes``, ``auto`` resolved."""
        return process_count(self.processes)

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> ServerSettings:
        if self.lease_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(
                "STAFFGRAPH_LEASE_SECONDS must be more than twice STAFFGRAPH_HEARTBEAT_SECONDS, "
                "or a live worker can lose its run between two heartbeats"
            )
        return self

    @field_validator("log_level", "auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class ObservabilitySettings(BaseSettings):
    """Logs, token pricing and trace shutdown (metrics need no settings)."""

    model_config = SettingsConfigDict(env_prefix="STAFFGRAPH_", **_COMMON)  # type: ignore[typeddict-item]

    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="`json` (one event a line), `text`, or `auto`: text on a terminal, else json.",
    )
    price_table: Path | None = Field(
        default=None,
        description="YAML or JSON file of model prices (USD per 1M tokens) merged over the "
        "built-in table.",
    )
    trace_flush_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Most seconds shutdown waits to send traces."
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class CronSettings(BaseSettings):
    """The cron scheduler every server and worker process runs."""

    model_config = SettingsConfigDict(env_prefix="STAFFGRAPH_CRON_", **_COMMON)  # type: ignore[typeddict-item]

    scheduler: bool = Field(default=True, description="Fire due crons from this process.")
    interval_seconds: float = Field(
        default=5.0,
        ge=0.05,
        le=3600,
        description="Most seconds between two looks for due crons (sooner when one is due).",
    )


class WebhookSettings(BaseSettings):
    """Webhooks called when runs end: address guard, signature, timeout and retries."""

    model_config = SettingsConfigDict(env_prefix="STAFFGRAPH_WEBHOOK_", **_COMMON)  # type: ignore[typeddict-item]

    allow_private: bool = Field(
        default=False,
        description="Also call loopback, private, link-local and CGNAT addresses.",
    )
    secret: SecretStr | None = Field(
        default=None, description="Key of the X-Staffgraph-Signature HMAC-SHA256 header."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Most seconds one call may take."
    )
    max_attempts: int = Field(default=5, ge=1, le=20, description="Calls before giving up.")
    backoff_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Wait before the first retry; doubled after each failure (at most 1 h).",
    )


class Settings(BaseModel):
    """All settings, one group per concern. Build it with :func:`load_settings`."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    embeddings: EmbeddingsSettings = Field(default_factory=EmbeddingsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    crons: CronSettings = Field(default_factory=CronSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)


# Environment variable names per (group, field) for error messages.
_ENV_NAMES: dict[str, dict[str, str]] = {
    "DatabaseSettings": {
        "url": "DATABASE_URL",
        "pool_min_size": "DATABASE_POOL_MIN_SIZE",
        "pool_max_size": "DATABASE_POOL_MAX_SIZE",
        "connect_timeout": "DATABASE_CONNECT_TIMEOUT",
    },
    "RedisSettings": {"url": "REDIS_URL", "stream_ttl_seconds": "REDIS_STREAM_TTL_SECONDS"},
    "ModelSettings": {
        "model": "MODEL",
        "openai_api_key": "OPENAI_API_KEY",
        "openai_base_url": "OPENAI_BASE_URL",
        "MODEL": "MODEL",
        "OPENAI_API_KEY": "OPENAI_API_KEY",
        "OPENAI_BASE_URL": "OPENAI_BASE_URL",
    },
    "EmbeddingsSettings": {"spec": "EMBEDDINGS", "EMBEDDINGS": "EMBEDDINGS"},
    "TracingSettings": {},
    "ServerSettings": {
        "config": "STAFFGRAPH_CONFIG",
        "STAFFGRAPH_CONFIG": "STAFFGRAPH_CONFIG",
        "cors_allow_origins": "CORS_ALLOW_ORIGINS",
        "CORS_ALLOW_ORIGINS": "CORS_ALLOW_ORIGINS",
    },
}
_PREFIXES = {
    "DatabaseSettings": "DATABASE_",
    "RedisSettings": "REDIS_",
    "TracingSettings": "LANGSMITH_",
    "ServerSettings": "STAFFGRAPH_",
    "ObservabilitySettings": "STAFFGRAPH_",
    "CronSettings": "STAFFGRAPH_CRON_",
    "WebhookSettings": "STAFFGRAPH_WEBHOOK_",
    "LimitSettings": "STAFFGRAPH_",
}


class SettingsInvalid(Exception):
    """The environment holds a bad setting; ``str(exc)`` is one line naming each variable."""


def load_settings() -> Settings:
    """Read every settings group from the environment.

    Raises:
        SettingsInvalid: one or more variables are invalid; the message names all of them.
    """
    groups: dict[str, BaseSettings] = {}
    problems: list[str] = []
    for name, cls in (
        ("database", DatabaseSettings),
        ("redis", RedisSettings),
        ("model", ModelSettings),
        ("embeddings", EmbeddingsSettings),
        ("tracing", TracingSettings),
        ("server", ServerSettings),
        ("observability", ObservabilitySettings),
        ("crons", CronSettings),
        ("webhooks", WebhookSettings),
        ("limits", LimitSettings),
    ):
        try:
            groups[name] = cls()
        except ValidationError as exc:
            problems.append(describe_error(exc))
        except SettingsError as exc:
            problems.append(f"invalid setting for {cls.__name__}: {exc}")
    if problems:
        raise SettingsInvalid("; ".join(problems))
    return Settings.model_validate(groups)


def describe_error(exc: ValidationError) -> str:
    """Turn a settings ``ValidationError`` into lines of ``VARIABLE: what is expected``.

    Never echoes the rejected value, which may be a secret.
    """
    title = exc.title
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"] if not isinstance(part, int)]
        field = loc[0] if loc else ""
        msg = err["msg"].removeprefix("Value error, ")
        if not field:
            # a rule across fields (pool bounds, tracing key): its message names the variables
            lines.append(f"invalid settings: {msg}")
            continue
        name = _ENV_NAMES.get(title, {}).get(field) or (_PREFIXES.get(title, "") + field).upper()
        lines.append(f"invalid setting {name}: {msg}")
    return "; ".join(lines)
