"""Agent middleware of our own: what langchain's built-in middleware does not cover.

- :class:`RuntimeModelMiddleware` picks the chat model per call from the run's context, so one
  compiled graph serves the offline model, OpenAI or any provider without rebuilding.
- :class:`RoleGrantMiddleware` enforces a role's tool grant inside the graph: a call of a tool
  outside the grant is answered with an error ``ToolMessage`` and never executed.
- :class:`TokenBudgetMiddleware` stops the agent once the role has spent its token budget for
  the run.
- :class:`MemoryRecallMiddleware` is the hook where long-term memory enters the prompt: give
  it any :class:`MemoryRecall` callable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Any, NotRequired, Protocol

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ModelRequest,
    ModelResponse,
    hook_config,
)
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, SystemMessage, ToolMessage
from langgraph.channels.untracked_value import UntrackedValue
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command

from nodes._private import last_human_text, model_spec_of
from nodes.models import get_chat_model

__all__ = [
    "MemoryRecall",
    "MemoryRecallMiddleware",
    "RoleGrantMiddleware",
    "RuntimeModelMiddleware",
    "TokenBudgetMiddleware",
]

_ModelHandler = Callable[[ModelRequest], ModelResponse]
_AsyncModelHandler = Callable[[ModelRequest], Awaitable[ModelResponse]]
_ToolResult = ToolMessage | Command[Any]


class RuntimeModelMiddleware(AgentMiddleware):
    """Choose the chat model for each call from the run: ``context.model``, else a default.

    The agent is compiled once with a placeholder model; this middleware swaps in the model
    the run asks for, so the same graph runs offline in tests and on a provider in production.
    """

    def __init__(self, *, default_spec: str | None = None) -> None:
        """Create the middleware.

        Args:
            default_spec: Model spec used when the run's context names none (a role's own
                ``model``); ``None`` falls back to the ``MODEL`` setting.
        """
        super().__init__()
        self.default_spec = default_spec

    def _model(self, request: ModelRequest) -> BaseChatModel:
        return get_chat_model(model_spec_of(request.runtime) or self.default_spec)

    def wrap_model_call(self, request: ModelRequest, handler: _ModelHandler) -> ModelResponse:
        return handler(request.override(model=self._model(request)))

    async def awrap_model_call(
        self, request: ModelRequest, handler: _AsyncModelHandler
    ) -> ModelResponse:
        return await handler(request.override(model=self._model(request)))


class RoleGrantMiddleware(AgentMiddleware):
    """Enforce a role's tool grant: only granted tools are offered, and only they run.

    The model is shown only the granted tools; a call of any other tool (a model inventing
    one, a tool added by other middleware) gets an error ``ToolMessage`` instead of running.
    """

    def __init__(self, role: str, granted: Iterable[str]) -> None:
        """Create the middleware.

        Args:
            role: The role's name, used in the refusal message.
            granted: Names of the tools the role may call.
        """
        super().__init__()
        self.role = role
        self.granted = frozenset(granted)

    def _offered(self, request: ModelRequest) -> ModelRequest:
        tools = [
            tool
            for tool in request.tools
            if (tool.get("name") if isinstance(tool, dict) else tool.name) in self.granted
        ]
        return request.override(tools=tools) if len(tools) != len(request.tools) else request

    def _refusal(self, request: ToolCallRequest) -> ToolMessage | None:
        call = request.tool_call
        if call["name"] in self.granted:
            return None
        granted = ", ".join(sorted(self.granted)) or "none"
        return ToolMessage(
            content=(
                f"Refused: role '{self.role}' is not granted the tool '{call['name']}', so it "
                f"was not run. Tools this role may use: {granted}."
            ),
            name=call["name"],
            tool_call_id=call["id"] or "",
            status="error",
        )

    def wrap_model_call(self, request: ModelRequest, handler: _ModelHandler) -> ModelResponse:
        return handler(self._offered(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: _AsyncModelHandler
    ) -> ModelResponse:
        return await handler(self._offered(request))

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], _ToolResult]
    ) -> _ToolResult:
        return self._refusal(request) or handler(request)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[_ToolResult]],
    ) -> _ToolResult:
        refusal = self._refusal(request)
        return refusal if refusal is not None else await handler(request)


class _BudgetState(AgentState[Any]):
    # Untracked: never checkpointed, so the count starts at zero with every run.
    run_tokens_used: NotRequired[Annotated[int, UntrackedValue, PrivateStateAttr]]


class TokenBudgetMiddleware(AgentMiddleware[_BudgetState, Any, Any]):
    """Stop the agent once the tokens its model calls used in this run reach the budget.

    Usage is the ``usage_metadata.total_tokens`` of each model reply. When the budget is
    spent, the agent ends with an AI message saying so instead of calling the model again.
    """

    state_schema = _BudgetState

    def __init__(self, budget: int, *, role: str) -> None:
        """Create the middleware.

        Args:
            budget: Most tokens (input + output) per run; at least 1.
            role: The role whose budget this is, for the stop message.

        Raises:
            ValueError: ``budget`` is below 1.
        """
        super().__init__()
        if budget < 1:
            raise ValueError(f"token budget must be at least 1, got {budget}")
        self.budget = budget
        self.role = role

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: _BudgetState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        used = state.get("run_tokens_used", 0)
        if used < self.budget:
            return None
        message = AIMessage(
            content=(
                f"Stopped: {self.role} has used {used} tokens of its {self.budget}-token "
                "budget for this run."
            ),
            name=self.role,
        )
        return {"jump_to": "end", "messages": [message]}

    @hook_config(can_jump_to=["end"])
    async def abefore_model(
        self, state: _BudgetState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        return self.before_model(state, runtime)

    def after_model(self, state: _BudgetState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages = state.get("messages") or []
        last = messages[-1] if messages else None
        usage = getattr(last, "usage_metadata", None) if isinstance(last, AIMessage) else None
        spent = int(usage.get("total_tokens", 0)) if usage else 0
        return {"run_tokens_used": state.get("run_tokens_used", 0) + spent}

    async def aafter_model(
        self, state: _BudgetState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        return self.after_model(state, runtime)


class MemoryRecall(Protocol):
    """Returns what a role should remember for a request: short texts, most relevant first."""

    async def __call__(self, *, role: str, query: str, runtime: Runtime[Any]) -> Sequence[str]:
        """Recall memories.

        Args:
            role: The role asking.
            query: The latest human request.
            runtime: The run's runtime (``runtime.store`` is the long-term store).

        Returns:
            Memory texts, most relevant first.
        """
        ...


class MemoryRecallMiddleware(AgentMiddleware):
    """Add recalled memories to the system prompt before each model call.

    The recall itself is pluggable (:class:`MemoryRecall`); this middleware only bounds what
    comes back and places it in the prompt, so memory backends can change without touching
    the agents.
    """

    def __init__(
        self, recall: MemoryRecall, *, role: str, max_items: int = 5, max_chars: int = 4_000
    ) -> None:
        """Create the middleware.

        Args:
            recall: The recall function.
            role: The role whose memories are recalled.
            max_items: Most memories placed in the prompt.
            max_chars: Most characters of memories placed in the prompt.
        """
        super().__init__()
        self.recall = recall
        self.role = role
        self.max_items = max_items
        self.max_chars = max_chars

    def _with_memories(self, request: ModelRequest, memories: Sequence[str]) -> ModelRequest:
        lines: list[str] = []
        size = 0
        for memory in list(memories)[: self.max_items]:
            line = "- " + " ".join(str(memory).split())
            if size + len(line) > self.max_chars:
                break
            lines.append(line)
            size += len(line)
        if not lines:
            return request
        block = "Things you remember that may help:\n" + "\n".join(lines)
        base = request.system_message.text if request.system_message else ""
        prompt = f"{base}\n\n{block}" if base else block
        return request.override(system_message=SystemMessage(prompt))

    async def awrap_model_call(
        self, request: ModelRequest, handler: _AsyncModelHandler
    ) -> ModelResponse:
        query = last_human_text(request.messages)
        memories = await self.recall(role=self.role, query=query, runtime=request.runtime)
        return await handler(self._with_memories(request, memories))
