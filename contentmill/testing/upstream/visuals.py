"""The fake upstream's pictures and footage, so videos with visuals cost nothing in tests.

``POST /v1/images/generations`` answers each prompt with PNGs drawn by ``providers.fake.fake_png`` (the same
prompt, the same picture; other prompts, other colours and shapes), in base64 (``b64_json``) as gpt-image
models always answer. As OpenAI does, a gpt-image model refuses ``response_format``; a DALL-E model asked for
``url`` is told this server answers ``b64_json`` only. Faults, latency and the key's request bucket apply as on
the other endpoints.

``GET /pexels/videos/search`` answers like Pexels' video search (the key bare in ``Authorization``), each hit
linking to ``GET /pexels/files/ID.mp4``: a 3-second H.264 clip of one colour drawn from the query, with a box
of its opposite colour, so tests can tell which search a frame came from. Point ``CONTENTMILL_PEXELS_BASE_URL``
at ``http://HOST:PORT/pexels``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from contentmill.media.ffmpeg import run_ffmpeg
from contentmill.providers.fake import fake_png
from contentmill.requests import IMAGE_SIZE
from contentmill.testing.upstream.common import Exchange, Wrap, json_body, optional_int, required_str, sleep
from contentmill.testing.upstream.errors import ApiError, bad_request
from contentmill.testing.upstream.service import MALFORMED_JSON, Service

IMAGE_MODELS = ("gpt-image-1", "dall-e-3", "dall-e-2")
MAX_SIDE = 4096
PROMPT_TOKENS_PER_CHAR = 0.25  # gpt-image-1 reports token usage too; a rough count is enough for a fake
CLIP_S = 3
CLIP_SIZES = {"portrait": (360, 640), "landscape": (640, 360), "square": (480, 480)}


def footage_colour(query: str) -> tuple[int, int, int]:
    """The colour of every clip a search for ``query`` links to."""
    digest = hashlib.sha256(query.strip().lower().encode()).digest()
    return digest[0], digest[1], digest[2]


@lru_cache(maxsize=32)
def _clip(query: str, width: int, height: int) -> bytes:
    red, green, blue = footage_colour(query)
    box = f"drawbox=x=iw/4:y=ih/4:w=iw/2:h=ih/8:color=0x{255 - red:02x}{255 - green:02x}{255 - blue:02x}:t=fill"
    with tempfile.TemporaryDirectory(prefix="upstream-clip-") as scratch:
        target = Path(scratch) / "clip.mp4"
        run_ffmpeg(["-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c=0x{red:02x}{green:02x}{blue:02x}:s={width}x{height}:d={CLIP_S}:r=25", "-vf", box,
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
                    str(target)], purpose="making a fake footage clip", timeout_s=60)
        return target.read_bytes()


@lru_cache(maxsize=64)
def _png(prompt: str, width: int, height: int) -> bytes:
    return fake_png(prompt, width, height)


def _size(body: dict[str, Any]) -> tuple[int, int]:
    size = body.get("size", "1024x1024")
    if size == "auto":
        return 1024, 1024
    if not isinstance(size, str) or not IMAGE_SIZE.match(size):
        raise bad_request(f"Invalid 'size': expected WIDTHxHEIGHT such as 1024x1536 (got {size!r}).", "size")
    width, _, height = size.partition("x")
    if max(int(width), int(height)) > MAX_SIDE:
        raise bad_request(f"Invalid 'size': at most {MAX_SIDE} pixels a side (got {size}).", "size")
    return int(width), int(height)


class VisualsApi:
    """The image routes of one fake upstream, sharing its keys, limits, faults and stats."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def routes(self, app: web.Application, wrap: Wrap) -> None:
        app.router.add_post("/v1/images/generations", wrap(self._images))
        app.router.add_get("/pexels/videos/search", wrap(self._footage_search))
        app.router.add_get("/pexels/files/{name}", wrap(self._footage_file))

    def _pexels_key(self, exchange: Exchange) -> str:
        key = exchange.request.headers.get("Authorization", "").strip()
        if not key:
            raise ApiError(401, "Authorization header with your Pexels API key is required.")
        exchange.key = key
        return key

    async def _footage_search(self, exchange: Exchange) -> web.StreamResponse:
        key = self._pexels_key(exchange)
        query = exchange.request.query.get("query", "").strip()
        if not query:
            raise bad_request("query is required.", "query")
        orientation = exchange.request.query.get("orientation", "landscape")
        width, height = CLIP_SIZES.get(orientation, CLIP_SIZES["landscape"])
        count = min(int(exchange.request.query.get("per_page", "5") or 5), 5)
        exchange.model = "pexels-search"
        early = await self.service.injected_failure(exchange, self.service.latency_s(exchange), MALFORMED_JSON)
        if early is not None:
            return early
        self.service.stats.served(key, "pexels-search")
        root = f"{exchange.request.scheme}://{exchange.request.host}/pexels/files"
        videos = []
        for index in range(count):
            number = int.from_bytes(hashlib.sha256(f"{query}#{index}".encode()).digest()[:3], "big")
            link = f"{root}/{number}.mp4?" + urlencode({"q": query, "w": width, "h": height})
            videos.append({"id": number, "width": width, "height": height, "duration": CLIP_S,
                           "url": f"https://www.pexels.com/video/{number}/", "image": "",
                           "video_files": [{"id": number, "quality": "sd", "file_type": "video/mp4", "width": width,
                                            "height": height, "fps": 25, "link": link}]})
        return web.json_response({"page": 1, "per_page": count, "total_results": count, "videos": videos})

    async def _footage_file(self, exchange: Exchange) -> web.StreamResponse:
        query = exchange.request.query.get("q", "")
        try:
            width, height = int(exchange.request.query["w"]), int(exchange.request.query["h"])
        except (KeyError, ValueError):
            raise ApiError(404, "no such file") from None
        if not query or not (16 <= width <= 1920 and 16 <= height <= 1920):
            raise ApiError(404, "no such file")
        exchange.model = "pexels-file"
        clip = await asyncio.to_thread(_clip, query, width - width % 2, height - height % 2)
        self.service.stats.served("pexels", "pexels-file")
        return web.Response(body=clip, content_type="video/mp4")

    async def _images(self, exchange: Exchange) -> web.StreamResponse:
        service = self.service
        key = service.authenticate(exchange)
        body = dict(await json_body(exchange.request))
        model, prompt = required_str(body, "model"), required_str(body, "prompt")
        exchange.model = model
        n = optional_int(body, "n", 1) or 1
        if n > 10:
            raise bad_request(f"Invalid 'n': at most 10 images a request (got {n}).", "n")
        width, height = _size(body)
        fmt = body.get("response_format")
        if model.startswith("gpt-image") and fmt is not None:
            raise bad_request("Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
        if fmt not in (None, "b64_json"):
            raise bad_request(f"Invalid 'response_format': this upstream answers 'b64_json' only (got {fmt!r}).",
                               "response_format")
        latency_s = service.latency_s(exchange)
        early = await service.injected_failure(exchange, latency_s, MALFORMED_JSON)
        if early is not None:
            return early
        service.admit(key, model, None)
        prompts = [prompt if i == 0 else f"{prompt}#{i}" for i in range(n)]
        images = await asyncio.gather(*(asyncio.to_thread(_png, p, width, height) for p in prompts))
        await sleep(latency_s)
        service.stats.served(key, model)
        answer: dict[str, Any] = {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(image).decode()} for image in images],
        }
        if model.startswith("gpt-image"):
            tokens = max(1, round(len(prompt) * PROMPT_TOKENS_PER_CHAR))
            answer["usage"] = {"input_tokens": tokens, "output_tokens": 1056 * n, "total_tokens": tokens + 1056 * n,
                               "input_tokens_details": {"text_tokens": tokens, "image_tokens": 0}}
        return web.json_response(answer)
