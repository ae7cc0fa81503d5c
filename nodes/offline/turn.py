"""Reading a conversation turn, reviewing a draft, and writing the offline model's text replies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage

from nodes.offline.text import (
    _ADEQUATE_WORDS,
    _CRITERION_LINE_RE,
    _INSTRUCTION_WORDS,
    _MAX_KEYWORDS,
    _MAX_MESSAGES,
    _QUESTION_START,
    _REVIEW_MARKER_RE,
    _ROLE_RES,
    _STOP_WORDS,
    _WRITE_INTENT_RE,
    PASS_THRESHOLD,
    _capitalise,
    _clip,
    _content_text,
    _join_words,
    _keywords,
    _sentences,
    _shorten,
    _stem,
    _words,
)


@dataclass(frozen=True)
class _Turn:
    """What the model reads from a conversation, bounded and computed once per call."""

    system: str
    request: str
    called: frozenset[str]
    tool_results: list[tuple[str, str]]
    notes: list[tuple[str, str]]
    answered_by: frozenset[str]
    earlier: str

    @classmethod
    def read(cls, messages: Sequence[BaseMessage]) -> _Turn:
        recent = list(messages[-_MAX_MESSAGES:])
        system = "\n".join(_content_text(m.content) for m in recent if m.type == "system")
        last_human = max((i for i, m in enumerate(recent) if m.type == "human"), default=-1)
        request = _content_text(recent[last_human].content) if last_human >= 0 else ""
        called: set[str] = set()
        answered: set[str] = set()
        names_by_id: dict[str, str] = {}
        tool_results: list[tuple[str, str]] = []
        notes: list[tuple[str, str]] = []
        for message in recent[last_human + 1 :]:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    called.add(call["name"])
                    names_by_id[call.get("id") or ""] = call["name"]
                    if call["name"].startswith("transfer_to_"):
                        answered.add(call["name"].removeprefix("transfer_to_").lower())
                if message.name:
                    answered.add(message.name.lower())
                text = _content_text(message.content).strip()
                if text:
                    notes.append((message.name or "assistant", text))
            elif message.type == "tool":
                tool_name = getattr(message, "name", None) or names_by_id.get(
                    getattr(message, "tool_call_id", ""), "tool"
                )
                tool_results.append((tool_name, _content_text(message.content).strip()))
        earlier = "\n".join(
            _content_text(m.content)
            for m in recent[: max(last_human, 0)]
            if m.type in ("ai", "tool")
        )
        return cls(
            system=system,
            request=request,
            called=frozenset(called),
            tool_results=tool_results[-4:],
            notes=notes[-4:],
            answered_by=frozenset(answered),
            earlier=_clip(earlier),
        )

    @property
    def role(self) -> str | None:
        for pattern in _ROLE_RES:
            match = pattern.search(self.system)
            if match:
                role = match.group(1).strip().strip("*_`'\"")
                if role and role.lower() not in _STOP_WORDS:
                    return _capitalise(role)
        return None


_KIND_BY_VERB = {
    "summarise": "summary",
    "summarize": "summary",
    "explain": "explanation",
    "describe": "description",
    "outline": "outline",
    "plan": "plan",
    "list": "list",
    "review": "review",
    "report": "report",
}


def _topic(request: str) -> tuple[str, str | None]:
    """Split a writing request into (topic, kind): "draft a summary of X" -> ("X", "summary")."""
    first = request.strip().split("\n", 1)[0]
    match = _WRITE_INTENT_RE.match(first)
    if not match:
        return _shorten(first.rstrip("?.!"), 120), None
    kind = match.group(2) or _KIND_BY_VERB.get(match.group(1).lower(), "note")
    topic = re.split(r"(?<=[.!?:])\s", first[match.end() :].strip(), maxsplit=1)[0]
    topic = topic.rstrip("?.!:;, ")
    return _shorten(topic or first, 120), kind.lower()


@dataclass(frozen=True)
class Review:
    """The outcome of :func:`review_score` on one piece of content.

    Attributes:
        score: ``0.7 * coverage + 0.3 * length adequacy``, in [0, 1], rounded to 3 places.
        covered: reference keywords the content contains (original spelling).
        missing: reference keywords the content lacks.
        words: number of words in the content.
    """

    score: float
    covered: tuple[str, ...]
    missing: tuple[str, ...]
    words: int

    @property
    def passed(self) -> bool:
        """Whether the score reaches :data:`PASS_THRESHOLD`."""
        return self.score >= PASS_THRESHOLD

    def describe(self) -> str:
        """One readable line: the score, what is covered and what is missing."""
        total = len(self.covered) + len(self.missing)
        parts = [f"Score {self.score:.2f}"]
        if total:
            parts.append(f"covers {len(self.covered)} of {total} key terms")
            if self.covered:
                parts[-1] += f" ({_join_words(list(self.covered[:6]))})"
            if self.missing:
                parts.append(f"missing {_join_words(list(self.missing[:6]))}")
        parts.append(f"{self.words} words")
        verdict = "meets the bar" if self.passed else "needs revision"
        return "; ".join(parts) + f" — {verdict}."


def review_score(content: str, reference: str) -> Review:
    """Score ``content`` against the keywords of ``reference`` (deterministic heuristic).

    ``coverage`` is the fraction of the reference's distinct keywords (stop words removed,
    stemmed, at most 40) found in the content; with no reference keywords it is 1 for any
    non-empty content. ``length adequacy`` is ``min(1, words / 30)``. The score is
    ``0.7 * coverage + 0.3 * adequacy``: covering more keywords never lowers it.

    Args:
        content: the text under review (a draft, an answer, a tool output).
        reference: the task or criterion it should satisfy.

    Returns:
        The :class:`Review` with the score and the covered and missing keywords.
    """
    content = _clip(content)
    wanted = {
        stem: word
        for stem, word in _keywords(_clip(reference)).items()
        if word.lower() not in _INSTRUCTION_WORDS
    }
    wanted = dict(list(wanted.items())[:_MAX_KEYWORDS])
    content_words = _words(content)
    have = {_stem(w) for w in content_words}
    covered = tuple(word for stem, word in wanted.items() if stem in have)
    missing = tuple(word for stem, word in wanted.items() if stem not in have)
    if not content_words:
        return Review(score=0.0, covered=(), missing=missing, words=0)
    coverage = len(covered) / len(wanted) if wanted else 1.0
    adequacy = min(1.0, len(content_words) / _ADEQUATE_WORDS)
    score = round(0.7 * coverage + 0.3 * adequacy, 3)
    return Review(score=score, covered=covered, missing=missing, words=len(content_words))


def _review_of(turn: _Turn) -> Review:
    """Find the content under review and its reference in the conversation, and score it.

    Content: the latest AI text after the last human message if there is one (a critic
    reading a draft in the thread); else the text after the last line starting with
    ``Output:``/``Draft:``/``Answer:``/``Response:`` in the last human message (reference: the
    text before that line); else the whole last human message. Lines starting with
    ``Criterion:``/``Task:``/``Rubric:``/``Goal:`` in the system prompt join the reference.
    """
    criteria = " ".join(m.group(1) for m in _CRITERION_LINE_RE.finditer(turn.system))
    if turn.notes:
        return review_score(turn.notes[-1][1], turn.request + " " + criteria)
    markers = list(_REVIEW_MARKER_RE.finditer(turn.request))
    if markers:
        last = markers[-1]
        return review_score(turn.request[last.end() :], turn.request[: last.start()] + criteria)
    return review_score(turn.request, criteria)


def _reply_text(turn: _Turn) -> str:
    """Compose the deterministic text answer for a turn."""
    role = turn.role
    prefix = f"As {role}: " if role else ""
    request = turn.request.strip()
    if turn.tool_results:
        # Tool results came back this turn: state them (and what other agents said) and stop.
        short = _shorten(request, 100)
        findings = [*turn.tool_results, *((n, t) for n, t in turn.notes if n != "assistant")]
        lines = [f"{name} returned: {_shorten(text, 400) or '(empty)'}" for name, text in findings]
        lead = f'Here is what I found for "{short}". ' if short else "Here is what I found. "
        return prefix + lead + " ".join(line.rstrip(".") + "." for line in lines)
    if not request:
        return prefix + "Ready. Send a request and I will answer it."
    topic, kind = _topic(request)
    rest = request.split("\n", 1)[1] if "\n" in request else ""
    source = "\n".join(part for part in (rest, turn.earlier, *(t for _, t in turn.notes)) if part)
    source_sentences = _sentences(source, 2)
    if kind is not None:
        keywords = list(_keywords(topic).values())
        extra = [w for w in _keywords(source).values() if w.lower() not in topic.lower()]
        points = (keywords + extra)[:5]
        sentences = [f"This {kind} covers {topic}."]
        if points:
            sentences.append(f"It focuses on {_join_words(points)}.")
        if source_sentences:
            sentences.append("Drawing on the material provided: " + " ".join(source_sentences))
        if len(points) >= 2:
            sentences.append(
                f"Overall, the key takeaway on {topic} concerns {_join_words(points[:2])}."
            )
        return prefix + " ".join(sentences)
    keywords = list(_keywords(request).values())
    first_word = (_words(request)[:1] or [""])[0].lower()
    if request.rstrip().endswith("?") or first_word in _QUESTION_START:
        sentences = [f'You asked: "{_shorten(request, 160)}"']
        if keywords:
            sentences.append(f"The answer turns on {_join_words(keywords[:4])}.")
        if source_sentences:
            sentences.append("Relevant context: " + " ".join(source_sentences))
        return prefix + " ".join(sentences)
    sentences = [f"Noted: {_shorten(request, 160).rstrip('.')}."]
    if keywords:
        sentences.append(f"Key points: {_join_words(keywords[:5])}.")
    if source_sentences:
        sentences.append("Context: " + " ".join(source_sentences))
    return prefix + " ".join(sentences)
