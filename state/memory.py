"""Long-term memory: episodic, semantic and procedural memories on LangGraph's store.

Memories live in LangGraph's :class:`~langgraph.store.base.BaseStore` (``AsyncPostgresStore``
with a pgvector index in production), so the Store API and Studio's memory tab show the same
items the agents use. Each kind has its own namespace, scoped by owner (a user or an
organisation) and by *area* (a role, or one of the domains a role owns)::

    ("memories", "user:alice", "writer", "semantic")
    ("memories", "org:default", "compliance_officer", "procedural")
    ("memories", "user:alice", "budget", "episodic")       # the `budget` domain's area

Areas are why a role's domains matter: a role reads and writes its own area and the areas of
the domains it owns, and nothing else. Memories kept under a domain follow the domain when the
organisation moves it to another role. Owners are the security boundary: recall reads the
current user's memories and the organisation's, never another user's (the scope holds one
user id and namespaces are built from it, so no query can name a different user).

Kinds:

* **episodic** - one item per run and role: the task, what was done, the outcome, critic
  scores and the source thread and run.
* **semantic** - facts. A new fact whose embedding matches an existing fact in the same
  namespace at or above :attr:`MemoryStore.similarity_threshold` *updates* that fact (its
  earlier wording is kept in ``previous``) instead of adding a near-duplicate.
* **procedural** - learned instructions for a role, versioned per ``rule``. A new version is
  stored ``pending``; only :meth:`MemoryStore.approve_procedure` (called by the governance
  graph after a human approved) makes it ``approved`` and recallable, superseding the previous
  approved version.

Every item carries :class:`Provenance` (who, on whose behalf, which thread and run, when) and,
when it has a time to live, ``expires_at``. The store's TTL removes expired rows; reads here
also skip items past ``expires_at`` that the sweeper has not reached yet, and never extend a
memory's life by reading it (expiry counts from the last write).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, cast

from langgraph.store.base import BaseStore, Item, PutOp, SearchItem, SearchOp

__all__ = [
    "DEFAULT_ORG",
    "MEMORY_ROOT",
    "Episode",
    "FactWrite",
    "Memory",
    "MemoryInputError",
    "MemoryKind",
    "MemoryNotFound",
    "MemoryScope",
    "MemoryScopeError",
    "MemoryStore",
    "ProcedureStatus",
    "Provenance",
    "owner_label",
]

log = logging.getLogger(__name__)

MEMORY_ROOT = "memories"
"""First label of every memory namespace."""

DEFAULT_ORG = "default"
"""Organisation id used when a deployment does not name one."""

# Bounds on what one memory may hold: memories are written by models and by API callers, and
# every byte of them may end up in a prompt.
MAX_TEXT = 2_000
MAX_ID = 200
MAX_SCORES = 20
MAX_ACTIONS = 20
MAX_PREVIOUS = 5
MAX_K = 50
_MAX_SCAN = 1_000  # items read per page when listing or deleting
_AREA_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RULE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_REF_RE = re.compile(
    r"(user|org)/([a-z][a-z0-9_]{0,63})/(episodic|semantic|procedural)/(\S{1,200})"
)
_INDEX_FIELDS = ["text"]  # only the memory's text is embedded, never provenance or metadata


class MemoryKind(StrEnum):
    """The three kinds of long-term memory."""

    EPISODIC = "episodic"
    """What happened in one run: task, actions, outcome, scores."""
    SEMANTIC = "semantic"
    """A fact."""
    PROCEDURAL = "procedural"
    """An instruction for a role, approved through governance before use."""


class ProcedureStatus(StrEnum):
    """Life cycle of one version of a procedural memory."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class MemoryInputError(ValueError):
    """A memory, scope or reference is malformed or too large; the message says what to fix."""


class MemoryScopeError(PermissionError):
    """An operation reaches outside the scope it was given (another area or owner)."""


