"""Webhooks: who may be called, how a call is signed, and one POST to a vetted address.

A webhook URL comes from a client, so it is treated like a URL an agent chose: the ``http_get``
tool's address guard (:func:`tools.http_get.check_address`) decides which addresses may be
called. Loopback, private (RFC 1918, ULA), link-local and carrier-grade NAT addresses are
refused unless ``STAFFGRAPH_WEBHOOK_ALLOW_PRIVATE=true``; cloud metadata, unspecified,
multicast and reserved addresses are refused always. The check runs when the run or cron is
created (a refused URL is a 422) and again before every attempt, and the request goes to the
address that was checked (``Host`` header and TLS server name kept), so a DNS answer that
changes in between cannot redirect it. Redirects are not followed.

With ``STAFFGRAPH_WEBHOOK_SECRET`` set, every call carries
``X-Staffgraph-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC keyed with the
secret over the bytes ``<t>.`` followed by the exact request body. A receiver recomputes it,
compares in constant time and may refuse old ``t`` values to stop replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from server.versions import STAFFGRAPH_VERSION
from state.settings import WebhookSettings
from tools.http_get import HttpPolicy, check_address

__all__ = [
    "SIGNATURE_HEADER",
    "Attempt",
    "Resolver",
    "WebhookRefused",
    "check_webhook",
    "post_webhook",
    "sign",
]

SIGNATURE_HEADER = "X-Staffgraph-Signature"
MAX_URL_CHARS = 4096

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_USER_AGENT = f"staffgraph-webhook/{STAFFGRAPH_VERSION}"
_RETRY_STATUSES = frozenset({408, 425, 429})


class WebhookRefused(ValueError):
    """A webhook URL that may not be called; the message says why (sent as a 422 detail)."""


class _Unresolved(WebhookRefused):
    """The host has no address right now: refused at creation, retried at delivery."""


@dataclass(frozen=True)
class Attempt:
    """How one POST went."""

    delivered: bool
    retry: bool
    """Worth trying again later (network trouble, a timeout, 408/425/429 or a 5xx)."""
    status_code: int | None = None
    error: str | None = None


def _policy(settings: WebhookSettings) -> HttpPolicy:
    return HttpPolicy(allowed_hosts={"*"}, allow_private_networks=settings.allow_private)


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _parse(url: str) -> httpx.URL:
    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused("Webhook URL too long")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise WebhookRefused(f"Invalid webhook URL '{url[:200]}'") from None
    if not parsed.host:
        raise WebhookRefused(f"Invalid webhook hostname '{parsed.host}'")
    if parsed.scheme not in ("http", "https"):
        raise WebhookRefused("Webhook must be an http or https URL")
    if parsed.userinfo:
        raise WebhookRefused("Webhook URLs must not carry a user name or password")
    return parsed


async def _addresses(url: httpx.URL, resolver: Resolver) -> list[IPAddress]:
    host = url.host
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass  # a name, not a literal
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = await resolver(host, port)
        found = [ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers]
    except (OSError, ValueError):
        found = []
    if not found:
        raise _Unresolved("Webhook host blocked: DNS resolution failed")
    return list(dict.fromkeys(found))


async def check_webhook(
    url: str, *, settings: WebhookSettings, resolver: Resolver | None = None
) -> list[IPAddress]:
    """The addresses ``url`` may be called at; every address its host resolves to must pass.

    Raises:
        WebhookRefused: a malformed URL, an unresolvable host, or an address the guard refuses.
    """
    parsed = _parse(url)
    addresses = await _addresses(parsed, resolver or _system_resolve)
    policy = _policy(settings)
    for address in addresses:
        reason = check_address(address, policy)
        if reason is None:
            continue
        reason = reason.split(";", 1)[0]
        if not settings.allow_private and check_address(address, _open_policy()) is None:
            reason += " (STAFFGRAPH_WEBHOOK_ALLOW_PRIVATE=true allows loopback and private hosts)"
        raise WebhookRefused(f"Webhook host blocked: {reason}")
    return addresses


def _open_policy() -> HttpPolicy:
    return HttpPolicy(allowed_hosts={"*"}, allow_private_networks=True)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _headers(
    settings: WebhookSettings, body: bytes, *, delivery: str, attempt: int, now: int
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        "X-Staffgraph-Delivery": delivery,
        "X-Staffgraph-Attempt": str(attempt),
    }
    if settings.secret is not None:
        headers[SIGNATURE_HEADER] = sign(settings.secret.get_secret_value(), now, body)
    return headers


async def post_webhook(
    url: str,
    body: bytes,
    *,
    settings: WebhookSettings,
    delivery: str,
    attempt: int,
    now: int,
    resolver: Resolver | None = None,
) -> Attempt:
    """POST ``body`` (JSON) to ``url`` once, at an address the guard accepts, within the timeout.

    Args:
        url: the webhook.
        body: the exact bytes sent (and signed).
        settings: guard, secret and timeout.
        delivery: sent as ``X-Staffgraph-Delivery`` (the run id: the same on every retry).
        attempt: sent as ``X-Staffgraph-Attempt`` (1 for the first).
        now: unix seconds for the signature.
        resolver: replaces the system DNS resolver (tests).
    """
    try:
        parsed = _parse(url)
        addresses = await check_webhook(url, settings=settings, resolver=resolver)
    except WebhookRefused as exc:
        return Attempt(False, isinstance(exc, _Unresolved), error=str(exc))
    headers = _headers(settings, body, delivery=delivery, attempt=attempt, now=now)
    headers["Host"] = parsed.netloc.decode("ascii")
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    last = "no address"
    try:
        async with (
            asyncio.timeout(settings.timeout_seconds),
            httpx.AsyncClient(trust_env=False, follow_redirects=False) as client,
        ):
            for address in addresses:
                pinned = parsed.copy_with(host=str(address))
                try:
                    response = await client.post(
                        pinned, content=body, headers=headers, extensions=extensions
                    )
                except httpx.ConnectError as exc:
                    last = f"cannot connect to {address}: {exc}"
                    continue  # the next vetted address of the same host
                return _judged(response.status_code)
    except TimeoutError:
        return Attempt(False, True, error=f"timed out after {settings.timeout_seconds:g}s")
    except httpx.HTTPError as exc:
        return Attempt(False, True, error=f"{type(exc).__name__}: {exc}"[:500])
    return Attempt(False, True, error=last[:500])


def _judged(status: int) -> Attempt:
    if 200 <= status < 300:
        return Attempt(True, False, status_code=status)
    retry = status >= 500 or status in _RETRY_STATUSES
    return Attempt(False, retry, status_code=status, error=f"the receiver answered {status}")
