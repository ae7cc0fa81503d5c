"""Fetching one URL under a policy: pinned connections, redirects by hand, bounded bodies."""

from __future__ import annotations

import asyncio
import codecs
import re
import zlib
from typing import Any

import httpx

from tools.http_get.policy import (
    _REDIRECT_STATUSES,
    _USER_AGENT,
    HttpGetError,
    HttpPolicy,
    HttpResult,
    IPAddress,
    Resolver,
    _parse,
    _system_resolve,
    _vetted_addresses,
)


def _charset(content_type: str) -> str:
    match = re.search(r"charset=\"?([\w.:-]+)", content_type, re.IGNORECASE)
    if match:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            pass
    return "utf-8"


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if not media or media.startswith("text/"):
        return True
    return media.endswith(("+json", "+xml", "/json", "/xml", "/javascript", "/yaml", "/x-yaml"))


def _inflate(raw: bytes, encoding: str, limit: int) -> tuple[bytes, bool]:
    """Decompress ``raw`` without producing more than ``limit`` bytes (no zip bombs)."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}.get(
        encoding, zlib.MAX_WBITS
    )
    try:
        inflater = zlib.decompressobj(wbits)
        data = inflater.decompress(raw, limit)
    except zlib.error:
        if encoding != "deflate":
            raise HttpGetError("The response body is not valid gzip data.") from None
        try:
            # Some servers send raw deflate without the zlib header.
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(raw, limit)
        except zlib.error:
            raise HttpGetError("The response body is not valid deflate data.") from None
    return data, bool(inflater.unconsumed_tail)


async def _read_body(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
        raise HttpGetError(f"The server sent an unsupported Content-Encoding: {encoding}.")
    compressed = encoding not in ("identity", "")
    raw = bytearray()
    truncated = False
    # Stop reading once past the limit; for a compressed body the inflater enforces the limit
    # again on the output, which can be far larger than the input.
    async for chunk in response.aiter_raw():
        raw.extend(chunk)
        if len(raw) > limit:
            del raw[limit:]
            truncated = True
            break
    if not compressed:
        return bytes(raw), truncated
    data, cut = _inflate(bytes(raw), encoding, limit)
    return data, truncated or cut


class _Fetcher:
    def __init__(self, policy: HttpPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver

    async def fetch(self, url: str) -> HttpResult:
        current = _parse(url)
        redirects: list[str] = []
        timeout = httpx.Timeout(self.policy.timeout)
        async with httpx.AsyncClient(
            trust_env=False,  # a proxy would resolve the name itself, after our check
            follow_redirects=False,
            timeout=timeout,
        ) as client:
            while True:
                addresses = await _vetted_addresses(current, self.policy, self.resolver)
                client.cookies.clear()
                result = await self._request(client, current, addresses, redirects)
                if isinstance(result, HttpResult):
                    return result
                if len(redirects) >= self.policy.max_redirects:
                    raise HttpGetError(
                        f"Too many redirects (more than {self.policy.max_redirects}) from {url}."
                    )
                redirects.append(str(current))
                current = _parse(current.join(result))

    async def _request(
        self,
        client: httpx.AsyncClient,
        url: httpx.URL,
        addresses: list[IPAddress],
        redirects: list[str],
    ) -> HttpResult | str:
        host_header = url.netloc.decode("ascii")
        hostname = url.raw_host.decode("ascii")
        headers = {
            "Host": host_header,
            "User-Agent": _USER_AGENT,
            "Accept": "text/*, application/json;q=0.9, */*;q=0.5",
            "Accept-Encoding": "gzip, deflate",
        }
        extensions: dict[str, Any] = {}
        if url.scheme == "https":
            # TLS must still verify the certificate against the name, not the pinned IP.
            extensions["sni_hostname"] = hostname
        last_error: Exception | None = None
        for address in addresses:
            pinned = url.copy_with(host=str(address))
            try:
                async with client.stream(
                    "GET", pinned, headers=headers, extensions=extensions
                ) as response:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECT_STATUSES and location:
                        return location
                    body, truncated = await _read_body(response, self.policy.max_bytes)
                    content_type = response.headers.get("content-type", "")
                    text = (
                        body.decode(_charset(content_type), errors="replace")
                        if _is_text(content_type)
                        else ""
                    )
                    return HttpResult(
                        url=str(url),
                        status=response.status_code,
                        content_type=content_type,
                        text=text,
                        truncated=truncated,
                        redirects=list(redirects),
                    )
            except httpx.ConnectError as exc:
                last_error = exc  # try the next vetted address of the same host
            except httpx.TimeoutException:
                raise HttpGetError(f"Timed out fetching {url}.") from None
            except httpx.HTTPError as exc:
                raise HttpGetError(f"Fetching {url} failed: {type(exc).__name__}.") from None
        raise HttpGetError(f"Cannot connect to {hostname}: {last_error}.")


async def fetch_url(
    url: str, *, policy: HttpPolicy | None = None, resolver: Resolver | None = None
) -> HttpResult:
    """GET ``url`` under ``policy``, following redirects that pass the same checks.

    Args:
        url: An http or https URL.
        policy: Where we may connect and how much to read; the default refuses every host.
        resolver: Replaces the system DNS resolver, e.g. to pin names in tests.

    Returns:
        The final response: status, content type and (possibly truncated) text.

    Raises:
        UrlRefusedError: The URL or a redirect target is not allowed; nothing was sent to it.
        HttpGetError: Resolution, connection or reading failed, too many redirects, or the
            whole fetch took longer than ``policy.timeout``.
    """
    policy = policy or HttpPolicy()
    fetcher = _Fetcher(policy, resolver or _system_resolve)
    try:
        async with asyncio.timeout(policy.timeout):
            return await fetcher.fetch(url)
    except TimeoutError:
        raise HttpGetError(f"Timed out after {policy.timeout:g}s fetching {url}.") from None
