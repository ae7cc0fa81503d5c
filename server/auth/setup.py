"""Choosing the auth policy at start-up (the open-bind rule is in :mod:`server.exposure`)."""

from __future__ import annotations

import logging

from server.auth.custom import CustomAuthError, CustomPolicy
from server.auth.policy import KeyPolicy, OpenPolicy, Policy
from server.config import LangGraphConfig
from server.exposure import is_loopback
from server.graphs import GraphLoadError, import_object
from state.roles import default_roles_dir, load_organization
from state.roles.approvals import ApprovalPolicy
from state.settings import Settings
from tools.registry import default_registry

__all__ = ["approval_policy", "build_policy"]

log = logging.getLogger(__name__)


def build_policy(settings: Settings, config: LangGraphConfig) -> Policy:
    """``auth.path`` custom auth if configured, else keys (``STAFFGRAPH_AUTH=keys``), else none.

    Raises:
        CustomAuthError: ``auth.path`` cannot be imported or is not a usable ``Auth``.
    """
    auth = config.auth
    if auth is not None and auth.path:
        if settings.server.auth == "keys":
            log.warning("auth.path is set in langgraph.json: it is used instead of API keys")
        try:
            obj = import_object(config, auth.path, what="auth.path")
        except GraphLoadError as exc:
            raise CustomAuthError(str(exc)) from None
        studio = not auth.disable_studio_auth and is_loopback(settings.server.host)
        return CustomPolicy(obj, studio_auth=studio)
    if settings.server.auth == "keys":
        return KeyPolicy()
    return OpenPolicy()


def approval_policy() -> ApprovalPolicy:
    """Who may decide at each approval gate: the organisation's ``approvals:`` section.

    Read from the organisation the graphs are built from (``state/roles/default``).

    Raises:
        RoleDefinitionError: The organisation's YAML is invalid (the graphs fail as well).
    """
    return load_organization(default_roles_dir(), registry=default_registry()).approvals
