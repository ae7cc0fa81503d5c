"""Server ids: UUIDv7 strings that sort in creation order, like the official server's."""

from __future__ import annotations

import uuid

from server.ids import new_id


def test_new_ids_are_uuid7_and_sort_in_creation_order() -> None:
    ids = [new_id() for _ in range(2_000)]
    parsed = [uuid.UUID(value) for value in ids]
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in parsed)
    assert all(str(value) == text for value, text in zip(parsed, ids, strict=True))
    # Many ids fall in one millisecond: the counter keeps them in order all the same.
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)
