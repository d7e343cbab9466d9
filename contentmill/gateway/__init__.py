"""The gateway every model call passes through."""

from contentmill.gateway.core import Gateway, Generation

__all__ = ["Gateway", "Generation"]
