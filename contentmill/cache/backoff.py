"""Back-off for a tier that stopped answering: skip it for a while, warn once, try again, say when it is back.

A dead Redis or S3 must cost the caller nothing but the miss: while a tier is down its operations are skipped
without a network round trip; after the back-off one operation probes it again (the wait doubles while it
stays down, up to a ceiling), so a tier that comes back is used again without hammering one that does not.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("contentmill.cache")


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a backend failure."""
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class Backoff:
    """Whether to talk to a tier now. ``down`` is a plain attribute so the healthy path costs one check."""

    def __init__(self, name: str, *, backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        self.name = name
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.down = False
        self._delay = 0.0
        self._retry_at = 0.0

    def available(self) -> bool:
        """True when healthy, or when the back-off has passed and one probe may go through."""
        if not self.down:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._delay  # only one probe per back-off period
        return True

    def failed(self, exc: BaseException, operation: str) -> None:
        """Start or lengthen the back-off; the first failure of an outage is logged as a warning."""
        self._delay = self.backoff_s if not self.down else min(self._delay * 2, self.max_backoff_s)
        self._retry_at = time.monotonic() + self._delay
        if not self.down:
            log.warning("cache tier %s is unreachable (%s during %s); skipping it, next try in %.1f s",
                        self.name, describe(exc), operation, self._delay)
        else:
            log.debug("cache tier %s still unreachable (%s); next try in %.1f s", self.name, describe(exc),
                      self._delay)
        self.down = True

    def succeeded(self) -> None:
        if self.down:
            log.warning("cache tier %s is reachable again", self.name)
            self.down = False
            self._delay = 0.0
