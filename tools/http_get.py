"""The ``http_get`` tool: fetch a web page for an agent without opening the internal network.

An agent chooses the URL, so every URL is treated as hostile. Before each connection, the
first one and every redirect hop alike, we check:

1. the scheme is ``http`` or ``https`` and the URL carries no credentials;
2. the host is on the operator's allowlist (empty by default, which refuses everything);
3. every address the host resolves to is public, or inside networks the operator opened
   explicitly. Cloud metadata endpoints, unspecified and multicast addresses are refused even
   then.

We then connect to the address we checked, not to the name: the request goes to the IP with
the original ``Host`` header and TLS server name, so a DNS answer that changes between our
check and the connection (DNS rebinding) cannot redirect us. Redirects are followed by hand,
at most five, so each hop goes through the same checks. Bodies are streamed and cut at
``max_bytes``; compressed bodies are inflated under the same limit.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import ipaddress
import json
import re
import socket
import zlib
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import httpx
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from state.tool_risk import ToolRisk

__all__ = [
    "HttpGetError",
    "HttpPolicy",
    "HttpResult",
    "Resolver",
    "UrlRefusedError",
    "check_address",
    "fetch_url",
    "make_http_get_tool",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Async ``(host, port) -> addresses`` used instead of the system resolver (tests, custom DNS)."""

MAX_URL_CHARS = 2048
_MAX_BYTES_LIMIT = 50_000_000
_MAX_TIMEOUT = 120.0
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "staffgraph-http-get/0.1"

# Instance metadata services hand out credentials; no operator setting opens them.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
_METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, used inside some clouds and VPNs
        "fc00::/7",  # unique local IPv6
    )
)


class HttpGetError(Exception):
    """A fetch that failed: unreachable host, timeout, bad response. The message says which."""


class UrlRefusedError(HttpGetError):
    """A URL the policy does not allow; raised before any connection to it is made.

    Attributes:
        url: The refused URL (the redirect target when a redirect was refused).
        reason: Why, in words an agent and an operator can act on.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Refused {url}: {reason}")


@dataclass(frozen=True, kw_only=True)
class HttpPolicy:
    """Where ``http_get`` may connect and how much it may read.

    The default refuses every URL: an operator opts in host by host.

    Attributes:
        allowed_hosts: Host names or IP literals that may be fetched. ``"*.example.com"``
            matches sub-domains of example.com (not example.com itself); ``"*"`` matches any
            host, leaving only the address checks.
        allow_private_networks: Also allow loopback, private (RFC 1918, ULA), link-local,
            and carrier-grade NAT addresses, for deployments that fetch internal services.
            Metadata, unspecified and multicast addresses stay refused.
        allowed_networks: CIDR ranges opened explicitly, e.g. ``("10.20.0.0/16",)``; narrower
            than ``allow_private_networks``. Metadata addresses stay refused.
        max_bytes: Most body bytes read (after decompression); the rest is cut off.
        max_redirects: Most redirects followed (0 to 5).
        timeout: Seconds for the whole fetch, redirects and DNS included.
    """

    allowed_hosts: Collection[str] = frozenset()
    allow_private_networks: bool = False
    allowed_networks: Collection[str | IPNetwork] = ()
    max_bytes: int = 1_000_000
    max_redirects: int = _MAX_REDIRECTS
    timeout: float = 10.0
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalise once so lookups are exact and the frozen policy is hashable.
        hosts = frozenset(_normalise_host(host) for host in _as_iterable(self.allowed_hosts))
        object.__setattr__(self, "allowed_hosts", hosts)
        networks = tuple(
            ipaddress.ip_network(network, strict=False)
            for network in _as_iterable(self.allowed_networks)
        )
        object.__setattr__(self, "allowed_networks", tuple(str(n) for n in networks))
        object.__setattr__(self, "_networks", networks)
        if not 1 <= self.max_bytes <= _MAX_BYTES_LIMIT:
            raise ValueError(f"max_bytes must be between 1 and {_MAX_BYTES_LIMIT}")
        if not 0 <= self.max_redirects <= _MAX_REDIRECTS:
            raise ValueError(f"max_redirects must be between 0 and {_MAX_REDIRECTS}")
        if not 0 < self.timeout <= _MAX_TIMEOUT:
            raise ValueError(f"timeout must be more than 0 and at most {_MAX_TIMEOUT} seconds")

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (a name or IP literal) is on the allowlist."""
        host = _normalise_host(host)
        for allowed in self.allowed_hosts:
            if allowed == "*" or allowed == host:
                return True
            if allowed.startswith("*.") and host.endswith(allowed[1:]):
                return True
        return False


def _as_iterable(value: Any) -> Iterable[Any]:
    # A lone string is a single entry, not a sequence of one-letter hosts.
    return (value,) if isinstance(value, str) else value


def _normalise_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host.isascii():
        # URLs reach us IDNA-encoded (xn--...); allowlist entries may be written in Unicode.
        wildcard = host.startswith("*.")
        labels = host[2:] if wildcard else host
        host = ("*." if wildcard else "") + labels.encode("idna").decode("ascii")
    return host


