"""A live server on ``langgraph_parity.json`` (template-style graphs) and its factory log.

Import the fixture into a test module to use it (``from tests.support.parity import …``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import LiveServer, fresh_database, start_server

__all__ = ["PARITY_CONFIG", "FactoryLog", "ParityServer", "parity_server"]

PARITY_CONFIG = Path(__file__).with_name("langgraph_parity.json")


@dataclass
class FactoryLog:
    """The JSON lines ``tests/support/react_agent.py``'s factories append per call."""

    path: Path

    def mark(self) -> int:
        """Where the log ends now: pass it to :meth:`since`."""
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, mark: int) -> list[dict[str, Any]]:
        """Entries written after ``mark``."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(mark)
            return [json.loads(line) for line in log.read().splitlines() if line.strip()]


@dataclass
class ParityServer:
    """The server and where its factories report."""

    server: LiveServer
    log: FactoryLog

    @property
    def url(self) -> str:
        """Base URL."""
        return self.server.url


@pytest.fixture(scope="module")
def parity_server(database_url: str) -> Iterator[ParityServer]:
    """One server per module on a fresh database, serving the template-style graphs."""
    log = Path(tempfile.mkstemp(prefix="staffgraph-factory-", suffix=".jsonl")[1])
    server = start_server(
        env={
            "DATABASE_URL": fresh_database(database_url),
            "STAFFGRAPH_TEST_FACTORY_LOG": str(log),
        },
        config=PARITY_CONFIG,
    )
    try:
        yield ParityServer(server, FactoryLog(log))
    finally:
        server.stop()
        log.unlink(missing_ok=True)
