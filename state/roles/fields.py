"""The parts of a role definition: names, texts, model specs and the policies graphs enforce."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from state.tool_risk import ToolRisk, needs_approval_policy

BUILTIN_PII_TYPES = ("email", "credit_card", "ip", "mac_address", "url")
"""PII types langchain's ``PIIMiddleware`` detects without a custom ``detector``."""

_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MODEL_SPEC = re.compile(r"[A-Za-z0-9_.-]+:\S+")


def _check_name(value: str) -> str:
    if not _NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name; use lower_snake_case (a-z, 0-9, _), starting "
            "with a letter, at most 64 characters"
        )
    return value


def _check_model_spec(value: str) -> str:
    if not _MODEL_SPEC.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a model spec; write 'provider:model', e.g. 'openai:gpt-4o'"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
ModelSpec = Annotated[str, Field(max_length=200), AfterValidator(_check_model_spec)]
PiiStrategy = Literal["block", "redact", "mask", "hash"]


class _Model(BaseModel):
    # Frozen because Organization indexes roles and circles once; extra="forbid" so that a
    # misspelt YAML key is an error instead of a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _Origin:
    """Where a role or circle was defined: the file and the raw YAML data with its lines."""

    def __init__(self, file: str, data: Mapping[str, Any], line: int | None) -> None:
        self.file = file
        self.data = data
        self.line = line

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """The line of the deepest YAML node along ``path`` that exists."""
        node: Any = self.data
        line = self.line
        for step in path:
            lines = getattr(node, "lines", None)
            if lines is None:
                break
            try:
                line = lines[step]
                node = node[step]
            except (KeyError, IndexError, TypeError):
                break
        return line


class Personality(_Model):
    """How a role comes across: a few traits and a tone of voice."""

    traits: tuple[ShortText, ...] = Field(default=(), max_length=20)
    tone: str = Field(default="", max_length=200)


class PiiRule(_Model):
    """How one kind of personal data is handled, in langchain ``PIIMiddleware`` terms.

    In YAML a bare strategy is enough: ``pii: {email: redact}``.
    """

    strategy: PiiStrategy = "redact"
    detector: str | None = Field(
        default=None,
        max_length=500,
        description="Regular expression for custom PII types; built-in types need none.",
    )
    apply_to_input: bool = True
    apply_to_output: bool = False
    apply_to_tool_results: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_strategy(cls, value: Any) -> Any:
        return {"strategy": value} if isinstance(value, str) else value

    @field_validator("detector")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"detector is not a valid regular expression: {exc}") from None
        return value


class ContentRules(_Model):
    """What the policy-check node refuses in a role's output."""

    banned_terms: tuple[ShortText, ...] = Field(default=(), max_length=200)
    """Terms that must not appear (matched case-insensitively)."""
    max_length: int | None = Field(default=None, ge=1, le=1_000_000)
    """Most characters in one reply."""


class CallLimits(_Model):
    """Caps on model and tool calls, as langchain's call-limit middleware counts them."""

    model_calls_per_run: int | None = Field(default=None, ge=1, le=10_000)
    tool_calls_per_run: int | None = Field(default=None, ge=1, le=10_000)


class Policies(_Model):
    """Rules the graphs enforce for a role. Data, never prompt text."""

    allowed_tools: tuple[Name, ...] = Field(default=(), max_length=100)
    """The role's grant: names of registry tools it may call. In YAML also ``tools:``."""
    approval_required: tuple[ShortText, ...] = Field(default=(), max_length=100)
    """Risk levels (``write``, ``external``) or tool names whose calls a human approves."""
    token_budget: int | None = Field(default=None, ge=1, le=100_000_000)
    """Most tokens (input + output) the role may spend in one run."""
    handoff_circles: tuple[Name, ...] = Field(default=(), max_length=100)
    """Circles (with their sub-circles) whose roles this role may hand work off to."""
    pii: dict[str, PiiRule] = Field(default_factory=dict, max_length=50)
    """PII type -> rule, e.g. ``{"email": PiiRule(strategy="redact")}``."""
    content: ContentRules = ContentRules()
    limits: CallLimits = CallLimits()

    @field_validator("pii")
    @classmethod
    def _pii_names(cls, value: dict[str, PiiRule]) -> dict[str, PiiRule]:
        for key in value:
            _check_name(key)
        return value

    @property
    def approval_risks(self) -> frozenset[ToolRisk]:
        """The risk levels listed in ``approval_required``."""
        levels = {risk.value for risk in ToolRisk}
        return frozenset(ToolRisk(entry) for entry in self.approval_required if entry in levels)

    @property
    def approval_tools(self) -> frozenset[str]:
        """The tool names listed in ``approval_required``."""
        levels = {risk.value for risk in ToolRisk}
        return frozenset(entry for entry in self.approval_required if entry not in levels)

    def requires_approval(self, tool_name: str, risk: ToolRisk | str) -> bool:
        """Whether a call of ``tool_name`` (of ``risk``) must wait for a human decision."""
        return ToolRisk(risk) in self.approval_risks or tool_name in self.approval_tools

    def lacks_approval(self, tool_name: str, risk: ToolRisk | str) -> bool:
        """Whether granting ``tool_name`` (of ``risk``) breaks the approval rule.

        True when the risk needs an approval policy (:func:`state.tool_risk.needs_approval_policy`)
        and these policies do not gate the tool. Loading an organisation and building a role
        agent both refuse such a grant through this one method.
        """
        return needs_approval_policy(risk) and not self.requires_approval(tool_name, risk)


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return (" Did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""
