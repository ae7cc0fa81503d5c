"""The offline chat model: tool choice, routing, streaming, structured output, metadata."""

from __future__ import annotations

from typing import Literal

import pytest
from langchain.agents import create_agent
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import StructuredTool, tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from nodes.offline import PASS_THRESHOLD, OfflineChatModel, review_score


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 3*4."""
    left, op, right = expression.partition("*")
    if not op:
        raise ValueError("only products are supported in this test tool")
    return str(int(left) * int(right))


@tool
def web_search(query: str, max_results: int = 5) -> str:
    """Search the web for up-to-date news and information about a topic."""
    return f"3 results for {query}"


@tool
def fetch_page(url: str) -> str:
    """Fetch the content of a web page by its URL."""
    return f"<html>{url}</html>"


TOOLS = [calculator, web_search, fetch_page]


def handoff(role: str, description: str) -> StructuredTool:
    def go() -> str:
        return f"Transferred to {role}"

    return StructuredTool.from_function(go, name=f"transfer_to_{role}", description=description)


HANDOFFS = [
    handoff("researcher", "Researcher: finds facts, sources and citations on any subject."),
    handoff("writer", "Writer: drafts prose, summaries and polished documents."),
    handoff("analyst", "Analyst: computes numbers, budgets and financial forecasts."),
]


@pytest.mark.parametrize(
    ("request_text", "name", "args"),
    [
        ("what is 12*7", "calculator", {"expression": "12*7"}),
        (
            "search the news about quantum computing",
            "web_search",
            {"query": "search the news about quantum computing"},
        ),
        (
            "fetch https://example.com/report.html for me",
            "fetch_page",
            {"url": "https://example.com/report.html"},
        ),
    ],
)
def test_calls_the_tool_that_fits_the_request(
    request_text: str, name: str, args: dict[str, str]
) -> None:
    reply = OfflineChatModel().bind_tools(TOOLS).invoke(request_text)
    assert reply.content == ""
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [(name, args)]
    assert str(reply.tool_calls[0]["id"]).startswith("call_")


def test_answers_in_text_when_no_tool_fits() -> None:
    reply = OfflineChatModel().bind_tools(TOOLS).invoke("good morning to the whole team")
    assert reply.tool_calls == []
    assert "morning" in reply.content


def test_tool_choice_forces_a_call() -> None:
    model = OfflineChatModel()
    forced_any = model.bind_tools(TOOLS, tool_choice="any").invoke("good morning")
    assert len(forced_any.tool_calls) == 1
    named = model.bind_tools(TOOLS, tool_choice="fetch_page").invoke("what is 12*7")
    assert [c["name"] for c in named.tool_calls] == ["fetch_page"]
    with pytest.raises(ValueError, match="tool_choice names `nope`"):
        model.bind_tools(TOOLS, tool_choice="nope")


@pytest.mark.parametrize(
    ("request_text", "role"),
    [
        ("Find sources and citations about solar panel efficiency", "researcher"),
        ("Draft a summary of our solar panel launch", "writer"),
        ("Forecast the budget for next year", "analyst"),
    ],
)
def test_supervisor_routes_by_role_description(request_text: str, role: str) -> None:
    supervisor = OfflineChatModel().bind_tools(HANDOFFS)
    reply = supervisor.invoke(
        [SystemMessage("You are Supervisor, who delegates work."), HumanMessage(request_text)]
    )
    assert [c["name"] for c in reply.tool_calls] == [f"transfer_to_{role}"]


def test_after_a_tool_result_it_answers_with_the_result() -> None:
    model = OfflineChatModel().bind_tools(TOOLS)
    first = model.invoke([HumanMessage("what is 12*7")])
    call = first.tool_calls[0]
    history: list[BaseMessage] = [
        SystemMessage("You are Analyst, who answers numeric questions."),
        HumanMessage("what is 12*7"),
        first,
        ToolMessage("84", tool_call_id=call["id"], name=call["name"]),
    ]
    final = model.invoke(history)
    assert final.tool_calls == []
    assert isinstance(final.content, str)
    assert final.content.startswith("As Analyst:")
    assert "calculator returned: 84" in final.content


def test_writer_reply_is_built_from_the_request() -> None:
    reply = OfflineChatModel().invoke(
        [
            SystemMessage("You are Writer, who drafts clear prose."),
            HumanMessage(
                "Draft a summary of the quarterly sales results\n"
                "Notes: revenue grew twelve percent in Europe. Churn fell after the pricing change."
            ),
        ]
    )
    text = reply.content
    assert isinstance(text, str)
    assert text.startswith("As Writer: This summary covers the quarterly sales results.")
    for word in ("quarterly", "sales", "revenue", "Europe", "Churn"):
        assert word in text
    assert text.count(".") >= 3


def test_same_input_same_output() -> None:
    messages = [SystemMessage("You are Researcher."), HumanMessage("What is pgvector used for?")]
    first = OfflineChatModel().bind_tools(TOOLS).invoke(messages)
    second = OfflineChatModel().bind_tools(TOOLS).invoke(messages)
    assert first.content == second.content
    assert first.tool_calls == second.tool_calls
    calls = [OfflineChatModel().bind_tools(TOOLS).invoke("what is 6*7").tool_calls for _ in "ab"]
    assert calls[0] == calls[1]


def test_usage_metadata_and_offline_marker() -> None:
    model = OfflineChatModel()
    reply = model.invoke("x" * 400)
    usage = reply.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == 100
    assert usage["output_tokens"] >= 1
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = reply.response_metadata
    assert meta["model_provider"] == "offline"
    assert meta["model_name"] == "staffgraph-offline"
    assert meta["offline"] is True
    assert meta["usage_is_estimate"] is True
    assert model._llm_type == "staffgraph-offline"
    params = model._get_ls_params()
    assert (params["ls_provider"], params["ls_model_name"]) == ("offline", "staffgraph-offline")


def _aggregate(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def test_stream_concatenates_to_the_invoke_result() -> None:
    model = OfflineChatModel()
    prompt = [SystemMessage("You are Writer."), HumanMessage("Write a note about the offsite")]
    chunks = list(model.stream(prompt))
    assert len([c for c in chunks if c.content]) > 3
    streamed = _aggregate(chunks)
    invoked = model.invoke(prompt)
    assert streamed.content == invoked.content
    assert streamed.usage_metadata == invoked.usage_metadata
    assert streamed.response_metadata["offline"] is True


async def test_astream_tool_calls_arrive_as_chunks() -> None:
    model = OfflineChatModel().bind_tools(TOOLS)
    chunks = [c async for c in model.astream("what is 12*7") if isinstance(c, AIMessageChunk)]
    assert len([c for c in chunks if c.tool_call_chunks]) >= 2
    streamed = _aggregate(chunks)
    invoked = await model.ainvoke("what is 12*7")
    assert streamed.tool_calls == invoked.tool_calls
    assert invoked.tool_calls[0]["args"] == {"expression": "12*7"}


class Verdict(BaseModel):
    """A critic's verdict on a draft."""

    score: float = Field(ge=0, le=1)
    approved: bool
    feedback: str
    issues: list[str]
    decision: Literal["approve", "revise"]


