"""Model prices: turn token counts into US dollars.

Prices are USD per one million tokens, input and output apart. :data:`DEFAULT_PRICES` holds
OpenAI's list prices of common models at the time of writing and 0 for the offline model;
``STAFFGRAPH_PRICE_TABLE`` names a YAML or JSON file whose entries replace or add to them::

    models:
      gpt-4o-mini: {input: 0.15, output: 0.60}
      my-vllm-llama: {input: 0, output: 0}

A model name is looked up as written (lower-cased, without an ``openai:`` style provider
prefix), then with trailing ``-parts`` cut one at a time, so a dated snapshot such as
``gpt-4o-mini-2024-07-18`` costs what ``gpt-4o-mini`` costs unless it has its own entry.
A model with no price costs 0 and is reported in :attr:`Cost.unpriced`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from state.settings import ObservabilitySettings, Settings
from state.usage.counts import RunUsage, TokenCount

__all__ = [
    "DEFAULT_PRICES",
    "Cost",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "cost_of",
]

_MILLION = Decimal(1_000_000)
_MAX_FILE_BYTES = 1024 * 1024
_MAX_MODELS = 10_000
_MAX_NAME = 200
# Cost is kept to the nano-dollar: finer digits are noise and bloat the stored JSON.
_QUANTUM = Decimal("0.000000001")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per one million tokens."""

    input: Decimal
    output: Decimal

    @classmethod
    def of(cls, input: float | str | Decimal, output: float | str | Decimal) -> ModelPrice:
        """Build from numbers written as floats, strings or decimals."""
        return cls(input=Decimal(str(input)), output=Decimal(str(output)))


DEFAULT_PRICES: Mapping[str, ModelPrice] = MappingProxyType(
    {
        "staffgraph-offline": ModelPrice.of(0, 0),
        "gpt-5": ModelPrice.of("1.25", "10.00"),
        "gpt-5-mini": ModelPrice.of("0.25", "2.00"),
        "gpt-5-nano": ModelPrice.of("0.05", "0.40"),
        "gpt-4.1": ModelPrice.of("2.00", "8.00"),
        "gpt-4.1-mini": ModelPrice.of("0.40", "1.60"),
        "gpt-4.1-nano": ModelPrice.of("0.10", "0.40"),
        "gpt-4o": ModelPrice.of("2.50", "10.00"),
        "gpt-4o-2024-05-13": ModelPrice.of("5.00", "15.00"),
        "gpt-4o-mini": ModelPrice.of("0.15", "0.60"),
        "gpt-4-turbo": ModelPrice.of("10.00", "30.00"),
        "gpt-4": ModelPrice.of("30.00", "60.00"),
        "gpt-3.5-turbo": ModelPrice.of("0.50", "1.50"),
        "o1": ModelPrice.of("15.00", "60.00"),
        "o1-mini": ModelPrice.of("1.10", "4.40"),
        "o3": ModelPrice.of("2.00", "8.00"),
        "o3-mini": ModelPrice.of("1.10", "4.40"),
        "o4-mini": ModelPrice.of("1.10", "4.40"),
        "text-embedding-3-small": ModelPrice.of("0.02", 0),
        "text-embedding-3-large": ModelPrice.of("0.13", 0),
    }
)
"""Built-in prices (USD per 1M tokens): OpenAI list prices, 0 for the offline model."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What some tokens cost."""

    usd: Decimal
    estimated: bool = False
    """The token counts behind it are estimates (the offline model), so the cost is too."""
    unpriced: tuple[str, ...] = ()
    """Models that had tokens but no price; they count as 0."""

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            usd=self.usd + other.usd,
            estimated=self.estimated or other.estimated,
            unpriced=tuple(sorted(set(self.unpriced) | set(other.unpriced))),
        )


class PriceTableError(ValueError):
    """The price table file cannot be used; the message says which file and why."""


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Decimal = Field(ge=0, le=1_000_000, allow_inf_nan=False)
    output: Decimal = Field(ge=0, le=1_000_000, allow_inf_nan=False)


def _normalise(model: str) -> str:
    name = model.strip().lower()[:_MAX_NAME]
    # "openai:gpt-4o" (init_chat_model spec) and "openai/gpt-4o" (router style) name the same
    # model. Names with more colons (fine-tunes, "ft:gpt-4o:org::id") are priced apart.
    for separator in (":", "/"):
        prefix, found, rest = name.partition(separator)
        if found and prefix and rest and separator not in rest:
            name = rest
    return name


