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

from state.memory.records import Episode, FactWrite, Memory, Provenance
from state.memory.scope import (
    DEFAULT_MERGE_THRESHOLD,
    DEFAULT_ORG,
    DEFAULT_RECALL_K,
    MAX_ID,
    MAX_K,
    MEMORY_ROOT,
    MemoryInputError,
    MemoryKind,
    MemoryNotFound,
    MemoryScope,
    MemoryScopeError,
    ProcedureStatus,
    owner_label,
)
from state.memory.store import MemoryStore

__all__ = [
    "DEFAULT_MERGE_THRESHOLD",
    "DEFAULT_ORG",
    "DEFAULT_RECALL_K",
    "MAX_ID",
    "MAX_K",
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
