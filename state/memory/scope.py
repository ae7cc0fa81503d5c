"""Namespaces, kinds, bounds and errors of long-term memory, and :class:`MemoryScope`."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

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
DEFAULT_RECALL_K = 5
"""Facts and episodes recall returns when nobody asks for another number (``context.memory_k``
and the ``recall`` tool default to it)."""
DEFAULT_MERGE_THRESHOLD = 0.85
"""Cosine similarity at or above which a new fact updates the most similar stored fact.

0.85 keeps rewordings of one fact together with all-MiniLM-L6-v2 while facts that only share a
subject stay apart. The one default: :class:`~state.memory.MemoryStore` and
``context.memory_merge_threshold`` (which the remember node and tool pass on) both use it.
"""
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
