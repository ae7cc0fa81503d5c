"""The rate arithmetic (GCRA) and the model allowlist, without a server."""

from __future__ import annotations

import pytest

from server.limits import LocalRateLimiter, allowed_models, model_problem
from state.limit_settings import LimitSettings
from state.settings import ModelSettings


def test_a_burst_then_the_sustained_rate() -> None:
    limiter = LocalRateLimiter(per_minute=60, burst=5)  # one a second, five at once
    assert [limiter.hit_now("a", 100.0) for _ in range(5)] == [0.0] * 5
    wait = limiter.hit_now("a", 100.0)
    assert wait == pytest.approx(1.0)
    assert limiter.hit_now("b", 100.0) == 0.0  # another caller has its own budget
    assert limiter.hit_now("a", 100.5) == pytest.approx(0.5)  # refused requests cost nothing
    assert limiter.hit_now("a", 101.0) == 0.0
    assert limiter.hit_now("a", 101.0) > 0
    # idle for long enough, the whole burst is back, and no more than it
    assert [limiter.hit_now("a", 200.0) for _ in range(6)][-1] > 0


def test_idle_callers_are_forgotten_when_the_table_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("server.limits._LOCAL_MAX_KEYS", 3)
    limiter = LocalRateLimiter(per_minute=60, burst=2)
    for key in "abc":
        limiter.hit_now(key, 0.0)
    limiter.hit_now("d", 10.0)  # a, b and c are idle by now
    assert set(limiter._tat) == {"d"}


def test_default_allowlist_is_the_configured_model_and_offline() -> None:
    model = ModelSettings(model="openai:gpt-4o-mini", openai_api_key="sk-test")
    allowed = allowed_models(LimitSettings(), model)
    assert allowed == {"openai:gpt-4o-mini", "offline"}
    assert model_problem(allowed, model, {"body.context.model": "auto"}) is None
    assert model_problem(allowed, model, {"body.context.model": " offline "}) is None
    problem = model_problem(allowed, model, {"body.context.model": "openai:gpt-5"})
    assert problem is not None
    assert problem.startswith("body.context.model: 'openai:gpt-5' is not an allowed model")
    assert "allowed: offline, openai:gpt-4o-mini" in problem


def test_configured_allowlists() -> None:
    model = ModelSettings(model="offline")
    star = allowed_models(LimitSettings(allowed_models="*"), model)
    assert star is None and model_problem(star, model, {"f": "any:thing"}) is None
    listed = allowed_models(LimitSettings(allowed_models="a:b, c:d"), model)
    assert listed == {"a:b", "c:d"}
    assert model_problem(listed, model, {"f": "offline"}) is not None
    assert model_problem(listed, model, {"f": 3}) is not None
