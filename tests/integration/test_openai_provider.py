"""The real provider path: ChatOpenAI built by get_chat_model against a loopback endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from nodes.embeddings import get_embeddings
from nodes.models import describe_chat_model, get_chat_model, resolve_model_spec
from nodes.offline import OfflineChatModel
from state.settings import ModelSettings

if TYPE_CHECKING:
    from tests.support.openai_stub import OpenAIStub

pytest_plugins = ["tests.support.openai_stub"]


@pytest.fixture
def stub_env(openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> OpenAIStub:
    """Point OPENAI_* at the stub, as a deployment would with env vars."""
    openai_stub.reset()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    monkeypatch.delenv("MODEL", raising=False)
    monkeypatch.delenv("STAFFGRAPH_MODEL", raising=False)
    return openai_stub


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by id."""
    return f"order {order_id}: shipped"


@tool
def cancel_order(order_id: str) -> str:
    """Cancel an order by id."""
    return f"order {order_id}: cancelled"


def test_invoke_sends_model_key_and_messages(stub_env: OpenAIStub) -> None:
    model = get_chat_model("openai:gpt-4o-mini")
    assert isinstance(model, ChatOpenAI)
    reply = model.invoke([HumanMessage("hello stub")])
    assert reply.content == "stub reply: hello stub"
    assert reply.usage_metadata is not None and reply.usage_metadata["total_tokens"] > 0
    (request,) = stub_env.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-stub-key"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["messages"] == [{"role": "user", "content": "hello stub"}]
    assert describe_chat_model(model) == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "offline": False,
    }


def test_auto_uses_openai_when_a_key_is_set(stub_env: OpenAIStub) -> None:
    assert resolve_model_spec() == "openai:gpt-4o-mini"
    model = get_chat_model()
    assert isinstance(model, ChatOpenAI)
    model.invoke("ping")
    assert stub_env.chat_requests()[0]["model"] == "gpt-4o-mini"


async def test_stream_yields_chunks_and_usage(stub_env: OpenAIStub) -> None:
    stub_env.script_reply("one two three four")
    model = get_chat_model("openai:gpt-4o-mini", stream_usage=True)
    chunks = [c async for c in model.astream("count to four")]
    text = "".join(str(c.content) for c in chunks)
    assert text == "one two three four"
    assert sum(1 for c in chunks if c.content) == 4
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["total_tokens"] > 0
    (body,) = stub_env.chat_requests()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_bind_tools_round_trip(stub_env: OpenAIStub) -> None:
    model = get_chat_model("openai:gpt-4o-mini").bind_tools([lookup_order, cancel_order])
    reply = model.invoke([HumanMessage("please cancel_order 42")])
    assert [c["name"] for c in reply.tool_calls] == ["cancel_order"]
    call = reply.tool_calls[0]
    assert call["args"] == {"order_id": "please cancel_order 42"}
    sent = stub_env.chat_requests()[0]
    assert [t["function"]["name"] for t in sent["tools"]] == ["lookup_order", "cancel_order"]
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["order_id"]

    final = model.invoke(
        [
            HumanMessage("please cancel_order 42"),
            reply,
            ToolMessage("order 42: cancelled", tool_call_id=call["id"]),
        ]
    )
    assert final.content == "stub reply: order 42: cancelled"
    second = stub_env.chat_requests()[1]["messages"]
    assert second[1]["tool_calls"][0]["function"]["name"] == "cancel_order"
    assert second[2] == {
        "role": "tool",
        "content": "order 42: cancelled",
        "tool_call_id": call["id"],
    }


async def test_streamed_tool_call_is_reassembled(stub_env: OpenAIStub) -> None:
    stub_env.script_reply(tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "A-17"}}])
    model = get_chat_model("openai:gpt-4o-mini").bind_tools([lookup_order])
    total: AIMessageChunk | None = None
    pieces = 0
    async for chunk in model.astream("where is my order"):
        assert isinstance(chunk, AIMessageChunk)
        pieces += 1
        total = chunk if total is None else total + chunk
    assert total is not None and pieces > 3
    assert total.tool_calls[0]["name"] == "lookup_order"
    assert total.tool_calls[0]["args"] == {"order_id": "A-17"}


def test_base_url_without_key_uses_a_placeholder(openai_stub: OpenAIStub) -> None:
    openai_stub.reset()
    settings = ModelSettings.model_construct(
        model="openai:local-llama", openai_api_key=None, openai_base_url=openai_stub.base_url
    )
    model = get_chat_model(settings=settings)
    assert model.invoke("hi").content == "stub reply: hi"
    assert openai_stub.chat_requests()[0]["model"] == "local-llama"


def test_bad_specs_say_what_to_do() -> None:
    no_key = ModelSettings.model_construct(model="auto", openai_api_key=None, openai_base_url=None)
    assert isinstance(get_chat_model(settings=no_key), OfflineChatModel)
    assert describe_chat_model(get_chat_model("offline").bind_tools([lookup_order]))["offline"]
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        get_chat_model("openai:gpt-4o-mini", settings=no_key)
    with pytest.raises(ValueError, match="Unsupported"):
        get_chat_model("nosuchprovider:model", settings=no_key)
    with pytest.raises(ValueError, match="pip install"):
        get_chat_model("anthropic:claude-sonnet-4-5", settings=no_key)
    with pytest.raises(ValueError, match="provider:model"):
        get_chat_model("openai:", settings=no_key)


async def test_openai_embeddings_against_the_stub(stub_env: OpenAIStub) -> None:
    emb = get_embeddings("openai:text-embedding-3-small")
    assert isinstance(emb, OpenAIEmbeddings)
    vectors = await emb.aembed_documents(["alpha", "beta"])
    assert [len(v) for v in vectors] == [stub_env.embedding_dims] * 2
    assert vectors[0] != vectors[1]
    assert emb.embed_query("alpha") == pytest.approx(vectors[0])
    body = stub_env.requests[0].body
    assert body["model"] == "text-embedding-3-small"
    assert body["input"] == ["alpha", "beta"]
