"""Memory tools for agents: ``remember`` (write), ``recall`` (read) and ``forget`` (write).

The tools act for the role of the agent that calls them (set by the agent's
:class:`nodes.memory.ActingRoleMiddleware`, which :func:`nodes.agent.build_role_agent` adds;
outside a role agent, the ``lc_agent_name`` of the run's metadata) and for the run's user (see
:func:`nodes.memory.resolve_scope`), so an agent can only touch its own user's memories in its
own area and its domains' areas. ``remember`` stores facts (merged with similar facts) or
proposes instructions for the role, which stay pending until governance approves them (the
governance graph reviews one given its ref as ``instruction_ref``).

Register them with :func:`register_memory_tools`; a role granted ``remember`` or ``forget``
needs ``write`` (or the tool name) in ``policies.approval_required``, as for any write tool.
The ``chat`` graph grants its role ``recall`` only, by default (see ``graphs.chat``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import Field

from nodes.memory.acting import acting_role
from nodes.memory.context import MemoryContext, memory_settings, provenance_for, resolve_scope
from nodes.memory.recall import format_memories
from state.memory import (
    MemoryInputError,
    MemoryNotFound,
    MemoryScope,
    MemoryScopeError,
    MemoryStore,
)
from state.roles import Organization
from state.tool_risk import ToolRisk
from tools.registry import ToolRegistry

__all__ = ["MEMORY_TOOL_RISKS", "memory_tools", "register_memory_tools"]

MEMORY_TOOL_RISKS: Mapping[str, ToolRisk] = {
    "remember": ToolRisk.WRITE,
    "recall": ToolRisk.READ,
    "forget": ToolRisk.WRITE,
}
"""Risk level of each memory tool."""

_RECALL_HEADER = "Memories (most relevant first; pass a ref to forget to delete one):"


_Text = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2_000,
        description="What to remember, as a standalone sentence naming its subject, e.g. "
        "'The user's company is Acme.'",
    ),
]
_Kind = Annotated[
    Literal["fact", "instruction"],
    Field(
        description="'fact' for something true about the user or their work; 'instruction' to "
        "propose a standing instruction for your role (used only after approval).",
    ),
]
_Rule = Annotated[
    str | None,
    Field(
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="For instructions: a short snake_case name; once approved, a new version "
        "replaces the approved one with the same name.",
    ),
]
_Query = Annotated[str, Field(min_length=1, max_length=2_000, description="What to look for.")]
_K = Annotated[
    int,
    Field(ge=1, le=20, description="Most memories to return; default: the run's memory_k."),
]
_Ref = Annotated[
    str,
    Field(
        min_length=1,
        max_length=300,
        description="The ref of a memory as shown by recall, e.g. user/writer/semantic/fact-0a1b.",
    ),
]


def _role_of(runtime: ToolRuntime[Any, Any]) -> str:
    # Inside a role agent its own middleware names the role; run metadata (which a client can
    # send) only counts for tools run outside one, e.g. in a plain ToolNode.
    name = acting_role()
    if name is None:
        metadata = (runtime.config or {}).get("metadata") or {}
        name = metadata.get("lc_agent_name")
    if not isinstance(name, str) or not name:
        context = runtime.context
        name = (
            context.get("role") if isinstance(context, Mapping) else getattr(context, "role", None)
        )
    if not isinstance(name, str) or not name:
        raise ToolException(
            "Memory tools work inside a role agent (create_agent with name=<role>); "
            "no role is known for this call."
        )
    return name


class _Tools:
    """State shared by the three tools: where role domains come from."""

    def __init__(
        self, organization: Organization | None, similarity_threshold: float | None
    ) -> None:
        self.organization = organization
        self.similarity_threshold = similarity_threshold

    def scope(self, runtime: ToolRuntime[Any, Any]) -> MemoryScope:
        role = _role_of(runtime)
        domains: Sequence[str] = ()
        if self.organization is not None and self.organization.has_role(role):
            domains = self.organization.role(role).domains
        try:
            return resolve_scope(runtime, role=role, domains=domains)
        except (MemoryInputError, MemoryScopeError, ValueError) as exc:
            raise ToolException(str(exc)) from None

    def memory(self, runtime: ToolRuntime[Any, Any]) -> MemoryStore:
        if runtime.store is None:
            raise ToolException("Long-term memory is not available: this graph has no store.")
        threshold = self.similarity_threshold
        if threshold is None:
            threshold = self.settings(runtime).memory_merge_threshold
        return MemoryStore(runtime.store, similarity_threshold=threshold)

    def settings(self, runtime: ToolRuntime[Any, Any]) -> MemoryContext:
        try:
            return memory_settings(runtime)
        except ValueError as exc:
            raise ToolException(str(exc)) from None

    async def remember(
        self,
        text: str,
        runtime: ToolRuntime[Any, Any],
        kind: Literal["fact", "instruction"] = "fact",
        rule: str | None = None,
    ) -> str:
        scope = self.scope(runtime)
        memory = self.memory(runtime)
        provenance = provenance_for(
            runtime, recorded_by=scope.role, source="tool", user_id=scope.user_id
        )
        try:
            if kind == "instruction":
                proposal = await memory.propose_procedure(
                    scope,
                    rule or "learned",
                    text,
                    provenance=provenance,
                    reason=f"proposed by {scope.role} with the remember tool",
                )
                return (
                    f"Proposed instruction {proposal.value['rule']} v{proposal.value['version']}"
                    f" (ref {proposal.ref}). It is pending approval and is not used until "
                    "approved."
                )
            if scope.user_id is None:
                return "Not remembered: no user is identified for this conversation."
            written = await memory.write_fact(scope, text, provenance=provenance)
        except (MemoryInputError, MemoryScopeError) as exc:
            raise ToolException(str(exc)) from None
        ref = written.memory.ref
        if written.action == "created":
            return f"Remembered a new fact (ref {ref})."
        if written.action == "unchanged":
            return f"Already remembered; renewed it (ref {ref})."
        earlier = written.memory.value.get("previous") or [{}]
        return (
            f"Updated a similar fact (similarity {written.similarity or 0:.2f}): it said "
            f"{earlier[0].get('text')!r}, now {written.memory.text!r} (ref {ref})."
        )

    async def recall(self, query: str, runtime: ToolRuntime[Any, Any], k: int | None) -> str:
        scope = self.scope(runtime)
        if k is None:
            k = self.settings(runtime).memory_k
        try:
            found = await self.memory(runtime).recall(scope, query, k=k)
        except MemoryInputError as exc:
            raise ToolException(str(exc)) from None
        return format_memories(found, header=_RECALL_HEADER) or "No memories found."

    async def forget(self, ref: str, runtime: ToolRuntime[Any, Any]) -> str:
        scope = self.scope(runtime)
        try:
            deleted = await self.memory(runtime).forget(scope, ref)
        except (MemoryInputError, MemoryScopeError, MemoryNotFound) as exc:
            raise ToolException(str(exc)) from None
        return f"Forgot {ref}." if deleted else f"No memory {ref} to forget."


def memory_tools(
    *, organization: Organization | None = None, similarity_threshold: float | None = None
) -> list[BaseTool]:
    """Build the ``remember``, ``recall`` and ``forget`` tools.

    Each declares its risk in ``metadata["risk"]`` (see :data:`MEMORY_TOOL_RISKS`). Errors
    (bad input, a ref outside the caller's scope) come back to the model as the tool's answer.

    Args:
        organization: Where the calling role's domains are looked up (its domains' memory
            areas are readable and writable); without it a role uses only its own area.
        similarity_threshold: Similarity at which ``remember`` updates an existing fact; by
            default the run's ``context.memory_merge_threshold``.

    Returns:
        The three tools, in the order remember, recall, forget.
    """
    shared = _Tools(organization, similarity_threshold)

    async def remember(
        text: _Text, runtime: ToolRuntime[Any, Any], kind: _Kind = "fact", rule: _Rule = None
    ) -> str:
        return await shared.remember(text, runtime, kind, rule)

    async def recall(query: _Query, runtime: ToolRuntime[Any, Any], k: _K | None = None) -> str:
        return await shared.recall(query, runtime, k)

    async def forget(ref: _Ref, runtime: ToolRuntime[Any, Any]) -> str:
        return await shared.forget(ref, runtime)

    specs: list[tuple[Any, str]] = [
        (
            remember,
            "Remember a fact about the user or their work for future conversations, or "
            "propose a standing instruction for your role.",
        ),
        (
            recall,
            "Recall long-term memories (facts, past tasks, instructions) relevant to a query.",
        ),
        (forget, "Forget (delete) one of the user's memories by its ref."),
    ]
    tools: list[BaseTool] = []
    for function, description in specs:
        tools.append(
            StructuredTool.from_function(
                coroutine=function,
                name=function.__name__,
                description=description,
                handle_tool_error=True,
                metadata={"risk": MEMORY_TOOL_RISKS[function.__name__].value},
            )
        )
    return tools


def register_memory_tools(
    registry: ToolRegistry,
    *,
    organization: Organization | None = None,
    similarity_threshold: float | None = None,
    replace: bool = False,
) -> list[BaseTool]:
    """Add ``remember``, ``recall`` and ``forget`` to ``registry``.

    Args:
        registry: The application's registry (e.g. from :func:`tools.default_registry`).
        organization: See :func:`memory_tools`.
        similarity_threshold: See :func:`memory_tools`.
        replace: Replace tools already registered under these names.

    Returns:
        The registered tools.

    Raises:
        GraphSetupError: A name is taken and ``replace`` is false.
    """
    return [
        registry.register(tool, replace=replace)
        for tool in memory_tools(
            organization=organization, similarity_threshold=similarity_threshold
        )
    ]
