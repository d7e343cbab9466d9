"""Admission on every backend (memory, the data directory's SQLite file, Redis): all-or-nothing claims, buckets
that never go negative, hard limits never passed; and the SQLite file shared by processes holding one budget."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import multiprocessing.synchronize
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contentmill.gateway.admission import Admission, Claim, MemoryAdmission, Refusal, Reservation
from contentmill.gateway.admission_redis import RedisAdmission
from contentmill.gateway.admission_sqlite import SQLiteAdmission

REDIS_URL = "redis://127.0.0.1:6379/0"


BACKENDS = ["memory", "sqlite", "redis"]


def make_backend(kind: str) -> Admission:
    if kind == "memory":
        return MemoryAdmission()
    if kind == "sqlite":
        return SQLiteAdmission(Path(tempfile.mkdtemp(prefix="cm-admission-")) / "admission.sqlite3")
    return RedisAdmission(aioredis.Redis.from_url(REDIS_URL), prefix=f"test:adm:{uuid.uuid4().hex}:")


async def drop(backend: Admission) -> None:
    if isinstance(backend, RedisAdmission):
        keys = [k async for k in backend.client.scan_iter(match=backend.prefix + "*")]
        if keys:
            await backend.client.delete(*keys)
    await backend.aclose()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Admission]:
    admission = make_backend(request.param)
    yield admission
    await drop(admission)


def bucket(amount: float, limit: float = 100.0, key: str = "tpm") -> Claim:
    return Claim(key, "bucket", amount, limit, period_s=60.0, label=f"{key} test")


def counter(amount: float, limit: float = 1.0, key: str = "budget") -> Claim:
    return Claim(key, "counter", amount, limit, ttl_s=3600.0, label=f"{key} test")


async def test_all_or_nothing(backend: Admission) -> None:
    first = await backend.acquire([bucket(60), counter(0.5)], ttl_s=30)
    assert isinstance(first, Reservation)
    refused = await backend.acquire([bucket(30), counter(0.6)], ttl_s=30)  # the bucket has room, the budget not
    assert isinstance(refused, Refusal) and refused.claim.key == "budget" and refused.retry_after is None
    assert refused.used == pytest.approx(0.0) and refused.reserved == pytest.approx(0.5)
    (tokens, _), (room, reserved) = await backend.levels([bucket(0), counter(0)])
    assert tokens == pytest.approx(40, abs=0.5)  # untouched by the refused call
    assert room == pytest.approx(0.5) and reserved == pytest.approx(0.5)


async def test_bucket_refusal_says_when_to_retry(backend: Admission) -> None:
    assert isinstance(await backend.acquire([bucket(90, limit=120)], ttl_s=30), Reservation)
    refused = await backend.acquire([bucket(60, limit=120)], ttl_s=30)
    assert isinstance(refused, Refusal)
    assert refused.retry_after == pytest.approx(15.0, abs=0.5)  # 30 tokens short at 2 tokens/s
    too_big = await backend.acquire([bucket(500, limit=120)], ttl_s=30)
    assert isinstance(too_big, Refusal) and too_big.retry_after is None  # waiting can never make room


async def test_reconcile_refunds_and_moves_reserved_to_spent(backend: Admission) -> None:
    reservation = await backend.acquire([bucket(50), counter(0.4)], ttl_s=30)
    assert isinstance(reservation, Reservation)
    assert await backend.reconcile(reservation, [20, 0.1])
    assert not await backend.reconcile(reservation, [20, 0.1])  # never settled twice
    (tokens, _), (room, reserved) = await backend.levels([bucket(0), counter(0)])
    assert tokens == pytest.approx(80, abs=0.5)
    assert room == pytest.approx(0.9) and reserved == pytest.approx(0.0)


async def test_many_settled_at_once_each_settle_once_in_order(backend: Admission) -> None:
    claims = [bucket(10, limit=1000), counter(0.1, limit=10)]
    held = [await backend.acquire(claims, ttl_s=30) for _ in range(40)]
    assert all(isinstance(r, Reservation) for r in held)
    opened = [r for r in held if isinstance(r, Reservation)]
    assert await backend.reconcile(opened[0], [10, 0.1])  # settled alone first: in the batch it is a no-op
    assert await backend.reconcile_many([(r, [5, 0.01]) for r in opened]) == [False] + [True] * 39
    assert await backend.reconcile_many([(r, [5, 0.01]) for r in opened[:3]]) == [False] * 3  # never twice
    (tokens, _), (room, reserved) = await backend.levels([bucket(0, limit=1000), counter(0, limit=10)])
    assert tokens == pytest.approx(1000 - 10 - 39 * 5, abs=5)  # plus what refilled meanwhile
    assert room == pytest.approx(10 - 0.1 - 39 * 0.01) and reserved == pytest.approx(0.0)


async def test_orphans_are_kept_at_their_reserved_amount(backend: Admission) -> None:
    late = await backend.acquire([counter(0.3)], ttl_s=60)
    live = await backend.acquire([counter(0.2)], ttl_s=3600)
    assert isinstance(late, Reservation) and isinstance(live, Reservation)
    later = time.time() + 120  # the sweep's clock, past the first deadline only (no sleeping)
    orphans = await backend.orphans(later)
    assert [o.id for o in orphans] == [late.id]
    assert orphans[0].claims[0].amount == pytest.approx(0.3)
    assert await backend.orphans(later) == []  # swept once
    assert not await backend.reconcile(late, [0.0])  # a worker coming back late changes nothing
    [(room, reserved)] = await backend.levels([counter(0)])
    assert room == pytest.approx(0.5) and reserved == pytest.approx(0.2)


async def test_unlimited_counter_only_counts(backend: Admission) -> None:
    for _ in range(3):
        res = await backend.acquire([counter(5.0, limit=math.inf, key="tokens")], ttl_s=30)
        assert isinstance(res, Reservation)
        await backend.reconcile(res, [4.0])
    [(room, reserved)] = await backend.levels([counter(0, limit=math.inf, key="tokens")])
    assert math.isinf(room) and reserved == 0


async def test_concurrent_callers_never_pass_a_hard_budget(backend: Admission) -> None:
    limit, cost = 1.0, 0.03

    async def caller() -> float:
        charged = 0.0
        while True:
            res = await backend.acquire([counter(cost, limit=limit)], ttl_s=30)
            if isinstance(res, Refusal):
                return charged
            await asyncio.sleep(0)
            await backend.reconcile(res, [cost * 0.9])
            charged += cost * 0.9

    charged = await asyncio.gather(*(caller() for _ in range(64)))
    assert sum(charged) <= limit
    [(room, reserved)] = await backend.levels([counter(0, limit=limit)])
    assert reserved == pytest.approx(0.0, abs=1e-9) and room >= -1e-9


Op = tuple[str, float, float]
operations = st.lists(
    st.tuples(st.sampled_from(["acquire", "reconcile", "sweep"]), st.floats(0.0, 70.0), st.floats(0.0, 1.0)),
    min_size=1, max_size=40,
)


async def replay(backend: Admission, ops: list[Op]) -> None:
    """Apply admits, reconciles (actual <= reserved, as max_tokens guarantees) and sweeps in the given order."""
    open_: list[Reservation] = []
    charged = 0.0
    for op, amount, fraction in ops:
        if op == "acquire":
            res = await backend.acquire([bucket(amount, limit=100), counter(amount / 100, limit=1.0)],
                                        ttl_s=0.0 if fraction < 0.1 else 60.0)
            if isinstance(res, Reservation):
                open_.append(res)
        elif op == "reconcile" and open_:
            res = open_.pop(int(fraction * len(open_)) % len(open_))
            actual = [c.amount * fraction for c in res.claims]
            if await backend.reconcile(res, actual):
                charged += actual[1]
        elif op == "sweep":
            for orphan in await backend.orphans():
                charged += orphan.claims[1].amount
                open_ = [r for r in open_ if r.id != orphan.id]
        (tokens, _), (room, reserved) = await backend.levels([bucket(0, limit=100), counter(0, limit=1.0)])
        assert -1e-9 <= tokens <= 100 + 1e-9
        assert room >= -1e-9 and reserved >= -1e-9
        assert charged <= 1.0 + 1e-9


@pytest.mark.parametrize("kind", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_any_interleaving_keeps_the_invariants(kind: str, ops: list[Op]) -> None:
    async def run() -> None:
        admission = make_backend(kind)
        try:
            await replay(admission, ops)
        finally:
            await drop(admission)

    asyncio.run(run())


def test_claims_and_reservations_round_trip() -> None:
    claims = (bucket(3), counter(0.25, limit=math.inf))
    reservation = Reservation("abc", claims, 12.5, '{"model": "x"}', 10.0)
    again = Reservation.from_json(reservation.to_json())
    assert again == reservation




LIMIT, COST, ACTUAL = 1.5, 0.003, 0.0027
PROCESSES = 8


def _spend(path: str, start: multiprocessing.synchronize.Barrier, holding: multiprocessing.synchronize.Barrier,
           out: multiprocessing.Queue[float]) -> None:
    """One process calling until the shared budget refuses; reports what it was charged. Its first reservation is
    held until every process holds one (``holding``), so all of them reserve against the file at once however the
    two cores schedule them (eight first calls cost far less than the budget)."""

    async def run() -> float:
        admission = SQLiteAdmission(Path(path))
        charged = 0.0
        first = True
        start.wait()
        while True:
            res = await admission.acquire([counter(COST, limit=LIMIT)], ttl_s=30)
            if isinstance(res, Refusal):
                await admission.aclose()
                return charged
            if first:
                holding.wait(timeout=60)
                first = False
            await admission.reconcile(res, [ACTUAL])
            charged += ACTUAL

    out.put(asyncio.run(run()))


def test_processes_sharing_the_data_directory_hold_one_budget(tmp_path: Path) -> None:
    """Eight processes at once against one budget through the SQLite file: together they stay under it, and
    nearly fill it (a per-process budget would have let each spend the whole limit)."""
    path = str(tmp_path / "admission.sqlite3")
    SQLiteAdmission(Path(path))  # created once, as the first gateway to open it does
    context = multiprocessing.get_context("spawn")
    start, holding, out = context.Barrier(PROCESSES), context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_spend, args=(path, start, holding, out)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    charged = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert sum(charged) <= LIMIT + 1e-12
    assert sum(charged) >= LIMIT - COST  # refused only when the next call could not fit
    assert all(c > 0 for c in charged)  # every process was charged from the one budget, side by side


async def test_a_reservation_of_a_process_that_died_is_swept_once_by_another(tmp_path: Path) -> None:
    path = tmp_path / "admission.sqlite3"
    dead = SQLiteAdmission(path)
    held = await dead.acquire([counter(0.4)], ttl_s=0.0)
    assert isinstance(held, Reservation)
    await dead.aclose()  # as if killed: never reconciled
    first, second = SQLiteAdmission(path), SQLiteAdmission(path)
    swept = await asyncio.gather(first.orphans(), second.orphans())
    assert sorted(len(s) for s in swept) == [0, 1]  # one sweeper takes it, the other finds nothing
    [(room, reserved)] = await first.levels([counter(0)])
    assert room == pytest.approx(0.6) and reserved == pytest.approx(0.0)  # kept charged as reserved, once
    assert not await first.reconcile(held, [0.1])  # a late settlement charges nothing more
    await first.aclose()
    await second.aclose()


HOLD = """
import asyncio, sys
from pathlib import Path
from contentmill.gateway.admission import Claim
from contentmill.gateway.admission_sqlite import SQLiteAdmission

