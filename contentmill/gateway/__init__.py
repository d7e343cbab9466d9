"""The gateway every model call passes through: core.py (the call), meter.py (its money), generation.py (what it
produced and how the cache keeps it), batch.py (the Batch API), admission*.py and policy.py (the limits)."""

from contentmill.gateway.core import Gateway
from contentmill.gateway.generation import Generation

__all__ = ["Gateway", "Generation"]
