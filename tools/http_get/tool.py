"""The ``http_get`` LangChain tool over :func:`~tools.http_get.fetch_url`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Any, TypeVar

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from state.tool_risk import ToolRisk
from tools.http_get.fetch import fetch_url
from tools.http_get.policy import MAX_URL_CHARS, HttpGetError, HttpPolicy, Resolver


class HttpGetInput(BaseModel):
    """Arguments of the ``http_get`` tool."""

    url: str = Field(description="The http or https URL to fetch.", max_length=MAX_URL_CHARS)


_T = TypeVar("_T")


def _run_blocking(coroutine_factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from synchronous code.

    It runs on its own thread and loop, so it works whether or not the calling thread already
    runs an event loop, and leaves that thread's loop untouched.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_factory())).result()


def make_http_get_tool(
    *, policy: HttpPolicy | None = None, resolver: Resolver | None = None
) -> BaseTool:
    """Return an ``http_get`` tool (risk ``external``) bound to ``policy``.

    Args:
        policy: Allowed hosts, address rules and limits. The default allows no host, so the
            tool refuses every URL until an operator configures one.
        resolver: Replaces the system DNS resolver.

    Returns:
        The tool. It returns JSON ``{url, status, content_type, truncated, text}`` and reports
        refusals and failures as text the agent can read.
    """
    policy = policy or HttpPolicy()

    async def http_get(url: str) -> str:
        try:
            result = await fetch_url(url, policy=policy, resolver=resolver)
        except HttpGetError as exc:
            raise ToolException(f"http_get: {exc}") from None
        payload = asdict(result)
        payload.pop("redirects")
        return json.dumps(payload, ensure_ascii=False)

    def http_get_sync(url: str) -> str:
        return _run_blocking(lambda: http_get(url))

    if policy.allowed_hosts:
        hosts = ", ".join(sorted(policy.allowed_hosts))
        scope = f"Only these hosts can be fetched: {hosts}."
    else:
        scope = "No hosts are configured yet, so every URL is refused."
    return StructuredTool.from_function(
        func=http_get_sync,
        coroutine=http_get,
        name="http_get",
        description=(
            "Fetch a web page or API response over HTTP(S) GET and return its status, content "
            f"type and text (cut at {policy.max_bytes} bytes). {scope}"
        ),
        args_schema=HttpGetInput,
        metadata={"risk": ToolRisk.EXTERNAL.value},
        handle_tool_error=True,
    )
