"""The installed versions the server reports: its own and LangGraph's, read once at import.

``importlib.metadata.version`` scans the installed distributions on every call (about 0.45 ms
each here): ``/info``, the MCP handshake, each run's metadata, the OpenAPI document and the
webhook user agent all read these constants instead.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["LANGGRAPH_VERSION", "STAFFGRAPH_VERSION"]

STAFFGRAPH_VERSION = version("staffgraph")
LANGGRAPH_VERSION = version("langgraph")