THIN = "Task: explain pricing, latency and reliability of the API\nDraft: Pricing is fair."
FULL = (
    "Task: explain pricing, latency and reliability of the API\n"
    "Draft: The API pricing is fair and predictable, latency stays low at peak hours, and "
    "reliability is high with measured uptime above the target across every region we run, "
    "which the support team reports each month to customers on the status page."
)


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_structured_output_pydantic_reviews_the_draft(method: str) -> None:
    critic = OfflineChatModel().with_structured_output(Verdict, method=method)  # type: ignore[arg-type]
    thin = critic.invoke(THIN)
    full = critic.invoke(FULL)
    assert isinstance(thin, Verdict) and isinstance(full, Verdict)
    assert 0 <= thin.score < full.score <= 1
    assert (thin.approved, thin.decision) == (False, "revise")
    assert (full.approved, full.decision) == (True, "approve")
    assert "latency" in " ".join(thin.issues)
    assert 1 <= len(full.issues) <= 3
    assert "missing" in thin.feedback


def test_review_score_is_monotone_in_keywords_covered() -> None:
    reference = "Criterion: mentions pricing, latency, reliability and support"
    drafts = [
        "The product is good.",
        "The product pricing is good.",
        "The product pricing is good and latency is low.",
        "The product pricing is good, latency is low and reliability is high.",
    ]
    scores = [review_score(draft, reference).score for draft in drafts]
    assert scores == sorted(scores) and len(set(scores)) == 4
    assert review_score("", reference).score == 0.0
    assert review_score(drafts[-1], reference).missing == ("support",)
    assert 0 < PASS_THRESHOLD < 1


