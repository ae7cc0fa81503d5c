"""``langgraph.json``: the keys the server honours, validated, with paths resolved against the file.

Any langgraph.json that the official CLI accepts loads here: unknown keys (docker build options,
``python_version`` …) are accepted and ignored, because they concern image builds, not serving.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ConfigError",
    "CorsConfig",
    "GraphSpec",
    "LangGraphConfig",
    "StoreIndexConfig",
    "ThreadTTLConfig",
    "load_config",
]

_MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(ValueError):
    """langgraph.json is missing or invalid; the message names the file and the key."""


class GraphSpec(BaseModel):
    """One entry of ``graphs``: where the graph object lives."""

    model_config = ConfigDict(extra="ignore")

    path: str = Field(description="`./file.py:attr` or `package.module:attr`.")
    description: str | None = None

    @field_validator("path")
    @classmethod
    def _has_attr(cls, value: str) -> str:
        if ":" not in value or value.rsplit(":", 1)[1] == "":
            raise ValueError(f"expected 'path/to/file.py:attribute', got {value!r}")
        return value


class StoreIndexConfig(BaseModel):
    """``store.index``: vector search over store items."""

    model_config = ConfigDict(extra="ignore")

    dims: int = Field(gt=0, le=16_000)
    embed: str = Field(description="`path.py:function` or a provider string `openai:model`.")
    fields: list[str] | None = None


class StoreTTLConfig(BaseModel):
    """``store.ttl``."""

    model_config = ConfigDict(extra="ignore")

    refresh_on_read: bool = True
    default_ttl: float | None = Field(default=None, gt=0)
    sweep_interval_minutes: int | None = Field(default=None, gt=0)


class StoreConfig(BaseModel):
    """``store``."""

    model_config = ConfigDict(extra="ignore")

    index: StoreIndexConfig | None = None
    ttl: StoreTTLConfig | None = None


class CorsConfig(BaseModel):
    """``http.cors`` (Starlette's CORSMiddleware options)."""

    model_config = ConfigDict(extra="ignore")

    allow_origins: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    allow_credentials: bool | None = None
    allow_origin_regex: str | None = None
    expose_headers: list[str] | None = None
    max_age: int | None = None


class HttpConfig(BaseModel):
    """``http``: the parts that apply to this server."""

    model_config = ConfigDict(extra="ignore")

    cors: CorsConfig | None = None


class AuthConfig(BaseModel):
    """``auth``."""

    model_config = ConfigDict(extra="ignore")

    path: str | None = None
    disable_studio_auth: bool = False
    openapi: dict[str, Any] | None = Field(
        default=None,
        description="OpenAPI security: `securitySchemes` (or `security_schemes`), `security`, "
        "and per-route `paths` overrides, as in the LangGraph Server.",
    )


class ThreadTTLConfig(BaseModel):
    """``checkpointer.ttl``: threads' default time-to-live and how often expired ones are swept."""

    model_config = ConfigDict(extra="ignore")

    strategy: Literal["delete", "keep_latest"] = "delete"
    default_ttl: float | None = Field(default=None, ge=-1e7, le=1e7)
    """Minutes a thread created without its own ``ttl`` lives; unset: forever."""
    sweep_interval_minutes: float = Field(default=5.0, gt=0, le=1e6)
    sweep_limit: int = Field(default=1000, ge=1, le=100_000)


class CheckpointerConfig(BaseModel):
    """``checkpointer`` (only ``ttl`` is read)."""

    model_config = ConfigDict(extra="ignore")

    ttl: ThreadTTLConfig | None = None


class LangGraphConfig(BaseModel):
    """A parsed langgraph.json; relative paths are resolved against :attr:`base_dir`."""

    model_config = ConfigDict(extra="ignore")

    graphs: dict[str, GraphSpec]
    dependencies: list[str] = Field(default_factory=list)
    env: dict[str, str] | str | None = None
    store: StoreConfig | None = None
    http: HttpConfig | None = None
    auth: AuthConfig | None = None
    checkpointer: CheckpointerConfig | None = None
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("graphs", mode="before")
    @classmethod
    def _graph_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("graphs")
    @classmethod
    def _graph_ids(cls, value: dict[str, GraphSpec]) -> dict[str, GraphSpec]:
        for graph_id in value:
            if not graph_id or len(graph_id) > 200:
                raise ValueError(f"graph id {graph_id!r} must be 1 to 200 characters")
        return value

    def resolve(self, path: str) -> Path:
        """Resolve a path from the file against the file's directory."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    def apply_env(self) -> None:
        """Export ``env`` (a dict or a dotenv file) without overriding variables already set."""
        if self.env is None:
            return
        values = self.env if isinstance(self.env, dict) else _read_dotenv(self.resolve(self.env))
        for key, value in values.items():
            os.environ.setdefault(key, value)

    def apply_dependencies(self) -> None:
        """Put local ``dependencies`` directories (and the config's directory) on ``sys.path``."""
        for entry in [".", *self.dependencies]:
            path = self.resolve(entry)
            if path.is_dir() and str(path) not in sys.path:
                sys.path.insert(0, str(path))


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ConfigError(f"env file {path} named in langgraph.json does not exist")
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_config(path: Path) -> LangGraphConfig:
    """Read and validate a langgraph.json.

    Raises:
        ConfigError: the file is missing, too large, not JSON, or has an invalid key.
    """
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (pass --config PATH)")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than 1 MiB")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        config = LangGraphConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    config.base_dir = path.parent
    return config
