"""Parallel: the request goes to every specialist at once (``Send``), then one fused answer.

Each specialist runs as its own task in one superstep, so LangGraph checkpoints each finished
branch's writes separately: a branch that pauses for approval resumes alone, and its siblings
are not run again. A failing branch never costs the others their work: an optional
``RetryPolicy`` retries it, and once retries are spent LangGraph's node-level error handler
records the failure in ``results`` (exception type only; details go to the log) instead of
failing the superstep, which would cancel siblings still running. The fusion then works with
the branches that succeeded.

    START -> intake -(Send per specialist)-> <specialist> ... -> fuse -> END
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer, Overwrite, RetryPolicy, Send
from typing_extensions import TypedDict

from graphs._common import ModelContext, required_request
from nodes._private import chat_model_for, clip
from nodes.agent import role_system_prompt
from nodes.budget import merge_usage
from nodes.team import Answer, Member, check_members, member_node
from state.roles import Role, default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry

__all__ = [
    "Branch",
    "BranchResult",
    "Context",
    "InputState",
    "State",
    "build_parallel",
    "default_specialists",
    "graph",
]

log = logging.getLogger(__name__)


class Branch(TypedDict):
    """What one specialist gets."""

    specialist: str
    request: str


class BranchResult(TypedDict):
    """What one branch produced."""

    specialist: str
    status: Literal["done", "failed"]
    answer: str
    tokens: int
    error: NotRequired[str]
    """For a failed branch: the exception type (details are in the server log)."""


class InputState(TypedDict):
    """What a run takes: the request as the last human message."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the fused answer is added to it."""


class State(InputState, total=False):
    """Everything the graph keeps."""

    request: str
    """The request all specialists work on."""
    results: Annotated[list[BranchResult], operator.add]
    """One entry per branch of the current run."""
    usage: Annotated[dict[str, int], merge_usage]
    """Tokens spent per role in the current run."""


@dataclass(kw_only=True)
class Context(ModelContext):
    """Per-run settings of the parallel graph."""


def build_parallel(
    specialists: Sequence[Member],
    *,
    fuser: Role | None = None,
    model: BaseChatModel | None = None,
    retry_policy: RetryPolicy | None = None,
    name: str = "parallel",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build a fan-out over ``specialists`` with a fusion node.

    Args:
        specialists: Who works on the request, all at once.
        fuser: The role whose voice the fused answer takes (its prompt and ``model``).
        model: A fixed chat model for the fusion; by default chosen per run.
        retry_policy: How a failing branch is retried before its failure is recorded.
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Long-term store, likewise.

    Returns:
        The compiled graph.

    Raises:
        GraphSetupError: No specialists, or bad or duplicate names.
    """
    by_name = check_members(specialists, owner=f"Parallel graph '{name}'")
    system = (
        role_system_prompt(fuser) if fuser is not None else "Role: Editor"
    ) + "\nCombine the specialists' findings below into one answer to the request."

    async def intake(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        request = required_request(
            state["messages"], owner=f"Parallel graph '{name}'", what="request"
        )
        return {"request": request, "results": Overwrite([]), "usage": Overwrite({})}

    def fan_out(state: State) -> list[Send]:
        request = state.get("request")
        if not request:
            raise ValueError("intake ran without recording the request.")
        return [Send(s, Branch(specialist=s, request=request)) for s in by_name]

    async def fuse(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        results = sorted(state.get("results") or [], key=lambda r: r["specialist"])
        findings = [f"- {r['specialist']}: {r['answer']}" for r in results if r["status"] == "done"]
        failed = [r["specialist"] for r in results if r["status"] == "failed"]
        text = state.get("request", "") + "\n\nFindings:\n" + ("\n".join(findings) or "(none)")
        if failed:
            text += "\n\nNo findings from: " + ", ".join(failed) + " (failed)."
        chat = model or chat_model_for(runtime, fallback=fuser.model if fuser else None)
        reply = await chat.ainvoke([SystemMessage(system), HumanMessage(clip(text))])
        reply.name = fuser.name if fuser is not None else name
        update: dict[str, Any] = {"messages": [reply]}
        if reply.usage_metadata:
            update["usage"] = {reply.name: reply.usage_metadata["total_tokens"]}
        return update

    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("intake", intake)
    builder.add_node("fuse", fuse)
    for specialist in specialists:
        builder.add_node(
            specialist.name,
            _branch_node(specialist),
            input_schema=Branch,
            retry_policy=retry_policy,
            error_handler=_record_failure,
        )
        builder.add_edge(specialist.name, "fuse")
    builder.add_edge(START, "intake")
    builder.add_conditional_edges("intake", fan_out, list(by_name))
    builder.add_edge("fuse", END)
    return builder.compile(name=name, checkpointer=checkpointer, store=store)


def _branch_node(specialist: Member) -> Any:
    """The specialist as a subgraph node: it gets the request, its answer is a result."""

    def done(task: Branch, answer: Answer) -> dict[str, Any]:
        result = BranchResult(
            specialist=specialist.name,
            status="done",
            answer=answer.text,
            tokens=sum(answer.usage.values()),
        )
        return {"results": [result], "usage": answer.usage}

    return member_node(specialist, request=lambda task: task["request"], respond=done)


async def _record_failure(task: Branch, error: NodeError) -> dict[str, Any]:
    """Error handler of every branch: the failure becomes a result, the run goes on."""
    log.error("branch %s failed", task["specialist"], exc_info=error.error)
    failed = BranchResult(
        specialist=task["specialist"],
        status="failed",
        answer="",
        tokens=0,
        error=type(error.error).__name__,
    )
    return {"results": [failed]}


def default_specialists(*, registry: ToolRegistry | None = None) -> tuple[list[Member], Role]:
    """Analyst, writer and compliance officer, fused in the chief of staff's voice."""
    registry = registry if registry is not None else default_registry()
    org = load_organization(default_roles_dir(), registry=registry)
    members = [
        Member.from_role(org.role(n), registry=registry)
        for n in ("analyst", "writer", "compliance_officer")
    ]
    return members, org.role("chief_of_staff")


_specialists, _fuser = default_specialists()
graph = build_parallel(_specialists, fuser=_fuser, name="parallel")
"""Three specialists and a fusion, compiled without persistence."""
