"""LangChain tools with a declared risk level, and the registry that maps names to them.

Start from :func:`default_registry` and register your own tools on it; each tool must declare
``metadata={"risk": "read" | "write" | "external"}`` (or pass ``risk=`` to ``register``).
Risk levels and the approval rule live in :mod:`state.tool_risk`; the memory tools, which need
the memory nodes' scope and provenance, live in :mod:`nodes.memory`.
"""

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
    "split_document",
    "tool_risk",
]
