"""The price table: lookup, cost of tokens and of a run's usage, overrides from a file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from nodes.offline import MODEL_NAME
from state.settings import load_settings
from state.usage import (
    DEFAULT_PRICES,
    Cost,
    ModelPrice,
    PriceTable,
    PriceTableError,
    RunUsage,
    TokenCount,
    cost_of,
)

MILLION = 1_000_000


def tokens(inp: int, out: int, *, estimated: bool = False) -> TokenCount:
    return TokenCount(
        input_tokens=inp,
        output_tokens=out,
        total_tokens=inp + out,
        calls=1,
        estimated_calls=1 if estimated else 0,
    )


def test_cost_of_known_model_per_million_tokens() -> None:
    cost = cost_of(tokens(MILLION, MILLION), "gpt-4o-mini")
    assert cost == Cost(usd=Decimal("0.75"))
    assert cost_of(tokens(2_000, 500), "gpt-4o").usd == Decimal("0.01")


def test_lookup_handles_snapshots_prefixes_and_exact_overrides() -> None:
    table = PriceTable()
    assert table.price_of("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]
    assert table.price_of("openai:gpt-4.1-mini") == DEFAULT_PRICES["gpt-4.1-mini"]
    assert table.price_of("GPT-4o") == DEFAULT_PRICES["gpt-4o"]
    # A snapshot with its own price is not priced as its family.
    assert table.price_of("gpt-4o-2024-05-13") == ModelPrice.of(5, 15)
    # "gpt-4o" is not a dash-suffix of "gpt-4", so it never falls back to gpt-4's price.
    assert table.price_of("gpt-4o-nonexistent") == DEFAULT_PRICES["gpt-4o"]
    assert table.price_of("ft:gpt-4o-mini:org::abc") is None
    assert table.price_of("claude-unknown") is None
    assert table.price_of(None) is None


def test_offline_model_costs_nothing_and_is_marked_estimate() -> None:
    cost = cost_of(tokens(50_000, 50_000, estimated=True), MODEL_NAME)
    assert cost.usd == 0
    assert cost.estimated
    assert cost.unpriced == ()


def test_unknown_model_costs_zero_and_is_reported() -> None:
    cost = cost_of(tokens(10, 10), "my-local-llama")
    assert cost == Cost(usd=Decimal(0), unpriced=("my-local-llama",))


def test_run_usage_is_priced_per_entry_model_and_per_role() -> None:
    usage = RunUsage()
    usage.add_call(input_tokens=MILLION, output_tokens=0, role="researcher", model="gpt-4o")
    usage.add_call(input_tokens=0, output_tokens=MILLION, role="writer", model="gpt-4o-mini")
    usage.add_call(input_tokens=999, output_tokens=1, role="writer", model="mystery")
    table = PriceTable()

    assert cost_of(usage, table=table) == Cost(usd=Decimal("3.1"), unpriced=("mystery",))
    by_role = table.costs_by(usage, "role")
    assert by_role["researcher"].usd == Decimal("2.5")
    assert by_role["writer"].usd == Decimal("0.6")

    stored = usage.to_dict(pricing=table)
    assert stored["cost_usd"] == pytest.approx(3.1)
    assert stored["unpriced_models"] == ["mystery"]
    assert stored["by_role"]["writer"]["cost_usd"] == pytest.approx(0.6)
    assert stored["by_model"]["gpt-4o"]["cost_usd"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="node, role or model"):
        table.costs_by(usage, "thread")


def test_file_overrides_and_adds_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "models:\n"
        "  gpt-4o-mini: {input: 1, output: 2}\n"
        "  openai:my-finetune: {input: '0.5', output: 0}\n"
    )
    table = PriceTable.from_file(path)
    assert table.price_of("gpt-4o-mini-2024-07-18") == ModelPrice.of(1, 2)
    assert table.price_of("my-finetune") == ModelPrice.of("0.5", 0)
    assert table.price_of("gpt-4o") == DEFAULT_PRICES["gpt-4o"]  # defaults kept

    only = PriceTable.from_file(path, include_defaults=False)
    assert only.price_of("gpt-4o") is None


def test_json_file_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"acme-large": {"input": 3, "output": 9}}')
    monkeypatch.setenv("STAFFGRAPH_PRICE_TABLE", str(path))
    table = PriceTable.from_settings(load_settings())
    assert cost_of(tokens(MILLION, MILLION), "acme-large", table=table).usd == Decimal(12)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("models:\n  gpt-x: {input: -1, output: 1}\n", "gpt-x"),
        ("models:\n  gpt-x: {input: 1}\n", "output"),
        ("models:\n  gpt-x: {input: 1, output: 1, cached: 2}\n", "cached"),
        ("- just\n- a list\n", "must map model names"),
        ("models: [unclosed\n", "not valid YAML"),
        ("models:\n  gpt-x: {input: .nan, output: 1}\n", "gpt-x"),
    ],
)
def test_bad_files_are_rejected_with_the_reason(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(content)
    with pytest.raises(PriceTableError, match=message):
        PriceTable.from_file(path)


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="STAFFGRAPH_PRICE_TABLE"):
        PriceTable.from_file(tmp_path / "absent.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (1024 * 1024 + 10))
    with pytest.raises(PriceTableError, match="larger than"):
        PriceTable.from_file(big)
