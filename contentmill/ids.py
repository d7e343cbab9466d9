"""Random identifiers for call records and reservations: 128 random bits as 32 hex digits, like uuid4().hex.

Drawn from a generator seeded once per process from the OS (and again in a forked child), because asking the
OS for every id costs a system call on a path that runs on every model call.
"""

from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    return f"{_rng.getrandbits(128):032x}"
