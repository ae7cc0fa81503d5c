"""Store endpoints of the LangGraph Server API: items, search (vector and listing), namespaces.

They are a thin HTTP face on the store the lifespan opened (LangGraph's ``AsyncPostgresStore``,
the same memory graphs read and write), so an item put here is what a graph's
``runtime.store`` sees. Every input is validated (``server.schemas_store``) before the store is
touched, so a rejected request changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from langgraph.store.base import NOT_PROVIDED

from server.auditing import actor_of
from server.auth import Access, protect
from server.auth.store_scope import allowed, governed, scoped_prefixes
from server.deps import Ctx
from server.json_body import JsonRoute
from server.schemas_store import (
    MAX_KEY_CHARS,
    MAX_NAMESPACE_DEPTH,
    ItemOut,
    ListNamespacesRequest,
    ListNamespacesResponse,
    SearchItemsRequest,
    SearchItemsResponse,
    StoreDeleteRequest,
    StorePutRequest,
    check_label,
    check_text,
)
from state.memory.deletes import delete_item_audited

__all__ = ["parse_namespace_query", "router"]

router = APIRouter(tags=["Store"], route_class=JsonRoute)

_JSON = "application/json"


def _json(content: Any) -> Response:
    # Store values are plain JSON (they came out of jsonb), so orjson needs no fallbacks, and
    # skipping FastAPI's jsonable_encoder keeps large search pages cheap.
    return Response(content=orjson.dumps(content), media_type=_JSON)


def parse_namespace_query(values: list[str]) -> tuple[str, ...]:
    """The namespace of ``GET /store/items`` from its query parameters.

    ``langgraph_sdk`` sends one ``namespace=a.b`` (labels joined with ``.``); other clients
    repeat the parameter, one label each (``namespace=a&namespace=b``). Both are accepted.

    Raises:
        HTTPException: 422 when the namespace is missing, too deep or has an unusable label.
    """
    if not values:
        raise HTTPException(422, detail="query.namespace: required, e.g. ?namespace=users.u1")
    labels = values[0].split(".") if len(values) == 1 else values
    if len(labels) > MAX_NAMESPACE_DEPTH:
        raise HTTPException(
            422, detail=f"query.namespace: at most {MAX_NAMESPACE_DEPTH} labels are allowed"
        )
    try:
        return tuple(check_label(label) for label in labels)
    except ValueError as exc:
        # check_label's messages are ours, written for clients; nothing internal leaks.
        raise HTTPException(422, detail=f"query.namespace: {exc}") from None


def _checked_namespace(value: dict[str, Any], field: str = "namespace") -> tuple[str, ...]:
    """The namespace after the auth handler (which may rewrite it), validated again."""
    namespace = value.get(field) or ()
    if not isinstance(namespace, list | tuple) or len(namespace) > MAX_NAMESPACE_DEPTH:
        raise HTTPException(422, detail="Auth handler returned an invalid namespace")
    try:
        return tuple(check_label(label) for label in namespace)
    except ValueError as exc:
        raise HTTPException(422, detail=f"namespace: {exc}") from None


async def _scope(access: Access, value: dict[str, Any]) -> bool:
    """Authorize; True when the caller is limited to their own (and shared) namespaces."""
    return await access.check(value) is not None


def _may_use(access: Access, namespace: tuple[str, ...]) -> bool:
    return allowed(namespace, access.caller.identity, shared=access.shared_store)


def _writable(access: Access, namespace: tuple[str, ...]) -> None:
    """403 for a namespace that changes only through governance (whoever asks)."""
    if governed(namespace):
        raise HTTPException(
            403,
            detail=f"Namespace {list(namespace)} changes only through the governance graph "
            "(procedural memory and role versions need a human's approval): run the "
            "'governance' graph instead of writing to the store",
        )


@router.put("/store/items", status_code=204, response_class=Response)
async def put_item(
    body: StorePutRequest, ctx: Ctx, access: Annotated[Access, protect("store", "put")]
) -> Response:
    """Store or replace an item; it is indexed for vector search unless ``index`` is false.

    With auth on, only into the caller's own namespaces (shared ones need ``store:shared``).
    """
    # A missing ``ttl`` means the store's default TTL; an explicit null means "never expires".
    ttl = body.ttl if "ttl" in body.model_fields_set else NOT_PROVIDED
    value: dict[str, Any] = {
        "namespace": tuple(body.namespace),
        "key": body.key,
        "value": body.value,
        "index": body.index,
        "ttl": body.ttl,
    }
    scoped = await _scope(access, value)
    namespace = _checked_namespace(value)
    _writable(access, namespace)
    if scoped and not _may_use(access, namespace):
        raise HTTPException(403, detail=f"Namespace {list(namespace)} is not yours")
    await ctx.persistence.store.aput(namespace, body.key, body.value, index=body.index, ttl=ttl)
    return Response(status_code=204)


@router.get(
    "/store/items",
    response_class=Response,
    responses={200: {"model": ItemOut, "description": "The item."}},
)
async def get_item(
    ctx: Ctx,
    access: Annotated[Access, protect("store", "get")],
    key: Annotated[str, Query(min_length=1, max_length=MAX_KEY_CHARS)],
    namespace: Annotated[
        list[str] | None,
        Query(description="Labels joined by '.' (a.b), or one label per repeated parameter."),
    ] = None,
    refresh_ttl: Annotated[
        bool | None, Query(description="Refresh the item's TTL; unset: store default.")
    ] = None,
) -> Response:
    """One item by namespace and key; ``null`` when there is none (as the official server)."""
    path = parse_namespace_query(namespace or [])
    try:
        check_text(key, "key")
    except ValueError as exc:
        raise HTTPException(422, detail=f"query.key: {exc}") from None
    value: dict[str, Any] = {"namespace": path, "key": key, "refresh_ttl": refresh_ttl}
    scoped = await _scope(access, value)
    path = _checked_namespace(value)
    if scoped and not _may_use(access, path):
        return _json(None)  # another user's item answers exactly like a missing one
    item = await ctx.persistence.store.aget(path, key, refresh_ttl=refresh_ttl)
    if item is None:
        return _json(None)
    return _json(item.dict())


@router.delete("/store/items", status_code=204, response_class=Response)
async def delete_item(
    body: StoreDeleteRequest, ctx: Ctx, access: Annotated[Access, protect("store", "delete")]
) -> Response:
    """Delete an item; deleting one that does not exist is not an error.

    A deletion is recorded in the audit log (``memory.deleted``) in the same transaction.
    """
    value: dict[str, Any] = {"namespace": tuple(body.namespace), "key": body.key}
    scoped = await _scope(access, value)
    namespace = _checked_namespace(value)
    _writable(access, namespace)
    if scoped and not _may_use(access, namespace):
        raise HTTPException(403, detail=f"Namespace {list(namespace)} is not yours")
    await delete_item_audited(
        ctx.persistence.pool, namespace, body.key, actor=actor_of(access.caller)
    )
    return Response(status_code=204)


@router.post(
    "/store/items/search",
    response_class=Response,
    responses={200: {"model": SearchItemsResponse, "description": "Matching items."}},
)
async def search_items(
    body: SearchItemsRequest, ctx: Ctx, access: Annotated[Access, protect("store", "search")]
) -> Response:
    """Items under a namespace prefix: newest first, or by similarity to ``query``.

    ``score`` is the cosine similarity to the query, null when no query was given (or the
    store has no vector index). With auth on, only the caller's namespaces are searched.
    """
    value: dict[str, Any] = {
        "namespace": tuple(body.namespace_prefix or ()),
        "filter": body.filter,
        "limit": body.limit,
        "offset": body.offset,
        "query": body.query,
        "refresh_ttl": body.refresh_ttl,
    }
    scoped = await _scope(access, value)
    prefix = _checked_namespace(value)
    prefixes = (
        scoped_prefixes(prefix, access.caller.identity, shared=access.shared_store)
        if scoped
        else [prefix]
    )
    found = []
    for each in prefixes:
        # Each prefix gives its best offset+limit; the merged page is cut below.
        found += await ctx.persistence.store.asearch(
            each,
            query=body.query,
            filter=body.filter,
            limit=body.limit + (body.offset if len(prefixes) > 1 else 0),
            offset=0 if len(prefixes) > 1 else body.offset,
            refresh_ttl=body.refresh_ttl,
        )
    if len(prefixes) > 1:
        found.sort(key=lambda item: (item.score or 0.0, item.updated_at), reverse=True)
        found = found[body.offset : body.offset + body.limit]
    return _json({"items": [item.dict() for item in found]})


@router.post(
    "/store/namespaces",
    response_class=Response,
    responses={200: {"model": ListNamespacesResponse, "description": "Namespaces."}},
)
async def list_namespaces(
    body: ListNamespacesRequest,
    ctx: Ctx,
    access: Annotated[Access, protect("store", "list_namespaces")],
) -> Response:
    """Namespaces that hold items, sorted, optionally matched by prefix/suffix and truncated.

    With auth on, only the caller's namespaces are listed.
    """
    value: dict[str, Any] = {
        "namespace": tuple(body.prefix) if body.prefix else None,
        "suffix": tuple(body.suffix) if body.suffix else None,
        "max_depth": body.max_depth,
        "limit": body.limit,
        "offset": body.offset,
    }
    scoped = await _scope(access, value)
    prefix = _checked_namespace(value) or None
    if not scoped:
        prefixes: list[tuple[str, ...] | None] = [prefix]
    else:
        identity, shared = access.caller.identity, access.shared_store
        prefixes = list(scoped_prefixes(prefix or (), identity, shared=shared))
    merged: set[tuple[str, ...]] = set()
    for each in prefixes:
        merged.update(
            await ctx.persistence.store.alist_namespaces(
                prefix=each,
                suffix=tuple(body.suffix) if body.suffix else None,
                max_depth=body.max_depth,
                limit=body.limit + (body.offset if len(prefixes) > 1 else 0),
                offset=0 if len(prefixes) > 1 else body.offset,
            )
        )
    namespaces = sorted(merged)
    if len(prefixes) > 1:
        namespaces = namespaces[body.offset : body.offset + body.limit]
    return _json({"namespaces": [list(ns) for ns in namespaces]})
