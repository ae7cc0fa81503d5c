"""``http_get``: allowlist, address checks after DNS and on every redirect, limits.

A real HTTP server on 127.0.0.1 plays the remote site; tests that need it opt in to loopback
with ``allowed_networks``. Names that should resolve somewhere specific use an injected
resolver, which also proves we connect to the vetted address rather than resolving again.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tools import (
    HttpGetError,
    HttpPolicy,
    UrlRefusedError,
    check_address,
    default_registry,
    fetch_url,
    make_http_get_tool,
)


class _Site(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.paths: list[str] = []
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that stop reading at the size limit break the pipe on purpose


class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/hello":
            self._send(200, b"hello, agent", {"Content-Type": "text/plain; charset=utf-8"})
        elif url.path == "/host":
            body = (self.headers.get("Host") or "").encode()
            self._send(200, body, {"Content-Type": "text/plain"})
        elif url.path == "/latin1":
            self._send(
                200, "café".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"}
            )
        elif url.path == "/json":
            self._send(200, b'{"ok": true}', {"Content-Type": "application/json"})
        elif url.path == "/binary":
            self._send(200, bytes(range(256)), {"Content-Type": "application/octet-stream"})
        elif url.path == "/redirect":
            self._send(302, b"", {"Location": query["to"][0]})
        elif url.path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif url.path == "/big":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(200):
                self.wfile.write(b"x" * 10_000)
        elif url.path == "/bomb":
            body = gzip.compress(b"A" * 10_000_000)
            self._send(200, body, {"Content-Type": "text/plain", "Content-Encoding": "gzip"})
        elif url.path == "/slow":
            self.server.release.wait(10)
            self._send(200, b"late", {"Content-Type": "text/plain"})
        else:
            self._send(404, b"not found", {"Content-Type": "text/plain"})


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    server = _Site()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def base(site: _Site) -> str:
    site.paths.clear()
    site.release.clear()
    return f"http://127.0.0.1:{site.server_address[1]}"


# Loopback is opened narrowly, the way an operator would open one internal range.
LOCAL = HttpPolicy(allowed_hosts={"127.0.0.1"}, allowed_networks=("127.0.0.0/8",))


class FakeDns:
    """A resolver with fixed answers that records what it was asked."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise OSError(f"unknown host {host}")
        return self.answers[host]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://0x7f.1/",
        "http://169.254.169.254/latest/meta-data/",
        "https://example.com/",
    ],
)
async def test_default_policy_refuses_everything(url: str) -> None:
    with pytest.raises(UrlRefusedError) as caught:
        await fetch_url(url)
    assert "not in the allowed hosts (none configured)" in caught.value.reason
    tool = default_registry().get("http_get")
    assert "every URL is refused" in tool.description
    result = await tool.ainvoke({"url": url})
    assert result.startswith(f"http_get: Refused {url}")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://0x7f.1/", "host 0x7f.1 resolves to 127.0.0.1; 127.0.0.1 is a loopback"),
        ("http://2130706433/", "resolves to 127.0.0.1; 127.0.0.1 is a loopback"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://metadata.google.internal/", "metadata.google.internal is a cloud metadata host"),
        ("http://[::ffff:10.0.0.1]/", "10.0.0.1 is a private address"),
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://192.168.0.10:8080/", "192.168.0.10 is a private address"),
        ("http://169.254.10.10/", "169.254.10.10 is a link-local address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a reserved or non-public address"),
        ("http://192.0.2.10/", "192.0.2.10 is a reserved or non-public address"),
        ("http://100.64.1.1/", "100.64.1.1 is a private address"),
        ("http://[fd12::1]/", "fd12::1 is a private address"),
    ],
)
async def test_internal_addresses_refused_even_when_host_is_allowed(url: str, reason: str) -> None:
    with pytest.raises(UrlRefusedError) as caught:
        await fetch_url(url, policy=HttpPolicy(allowed_hosts={"*"}))
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://127.0.0.1/", "only http and https"),
        ("gopher://127.0.0.1:70/", "only http and https"),
        ("http://user:secret@127.0.0.1/", "user names or passwords"),
        ("http:///nohost", "no host"),
        ("http://" + "a" * 2100 + ".com/", "longer than 2048"),
    ],
)
async def test_bad_urls_refused(url: str, reason: str) -> None:
    with pytest.raises(UrlRefusedError) as caught:
        await fetch_url(url, policy=LOCAL)
    assert reason in caught.value.reason


