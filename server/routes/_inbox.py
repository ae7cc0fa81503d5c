"""Agent Inbox's answers, translated into the human-in-the-loop decisions our gates take.

LangChain's Agent Inbox resumes a run with a list of responses, one per action,
``[{"type": "accept" | "edit" | "response" | "ignore", "args": ...}]``: ``args`` is ``null``
for accept and ignore, the message for response, and ``{"action": name, "args": {...}}`` for
edit. When the request pending on the thread is ours (``action_requests``), such a resume
becomes ``{"decisions": [...]}``: accept → approve, edit → edit with the edited args,
response → respond (reject with the message where the gate does not take respond), ignore →
reject. Each decision must be one the request's ``review_configs`` allow for its action. A
resume that cannot be mapped is a 422 naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from fastapi import HTTPException

from server.auth.approvals import PendingGate

__all__ = ["is_inbox_answer", "translate_resume"]

INBOX_TYPES = frozenset({"accept", "edit", "response", "ignore"})


def is_inbox_answer(value: Any) -> bool:
    """Whether ``value`` is a list of Agent Inbox responses."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, Mapping) and item.get("type") in INBOX_TYPES for item in value)
    )


def _refuse(where: str, problem: str) -> NoReturn:
    raise HTTPException(422, detail=f"{where}: {problem}")


def _allowed(gate: PendingGate, action: str) -> Sequence[str]:
    configs = gate.request.get("review_configs")
    for config in configs if isinstance(configs, list) else []:
        if isinstance(config, Mapping) and config.get("action_name") == action:
            allowed = config.get("allowed_decisions")
            return [str(a) for a in allowed] if isinstance(allowed, list) else []
    return []


def _decision(
    item: Mapping[str, Any], allowed: Sequence[str], action: str, where: str
) -> dict[str, Any]:
    kind, args = item.get("type"), item.get("args")

    def need(decision: str) -> None:
        if decision not in allowed:
            _refuse(
                where,
                f"'{kind}' maps to '{decision}', which action '{action}' does not allow "
                f"(allowed: {', '.join(allowed) or 'none'})",
            )

    if kind == "accept":
        need("approve")
        return {"type": "approve"}
    if kind == "ignore":
        need("reject")
        return {"type": "reject", "message": "ignored in Agent Inbox"}
    if kind == "edit":
        need("edit")
        if not isinstance(args, Mapping) or not isinstance(args.get("args"), Mapping):
            _refuse(where, 'an edit needs args {"action": name, "args": {...}}')
        name = args.get("action", action)
        if name != action:
            _refuse(where, f"an edit must keep the action '{action}', not {name!r}")
        return {"type": "edit", "edited_action": {"name": action, "args": dict(args["args"])}}
    if not isinstance(args, str) or not args.strip():
        _refuse(where, "a response needs its message as a non-empty string in args")
    if "respond" in allowed:
        return {"type": "respond", "message": args}
    need("reject")
    return {"type": "reject", "message": args}


def _answer(value: list[Any], gate: PendingGate, where: str) -> dict[str, Any]:
    requests = gate.request.get("action_requests") or []
    if len(value) != len(requests):
        _refuse(
            where,
            f"{len(value)} Agent Inbox response(s) for {len(requests)} action request(s) of "
            f"{gate.describe()}; send one response per action, in order",
        )
    decisions = [
        _decision(item, _allowed(gate, action), action, f"{where}[{i}]")
        for i, (item, action) in enumerate(zip(value, gate.actions, strict=True))
    ]
    return {"decisions": decisions}


def translate_resume(resume: Any, gates: list[PendingGate]) -> Any:
    """``resume`` with Agent Inbox answers to our approval requests turned into decisions.

    Anything else is returned unchanged (a graph of the user's own may take Agent Inbox
    answers itself).

    Raises:
        HTTPException: 422 naming the problem when an Agent Inbox answer cannot be mapped.
    """
    if not gates:
        return resume
    if is_inbox_answer(resume):
        if len(gates) != 1:
            _refuse(
                "command.resume",
                f"one Agent Inbox answer for {len(gates)} pending approval requests; resume "
                "with {interrupt_id: answer} for each",
            )
        return _answer(resume, gates[0], "command.resume")
    if isinstance(resume, Mapping):
        by_id = {g.interrupt_id: g for g in gates if g.interrupt_id}
        if any(k in by_id and is_inbox_answer(v) for k, v in resume.items()):
            return {
                k: _answer(v, by_id[k], f"command.resume.{k}")
                if k in by_id and is_inbox_answer(v)
                else v
                for k, v in resume.items()
            }
    return resume
