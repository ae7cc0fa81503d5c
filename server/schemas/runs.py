"""Request bodies of the runs endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from server.schemas.common import CheckpointConfig, JsonObject, Request

__all__ = [
    "CancelAction",
    "CommandBody",
    "Durability",
    "MultitaskStrategy",
    "RunConfig",
    "RunCreate",
    "RunsCancel",
    "SendBody",
    "STREAM_MODES",
    "StreamMode",
]

StreamMode = Literal[
    "values",
    "messages",
    "messages-tuple",
    "tasks",
    "checkpoints",
    "updates",
    "events",
    "debug",
    "custom",
]
STREAM_MODES: tuple[str, ...] = StreamMode.__args__  # type: ignore[attr-defined]
MultitaskStrategy = Literal["reject", "rollback", "interrupt", "enqueue"]
Durability = Literal["sync", "async", "exit"]
CancelAction = Literal["interrupt", "rollback"]
NodeName = Annotated[str, Field(min_length=1, max_length=200)]


class SendBody(Request):
    """A ``Send``: run ``node`` with ``input``."""

    node: NodeName
    input: Any = None


class CommandBody(Request):
    """A ``Command``: resume an interrupt, update state, and/or go to nodes."""

    update: JsonObject | list[Any] | None = None
    resume: Any = None
    goto: SendBody | list[SendBody] | NodeName | list[NodeName] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> CommandBody:
        if self.update is None and self.resume is None and self.goto is None:
            raise ValueError("a command must set at least one of resume, update or goto")
        return self


class RunConfig(Request):
    """The ``config`` a run is given (merged over its assistant's)."""

    tags: list[str] | None = Field(default=None, max_length=100)
    recursion_limit: int | None = Field(default=None, ge=1, le=100_000)
    configurable: JsonObject | None = None
    metadata: JsonObject | None = None


class RunCreate(Request):
    """Body of every run-creating endpoint, stateful or stateless."""

    assistant_id: str = Field(min_length=1, max_length=200)
    input: Any = None
    command: CommandBody | None = None
    checkpoint: CheckpointConfig | None = None
    checkpoint_id: str | None = Field(default=None, max_length=100)
    metadata: JsonObject | None = None
    config: RunConfig | None = None
    context: JsonObject | None = None
    webhook: str | None = Field(default=None, max_length=65_536)
    interrupt_before: Literal["*"] | list[NodeName] | None = None
    interrupt_after: Literal["*"] | list[NodeName] | None = None
    stream_mode: StreamMode | list[StreamMode] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    feedback_keys: list[str] | None = Field(default=None, max_length=100)
    multitask_strategy: MultitaskStrategy | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    after_seconds: float | None = Field(default=None, ge=0, le=366 * 86_400)
    checkpoint_during: bool | None = None
    durability: Durability | None = None

    @field_validator("interrupt_before", "interrupt_after")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > 1000:
            raise ValueError("at most 1000 node names")
        return value

    def stream_modes(self) -> list[str]:
        """The requested modes as a de-duplicated list (default ``["values"]``)."""
        modes = self.stream_mode
        if modes is None:
            return ["values"]
        if isinstance(modes, str):
            return [modes]
        return list(dict.fromkeys(modes)) or ["values"]

    def durability_mode(self) -> Durability:
        """``durability``, or what the deprecated ``checkpoint_during`` meant."""
        if self.durability is not None:
            return self.durability
        if self.checkpoint_during is False:
            return "exit"
        return "async"


class RunsCancel(Request):
    """``POST /runs/cancel``: runs by id on a thread, or every run in a status."""

    status: Literal["pending", "running", "all"] | None = None
    thread_id: str | None = Field(default=None, max_length=100)
    run_ids: list[str] | None = Field(default=None, max_length=1000)
