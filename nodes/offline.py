"""The deterministic offline chat model: every graph runs with no key and no network.

:class:`OfflineChatModel` is a product feature, not a test double. It reads the conversation,
decides with fixed rules whether to call one of the bound tools, and otherwise writes a short
reply assembled from the words it was given. The same messages and tools always give the same
answer; nothing depends on randomness or the clock.

Rules, in the order they apply:

* **Tool calls.** With tools bound, the request (the last human message) is scored against
  each tool: shared keywords with the tool's name count double, with its description once
  (stop words ignored, words reduced to a short stem so "research" meets "researcher"). An
  arithmetic expression in the request favours tools with an ``expression``-like argument, a
  URL favours tools with a ``url``-like argument. Handoff tools (``transfer_to_<role>``) are
  scored the same way, which is how a supervisor routes by role description. The best tool
  above zero is called once per human turn; after its result comes back the model answers in
  text, so agent loops end. ``tool_choice="any"`` forces a call (preferring tools not yet
  called this turn) and ``tool_choice=<name>`` forces that tool.
* **Arguments** are built from the tool's JSON schema: see :class:`_SchemaFiller`.
* **Structured output** (``with_structured_output`` by function calling or JSON schema) fills
  the schema with the same rules. Review-like fields (a float in [0, 1] or named ``score``,
  booleans named like ``approved``/``passed``, verdict enums) come from :func:`review_score`.
* **Text replies** address the request, start with "As <Role>:" when the system prompt names
  a role, and after tool calls state the tool results.

Every reply carries estimated ``usage_metadata`` (about four characters per token) and
``response_metadata`` marking it as the offline model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import ToolCall, tool_call, tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

__all__ = ["MODEL_NAME", "PASS_THRESHOLD", "PROVIDER", "OfflineChatModel", "Review", "review_score"]

MODEL_NAME = "staffgraph-offline"
"""Model name reported in metadata, traces and ``/info``."""

PROVIDER = "offline"
"""Provider name reported in metadata and traces."""

PASS_THRESHOLD = 0.6
"""Review score at or above which pass/approve booleans and verdicts come out positive."""

# Input bounds: the model reads at most this much of any one message (head and tail), only the
# latest messages, and only the first tools, so its cost stays linear and small on huge inputs.
_MAX_READ = 16_000
_TAIL_READ = 4_000
_MAX_MESSAGES = 64
_MAX_TOOLS = 128
_MAX_DESCRIPTION = 2_000
_MAX_STRING_ARG = 4_000
_MAX_DEPTH = 8
_MAX_KEYWORDS = 40
# Words per draft below which a review loses points for length.
_ADEQUATE_WORDS = 30

_STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can cannot could did do does doing done down during each
    either else etc ever every few for from further get gets give given got had has have having
    he her here hers herself him himself his how i if in into is it its itself just let lets
    like make me more most much must my myself need needs no nor not now of off on once only
    or other our ours ourselves out over own please quite rather really said same say says
    shall she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up upon us use used using very want was we
    were what when where which while who whom whose why will with within without would yes
    yet you your yours yourself yourselves tell show let's i'm it's okay ok thanks thank hi
    hello hey kindly
    tool tools transfer transfers handoff agent agents assistant call calls help ask asks
    function functions
    """.split()
)

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_URL_RE = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# An arithmetic expression: numbers joined by at least one operator, optional parentheses.
# Possessive quantifiers keep a long run of digits from backtracking at every start position.
_EXPRESSION_RE = re.compile(
    r"\(*+-?\d++(?:\.\d++)?\)*+(?:[ \t]*+(?:\*\*|[-+*/%^x×÷])[ \t]*+\(*+-?\d++(?:\.\d++)?\)*+)+"
)
# Regex searches that could rescan from many start positions only see this much of a request.
_MAX_SCAN = 4_000
_REVIEW_MARKER_RE = re.compile(
    r"(?im)^[ \t>#*]*(?:output|draft|answer|response|submission|candidate|text to review)"
    r"[ \t*]*:"
)
_CRITERION_LINE_RE = re.compile(
    r"(?im)^[ \t>#*-]*(?:criterion|criteria|rubric|requirements?|task|goal)[ \t*]*:(.*)$"
)
_ROLE_RES = (
    re.compile(r"(?im)^[ \t#*]*role[ \t*]*:[ \t]*([^\n,.;]{1,40})"),
    re.compile(
        r"(?i)\byou are (?:the |an |a )?([A-Za-z][\w-]*(?: [A-Z][\w-]*){0,2})"
        r"(?=[\s,.;:!]|$)"
    ),
)
_WRITE_INTENT_RE = re.compile(
    r"(?i)^\s*(?:please\s+)?(?:(?:can|could|would) you\s+)?"
    r"(draft|write|compose|create|prepare|produce|summari[sz]e|outline|explain|describe|"
    r"report|review|plan|list|give)\b\s*(?:me\s+|us\s+)?(?:(?:a|an|the|some)\s+)?"
    r"(?:(?:short|brief|concise|quick|detailed|one-paragraph)\s+)?"
    r"(summary|report|overview|draft|note|email|post|article|paragraph|plan|list|brief|memo|"
    r"outline|description|explanation|review|proposal|update)?\s*"
    r"(?:(?:of|about|on|for|covering|regarding)\s+)?"
)
_QUESTION_START = frozenset(
    "what how why who when where which is are can could should do does did will would".split()
)
# Words that frame a task rather than name what the answer must contain; a review ignores them
# when it collects the reference's keywords.
_INSTRUCTION_WORDS = frozenset(
    """
    task criterion criteria rubric goal requirement requirements write draft compose create
    produce summarize summarise explain describe review output answer response check ensure
    make sure should must mention mentions include includes cover covers about short brief
    """.split()
)
_STRING_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("expression", ("expression", "expr", "formula", "equation", "calculation", "math")),
    ("url", ("url", "uri", "link", "href", "website", "webpage")),
    ("email", ("email", "recipient", "to")),
    (
        "feedback",
        tuple(
            "feedback critique reason rationale justification explanation comment notes "
            "analysis assessment evaluation".split()
        ),
    ),
    ("title", ("title", "heading", "headline", "label", "name", "subject")),
    (
        "request",
        tuple(
            "query q search question task text content input request prompt message topic "
            "instructions instruction description goal keywords term terms body".split()
        ),
    ),
)
_POSITIVE = frozenset(
    "approve approved accept accepted pass passed yes good done complete ok okay valid "
    "correct success sufficient ready true publish ship lgtm".split()
)
_NEGATIVE = frozenset(
    "revise revision reject rejected fail failed no bad retry redo improve incomplete invalid "
    "incorrect insufficient rewrite false needs_work changes".split()
)
_FINISH = frozenset("finish finished end __end__ done stop complete none respond".split())
_PASS_BOOL_HINTS = tuple(
    "pass approv accept ok valid success done complete satisf good correct sufficient meets "
    "ready acceptable".split()
)
_FAIL_BOOL_HINTS = ("revis", "reject", "fail", "retry", "redo", "rewrite", "needs")
_SCORE_NAMES = ("score", "confidence", "rating", "grade", "quality", "probability")
_LIST_MISSING = tuple(
    "missing issue gap problem improvement suggestion weakness todo fix change concern "
    "revision".split()
)
_LIST_COVERED = tuple("strength covered keyword tag topic point term entity highlight".split())
_LIST_STEPS = ("step", "task", "subtask", "plan", "action", "query", "queries", "question")


