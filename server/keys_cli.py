"""``staffgraph keys create|list|revoke``: manage the built-in API keys.

Keys live in the server's Postgres (``DATABASE_URL``, or the embedded one in
``STAFFGRAPH_HOME``), so run these where the server's settings apply. A new key is printed
once; only its hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import ExitStack
from typing import Any

from server.permissions import ROLES
from state.settings import Settings

__all__ = ["add_keys_parser", "run_keys"]


def add_keys_parser(sub: Any) -> None:
    """Add ``keys`` and its subcommands to the ``staffgraph`` parser."""
    keys = sub.add_parser("keys", help="manage built-in API keys (STAFFGRAPH_AUTH=keys)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--user", required=True, help="the user id requests with the key have")
    create.add_argument(
        "--role", choices=ROLES, default="member", help="what the key may do (default member)"
    )
    create.add_argument("--name", help="a label to recognise the key by in `keys list`")
    actions.add_parser("list", help="list keys (ids, users, roles; never the keys)")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", help="the id `keys list` shows (also the key's sg_<id>_ part)")


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: the `staffgraph` command line loads this module to build its parser.
    from server.auth import KeysRepo
    from server.startup import resolve_database
    from state.db import open_persistence

    with ExitStack() as stack:
        database = resolve_database(settings, stack)
        async with open_persistence(
            database.url, min_size=1, max_size=2, timeout=settings.database.connect_timeout
        ) as persistence:
            repo = KeysRepo(persistence.pool)
            if args.keys_command == "create":
                try:
                    made = await repo.create(args.user, role=args.role, name=args.name)
                except ValueError as exc:
                    print(f"staffgraph: {exc}")
                    return 2
                print(made.key)
                print(
                    f"key {made.stored.key_id} for user {made.stored.user_id} "
                    f"(role {made.stored.role}); it is shown only this once"
                )
                return 0
            if args.keys_command == "list":
                print("KEY_ID        USER  ROLE  CREATED  STATUS  NAME")
                for key in await repo.list():
                    status = "revoked" if key.revoked_at else "active"
                    print(
                        f"{key.key_id}  {key.user_id}  {key.role}  "
                        f"{key.created_at:%Y-%m-%dT%H:%M:%SZ}  {status}  {key.name or ''}"
                    )
                return 0
            if await repo.revoke(args.key_id):
                print(f"revoked key {args.key_id}")
                return 0
            print(f"staffgraph: no active key {args.key_id} (see `staffgraph keys list`)")
            return 1
    return 2  # unreachable: ExitStack does not swallow


def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``staffgraph keys`` subcommand; returns the exit code."""
    return asyncio.run(_run(settings, args))
