"""Human in the loop over the API: interrupts, resumes, static breakpoints, time travel."""

from __future__ import annotations

import httpx
from langgraph_sdk import get_client

from tests.support.server import LiveServer

HUMAN = {"messages": [{"role": "user", "content": "hi"}]}


async def test_interrupt_inspect_and_resume(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(tid, "hitl", input={"proposal": "delete prod db"})
    (pending,) = out["__interrupt__"]
    assert pending["value"] == {"question": "approve?", "proposal": "delete prod db"}
    assert out["log"] == ["proposed"]

    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted"
    assert thread["values"] == {"proposal": "delete prod db", "log": ["proposed"]}
    ((task_id, interrupts),) = thread["interrupts"].items()
    assert interrupts == [{"id": pending["id"], "value": pending["value"]}]

    state = await client.threads.get_state(tid)
    assert state["next"] == ["review"]
    assert state["tasks"][0]["id"] == task_id and state["tasks"][0]["name"] == "review"
    assert state["tasks"][0]["interrupts"] == interrupts
    assert state["interrupts"] == interrupts

    resumed = await client.runs.wait(tid, "hitl", command={"resume": {"approve": True}})
    assert resumed == {
        "proposal": "delete prod db",
        "approved": True,
        "log": ["proposed", "reviewed", "acted"],
    }
    thread = await client.threads.get(tid)
    assert thread["status"] == "idle" and thread["interrupts"] == {}
    assert (await client.threads.get_state(tid))["next"] == []


async def test_resume_by_interrupt_id_and_reject(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(tid, "hitl", input={"proposal": "send email"})
    interrupt_id = out["__interrupt__"][0]["id"]
    parts = [
        part
        async for part in client.runs.stream(
            tid,
            "hitl",
            command={"resume": {interrupt_id: {"approve": False}}},
            stream_mode="updates",
        )
    ]
    assert [p.data for p in parts[1:]] == [
        {"review": {"approved": False, "log": ["reviewed"]}},
        {"act": {"log": ["skipped"]}},
    ]
    history = await client.threads.get_history(tid, limit=10)
    assert [h["metadata"]["step"] for h in history] == [3, 2, 1, 0, -1]
    review_checkpoint = next(h for h in history if h["next"] == ["review"])
    assert review_checkpoint["tasks"][0]["interrupts"][0]["id"] == interrupt_id


async def test_static_breakpoints_resume_with_no_input(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    before = await client.runs.wait(tid, "simple", input=HUMAN, interrupt_before=["b"])
    assert "count" not in before and len(before["messages"]) == 2
    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted" and thread["interrupts"] == {}
    assert (await client.threads.get_state(tid))["next"] == ["b"]
    done = await client.runs.wait(tid, "simple", input=None)
    assert done["count"] == 1
    assert (await client.threads.get(tid))["status"] == "idle"

    after = await client.runs.wait(tid, "simple", input=HUMAN, interrupt_after=["a"])
    assert after["count"] == 1 and len(after["messages"]) == 4
    assert (await client.threads.get_state(tid))["next"] == ["b"]
    assert (await client.runs.wait(tid, "simple", input=None))["count"] == 2


async def test_time_travel_edit_and_rerun(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "hitl", input={"proposal": "delete prod db"})
    await client.runs.wait(tid, "hitl", command={"resume": {"approve": True}})
    history = await client.threads.get_history(tid, limit=10)
    before_review = next(h for h in history if h["next"] == ["review"])

    # Edit the proposal as if "propose" had written it, at the checkpoint before the review.
    fork = await client.threads.update_state(
        tid,
        {"proposal": "EDITED"},
        as_node="propose",
        checkpoint_id=before_review["checkpoint_id"],
    )
    state = await client.threads.get_state(tid)
    assert state["checkpoint_id"] == fork["checkpoint_id"]
    assert state["values"]["proposal"] == "EDITED" and state["next"] == ["review"]
    assert state["parent_checkpoint_id"] == before_review["checkpoint_id"]
    out = await client.runs.wait(tid, "hitl", input=None, checkpoint=fork["checkpoint"])
    assert out["__interrupt__"][0]["value"] == {"question": "approve?", "proposal": "EDITED"}
    assert (await client.threads.get(tid))["status"] == "interrupted"

    # "Re-run from here" as Studio does it: copy a checkpoint, then run from the copy.
    first = history[-1]
    copied = await client.threads.update_state(
        tid, None, as_node="__copy__", checkpoint_id=first["checkpoint_id"]
    )
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        rerun = await http.post(
            f"/threads/{tid}/runs/wait",
            json={"assistant_id": "hitl", "input": None, "checkpoint": copied["checkpoint"]},
        )
    assert rerun.json()["log"] == ["proposed"]
    assert rerun.json()["__interrupt__"][0]["value"]["proposal"] == "delete prod db"
