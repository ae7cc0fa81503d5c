"""The ``http_get`` tool: fetch a web page for an agent without opening the internal network.

An agent chooses the URL, so every URL is treated as hostile. Before each connection, the
first one and every redirect hop alike, we check:

1. the scheme is ``http`` or ``https`` and the URL carries no credentials;
2. the host is on the operator's allowlist (empty by default, which refuses everything);
3. every address the host resolves to is public, or inside networks the operator opened
   explicitly. "Public" is decided by an explicit deny list (loopback, RFC 1918, link-local,
   CGNAT, unique- and site-local, ``192.0.0.0/24``, documentation, benchmarking and reserved
   ranges, IPv4-compatible ``::/96``, IPv4-translated ``::ffff:0:0:0/96``, local-use NAT64
   ``64:ff9b:1::/48``, Teredo) before Python's ``is_global``; IPv6 forms that carry an IPv4
   address (mapped, 6to4, NAT64) are judged by it. Cloud metadata endpoints (incl. Azure's
   ``168.63.129.16``), unspecified, multicast and broadcast addresses are refused even then.

We then connect to the address we checked, not to the name: the request goes to the IP with
the original ``Host`` header and TLS server name, so a DNS answer that changes between our
check and the connection (DNS rebinding) cannot redirect us. Redirects are followed by hand,
at most five, so each hop goes through the same checks. Bodies are streamed and cut at
``max_bytes``; compressed bodies are inflated under the same limit.
"""

from tools.http_get.fetch import fetch_url
from tools.http_get.policy import (
    HttpGetError,
    HttpPolicy,
    HttpResult,
    Resolver,
    UrlRefusedError,
    check_address,
)
from tools.http_get.tool import make_http_get_tool

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
