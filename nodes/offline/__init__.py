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

from nodes.offline.model import OfflineChatModel
from nodes.offline.text import MODEL_NAME, PASS_THRESHOLD, PROVIDER
from nodes.offline.turn import Review, review_score

__all__ = ["MODEL_NAME", "PASS_THRESHOLD", "PROVIDER", "OfflineChatModel", "Review", "review_score"]
