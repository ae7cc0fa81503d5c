"""What a memory holds: provenance, episodes, stored memories, and their JSON in the store."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.store.base import Item, SearchItem

from state.memory.scope import (
    MAX_ACTIONS,
    MAX_ID,
    MAX_PREVIOUS,
    MAX_TEXT,
    MemoryKind,
    _check_id,
    _clip,
    _iso,
    _now,
    _parse_time,
)


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a memory came from.

    Attributes:
        recorded_by: Who wrote it: a role name, ``human:<id>``, ``critic``, ``api``.
        source: How: ``agent`` (a node after a run), ``tool`` (an agent's tool call),
            ``human`` (feedback), ``critic``, ``governance`` or ``api``.
        user_id: On whose behalf, when a user was identified.
        thread_id: The thread of the run that produced it.
        run_id: The run that produced it.
        recorded_at: When (UTC). Filled in at write time when left out.
    """

    recorded_by: str
    source: str = "agent"
    user_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    recorded_at: datetime | None = None

    def __post_init__(self) -> None:
        _check_id(self.recorded_by, what="provenance.recorded_by")
        _check_id(self.source, what="provenance.source")
        _check_id(self.user_id, what="provenance.user_id")
        _check_id(self.thread_id, what="provenance.thread_id")
        _check_id(self.run_id, what="provenance.run_id")

    def to_json(self) -> dict[str, Any]:
        """JSON form stored in the item's ``provenance``."""
        return {
            "recorded_by": self.recorded_by,
            "source": self.source,
            "user_id": self.user_id,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "recorded_at": _iso(self.recorded_at or _now()),
        }

    @classmethod
    def from_json(cls, data: Any) -> Provenance:
        """Read a stored provenance; anything missing or malformed becomes ``unknown``."""
        data = data if isinstance(data, Mapping) else {}

        def text(name: str) -> str | None:
            value = data.get(name)
            return value[:MAX_ID] if isinstance(value, str) and value else None

        return cls(
            recorded_by=text("recorded_by") or "unknown",
            source=text("source") or "unknown",
            user_id=text("user_id"),
            thread_id=text("thread_id"),
            run_id=text("run_id"),
            recorded_at=_parse_time(data.get("recorded_at")),
        )

    def describe(self) -> str:
        """``by writer (tool) for user alice, run r1 in thread t1, 2025-01-02 10:00 UTC``."""
        parts = [f"by {self.recorded_by}"]
        if self.source not in ("agent", "unknown"):
            parts[0] += f" ({self.source})"
        if self.user_id:
            parts.append(f"for user {self.user_id}")
        where = []
        if self.run_id:
            where.append(f"run {self.run_id}")
        if self.thread_id:
            where.append(f"in thread {self.thread_id}")
        if where:
            parts.append(" ".join(where))
        if self.recorded_at:
            parts.append(self.recorded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Episode:
    """What happened in one run, for :meth:`MemoryStore.write_episode`.

    Attributes:
        task: What was asked.
        actions: What was done, a short line each (tool calls, hand-offs).
        outcome: The result, in a few sentences.
        succeeded: Whether it went well, when known (a critic pass, an approval).
        scores: Critic scores by criterion, each in [0, 1].
    """

    task: str
    outcome: str
    actions: tuple[str, ...] = ()
    succeeded: bool | None = None
    scores: Mapping[str, float] = field(default_factory=dict)

    def text(self) -> str:
        """The text that is embedded and shown at recall."""
        parts = [f"Task: {_clip(self.task, 600)}"]
        if self.actions:
            parts.append("Done: " + "; ".join(_clip(a, 200) for a in self.actions[:MAX_ACTIONS]))
        parts.append(f"Outcome: {_clip(self.outcome, 800)}")
        if self.scores:
            parts.append(
                "Scores: " + ", ".join(f"{k} {v:.2f}" for k, v in list(self.scores.items()))
            )
        return _clip(" ".join(parts), MAX_TEXT)


@dataclass(frozen=True, kw_only=True)
class Memory:
    """One memory read back from the store.

    Attributes:
        namespace: Its store namespace.
        key: Its store key.
        kind: Episodic, semantic or procedural.
        text: The remembered text (what is embedded and shown).
        provenance: Who wrote it, for whom, in which run, when.
        value: The whole stored value (kind-specific fields included).
        score: Similarity to the query (recall only; ``None`` otherwise).
        created_at: First written.
        updated_at: Last written.
        expires_at: When it expires, if it does.
        ref: Short reference agents pass to ``forget``: ``user/<area>/<kind>/<key>``.
    """

    namespace: tuple[str, ...]
    key: str
    kind: MemoryKind
    text: str
    provenance: Provenance
    value: dict[str, Any]
    score: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    ref: str = ""

    @property
    def area(self) -> str:
        """The role or domain area it lives in."""
        return self.namespace[2]

    @property
    def owner(self) -> str:
        """The owner label (``user:<id>`` or ``org:<id>``)."""
        return self.namespace[1]

    @property
    def status(self) -> str | None:
        """A procedural memory's :class:`ProcedureStatus` value; ``None`` for other kinds."""
        status = self.value.get("status")
        return status if isinstance(status, str) else None

    def describe(self, *, max_chars: int = 600) -> str:
        """One line for a prompt: kind, text, provenance and reference."""
        label = {
            MemoryKind.SEMANTIC: "fact",
            MemoryKind.EPISODIC: "episode",
            MemoryKind.PROCEDURAL: "instruction",
        }[self.kind]
        if self.kind is MemoryKind.PROCEDURAL:
            label = f"instruction {self.value.get('rule', '?')} v{self.value.get('version', '?')}"
        owner = " (organisation)" if self.owner.startswith("org:") else ""
        return (
            f"[{label}{owner}] {_clip(self.text, max_chars)} "
            f"(remembered {self.provenance.describe()}; ref {self.ref})"
        )


@dataclass(frozen=True, kw_only=True)
class FactWrite:
    """What :meth:`MemoryStore.write_fact` did.

    Attributes:
        memory: The fact as stored now.
        action: ``created`` (new item), ``updated`` (an existing similar fact was rewritten)
            or ``unchanged`` (the same text was already stored; provenance and expiry renewed).
        similarity: Similarity of the fact that was matched, when one was.
    """

    memory: Memory
    action: Literal["created", "updated", "unchanged"]
    similarity: float | None = None


def _fact_key(text: str) -> str:
    # Same wording -> same key, so two agents remembering the same fact at once still end up
    # with one item even before the similarity check sees either of them.
    digest = hashlib.blake2b(text.casefold().encode("utf-8"), digest_size=8).hexdigest()
    return f"fact-{digest}"


def _to_memory(item: Item | SearchItem) -> Memory | None:
    value = item.value if isinstance(item.value, dict) else {}
    try:
        kind = MemoryKind(str(value.get("kind")))
    except ValueError:
        return None  # not one of ours (the Store API can put anything under "memories")
    text = value.get("text")
    if not isinstance(text, str):
        return None
    namespace = tuple(item.namespace)
    ref = ""
    if len(namespace) == 4:
        owner_kind = "user" if namespace[1].startswith("user:") else "org"
        ref = f"{owner_kind}/{namespace[2]}/{namespace[3]}/{item.key}"
    return Memory(
        namespace=namespace,
        key=item.key,
        kind=kind,
        text=text,
        provenance=Provenance.from_json(value.get("provenance")),
        value=dict(value),
        score=getattr(item, "score", None),
        created_at=item.created_at,
        updated_at=item.updated_at,
        expires_at=_parse_time(value.get("expires_at")),
        ref=ref,
    )


def _revised(old: Mapping[str, Any], text: str, record: dict[str, Any]) -> dict[str, Any]:
    """``old`` rewritten to ``text``: the earlier wording goes to ``previous``, newest first."""
    value = dict(old)
    previous = old.get("previous")
    history: list[Any] = list(previous) if isinstance(previous, list) else []
    history.insert(0, {"text": old.get("text"), "provenance": old.get("provenance")})
    value["previous"] = history[:MAX_PREVIOUS]
    value["text"] = text
    value["provenance"] = record
    revision = old.get("revision")
    value["revision"] = (revision if isinstance(revision, int) else 1) + 1
    return value