class Outline(TypedDict):
    """An outline of a document."""

    title: str
    points: list[str]


def test_structured_output_typeddict() -> None:
    result = (
        OfflineChatModel()
        .with_structured_output(Outline)
        .invoke("Explain how vector databases index embeddings")
    )
    assert isinstance(result, dict)
    assert result["title"] == "How vector databases index embeddings"
    assert 1 <= len(result["points"]) <= 3
    assert "vector" in result["points"]


ROUTE_SCHEMA = {
    "title": "Route",
    "description": "Who acts next.",
    "type": "object",
    "properties": {
        "next": {"type": "string", "enum": ["researcher", "writer", "FINISH"]},
        "reason": {"type": "string"},
    },
    "required": ["next", "reason"],
}


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_structured_output_json_schema_routes_then_finishes(method: str) -> None:
    router = OfflineChatModel().with_structured_output(
        ROUTE_SCHEMA,
        method=method,  # type: ignore[arg-type]
        include_raw=True,
    )
    first = router.invoke([HumanMessage("Please have the writer polish the launch email")])
    assert first["parsing_error"] is None
    assert first["parsed"]["next"] == "writer"
    assert isinstance(first["raw"], AIMessage)
    done = router.invoke(
        [
            HumanMessage("Please have the writer polish the launch email"),
            AIMessage("Here is the polished email.", name="writer"),
        ]
    )
    assert done["parsed"]["next"] == "FINISH"


def test_create_agent_calls_the_tool_and_answers() -> None:
    agent = create_agent(
        model=OfflineChatModel(),
        tools=TOOLS,
        system_prompt="You are Analyst, who answers numeric questions.",
    )
    result = agent.invoke({"messages": [HumanMessage("what is 12*7")]})
    messages = result["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[1].tool_calls[0]["args"] == {"expression": "12*7"}
    assert messages[2].content == "84"
    assert "84" in messages[3].content
    assert messages[3].response_metadata["offline"] is True


async def test_create_agent_streams_tokens() -> None:
    agent = create_agent(model=OfflineChatModel(), tools=TOOLS)
    tokens = [
        chunk.content
        async for chunk, _meta in agent.astream(
            {"messages": [HumanMessage("what is 12*7")]}, stream_mode="messages"
        )
        if isinstance(chunk, AIMessageChunk) and chunk.content
    ]
    assert len(tokens) > 3
    assert "84" in "".join(str(t) for t in tokens)


def test_huge_input_is_read_bounded() -> None:
    request = "Summarize this log: " + "disk full on node seven. " * 40_000
    reply = OfflineChatModel().invoke(request)
    assert isinstance(reply.content, str)
    assert len(reply.content) < 2_000
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == -(-len(request) // 4)


class Answer(BaseModel):
    """The final answer with a confidence score."""

    answer: str
    confidence: float = Field(ge=0, le=1)


def test_create_agent_with_response_format_hands_in_after_the_tool() -> None:
    agent = create_agent(model=OfflineChatModel(), tools=TOOLS, response_format=Answer)
    result = agent.invoke({"messages": [HumanMessage("what is 12*7")]})
    calls = [
        c["name"] for m in result["messages"] if isinstance(m, AIMessage) for c in m.tool_calls
    ]
    assert calls == ["calculator", "Answer"]
    answer = result["structured_response"]
    assert isinstance(answer, Answer)
    assert "84" in answer.answer
    assert 0 <= answer.confidence <= 1
