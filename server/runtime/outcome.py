"""How a run ended: the done marker of its event log and what is recorded in Postgres."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["THREAD_STATUS", "Outcome", "decode_done", "encode_done", "error_body"]

THREAD_STATUS = {"success": "idle", "error": "error", "interrupted": "interrupted"}
"""The thread's status after a run ended with each status (nothing else queued)."""


def encode_done(status: str, output: bytes) -> bytes:
    """Data of a done marker: the final status and the run's output (JSON)."""
    return status.encode() + b"\n" + output


def decode_done(data: bytes) -> tuple[str, bytes]:
    """``(status, output JSON)`` from a done marker's data."""
    status, _, output = data.partition(b"\n")
    return status.decode(), output


def error_body(exc: BaseException) -> dict[str, str]:
    """``{"error": <exception class>, "message": <str(exc)>}`` as the stream reports failures."""
    return {"error": type(exc).__name__, "message": str(exc)}


@dataclass
class Outcome:
    """How one execution of a run ended, before it is recorded."""

    status: str
    values: Any
    interrupts: dict[str, Any]
    error: dict[str, Any] | None
    output: bytes
    delete_run: bool = False
    thread_status: str | None = None
