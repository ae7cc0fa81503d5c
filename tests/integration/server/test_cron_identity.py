"""A cron's runs run as its creator, stop when the creator may no longer run them, and cron
searches and counts are scoped to the caller in SQL.

Servers poll for due crons every 0.2 s and the crons fire every second (croniter's sixth
field), so each test waits a few seconds at most. A firing is not an event a client can
subscribe to: the tests poll the thread's runs or the server's log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.auth.matrix import HERE, cli, create_key
from tests.support.server import LiveServer, fresh_database, start_server

FAST = {"STAFFGRAPH_CRON_INTERVAL_SECONDS": "0.2"}
EVERY_SECOND = "* * * * * *"


@pytest.fixture(scope="module")
def keys_server(database_url: str) -> Iterator[tuple[LiveServer, str]]:
    url = fresh_database(database_url)
    server = start_server(
        env={"DATABASE_URL": url, "STAFFGRAPH_AUTH": "keys", **FAST}, config=HERE / "langgraph.json"
    )
    try:
        yield server, url
    finally:
        server.stop()


async def _key(url: str, user: str, role: str = "member") -> str:
    return await asyncio.to_thread(create_key, url, user, role)


def _client(server: LiveServer, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)


async def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)  # a cron's firing has no event a client can subscribe to


async def _runs(client: httpx.AsyncClient, thread_id: str) -> list[dict[str, Any]]:
    answer = await client.get(f"/threads/{thread_id}/runs", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


async def _seen_by_finished_run(client: httpx.AsyncClient, thread_id: str) -> dict[str, Any]:
    async def finished() -> Any:
        runs = await _runs(client, thread_id)
        return any(run["status"] == "success" for run in runs)

    await _until(finished, f"a finished run on {thread_id}")
    state = await client.get(f"/threads/{thread_id}/state")
    return dict(state.json()["values"]["seen"])


async def test_cron_runs_carry_their_creators_identity_like_an_interactive_run(
    keys_server: tuple[LiveServer, str],
) -> None:
    server, url = keys_server
    async with _client(server, {"x-api-key": await _key(url, "alice")}) as alice:
        interactive = await alice.post("/runs/wait", json={"assistant_id": "whoami", "input": {}})
        assert interactive.status_code == 200, interactive.text
        expected = interactive.json()["seen"]
        assert expected["user_id"] == "alice"

        thread_id = (await alice.post("/threads", json={})).json()["thread_id"]
        # A client-supplied identity in the cron's config is dropped, as for any run.
        spoofed = {"langgraph_auth_user_id": "bob", "langgraph_auth_permissions": ["admin"]}
        cron = await alice.post(
            f"/threads/{thread_id}/runs/crons",
            json={
                "assistant_id": "whoami",
                "schedule": EVERY_SECOND,
                "input": {},
                "config": {"configurable": spoofed},
            },
        )
        assert cron.status_code == 200, cron.text
        assert cron.json()["user_id"] == "alice"
        try:
            seen = await _seen_by_finished_run(alice, thread_id)
        finally:
            await alice.delete(f"/runs/crons/{cron.json()['cron_id']}")
        assert seen == expected


async def test_a_stateless_cron_makes_threads_its_creator_owns(
    keys_server: tuple[LiveServer, str],
) -> None:
    server, url = keys_server
    carol_key = await _key(url, "carol")
    async with (
        _client(server, {"x-api-key": carol_key}) as carol,
        _client(server, {"x-api-key": await _key(url, "mallory")}) as mallory,
    ):
        cron = await carol.post(
            "/runs/crons",
            json={
                "assistant_id": "whoami",
                "schedule": EVERY_SECOND,
                "input": {},
                "on_run_completed": "keep",
            },
        )
        assert cron.status_code == 200, cron.text

        async def carols_threads() -> list[dict[str, Any]]:
            found = await carol.post("/threads/search", json={"limit": 10})
            return [t for t in found.json() if t["status"] == "idle" and t["values"]]

        try:
            threads = await _until(carols_threads, "a thread made by carol's cron")
        finally:
            await carol.delete(f"/runs/crons/{cron.json()['cron_id']}")
        thread = threads[0]
        assert thread["metadata"]["owner"] == "carol"
        assert thread["values"]["seen"]["user_id"] == "carol"
        assert thread["values"]["seen"]["server_info_identity"] == "carol"
        other = await mallory.get(f"/threads/{thread['thread_id']}")
        assert other.status_code == 404


def _log_lines(server: LiveServer, cron_id: str, words: str) -> int:
    count = 0
    for line in server.log().splitlines():
        try:
            message = str(json.loads(line).get("message", ""))
        except ValueError:
            continue
        if cron_id in message and words in message:
            count += 1
    return count


async def test_revoking_the_creators_key_stops_the_cron(
    keys_server: tuple[LiveServer, str],
) -> None:
    server, url = keys_server
    dave_key = await _key(url, "dave")
    admin_key = await _key(url, "root", "admin")
    async with (
        _client(server, {"x-api-key": dave_key}) as dave,
        _client(server, {"x-api-key": admin_key}) as admin,
        _client(server, {"x-api-key": await _key(url, "erin")}) as erin,
    ):
        thread_id = (await dave.post("/threads", json={})).json()["thread_id"]
        cron = await dave.post(
            f"/threads/{thread_id}/runs/crons",
            json={"assistant_id": "whoami", "schedule": EVERY_SECOND, "input": {}},
        )
        cron_id = cron.json()["cron_id"]
        await _seen_by_finished_run(dave, thread_id)

        key_id = dave_key.split("_")[1]
        revoked = await asyncio.to_thread(cli, url, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr

        async def disabled() -> bool:
            got = await admin.get(f"/runs/crons/{cron_id}")
            return got.json()["enabled"] is False

        await _until(disabled, "the cron to be disabled")
        assert _log_lines(server, cron_id, "disabled: its creator's API key was revoked") == 1
        after = len(await _runs(admin, thread_id))

        # Another user's cron firing twice more shows the scheduler went on meanwhile.
        control_thread = (await erin.post("/threads", json={})).json()["thread_id"]
        control = await erin.post(
            f"/threads/{control_thread}/runs/crons",
            json={"assistant_id": "simple", "schedule": EVERY_SECOND, "input": {}},
        )

        async def two_more() -> bool:
            return len(await _runs(erin, control_thread)) >= 2

        try:
            await _until(two_more, "two firings of another cron")
        finally:
            await erin.delete(f"/runs/crons/{control.json()['cron_id']}")
        assert len(await _runs(admin, thread_id)) == after


def _insert_crons(database_url: str, assistant_id: str, owner: str, count: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO crons (cron_id, assistant_id, user_id, schedule, enabled, payload, "
            "metadata, created_at) "
            "SELECT gen_random_uuid(), %s, %s, '0 0 1 1 *', false, '{}', "
            "jsonb_build_object('owner', %s::text), now() + interval '1 hour' "
            "FROM generate_series(1, %s)",
            (assistant_id, owner, owner, count),
        )


async def test_cron_search_and_count_are_scoped_in_sql_however_many_crons_exist(
    keys_server: tuple[LiveServer, str],
) -> None:
    server, url = keys_server
    async with (
        _client(server, {"x-api-key": await _key(url, "grace")}) as grace,
        _client(server, {"x-api-key": await _key(url, "heidi")}) as heidi,
    ):
        mine = await grace.post(
            "/runs/crons", json={"assistant_id": "simple", "schedule": "0 0 1 1 *"}
        )
        assert mine.status_code == 200, mine.text
        system = mine.json()["assistant_id"]
        # More crons of another user than any scan limit, all newer than grace's.
        _insert_crons(url, system, "heidi", 10_050)

        found = await grace.post("/runs/crons/search", json={"limit": 10})
        assert [c["cron_id"] for c in found.json()] == [mine.json()["cron_id"]]
        assert found.headers["x-pagination-total"] == "1"
        assert (await grace.post("/runs/crons/count", json={})).json() == 1

        page = await heidi.post("/runs/crons/search", json={"limit": 5, "offset": 10_000})
        assert len(page.json()) == 5
        assert page.headers["x-pagination-total"] == "10050"
        assert all(c["metadata"]["owner"] == "heidi" for c in page.json())
        assert (await heidi.post("/runs/crons/count", json={})).json() == 10_050


# --- custom auth -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suspended_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("suspended") / "users.txt"


@pytest.fixture(scope="module")
def custom_server(database_url: str, suspended_file: Path) -> Iterator[LiveServer]:
    server = start_server(
        env={
            "DATABASE_URL": fresh_database(database_url),
            "STAFFGRAPH_TEST_SUSPENDED": str(suspended_file),
            **FAST,
        },
        config=HERE / "langgraph_suspendable.json",
    )
    try:
        yield server
    finally:
        server.stop()


async def test_custom_auth_cron_runs_as_its_creator_and_pauses_while_refused(
    custom_server: LiveServer, suspended_file: Path
) -> None:
    server = custom_server
    async with _client(server, {"authorization": "Bearer token-alice"}) as alice:
        thread_id = (await alice.post("/threads", json={})).json()["thread_id"]
        cron = await alice.post(
            f"/threads/{thread_id}/runs/crons",
            json={"assistant_id": "whoami", "schedule": EVERY_SECOND, "input": {}},
        )
        assert cron.status_code == 200, cron.text
        cron_id = cron.json()["cron_id"]
        try:
            seen = await _seen_by_finished_run(alice, thread_id)
            assert seen["user_id"] == "alice"
            assert seen["user"]["display_name"] == "Alice"

            suspended_file.write_text("alice\n")

            refusal = "may not run it (403: User is suspended)"

            async def refused(times: int) -> bool:
                return _log_lines(server, cron_id, refusal) >= times

            # (A suspended user cannot list runs either: the scheduler's log tells.)
            await _until(lambda: refused(1), "a refused firing")
            paused = _log_lines(server, cron_id, "started run")
            await _until(lambda: refused(3), "two more refused firings")
            assert _log_lines(server, cron_id, "started run") == paused
            # Refused, not disabled: once the user is back, the cron runs again.
            suspended_file.write_text("")

            async def resumed() -> bool:
                return _log_lines(server, cron_id, "started run") > paused

            await _until(resumed, "a firing after the suspension")
        finally:
            suspended_file.write_text("")
            await alice.delete(f"/runs/crons/{cron_id}")
