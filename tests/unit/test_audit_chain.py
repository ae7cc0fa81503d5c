"""The audit chain's encoding and checks, and the limiter of refused-request entries (no I/O)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from server.auditing import DenialLimiter
from state.audit import GENESIS_HASH, AuditEntry, check_chain, entry_hash


def _chain(n: int) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        entry = AuditEntry(
            seq=seq,
            at=datetime(2026, 1, 2, 3, 4, 5, 6 + seq, tzinfo=UTC),
            actor="alice" if seq % 2 else None,
            action="thread.deleted",
            resource_type="thread",
            resource_id=f"t{seq}",
            details={"z": 1, "a": ["é", 2.5]},
            prev_hash=prev,
            hash="",
        )
        entry = replace(entry, hash=entry_hash(entry))
        out.append(entry)
        prev = entry.hash
    return out


def test_the_canonical_encoding_is_the_documented_one() -> None:
    entry = _chain(1)[0]
    expected = (
        '{"action":"thread.deleted","actor":"alice","at":"2026-01-02T03:04:05.000007Z",'
        '"details":{"a":["\\u00e9",2.5],"z":1},"prev_hash":"' + GENESIS_HASH + '",'
        '"resource_id":"t1","resource_type":"thread","seq":1}'
    ).encode()
    assert entry.canonical() == expected
    assert entry.hash == hashlib.sha256(expected).hexdigest()
    # the same instant in another zone encodes the same
    shifted = replace(entry, at=entry.at.astimezone(timezone(timedelta(hours=5))))
    assert entry_hash(shifted) == entry.hash


def test_check_chain_names_the_first_entry_that_breaks() -> None:
    chain = _chain(5)
    assert check_chain(chain, head=(5, chain[-1].hash)) == (5, None)
    altered = [*chain[:2], replace(chain[2], actor="mallory"), *chain[3:]]
    assert check_chain(altered)[1].seq == 3  # type: ignore[union-attr]
    removed = [*chain[:1], *chain[2:]]
    checked, broken = check_chain(removed)
    assert checked == 1 and broken is not None and broken.seq == 2
    assert "entry 2 is missing" in broken.reason
    checked, broken = check_chain(chain[:3], head=(5, chain[-1].hash))
    assert broken is not None and broken.seq == 4 and "entries 4 to 5 are missing" in broken.reason


def test_denial_limiter_admits_one_per_key_and_window_within_a_budget() -> None:
    limiter = DenialLimiter(window=60, per_window=3)
    key = ("vera", "POST /threads")
    assert limiter.admit(key, now=1000) == 0
    assert limiter.admit(key, now=1001) is None
    assert limiter.admit(key, now=1002) is None
    assert limiter.admit(("vera", "GET /audit"), now=1003) == 0
    assert limiter.admit(("@10.0.0.1", "GET /audit"), now=1004) == 0
    assert limiter.admit(("@10.0.0.2", "GET /audit"), now=1005) is None  # budget spent
    assert limiter.admit(key, now=1061) == 2  # a new window: the two skipped ones are counted