# --------------------------------------------------------------------------------- text basics


def _clip(text: str, limit: int = _MAX_READ) -> str:
    """Keep the head and tail of very long text so every pass over it stays bounded."""
    if len(text) <= limit:
        return text
    return text[: limit - _TAIL_READ] + "\n…\n" + text[-_TAIL_READ:]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return _clip(content)
    if isinstance(content, list):
        parts: list[str] = []
        size = 0
        for block in content:
            if isinstance(block, str):
                piece = block
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                piece = block["text"]
            else:
                continue
            parts.append(piece[:_MAX_READ])
            size += len(parts[-1])
            if size > _MAX_READ:
                break
        return _clip("\n".join(parts))
    return ""


def _content_size(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for block in content:
            if isinstance(block, str):
                total += len(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                total += len(block["text"])
        return total
    return 0


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


# Longest first: the first suffix that leaves a stem of three letters or more is removed.
_SUFFIXES = tuple(
    "ations ation ments ment izing ising ized ised izer iser ize ise ings ing ers er ies ied "
    "ed es ly s e y".split()
)


def _stem(word: str) -> str:
    """Reduce a word to a short stem: crude, but it lets "summary" meet "summarize"."""
    w = word.lower()
    if w.isdigit():
        return w
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    return w[:6]


def _keywords(text: str) -> dict[str, str]:
    """Content words of ``text``: stem -> first original spelling, in order of appearance."""
    found: dict[str, str] = {}
    for word in _words(text):
        lower = word.lower()
        if lower in _STOP_WORDS or (len(lower) < 3 and not lower.isdigit()):
            continue
        found.setdefault(_stem(lower), word)
    return found


def _name_words(name: str) -> str:
    return _CAMEL_RE.sub(" ", name).replace("_", " ").replace("-", " ")


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def _sentences(text: str, limit: int) -> list[str]:
    found = []
    for raw in re.split(r"(?<=[.!?])\s+|\n+", text):
        sentence = _shorten(raw.strip(" -*#\t…"), 240)
        if len(_words(sentence)) >= 3 and sentence not in found:
            found.append(sentence)
        if len(found) >= limit:
            break
    return found


def _join_words(items: Sequence[str]) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


# ----------------------------------------------------------------------------- conversation


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


# --------------------------------------------------------------------------------- reviewing


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


# ---------------------------------------------------------------------------- text replies


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


# ------------------------------------------------------------------------ schema filling


@dataclass
class _SchemaFiller:
    """Build a value for a JSON schema from the conversation, deterministically.

    Strings by field name: ``expression``-like → the arithmetic expression in the request;
    ``url``-like → the URL in the request; ``query``/``task``/``text``/``content``-like → the
    request text; ``feedback``/``reason``-like → the review line; ``title``-like → the topic;
    anything else → the request text (tool arguments) or the composed reply (structured
    output). Enums pick the best-matching option. Numbers: a score-like field (named like
    ``score`` or bounded to [0, 1]) gets the review score scaled to its bounds; others the
    schema default, else the numbers in the request in order, else the minimum or 0. Booleans
    named like pass/approve get ``score >= PASS_THRESHOLD``. Arrays get 1-3 items. Objects
    fill required fields (tool arguments) or every field (structured output).
    """

    turn: _Turn
    structured: bool
    defs: dict[str, Any] = field(default_factory=dict)
    _numbers: list[float] = field(default_factory=list)
    _review: Review | None = None
    _reply: str | None = None

    def __post_init__(self) -> None:
        self._numbers = [float(n) for n in _NUMBER_RE.findall(self.turn.request)[:32]]

    @property
    def review(self) -> Review:
        if self._review is None:
            self._review = _review_of(self.turn)
        return self._review

    @property
    def reply(self) -> str:
        if self._reply is None:
            self._reply = _reply_text(self.turn)
        return self._reply

    def fill(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        schema = self._resolve(schema)
        if depth > _MAX_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._enum(schema["enum"], name)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                options = [self._resolve(o) for o in schema[key]]
                usable = [o for o in options if o.get("type") != "null"]
                return self.fill(usable[0], name, depth + 1) if usable else None
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part))
            return self.fill(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind is None:
            kind = (
                "object" if "properties" in schema else "array" if "items" in schema else "string"
            )
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind in ("number", "integer"):
            return self._number(schema, name, integer=kind == "integer")
        if kind == "boolean":
            return self._boolean(schema, name)
        if kind == "null":
            return None
        return self._string(schema, name)

    def _resolve(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 16:
            ref = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.defs.get(ref, {})
            seen += 1
        return schema if isinstance(schema, dict) else {}

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        required = set(schema.get("required") or ())
        result: dict[str, Any] = {}
        for key, sub in list(props.items())[:64]:
            if key in required or self.structured or self._has_specific_value(key):
                result[key] = self.fill(sub, key, depth + 1)
        return result

    def _has_specific_value(self, name: str) -> bool:
        category = _string_category(name)
        if category == "expression":
            return _find_expression(self.turn.request) is not None
        if category == "url":
            return _URL_RE.search(self.turn.request[:_MAX_SCAN]) is not None
        return False

    def _string(self, schema: dict[str, Any], name: str) -> str:
        request = _shorten(self.turn.request, _MAX_STRING_ARG) if self.turn.request else ""
        category = _string_category(name)
        value: str | None = None
        if category == "expression":
            value = _find_expression(self.turn.request)
        elif category == "url":
            match = _URL_RE.search(self.turn.request[:_MAX_SCAN])
            value = match.group(0).rstrip(".,;:") if match else None
        elif category == "email":
            value = _find_email(self.turn.request)
        elif category == "feedback" and self.structured:
            value = self.review.describe()
        elif category == "title":
            topic, _ = _topic(self.turn.request)
            value = _capitalise(_shorten(topic, 80)) if topic else None
        elif category == "request":
            value = request
        if value is None:
            value = self.reply if self.structured else request
        value = value or name or "n/a"
        min_len = schema.get("minLength")
        max_len = schema.get("maxLength")
        if isinstance(max_len, int) and len(value) > max_len:
            value = value[:max_len]
        if isinstance(min_len, int) and len(value) < min_len:
            value = value.ljust(min(min_len, _MAX_STRING_ARG), ".")
        return value

    def _enum(self, options: list[Any], name: str) -> Any:
        labels = [str(o).lower() for o in options]
        finish = [i for i, label in enumerate(labels) if label in _FINISH]
        if finish:
            return options[self._route(labels, finish)]
        positive = [i for i, label in enumerate(labels) if label in _POSITIVE]
        negative = [i for i, label in enumerate(labels) if label in _NEGATIVE]
        if positive and negative:
            return options[positive[0] if self.review.passed else negative[0]]
        wanted = set(_keywords(self.turn.request + " " + name))
        best, best_score = 0, 0
        for i, label in enumerate(labels):
            score = len(wanted & set(_keywords(_name_words(label))))
            if score > best_score:
                best, best_score = i, score
        return options[best]

    def _route(self, labels: list[str], finish: list[int]) -> int:
        """Pick the next worker for a router enum, or the finish option once work is done."""
        wanted = set(_keywords(self.turn.request))
        candidates = [
            i
            for i, label in enumerate(labels)
            if i not in finish and label not in self.turn.answered_by
        ]
        best, best_score = -1, 0
        for i in candidates:
            score = len(wanted & set(_keywords(_name_words(labels[i]))))
            if score > best_score:
                best, best_score = i, score
        if best >= 0:
            return best
        if self.turn.answered_by or not candidates:
            return finish[0]
        return candidates[0]

    def _number(self, schema: dict[str, Any], name: str, *, integer: bool) -> float | int:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        lowered = name.lower()
        score_like = any(hint in lowered for hint in _SCORE_NAMES) or (
            low == 0 and high == 1 and not integer
        )
        value: float
        if score_like:
            lo = float(low) if isinstance(low, int | float) else 0.0
            hi = float(high) if isinstance(high, int | float) else (10.0 if integer else 1.0)
            value = lo + self.review.score * (hi - lo)
        elif isinstance(schema.get("default"), int | float):
            value = float(schema["default"])
        elif self._numbers:
            value = self._numbers.pop(0)
        else:
            value = float(low) if isinstance(low, int | float) else 0.0
        if "exclusiveMinimum" in schema and isinstance(low, int | float) and value <= low:
            value = low + (1 if integer else 1e-6)
        if "exclusiveMaximum" in schema and isinstance(high, int | float) and value >= high:
            value = high - (1 if integer else 1e-6)
        if isinstance(low, int | float):
            value = max(value, float(low))
        if isinstance(high, int | float):
            value = min(value, float(high))
        return int(round(value)) if integer else round(value, 3)

    def _boolean(self, schema: dict[str, Any], name: str) -> bool:
        lowered = name.lower()
        if any(hint in lowered for hint in _FAIL_BOOL_HINTS):
            return not self.review.passed
        if any(hint in lowered for hint in _PASS_BOOL_HINTS):
            return self.review.passed
        default = schema.get("default")
        return default if isinstance(default, bool) else False

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        items = self._resolve(schema.get("items", {"type": "string"}))
        if items.get("type", "string") == "string" and "enum" not in items:
            pool = self._string_items(name.lower())
        else:
            pool = [self.fill(items, name, depth + 1)]
        low = schema.get("minItems")
        high = schema.get("maxItems")
        count = max(min(3, len(pool)), 1)
        if isinstance(low, int):
            count = max(count, min(low, 10))
        if isinstance(high, int):
            count = min(count, high)
        return [pool[i % len(pool)] for i in range(count)] if pool else []

    def _string_items(self, name: str) -> list[str]:
        keywords = list(_keywords(self.turn.request).values())
        if any(hint in name for hint in _LIST_MISSING):
            missing = [f"Cover {word}" for word in self.review.missing[:3]]
            return missing or ["No major gaps found"]
        if any(hint in name for hint in _LIST_COVERED):
            topic, _ = _topic(self.turn.request)
            return list(_keywords(topic).values())[:3] or keywords[:3] or [topic or "general"]
        if any(hint in name for hint in _LIST_STEPS):
            topic, _ = _topic(self.turn.request)
            base = topic or self.turn.request[:80] or "the request"
            return [f"{base}"] + [f"{base}: {word}" for word in keywords[:2]]
        sentences = _sentences(self.reply, 3)
        return sentences or [self.reply]


def _string_category(name: str) -> str | None:
    lowered = name.lower()
    parts = set(_words(_name_words(name).lower()))
    for category, hints in _STRING_CATEGORIES:
        for hint in hints:
            if hint == lowered or hint in parts or (len(hint) > 4 and hint in lowered):
                return category
    return None


def _find_email(text: str) -> str | None:
    # Only tokens holding "@" are tried, so the pattern never rescans long runs of text.
    for token in text[:_MAX_SCAN].split():
        if "@" in token:
            match = _EMAIL_RE.fullmatch(token.strip("<>()[],;:.\"'"))
            if match:
                return match.group(0)
    return None


def _find_expression(text: str) -> str | None:
    for match in _EXPRESSION_RE.finditer(text[:_MAX_SCAN]):
        candidate = " ".join(match.group(0).split())
        if any(op in candidate for op in "+-*/%^x×÷") and len(_NUMBER_RE.findall(candidate)) > 1:
            return candidate.strip()
    return None


# ------------------------------------------------------------------------------- tool choice


@dataclass(frozen=True)
class _ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_openai(cls, tool: dict[str, Any]) -> _ToolSpec | None:
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None
        params = function.get("parameters")
        return cls(
            name=function["name"],
            description=str(function.get("description") or "")[:_MAX_DESCRIPTION],
            parameters=params if isinstance(params, dict) else {},
        )

    def score(self, request: str, wanted: set[str]) -> int:
        name_stems = set(_keywords(_name_words(self.name)))
        desc_stems = set(_keywords(self.description)) - name_stems
        total = 2 * len(wanted & name_stems) + len(wanted & desc_stems)
        props = self.parameters.get("properties")
        fields = list(props) if isinstance(props, dict) else []
        categories = {_string_category(f) for f in fields}
        mathy = "expression" in categories or bool(
            name_stems & {"calcul", "arithm", "math", "comput"}
        )
        if mathy and _find_expression(request) is not None:
            total += 3
        if "url" in categories and _URL_RE.search(request[:_MAX_SCAN]):
            total += 3
        return total


def _normalise_tool_choice(tool_choice: Any) -> tuple[str, str | None]:
    """Return (mode, name): mode is "auto", "none", "any" or "named"."""
    if tool_choice is None or tool_choice == "auto" or tool_choice is False:
        return "auto", None
    if tool_choice is True or tool_choice in ("any", "required"):
        return "any", None
    if tool_choice == "none":
        return "none", None
    if isinstance(tool_choice, str):
        return "named", tool_choice
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else tool_choice.get("name")
        if isinstance(name, str):
            return "named", name
        if tool_choice.get("type") in ("any", "required"):
            return "any", None
    raise ValueError(
        f"Unsupported tool_choice {tool_choice!r}; use 'auto', 'any', 'none' or a tool name"
    )


def _choose_tool(turn: _Turn, tools: list[_ToolSpec], tool_choice: Any) -> _ToolSpec | None:
    mode, forced = _normalise_tool_choice(tool_choice)
    if not tools or mode == "none":
        return None
    if mode == "named":
        for spec in tools:
            if spec.name == forced:
                return spec
        names = ", ".join(spec.name for spec in tools)
        raise ValueError(f"tool_choice names `{forced}` but the bound tools are: {names}")
    wanted = set(_keywords(turn.request))
    scored = [(spec.score(turn.request, wanted), -i, spec) for i, spec in enumerate(tools)]
    if mode == "any":
        fresh = [entry for entry in scored if entry[2].name not in turn.called]
        if turn.tool_results and fresh:
            fitting = [entry for entry in fresh if entry[0] > 0]
            if fitting:
                return max(fitting, key=itemgetter(0, 1))[2]
            # Forced again after tool work and nothing else fits: take the last tool bound.
            # create_agent appends its structured-response tool last, so this hands in the
            # final answer instead of running every remaining tool.
            return fresh[-1][2]
        return max(fresh or scored, key=itemgetter(0, 1))[2]
    if any(spec.name in turn.called for spec in tools):
        return None
    best = max(scored, key=itemgetter(0, 1))
    return best[2] if best[0] > 0 else None


# ------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class _Plan:
    text: str
    calls: list[ToolCall]


def _response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a ``response_format`` call argument asks the reply to follow."""
    if isinstance(response_format, type):
        parameters: dict[str, Any] = convert_to_openai_tool(response_format)["function"][
            "parameters"
        ]
        return parameters
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            return spec["schema"]
    return None


def _usage(input_chars: int, output_chars: int) -> UsageMetadata:
    input_tokens = max(1, -(-input_chars // 4))
    output_tokens = max(1, -(-output_chars // 4))
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _input_chars(messages: Sequence[BaseMessage]) -> int:
    total = 0
    for message in messages:
        total += _content_size(message.content)
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += len(call["name"]) + len(json.dumps(call["args"], default=str))
    return total


class OfflineChatModel(BaseChatModel):
    """Deterministic built-in chat model: tool calls, streaming and structured output offline.

    Use it wherever a chat model goes (``create_agent(model=OfflineChatModel(), ...)``). See
    the module docstring for the rules it follows.
    """

    model_name: ClassVar[str] = MODEL_NAME

    @property
    def _llm_type(self) -> str:
        return MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL_NAME, "provider": PROVIDER}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=PROVIDER, ls_model_name=MODEL_NAME, ls_model_type="chat", ls_temperature=0
        )
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (converted to OpenAI tool dicts) and an optional ``tool_choice``.

        Args:
            tools: tools, functions, pydantic models or OpenAI tool dicts.
            tool_choice: ``"auto"`` (default), ``"any"``/``"required"``, ``"none"`` or a
                tool name that must be called.
            **kwargs: further call arguments (``response_format``, ``strict``, ...).

        Returns:
            The model with the tools bound.
        """
        converted = [convert_to_openai_tool(tool) for tool in tools]
        mode, name = _normalise_tool_choice(tool_choice)
        known = {t.get("function", {}).get("name") for t in converted}
        if mode == "named" and name not in known:
            raise ValueError(
                f"tool_choice names `{name}` but the bound tools are: "
                + ", ".join(str(n) for n in known)
            )
        return super().bind(tools=converted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Return a runnable whose output fills ``schema`` (pydantic, TypedDict or JSON schema).

        Args:
            schema: the output schema.
            include_raw: return ``{"raw", "parsed", "parsing_error"}`` instead.
            method: ``"function_calling"`` (a forced tool call) or ``"json_schema"`` /
                ``"json_mode"`` (JSON text content).
            strict: accepted for compatibility; the offline model always follows the schema.
            **kwargs: rejected.

        Returns:
            A runnable producing a pydantic instance (pydantic schema) or a dict.
        """
        del strict
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw)
        if method not in ("json_schema", "json_mode"):
            raise ValueError(
                f"Unsupported method {method!r}; use function_calling, json_schema or json_mode"
            )
        function = convert_to_openai_tool(schema)["function"]
        llm = self.bind(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": function["name"], "schema": function["parameters"]},
            },
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
        )
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            parser = PydanticOutputParser(pydantic_object=schema)
        else:
            parser = JsonOutputParser()
        if include_raw:
            parse = RunnablePassthrough.assign(
                parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
            )
            fallback = RunnablePassthrough.assign(parsed=lambda _: None)
            return RunnableMap(raw=llm) | parse.with_fallbacks(
                [fallback], exception_key="parsing_error"
            )
        return llm | parser

    # -- generation ---------------------------------------------------------------------

    def _plan(
        self, messages: list[BaseMessage], *, stop: list[str] | None = None, **kwargs: Any
    ) -> _Plan:
        turn = _Turn.read(messages)
        tools = [
            spec
            for spec in (
                _ToolSpec.from_openai(t)
                for t in (kwargs.get("tools") or [])[:_MAX_TOOLS]
                if isinstance(t, dict)
            )
            if spec is not None
        ]
        chosen = _choose_tool(turn, tools, kwargs.get("tool_choice"))
        if chosen is not None:
            defs = chosen.parameters.get("$defs") or chosen.parameters.get("definitions") or {}
            # A forced call of a lone tool is structured output: fill every field and write
            # prose into free-text fields instead of echoing the request.
            mode, _ = _normalise_tool_choice(kwargs.get("tool_choice"))
            # The same holds for a forced call once tool results are in: that is an agent
            # handing in its final structured response.
            structured = mode == "named" or (
                mode == "any" and (len(tools) == 1 or bool(turn.tool_results))
            )
            filler = _SchemaFiller(turn=turn, structured=structured, defs=dict(defs))
            args = filler.fill(chosen.parameters or {"type": "object", "properties": {}})
            if not isinstance(args, dict):
                args = {}
            call_id = "call_" + _digest(
                chosen.name,
                str(len(messages)),
                *(f"{m.type}:{_content_text(m.content)[:2000]}" for m in messages[-_MAX_MESSAGES:]),
            )
            return _Plan(text="", calls=[tool_call(name=chosen.name, args=args, id=call_id)])
        schema = _response_schema(kwargs.get("response_format"))
        if schema is not None:
            defs = schema.get("$defs") or schema.get("definitions") or {}
            filler = _SchemaFiller(turn=turn, structured=True, defs=dict(defs))
            return _Plan(text=json.dumps(filler.fill(schema), ensure_ascii=False), calls=[])
        text = _reply_text(turn)
        # Honour stop sequences the way hosted models do: the reply ends before the first one.
        cuts = [text.find(marker) for marker in stop or () if marker and marker in text]
        return _Plan(text=text[: min(cuts)] if cuts else text, calls=[])

    @staticmethod
    def _metadata() -> dict[str, Any]:
        return {
            "model_provider": PROVIDER,
            "model_name": MODEL_NAME,
            "offline": True,
            "usage_is_estimate": True,
            "finish_reason": "stop",
        }

    def _message(self, messages: list[BaseMessage], plan: _Plan) -> AIMessage:
        output_chars = len(plan.text) + sum(
            len(c["name"]) + len(json.dumps(c["args"], ensure_ascii=False)) for c in plan.calls
        )
        metadata = self._metadata()
        if plan.calls:
            metadata["finish_reason"] = "tool_calls"
        return AIMessage(
            content=plan.text,
            tool_calls=plan.calls,
            usage_metadata=_usage(_input_chars(messages), output_chars),
            response_metadata=metadata,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self._message(messages, self._plan(messages, stop=stop, **kwargs))
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": MODEL_NAME, "model_provider": PROVIDER},
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Pure CPU work on bounded input: no reason to hop to a thread.
        return self._generate(messages, stop=stop, **kwargs)

    def _chunks(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        message = self._message(messages, self._plan(messages, stop=stop, **kwargs))
        text = message.content if isinstance(message.content, str) else ""
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        for index, call in enumerate(message.tool_calls):
            args = json.dumps(call["args"], ensure_ascii=False)
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        tool_call_chunk(name=call["name"], args="", id=call["id"], index=index)
                    ],
                )
            )
            for start in range(0, len(args), 24):
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            tool_call_chunk(args=args[start : start + 24], index=index)
                        ],
                    )
                )
        # Usage and metadata ride on the last chunk only: chunk addition sums usage and would
        # concatenate repeated string metadata.
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                response_metadata=dict(message.response_metadata),
                chunk_position="last",
            )
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(messages, stop, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages, stop, **kwargs):
            yield chunk