async def hold() -> None:
    admission = SQLiteAdmission(Path(sys.argv[1]))
    await admission.acquire([Claim("budget", "counter", 0.4, 1.0, ttl_s=3600.0)], ttl_s=3600.0)
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(hold())
"""


async def test_a_killed_processs_reservation_is_swept_at_once_not_at_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "admission.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        sweeper = SQLiteAdmission(path)
        assert await sweeper.orphans() == []  # alive: an hour from its deadline, not an orphan
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        [orphan] = await sweeper.orphans()  # gone: charged now, as reserved
        assert orphan.claims[0].amount == pytest.approx(0.4)
        [(room, reserved)] = await sweeper.levels([counter(0)])
        assert room == pytest.approx(0.6) and reserved == pytest.approx(0.0)
        assert await sweeper.orphans() == []
        await sweeper.aclose()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_renewed_reservation_is_not_swept_and_a_closed_one_cannot_be_renewed(backend: Admission) -> None:
    held = await backend.acquire([counter(0.3)], ttl_s=0.0)
    assert isinstance(held, Reservation)
    assert await backend.extend(held, 60.0)
    assert await backend.orphans() == []  # its deadline moved a minute on: a live call, not an orphan
    assert await backend.reconcile(held, [0.1])
    assert not await backend.extend(held, 60.0)  # settled: nothing to keep alive
    [(room, reserved)] = await backend.levels([counter(0)])
    assert room == pytest.approx(0.9) and reserved == pytest.approx(0.0)
