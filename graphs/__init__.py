"""staffgraph's graphs and the public builders behind them.

Each module ends with a compiled ``graph`` (no checkpointer or store: whoever runs it attaches
persistence) listed in ``langgraph.json``. The builders compose the same patterns from your own
roles and members.

Builders are imported on first use, so ``from graphs import build_pipeline`` does not build
every default graph.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphs.chat import build_chat
    from graphs.governance import build_governance
    from graphs.parallel import build_parallel
    from graphs.pipeline import Stage, build_pipeline
    from graphs.reflective import build_reflective
    from graphs.staff import build_staff
    from graphs.supervisor import build_supervisor

__all__ = [
    "Stage",
    "build_chat",
    "build_governance",
    "build_parallel",
    "build_pipeline",
    "build_reflective",
    "build_staff",
    "build_supervisor",
]

_HOMES = {
    "Stage": "graphs.pipeline",
    "build_chat": "graphs.chat",
    "build_governance": "graphs.governance",
    "build_parallel": "graphs.parallel",
    "build_pipeline": "graphs.pipeline",
    "build_reflective": "graphs.reflective",
    "build_staff": "graphs.staff",
    "build_supervisor": "graphs.supervisor",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'graphs' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
