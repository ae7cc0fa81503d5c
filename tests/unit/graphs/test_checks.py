"""Policy check, budget guard arithmetic, approval decisions, critic and judge."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from graphs.reflective import Context as ReflectiveContext
from graphs.reflective import Round, stop_reason
from nodes.approval import approval_request, parse_decision
from nodes.budget import check_budget, merge_usage, usage_by_role
from nodes.critic import Criterion, judge, review
from nodes.offline import OfflineChatModel
from nodes.policy import ContentPolicy, check_policy
from state.roles import default_roles_dir, load_organization
from tools.registry import default_registry

DRAFT = (
    "As Writer: This report covers renewable energy adoption in Europe. It focuses on "
    "renewable, energy, adoption and Europe. Overall, the key takeaway on renewable energy "
    "adoption in Europe concerns renewable and energy."
)
TASK = "Write a short report on renewable energy adoption in Europe"


# ------------------------------------------------------------------------------ policy


def test_policy_check_finds_terms_pii_and_length() -> None:
    policy = ContentPolicy(
        banned_terms=("risk-free", "guaranteed returns"),
        pii=("email", "credit_card", "ip"),
        max_length=120,
    )
    text = (
        "Guaranteed returns, risk-free! Mail ceo@example.com or pay with 4111 1111 1111 1111 "
        "from 10.0.0.1; order 1234 5678 9012 3456 is not a card. " + "x" * 20
    )
    verdict = check_policy(text, policy)
    assert verdict == {
        "passed": False,
        "reasons": [
            f"too long: {len(text)} characters, the limit is 120.",
            "uses the banned term 'risk-free' (1x).",
            "uses the banned term 'guaranteed returns' (1x).",
            "contains an email address (1x).",
            "contains a credit card number (1x).",
            "contains an IP address (1x).",
        ],
    }
    # Reasons never repeat the personal data itself.
    assert "ceo@example.com" not in " ".join(verdict["reasons"])


def test_policy_check_passes_clean_text_and_uses_custom_detectors() -> None:
    assert check_policy("All fine here.", ContentPolicy(banned_terms=("risk",))) == {
        "passed": True,
        "reasons": [],
    }
    # Whole words only: "risky" is not the banned term "risk".
    assert check_policy("A risky plan.", ContentPolicy(banned_terms=("risk",)))["passed"]
    custom = ContentPolicy(pii=("ticket",), detectors={"ticket": r"TCK-\d{4}"})
    assert check_policy("See TCK-1234 and TCK-9999.", custom)["reasons"] == [
        "contains personal data of type 'ticket' (2x)."
    ]


def test_content_policy_from_a_role() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    policy = ContentPolicy.from_role(org.role("compliance_officer"))
    assert policy.banned_terms == ("guaranteed returns", "risk-free")
    assert policy.pii == ("email", "credit_card", "ip")


# ------------------------------------------------------------------------------ budget


def test_usage_is_summed_per_role() -> None:
    messages = [
        HumanMessage("hi"),
        AIMessage("a", name="writer", usage_metadata=_usage(10)),
        AIMessage("b", name="writer", usage_metadata=_usage(5)),
        AIMessage("c", usage_metadata=_usage(7)),
        AIMessage("d", name="analyst"),
    ]
    assert usage_by_role(messages) == {"writer": 15, "unattributed": 7}
    assert merge_usage({"writer": 15}, {"writer": 1, "analyst": 2}) == {"writer": 16, "analyst": 2}
    assert merge_usage(None, None) == {}


def test_budget_status() -> None:
    status = check_budget(
        {"writer": 120, "analyst": 30},
        role_budgets={"writer": 100, "analyst": None},
        run_budget=140,
    )
    assert status == {
        "exceeded": True,
        "used": {"writer": 120, "analyst": 30, "__run__": 150},
        "reasons": [
            "role 'writer' used 120 tokens; its budget is 100.",
            "the run used 150 tokens; its budget is 140.",
        ],
        "action": "stop",
    }
    assert check_budget({"writer": 10}, run_budget=100)["action"] == "continue"


def _usage(total: int) -> Any:
    return {"input_tokens": total - 1, "output_tokens": 1, "total_tokens": total}


# ---------------------------------------------------------------------------- approval


def test_approval_request_shape() -> None:
    assert approval_request(
        "ship",
        {"to": "prod"},
        "Ship it?",
        allowed=("approve", "reject"),
        metadata={"risk": "write"},
    ) == {
        "action_requests": [{"name": "ship", "args": {"to": "prod"}, "description": "Ship it?"}],
        "review_configs": [{"action_name": "ship", "allowed_decisions": ["approve", "reject"]}],
        "metadata": {"risk": "write"},
    }


def decide(
    response: Any, allowed: tuple[Any, ...] = ("approve", "edit", "reject", "respond")
) -> Any:
    return parse_decision(response, gate="g", action="ship", args={"to": "prod"}, allowed=allowed)


def test_decisions_are_parsed_and_recorded() -> None:
    assert decide({"decisions": [{"type": "approve"}]}) == {
        "gate": "g",
        "action": "ship",
        "type": "approve",
        "args": {"to": "prod"},
    }
    edited = decide(
        {"decisions": [{"type": "edit", "edited_action": {"name": "ship", "args": {"to": "qa"}}}]}
    )
    assert edited["args"] == {"to": "qa"}
    assert decide({"decisions": [{"type": "reject", "message": " no "}]})["message"] == "no"
    assert decide({"decisions": [{"type": "respond", "message": "done by hand"}]})["type"] == (
        "respond"
    )


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ("yes", "Gate 'g' got str; resume with"),
        ({"decisions": []}, "Gate 'g' asked about 1 action but got 0 decisions"),
        ({"decisions": [{"type": "approve"}, {"type": "approve"}]}, "but got 2 decisions"),
        ({"decisions": [{"type": "respond"}]}, "a respond decision needs a non-empty 'message'"),
        (
            {"decisions": [{"type": "edit", "edited_action": {"name": "drop", "args": {}}}]},
            "an edit must keep the action 'ship', not switch to 'drop'",
        ),
        ({"decisions": [{"type": "edit"}]}, "an edit needs"),
    ],
)
def test_malformed_decisions_are_refused(response: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        decide(response)


def test_decisions_outside_the_allowed_set_are_refused() -> None:
    with pytest.raises(ValueError, match="Gate 'g' allows decisions approve, reject; got 'edit'"):
        decide({"decisions": [{"type": "edit"}]}, allowed=("approve", "reject"))


# ------------------------------------------------------------------------ critic, judge


async def test_critic_scores_each_criterion() -> None:
    result = await review(
        DRAFT,
        task=TASK,
        criteria=[
            Criterion(
                name="facts", description="Covers solar and wind capacity growth", threshold=0.8
            ),
            Criterion(name="topic", description="About renewable energy in Europe"),
        ],
        model=OfflineChatModel(),
    )
    assert [(s["criterion"], s["score"], s["passed"]) for s in result["scores"]] == [
        ("facts", 0.689, False),
        ("topic", 1.0, True),
    ]
    assert result["passed"] is False
    assert result["overall"] == 0.845
    assert result["critique"].startswith("facts: Score 0.69; covers 5 of 9 key terms")
    assert "missing solar, wind, capacity and growth" in result["critique"]


async def test_judge_checks_acceptance_criteria() -> None:
    verdict = await judge(
        DRAFT,
        task="Summarise Europe's energy transition",
        acceptance=[
            "Mentions Europe and renewable energy",
            "Names solar and wind capacity growth figures",
        ],
        model=OfflineChatModel(),
    )
    assert [(c["criterion"], c["satisfied"]) for c in verdict["checks"]] == [
        ("Mentions Europe and renewable energy", True),
        ("Names solar and wind capacity growth figures", False),
    ]
    assert verdict["accepted"] is False
    assert len(verdict["reasons"]) == 1 and verdict["reasons"][0].startswith("Names solar and wind")


# ------------------------------------------------------------------------ stop rules


def rounds(*scores: tuple[float, bool]) -> list[Round]:
    return [
        Round(round=i, draft="", scores=[], overall=s, passed=p, critique="")
        for i, (s, p) in enumerate(scores, start=1)
    ]


def test_stop_rules_in_order() -> None:
    context = ReflectiveContext(max_rounds=3, patience=1, min_improvement=0.01)
    assert stop_reason([], context) is None
    assert stop_reason(rounds((0.5, False)), context) is None
    assert stop_reason(rounds((0.5, False), (0.9, True)), context) == "passed"
    assert stop_reason(rounds((0.5, False), (0.6, False)), context) is None
    assert stop_reason(rounds((0.5, False), (0.505, False)), context) == "no_improvement"
    assert stop_reason(rounds((0.5, False), (0.6, False), (0.7, False)), context) == "max_rounds"
    patient = ReflectiveContext(max_rounds=9, patience=2)
    assert stop_reason(rounds((0.5, False), (0.4, False)), patient) is None
    assert stop_reason(rounds((0.5, False), (0.4, False), (0.5, False)), patient) == (
        "no_improvement"
    )
