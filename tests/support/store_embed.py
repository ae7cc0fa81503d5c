"""A deterministic embed function for store vector-search tests (``store.index.embed``).

Each dimension counts the words of one topic, plus a constant so no vector is zero; cosine
similarities are therefore known in advance (see :func:`cosine`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

TOPICS = (
    frozenset({"coffee", "espresso", "roast", "latte"}),
    frozenset({"cat", "cats", "dog", "pet", "kitten"}),
    frozenset({"rain", "sun", "weather", "snow"}),
)
DIMS = len(TOPICS) + 1


def vector(text: str) -> list[float]:
    """The embedding of one text."""
    words = re.findall(r"[a-z]+", text.lower())
    return [float(sum(word in topic for word in words)) for topic in TOPICS] + [0.5]


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Embed a batch (the signature LangGraph's store calls)."""
    return [vector(text) for text in texts]


def cosine(a: str, b: str) -> float:
    """Cosine similarity of two texts' embeddings: the score the store reports."""
    va, vb = vector(a), vector(b)
    dot = sum(x * y for x, y in zip(va, vb, strict=True))
    return dot / (math.sqrt(sum(x * x for x in va)) * math.sqrt(sum(y * y for y in vb)))
