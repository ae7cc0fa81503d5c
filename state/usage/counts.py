"""Token usage of a run, attributed to nodes, roles and models: the counts.

Every LangChain chat model reports ``usage_metadata`` (input, output and total tokens) on its
reply. :class:`UsageCallbackHandler`, attached to a graph run's ``callbacks``, adds up every
model call of the run; :func:`usage_from_messages` computes the same numbers from the AI
messages in a state, which is what the budget guard inside a graph can see.

Attribution of one model call:

* **node**: the path of graph nodes that made the call, outermost first, joined by ``/``
  (``researcher/model`` for the ``model`` node of a role agent that runs as the
  ``researcher`` node of a supervisor graph). Read from LangGraph's
  ``langgraph_checkpoint_ns`` metadata, else ``langgraph_node``.
* **role**: ``metadata[ROLE_METADATA_KEY]`` (role agents set it in their config metadata),
  else ``lc_agent_name`` (what ``langchain.agents.create_agent(name=...)`` sets), else
  :data:`UNATTRIBUTED`.
* **model**: the model name the provider reported (``response_metadata["model_name"]``),
  else the one LangChain traced (``ls_model_name``).

The offline model's counts are estimates (``response_metadata["usage_is_estimate"]``); they
stay marked as such through every sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage

__all__ = [
    "AGENT_NAME_METADATA_KEY",
    "ROLE_METADATA_KEY",
    "UNATTRIBUTED",
    "RunUsage",
    "TokenCount",
    "UsageKey",
    "UsagePricing",
    "usage_from_messages",
]

ROLE_METADATA_KEY = "staffgraph_role"
"""Config metadata key naming the role (agent) a model call works for.

A role agent sets it on the runnable it builds, e.g.
``agent.with_config(metadata={ROLE_METADATA_KEY: role.name})``; LangChain passes config
metadata down to every model call inside, and LangSmith shows it on each span.
"""

AGENT_NAME_METADATA_KEY = "lc_agent_name"
"""Metadata key ``langchain.agents.create_agent`` sets to the agent's ``name``."""

UNATTRIBUTED = "unattributed"
"""Node, role or model of a call that carried no such information."""

USAGE_FORMAT_VERSION = 1

# Bounds: labels come from graph and role names and provider replies, usage JSON comes back
# from the database; neither may grow a run's usage or a parse without limit.
_MAX_ENTRIES = 512
_MAX_LABEL = 128
_MAX_TOKENS = 10**15
_OTHER = "other"


def _label(value: object) -> str:
    """A bounded, printable label; empty or missing values become :data:`UNATTRIBUTED`."""
    if not isinstance(value, str) or not value.strip():
        return UNATTRIBUTED
    text = "".join(ch for ch in value.strip() if ch.isprintable())
    return text[:_MAX_LABEL] or UNATTRIBUTED


