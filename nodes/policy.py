"""Policy check: rules over content (banned terms, personal data, length) with reasons.

Deterministic and model-free, so a verdict is reproducible and cheap. Reasons say which rule
failed and how often, never the matched personal data itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from nodes._private import last_ai_text
from state.errors import GraphSetupError
from state.roles import Role

__all__ = ["ContentPolicy", "PolicyVerdict", "check_policy", "make_policy_check"]

_MAX_SCAN = 200_000
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_MAC = re.compile(r"(?<![0-9A-Fa-f:-])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:-])")
_URL = re.compile(r"https?://[^\s<>\"')\]]{1,2000}", re.IGNORECASE)
_PII_LABELS = {
    "email": "an email address",
    "credit_card": "a credit card number",
    "ip": "an IP address",
    "mac_address": "a MAC address",
    "url": "a URL",
}


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _count_builtin(pii_type: str, text: str) -> int:
    if pii_type == "email":
        return len(_EMAIL.findall(text))
    if pii_type == "credit_card":
        return sum(1 for m in _CARD.findall(text) if _luhn(re.sub(r"\D", "", m)))
    if pii_type == "ip":
        count = 0
        for match in _IPV4.findall(text):
            try:
                ipaddress.ip_address(match)
            except ValueError:
                continue
            count += 1
        return count
    if pii_type == "mac_address":
        return len(_MAC.findall(text))
    if pii_type == "url":
        return len(_URL.findall(text))
    raise ValueError(f"unknown built-in PII type {pii_type!r}")


@dataclass(frozen=True, kw_only=True)
class ContentPolicy:
    """Content rules a policy check enforces.

    Attributes:
        banned_terms: Terms that must not appear (case-insensitive, whole words).
        pii: PII types that must not appear: built-in ``email``, ``credit_card``, ``ip``,
            ``mac_address``, ``url``, or custom names with a regular expression in
            ``detectors``.
        detectors: Custom PII type -> regular expression.
        max_length: Most characters allowed.
    """

    banned_terms: tuple[str, ...] = ()
    pii: tuple[str, ...] = ()
    detectors: Mapping[str, str] = field(default_factory=dict)
    max_length: int | None = None

    def __post_init__(self) -> None:
        for pii_type in self.pii:
            if pii_type not in _PII_LABELS and pii_type not in self.detectors:
                raise GraphSetupError(
                    f"Content policy names PII type '{pii_type}', which is not built in "
                    f"({', '.join(_PII_LABELS)}) and has no detector; add one to 'detectors'."
                )
        for pii_type, pattern in self.detectors.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise GraphSetupError(
                    f"Content policy detector for '{pii_type}' is not a valid regular "
                    f"expression: {exc}."
                ) from None
        if self.max_length is not None and self.max_length < 1:
            raise GraphSetupError("Content policy max_length must be at least 1.")

    @classmethod
    def from_role(cls, role: Role) -> ContentPolicy:
        """The content rules of a role's policies (``content`` and ``pii``)."""
        policies = role.policies
        return cls(
            banned_terms=policies.content.banned_terms,
            pii=tuple(policies.pii),
            detectors={k: r.detector for k, r in policies.pii.items() if r.detector},
            max_length=policies.content.max_length,
        )


class PolicyVerdict(TypedDict):
    """The outcome of a policy check."""

    passed: bool
    reasons: list[str]
    """One line per broken rule; empty when the content passed."""


def check_policy(text: str, policy: ContentPolicy) -> PolicyVerdict:
    """Check ``text`` against ``policy``.

    Args:
        text: The content; only the first 200 000 characters are scanned for terms and PII.
        policy: The rules.

    Returns:
        The verdict with a reason per broken rule.
    """
    reasons: list[str] = []
    if policy.max_length is not None and len(text) > policy.max_length:
        reasons.append(f"too long: {len(text)} characters, the limit is {policy.max_length}.")
    scanned = text[:_MAX_SCAN]
    lowered = scanned.lower()
    for term in policy.banned_terms:
        pattern = r"(?<!\w)" + re.escape(term.lower()) + r"(?!\w)"
        hits = len(re.findall(pattern, lowered))
        if hits:
            reasons.append(f"uses the banned term '{term}' ({hits}x).")
    for pii_type in policy.pii:
        if pii_type in policy.detectors:
            hits = len(re.findall(policy.detectors[pii_type], scanned))
            label = f"personal data of type '{pii_type}'"
        else:
            hits = _count_builtin(pii_type, scanned)
            label = _PII_LABELS[pii_type]
        if hits:
            reasons.append(f"contains {label} ({hits}x).")
    return PolicyVerdict(passed=not reasons, reasons=reasons)


def make_policy_check(
    policy: ContentPolicy,
    *,
    text: Callable[[Mapping[str, Any]], str] | None = None,
    key: str = "policy",
) -> Callable[[Mapping[str, Any], Runtime[Any]], Any]:
    """Make a node that checks content in state and writes a :class:`PolicyVerdict`.

    Args:
        policy: The rules.
        text: Reads the content from state; defaults to the latest AI message's text.
        key: State key the verdict is written to.

    Returns:
        An async node ``(state, runtime) -> {key: verdict}``.
    """
    read = text or (lambda state: last_ai_text(state.get("messages") or []))

    async def policy_check(state: Mapping[str, Any], runtime: Runtime[Any]) -> dict[str, Any]:
        return {key: check_policy(read(state), policy)}

    return policy_check
