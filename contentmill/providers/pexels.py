"""Stock footage by search from Pexels (or any API shaped like it), over httpx.

``GET {base}/videos/search?query=...&orientation=portrait|landscape&per_page=N`` with the key in the
``Authorization`` header (Pexels takes it bare, without "Bearer"), then the chosen MP4 downloaded from its link.
Pexels is free (its licence allows use without attribution; 200 requests an hour, 20,000 a month by default), so
searches are not model calls: they cost $0, go through no gateway budget and write no ledger row; the visuals step
counts them in its report. Errors map into ``contentmill.errors`` like a model provider's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from contentmill.errors import (
    AuthenticationError,
    MalformedResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)

PROVIDER = "pexels"
MAX_CLIP_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Clip:
    """One video of a search: its page, the MP4 file chosen for the frame, its size and length."""

    id: int
    page: str
    link: str
    width: int
    height: int
    duration_s: float


def _best_file(files: list[Any], short_side: int) -> dict[str, Any] | None:
    """The MP4 whose short side is nearest at or above the frame's, else the largest one."""
    mp4 = [f for f in files if isinstance(f, dict) and f.get("file_type") == "video/mp4" and f.get("link")
           and isinstance(f.get("width"), int) and isinstance(f.get("height"), int)]
    if not mp4:
        return None
    big = [f for f in mp4 if min(f["width"], f["height"]) >= short_side]
    if big:
        return min(big, key=lambda f: min(f["width"], f["height"]))
    return max(mp4, key=lambda f: min(f["width"], f["height"]))


class PexelsClient:
    """Searches and downloads; ``http_client=`` for tests, else its own client, closed by ``aclose``."""

    def __init__(self, api_key: SecretStr, base_url: str = "https://api.pexels.com", *, timeout: float = 60.0,
                 http_client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._own = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self._headers = {"authorization": api_key.get_secret_value(), "user-agent": "contentmill/0.1"}

    def _error(self, response: httpx.Response, what: str) -> ProviderError:
        status = response.status_code
        message = f"{what}: HTTP {status} {response.text[:200]}".strip()
        if status in (401, 403):
            return AuthenticationError(f"{message}; check CONTENTMILL_PEXELS_API_KEY", provider=PROVIDER,
                                       status=status)
        if status == 429:
            return ProviderRateLimited(message, provider=PROVIDER, status=status)
        return ProviderUnavailable(message, provider=PROVIDER, status=status)

    async def _get(self, url: str, what: str, params: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = await self._client.get(url, params=params, headers=headers)
        except httpx.TimeoutException:
            raise ProviderTimeout(f"{what}: no answer from {self.base_url}", provider=PROVIDER) from None
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{what}: cannot reach {self.base_url}: {exc!r}", provider=PROVIDER) from None
        if response.status_code >= 400:
            raise self._error(response, what)
        return response

    async def search(self, query: str, orientation: Literal["portrait", "landscape"], short_side: int,
                     per_page: int = 5) -> list[Clip]:
        """Videos for ``query``, best first, each with the file that best fits a frame of ``short_side``."""
        response = await self._get(f"{self.base_url}/videos/search", f"searching footage for {query!r}",
                                   {"query": query, "orientation": orientation, "per_page": per_page},
                                   self._headers)
        try:
            videos = response.json()["videos"]
        except (ValueError, KeyError, TypeError):
            raise MalformedResponse("the footage search answered without a videos list", provider=PROVIDER) from None
        clips = []
        for video in videos if isinstance(videos, list) else ():
            chosen = _best_file(video.get("video_files") or [], short_side) if isinstance(video, dict) else None
            if chosen is None:
                continue
            clips.append(Clip(int(video.get("id") or 0), str(video.get("url") or ""), str(chosen["link"]),
                              chosen["width"], chosen["height"], float(video.get("duration") or 0)))
        return clips

    async def download(self, clip: Clip) -> bytes:
        response = await self._get(clip.link, f"downloading footage {clip.id}")
        if len(response.content) > MAX_CLIP_BYTES:
            raise ProviderUnavailable(f"footage {clip.id} is larger than {MAX_CLIP_BYTES} bytes", provider=PROVIDER)
        return response.content

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()
