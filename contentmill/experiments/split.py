"""The deterministic split of traffic between arms: the same request always lands in the same arm.

The bucket of a request is blake2b(experiment name + request hash) read as a number in [0, 1), which is stable
across processes, machines and Python versions (unlike ``hash()``), and independent between experiments.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

BUCKETS = 10_000


def request_hash(variables: Mapping[str, Any]) -> str:
    """A stable digest of a request's variables (canonical JSON, keys sorted)."""
    canonical = json.dumps(variables, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def bucket(experiment: str, request: str) -> float:
    digest = hashlib.blake2b(f"{experiment}\x00{request}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % BUCKETS) / BUCKETS


def assign(experiment: str, request: str, split: Mapping[str, float]) -> str:
    """The arm of ``request``: arms take consecutive shares of [0, 1) in the order given, by weight."""
    total = sum(split.values())
    if not split or total <= 0:
        raise ValueError("a split needs at least one arm with a positive share")
    point, edge = bucket(experiment, request) * total, 0.0
    for arm, share in split.items():
        edge += share
        if point < edge:
            return arm
    return list(split)[-1]
