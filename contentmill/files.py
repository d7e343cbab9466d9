"""Files written whole or not at all: a reader sees the old file or the complete new one, never a part.

Every writer in the project goes through one of two forms. ``write_atomic(path, data)`` writes bytes or text
in hand. ``atomic_target(path)`` is for writers that want a path of their own (ffmpeg, Pillow, numpy, a
package's assembler): it yields a temporary file beside the target, in the same directory so the final
``os.replace`` is atomic on POSIX, with the target's suffix so tools that guess a format from the name still
do, and moves it into place only when the block succeeds; on any failure the partial file is removed and
the old target, if any, stays as it was. ``durable=True`` also flushes the data to disk before the rename,
for files whose loss after a power cut would lose work already paid for (a product run's output).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_PREFIX = ".partial-"


@contextmanager
def atomic_target(target: Path | str, *, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``target`` that becomes ``target`` when the block succeeds."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=final.parent, prefix=PARTIAL_PREFIX,
                                    suffix=final.suffix if suffix is None else suffix)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(target: Path | str, data: bytes | str, *, durable: bool = False) -> Path:
    """Write ``data`` (text as UTF-8, line endings untouched) to ``target`` whole or not at all."""
    final = Path(target)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_target(final) as partial, partial.open("wb") as handle:
        handle.write(raw)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    return final