async def test_every_resolved_address_is_checked() -> None:
    dns = FakeDns({"mixed.test": ["93.184.216.34", "10.1.1.1"]})
    policy = HttpPolicy(allowed_hosts={"mixed.test"})
    with pytest.raises(UrlRefusedError) as caught:
        await fetch_url("https://mixed.test/page", policy=policy, resolver=dns)
    assert "host mixed.test resolves to 10.1.1.1; 10.1.1.1 is a private address" in str(
        caught.value
    )
    assert dns.asked == [("mixed.test", 443)]


def test_private_network_opt_in_never_opens_metadata() -> None:
    anything = HttpPolicy(allowed_hosts={"*"}, allow_private_networks=True)
    assert check_address("10.0.0.1", anything) is None
    assert check_address("127.0.0.1", anything) is None
    assert check_address("fd12::1", anything) is None
    assert check_address("240.0.0.1", anything) == "240.0.0.1 is a reserved or non-public address"
    assert (
        check_address("169.254.169.254", anything) == "169.254.169.254 is a cloud metadata address"
    )
    opened = HttpPolicy(allowed_networks=("169.254.0.0/16", "10.0.0.0/8"))
    assert check_address("169.254.169.254", opened) == "169.254.169.254 is a cloud metadata address"
    assert check_address("10.9.9.9", opened) is None
    assert "private" in (check_address("192.168.1.1", opened) or "")
    # IPv6 forms that carry an IPv4 address are judged by it
    assert "loopback" in (check_address("::ffff:127.0.0.1", HttpPolicy()) or "")
    assert "loopback" in (check_address("2002:7f00:1::", HttpPolicy()) or "")  # 6to4
    assert "metadata" in (check_address("64:ff9b::a9fe:a9fe", anything) or "")  # NAT64
    assert check_address("93.184.216.34", HttpPolicy()) is None


