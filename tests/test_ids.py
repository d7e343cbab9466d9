"""Ids: ``ordered_id`` sorts by the time it was made (so ledger rows land at the end of their indexes) and never
repeats; ``new_id`` stays random in every prefix (keys and route decisions are named by its first digits)."""

from __future__ import annotations

import re
import time

from contentmill.gateway.admission import MemoryAdmission, Reservation
from contentmill.ids import new_id, ordered_id
from contentmill.ledger import CallRecord
from contentmill.metering import Usage


def test_ordered_ids_sort_by_time_and_never_repeat() -> None:
    before = ordered_id()
    time.sleep(0.002)
    made = [ordered_id() for _ in range(100_000)]
    time.sleep(0.002)
    after = ordered_id()
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in (before, after, made[0], made[-1]))
    assert len(set(made)) == len(made)
    assert before < min(made) and max(made) < after
    assert all(a[:12] <= b[:12] for a, b in zip(made, made[1:], strict=False))  # the time part never goes back
    assert abs(int(after[:12], 16) / 1000 - time.time()) < 5


def test_new_ids_are_random_from_their_first_digit() -> None:
    firsts = {new_id()[0] for _ in range(2000)}
    assert len(firsts) == 16  # all sixteen leading digits occur: no time in front


async def test_ledger_rows_and_reservations_are_named_in_time_order() -> None:
    record = CallRecord(model="openai:gpt-4o-mini", api_type="text", estimate=Usage(), outcome="ok", cost_usd=0.0)
    reservation = await MemoryAdmission().acquire([], ttl_s=10)
    assert isinstance(reservation, Reservation)
    now = f"{time.time_ns() // 1_000_000:012x}"
    for made in (record.id, reservation.id):
        assert abs(int(made[:12], 16) - int(now, 16)) < 5000