def _count(value: object) -> int:
    """A token count from untrusted input: a non-negative int, capped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value or value <= 0:  # NaN or negative
        return 0
    return min(int(value), _MAX_TOKENS)


class UsagePricing(Protocol):
    """Prices a usage's JSON: what :meth:`RunUsage.to_dict` needs from a price table.

    ``state.usage.pricing.PriceTable`` implements it; the usage counts never import prices.
    """

    def add_costs(self, usage: RunUsage, data: dict[str, Any]) -> None:
        """Add ``cost_usd`` and friends to ``data``, the JSON of ``usage``, in place."""
        ...


@dataclass(slots=True)
class TokenCount:
    """Tokens and calls summed over some model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0
    estimated_calls: int = 0
    """How many of the calls reported estimated (not provider-counted) tokens."""

    @property
    def estimated(self) -> bool:
        """Whether any of the numbers is an estimate."""
        return self.estimated_calls > 0

    def add(self, other: TokenCount) -> None:
        """Add ``other`` into this count in place."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.total_tokens += other.total_tokens
        self.calls += other.calls
        self.estimated_calls += other.estimated_calls

    def __add__(self, other: TokenCount) -> TokenCount:
        total = TokenCount()
        total.add(self)
        total.add(other)
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers, with ``estimated`` as a boolean."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
            "estimated_calls": self.estimated_calls,
            "estimated": self.estimated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenCount:
        """Read what :meth:`to_dict` wrote; bad or missing numbers count as 0."""
        calls = _count(data.get("calls"))
        estimated_calls = _count(data.get("estimated_calls"))
        if not estimated_calls and data.get("estimated") is True:
            estimated_calls = calls
        return cls(
            input_tokens=_count(data.get("input_tokens")),
            output_tokens=_count(data.get("output_tokens")),
            total_tokens=_count(data.get("total_tokens")),
            calls=calls,
            estimated_calls=min(estimated_calls, calls),
        )


@dataclass(frozen=True, slots=True)
class UsageKey:
    """Where a share of the tokens went: node path, role and model."""

    node: str
    role: str
    model: str


class RunUsage:
    """Token usage of one run (or a sum of runs), by node, role and model.

    Stored as the ``usage`` JSON of a run row (:meth:`to_dict` / :meth:`from_dict`); summed
    per assistant or user with :meth:`merge` or :meth:`sum`.
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[UsageKey, TokenCount] | None = None) -> None:
        self._entries: dict[UsageKey, TokenCount] = {}
        for key, count in (entries or {}).items():
            self._add(key, count)

    # -- building -------------------------------------------------------------------------

    def _add(self, key: UsageKey, count: TokenCount) -> None:
        if key not in self._entries and len(self._entries) >= _MAX_ENTRIES:
            # Past the bound, further distinct combinations share one bucket, so totals stay
            # right while the breakdown stops growing.
            key = UsageKey(node=_OTHER, role=_OTHER, model=_OTHER)
        slot = self._entries.get(key)
        if slot is None:
            slot = self._entries[key] = TokenCount()
        slot.add(count)

    def add_call(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        total_tokens: int | None = None,
        node: str | None = None,
        role: str | None = None,
        model: str | None = None,
        estimated: bool = False,
    ) -> None:
        """Count one model call.

        Args:
            input_tokens: prompt tokens.
            output_tokens: completion tokens.
            total_tokens: as reported; input + output when not given.
            node: node path that made the call.
            role: role the call worked for.
            model: model name.
            estimated: whether the numbers are estimates.
        """
        inp, out = _count(input_tokens), _count(output_tokens)
        total = _count(total_tokens) if total_tokens is not None else inp + out
        self._add(
            UsageKey(node=_label(node), role=_label(role), model=_label(model)),
            TokenCount(
                input_tokens=inp,
                output_tokens=out,
                total_tokens=total,
                calls=1,
                estimated_calls=1 if estimated else 0,
            ),
        )

    def merge(self, other: RunUsage) -> RunUsage:
        """A new usage holding this one plus ``other``."""
        merged = RunUsage(self._entries)
        for key, count in other._entries.items():
            merged._add(key, count)
        return merged

    @classmethod
    def sum(cls, usages: Iterable[RunUsage]) -> RunUsage:
        """Add up many usages (e.g. every run of one assistant or one user)."""
        total = cls()
        for usage in usages:
            for key, count in usage._entries.items():
                total._add(key, count)
        return total

    # -- reading --------------------------------------------------------------------------

    @property
    def entries(self) -> Mapping[UsageKey, TokenCount]:
        """Counts per (node, role, model)."""
        return self._entries

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunUsage) and self._entries == other._entries

    def __repr__(self) -> str:
        t = self.total
        return f"RunUsage(total_tokens={t.total_tokens}, calls={t.calls}, entries={len(self)})"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total(self) -> TokenCount:
        """Everything summed."""
        total = TokenCount()
        for count in self._entries.values():
            total.add(count)
        return total

    def _group(self, field: str) -> dict[str, TokenCount]:
        groups: dict[str, TokenCount] = {}
        for key, count in self._entries.items():
            name = getattr(key, field)
            slot = groups.get(name)
            if slot is None:
                slot = groups[name] = TokenCount()
            slot.add(count)
        return dict(sorted(groups.items()))

    def by_node(self) -> dict[str, TokenCount]:
        """Counts per node path."""
        return self._group("node")

    def by_role(self) -> dict[str, TokenCount]:
        """Counts per role."""
        return self._group("role")

    def by_model(self) -> dict[str, TokenCount]:
        """Counts per model."""
        return self._group("model")

    def tokens_by_role(self) -> dict[str, int]:
        """Total tokens per role: the shape ``nodes.budget`` compares with role budgets."""
        return {role: count.total_tokens for role, count in self.by_role().items()}

    # -- JSON -----------------------------------------------------------------------------

    def to_dict(self, *, pricing: UsagePricing | None = None) -> dict[str, Any]:
        """The JSON stored with the run (``runs.usage``) and returned with it.

        Args:
            pricing: when given (a ``state.usage.PriceTable``), adds ``cost_usd`` (and
                ``cost_estimated``) to the total and to every group, priced per model, and
                lists ``unpriced_models``.

        Returns:
            ``{version, input_tokens, output_tokens, total_tokens, calls, estimated_calls,
            estimated, by_node, by_role, by_model, entries}``; :meth:`from_dict` reads
            ``entries`` back.
        """
        data: dict[str, Any] = {"version": USAGE_FORMAT_VERSION, **self.total.to_dict()}
        groups = {"by_node": "node", "by_role": "role", "by_model": "model"}
        for name, field in groups.items():
            data[name] = {key: count.to_dict() for key, count in self._group(field).items()}
        data["entries"] = [
            {"node": key.node, "role": key.role, "model": key.model, **count.to_dict()}
            for key, count in sorted(
                self._entries.items(), key=lambda item: (item[0].node, item[0].role, item[0].model)
            )
        ]
        if pricing is not None:
            pricing.add_costs(self, data)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunUsage:
        """Read :meth:`to_dict`'s JSON (e.g. a run row's ``usage``); ``{}`` gives no usage.

        Unknown keys are ignored and every number and label is bounded, so a tampered or
        oversized row cannot blow up memory.
        """
        usage = cls()
        if not isinstance(data, Mapping):
            return usage
        entries = data.get("entries")
        if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
            return usage
        for item in entries[: _MAX_ENTRIES * 2]:
            if not isinstance(item, Mapping):
                continue
            key = UsageKey(
                node=_label(item.get("node")),
                role=_label(item.get("role")),
                model=_label(item.get("model")),
            )
            usage._add(key, TokenCount.from_dict(item))
        return usage


