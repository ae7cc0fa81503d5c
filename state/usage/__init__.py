"""Token usage of runs and what it costs: counts by node, role and model, and model prices.

It sits at the bottom of the layers so that nodes (the budget guard, role agents), graphs and
the server all count tokens the same way: :class:`UsageCallbackHandler` adds up every model
call of a run; :func:`usage_from_messages` computes the same numbers from a state's messages;
:class:`PriceTable` turns them into US dollars.
"""

from state.usage.callback import UsageCallbackHandler
from state.usage.counts import (
    AGENT_NAME_METADATA_KEY,
    ROLE_METADATA_KEY,
    UNATTRIBUTED,
    RunUsage,
    TokenCount,
    UsageKey,
    UsagePricing,
    usage_from_messages,
)
from state.usage.pricing import (
    DEFAULT_PRICES,
    Cost,
    ModelPrice,
    PriceTable,
    PriceTableError,
    cost_of,
)

__all__ = [
    "AGENT_NAME_METADATA_KEY",
    "DEFAULT_PRICES",
    "ROLE_METADATA_KEY",
    "UNATTRIBUTED",
    "Cost",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "RunUsage",
    "TokenCount",
    "UsageCallbackHandler",
    "UsageKey",
    "UsagePricing",
    "cost_of",
    "usage_from_messages",
]
