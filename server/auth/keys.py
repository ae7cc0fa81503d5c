"""Built-in API keys: random, shown once, stored only as a hash in Postgres.

A key reads ``sg_<key_id>_<secret>``: ``key_id`` (public, 12 hex characters) finds the row, and
the SHA-256 of the whole key must equal the stored hash (compared in constant time). A key is
256 bits of randomness, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from server.auth.identity import ROLE_PERMISSIONS, ROLES, AuthUser, Caller, user_fields
from state.audit import append_entry

__all__ = ["REVOKED_CHANNEL", "ApiKey", "KeyCache", "KeysRepo", "NewKey", "parse_key"]

log = logging.getLogger(__name__)

REVOKED_CHANNEL = "staffgraph_keys"
"""``NOTIFY`` channel a revocation is announced on (payload: the key id)."""

_KEY = re.compile(r"^sg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_MAX_USER_CHARS = 256


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the key itself)."""

    key_id: str
    user_id: str
    role: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    def caller(self) -> Caller:
        """The identity requests made with this key have."""
        permissions = ROLE_PERMISSIONS[self.role]
        fields = user_fields(
            {"identity": self.user_id, "role": self.role}, self.user_id, permissions
        )
        return Caller(
            identity=self.user_id,
            permissions=permissions,
            user=AuthUser(fields),
            fields=fields,
            key_id=self.key_id,
        )


@dataclass(frozen=True)
class NewKey:
    """A key just created: ``key`` is shown to the operator once and never stored."""

    key: str
    stored: ApiKey


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key(text: str) -> str | None:
    """The ``key_id`` of a well-formed key, else ``None``."""
    found = _KEY.match(text)
    return found.group(1) if found else None


def _row(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        user_id=row["user_id"],
        role=row["role"],
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


_COLUMNS = "key_id, user_id, role, name, created_at, revoked_at"


class KeysRepo:
    """SQL for ``api_keys``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    async def create(
        self, user_id: str, *, role: str, name: str | None = None, actor: str | None = None
    ) -> NewKey:
        """Make a key for ``user_id`` with ``role``, recording ``key.created`` by ``actor``
        (``None``: the operator at the command line) in the same transaction.

        Raises:
            ValueError: the user id is empty or too long, or the role is unknown.
        """
        if not user_id.strip() or len(user_id) > _MAX_USER_CHARS:
            raise ValueError(f"user id must be 1 to {_MAX_USER_CHARS} characters")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        key_id = secrets.token_hex(6)
        key = f"sg_{key_id}_{secrets.token_urlsafe(32)}"
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO api_keys (key_id, key_hash, user_id, role, name) "
                f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (key_id, _hash(key), user_id, role, name),
            )
            row = await cur.fetchone()
            # Never the key itself: the log is kept forever and read by every admin.
            await append_entry(
                conn,
                "key.created",
                actor=actor,
                resource_type="api_key",
                resource_id=key_id,
                details={"user_id": user_id, "role": role, "name": name},
            )
        return NewKey(key=key, stored=_row(row))

    async def verify(self, key: str) -> ApiKey | None:
        """The live key matching ``key`` exactly, or ``None`` (unknown, revoked, malformed)."""
        key_id = parse_key(key)
        if key_id is None:
            return None
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT key_hash, {_COLUMNS} FROM api_keys "
                "WHERE key_id = %s AND revoked_at IS NULL",
                (key_id,),
            )
            row = await cur.fetchone()
        if row is None or not hmac.compare_digest(row["key_hash"], _hash(key)):
            return None
        return _row(row)

    async def live(self, key_id: str) -> ApiKey | None:
        """The key with this id unless it was revoked (or never existed)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = %s AND revoked_at IS NULL",
                (key_id,),
            )
            row = await cur.fetchone()
        return _row(row) if row is not None else None

    async def list(self) -> list[ApiKey]:
        """Every key, newest first (revoked ones included, marked)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at DESC, key_id"
            )
            return [_row(row) for row in await cur.fetchall()]

    async def revoke(self, key_id: str, *, actor: str | None = None) -> bool:
        """Revoke a key at once, recording ``key.revoked`` by ``actor`` (``None``: the
        operator at the command line). False when no live key has that id."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() "
                "WHERE key_id = %s AND revoked_at IS NULL RETURNING key_id, user_id, role",
                (key_id,),
            )
            row = await cur.fetchone()
            # Servers drop the key from their caches when this is delivered (on commit).
            await conn.execute("SELECT pg_notify(%s, %s)", (REVOKED_CHANNEL, key_id))
            if row is not None:
                await append_entry(
                    conn,
                    "key.revoked",
                    actor=actor,
                    resource_type="api_key",
                    resource_id=key_id,
                    details={"user_id": row["user_id"], "role": row["role"]},
                )
            return row is not None


class KeyCache:
    """Keys verified recently, kept in memory while revocations are being heard.

    Verifying a key is one indexed read; on the run path that read is most of what auth
    costs, so verified keys are remembered for :attr:`TTL` seconds — but only while a
    ``LISTEN`` connection is up to hear ``staffgraph keys revoke`` (which notifies
    :data:`REVOKED_CHANNEL`). Without it, every request reads Postgres. A generation counter
    keeps a lookup that raced a revocation from being cached.
    """

    TTL = 30.0
    MAX_ENTRIES = 10_000

    def __init__(self, repo: KeysRepo, database_url: str) -> None:
        self._repo = repo
        self._url = database_url
        self._entries: dict[str, tuple[ApiKey, float]] = {}
        self._listening = False
        self._generation = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start hearing revocations in the background (reconnects on its own)."""
        self._task = asyncio.create_task(self._listen(), name="api-key-revocations")

    async def stop(self) -> None:
        """Stop hearing revocations (and caching)."""
        self._forget()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def verify(self, key: str) -> ApiKey | None:
        """As :meth:`KeysRepo.verify`, from memory when the key was verified recently."""
        digest = _hash(key)
        hit = self._entries.get(digest)
        if hit is not None and self._listening and hit[1] > time.monotonic():
            return hit[0]
        generation = self._generation
        found = await self._repo.verify(key)
        if found is not None and self._listening and generation == self._generation:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (found, time.monotonic() + self.TTL)
        return found

    def _forget(self, key_id: str | None = None) -> None:
        self._generation += 1
        if key_id is None:
            self._listening = False
            self._entries.clear()
            return
        self._entries = {d: e for d, e in self._entries.items() if e[0].key_id != key_id}

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {REVOKED_CHANNEL}")
                    self._generation += 1
                    self._listening = True
                    delay = 0.1
                    async for note in conn.notifies():
                        self._forget(note.payload)
                finally:
                    self._forget()
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the LISTEN connection for key revocations; reconnecting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