# -- from messages ------------------------------------------------------------------------


def model_of(metadata: Mapping[str, Any] | None, fallback: Mapping[str, Any] | None) -> str:
    """The model name a reply's metadata reports, else the fallback's, else unattributed."""
    for source in (metadata, fallback):
        if source:
            for key in ("model_name", "model", "ls_model_name"):
                value = source.get(key)
                if isinstance(value, str) and value:
                    return value
    return UNATTRIBUTED


def is_estimate(response_metadata: Mapping[str, Any] | None) -> bool:
    """Whether a reply marks its token counts as estimates (the offline model does)."""
    return bool(response_metadata and response_metadata.get("usage_is_estimate") is True)


def usage_from_messages(
    messages: Iterable[BaseMessage], *, default_role: str = UNATTRIBUTED
) -> RunUsage:
    """Token usage of the AI messages in ``messages``: a pure function over state.

    The role of a message is its ``name`` (``create_agent`` names its replies after the
    agent), the model its ``response_metadata["model_name"]``. Messages carry no node, so
    every entry's node is :data:`UNATTRIBUTED`. A message repeated (same id) counts once.

    Args:
        messages: any messages; only ``AIMessage`` with ``usage_metadata`` count.
        default_role: role of AI messages without a name.

    Returns:
        The usage, with the same totals per role that :class:`UsageCallbackHandler` records
        for the same model calls.
    """
    usage = RunUsage()
    seen: set[str] = set()
    for message in messages:
        if not isinstance(message, AIMessage) or not message.usage_metadata:
            continue
        if message.id:
            if message.id in seen:
                continue
            seen.add(message.id)
        meta = message.usage_metadata
        usage.add_call(
            input_tokens=meta.get("input_tokens", 0),
            output_tokens=meta.get("output_tokens", 0),
            total_tokens=meta.get("total_tokens"),
            role=message.name or default_role,
            model=model_of(message.response_metadata, None),
            estimated=is_estimate(message.response_metadata),
        )
    return usage
