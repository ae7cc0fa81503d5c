"""Long-term memory through the real chat, staff and governance graphs on Postgres + pgvector.

The graphs are the shipped ones (``graphs.*.graph``) with the test's Postgres saver and store
attached as the server attaches them. What a model was given is observed with a LangChain
callback (``SeenPrompts``), so the assertions are on the prompt each role agent really saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.types import Command

from graphs.chat import Context as ChatContext
from graphs.chat import build_chat
from graphs.chat import graph as chat_graph
from graphs.governance import Context as GovernanceContext
from graphs.governance import graph as governance_graph
from graphs.staff import graph as staff_graph
from state.db import Persistence
from state.memory import MemoryScope, MemoryScopeError, MemoryStore, Provenance
from state.roles import Circle, Organization, Role
from tests.integration.graphs.conftest import attach
from tests.integration.memory.conftest import SeenPrompts

GDPR = "Check this announcement for GDPR privacy risk before publication"
BLOG = "Draft a blog post announcing our new product launch"
CITE = "Cite a source with a link for every statistic."


@dataclass
class Run:
    """One finished (or paused) run: its ids and its values."""

    thread_id: str
    run_id: str
    values: dict[str, Any]


async def run(
    graph: Any,
    payload: str | dict[str, Any] | Command[Any],
    *,
    context: Any,
    seen: SeenPrompts | None = None,
    thread_id: str | None = None,
    configurable: dict[str, Any] | None = None,
) -> Run:
    """Run ``graph`` once; the run id also rides in ``configurable``, as our server sends it."""
    thread_id = thread_id or str(uuid4())
    run_id = str(uuid4())
    config: dict[str, Any] = {
        "configurable": {"thread_id": thread_id, "run_id": run_id, **(configurable or {})},
        "run_id": run_id,
    }
    if seen is not None:
        config["callbacks"] = [seen]
    if isinstance(payload, str):
        payload = {"messages": [HumanMessage(payload)]}
    values = await graph.ainvoke(payload, config, context=context)
    return Run(thread_id=thread_id, run_id=run_id, values=values)


def chat_as(user: str | None) -> ChatContext:
    return ChatContext(user_id=user)


# ---------------------------------------------------------------------------- chat


async def test_chat_fact_told_in_one_session_is_recalled_in_the_next(
    persistence: Persistence,
) -> None:
    graph = attach(chat_graph, persistence)
    told = await run(
        graph, "Please remember that my team ships releases on Thursdays.", context=chat_as("alice")
    )

    seen = SeenPrompts()
    later = await run(
        graph, "When does my team ship releases?", context=chat_as("alice"), seen=seen
    )

    prompt = seen.prompts("analyst")[0]
    assert "[fact] The user's team ships releases on Thursdays." in prompt
    # provenance: which role wrote it, for whom, in which run and thread
    assert (
        f"(remembered by analyst, for user alice, run {told.run_id} in thread {told.thread_id}, "
        in prompt
    )
    # the first session is remembered as an episode of the role too (episodic memory)
    assert "[episode] Task: Please remember that my team ships releases on Thursdays." in prompt
    # memories go into the system prompt, never into the conversation
    assert later.thread_id != told.thread_id
    assert not any(isinstance(m, SystemMessage) for m in later.values["messages"])
    assert [m.type for m in later.values["messages"]] == ["human", "ai"]


async def test_chat_user_b_never_sees_user_a_memories(persistence: Persistence) -> None:
    graph = attach(chat_graph, persistence)
    await run(graph, "Remember that my badge number is 4417.", context=chat_as("alice"))
    await run(
        graph, "Please remember that my team ships releases on Thursdays.", context=chat_as("alice")
    )

    bob = SeenPrompts()
    await run(graph, "When does my team ship releases?", context=chat_as("bob"), seen=bob)
    # The analyst's recall tool searches memory for bob too: still nothing of alice's.
    await run(
        graph, "Recall what you know about my badge number.", context=chat_as("bob"), seen=bob
    )
    assert any(name == "recall" for name, _ in _tool_results(bob))
    assert "4417" not in bob.everything() and "Thursdays" not in bob.everything()

    # The same questions from alice find her memories: the absence above is the scoping.
    alice = SeenPrompts()
    await run(
        graph, "Recall what you know about my badge number.", context=chat_as("alice"), seen=alice
    )
    assert "The user's badge number is 4417." in dict(_tool_results(alice))["recall"]


def _tool_results(seen: SeenPrompts) -> list[tuple[str, str]]:
    return [
        (str(m.name), str(m.content)) for _, msgs in seen.calls for m in msgs if m.type == "tool"
    ]


async def test_chat_refuses_a_context_user_other_than_the_authenticated_one(
    persistence: Persistence,
) -> None:
    graph = attach(chat_graph, persistence)
    await run(graph, "Remember that my project is called Lighthouse.", context=chat_as("alice"))
    as_bob = {"langgraph_auth_user_id": "bob"}
    with pytest.raises(MemoryScopeError, match="does not match the authenticated user"):
        await run(
            graph, "What is my project called?", context=chat_as("alice"), configurable=as_bob
        )
    seen = SeenPrompts()
    await run(
        graph, "What is my project called?", context=chat_as(None), configurable=as_bob, seen=seen
    )
    assert "Lighthouse" not in seen.everything()


# ---------------------------------------------------------------------------- staff


async def test_staff_agent_episode_is_recalled_on_a_later_run(persistence: Persistence) -> None:
    graph = attach(staff_graph, persistence)
    # Servers pass the context as JSON: the staff's context schema takes the memory fields.
    first = await run(graph, GDPR, context={"user_id": "alice"})
    assert [h["member"] for h in first.values["handoffs"]] == ["compliance_officer"]

    memory = MemoryStore(persistence.store)
    officer = MemoryScope(role="compliance_officer", user_id="alice")
    (episode,) = await memory.recall(officer, "GDPR privacy announcement", kinds=["episodic"])
    assert episode.key == f"run-{first.run_id}"
    assert episode.value["task"].startswith(GDPR)
    assert episode.value["outcome"]
    assert (episode.provenance.recorded_by, episode.provenance.thread_id) == (
        "compliance_officer",
        first.thread_id,
    )

    seen = SeenPrompts()
    await run(graph, GDPR, context={"user_id": "alice"}, seen=seen)
    prompt = seen.prompts("compliance_officer")[0]
    assert f"[episode] Task: {GDPR}" in prompt
    assert f"run {first.run_id} in thread {first.thread_id}" in prompt

    others = SeenPrompts()
    await run(graph, GDPR, context={"user_id": "bob"}, seen=others)
    assert seen.prompts("compliance_officer") and others.prompts("compliance_officer")
    assert f"run {first.run_id}" not in others.everything()


# ---------------------------------------------------------------------------- procedural


def _governance(user: str = "lead") -> GovernanceContext:
    return GovernanceContext(user_id=user)


async def _writer_prompt(graph: Any, user: str) -> str:
    seen = SeenPrompts()
    result = await run(graph, BLOG, context={"user_id": user}, seen=seen)
    assert [h["member"] for h in result.values["handoffs"]] == ["writer"]
    return seen.prompts("writer")[0]


async def test_instruction_approved_through_governance_reaches_agents_pending_does_not(
    persistence: Persistence,
) -> None:
    governance = attach(governance_graph, persistence)
    staff = attach(staff_graph, persistence)
    memory = MemoryStore(persistence.store)
    writer = MemoryScope(role="writer", domains=("brand", "style_guide"))

    thread = str(uuid4())
    paused = await run(
        governance,
        "Writer drafts quote statistics without sources: add an instruction for the writer to "
        "cite sources",
        context=_governance(),
        thread_id=thread,
    )
    proposal = paused.values["proposal"]
    assert (proposal["role"], proposal["attribute"]) == ("writer", "instructions")
    (request,) = paused.values["__interrupt__"]
    (action,) = request.value["action_requests"]
    assert action["name"] == "add_instruction"
    first_ref = paused.values["procedure"]
    assert request.value["metadata"]["instruction_ref"] == first_ref
    assert [m.status for m in await memory.procedures(writer)] == ["pending"]

    # The reviewer rewrites the instruction: the edited text is staged, the first withdrawn.
    edited = {**action["args"], "value": CITE, "rule": "cite_sources"}
    decision = {"type": "edit", "edited_action": {"name": "add_instruction", "args": edited}}
    paused = await run(
        governance,
        Command(resume={"decisions": [decision]}),
        context=_governance(),
        thread_id=thread,
    )
    ref = paused.values["procedure"]
    assert ref == "org/writer/procedural/cite_sources-v1"
    withdrawn = await memory.get(writer, first_ref)
    assert withdrawn is not None and withdrawn.status == "rejected"
    assert withdrawn.value["decision"]["reason"] == "replaced by a revised proposal"
    pending = await memory.get(writer, ref)
    assert pending is not None and (pending.status, pending.text) == ("pending", CITE)
    assert pending.provenance.source == "governance"

    # Pending: no agent is given it.
    assert "Cite a source" not in await _writer_prompt(staff, "alice")

    done = await run(
        governance,
        Command(resume={"decisions": [{"type": "approve"}]}),
        context=_governance(),
        thread_id=thread,
    )
    assert done.values["outcome"] == {
        "status": "applied",
        "role": "writer",
        "version": 1,
        "ref": ref,
    }
    approved = await memory.get(writer, ref)
    assert approved is not None and approved.status == "approved"
    assert approved.value["decision"]["decided_by"] == "human:lead"

    # Approved: the writer is given it on every run, for every user, whatever the request.
    for user in ("alice", "bob"):
        prompt = await _writer_prompt(staff, user)
        assert f"[instruction cite_sources v1 (organisation)] {CITE}" in prompt
    # ... and only the writer: another role's agent is not.
    seen = SeenPrompts()
    await run(staff, GDPR, context={"user_id": "alice"}, seen=seen)
    assert "Cite a source" not in seen.everything()


async def test_governance_reviews_and_rejects_an_instruction_an_agent_proposed(
    persistence: Persistence,
) -> None:
    governance = attach(governance_graph, persistence)
    staff = attach(staff_graph, persistence)
    memory = MemoryStore(persistence.store)
    # What an agent's `remember(kind="instruction")` call stores: a pending organisation rule.
    agent_scope = MemoryScope(role="writer", user_id="alice")
    proposed = await memory.propose_procedure(
        agent_scope,
        "exclamations",
        "End every paragraph with an exclamation mark.",
        provenance=Provenance(recorded_by="writer", source="tool", user_id="alice"),
        reason="proposed by writer with the remember tool",
    )

    thread = str(uuid4())
    paused = await run(
        governance,
        {"messages": [], "instruction_ref": proposed.ref},
        context=_governance(),
        thread_id=thread,
    )
    (request,) = paused.values["__interrupt__"]
    (action,) = request.value["action_requests"]
    assert action["name"] == "add_instruction"
    assert action["args"]["value"] == "End every paragraph with an exclamation mark."
    assert paused.values["procedure"] == proposed.ref
    assert len(await memory.procedures(agent_scope)) == 1  # reviewed as is, not copied

    done = await run(
        governance,
        Command(resume={"decisions": [{"type": "reject", "message": "Off brand."}]}),
        context=_governance(),
        thread_id=thread,
    )
    assert done.values["outcome"] == {
        "status": "rejected",
        "role": "writer",
        "reason": "Off brand.",
        "ref": proposed.ref,
    }
    rejected = await memory.get(agent_scope, proposed.ref)
    assert rejected is not None and rejected.status == "rejected"
    assert rejected.value["decision"]["decided_by"] == "human:lead"
    assert "exclamation" not in await _writer_prompt(staff, "alice")

    # A later run on the same thread starts from its own tension, not the reviewed ref.
    again = await run(
        governance,
        "Grant the writer the calculator so it can check figures in drafts",
        context=_governance(),
        thread_id=thread,
    )
    assert again.values["proposal"]["attribute"] == "tool_grant"
    assert again.values["procedure"] == "" and again.values["instruction_ref"] == ""
    with pytest.raises(ValueError, match="is not a pending instruction"):
        await run(
            governance, {"messages": [], "instruction_ref": proposed.ref}, context=_governance()
        )


# ---------------------------------------------------------------------------- write tools


async def test_chat_write_memory_tools_wait_for_approval(persistence: Persistence) -> None:
    editor = Role.model_validate(
        {
            "name": "editor",
            "purpose": "Keeps the team's notes.",
            "policies": {"approval_required": ["write"]},
        }
    )
    org = Organization(
        circles=(Circle(name="desk", purpose="Notes.", lead="editor"),), roles=(editor,)
    )
    graph = attach(
        build_chat("editor", org=org, memory_tools=("recall", "remember", "forget")), persistence
    )
    thread = str(uuid4())
    paused = await run(
        graph,
        "Remember: our office moves to Ghent in May.",
        context=chat_as("alice"),
        thread_id=thread,
    )
    (request,) = paused.values["__interrupt__"]
    (action,) = request.value["action_requests"]
    assert action["name"] == "remember"
    assert "requires approval for 'write'" in action["description"]
    memory = MemoryStore(persistence.store)
    alice = MemoryScope(role="editor", user_id="alice")
    assert await memory.recall(alice, "office Ghent", kinds=["semantic"]) == []  # not before

    await run(
        graph,
        Command(resume={"decisions": [{"type": "approve"}]}),
        context=chat_as("alice"),
        thread_id=thread,
    )
    (fact,) = await memory.recall(alice, "office Ghent", kinds=["semantic"])
    # The approved tool call stored the fact; the remember step's explicit fact then merged
    # into it (same fact, reworded) instead of adding a duplicate.
    assert fact.text == "Our office moves to Ghent in May."
    assert fact.value["previous"][0]["provenance"]["source"] == "tool"


async def test_run_metadata_cannot_make_the_chat_role_act_as_another(
    persistence: Persistence,
) -> None:
    memory = MemoryStore(persistence.store)
    finance = MemoryScope(role="finance", user_id="alice", domains=("budget",))
    await memory.write_fact(
        finance,
        "The travel budget is 9,000 euros.",
        provenance=Provenance(recorded_by="finance"),
        area="budget",
    )
    graph = attach(chat_graph, persistence)
    # A client sends the agent name LangChain uses in its own metadata, naming finance.
    result = await graph.ainvoke(
        {"messages": [HumanMessage("Recall what you know about the travel budget.")]},
        {"configurable": {"thread_id": str(uuid4())}, "metadata": {"lc_agent_name": "finance"}},
        context=chat_as("alice"),
    )
    (answer,) = [m for m in result["messages"] if m.type == "tool"]
    assert answer.name == "recall"  # the analyst's tool ran, as the analyst
    assert "9,000" not in str(answer.content)
    assert await memory.recall(finance, "travel budget", kinds=["semantic"])  # it is there
