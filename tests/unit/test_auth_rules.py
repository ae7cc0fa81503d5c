"""Owner rules, store namespace ownership, the bind rule and custom-auth handler choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from langgraph_sdk import Auth

from server.auth import Caller, CustomAuthError, CustomPolicy, matches
from server.auth.custom import _caller
from server.auth.filters import check_filter
from server.auth.identity import ROLE_PERMISSIONS, AuthUser
from server.auth.policy import owner_rules
from server.auth.setup import build_policy
from server.auth.store_scope import allowed, owned, scoped_prefixes
from server.config import load_config
from server.exposure import auth_configured, is_loopback, refuse_open_bind
from state.settings import Settings

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def member(name: str, role: str = "member") -> Caller:
    return Caller(identity=name, permissions=ROLE_PERMISSIONS[role])


def test_filters_match_exact_eq_contains_and_or() -> None:
    meta = {"owner": "a", "tags": ["x", "y"], "n": None}
    assert matches({"owner": "a"}, meta) and not matches({"owner": "b"}, meta)
    assert matches({"owner": {"$eq": "a"}}, meta)
    assert matches({"tags": {"$contains": "x"}}, meta)
    assert matches({"tags": {"$contains": ["y", "x"]}}, meta)
    assert not matches({"tags": {"$contains": ["x", "z"]}}, meta)
    assert not matches({"owner": {"$contains": "a"}}, meta)  # not a list
    assert not matches({"missing": None}, meta) and matches({"n": None}, meta)
    assert matches({"$or": [{"owner": "b"}, {"tags": {"$contains": "y"}}]}, meta)
    assert matches(None, {}) and not matches({"owner": "a"}, None)
    with pytest.raises(HTTPException) as bad:
        check_filter({"owner": {"$gt": 1}})
    assert bad.value.status_code == 500


def test_owner_rules_stamp_scope_and_protect_system_assistants() -> None:
    alice = member("alice")
    value: dict[str, Any] = {"metadata": {"owner": "mallory", "created_by": "system"}}
    assert owner_rules(alice, "assistants", "create", value) is None
    assert value["metadata"] == {"owner": "alice"}
    patch: dict[str, Any] = {"metadata": {"owner": "bob", "x": 1}}
    assert owner_rules(alice, "threads", "update", patch) == {"owner": "alice"}
    assert patch["metadata"] == {"x": 1}
    read = owner_rules(alice, "assistants", "read", {})
    assert matches(read, {"created_by": "system"}) and not matches(read, {"owner": "bob"})
    assert owner_rules(member("root", "admin"), "threads", "read", {}) is None
    with pytest.raises(HTTPException) as denied:
        owner_rules(member("vera", "viewer"), "threads", "create", {})
    assert denied.value.status_code == 403
    assert owner_rules(Caller("", enforced=False), "threads", "delete", {}) is None


def test_store_namespaces_belong_to_their_user() -> None:
    assert owned(("alice", "notes"), "alice")
    assert owned(("users", "alice"), "alice") and owned(("memories", "user:alice", "x"), "alice")
    assert not owned(("bob", "notes"), "alice") and not owned(("memories", "user:bob"), "alice")
    assert not owned(("users", "bob"), "users")  # a user named "users" owns nobody else's
    assert allowed(("shared", "docs"), "alice", shared=True)
    assert not allowed(("shared", "docs"), "alice", shared=False)
    assert not allowed(("memories", "org:acme"), "alice", shared=False)
    assert scoped_prefixes(("alice",), "alice", shared=False) == [("alice",)]
    assert ("memories", "user:alice") in scoped_prefixes(("memories",), "alice", shared=False)
    assert scoped_prefixes(("bob",), "alice", shared=False) == []
    assert ("alice", "x") in scoped_prefixes(("*", "x"), "alice", shared=False)
    assert not any(p[:1] == ("*",) for p in scoped_prefixes(("*",), "*", shared=False))


def test_open_server_only_on_loopback() -> None:
    settings = Settings()
    config = load_config(SUPPORT / "langgraph.json")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    settings.server = settings.server.model_copy(update={"host": "0.0.0.0"})
    reason = refuse_open_bind(settings, config, insecure=False)
    assert reason is not None and "STAFFGRAPH_AUTH=keys" in reason
    assert refuse_open_bind(settings, config, insecure=True) is None
    keys = settings.model_copy(deep=True)
    keys.server = keys.server.model_copy(update={"auth": "keys"})
    assert refuse_open_bind(keys, config, insecure=False) is None
    custom = load_config(SUPPORT / "auth" / "langgraph_owner.json")
    assert refuse_open_bind(settings, custom, insecure=False) is None


def test_the_bind_rule_predicts_the_policy_built_later() -> None:
    # The rule is checked before the port opens; the policy is built after it, in the
    # background. Both must agree on whether requests are authenticated.
    open_config = load_config(SUPPORT / "langgraph.json")
    custom = load_config(SUPPORT / "auth" / "langgraph_owner.json")
    for mode in ("none", "keys"):
        settings = Settings()
        settings.server = settings.server.model_copy(update={"auth": mode})
        for config in (open_config, custom):
            expected = build_policy(settings, config).enabled
            assert auth_configured(settings, config) is expected, (mode, config.auth)


async def test_custom_policy_picks_the_most_specific_handler() -> None:
    auth = Auth()
    calls: list[str] = []

    @auth.authenticate
    async def authenticate(authorization: str | None) -> str:
        return "u"

    @auth.on
    async def everything(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> bool:
        calls.append("global")
        return False

    @auth.on.threads
    async def threads(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, Any]:
        calls.append(f"threads.{ctx.action}")
        return {"owner": ctx.user.identity}

    @auth.on.threads.create
    async def create(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
        calls.append("threads.create")
        value.setdefault("metadata", {})["owner"] = ctx.user.identity

    policy = CustomPolicy(auth, studio_auth=False)
    caller = _caller("u")
    value: dict[str, Any] = {}
    assert await policy.authorize(caller, "threads", "create", value) is None
    assert value == {"metadata": {"owner": "u"}}
    assert await policy.authorize(caller, "threads", "read", {}) == {"owner": "u"}
    with pytest.raises(HTTPException) as denied:
        await policy.authorize(caller, "assistants", "read", {})
    assert denied.value.status_code == 403
    assert calls == ["threads.create", "threads.read", "global"]


def test_authenticate_results_and_bad_auth_objects() -> None:
    assert _caller("alice").identity == "alice" and _caller("alice").permissions == ()
    as_dict = _caller({"identity": "bob", "permissions": ["admin"], "team": "x"})
    assert as_dict.is_admin and as_dict.fields["team"] == "x"
    assert isinstance(as_dict.user, AuthUser) and as_dict.user.team == "x"

    class User:
        identity = "carol"
        permissions = ("p",)
        display_name = "Carol"

    as_object = _caller(User())
    assert as_object.identity == "carol" and as_object.fields["display_name"] == "Carol"
    with pytest.raises(HTTPException):
        _caller({"name": "no identity"})
    with pytest.raises(CustomAuthError, match="langgraph_sdk.Auth"):
        CustomPolicy(object(), studio_auth=False)
    with pytest.raises(CustomAuthError, match="no @auth.authenticate"):
        CustomPolicy(Auth(), studio_auth=False)
