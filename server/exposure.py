"""Who can reach the server: loopback binds, and the rule that keeps an open server on loopback.

Checked before the port opens, so this module imports nothing heavy: the policy itself (custom
auth's import included) is built later, while the port already answers ``/ok``.
:func:`auth_configured` says ahead of it whether that policy will authenticate.
"""

from __future__ import annotations

import ipaddress

from server.config import LangGraphConfig
from state.settings import Settings

__all__ = ["auth_configured", "is_loopback", "refuse_open_bind"]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_configured(settings: Settings, config: LangGraphConfig) -> bool:
    """Whether requests will be authenticated: ``auth.path`` in langgraph.json or API keys.

    The same choice ``server.auth.setup.build_policy`` makes; an ``auth.path`` that cannot be
    imported fails the start there.
    """
    return bool(config.auth is not None and config.auth.path) or settings.server.auth == "keys"


def refuse_open_bind(settings: Settings, config: LangGraphConfig, *, insecure: bool) -> str | None:
    """The one-line reason not to start, when an unauthenticated server would leave loopback."""
    host = settings.server.host
    if insecure or is_loopback(host) or auth_configured(settings, config):
        return None
    return (
        f"refusing to serve on {host} without authentication: set STAFFGRAPH_AUTH=keys and "
        "create a key with `staffgraph keys create --user ID` (or set auth.path in "
        "langgraph.json); --insecure serves it open anyway"
    )