class PriceTable:
    """Prices per model, with lookup that tolerates dated snapshots and provider prefixes."""

    __slots__ = ("_prices",)

    def __init__(
        self,
        prices: Mapping[str, ModelPrice] | None = None,
        *,
        include_defaults: bool = True,
    ) -> None:
        """Create a table.

        Args:
            prices: entries that replace or add to the defaults.
            include_defaults: start from :data:`DEFAULT_PRICES`.
        """
        table = dict(DEFAULT_PRICES) if include_defaults else {}
        for name, price in (prices or {}).items():
            table[_normalise(name)] = price
        self._prices: dict[str, ModelPrice] = table

    @classmethod
    def from_file(cls, path: Path, *, include_defaults: bool = True) -> PriceTable:
        """Load a YAML or JSON file (``{models: {name: {input, output}}}`` or just the map).

        Raises:
            PriceTableError: the file is missing, too large, or not a valid table.
        """
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise PriceTableError(
                f"cannot read price table {path}: {exc.strerror or exc}. "
                "Fix STAFFGRAPH_PRICE_TABLE or unset it to use the built-in prices."
            ) from None
        if len(raw) > _MAX_FILE_BYTES:
            raise PriceTableError(f"price table {path} is larger than {_MAX_FILE_BYTES} bytes")
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise PriceTableError(f"price table {path} is not valid YAML/JSON: {exc}") from None
        return cls(_parse_prices(data, path), include_defaults=include_defaults)

    @classmethod
    def from_settings(cls, settings: Settings | ObservabilitySettings) -> PriceTable:
        """The defaults, plus ``STAFFGRAPH_PRICE_TABLE`` when set."""
        group = settings.observability if isinstance(settings, Settings) else settings
        if group.price_table is None:
            return cls()
        return cls.from_file(group.price_table)

    @property
    def prices(self) -> Mapping[str, ModelPrice]:
        """Every entry, by normalised model name."""
        return MappingProxyType(self._prices)

    def price_of(self, model: str | None) -> ModelPrice | None:
        """The price of ``model``, or None when the table has none."""
        if not model:
            return None
        name = _normalise(model)
        while name:
            price = self._prices.get(name)
            if price is not None:
                return price
            name, dash, _ = name.rpartition("-")
            if not dash:
                return None
        return None

    def cost(self, tokens: TokenCount, model: str | None) -> Cost:
        """What ``tokens`` of ``model`` cost."""
        price = self.price_of(model)
        if price is None:
            unpriced = (model or "unknown",) if tokens.total_tokens or tokens.calls else ()
            return Cost(usd=Decimal(0), estimated=tokens.estimated, unpriced=unpriced)
        usd = (tokens.input_tokens * price.input + tokens.output_tokens * price.output) / _MILLION
        return Cost(usd=usd.quantize(_QUANTUM), estimated=tokens.estimated)

    def cost_of_usage(self, usage: RunUsage) -> Cost:
        """What a run's usage costs, each entry priced by its own model."""
        total = Cost(usd=Decimal(0))
        for key, tokens in usage.entries.items():
            total = total + self.cost(tokens, key.model)
        return total

    def add_costs(self, usage: RunUsage, data: dict[str, Any]) -> None:
        """Price :meth:`RunUsage.to_dict`'s JSON in place (see ``RunUsage.to_dict(pricing=)``).

        Adds ``cost_usd``, ``cost_estimated`` and ``unpriced_models`` to the total and
        ``cost_usd``, ``cost_estimated`` to every ``by_node`` / ``by_role`` / ``by_model`` group.
        """
        cost = self.cost_of_usage(usage)
        data["cost_usd"] = float(cost.usd)
        data["cost_estimated"] = cost.estimated
        data["unpriced_models"] = list(cost.unpriced)
        for name, field in (("by_node", "node"), ("by_role", "role"), ("by_model", "model")):
            for key, group_cost in self.costs_by(usage, field).items():
                data[name][key]["cost_usd"] = float(group_cost.usd)
                data[name][key]["cost_estimated"] = group_cost.estimated

    def costs_by(self, usage: RunUsage, field: str) -> dict[str, Cost]:
        """Cost per ``node``, ``role`` or ``model``, each entry priced by its own model."""
        if field not in ("node", "role", "model"):
            raise ValueError(f"costs_by groups by node, role or model, not {field!r}")
        costs: dict[str, Cost] = {}
        for key, tokens in usage.entries.items():
            name = getattr(key, field)
            cost = self.cost(tokens, key.model)
            costs[name] = costs[name] + cost if name in costs else cost
        return costs


def _parse_prices(data: Any, path: Path) -> dict[str, ModelPrice]:
    if isinstance(data, Mapping) and "models" in data:
        data = data["models"]
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PriceTableError(
            f"price table {path} must map model names to {{input: USD, output: USD}} per 1M tokens"
        )
    if len(data) > _MAX_MODELS:
        raise PriceTableError(f"price table {path} lists more than {_MAX_MODELS} models")
    prices: dict[str, ModelPrice] = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
            raise PriceTableError(f"price table {path}: bad model name {str(name)[:40]!r}")
        try:
            parsed = _PriceEntry.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                for err in exc.errors()
            )
            raise PriceTableError(
                f"price table {path}: model {name!r}: {problems} "
                "(expected {input: USD, output: USD} per 1M tokens)"
            ) from None
        prices[name] = ModelPrice(input=parsed.input, output=parsed.output)
    return prices


def cost_of(
    usage: TokenCount | RunUsage, model: str | None = None, *, table: PriceTable | None = None
) -> Cost:
    """What ``usage`` costs.

    Args:
        usage: a run's usage (each entry priced by its own model) or a bare token count.
        model: the model of a bare :class:`TokenCount`; ignored for :class:`RunUsage`.
        table: prices; the built-in table when omitted.

    Returns:
        The cost in USD, marked ``estimated`` when the token counts are estimates.
    """
    prices = table if table is not None else PriceTable()
    if isinstance(usage, RunUsage):
        return prices.cost_of_usage(usage)
    return prices.cost(usage, model)
