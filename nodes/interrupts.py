"""Static interrupts on nodes inside member subgraphs (``writer:model``).

LangGraph applies a run's ``interrupt_before`` / ``interrupt_after`` to the top graph's nodes
only. The server puts the inner names into the run's ``configurable``
(:func:`interrupts_configurable`), and each member node passes its own share down to the
subgraph it invokes (:func:`inner_interrupts`). Kept apart from :mod:`nodes.team` so that the
server can import it without langchain's agent machinery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig

__all__ = ["INTERRUPTS_KEY", "inner_interrupts", "interrupts_configurable"]

INTERRUPTS_KEY = "__staffgraph_interrupts__"
"""``configurable`` key carrying a run's static interrupts down to member subgraphs."""


def interrupts_configurable(
    before: Sequence[str] | str | None, after: Sequence[str] | str | None
) -> dict[str, Any]:
    """The ``configurable`` entry that carries a run's inner static interrupts to members.

    LangGraph applies a run's ``interrupt_before`` / ``interrupt_after`` to the top graph's
    nodes only. A server puts this entry in the run's ``configurable`` so that names of
    nodes inside members, written as in the xray drawing (``writer:model``,
    ``research:researcher:tools``), pause there too.

    Returns:
        ``{INTERRUPTS_KEY: {"before": [...], "after": [...]}}`` with the names that address a
        subgraph's node, or ``{}`` when there are none.
    """
    inner = {
        key: [n for n in names if ":" in n]
        for key, names in (("before", before), ("after", after))
        if isinstance(names, (list, tuple))
    }
    inner = {key: names for key, names in inner.items() if names}
    return {INTERRUPTS_KEY: inner} if inner else {}


def inner_interrupts(config: RunnableConfig) -> dict[str, Any]:
    """Static interrupts for the subgraph the calling node invokes.

    The node's place comes from its checkpoint namespace (``research:<id>|researcher:<id>``
    gives ``research:researcher``); of the run's inner interrupt names, those that are this
    place followed by one more name are the subgraph's own nodes.

    Returns:
        Keyword arguments for the subgraph's ``ainvoke``: ``interrupt_before`` and/or
        ``interrupt_after``.
    """
    configurable: Mapping[str, Any] = config.get("configurable") or {}
    wanted = configurable.get(INTERRUPTS_KEY)
    if not isinstance(wanted, Mapping):
        return {}
    namespace = str(configurable.get("checkpoint_ns") or "")
    place = ":".join(part.split(":", 1)[0] for part in namespace.split("|") if part)
    prefix = place + ":"
    kwargs: dict[str, Any] = {}
    for key in ("before", "after"):
        names = [
            name.removeprefix(prefix)
            for name in wanted.get(key) or ()
            if isinstance(name, str)
            and name.startswith(prefix)
            and ":" not in name.removeprefix(prefix)
        ]
        if names:
            kwargs[f"interrupt_{key}"] = names
    return kwargs
