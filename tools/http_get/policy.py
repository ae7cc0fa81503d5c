"""What ``http_get`` may reach: the operator's policy, address checks, and vetted DNS answers."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

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
        "168.63.129.16",  # Azure WireServer (a public address, reachable from every VM)
        "192.0.0.192",  # Oracle Cloud metadata
    )
)
_METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(network), kind) for network, kind in rows)


# No policy opens these. The kind completes "<ip> is a/an <kind> address".
_NEVER_NETWORKS = _table(
    ("0.0.0.0/8", "unspecified"),  # "this network": 0.x.x.x reaches the local host
    ("::/128", "unspecified"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("255.255.255.255/32", "broadcast"),
)
# The explicit deny list, checked before Python's ``is_global`` (which some of these pass:
# 192.0.0.9, ::ffff:0:7f00:1, 64:ff9b:1::/48, fec0::/10, ::/96). ``loopback``, ``link-local`` and
# ``private`` are opened by ``allow_private_networks``; ``reserved`` ranges only by
# ``allowed_networks``. More specific ranges come first.
_DENIED_NETWORKS = _table(
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "private"),  # carrier-grade NAT, used inside some clouds and VPNs
    ("fc00::/7", "private"),  # unique local
    ("fec0::/10", "private"),  # site-local (deprecated, still routed on some networks)
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments (incl. NAT64 and DS-Lite hosts)
    ("192.0.2.0/24", "reserved"),  # documentation
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),  # documentation
    ("203.0.113.0/24", "reserved"),  # documentation
    ("240.0.0.0/4", "reserved"),  # future use
    ("::/96", "reserved"),  # IPv4-compatible (deprecated): ::127.0.0.1
    ("::ffff:0:0:0/96", "reserved"),  # IPv4-translated (SIIT)
    ("64:ff9b:1::/48", "reserved"),  # local-use NAT64: translates into private networks
    ("100::/64", "reserved"),  # discard-only
    ("2001::/32", "reserved"),  # Teredo: tunnels to an embedded IPv4 address
    ("2001:2::/48", "reserved"),  # benchmarking
    ("2001:10::/28", "reserved"),  # ORCHID
    ("2001:20::/28", "reserved"),  # ORCHIDv2
    ("2001:db8::/32", "reserved"),  # documentation
    ("3fff::/20", "reserved"),  # documentation
    ("5f00::/16", "reserved"),  # SRv6 segment identifiers
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


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
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, IPv4-compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_address(address: IPAddress | str, policy: HttpPolicy) -> str | None:
    """Return why ``policy`` refuses connecting to ``address``, or None when it is allowed.

    Every address is judged by an explicit deny list (loopback, private, link-local, CGNAT,
    site-local, reserved, documentation and protocol ranges; metadata, unspecified, multicast
    and broadcast addresses whatever the policy), then by ``is_global``. IPv6 addresses that
    embed an IPv4 address (mapped, 6to4, NAT64, IPv4-compatible) are judged by the IPv4
    address too, so ``::ffff:127.0.0.1`` is loopback.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = check_address(embedded, policy)
            if reason:
                return f"{reason} (embedded in {ip})"
            if ip not in _IPV4_COMPATIBLE:
                return None  # a translation of a public IPv4 address
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
    """Why no policy may open ``ip`` (metadata, unspecified, multicast, broadcast), or None."""
    if ip in _METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    for network, kind in _NEVER_NETWORKS:
        if ip in network:
            article = "an" if kind[0] in "aeiou" else "a"
            return f"{ip} is {article} {kind} address"
    return None


def _internal_kind(ip: IPAddress) -> str | None:
    """``loopback``, ``link-local``, ``private`` or ``reserved``; None for a public address."""
    for network, kind in _DENIED_NETWORKS:
        if ip in network:
            return kind
    if not ip.is_global:
        return "reserved"  # anything else the IANA registries call non-global
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