# One address in every range of the deny list (issue #11 item 7 named the first six, which
# ``is_global`` alone let through), with the words the refusal must carry, and whether
# ``allow_private_networks`` opens it (internal networks do; reserved and never-open ranges don't).
DENIED_RANGES = [
    ("192.0.0.10", "192.0.0.10 is a reserved", False),  # 192.0.0.0/24 (is_global says yes)
    ("192.0.0.192", "cloud metadata", False),  # 192.0.0.0/24: Oracle Cloud metadata
    ("168.63.129.16", "168.63.129.16 is a cloud metadata address", False),  # Azure WireServer
    ("::127.0.0.1", "127.0.0.1 is a loopback address", False),  # ::/96, always refused
    ("::8.8.8.8", "::808:808 is a reserved", False),  # ::/96 with a public IPv4 address
    ("::ffff:0:7f00:1", "is a reserved", False),  # ::ffff:0:0:0/96 (IPv4-translated)
    ("64:ff9b:1::a00:1", "is a reserved", False),  # 64:ff9b:1::/48 local-use NAT64
    ("fec0::1", "fec0::1 is a private address", True),  # site-local fec0::/10
    ("127.0.0.1", "loopback", True),
    ("127.255.255.254", "loopback", True),
    ("::1", "::1 is a loopback address", True),
    ("10.0.0.1", "private", True),
    ("172.16.0.1", "private", True),
    ("172.31.255.254", "private", True),
    ("192.168.1.1", "private", True),
    ("100.64.0.1", "100.64.0.1 is a private", True),  # CGNAT
    ("100.127.255.254", "private", True),
    ("169.254.1.1", "link-local", True),
    ("169.254.169.254", "cloud metadata", False),
    ("fe80::1", "link-local", True),
    ("fd00::1", "private", True),  # unique local fc00::/7
    ("fc00::1", "private", True),
    ("224.0.0.1", "multicast", False),
    ("239.255.255.250", "multicast", False),
    ("ff02::1", "multicast", False),
    ("255.255.255.255", "255.255.255.255 is a broadcast address", False),
    ("0.0.0.0", "unspecified", False),
    ("0.1.2.3", "0.1.2.3 is an unspecified address", False),  # 0.0.0.0/8
    ("::", "unspecified", False),
    ("240.0.0.1", "reserved", False),
    ("192.0.2.1", "reserved", False),  # documentation
    ("198.51.100.1", "reserved", False),
    ("203.0.113.1", "reserved", False),
    ("198.18.0.1", "reserved", False),  # benchmarking
    ("192.88.99.1", "reserved", False),  # 6to4 relay anycast
    ("2001:db8::1", "reserved", False),  # documentation
    ("3fff::1", "reserved", False),
    ("100::1", "reserved", False),  # discard-only
    ("2001:2::1", "reserved", False),
    ("2001:10::1", "reserved", False),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "reserved", False),  # Teredo (client 10.0.0.1)
    ("2002:a00:1::1", "(embedded in 2002:a00:1::1)", True),
    ("2002:a9fe:a9fe::1", "cloud metadata address (embedded", False),  # 6to4 of the IMDS
    ("64:ff9b::c0a8:101", "192.168.1.1 is a private address", True),  # NAT64
    ("64:ff9b::a9fe:a9fe", "cloud metadata", False),
    ("::ffff:127.0.0.1", "127.0.0.1 is a loopback address", True),
    ("::ffff:169.254.169.254", "cloud metadata", False),
    ("::ffff:192.0.0.10", "192.0.0.10 is a reserved", False),
    ("fe80::1%eth0", "link-local", True),
]


@pytest.mark.parametrize(("address", "reason", "opened_by_private"), DENIED_RANGES)
def test_deny_list_covers_every_range(address: str, reason: str, opened_by_private: bool) -> None:
    refused = check_address(address, HttpPolicy(allowed_hosts={"*"}))
    assert refused is not None and reason in refused
    private = check_address(address, HttpPolicy(allowed_hosts={"*"}, allow_private_networks=True))
    assert (private is None) is opened_by_private, private


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert check_address(address, HttpPolicy(allowed_hosts={"*"})) is None


@pytest.mark.parametrize(
    "literal",
    [
        "192.0.0.10",
        "168.63.129.16",
        "[::127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[64:ff9b:1::a00:1]",
        "[fec0::1]",
    ],
)
async def test_issue_ranges_refused_as_url_literals(literal: str) -> None:
    with pytest.raises(UrlRefusedError):
        await fetch_url(f"http://{literal}/", policy=HttpPolicy(allowed_hosts={"*"}))


@pytest.mark.parametrize(
    "answer",
    [
        "192.0.0.10",
        "168.63.129.16",
        "::127.0.0.1",
        "::ffff:0:7f00:1",
        "64:ff9b:1::a00:1",
        "fec0::1",
    ],
)
async def test_issue_ranges_refused_when_a_name_resolves_to_them(answer: str) -> None:
    dns = FakeDns({"inside.test": ["93.184.216.34", answer]})
    with pytest.raises(UrlRefusedError, match=r"host inside\.test resolves to"):
        await fetch_url("http://inside.test/", policy=HttpPolicy(allowed_hosts={"*"}), resolver=dns)


