"""The audit chain's encoding: what an entry is, how its hash is computed, how a chain is checked.

An entry's hash is the SHA-256 (lower-case hex) of its canonical encoding: the JSON object

    {"action", "actor", "at", "details", "prev_hash", "resource_id", "resource_type", "seq"}

written with sorted keys, no whitespace (``","`` and ``":"`` separators), ASCII only (every
other character as a ``\\uXXXX`` escape) and no NaN or infinities — Python's
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)``
— encoded as ASCII bytes. ``at`` is the entry's time in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
(microseconds, as Postgres stores them); ``details`` is the details object itself (nested, not a
string); ``actor``, ``resource_type`` and ``resource_id`` are strings or ``null``. The first
entry's ``prev_hash`` is :data:`GENESIS_HASH` (64 zeros); every later entry's ``prev_hash`` is
the hash of the entry before it, so changing, removing or reordering any entry breaks the chain
from that entry on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "ChainBreak",
    "ChainWalk",
    "canonical_json",
    "check_chain",
    "entry_from_row",
    "entry_hash",
    "format_time",
]

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry."""


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text (sorted keys, compact, ASCII, finite numbers only).

    Raises:
        ValueError: ``value`` is not JSON (NaN or infinity included).
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except TypeError as exc:
        raise ValueError(f"audit details must be JSON: {exc}") from None


def format_time(at: datetime) -> str:
    """``at`` as the chain encodes it: UTC, microseconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log, as stored."""

    seq: int
    """Position in the chain: 1, 2, 3, … without gaps."""
    at: datetime
    """When the entry was appended (UTC)."""
    actor: str | None
    """User id of who did it; ``None`` for the system itself."""
    action: str
    """What happened, e.g. ``key.created`` (see :data:`state.audit.ACTIONS`)."""
    resource_type: str | None
    """Kind of resource acted on (``thread``, ``assistant``, ``api_key``, …)."""
    resource_id: str | None
    """Its id."""
    details: Any
    """More about it, as JSON."""
    prev_hash: str
    """Hash of the entry before (``GENESIS_HASH`` for the first)."""
    hash: str
    """SHA-256 of this entry's canonical encoding (see the module docstring)."""

    def canonical(self) -> bytes:
        """The bytes this entry's hash is computed over."""
        return canonical_json(
            {
                "seq": self.seq,
                "at": format_time(self.at),
                "actor": self.actor,
                "action": self.action,
                "resource_type": self.resource_type,
                "resource_id": self.resource_id,
                "details": self.details,
                "prev_hash": self.prev_hash,
            }
        ).encode("ascii")

    def to_json(self) -> dict[str, Any]:
        """The entry as ``GET /audit`` answers it."""
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor": self.actor,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def entry_hash(entry: AuditEntry) -> str:
    """The hash ``entry`` should have: SHA-256 hex of :meth:`AuditEntry.canonical`."""
    return hashlib.sha256(entry.canonical()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """Where a chain stops holding: the first entry that does not fit, and why."""

    seq: int
    reason: str


class ChainWalk:
    """Checks a chain entry by entry, oldest first, remembering the last entry that fit."""

    def __init__(self) -> None:
        self.seq = 0
        """The last entry checked that fits (0 before the first)."""
        self.hash = GENESIS_HASH
        """Its hash."""

    def step(self, entry: AuditEntry) -> ChainBreak | None:
        """Check the next entry; a :class:`ChainBreak` when it does not fit."""
        expected = self.seq + 1
        if entry.seq != expected:
            return ChainBreak(
                expected,
                f"entry {expected} is missing: entry {entry.seq} follows entry {self.seq}",
            )
        if entry.prev_hash != self.hash:
            return ChainBreak(
                entry.seq,
                f"entry {entry.seq} does not chain to entry {self.seq}: its prev_hash is not "
                "that entry's hash (an entry was altered, removed or reordered)",
            )
        if entry_hash(entry) != entry.hash:
            return ChainBreak(
                entry.seq, f"entry {entry.seq} was altered: its hash does not match its contents"
            )
        self.seq, self.hash = entry.seq, entry.hash
        return None

    def finish(self, head: tuple[int, str]) -> ChainBreak | None:
        """Compare the end of the walk with the recorded chain head ``(seq, hash)``."""
        head_seq, head_hash = head
        if self.seq < head_seq:
            return ChainBreak(
                self.seq + 1,
                f"entries {self.seq + 1} to {head_seq} are missing: the chain head is at "
                f"entry {head_seq} but the log ends at entry {self.seq}",
            )
        if self.seq > head_seq:
            return ChainBreak(
                head_seq + 1,
                f"entry {head_seq + 1} is past the chain head (entry {head_seq}): it was not "
                "appended by staffgraph",
            )
        if self.hash != head_hash:
            return ChainBreak(
                self.seq, f"entry {self.seq} does not match the chain head's recorded hash"
            )
        return None


def check_chain(
    entries: Iterable[AuditEntry], *, head: tuple[int, str] | None = None
) -> tuple[int, ChainBreak | None]:
    """Walk ``entries`` (in ``seq`` order, from the first) and find the first break.

    Args:
        entries: the whole log, oldest first.
        head: the recorded chain head ``(seq, hash)``; entries missing after the last one
            present, or appended past the head, are breaks too.

    Returns:
        How many entries fit, and the first :class:`ChainBreak` (``None``: intact).
    """
    walk = ChainWalk()
    for entry in entries:
        broken = walk.step(entry)
        if broken is not None:
            return walk.seq, broken
    return walk.seq, None if head is None else walk.finish(head)


def entry_from_row(row: Mapping[str, Any]) -> AuditEntry:
    """An entry from an ``audit_log`` row (dict row); ``details`` is parsed from its JSON text.

    Details that are not JSON (someone edited the row) stay the raw text, which then fails the
    entry's hash check.
    """
    try:
        details = json.loads(row["details"])
    except ValueError:
        details = row["details"]
    return AuditEntry(
        seq=row["seq"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        resource_type=row["resource_type"],
        resource_id=row["resource_id"],
        details=details,
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
