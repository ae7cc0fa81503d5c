"""Long-term memory in graphs: recall before an agent acts, remember after it has.

Three ways in, all on ``runtime.store`` (the store the graph runs with) and
:class:`state.memory.MemoryStore`:

* :func:`make_recall_node` - a graph node that searches the memories the role may read and
  adds them, with provenance, as one system message (or into a state key).
* :func:`make_remember_node` - a graph node that stores the run as an episodic memory and the
  facts the user asked to be remembered as semantic memories.
* :class:`StoreRecall` - the :class:`nodes.middleware.MemoryRecall` callable for
  :class:`nodes.middleware.MemoryRecallMiddleware`, so a ``create_agent`` role agent gets its
  memories in the system prompt (:func:`memory_recall_middleware` builds both);
  :class:`RememberEpisodeMiddleware` is the remember step for such agents.
* :func:`memory_tools` / :func:`register_memory_tools` - ``remember``, ``recall`` and
  ``forget`` tools an agent calls itself.

Whose memories: the user comes from the authenticated user of the run when the server set one
(``runtime.server_info.user``), else from ``context.user_id``. When both are present they must
agree, so a caller cannot read another user's memories by naming them in the context. Without
any user only organisation memories are read and nothing user-scoped is written.

What recall returns: the role's approved instructions (procedural memory, at most
:data:`MAX_INSTRUCTIONS`) whatever the request, since they are standing orders; then the
``context.memory_k`` facts and episodes most similar to the latest request, above
``context.memory_min_score``.
"""

from nodes.memory.acting import ActingRoleMiddleware, acting_role
from nodes.memory.context import MemoryContext, memory_settings, provenance_for, resolve_scope
from nodes.memory.recall import (
    MAX_INSTRUCTIONS,
    RECALL_MESSAGE_PREFIX,
    StoreRecall,
    format_memories,
    make_recall_node,
    memory_recall_middleware,
)
from nodes.memory.remember import (
    FactMode,
    RememberEpisodeMiddleware,
    episode_from_messages,
    explicit_facts,
    make_remember_node,
)
from nodes.memory.tools import MEMORY_TOOL_RISKS, memory_tools, register_memory_tools

__all__ = [
    "MAX_INSTRUCTIONS",
    "MEMORY_TOOL_RISKS",
    "RECALL_MESSAGE_PREFIX",
    "ActingRoleMiddleware",
    "FactMode",
    "MemoryContext",
    "RememberEpisodeMiddleware",
    "StoreRecall",
    "acting_role",
    "episode_from_messages",
    "explicit_facts",
    "format_memories",
    "make_recall_node",
    "make_remember_node",
    "memory_recall_middleware",
    "memory_settings",
    "memory_tools",
    "provenance_for",
    "register_memory_tools",
    "resolve_scope",
]
