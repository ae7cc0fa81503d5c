"""The audit log: an append-only, hash-chained record of who changed what.

Write an entry with :func:`append_entry` inside the transaction that makes the change, so the
entry commits (or rolls back) with it. Each entry's hash covers its canonical encoding and the
previous entry's hash (see :mod:`state.audit.chain`), so :func:`verify_log` — and
``staffgraph audit verify`` — finds the first entry that was altered, removed or reordered. The
database refuses UPDATE, DELETE and TRUNCATE on the table (migration ``0060_audit_log.sql``);
the chain is what catches anyone who can get past that (a superuser).
"""

from state.audit.chain import (
    GENESIS_HASH,
    AuditEntry,
    ChainBreak,
    ChainWalk,
    canonical_json,
    check_chain,
    entry_from_row,
    entry_hash,
    format_time,
)
from state.audit.log import MAX_DETAILS_BYTES, ChainReport, append_entry, iter_entries, verify_log

__all__ = [
    "ACTIONS",
    "GENESIS_HASH",
    "MAX_DETAILS_BYTES",
    "AuditEntry",
    "ChainBreak",
    "ChainReport",
    "ChainWalk",
    "append_entry",
    "canonical_json",
    "check_chain",
    "entry_from_row",
    "entry_hash",
    "format_time",
    "iter_entries",
    "verify_log",
]

ACTIONS: dict[str, str] = {
    "approval.decision": "a human decided an approval request (approve, edit, reject, respond)",
    "governance.applied": "a governance change took effect",
    "governance.rejected": "a governance change was rejected",
    "key.created": "an API key was created",
    "key.revoked": "an API key was revoked",
    "auth.denied": "a request was refused with 401 or 403 (at most one entry per caller and "
    "route in a window)",
    "thread.deleted": "a thread was deleted",
    "assistant.deleted": "an assistant was deleted",
    "memory.deleted": "a long-term memory (store item) was deleted",
}
"""The actions staffgraph records, with what each means. Other dotted names are allowed."""
