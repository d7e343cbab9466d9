"""contentmill: text, speech and video generation with AI models at a cost you can predict.

The library in one import::

    from contentmill import Gateway, TextRequest

    async with Gateway() as gateway:
        answer = await gateway.generate(TextRequest.chat("A tagline for a wool scarf"), tags={"team": "shop"})

The request types load with the package; the gateway (and what it pulls in: the ledger, the cache, the
providers) loads on first use, so ``import contentmill`` stays cheap for the CLI and the workers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from contentmill.requests import EmbeddingRequest, ImageRequest, Message, SpeechRequest, TextRequest

if TYPE_CHECKING:
    from contentmill.errors import ContentmillError
    from contentmill.gateway import Gateway, Generation
    from contentmill.settings import Settings

__version__ = "0.1.0"
__all__ = [
    "ContentmillError",
    "EmbeddingRequest",
    "Gateway",
    "Generation",
    "ImageRequest",
    "Message",
    "Settings",
    "SpeechRequest",
    "TextRequest",
]

_LAZY = {
    "ContentmillError": "contentmill.errors",
    "Gateway": "contentmill.gateway",
    "Generation": "contentmill.gateway",
    "Settings": "contentmill.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'contentmill' has no attribute {name!r}")
    return getattr(import_module(module), name)