def test_policy_validates_its_settings() -> None:
    with pytest.raises(ValueError, match="max_redirects"):
        HttpPolicy(max_redirects=6)
    with pytest.raises(ValueError, match="max_bytes"):
        HttpPolicy(max_bytes=0)
    with pytest.raises(ValueError, match="timeout"):
        HttpPolicy(timeout=0)
    with pytest.raises(ValueError):
        HttpPolicy(allowed_networks=("not-a-network",))
    policy = HttpPolicy(allowed_hosts=["Example.COM.", "*.docs.example.org"])
    assert policy.allows_host("example.com")
    assert policy.allows_host("api.docs.example.org")
    assert not policy.allows_host("docs.example.org")
    assert not policy.allows_host("example.com.evil.net")
    assert HttpPolicy(allowed_hosts="one.example").allowed_hosts == frozenset({"one.example"})
    unicode = HttpPolicy(allowed_hosts=["bücher.example", "*.bücher.example"])
    assert unicode.allows_host(httpx.URL("http://bücher.example/").raw_host.decode())
    assert unicode.allows_host("shop.xn--bcher-kva.example")


# --------------------------------------------------------------------------- fetching


async def test_fetches_allowed_host(base: str) -> None:
    result = await fetch_url(f"{base}/hello", policy=LOCAL)
    assert (result.status, result.text, result.truncated) == (200, "hello, agent", False)
    assert result.content_type == "text/plain; charset=utf-8"
    assert result.url == f"{base}/hello"
    tool = make_http_get_tool(policy=LOCAL)
    assert "Only these hosts can be fetched: 127.0.0.1" in tool.description
    payload = json.loads(await tool.ainvoke({"url": f"{base}/json"}))
    assert payload == {
        "url": f"{base}/json",
        "status": 200,
        "content_type": "application/json",
        "text": '{"ok": true}',
        "truncated": False,
    }


def test_tool_also_runs_synchronously(base: str) -> None:
    tool = make_http_get_tool(policy=LOCAL)
    assert json.loads(tool.invoke({"url": f"{base}/hello"}))["text"] == "hello, agent"


async def test_charset_and_binary_bodies(base: str) -> None:
    assert (await fetch_url(f"{base}/latin1", policy=LOCAL)).text == "café"
    binary = await fetch_url(f"{base}/binary", policy=LOCAL)
    assert (binary.status, binary.text) == (200, "")


async def test_connects_to_vetted_address_with_original_host_header(site: _Site) -> None:
    port = site.server_address[1]
    # "service.test" exists only in this resolver: a successful fetch proves the request went
    # to the address we checked, with the name kept in the Host header, and was not resolved
    # a second time by the HTTP client.
    dns = FakeDns({"service.test": ["127.0.0.1"]})
    policy = HttpPolicy(allowed_hosts={"service.test"}, allowed_networks=("127.0.0.0/8",))
    result = await fetch_url(f"http://service.test:{port}/host", policy=policy, resolver=dns)
    assert (result.status, result.text) == (200, f"service.test:{port}")
    assert dns.asked == [("service.test", port)]


