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

from server.deps import Ctx
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

__all__ = ["parse_namespace_query", "router"]

router = APIRouter(tags=["Store"])

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


@router.put("/store/items", status_code=204, response_class=Response)
async def put_item(body: StorePutRequest, ctx: Ctx) -> Response:
    """Store or replace an item; it is indexed for vector search unless ``index`` is false."""
    # A missing ``ttl`` means the store's default TTL; an explicit null means "never expires".
    ttl = body.ttl if "ttl" in body.model_fields_set else NOT_PROVIDED
    await ctx.persistence.store.aput(
        tuple(body.namespace), body.key, body.value, index=body.index, ttl=ttl
    )
    return Response(status_code=204)


@router.get(
    "/store/items",
    response_class=Response,
    responses={200: {"model": ItemOut, "description": "The item."}},
)
async def get_item(
    ctx: Ctx,
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
    item = await ctx.persistence.store.aget(path, key, refresh_ttl=refresh_ttl)
    if item is None:
        return _json(None)
    return _json(item.dict())


@router.delete("/store/items", status_code=204, response_class=Response)
async def delete_item(body: StoreDeleteRequest, ctx: Ctx) -> Response:
    """Delete an item; deleting one that does not exist is not an error."""
    await ctx.persistence.store.adelete(tuple(body.namespace), body.key)
    return Response(status_code=204)


@router.post(
    "/store/items/search",
    response_class=Response,
    responses={200: {"model": SearchItemsResponse, "description": "Matching items."}},
)
async def search_items(body: SearchItemsRequest, ctx: Ctx) -> Response:
    """Items under a namespace prefix: newest first, or by similarity to ``query``.

    ``score`` is the cosine similarity to the query, null when no query was given (or the
    store has no vector index).
    """
    items = await ctx.persistence.store.asearch(
        tuple(body.namespace_prefix or ()),
        query=body.query,
        filter=body.filter,
        limit=body.limit,
        offset=body.offset,
        refresh_ttl=body.refresh_ttl,
    )
    return _json({"items": [item.dict() for item in items]})


@router.post(
    "/store/namespaces",
    response_class=Response,
    responses={200: {"model": ListNamespacesResponse, "description": "Namespaces."}},
)
async def list_namespaces(body: ListNamespacesRequest, ctx: Ctx) -> Response:
    """Namespaces that hold items, sorted, optionally matched by prefix/suffix and truncated."""
    namespaces = await ctx.persistence.store.alist_namespaces(
        prefix=tuple(body.prefix) if body.prefix else None,
        suffix=tuple(body.suffix) if body.suffix else None,
        max_depth=body.max_depth,
        limit=body.limit,
        offset=body.offset,
    )
    return _json({"namespaces": [list(ns) for ns in namespaces]})
