"""The webhook address guard and signature (the http_get tool's guard, applied to webhooks)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import pytest
from pydantic import SecretStr

from server.runtime.webhooks import WebhookRefused, check_webhook, post_webhook, sign
from state.settings import WebhookSettings


def _resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    return resolve


CLOSED = WebhookSettings(allow_private=False)
OPEN = WebhookSettings(allow_private=True)


async def test_public_hosts_pass() -> None:
    resolve = _resolver({"hooks.example.com": ["93.184.216.34"]})
    found = await check_webhook("https://hooks.example.com/x", settings=CLOSED, resolver=resolve)
    assert [str(a) for a in found] == ["93.184.216.34"]


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("http://127.0.0.1:9/x", {}),
        ("http://[::1]:9/x", {}),
        ("http://internal.example/x", {"internal.example": ["10.1.2.3"]}),
        # one private answer among public ones is enough to refuse: the next lookup may pick it
        ("http://mixed.example/x", {"mixed.example": ["93.184.216.34", "192.168.1.5"]}),
        ("http://[::ffff:127.0.0.1]/x", {}),
    ],
)
async def test_loopback_and_private_addresses_are_refused_by_default(
    url: str, answers: dict[str, list[str]]
) -> None:
    with pytest.raises(WebhookRefused, match="Webhook host blocked: .*ALLOW_PRIVATE"):
        await check_webhook(url, settings=CLOSED, resolver=_resolver(answers))
    await check_webhook(url, settings=OPEN, resolver=_resolver(answers))


async def test_metadata_and_multicast_addresses_are_refused_even_when_private_is_allowed() -> None:
    for url in ("http://169.254.169.254/latest", "http://224.0.0.1/", "http://0.0.0.0/"):
        with pytest.raises(WebhookRefused, match="Webhook host blocked"):
            await check_webhook(url, settings=OPEN, resolver=_resolver({}))


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("not a url", "Invalid webhook hostname ''"),
        ("ftp://example.com/x", "Webhook must be an http or https URL"),
        ("https://user:pw@example.com/x", "must not carry a user name or password"),
        ("https://nowhere.invalid/x", "Webhook host blocked: DNS resolution failed"),
        ("https://example.com/" + "a" * 5000, "Webhook URL too long"),
    ],
)
async def test_malformed_and_unresolvable_urls(url: str, detail: str) -> None:
    with pytest.raises(WebhookRefused) as caught:
        await check_webhook(url, settings=OPEN, resolver=_resolver({}))
    assert detail in str(caught.value)


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"run_id":"r"}'
    header = sign("s3cret", 1700000000, body)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


async def test_a_refused_address_is_not_called_and_not_retried() -> None:
    settings = WebhookSettings(allow_private=False, secret=SecretStr("k"))
    outcome = await post_webhook(
        "http://127.0.0.1:9/x", b"{}", settings=settings, delivery="r", attempt=1, now=0
    )
    assert not outcome.delivered and not outcome.retry
    assert outcome.error is not None and "loopback" in outcome.error


async def test_an_unreachable_receiver_is_retried() -> None:
    outcome = await post_webhook(
        "http://127.0.0.1:9/x", b"{}", settings=OPEN, delivery="r", attempt=1, now=0
    )  # port 9 (discard) is closed here: connection refused
    assert not outcome.delivered and outcome.retry and outcome.status_code is None
