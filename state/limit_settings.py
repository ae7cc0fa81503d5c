"""Settings of the limits every caller is held to: request rate, runs at once, models, bodies.

A group of :class:`state.settings.Settings` (``settings.limits``), read from ``STAFFGRAPH_*``
variables like the others.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ANY_MODEL", "LimitSettings"]

ANY_MODEL = "*"
"""``STAFFGRAPH_ALLOWED_MODELS=*``: a run may choose any model."""


class LimitSettings(BaseSettings):
    """Per-caller limits (each identity; per client address when auth is off)."""

    model_config = SettingsConfigDict(
        env_prefix="STAFFGRAPH_", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        le=10_000_000,
        description="Requests one caller may make per minute, sustained (0: no limit).",
    )
    rate_limit_burst: int = Field(
        default=120,
        ge=1,
        le=10_000_000,
        description="Requests one caller may make at once before the sustained rate applies.",
    )
    max_concurrent_runs: int = Field(
        default=50,
        ge=0,
        le=1_000_000,
        description="Runs one caller may have pending or running at once (0: no limit).",
    )
    allowed_models: tuple[str, ...] | None = Field(
        default=None,
        description="Comma-separated model specs a run may choose (`context.model`); `*`: any; "
        "unset: the configured MODEL and `offline`.",
    )
    max_body_values: int = Field(
        default=100_000,
        ge=100,
        le=100_000_000,
        description="JSON values (objects, arrays and their items) one request body may hold.",
    )
    max_body_depth: int = Field(
        default=100, ge=8, le=1000, description="How deep one request body may nest."
    )

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