class MemoryNotFound(LookupError):
    """No memory under the given reference (or it expired)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clean_text(text: str, *, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(text, str):
        raise MemoryInputError(f"{what} must be a string, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise MemoryInputError(f"{what} is empty; give the text to remember")
    if len(cleaned) > limit:
        raise MemoryInputError(
            f"{what} is {len(cleaned)} characters; at most {limit} are stored. Shorten it."
        )
    return cleaned


def _clip(text: str, limit: int) -> str:
    cleaned = " ".join(str(text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _check_id(value: str | None, *, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID or "\x00" in value:
        raise MemoryInputError(f"{what} must be a non-empty string of at most {MAX_ID} characters")
    return value


def _escape_label(value: str) -> str:
    # Store namespace labels may not contain "."; "%" is escaped first so that the mapping
    # stays reversible and two different ids never share a label.
    return value.replace("%", "%25").replace(".", "%2E")


def owner_label(kind: Literal["user", "org"], owner_id: str) -> str:
    """The namespace label of an owner: ``user:<id>`` or ``org:<id>``, with dots escaped.

    The prefix keeps a user id such as ``org:acme`` from ever naming the organisation.

    Args:
        kind: ``"user"`` or ``"org"``.
        owner_id: The user or organisation id (1-200 characters).

    Returns:
        The label.

    Raises:
        MemoryInputError: The id is empty, too long or holds a NUL byte.
    """
    _check_id(owner_id, what=f"{kind} id")
    return f"{kind}:{_escape_label(owner_id)}"


def _check_area(area: str) -> str:
    if not isinstance(area, str) or not _AREA_RE.fullmatch(area):
        raise MemoryInputError(
            f"memory area {area!r} must be a role or domain name (lower_snake_case, a-z, 0-9, _)"
        )
    return area


@dataclass(frozen=True, kw_only=True)
class MemoryScope:
    """Whose memories an operation may touch, and which role is acting.

    Attributes:
        role: The acting role; its own area.
        user_id: The user the run acts for; ``None`` when nobody is identified (then only
            organisation memories are read and nothing user-scoped is written).
        org_id: The organisation whose shared memories are also read; ``None`` for none.
        domains: Domains the role owns (``Role.domains``); each is an extra area the role
            reads and may write.
    """

    role: str
    user_id: str | None = None
    org_id: str | None = DEFAULT_ORG
    domains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_area(self.role)
        _check_id(self.user_id, what="user id")
        _check_id(self.org_id, what="organisation id")
        if len(self.domains) > 50:
            raise MemoryInputError(f"a scope may name at most 50 domains, got {len(self.domains)}")
        for domain in self.domains:
            _check_area(domain)

    @property
    def areas(self) -> tuple[str, ...]:
        """The role's own area first, then its domains (each once)."""
        return tuple(dict.fromkeys((self.role, *self.domains)))

    def owners(self) -> list[tuple[Literal["user", "org"], str]]:
        """``(owner kind, owner label)`` pairs this scope reads: the user first, then the org."""
        found: list[tuple[Literal["user", "org"], str]] = []
        if self.user_id is not None:
            found.append(("user", owner_label("user", self.user_id)))
        if self.org_id is not None:
            found.append(("org", owner_label("org", self.org_id)))
        return found

    def owner(self, kind: Literal["user", "org"]) -> str:
        """The label of this scope's user or organisation.

        Raises:
            MemoryScopeError: The scope has no such owner.
        """
        for owner_kind, label in self.owners():
            if owner_kind == kind:
                return label
        which = "user" if kind == "user" else "organisation"
        raise MemoryScopeError(
            f"this memory scope has no {which}; pass {'user_id' if kind == 'user' else 'org_id'}"
            " (for runs: context.user_id or an authenticated user)"
        )

    def namespace(
        self,
        kind: MemoryKind | str,
        *,
        owner: Literal["user", "org"] = "user",
        area: str | None = None,
    ) -> tuple[str, str, str, str]:
        """The namespace for ``kind`` under this scope.

        Args:
            kind: The memory kind.
            owner: The user's memories or the organisation's.
            area: The role (default) or one of its domains.

        Raises:
            MemoryScopeError: ``area`` is neither the role nor one of its domains, or the
                scope lacks that owner.
        """
        area = self.role if area is None else _check_area(area)
        if area not in self.areas:
            raise MemoryScopeError(
                f"role '{self.role}' may only use its own memory area and those of its domains "
                f"({', '.join(self.areas)}), not '{area}'"
            )
        return (MEMORY_ROOT, self.owner(owner), area, MemoryKind(kind).value)

    def readable_namespaces(
        self, kinds: Iterable[MemoryKind | str] = tuple(MemoryKind)
    ) -> list[tuple[str, ...]]:
        """Every namespace recall may search for this scope, user's first."""
        wanted = [MemoryKind(kind).value for kind in kinds]
        return [
            (MEMORY_ROOT, label, area, kind)
            for _, label in self.owners()
            for area in self.areas
            for kind in wanted
        ]

    def ref_of(self, namespace: Sequence[str], key: str) -> str:
        """The short reference (``user/<area>/<kind>/<key>``) agents use for one memory."""
        owner_kind = "user" if namespace[1].startswith("user:") else "org"
        return f"{owner_kind}/{namespace[2]}/{namespace[3]}/{key}"

    def resolve(self, ref: str) -> tuple[tuple[str, str, str, str], str]:
        """Turn a reference from :meth:`ref_of` back into ``(namespace, key)`` in this scope.

        A reference never names a user: ``user/...`` always means this scope's user.

        Raises:
            MemoryInputError: ``ref`` is not a memory reference.
            MemoryScopeError: It names an area or owner outside this scope.
        """
        match = _REF_RE.fullmatch(ref.strip()) if isinstance(ref, str) else None
        if match is None:
            raise MemoryInputError(
                f"{ref!r} is not a memory reference; use the ref shown by recall, "
                "e.g. 'user/writer/semantic/fact-0123abcd'"
            )
        owner_kind, area, kind, key = match.groups()
        owner: Literal["user", "org"] = "user" if owner_kind == "user" else "org"
        return self.namespace(kind, owner=owner, area=area), key


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


