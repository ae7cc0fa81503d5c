"""Filling a JSON schema from the conversation: tool arguments and structured output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodes.offline.text import (
    _EMAIL_RE,
    _EXPRESSION_RE,
    _FAIL_BOOL_HINTS,
    _FINISH,
    _LIST_COVERED,
    _LIST_MISSING,
    _LIST_STEPS,
    _MAX_DEPTH,
    _MAX_SCAN,
    _MAX_STRING_ARG,
    _NEGATIVE,
    _NUMBER_RE,
    _PASS_BOOL_HINTS,
    _POSITIVE,
    _SCORE_NAMES,
    _STRING_CATEGORIES,
    _URL_RE,
    _capitalise,
    _keywords,
    _name_words,
    _sentences,
    _shorten,
    _words,
)
from nodes.offline.turn import Review, _reply_text, _review_of, _topic, _Turn


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
        return self._fill_typed(schema, name, depth)

    def _fill_typed(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        """A value of the schema's type (guessed from its keys when it names none)."""
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
