"""Memory written and recalled through graph runs on real Postgres + pgvector."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from langchain_core.messages import HumanMessage

from nodes.critic import CriterionScore, Review
from state.db import Persistence
from state.memory import (
    MemoryKind,
    MemoryScope,
    MemoryScopeError,
    MemoryStore,
    Provenance,
    owner_label,
)
from state.roles import Role
from tests.integration.memory.conftest import (
    FINANCE,
    WRITER,
    build_memory_graph,
    is_recall_message,
    run_turn,
)


async def _rows(persistence: Persistence, prefix: str) -> int:
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM store WHERE prefix LIKE %s", (prefix + "%",)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def test_semantic_fact_remembered_in_one_thread_is_recalled_in_another(
    persistence: Persistence,
) -> None:
    graph = build_memory_graph(persistence, WRITER)
    first = await run_turn(
        graph, "Please remember that my team ships releases on Thursdays.", user="alice"
    )
    assert first.recalled == ""  # nothing known yet

    second = await run_turn(graph, "When does my team ship releases?", user="alice")

    block = second.recalled
    assert "[fact] The user's team ships releases on Thursdays." in block
    # provenance: who, for whom, which run and thread
    assert "by writer" in block and "for user alice" in block
    assert f"run {first.run_id}" in block and f"in thread {first.thread_id}" in block
    assert "ref user/writer/semantic/fact-" in block
    # the stored item lives in the user's semantic namespace of the role
    assert await _rows(persistence, "memories.user:alice.writer.semantic") == 1


async def test_recall_block_is_replaced_not_accumulated_across_turns(
    persistence: Persistence,
) -> None:
    graph = build_memory_graph(persistence, WRITER)
    await run_turn(graph, "Remember that the launch is on 3 June.", user="alice")
    thread = "thread-repeat"
    await run_turn(graph, "When is the launch?", user="alice", thread_id=thread)
    again = await run_turn(graph, "Remind me when the launch is.", user="alice", thread_id=thread)
    blocks = [m for m in again.values["messages"] if is_recall_message(m)]
    assert len(blocks) == 1
    assert again.values["messages"][-2] is blocks[0]  # fresh block right before the answer
    assert "The launch is on 3 June." in blocks[0].content


async def test_episode_with_critic_scores_is_recalled_with_its_run(
    persistence: Persistence,
) -> None:
    graph = build_memory_graph(persistence, WRITER, facts="none")
    review = Review(
        scores=[
            CriterionScore(
                criterion="clarity", score=0.9, threshold=0.6, passed=True, critique="clear"
            ),
            CriterionScore(
                criterion="tone", score=0.7, threshold=0.6, passed=True, critique="warm"
            ),
        ],
        overall=0.8,
        passed=True,
        critique="",
    )
    first = await run_turn(
        graph,
        "Draft the quarterly newsletter about the harbour expansion.",
        user="alice",
        review=review,
    )

    memory = MemoryStore(persistence.store)
    scope = MemoryScope(role="writer", user_id="alice")
    (episode,) = await memory.recall(scope, "newsletter", kinds=[MemoryKind.EPISODIC])
    assert episode.key == f"run-{first.run_id}"
    assert episode.value["task"] == "Draft the quarterly newsletter about the harbour expansion."
    assert episode.value["scores"] == {"clarity": 0.9, "tone": 0.7}
    assert episode.value["succeeded"] is True
    assert episode.value["outcome"]  # the offline model's answer
    assert episode.provenance.thread_id == first.thread_id

    second = await run_turn(
        graph, "What did we do for the quarterly newsletter on the harbour?", user="alice"
    )
    block = second.recalled
    assert "[episode] Task: Draft the quarterly newsletter about the harbour expansion." in block
    assert "Scores: clarity 0.90, tone 0.70" in block
    assert f"run {first.run_id}" in block


async def test_procedural_instruction_is_used_only_after_approval(
    persistence: Persistence,
) -> None:
    graph = build_memory_graph(persistence, WRITER, facts="none", episodes=False)
    memory = MemoryStore(persistence.store)
    scope = MemoryScope(role="writer", user_id="alice")
    critic = Provenance(recorded_by="critic", source="critic", run_id="run-critic-1")
    proposal = await memory.propose_procedure(
        scope,
        "cite_sources",
        "Cite a source with a link for every statistic in a draft.",
        provenance=critic,
        reason="Two drafts quoted statistics without sources.",
    )
    assert proposal.status == "pending"
    assert proposal.ref == "org/writer/procedural/cite_sources-v1"

    before = await run_turn(graph, "Write a draft with statistics and sources.", user="alice")
    assert "Cite a source" not in before.recalled

    approved = await memory.approve_procedure(
        scope, proposal.ref, decided_by="human:lead", reason="Agreed."
    )
    assert approved.status == "approved"
    assert approved.value["decision"]["decided_by"] == "human:lead"

    after = await run_turn(graph, "Write a draft with statistics and sources.", user="alice")
    assert (
        "[instruction cite_sources v1 (organisation)] Cite a source with a link for every "
        "statistic in a draft." in after.recalled
    )
    # an organisation instruction reaches every user of the role
    other_user = await run_turn(graph, "Write a draft with statistics and sources.", user="bob")
    assert "Cite a source with a link" in other_user.recalled

    # a second version stays pending, then supersedes the first once approved
    v2 = await memory.propose_procedure(
        scope,
        "cite_sources",
        "Cite a primary source with a link for every statistic and quote.",
        provenance=Provenance(recorded_by="human:lead", source="human"),
    )
    assert v2.value["version"] == 2
    pending = await run_turn(graph, "Write a draft with statistics and sources.", user="alice")
    assert "v1" in pending.recalled and "primary source" not in pending.recalled
    rejected_v3 = await memory.propose_procedure(
        scope, "cite_sources", "Never cite sources.", provenance=critic
    )
    await memory.reject_procedure(scope, rejected_v3.ref, decided_by="human:lead")
    await memory.approve_procedure(scope, v2.ref, decided_by="human:lead")
    final = await run_turn(graph, "Write a draft with statistics and sources.", user="alice")
    assert "[instruction cite_sources v2 (organisation)] Cite a primary source" in final.recalled
    assert "cite_sources v1" not in final.recalled
    assert "Never cite sources" not in final.recalled
    statuses = {m.value["version"]: m.status for m in await memory.procedures(scope)}
    assert statuses == {1: "superseded", 2: "approved", 3: "rejected"}
    assert [m.ref for m in await memory.procedures(scope, status="pending")] == []


async def test_user_b_never_recalls_user_a_memories(persistence: Persistence) -> None:
    graph = build_memory_graph(persistence, WRITER)
    await run_turn(graph, "Remember that my bank PIN hint is the harbour lighthouse.", user="alice")
    await run_turn(graph, "Remember that my dog is called Pixel.", user="alice.smith")

    for user in ("bob", "alice.smith", "alice%2Esmith", "alic"):
        turn = await run_turn(graph, "What is my bank PIN hint, the harbour lighthouse?", user=user)
        assert "lighthouse" not in turn.recalled, user
    # the escaped label keeps "alice.smith" apart from "alice" and from "alice%2Esmith"
    assert "Pixel" in (await run_turn(graph, "What is my dog called?", user="alice.smith")).recalled
    assert "Pixel" not in (await run_turn(graph, "What is my dog called?", user="alice")).recalled
    lookalike = await run_turn(graph, "What is my dog called?", user="alice%2Esmith")
    assert "Pixel" not in lookalike.recalled
    # no user at all: nothing user-scoped is read or written
    anonymous = await run_turn(graph, "Remember that my bank PIN hint is blue.", user=None)
    assert "lighthouse" not in anonymous.recalled
    assert await _rows(persistence, "memories.user:alice.writer.semantic") == 1
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM store WHERE value::text LIKE '%%blue%%'"
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0


async def test_authenticated_user_wins_and_a_mismatched_context_is_refused(
    persistence: Persistence,
) -> None:
    @dataclass
    class AuthUser:
        identity: str
        is_authenticated: bool = True
        display_name: str = "user"
        permissions: tuple[str, ...] = ()

    graph = build_memory_graph(persistence, WRITER)
    await run_turn(graph, "Remember that my project is called Lighthouse.", user="alice")
    as_bob = {"langgraph_auth_user_id": "bob"}
    turn = await run_turn(graph, "What is my project called?", user=None, configurable=as_bob)
    assert "Lighthouse" not in turn.recalled
    with pytest.raises(MemoryScopeError, match="does not match the authenticated user"):
        await run_turn(graph, "What is my project called?", user="alice", configurable=as_bob)
    # the same through the server's user object (runtime.server_info.user)
    with pytest.raises(MemoryScopeError):
        await run_turn(
            graph,
            "What is my project called?",
            user="alice",
            configurable={"langgraph_auth_user": AuthUser("bob")},
        )
    own = await run_turn(
        graph,
        "What is my project called?",
        user=None,
        configurable={"langgraph_auth_user": AuthUser("alice")},
    )
    assert "The user's project is called Lighthouse." in own.recalled


async def test_roles_read_only_their_own_area_and_their_domains(persistence: Persistence) -> None:
    memory = MemoryStore(persistence.store)
    finance = MemoryScope(role="finance", user_id="alice", domains=FINANCE.domains)
    await memory.write_fact(
        finance,
        "The Q3 marketing budget is 48,000 euros.",
        provenance=Provenance(recorded_by="finance"),
        area="budget",
    )
    await memory.write_fact(
        finance,
        "Finance closes the books on the fifth working day.",
        provenance=Provenance(recorded_by="finance"),
    )
    question = "What is the Q3 marketing budget? When are the books closed?"
    finance_turn = await run_turn(build_memory_graph(persistence, FINANCE), question, user="alice")
    assert "48,000 euros" in finance_turn.recalled and "fifth working day" in finance_turn.recalled

    writer_turn = await run_turn(build_memory_graph(persistence, WRITER), question, user="alice")
    assert "48,000" not in writer_turn.recalled and "fifth working day" not in writer_turn.recalled

    # The domain's memories follow the domain: a new owner of `budget` reads them, but not
    # finance's own area.
    treasurer = Role(name="treasurer", purpose="Keeps the money.", domains=("budget",))
    treasurer_turn = await run_turn(
        build_memory_graph(persistence, treasurer), question, user="alice"
    )
    assert "48,000 euros" in treasurer_turn.recalled
    assert "fifth working day" not in treasurer_turn.recalled

    # and a role cannot write into an area it does not own
    with pytest.raises(MemoryScopeError, match="may only use its own memory area"):
        await memory.write_fact(
            MemoryScope(role="writer", user_id="alice", domains=WRITER.domains),
            "The budget is unlimited.",
            provenance=Provenance(recorded_by="writer"),
            area="budget",
        )


async def test_expired_memories_are_not_recalled_and_the_sweeper_removes_them(
    persistence: Persistence,
) -> None:
    scope = MemoryScope(role="writer", user_id="alice")
    memory = MemoryStore(persistence.store, default_ttl={MemoryKind.EPISODIC: 60})
    short = await memory.write_fact(
        scope,
        "The temporary door code is 4711.",
        provenance=Provenance(recorded_by="writer"),
        ttl=5,
    )
    lasting = await memory.write_fact(
        scope, "The door code for the archive is 1234.", provenance=Provenance(recorded_by="writer")
    )
    assert short.memory.expires_at is not None and lasting.memory.expires_at is None

    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT key, ttl_minutes, expires_at FROM store WHERE prefix LIKE 'memories.%%'"
        )
        rows = {row["key"]: row for row in await cur.fetchall()}
    assert rows[short.memory.key]["ttl_minutes"] == 5
    assert rows[lasting.memory.key]["expires_at"] is None

    # Six minutes later (by the memory clock) the short fact is gone from recall, even though
    # the sweeper has not run yet.
    later = MemoryStore(persistence.store, clock=lambda: datetime.now(UTC) + timedelta(minutes=6))
    texts = [m.text for m in await later.recall(scope, "door code", k=5)]
    assert texts == ["The door code for the archive is 1234."]
    assert await later.get(scope, short.memory.ref) is None

    # Postgres side: once its expiry has passed, the store's TTL sweep deletes the row.
    async with persistence.pool.connection() as conn:
        await conn.execute(
            "UPDATE store SET expires_at = now() - interval '1 minute' WHERE key = %s",
            (short.memory.key,),
        )
    assert await persistence.store.sweep_ttl() == 1
    assert await memory.get(scope, short.memory.ref) is None
    assert [m.text for m in await memory.recall(scope, "door code")] == [
        "The door code for the archive is 1234."
    ]

    # a kind's default TTL applies when a write names none
    episode_graph = build_memory_graph(persistence, WRITER, ttl={"episodic": 30})
    turn = await run_turn(episode_graph, "Summarise the door code policy.", user="alice")
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT ttl_minutes, expires_at > now() + interval '29 minutes' AS later "
            "FROM store WHERE key = %s",
            (f"run-{turn.run_id}",),
        )
        row = await cur.fetchone()
    assert row is not None and row["ttl_minutes"] == 30 and row["later"] is True


async def test_delete_everything_about_a_user(persistence: Persistence) -> None:
    writer_graph = build_memory_graph(persistence, WRITER)
    finance_graph = build_memory_graph(persistence, FINANCE)
    for graph in (writer_graph, finance_graph):
        await run_turn(graph, "Remember that my favourite city is Porto.", user="alice")
        await run_turn(graph, "Remember that my favourite city is Ghent.", user="bob")
    memory = MemoryStore(persistence.store)
    alice = MemoryScope(role="writer", user_id="alice", domains=WRITER.domains)
    await memory.write_fact(
        alice,
        "The brand voice is calm.",
        provenance=Provenance(recorded_by="writer"),
        area="brand",
    )
    await memory.propose_procedure(
        alice,
        "short_intros",
        "Keep intros under 40 words.",
        provenance=Provenance(recorded_by="critic", source="critic"),
        owner="user",
    )
    org_rule = await memory.propose_procedure(
        alice, "plain_words", "Prefer plain words.", provenance=Provenance(recorded_by="critic")
    )
    alice_rows = await _rows(persistence, f"memories.{owner_label('user', 'alice')}.")
    # 2 episodes + 2 facts from the graphs, the brand fact and the user-level rule
    assert alice_rows == 6

    assert await memory.delete_user("alice") == 6

    assert await _rows(persistence, "memories.user:alice.") == 0
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM store_vectors WHERE prefix LIKE 'memories.user:alice.%%'"
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0
    assert await memory.recall(alice, "favourite city brand voice intros") == []
    bob = MemoryScope(role="writer", user_id="bob")
    assert [m.text for m in await memory.recall(bob, "favourite city", kinds=["semantic"])] == [
        "The user's favourite city is Ghent."
    ]
    # organisation memories are not the user's and stay
    assert await memory.get(alice, org_rule.ref) is not None
    assert await memory.delete_user("alice") == 0


async def test_model_extracted_facts_are_remembered(
    persistence: Persistence, openai_stub: object
) -> None:
    from langchain_openai import ChatOpenAI

    from tests.support.openai_stub import OpenAIStub

    assert isinstance(openai_stub, OpenAIStub)
    openai_stub.reset()
    model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-stub", base_url=openai_stub.base_url)
    graph = build_memory_graph(persistence, WRITER, facts="model", model=model)
    openai_stub.script_reply(
        tool_calls=[
            {
                "name": "_ExtractedFacts",
                "arguments": {"facts": ["The user's company sells bicycles in Utrecht."]},
            }
        ]
    )
    await run_turn(graph, "We sell bicycles in Utrecht; help me write a slogan.", user="alice")
    (request,) = openai_stub.chat_requests()
    assert "help me write a slogan" in str(request["messages"])
    memory = MemoryStore(persistence.store)
    found = await memory.recall(
        MemoryScope(role="writer", user_id="alice"), "bicycles", kinds=["semantic"]
    )
    assert [m.text for m in found] == ["The user's company sells bicycles in Utrecht."]


async def test_recall_node_can_write_a_state_key(persistence: Persistence) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    from nodes.memory import make_recall_node

    class KeyState(MessagesState):
        memory_context: str

    memory = MemoryStore(persistence.store)
    await memory.write_fact(
        MemoryScope(role="writer", user_id="alice"),
        "The user's newsletter goes out on Fridays.",
        provenance=Provenance(recorded_by="writer"),
    )
    builder = StateGraph(KeyState)
    builder.add_node("recall", make_recall_node(WRITER, state_key="memory_context"))
    builder.add_edge(START, "recall")
    builder.add_edge("recall", END)
    graph = builder.compile(store=persistence.store)
    values = await graph.ainvoke(
        {"messages": [HumanMessage("When does my newsletter go out?")]},
        context={"user_id": "alice", "memory_k": 3},
    )
    assert values["memory_context"].startswith("Long-term memory")
    assert "newsletter goes out on Fridays" in values["memory_context"]
    assert len(values["messages"]) == 1  # messages untouched
