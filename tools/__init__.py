"""LangChain tools with a declared risk level, and the registry that maps names to them.

Start from :func:`default_registry` and register your own tools on it; each tool must declare
``metadata={"risk": "read" | "write" | "external"}`` (or pass ``risk=`` to ``register``).
"""

from typing import TYPE_CHECKING, Any

from tools.calculator import CalculatorError, evaluate, make_calculator_tool
from tools.documents import (
    Chunk,
    DocumentError,
    DocumentStats,
    Heading,
    Keyword,
    document_stats,
    extract_keywords,
    make_document_stats_tool,
    make_extract_keywords_tool,
    make_split_document_tool,
    split_document,
)
from tools.http_get import (
    HttpGetError,
    HttpPolicy,
    HttpResult,
    Resolver,
    UrlRefusedError,
    check_address,
    fetch_url,
    make_http_get_tool,
)
from tools.registry import ToolRegistry, ToolRisk, UnknownToolError, default_registry, tool_risk

if TYPE_CHECKING:
    from tools.memory import MEMORY_TOOL_RISKS, memory_tools, register_memory_tools

# The memory tools build on nodes.memory, whose imports reach state.roles, which imports this
# package: loading them on first use keeps `import state.roles` free of a cycle.
_LAZY = {"MEMORY_TOOL_RISKS", "memory_tools", "register_memory_tools"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from tools import memory

        return getattr(memory, name)
    raise AttributeError(f"module 'tools' has no attribute {name!r}")


__all__ = [
    "CalculatorError",
    "Chunk",
    "DocumentError",
    "DocumentStats",
    "Heading",
    "HttpGetError",
    "HttpPolicy",
    "HttpResult",
    "Keyword",
    "MEMORY_TOOL_RISKS",
    "Resolver",
    "ToolRegistry",
    "ToolRisk",
    "UnknownToolError",
    "UrlRefusedError",
    "check_address",
    "default_registry",
    "document_stats",
    "evaluate",
    "extract_keywords",
    "fetch_url",
    "make_calculator_tool",
    "make_document_stats_tool",
    "make_extract_keywords_tool",
    "make_http_get_tool",
    "make_split_document_tool",
    "memory_tools",
    "register_memory_tools",
    "split_document",
    "tool_risk",
]
