"""Tool registry, risk levels, calculator and document tools."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, tool

from state.errors import GraphSetupError
from tools import (
    CalculatorError,
    DocumentError,
    Heading,
    ToolRegistry,
    ToolRisk,
    UnknownToolError,
    default_registry,
    document_stats,
    evaluate,
    extract_keywords,
    split_document,
    tool_risk,
)
from tools.documents import MAX_DOCUMENT_CHARS

# --------------------------------------------------------------------------- registry


def _echo(text: str) -> str:
    """Return the text."""
    return text


def make_tool(name: str, risk: str | None) -> BaseTool:
    metadata = {"risk": risk} if risk is not None else None
    return StructuredTool.from_function(func=_echo, name=name, metadata=metadata)


def test_default_registry_holds_builtins_with_risks() -> None:
    registry = default_registry()
    assert registry.names() == [
        "calculator",
        "document_stats",
        "extract_keywords",
        "http_get",
        "split_document",
    ]
    assert registry.risk_of("http_get") is ToolRisk.EXTERNAL
    for name in ("calculator", "document_stats", "extract_keywords", "split_document"):
        assert registry.risk_of(name) is ToolRisk.READ
    # The risk is on the tool object too, so middleware holding only the tool can read it.
    for item in registry:
        assert item.metadata is not None
        assert item.metadata["risk"] == registry.risk_of(item.name).value
        assert tool_risk(item) is registry.risk_of(item.name)


def test_default_registry_is_fresh_each_call() -> None:
    first = default_registry()
    first.register(make_tool("save_note", "write"))
    assert "save_note" in first
    assert "save_note" not in default_registry()


def test_unknown_tool_error_names_close_matches() -> None:
    registry = default_registry()
    with pytest.raises(UnknownToolError) as caught:
        registry.get("calculater")
    assert caught.value.suggestions[0] == "calculator"
    assert "'calculater' is not registered" in str(caught.value)
    assert "Did you mean 'calculator'" in str(caught.value)
    assert isinstance(caught.value, GraphSetupError)
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownToolError):
        registry.risk_of("nope")


def test_register_user_tool_with_risk_argument_sets_metadata() -> None:
    @tool
    def send_email(to: str, body: str) -> str:
        """Send an e-mail."""
        return "sent"

    registry = ToolRegistry()
    registry.register(send_email, risk="external")
    assert registry.risk_of("send_email") is ToolRisk.EXTERNAL
    assert tool_risk(registry.get("send_email")) is ToolRisk.EXTERNAL
    assert registry.select(["send_email"]) == [send_email]
    assert len(registry) == 1


def test_register_refuses_missing_conflicting_or_duplicate_risk() -> None:
    plain = make_tool("plain", None)
    reader = make_tool("reader", "read")
    odd = make_tool("odd", "dangerous")
    registry = ToolRegistry()
    with pytest.raises(GraphSetupError, match="declares no risk level"):
        registry.register(plain)
    with pytest.raises(GraphSetupError, match="make them agree"):
        registry.register(reader, risk=ToolRisk.WRITE)
    with pytest.raises(GraphSetupError, match="declares risk 'dangerous'"):
        registry.register(odd)
    with pytest.raises(GraphSetupError, match="declares no risk level"):
        tool_risk(plain)
    registry.register(reader)
    with pytest.raises(GraphSetupError, match="already registered"):
        registry.register(reader)
    registry.register(reader, replace=True)
    assert registry.names() == ["reader"]


# --------------------------------------------------------------------------- calculator


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("-3 + +2", -1),
        ("10 / 4", 2.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("min(4, 2, 8) + max(1, 3)", 5),
        ("round(3.14159, 2)", 3.14),
        ("log(8, 2)", 3.0),
        ("cos(0) + sin(0)", 1.0),
        ("round(pi, 3)", 3.142),
        ("round(e, 2)", 2.72),
    ],
)
def test_calculator_evaluates(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("10 ** 10 ** 10", "Exponent 10000000000 is larger than 1000"),
        ("9 ** 999", "larger than 1e+300"),
        ("1e308 * 10", "larger than 1e+300"),
        ("1 / 0", "Division by zero"),
        ("5 % 0", "Division by zero"),
        ("sqrt(-1)", "sqrt() cannot take -1"),
        ("log(0)", "log() cannot take 0"),
        ("(-8) ** 0.5", "complex number"),
        ("__import__('os').system('true')", "Unknown function"),
        ("().__class__", "Unsupported syntax"),
        ("x + 1", "Unknown name 'x'"),
        ("'a' * 3", "only numbers are allowed"),
        ("True + 1", "only numbers are allowed"),
        ("1j * 2", "only numbers are allowed"),
        ("[1, 2]", "Unsupported syntax (List)"),
        ("max()", "max() takes 1 or more argument(s), got 0"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument(s), got 2"),
        ("round(1.5, ndigits=1)", "plain positional arguments only"),
        ("1 < 2", "Unsupported syntax (Compare)"),
        ("2 +", "Cannot parse expression"),
        ("", "Expression is empty"),
        ("1 + " * 200 + "1", "characters long; the limit is 500"),
        ("-" * 100 + "1", "nested too deeply"),
        ("min(" + ",".join(["1"] * 199) + ")", "too complex"),
    ],
)
def test_calculator_refuses_with_clear_message(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        evaluate(expression)
    assert message in str(caught.value)


def test_calculator_tool_returns_number_text_and_errors_as_messages() -> None:
    calculator = default_registry().get("calculator")
    assert calculator.invoke({"expression": "(1200 * 0.15) + sqrt(81)"}) == "189"
    assert calculator.invoke({"expression": "0.1 + 0.2"}) == "0.3"
    # Errors come back as the tool result the model reads, not as an exception.
    assert calculator.invoke({"expression": "1/0"}) == "Calculator error: Division by zero."
    message = calculator.invoke(
        {"type": "tool_call", "id": "call-1", "name": "calculator", "args": {"expression": "x"}}
    )
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    assert "Unknown name 'x'" in str(message.content)


# --------------------------------------------------------------------------- documents

REPORT = """# Quarterly report

