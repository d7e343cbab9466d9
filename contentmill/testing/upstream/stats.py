"""What one fake upstream served and refused (``GET /stats``): in total, per key fingerprint, per model, per item."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from contentmill.testing.upstream.common import key_fingerprint


@dataclass(slots=True)
class Counters:
    requests: int = 0
    rejected_429: int = 0
    errors_5xx: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0
    streamed_output_tokens: int = 0  # content tokens a stream wrote before it ended or its client went away
    streams_cut: int = 0  # streams whose client went away before the end


@dataclass(slots=True)
class BatchCounters:
    """Batch API work, counted apart from online requests (OpenAI bills and limits it apart)."""

    batches: int = 0
    requests: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class Stats:
    """What the server served and refused, in total, per key fingerprint and per model; batch work apart; and
    the items of packed requests it answered, per item id."""

    def __init__(self) -> None:
        self.total = Counters()
        self.by_key: defaultdict[str, Counters] = defaultdict(Counters)
        self.by_model: defaultdict[str, Counters] = defaultdict(Counters)
        self.batch = BatchCounters()
        self.items: Counter[str] = Counter()

    def reset(self) -> None:
        self.total = Counters()
        self.batch = BatchCounters()
        self.by_key.clear()
        self.by_model.clear()
        self.items.clear()

    def _counters(self, key: str | None, model: str | None) -> list[Counters]:
        found = [self.total]
        if key is not None:
            found.append(self.by_key[key_fingerprint(key)])
        if model is not None:
            found.append(self.by_model[model])
        return found

    def served(self, key: str, model: str, input_tokens: int = 0, output_tokens: int = 0, characters: int = 0) -> None:
        for counters in self._counters(key, model):
            counters.requests += 1
            counters.input_tokens += input_tokens
            counters.output_tokens += output_tokens
            counters.characters += characters

    def streamed(self, key: str, model: str, output_tokens: int, cut: bool) -> None:
        for counters in self._counters(key, model):
            counters.streamed_output_tokens += output_tokens
            counters.streams_cut += int(cut)

    def refused(self, key: str | None, model: str | None, status: int) -> None:
        for counters in self._counters(key, model):
            if status == 429:
                counters.rejected_429 += 1
            elif status >= 500:
                counters.errors_5xx += 1

    def answered_items(self, ids: Iterable[str]) -> None:
        """Count the items a packed request was answered for (``items``, ``item_ids``)."""
        self.items.update(ids)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.total),
            "by_key": {name: asdict(c) for name, c in self.by_key.items()},
            "by_model": {name: asdict(c) for name, c in self.by_model.items()},
            "batch": asdict(self.batch),
            "items": sum(self.items.values()),
            "item_ids": dict(self.items),
        }
