"""Names, bounds and word lists of the offline model, and the text helpers its rules share."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

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