Revenue grew by ten percent. Costs fell! Did margins improve? Yes.

## Budget

The budget for marketing is fixed. Budget reviews happen monthly.
See the [budget plan](https://example.com/plan) for details.

```python
# not a heading
budget = 1
```

Forecast
--------

Final paragraph about budget and revenue.
"""


def test_document_stats_counts_markdown() -> None:
    stats = document_stats(REPORT)
    assert stats.headings == [
        Heading(1, "Quarterly report"),
        Heading(2, "Budget"),
        Heading(2, "Forecast"),
    ]
    # three prose paragraphs and one code block; the '#' line in code is not a heading
    assert stats.paragraphs == 4
    assert stats.sentences == 4 + 3 + 1
    assert stats.characters == len(REPORT)
    # the link target is not counted as words
    assert stats.words == 43
    assert stats.reading_time_minutes == 0.3
    empty = document_stats("")
    assert (empty.words, empty.sentences, empty.paragraphs, empty.reading_time_minutes) == (
        0,
        0,
        0,
        0.0,
    )


def test_document_stats_reading_time_uses_200_words_per_minute() -> None:
    assert document_stats("word " * 400).reading_time_minutes == 2.0
    assert document_stats("word " * 401).reading_time_minutes == 2.1


def test_extract_keywords_is_frequency_ranked_without_stop_words_or_code() -> None:
    keywords = extract_keywords(REPORT, top_k=4)
    assert [(k.keyword, k.count) for k in keywords] == [
        ("budget", 5),
        ("revenue", 2),
        ("quarterly", 1),  # ties keep first-appearance order
        ("report", 1),
    ]
    words = {k.keyword for k in extract_keywords(REPORT, top_k=100)}
    assert not words & {"the", "for", "did", "see", "about"}
    assert "heading" not in words  # only appears inside the code block
    assert "https" not in words and "example" not in words  # link targets are dropped
    assert extract_keywords(REPORT, top_k=4) == keywords


def test_split_document_respects_headings_paragraphs_and_size() -> None:
    chunks = split_document(REPORT, chunk_size=120, chunk_overlap=0)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(len(c.text) <= 120 for c in chunks)
    # every heading starts a chunk, and that chunk is labelled with it
    starts = {c.text.split("\n", 1)[0]: c.heading for c in chunks if c.text.startswith("#")}
    assert starts == {"# Quarterly report": "Quarterly report", "## Budget": "Budget",
                      "## Forecast": "Forecast"}  # fmt: skip
    first = chunks[0]
    assert first.text == (
        "# Quarterly report\n\nRevenue grew by ten percent. Costs fell! Did margins improve? Yes."
    )
    # the code block is kept whole
    assert any("```python\n# not a heading\nbudget = 1\n```" in c.text for c in chunks)
    assert chunks[-1].text == "## Forecast\n\nFinal paragraph about budget and revenue."


def test_split_document_overlap_and_long_paragraphs() -> None:
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(40)]
    text = " ".join(sentences)
    chunks = split_document(text, chunk_size=200, chunk_overlap=50)
    assert len(chunks) > 5
    assert all(len(c.text) <= 200 for c in chunks)
    # chunks are packed: each is within a sentence of the limit
    assert all(len(c.text) > 200 - 50 - len(sentences[-1]) for c in chunks[:-1])
    for previous, current in zip(chunks, chunks[1:], strict=False):
        # each chunk starts with up to 50 characters from the end of the one before it,
        # cut at a word boundary
        assert any(
            current.text.startswith(previous.text[-size:]) and (previous.text[-size - 1] == " ")
            for size in range(5, 51)
        ), (previous.text, current.text)
    # with overlap removed, nothing is lost: every sentence appears somewhere
    joined = " ".join(c.text for c in chunks)
    assert all(sentence in joined for sentence in sentences)
    # a single word longer than a chunk is cut by characters
    assert [len(c.text) for c in split_document("x" * 130, chunk_size=50, chunk_overlap=0)] == [
        48,
        48,
        34,
    ]


def test_document_tools_bound_input_and_arguments() -> None:
    too_long = "a" * (MAX_DOCUMENT_CHARS + 1)
    for call in (document_stats, extract_keywords, split_document):
        with pytest.raises(DocumentError, match="limit is 200000"):
            call(too_long)
    with pytest.raises(DocumentError, match="chunk_size must be between 50 and 20000"):
        split_document("text", chunk_size=10)
    with pytest.raises(DocumentError, match="chunk_overlap must be between 0 and 50"):
        split_document("text", chunk_size=100, chunk_overlap=60)
    with pytest.raises(DocumentError, match="top_k must be between 1 and 100"):
        extract_keywords("text", top_k=0)


def test_document_tools_return_json_and_errors_as_messages() -> None:
    registry = default_registry()
    stats = json.loads(registry.get("document_stats").invoke({"text": REPORT}))
    assert stats["headings"][0] == {"level": 1, "text": "Quarterly report"}
    keywords = json.loads(registry.get("extract_keywords").invoke({"text": REPORT, "top_k": 1}))
    assert keywords == [{"keyword": "budget", "count": 5}]
    chunks = json.loads(registry.get("split_document").invoke({"text": REPORT, "chunk_size": 120}))
    assert chunks[0]["heading"] == "Quarterly report"
    refused = registry.get("split_document").invoke({"text": REPORT, "chunk_size": 5})
    assert refused.startswith("split_document error: chunk_size must be between")