class MemoryStore:
    """Episodic, semantic and procedural memory on any LangGraph ``BaseStore``.

    Build one per store (cheap; holds no connections of its own) and pass a
    :class:`MemoryScope` to every call. Nodes and tools build it from ``runtime.store``.
    """

    def __init__(
        self,
        store: BaseStore,
        *,
        similarity_threshold: float = 0.85,
        default_ttl: Mapping[MemoryKind | str, float] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        """Wrap ``store``.

        Args:
            store: The LangGraph store (``runtime.store`` in a node).
            similarity_threshold: Cosine similarity at or above which a new fact updates the
                most similar existing fact instead of being added. 0.85 keeps rewordings of
                one fact together with all-MiniLM-L6-v2 while facts that only share a subject
                stay apart; lower it for coarser merging.
            default_ttl: Minutes to live per kind when a write gives none, e.g.
                ``{"episodic": 60 * 24 * 90}``. Unlisted kinds use the store's own
                ``default_ttl`` (none unless configured).
            clock: Current UTC time; tests pass a fixed clock.

        Raises:
            MemoryInputError: The threshold is outside (0, 1] or a TTL is not positive.
        """
        if not 0.0 < similarity_threshold <= 1.0:
            raise MemoryInputError(
                f"similarity_threshold must be in (0, 1], got {similarity_threshold}"
            )
        ttls: dict[MemoryKind, float] = {}
        for kind, minutes in (default_ttl or {}).items():
            ttls[MemoryKind(kind)] = self._check_ttl(minutes)
        self.store = store
        self.similarity_threshold = similarity_threshold
        self.default_ttl = ttls
        self._clock = clock

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_ttl(minutes: float | None) -> float:
        if minutes is None or not isinstance(minutes, int | float) or not minutes > 0:
            raise MemoryInputError(f"ttl must be a positive number of minutes, got {minutes!r}")
        if minutes > 60 * 24 * 365 * 100:
            raise MemoryInputError("ttl is over 100 years; leave it out for no expiry")
        return float(minutes)

    def _ttl_for(self, kind: MemoryKind, ttl: float | None) -> float | None:
        if ttl is not None:
            return self._check_ttl(ttl)
        if kind in self.default_ttl:
            return self.default_ttl[kind]
        store_default = (getattr(self.store, "ttl_config", None) or {}).get("default_ttl")
        return float(store_default) if isinstance(store_default, int | float) else None

    def _live(self, memory: Memory | None) -> Memory | None:
        if memory is None:
            return None
        if memory.expires_at is not None and memory.expires_at <= self._clock():
            return None
        return memory

    async def _put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None,
    ) -> None:
        now = self._clock()
        value["expires_at"] = _iso(now + timedelta(minutes=ttl)) if ttl is not None else None
        if self.store.supports_ttl:
            await self.store.aput(namespace, key, value, index=_INDEX_FIELDS, ttl=ttl)
        else:
            # Stores without TTL keep the item; expires_at above still hides it from reads.
            await self.store.aput(namespace, key, value, index=_INDEX_FIELDS)

    async def _get(self, namespace: tuple[str, ...], key: str) -> Memory | None:
        item = await self.store.aget(namespace, key, refresh_ttl=False)
        return self._live(_to_memory(item)) if item is not None else None

    async def _stored(self, namespace: tuple[str, ...], key: str) -> Memory:
        memory = await self._get(namespace, key)
        if memory is None:  # pragma: no cover - read right after our own write
            raise MemoryNotFound(f"memory {key!r} vanished right after it was written")
        return memory

    # ------------------------------------------------------------------ writes

    async def write_episode(
        self,
        scope: MemoryScope,
        episode: Episode,
        *,
        provenance: Provenance,
        key: str | None = None,
        area: str | None = None,
        ttl: float | None = None,
    ) -> Memory:
        """Store what happened in one run.

        Args:
            scope: The acting role and user.
            episode: The run's task, actions, outcome and scores.
            provenance: Who and which run.
            key: Item key; defaults to ``run-<run_id>`` (one episode per run and role, so a
                retried node overwrites instead of duplicating), else a time-based key.
            area: The role (default) or one of its domains.
            ttl: Minutes to live; default from ``default_ttl`` or the store.

        Returns:
            The stored memory.

        Raises:
            MemoryInputError: Empty or oversized text, a score outside [0, 1], too many scores.
            MemoryScopeError: No user in the scope, or ``area`` outside it.
        """
        task = _clean_text(episode.task, what="episode task", limit=20_000)
        outcome = _clean_text(episode.outcome, what="episode outcome", limit=20_000)
        if len(episode.scores) > MAX_SCORES:
            raise MemoryInputError(f"an episode holds at most {MAX_SCORES} scores")
        scores: dict[str, float] = {}
        for name, score in episode.scores.items():
            if not isinstance(score, int | float) or not 0.0 <= float(score) <= 1.0:
                raise MemoryInputError(f"score {name!r} must be in [0, 1], got {score!r}")
            scores[_clip(str(name), 64)] = round(float(score), 4)
        namespace = scope.namespace(MemoryKind.EPISODIC, area=area)
        if key is None:
            key = (
                f"run-{provenance.run_id}"
                if provenance.run_id
                else f"ep-{self._clock().strftime('%Y%m%dT%H%M%S%f')}"
            )
        _check_id(key, what="episode key")
        value: dict[str, Any] = {
            "kind": MemoryKind.EPISODIC.value,
            "text": replace(episode, task=task, outcome=outcome, scores=scores).text(),
            "task": _clip(task, MAX_TEXT),
            "actions": [_clip(a, 200) for a in episode.actions[:MAX_ACTIONS]],
            "outcome": _clip(outcome, MAX_TEXT),
            "succeeded": episode.succeeded,
            "scores": scores,
            "active": True,
            "provenance": provenance.to_json(),
        }
        await self._put(namespace, key, value, ttl=self._ttl_for(MemoryKind.EPISODIC, ttl))
        return await self._stored(namespace, key)

    async def write_fact(
        self,
        scope: MemoryScope,
        text: str,
        *,
        provenance: Provenance,
        owner: Literal["user", "org"] = "user",
        area: str | None = None,
        ttl: float | None = None,
    ) -> FactWrite:
        """Store a fact, updating the most similar existing fact instead of duplicating it.

        The namespace's facts are searched with the store's vector index; when the best match
        scores at least :attr:`similarity_threshold`, that item is rewritten with the new
        wording (the old wording and its provenance go to ``previous``, newest first, at most
        five). Without a vector index only identical wording is merged.

        Args:
            scope: The acting role and user.
            text: The fact, one or two sentences (at most 2000 characters).
            provenance: Who and which run.
            owner: The user's memory (default) or the organisation's.
            area: The role (default) or one of its domains.
            ttl: Minutes to live; default from ``default_ttl`` or the store.

        Returns:
            The :class:`FactWrite`.

        Raises:
            MemoryInputError: Empty or oversized text.
            MemoryScopeError: The scope lacks the owner, or ``area`` is outside it.
        """
        fact = _clean_text(text, what="fact")
        namespace = scope.namespace(MemoryKind.SEMANTIC, owner=owner, area=area)
        key = _fact_key(fact)
        match = await self._get(namespace, key)
        similarity: float | None = 1.0 if match is not None else None
        if match is None:
            hits = await self.store.asearch(
                namespace,
                query=fact,
                filter={"kind": MemoryKind.SEMANTIC.value},
                limit=3,
                refresh_ttl=False,
            )
            for hit in hits:
                candidate = self._live(_to_memory(hit))
                if (
                    candidate is not None
                    and tuple(hit.namespace) == namespace
                    and hit.score is not None
                    and hit.score >= self.similarity_threshold
                ):
                    match, key, similarity = candidate, hit.key, float(hit.score)
                    break
        record = provenance.to_json()
        ttl_minutes = self._ttl_for(MemoryKind.SEMANTIC, ttl)
        if match is None:
            value: dict[str, Any] = {
                "kind": MemoryKind.SEMANTIC.value,
                "text": fact,
                "revision": 1,
                "previous": [],
                "first_recorded": record,
                "active": True,
                "provenance": record,
            }
            await self._put(namespace, key, value, ttl=ttl_minutes)
            return FactWrite(memory=await self._stored(namespace, key), action="created")
        action: Literal["updated", "unchanged"]
        if match.value.get("text") == fact:
            action = "unchanged"
            value = {**match.value, "provenance": record}
        else:
            action = "updated"
            value = _revised(match.value, fact, record)
        value.setdefault("first_recorded", match.value.get("provenance"))
        await self._put(namespace, key, value, ttl=ttl_minutes)
        return FactWrite(
            memory=await self._stored(namespace, key), action=action, similarity=similarity
        )

    async def update(
        self,
        scope: MemoryScope,
        ref: str,
        text: str,
        *,
        provenance: Provenance,
        ttl: float | None = None,
    ) -> Memory:
        """Rewrite the text of an episodic or semantic memory, keeping its history.

        Procedural memories change only through :meth:`propose_procedure` and approval.

        Args:
            scope: The acting role and user.
            ref: The memory's reference (:attr:`Memory.ref`).
            text: The new text.
            provenance: Who changes it.
            ttl: Minutes to live from now; default from ``default_ttl`` or the store.

        Returns:
            The updated memory.

        Raises:
            MemoryNotFound: No such memory in the scope.
            MemoryInputError: A procedural reference, or bad text.
            MemoryScopeError: The reference is outside the scope.
        """
        new_text = _clean_text(text, what="memory text")
        namespace, key = scope.resolve(ref)
        if namespace[3] == MemoryKind.PROCEDURAL.value:
            raise MemoryInputError(
                "procedural memories change through propose_procedure and an approval, not update"
            )
        current = await self._get(namespace, key)
        if current is None:
            raise MemoryNotFound(f"no memory {ref!r} for this user and role")
        value = _revised(current.value, new_text, provenance.to_json())
        await self._put(namespace, key, value, ttl=self._ttl_for(current.kind, ttl))
        return await self._stored(namespace, key)

    # ------------------------------------------------------------------ procedural

    async def _versions(self, namespace: tuple[str, ...], rule: str) -> list[Memory]:
        items = await self.store.asearch(
            namespace, filter={"rule": rule}, limit=_MAX_SCAN, refresh_ttl=False
        )
        found = [m for m in (_to_memory(i) for i in items) if m is not None]
        return sorted(found, key=lambda m: int(m.value.get("version", 0)))

    async def propose_procedure(
        self,
        scope: MemoryScope,
        rule: str,
        instructions: str,
        *,
        provenance: Provenance,
        reason: str = "",
        owner: Literal["user", "org"] | None = None,
        area: str | None = None,
        change_id: str | None = None,
    ) -> Memory:
        """Store a new version of a role's instruction as ``pending``.

        Pending versions are never recalled. The governance graph shows the proposal to a
        human and then calls :meth:`approve_procedure` or :meth:`reject_procedure` with its
        :attr:`Memory.ref`.

        Args:
            scope: The role the instruction is for (and the user, for user-level rules).
            rule: Stable lower_snake_case name of the instruction, e.g. ``cite_sources``;
                versions are numbered per rule.
            instructions: The instruction text.
            provenance: Who proposes it (``critic``, ``human:<id>``) and from which run.
            reason: Why, e.g. the critic's critique (at most 2000 characters).
            owner: Organisation-wide (default when the scope has an organisation) or the
                user's own.
            area: The role (default) or one of its domains.
            change_id: Id of the proposal (e.g. a governance run's change). A second call
                with the same id returns the version the first one stored instead of adding
                another, so a node that runs again after a crash or a resume is harmless.

        Returns:
            The pending version (or, for a repeated ``change_id``, the version stored then).

        Raises:
            MemoryInputError: Bad rule name, text or change id.
            MemoryScopeError: The scope lacks the owner, or ``area`` is outside it.
        """
        if not isinstance(rule, str) or not _RULE_RE.fullmatch(rule):
            raise MemoryInputError(f"rule {rule!r} must be lower_snake_case (a-z, 0-9, _)")
        text = _clean_text(instructions, what="instructions")
        _check_id(change_id, what="change_id")
        why = _clip(reason, MAX_TEXT) if reason else ""
        chosen: Literal["user", "org"] = owner or ("org" if scope.org_id is not None else "user")
        namespace = scope.namespace(MemoryKind.PROCEDURAL, owner=chosen, area=area)
        versions = await self._versions(namespace, rule)
        if change_id is not None:
            for earlier in versions:
                if earlier.value.get("change_id") == change_id:
                    return earlier
        version = (int(versions[-1].value.get("version", 0)) + 1) if versions else 1
        key = f"{rule}-v{version}"
        value: dict[str, Any] = {
            "kind": MemoryKind.PROCEDURAL.value,
            "text": text,
            "rule": rule,
            "version": version,
            "status": ProcedureStatus.PENDING.value,
            "reason": why,
            "decision": None,
            "active": False,
            "change_id": change_id,
            "provenance": provenance.to_json(),
        }
        await self._put(namespace, key, value, ttl=None)
        return await self._stored(namespace, key)

    async def _decide(
        self,
        scope: MemoryScope,
        ref: str,
        status: ProcedureStatus,
        *,
        decided_by: str,
        reason: str,
    ) -> Memory:
        namespace, key = scope.resolve(ref)
        if namespace[3] != MemoryKind.PROCEDURAL.value:
            raise MemoryInputError(f"{ref!r} is not a procedural memory")
        _check_id(decided_by, what="decided_by")
        current = await self._get(namespace, key)
        if current is None:
            raise MemoryNotFound(f"no procedural memory {ref!r}")
        if current.status != ProcedureStatus.PENDING.value:
            raise MemoryInputError(
                f"{ref} is {current.status}; only pending versions can be approved or rejected"
            )
        decision = {
            "status": status.value,
            "decided_by": decided_by,
            "decided_at": _iso(self._clock()),
            "reason": _clip(reason, MAX_TEXT) if reason else "",
        }
        if status is ProcedureStatus.APPROVED:
            # Exactly one approved version per rule is recalled: the newest decision wins.
            ops = []
            for other in await self._versions(namespace, str(current.value.get("rule"))):
                if other.key != key and other.status == ProcedureStatus.APPROVED.value:
                    superseded = dict(other.value)
                    superseded["status"] = ProcedureStatus.SUPERSEDED.value
                    superseded["active"] = False
                    superseded["superseded_by"] = key
                    ops.append(PutOp(namespace, other.key, superseded, index=_INDEX_FIELDS))
            if ops:
                await self.store.abatch(ops)
        value = dict(current.value)
        value.update(status=status.value, decision=decision)
        value["active"] = status is ProcedureStatus.APPROVED
        await self._put(namespace, key, value, ttl=None)
        return await self._stored(namespace, key)

    async def approve_procedure(
        self, scope: MemoryScope, ref: str, *, decided_by: str, reason: str = ""
    ) -> Memory:
        """Approve a pending instruction: from now on recall returns it.

        The previously approved version of the same rule becomes ``superseded``.

        Args:
            scope: The role's scope (the same owner and area the proposal used).
            ref: The pending version's :attr:`Memory.ref`.
            decided_by: Who approved, e.g. ``human:<id>``.
            reason: The reviewer's note.

        Returns:
            The approved version.

        Raises:
            MemoryNotFound: No such version.
            MemoryInputError: It is not pending, or not procedural.
            MemoryScopeError: ``ref`` is outside the scope.
        """
        return await self._decide(
            scope, ref, ProcedureStatus.APPROVED, decided_by=decided_by, reason=reason
        )

    async def reject_procedure(
        self, scope: MemoryScope, ref: str, *, decided_by: str, reason: str = ""
    ) -> Memory:
        """Reject a pending instruction; it is kept for the record and never recalled.

        Args:
            scope: The role's scope.
            ref: The pending version's :attr:`Memory.ref`.
            decided_by: Who rejected.
            reason: Why.

        Returns:
            The rejected version.

        Raises:
            MemoryNotFound: No such version.
            MemoryInputError: It is not pending, or not procedural.
            MemoryScopeError: ``ref`` is outside the scope.
        """
        return await self._decide(
            scope, ref, ProcedureStatus.REJECTED, decided_by=decided_by, reason=reason
        )

    async def procedures(
        self,
        scope: MemoryScope,
        *,
        status: ProcedureStatus | str | None = None,
    ) -> list[Memory]:
        """List the instruction versions the scope can see, e.g. the pending ones to review.

        Args:
            scope: The role's scope.
            status: Only versions in this state.

        Returns:
            Versions, user's before the organisation's, by area, rule and version.
        """
        wanted = ProcedureStatus(status).value if status is not None else None
        found: list[Memory] = []
        for namespace in scope.readable_namespaces([MemoryKind.PROCEDURAL]):
            query_filter = {"status": wanted} if wanted else None
            items = await self.store.asearch(
                namespace, filter=query_filter, limit=_MAX_SCAN, refresh_ttl=False
            )
            memories = [m for m in (_to_memory(i) for i in items) if m is not None]
            found.extend(
                sorted(
                    memories,
                    key=lambda m: (str(m.value.get("rule")), int(m.value.get("version", 0))),
                )
            )
        return found

    # ------------------------------------------------------------------ reads

    async def get(self, scope: MemoryScope, ref: str) -> Memory | None:
        """Read one memory by reference, or ``None`` when absent or expired.

        Raises:
            MemoryInputError: ``ref`` is malformed.
            MemoryScopeError: ``ref`` is outside the scope.
        """
        namespace, key = scope.resolve(ref)
        return await self._get(namespace, key)

    async def recall(
        self,
        scope: MemoryScope,
        query: str,
        *,
        k: int = 5,
        kinds: Iterable[MemoryKind | str] | None = None,
        min_score: float | None = None,
    ) -> list[Memory]:
        """The ``k`` memories most similar to ``query`` that this scope may read.

        Searches only the scope's namespaces (its user's and organisation's, in the role's
        own area and its domains' areas), skips pending/rejected/superseded instructions and
        expired items, and orders by similarity.

        Args:
            scope: The acting role and user.
            query: What the memories should be relevant to (clipped to 2000 characters).
            k: Most memories returned, 1 to 50.
            kinds: Only these kinds (default all).
            min_score: Drop memories less similar than this.

        Returns:
            Memories, most similar first, each with its ``score``.

        Raises:
            MemoryInputError: ``k`` out of range.
        """
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise MemoryInputError(f"k must be between 1 and {MAX_K}, got {k!r}")
        query = _clip(query or "", MAX_TEXT)
        wanted = [MemoryKind(kind) for kind in (kinds if kinds is not None else MemoryKind)]
        namespaces = scope.readable_namespaces(wanted)
        if not namespaces or not wanted:
            return []
        # One search per namespace, batched in one round trip; fetch a little more than k so
        # that expired-but-unswept items do not leave the answer short.
        ops = [
            SearchOp(
                namespace,
                filter={"active": True},
                limit=k + 5,
                query=query or None,
                refresh_ttl=False,
            )
            for namespace in namespaces
        ]
        results = cast(list[list[SearchItem]], await self.store.abatch(ops))
        found: list[Memory] = []
        for op, items in zip(ops, results, strict=True):
            for item in items:
                # An exact prefix match only: never trust a deeper namespace under ours.
                if tuple(item.namespace) != op.namespace_prefix:
                    continue
                memory = self._live(_to_memory(item))
                if memory is None:
                    continue
                if min_score is not None and (memory.score is None or memory.score < min_score):
                    continue
                found.append(memory)

        def rank(memory: Memory) -> tuple[float, float]:
            stamp = memory.updated_at.timestamp() if memory.updated_at else 0.0
            return (memory.score if memory.score is not None else -1.0, stamp)

        found.sort(key=rank, reverse=True)
        return found[:k]

    # ------------------------------------------------------------------ deletes

    async def forget(self, scope: MemoryScope, ref: str) -> bool:
        """Delete one memory of the scope's user.

        Organisation memories are not forgotten this way (they belong to everyone); change
        them through governance.

        Args:
            scope: The acting role and user.
            ref: The memory's :attr:`Memory.ref` (``user/...``).

        Returns:
            Whether a memory was deleted.

        Raises:
            MemoryInputError: ``ref`` is malformed.
            MemoryScopeError: ``ref`` names the organisation or an area outside the scope.
        """
        namespace, key = scope.resolve(ref)
        if not namespace[1].startswith("user:"):
            raise MemoryScopeError(
                "organisation memories cannot be forgotten by an agent; "
                "ask the people lead to change them through governance"
            )
        existing = await self.store.aget(namespace, key, refresh_ttl=False)
        if existing is None:
            return False
        await self.store.adelete(namespace, key)
        return True

    async def delete_user(self, user_id: str) -> int:
        """Delete every memory of one user, in every area and kind.

        Args:
            user_id: The user.

        Returns:
            How many items were deleted.

        Raises:
            MemoryInputError: ``user_id`` is empty or too long.
        """
        prefix = (MEMORY_ROOT, owner_label("user", user_id))
        deleted = 0
        while True:
            # Deleting what one page returned and asking again (offset 0) visits every item
            # even while new ones are added; the loop ends when a page comes back empty.
            items = await self.store.asearch(prefix, limit=_MAX_SCAN, refresh_ttl=False)
            if not items:
                return deleted
            await self.store.abatch(
                [PutOp(tuple(item.namespace), item.key, None) for item in items]
            )
            deleted += len(items)
