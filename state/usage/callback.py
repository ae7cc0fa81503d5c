"""The callback handler that counts the token usage of every model call in a run.

See :mod:`state.usage.counts` for how a call is attributed to a node, a role and a model.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from state.usage.counts import (
    AGENT_NAME_METADATA_KEY,
    ROLE_METADATA_KEY,
    RunUsage,
    is_estimate,
    model_of,
)

__all__ = ["UsageCallbackHandler"]

_MAX_PENDING = 4096


def _node_path(metadata: Mapping[str, Any]) -> str | None:
    """``outer/inner`` node names from LangGraph's checkpoint namespace (``a:id|b:id``)."""
    namespace = metadata.get("langgraph_checkpoint_ns") or metadata.get("checkpoint_ns")
    if isinstance(namespace, str) and namespace:
        names = [part.split(":", 1)[0] for part in namespace.split("|")[:16] if part]
        if names:
            return "/".join(names)
    node = metadata.get("langgraph_node")
    return node if isinstance(node, str) else None


def _role_of(metadata: Mapping[str, Any], role_key: str) -> str | None:
    for key in (role_key, AGENT_NAME_METADATA_KEY):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class _Pending:
    node: str | None
    role: str | None
    model: str | None


class UsageCallbackHandler(BaseCallbackHandler):
    """Adds up the token usage of every model call in a run.

    Put one instance in the run's config (``{"callbacks": [handler]}``); LangChain hands it
    down to every node, subgraph and model call. Read :attr:`usage` when the run ends.

    It is a synchronous handler that runs inline: it only does arithmetic, so it needs no
    thread hop in async runs and works unchanged in sync ones; a lock keeps parallel nodes
    of a sync run from racing. It never raises into the run.
    """

    run_inline = True
    raise_error = False

    def __init__(self, *, usage: RunUsage | None = None, role_key: str = ROLE_METADATA_KEY) -> None:
        """Create a handler.

        Args:
            usage: usage to add to (a fresh one when omitted).
            role_key: metadata key that names the role.
        """
        super().__init__()
        self._usage = usage if usage is not None else RunUsage()
        self._role_key = role_key
        self._pending: dict[UUID, _Pending] = {}
        self._lock = threading.Lock()

    @property
    def usage(self) -> RunUsage:
        """What has been counted so far."""
        return self._usage

    # Only model calls matter here. Saying so lets LangChain skip this handler for every
    # node, tool and retry event of the run: a few microseconds per step on the hot path.
    @property
    def ignore_chain(self) -> bool:
        """Chain (node and graph) events are not needed."""
        return True

    @property
    def ignore_agent(self) -> bool:
        """Agent events are not needed."""
        return True

    @property
    def ignore_retriever(self) -> bool:
        """Retriever events are not needed."""
        return True

    @property
    def ignore_retry(self) -> bool:
        """Retry events are not needed."""
        return True

    @property
    def ignore_custom_event(self) -> bool:
        """Custom events are not needed."""
        return True

    def _start(self, run_id: UUID, metadata: Mapping[str, Any] | None) -> None:
        meta = metadata or {}
        pending = _Pending(
            node=_node_path(meta),
            role=_role_of(meta, self._role_key),
            model=meta.get("ls_model_name") if isinstance(meta.get("ls_model_name"), str) else None,
        )
        with self._lock:
            if len(self._pending) >= _MAX_PENDING:
                # Calls that never ended (cancelled mid-flight) must not pile up forever.
                self._pending.pop(next(iter(self._pending)))
            self._pending[run_id] = pending

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember where the call happens (node, role, model) until it ends."""
        self._start(run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Same as :meth:`on_chat_model_start`, for completion models."""
        self._start(run_id, metadata)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A failed call reports no usage: forget it."""
        with self._lock:
            self._pending.pop(run_id, None)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Count the usage the reply reports."""
        with self._lock:
            pending = self._pending.pop(run_id, None) or _Pending(None, None, None)
            fallback_model = {"model_name": pending.model} if pending.model else None
            counted = False
            for generations in response.generations:
                for generation in generations[:1]:
                    if not isinstance(generation, ChatGeneration):
                        continue
                    message = generation.message
                    meta = getattr(message, "usage_metadata", None)
                    if not meta:
                        continue
                    self._usage.add_call(
                        input_tokens=meta.get("input_tokens", 0),
                        output_tokens=meta.get("output_tokens", 0),
                        total_tokens=meta.get("total_tokens"),
                        node=pending.node,
                        role=pending.role,
                        model=model_of(message.response_metadata, fallback_model),
                        estimated=is_estimate(message.response_metadata),
                    )
                    counted = True
            if not counted:
                self._count_llm_output(response, pending, fallback_model)

    def _count_llm_output(
        self, response: LLMResult, pending: _Pending, fallback_model: Mapping[str, Any] | None
    ) -> None:
        # Completion models (and old chat integrations) report usage only in llm_output.
        output = response.llm_output or {}
        usage = output.get("token_usage") or output.get("usage")
        if not isinstance(usage, Mapping):
            return
        self._usage.add_call(
            input_tokens=usage.get("prompt_tokens", usage.get("input_tokens", 0)),
            output_tokens=usage.get("completion_tokens", usage.get("output_tokens", 0)),
            total_tokens=usage.get("total_tokens"),
            node=pending.node,
            role=pending.role,
            model=model_of(output, fallback_model),
        )