@dataclass(frozen=True)
class HttpResult:
    """What ``http_get`` fetched."""

    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    text: str
    """The body as text; empty for non-text content types."""
    truncated: bool
    """True when the body was longer than ``max_bytes`` and was cut."""
    redirects: list[str]
    """The URLs redirected through, in order."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_address(address: IPAddress | str, policy: HttpPolicy) -> str | None:
    """Return why ``policy`` refuses connecting to ``address``, or None when it is allowed.

    IPv6 addresses that embed an IPv4 address (mapped, 6to4, NAT64) are judged by the IPv4
    address too, so ``::ffff:127.0.0.1`` is loopback.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = check_address(embedded, policy)
            return f"{reason} (embedded in {ip})" if reason else None
    never = _never_allowed(ip)
    if never is not None:
        return never
    if any(ip in network for network in policy._networks):
        return None
    kind = _internal_kind(ip)
    if kind is None:
        return None
    if kind == "reserved":
        # Reserved, documentation, benchmarking and protocol ranges: no real host lives there,
        # so allow_private_networks does not open them (allowed_networks can).
        return f"{ip} is a reserved or non-public address"
    if policy.allow_private_networks:
        return None
    return (
        f"{ip} is a {kind} address; set allow_private_networks or allowed_networks "
        "in the HttpPolicy to fetch internal hosts"
    )


def _never_allowed(ip: IPAddress) -> str | None:
    """Why no policy may open ``ip`` (metadata, unspecified, multicast), or None."""
    if ip in _METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_unspecified:
        return f"{ip} is an unspecified address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    return None


def _internal_kind(ip: IPAddress) -> str | None:
    """``loopback``, ``link-local``, ``private`` or ``reserved``; None for a public address."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if any(ip in network for network in _PRIVATE_NETWORKS):
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


async def _system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _parse(url: str | httpx.URL) -> httpx.URL:
    text = str(url)
    if len(text) > MAX_URL_CHARS:
        raise UrlRefusedError(text[:80] + "...", f"URL is longer than {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UrlRefusedError(text, f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise UrlRefusedError(text, "only http and https URLs can be fetched")
    if not parsed.host:
        raise UrlRefusedError(text, "the URL has no host")
    if parsed.userinfo:
        raise UrlRefusedError(text, "URLs with user names or passwords are not allowed")
    return parsed


async def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass  # a name, not a literal
    try:
        answers = await resolver(host, port)
        addresses = [ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers]
    except (OSError, ValueError) as exc:
        raise HttpGetError(f"Cannot resolve host {host}: {exc}") from None
    if not addresses:
        raise HttpGetError(f"Cannot resolve host {host}: no addresses")
    return addresses


async def _vetted_addresses(
    url: httpx.URL, policy: HttpPolicy, resolver: Resolver
) -> list[IPAddress]:
    host = _normalise_host(url.raw_host.decode("ascii"))
    if host in _METADATA_HOSTNAMES:
        raise UrlRefusedError(str(url), f"{host} is a cloud metadata host")
    if not policy.allows_host(host):
        allowed = ", ".join(sorted(policy.allowed_hosts)) or "none configured"
        raise UrlRefusedError(str(url), f"host {host} is not in the allowed hosts ({allowed})")
    addresses = await _resolve(host, url.port or (443 if url.scheme == "https" else 80), resolver)
    # Every answer must pass: a name with one public and one internal address could be
    # answered either way on the next lookup.
    literal = len(addresses) == 1 and str(addresses[0]) == host
    for address in addresses:
        reason = check_address(address, policy)
        if reason:
            if not literal:
                reason = f"host {host} resolves to {address}; {reason}"
            raise UrlRefusedError(str(url), reason)
    return list(dict.fromkeys(addresses))


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


class HttpGetInput(BaseModel):
    """Arguments of the ``http_get`` tool."""

    url: str = Field(description="The http or https URL to fetch.", max_length=MAX_URL_CHARS)


_T = TypeVar("_T")


def _run_blocking(coroutine_factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from synchronous code.

    It runs on its own thread and loop, so it works whether or not the calling thread already
    runs an event loop, and leaves that thread's loop untouched.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_factory())).result()


def make_http_get_tool(
    *, policy: HttpPolicy | None = None, resolver: Resolver | None = None
) -> BaseTool:
    """Return an ``http_get`` tool (risk ``external``) bound to ``policy``.

    Args:
        policy: Allowed hosts, address rules and limits. The default allows no host, so the
            tool refuses every URL until an operator configures one.
        resolver: Replaces the system DNS resolver.

    Returns:
        The tool. It returns JSON ``{url, status, content_type, truncated, text}`` and reports
        refusals and failures as text the agent can read.
    """
    policy = policy or HttpPolicy()

    async def http_get(url: str) -> str:
        try:
            result = await fetch_url(url, policy=policy, resolver=resolver)
        except HttpGetError as exc:
            raise ToolException(f"http_get: {exc}") from None
        payload = asdict(result)
        payload.pop("redirects")
        return json.dumps(payload, ensure_ascii=False)

    def http_get_sync(url: str) -> str:
        return _run_blocking(lambda: http_get(url))

    if policy.allowed_hosts:
        hosts = ", ".join(sorted(policy.allowed_hosts))
        scope = f"Only these hosts can be fetched: {hosts}."
    else:
        scope = "No hosts are configured yet, so every URL is refused."
    return StructuredTool.from_function(
        func=http_get_sync,
        coroutine=http_get,
        name="http_get",
        description=(
            "Fetch a web page or API response over HTTP(S) GET and return its status, content "
            f"type and text (cut at {policy.max_bytes} bytes). {scope}"
        ),
        args_schema=HttpGetInput,
        metadata={"risk": ToolRisk.EXTERNAL.value},
        handle_tool_error=True,
    )
