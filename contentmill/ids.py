"""Identifiers: ``new_id`` is 128 random bits as 32 hex digits, like uuid4().hex; ``ordered_id`` is 32 hex
digits too, the first 12 the time in milliseconds and the other 20 random (80 bits), for the rows written by the
hundred thousand (call records, reservations, request ids), so that each lands at the end of its indexes.

A random id puts every row at a random place in each index it is in: a commit of a hundred ledger rows then
rewrites a few hundred scattered pages. In time order the same commit touches the last pages of each index, and
SQLite's CPU per row drops about fourfold (docs/benchmarks.md). A prefix of ``new_id`` stays as random as its
length (keys and route decisions are named by 16 digits); a prefix of ``ordered_id`` is not.

Drawn from a generator seeded once per process from the OS (and again in a forked child), because asking the
OS for every id costs a system call on a path that runs on every model call.
"""

from __future__ import annotations

import os
import random
import time

_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    return f"{_rng.getrandbits(128):032x}"


def ordered_id() -> str:
    return f"{time.time_ns() // 1_000_000:012x}{_rng.getrandbits(80):020x}"
