"""Staff: the whole organisation as nested supervisors, one per circle.

Each circle becomes a team led by its lead role. The team's members are the circle's roles
(the lead included, so a lead can also do work itself) and one member per sub-circle, which is
that sub-circle's own team. A circle with a single role and no sub-circles is just that role's
agent. The default organisation comes from ``state/roles/default/``:

    operations (chief of staff): chief_of_staff, writer, compliance_officer, finance,
        research (researcher): researcher, analyst
        people (people lead)

Every role agent has long-term memory when the run has a store: before each model call it
recalls what its role may read for the run's user (``context.user_id`` or the authenticated
user) and organisation - facts, earlier episodes of the role, approved instructions - and when
it finishes it stores the delegation as an episode of its role. Pending or rejected
instructions are never recalled; they become visible once the governance graph approves them.
Memory middleware is asynchronous: run the graph with ``ainvoke`` / ``astream``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from langchain.agents.middleware import AgentMiddleware
from langchain_core.language_models import BaseChatModel
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer

from graphs.supervisor import Context as SupervisorContext
from graphs.supervisor import InputState, State, build_supervisor
from nodes._private import humanize
from nodes.memory import MemoryContext, RememberEpisodeMiddleware, StoreRecall
from nodes.middleware import MemoryRecall
from nodes.team import Member
from state.errors import GraphSetupError
from state.roles import (
    Circle,
    Organization,
    Role,
    default_roles_dir,
    load_organization,
    validate_organization,
)
from tools.registry import ToolRegistry, default_registry

__all__ = ["Context", "InputState", "State", "build_staff", "circle_member", "graph"]


@dataclass(kw_only=True)
class Context(SupervisorContext, MemoryContext):
    """Per-run settings of the staff: the supervisors' settings (model, rounds, budget) and
    whose long-term memory the role agents use (user_id, org_id, memory_k, memory_min_score).
    """


def _member(
    role: Role,
    *,
    registry: ToolRegistry,
    model: BaseChatModel | None,
    memory: MemoryRecall | None,
    remember: bool,
) -> Member:
    middleware: list[AgentMiddleware[Any, Any]] = []
    if remember:
        middleware.append(RememberEpisodeMiddleware(role, require_store=False))
    return Member.from_role(
        role, registry=registry, model=model, memory=memory, middleware=middleware
    )


def _team(
    org: Organization,
    circle: Circle,
    *,
    registry: ToolRegistry,
    model: BaseChatModel | None,
    memory: MemoryRecall | None,
    remember: bool,
) -> list[Member]:
    """A circle's team: its roles (the lead too, who may also do work) and its sub-circles."""
    members = [
        _member(role, registry=registry, model=model, memory=memory, remember=remember)
        for role in org.members(circle.name)
    ]
    members.extend(
        circle_member(org, sub, registry=registry, model=model, memory=memory, remember=remember)
        for sub in org.sub_circles(circle.name)
    )
    return members


def circle_member(
    org: Organization,
    circle: Circle,
    *,
    registry: ToolRegistry,
    model: BaseChatModel | None = None,
    memory: MemoryRecall | None = None,
    remember: bool = False,
) -> Member:
    """The member that stands for ``circle`` in its parent's team.

    Args:
        org: The organisation.
        circle: The circle.
        registry: Tools for the role agents.
        model: A fixed chat model for every role; by default chosen per run.
        memory: Recall hook for every role agent.
        remember: Whether every role agent stores its runs as episodes.

    Returns:
        A member named after the circle: its team (a nested supervisor), or its only role's
        agent.
    """
    lead = org.role(circle.lead)
    description = (
        f"The {humanize(circle.name)} circle, led by {humanize(lead.name)}: {circle.purpose}"
    )
    if len(org.members(circle.name)) == 1 and not org.sub_circles(circle.name):
        agent = _member(lead, registry=registry, model=model, memory=memory, remember=remember)
        return Member(name=circle.name, description=description, graph=agent.graph, role=lead.name)
    members = _team(org, circle, registry=registry, model=model, memory=memory, remember=remember)
    team = build_supervisor(members, lead=lead, org=org, model=model, name=circle.name)
    return Member(name=circle.name, description=description, graph=team, role=circle.name)


def build_staff(
    org: Organization | None = None,
    *,
    registry: ToolRegistry | None = None,
    model: BaseChatModel | None = None,
    memory: MemoryRecall | bool = True,
    remember: bool = True,
    name: str = "staff",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build the organisation's staff: the top circle's team with nested circle teams.

    Args:
        org: The organisation; defaults to ``state/roles/default/``. It is validated against
            ``registry``.
        registry: Tools roles may be granted; defaults to :func:`tools.default_registry`.
        model: A fixed chat model for every role; by default chosen per run from the context.
        memory: ``True`` makes every role agent recall from the run's store
            (:class:`nodes.memory.StoreRecall`, domains from ``org``), ``False`` recalls
            nothing, or pass any recall hook.
        remember: Every role agent stores each run as an episode of its role
            (:class:`nodes.memory.RememberEpisodeMiddleware`).
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Long-term store, likewise.

    Returns:
        The compiled graph (a supervisor; see :mod:`graphs.supervisor`) whose context schema
        is this module's :class:`Context`.

    Raises:
        GraphSetupError: The organisation fails validation (``RoleDefinitionError``), or it
            has no single top circle.
    """
    registry = registry if registry is not None else default_registry()
    if org is None:
        org = load_organization(default_roles_dir(), registry=registry)
    else:
        validate_organization(org, registry)
    roots = org.root_circles()
    if len(roots) != 1:
        found = ", ".join(c.name for c in roots) or "none"
        raise GraphSetupError(
            f"Staff needs exactly one top circle to lead the organisation; found: {found}. "
            "Make the others sub_circles of one circle."
        )
    top = roots[0]
    recall: MemoryRecall | None
    if memory is True:
        # Without a store the staff still runs (the default graph compiles without one).
        recall = StoreRecall(organization=org, require_store=False)
    else:
        recall = memory or None
    staff = build_supervisor(
        _team(org, top, registry=registry, model=model, memory=recall, remember=remember),
        lead=org.role(top.lead),
        org=org,
        model=model,
        name=name,
        checkpointer=checkpointer,
        store=store,
    )
    # build_supervisor compiles with the supervisor's Context; the staff's adds the memory
    # fields, and servers keep only the context keys the graph's schema declares. Nested
    # teams read the shared fields from it (it is a subclass of their Context).
    return cast(
        "CompiledStateGraph[State, Context, InputState, State]",
        staff.copy(update={"context_schema": Context}),
    )


graph = build_staff()
"""The default organisation from ``state/roles/default/``, with long-term memory once a store
is attached; compiled without persistence."""