async def test_relative_redirect_is_followed(base: str, site: _Site) -> None:
    result = await fetch_url(f"{base}/redirect?to=/hello", policy=LOCAL)
    assert (result.status, result.text) == (200, "hello, agent")
    assert result.url == f"{base}/hello"
    assert result.redirects == [f"{base}/redirect?to=/hello"]
    assert site.paths == ["/redirect?to=/hello", "/hello"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/iam", "169.254.169.254 is a cloud metadata"),
        ("http://[fd00:ec2::254]/latest", "is a cloud metadata address"),
        ("http://10.0.0.7/admin", "10.0.0.7 is a private address"),
        ("http://0.0.0.0:22/", "0.0.0.0 is an unspecified address"),
        ("http://[::127.0.0.1]/", "::7f00:1 is a reserved or non-public address"),
        ("http://168.63.129.16/machine", "168.63.129.16 is a cloud metadata address"),
        ("http://192.0.0.10/", "192.0.0.10 is a reserved"),
        ("http://[64:ff9b:1::a00:1]/", "is a reserved"),
        ("http://[fec0::1]/", "fec0::1 is a private address"),
        ("http://[::ffff:0:7f00:1]/", "is a reserved"),
        ("http://not-allowed.example/", "host not-allowed.example is not in the allowed hosts"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
async def test_redirect_to_forbidden_target_is_refused_before_connecting(
    base: str, site: _Site, target: str, reason: str
) -> None:
    policy = HttpPolicy(
        allowed_hosts={
            "127.0.0.1",
            "169.254.169.254",
            "fd00:ec2::254",
            "10.0.0.7",
            "0.0.0.0",
            "::127.0.0.1",
            "168.63.129.16",
            "192.0.0.10",
            "64:ff9b:1::a00:1",
            "fec0::1",
            "::ffff:0:7f00:1",
        },
        allowed_networks=("127.0.0.0/8",),
    )
    with pytest.raises(UrlRefusedError) as caught:
        await fetch_url(f"{base}/redirect?to={target}", policy=policy)
    assert caught.value.url == str(httpx.URL(target))
    assert reason in caught.value.reason
    assert site.paths == [f"/redirect?to={target}"]


async def test_redirect_to_name_resolving_inside_is_refused(base: str) -> None:
    dns = FakeDns({"intranet.test": ["192.168.1.5"]})
    policy = HttpPolicy(
        allowed_hosts={"127.0.0.1", "intranet.test"}, allowed_networks=("127.0.0.0/8",)
    )
    with pytest.raises(UrlRefusedError) as caught:
        await fetch_url(
            f"{base}/redirect?to=http://intranet.test/wiki", policy=policy, resolver=dns
        )
    assert "host intranet.test resolves to 192.168.1.5; 192.168.1.5 is a private" in str(
        caught.value
    )
    assert dns.asked == [("intranet.test", 80)]


async def test_redirects_are_capped_at_five(base: str, site: _Site) -> None:
    with pytest.raises(HttpGetError, match=r"Too many redirects \(more than 5\)"):
        await fetch_url(f"{base}/loop", policy=LOCAL)
    assert site.paths == ["/loop"] * 6
    site.paths.clear()
    none = HttpPolicy(
        allowed_hosts={"127.0.0.1"}, allowed_networks=("127.0.0.0/8",), max_redirects=0
    )
    with pytest.raises(HttpGetError, match=r"more than 0"):
        await fetch_url(f"{base}/loop", policy=none)
    assert site.paths == ["/loop"]


async def test_size_limit_cuts_big_body(base: str) -> None:
    policy = HttpPolicy(
        allowed_hosts={"127.0.0.1"}, allowed_networks=("127.0.0.0/8",), max_bytes=1000
    )
    result = await fetch_url(f"{base}/big", policy=policy)
    assert result.truncated
    assert result.text == "x" * 1000
    tool = make_http_get_tool(policy=policy)
    payload = json.loads(await tool.ainvoke({"url": f"{base}/big"}))
    assert payload["truncated"] is True
    assert len(payload["text"]) == 1000


async def test_size_limit_applies_after_decompression(base: str) -> None:
    policy = HttpPolicy(
        allowed_hosts={"127.0.0.1"}, allowed_networks=("127.0.0.0/8",), max_bytes=5000
    )
    result = await fetch_url(f"{base}/bomb", policy=policy)
    assert result.truncated
    assert result.text == "A" * 5000


async def test_whole_fetch_times_out(base: str, site: _Site) -> None:
    policy = HttpPolicy(allowed_hosts={"127.0.0.1"}, allowed_networks=("127.0.0.0/8",), timeout=0.3)
    try:
        with pytest.raises(HttpGetError, match="Timed out"):
            await fetch_url(f"{base}/slow", policy=policy)
    finally:
        site.release.set()


async def test_unresolvable_and_unreachable_hosts_are_reported(site: _Site) -> None:
    dns = FakeDns({})
    policy = HttpPolicy(allowed_hosts={"*"}, allowed_networks=("127.0.0.0/8",))
    with pytest.raises(HttpGetError, match="Cannot resolve host nowhere.test"):
        await fetch_url("http://nowhere.test/", policy=policy, resolver=dns)
    # Port 1 on loopback has no listener: a connection error, reported as text.
    tool = make_http_get_tool(policy=policy)
    assert (await tool.ainvoke({"url": "http://127.0.0.1:1/"})).startswith(
        "http_get: Cannot connect to 127.0.0.1"
    )
