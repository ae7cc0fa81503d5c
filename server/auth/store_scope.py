"""Which store namespaces belong to whom (the Store API's owner rule).

A namespace is user ``U``'s when its first label is ``U`` (LangGraph's ``(user_id, ...)``
convention), or when it starts with ``("users", U)`` or ``("memories", U)`` — ``U`` also as
long-term memory writes it, ``user:U``. Every other namespace is shared (organisation
memories, ``("docs", ...)``): reading or writing it takes the ``store:shared`` permission
(built-in ``approver`` and ``admin`` keys have it). A search or listing under a prefix the caller
does not own is answered from the caller's own namespaces under that prefix only.
"""

from __future__ import annotations

from collections.abc import Sequence

from state.memory import MEMORY_ROOT, MemoryInputError, owner_label

__all__ = [
    "allowed",
    "governed",
    "is_shared",
    "owned",
    "owned_roots",
    "scoped_prefixes",
]

SHARED_ROOT = "shared"

_PARENTS = ("users", MEMORY_ROOT)


def _labels(identity: str) -> tuple[str, ...]:
    try:
        return (identity, owner_label("user", identity))
    except MemoryInputError:  # an identity memory cannot name (too long): only the plain label
        return (identity,)


def owned_roots(identity: str) -> list[tuple[str, ...]]:
    """The namespace prefixes that are ``identity``'s."""
    if not identity:
        return []
    # A user called "users" or "memories" must not own everybody's namespaces under it.
    # ("*" is the listing wildcard: such an identity would match everyone's namespaces.)
    plain = identity not in _PARENTS and "*" not in identity
    first: list[tuple[str, ...]] = [(identity,)] if plain else []
    return [*first, *((parent, label) for parent in _PARENTS for label in _labels(identity))]


def owned(namespace: Sequence[str], identity: str) -> bool:
    """Whether ``namespace`` belongs to ``identity``."""
    ns = tuple(namespace)
    return any(ns[: len(root)] == root for root in owned_roots(identity))


GOVERNED_ROOT = "staffgraph"
"""The organisation's own records (role versions): written by the governance graph only."""


def governed(namespace: Sequence[str]) -> bool:
    """Whether ``namespace`` changes only through the governance graph, never the Store API.

    Procedural memory (``("memories", <owner>, <area>, "procedural", ...)``: instructions
    agents follow once approved) and the organisation's records (``("staffgraph", ...)``: role
    versions). The governance graph writes them server-side after a human approved.
    """
    ns = tuple(namespace)
    if ns[:1] == (GOVERNED_ROOT,):
        return True
    return len(ns) >= 4 and ns[0] == MEMORY_ROOT and ns[3] == "procedural"


def is_shared(namespace: Sequence[str]) -> bool:
    """Whether ``namespace`` is shared (needs the ``store:shared`` permission)."""
    ns = tuple(namespace)
    if ns[:1] == (SHARED_ROOT,):
        return True
    return len(ns) >= 2 and ns[0] == MEMORY_ROOT and ns[1].startswith("org:")


def allowed(namespace: Sequence[str], identity: str, *, shared: bool) -> bool:
    """Whether a caller (``shared``: holding ``store:shared``) may use ``namespace``."""
    return owned(namespace, identity) or (shared and is_shared(namespace))


def scoped_prefixes(prefix: Sequence[str], identity: str, *, shared: bool) -> list[tuple[str, ...]]:
    """The prefixes to search so that only namespaces the caller may read are seen.

    ``prefix`` may hold ``*`` (any one label) as ``/store/namespaces`` allows; the result keeps
    the labels past a root as given.
    """
    wanted = tuple(prefix)
    if wanted and "*" not in wanted and allowed(wanted, identity, shared=shared):
        return [wanted]
    roots = owned_roots(identity) + ([(SHARED_ROOT,)] if shared else [])
    found: list[tuple[str, ...]] = []
    for root in roots:
        if all(w in ("*", r) for w, r in zip(wanted, root, strict=False)):
            merged = root + wanted[len(root) :]
            if merged not in found:
                found.append(merged)
    return found
