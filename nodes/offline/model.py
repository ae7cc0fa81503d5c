"""The :class:`OfflineChatModel` itself: plans a reply, then answers, streams or fills a schema."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import ToolCall, tool_call, tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from nodes.offline.choice import _choose_tool, _normalise_tool_choice, _ToolSpec
from nodes.offline.schema import _SchemaFiller
from nodes.offline.text import (
    _MAX_MESSAGES,
    _MAX_TOOLS,
    MODEL_NAME,
    PROVIDER,
    _content_size,
    _content_text,
    _digest,
)
from nodes.offline.turn import _reply_text, _Turn


@dataclass(frozen=True)
class _Plan:
    text: str
    calls: list[ToolCall]


def _response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a ``response_format`` call argument asks the reply to follow."""
    if isinstance(response_format, type):
        parameters: dict[str, Any] = convert_to_openai_tool(response_format)["function"][
            "parameters"
        ]
        return parameters
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            return spec["schema"]
    return None


def _usage(input_chars: int, output_chars: int) -> UsageMetadata:
    input_tokens = max(1, -(-input_chars // 4))
    output_tokens = max(1, -(-output_chars // 4))
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _input_chars(messages: Sequence[BaseMessage]) -> int:
    total = 0
    for message in messages:
        total += _content_size(message.content)
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += len(call["name"]) + len(json.dumps(call["args"], default=str))
    return total


class OfflineChatModel(BaseChatModel):
    """Deterministic built-in chat model: tool calls, streaming and structured output offline.

    Use it wherever a chat model goes (``create_agent(model=OfflineChatModel(), ...)``). See
    the module docstring for the rules it follows.
    """

    model_name: ClassVar[str] = MODEL_NAME

    @property
    def _llm_type(self) -> str:
        return MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL_NAME, "provider": PROVIDER}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=PROVIDER, ls_model_name=MODEL_NAME, ls_model_type="chat", ls_temperature=0
        )
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (converted to OpenAI tool dicts) and an optional ``tool_choice``.

        Args:
            tools: tools, functions, pydantic models or OpenAI tool dicts.
            tool_choice: ``"auto"`` (default), ``"any"``/``"required"``, ``"none"`` or a
                tool name that must be called.
            **kwargs: further call arguments (``response_format``, ``strict``, ...).

        Returns:
            The model with the tools bound.
        """
        converted = [convert_to_openai_tool(tool) for tool in tools]
        mode, name = _normalise_tool_choice(tool_choice)
        known = {t.get("function", {}).get("name") for t in converted}
        if mode == "named" and name not in known:
            raise ValueError(
                f"tool_choice names `{name}` but the bound tools are: "
                + ", ".join(str(n) for n in known)
            )
        return super().bind(tools=converted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Return a runnable whose output fills ``schema`` (pydantic, TypedDict or JSON schema).

        Args:
            schema: the output schema.
            include_raw: return ``{"raw", "parsed", "parsing_error"}`` instead.
            method: ``"function_calling"`` (a forced tool call) or ``"json_schema"`` /
                ``"json_mode"`` (JSON text content).
            strict: accepted for compatibility; the offline model always follows the schema.
            **kwargs: rejected.

        Returns:
            A runnable producing a pydantic instance (pydantic schema) or a dict.
        """
        del strict
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw)
        if method not in ("json_schema", "json_mode"):
            raise ValueError(
                f"Unsupported method {method!r}; use function_calling, json_schema or json_mode"
            )
        function = convert_to_openai_tool(schema)["function"]
        llm = self.bind(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": function["name"], "schema": function["parameters"]},
            },
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
        )
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            parser = PydanticOutputParser(pydantic_object=schema)
        else:
            parser = JsonOutputParser()
        if include_raw:
            parse = RunnablePassthrough.assign(
                parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
            )
            fallback = RunnablePassthrough.assign(parsed=lambda _: None)
            return RunnableMap(raw=llm) | parse.with_fallbacks(
                [fallback], exception_key="parsing_error"
            )
        return llm | parser

    # -- generation ---------------------------------------------------------------------

    def _plan(
        self, messages: list[BaseMessage], *, stop: list[str] | None = None, **kwargs: Any
    ) -> _Plan:
        turn = _Turn.read(messages)
        tools = [
            spec
            for spec in (
                _ToolSpec.from_openai(t)
                for t in (kwargs.get("tools") or [])[:_MAX_TOOLS]
                if isinstance(t, dict)
            )
            if spec is not None
        ]
        chosen = _choose_tool(turn, tools, kwargs.get("tool_choice"))
        if chosen is not None:
            defs = chosen.parameters.get("$defs") or chosen.parameters.get("definitions") or {}
            # A forced call of a lone tool is structured output: fill every field and write
            # prose into free-text fields instead of echoing the request.
            mode, _ = _normalise_tool_choice(kwargs.get("tool_choice"))
            # The same holds for a forced call once tool results are in: that is an agent
            # handing in its final structured response.
            structured = mode == "named" or (
                mode == "any" and (len(tools) == 1 or bool(turn.tool_results))
            )
            filler = _SchemaFiller(turn=turn, structured=structured, defs=dict(defs))
            args = filler.fill(chosen.parameters or {"type": "object", "properties": {}})
            if not isinstance(args, dict):
                args = {}
            call_id = "call_" + _digest(
                chosen.name,
                str(len(messages)),
                *(f"{m.type}:{_content_text(m.content)[:2000]}" for m in messages[-_MAX_MESSAGES:]),
            )
            return _Plan(text="", calls=[tool_call(name=chosen.name, args=args, id=call_id)])
        schema = _response_schema(kwargs.get("response_format"))
        if schema is not None:
            defs = schema.get("$defs") or schema.get("definitions") or {}
            filler = _SchemaFiller(turn=turn, structured=True, defs=dict(defs))
            return _Plan(text=json.dumps(filler.fill(schema), ensure_ascii=False), calls=[])
        text = _reply_text(turn)
        # Honour stop sequences the way hosted models do: the reply ends before the first one.
        cuts = [text.find(marker) for marker in stop or () if marker and marker in text]
        return _Plan(text=text[: min(cuts)] if cuts else text, calls=[])

    @staticmethod
    def _metadata() -> dict[str, Any]:
        return {
            "model_provider": PROVIDER,
            "model_name": MODEL_NAME,
            "offline": True,
            "usage_is_estimate": True,
            "finish_reason": "stop",
        }

    def _message(self, messages: list[BaseMessage], plan: _Plan) -> AIMessage:
        output_chars = len(plan.text) + sum(
            len(c["name"]) + len(json.dumps(c["args"], ensure_ascii=False)) for c in plan.calls
        )
        metadata = self._metadata()
        if plan.calls:
            metadata["finish_reason"] = "tool_calls"
        return AIMessage(
            content=plan.text,
            tool_calls=plan.calls,
            usage_metadata=_usage(_input_chars(messages), output_chars),
            response_metadata=metadata,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self._message(messages, self._plan(messages, stop=stop, **kwargs))
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": MODEL_NAME, "model_provider": PROVIDER},
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Pure CPU work on bounded input: no reason to hop to a thread.
        return self._generate(messages, stop=stop, **kwargs)

    def _chunks(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        message = self._message(messages, self._plan(messages, stop=stop, **kwargs))
        text = message.content if isinstance(message.content, str) else ""
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        for index, call in enumerate(message.tool_calls):
            args = json.dumps(call["args"], ensure_ascii=False)
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        tool_call_chunk(name=call["name"], args="", id=call["id"], index=index)
                    ],
                )
            )
            for start in range(0, len(args), 24):
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            tool_call_chunk(args=args[start : start + 24], index=index)
                        ],
                    )
                )
        # Usage and metadata ride on the last chunk only: chunk addition sums usage and would
        # concatenate repeated string metadata.
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                response_metadata=dict(message.response_metadata),
                chunk_position="last",
            )
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(messages, stop, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages, stop, **kwargs):
            yield chunk
