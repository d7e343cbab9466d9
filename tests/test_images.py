"""Images through the gateway: OpenAI-compatible ``/images/generations`` on the fake upstream, priced per image
from the catalog, cached like any call, one ledger row per upstream request."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from contentmill.catalog import load_catalog
from contentmill.errors import BadRequest, BudgetExceeded
from contentmill.gateway import Gateway
from contentmill.ledger import Budget, LedgerStore, settings_url
from contentmill.providers.fake import fake_png
from contentmill.requests import ImageRequest
from contentmill.settings import load_settings
from contentmill.testing.harness import Upstream


@pytest.fixture
def vendor(upstream: Callable[..., Upstream], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Upstream:
    server = upstream()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-images")
    return server


def _colours(png: bytes) -> set[tuple[int, int, int]]:
    """The colours a picture is mostly made of."""
    with Image.open(io.BytesIO(png)) as image:
        small = image.convert("RGB").resize((16, 16), Image.Resampling.NEAREST)
        return {colour for _, colour in small.getcolors(256) or ()}


async def test_an_image_is_made_priced_per_image_cached_and_recorded_once(vendor: Upstream) -> None:
    settings = load_settings()
    asked = ImageRequest("a red octopus under the sea", size="1024x1536", quality="medium")
    async with Gateway(settings) as gateway:
        made = await gateway.image(asked, model="openai:gpt-image-1", tags={"team": "video"})
        again = await gateway.image(asked, model="openai:gpt-image-1", tags={"team": "video"})
        other = await gateway.image(ImageRequest("a green forest", size="1792x1024"), model="openai:dall-e-3")
    assert made.images is not None and len(made.images) == 1
    with Image.open(io.BytesIO(made.images[0])) as image:
        assert (image.format, image.size) == ("PNG", (1024, 1536))
    assert made.images[0] == fake_png(asked.prompt, 1024, 1536)  # the vendor's picture of this prompt
    assert other.images is not None and _colours(other.images[0]) != _colours(made.images[0])
    price = load_catalog().get("openai:gpt-image-1").per_image
    assert made.usage.images == 1 and made.cost_usd == pytest.approx(price) and price
    assert again.cached and again.cost_usd == 0 and again.images == made.images
    assert other.cost_usd == pytest.approx(0.08)
    assert vendor.stats()["by_model"]["gpt-image-1"]["requests"] == 1  # the second was the cache's
    store = LedgerStore(settings_url(settings))
    try:
        rows = store.calls()
    finally:
        store.close()
    assert [(r.model, r.api_type, r.outcome) for r in rows] == [
        ("openai:gpt-image-1", "image", "ok"), ("openai:gpt-image-1", "image", "cached"),
        ("openai:dall-e-3", "image", "ok")]
    assert rows[0].usage is not None and rows[0].usage.images == 1
    assert rows[0].cost_usd == pytest.approx(price) and rows[2].cost_usd == pytest.approx(0.08)


async def test_a_refused_image_request_costs_nothing_and_says_why(vendor: Upstream) -> None:
    settings = load_settings()
    async with Gateway(settings) as gateway:
        with pytest.raises(BadRequest, match="size"):
            await gateway.image(ImageRequest("a cat", size="5000x5000"), model="openai:gpt-image-1")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        ImageRequest("a cat", size="big")


async def test_images_are_reserved_against_a_budget_before_the_vendor_is_asked(vendor: Upstream) -> None:
    settings = load_settings()
    store = LedgerStore(settings_url(settings))
    try:  # room for two gpt-image-1 pictures at $0.063, not three
        store.set_budget(Budget(scope_key="team", scope_value="video", period="day", limit_usd=0.15))
    finally:
        store.close()
    async with Gateway(settings) as gateway:
        for number in range(2):
            await gateway.image(ImageRequest(f"scene {number}"), model="openai:gpt-image-1", tags={"team": "video"})
        with pytest.raises(BudgetExceeded, match="team=video"):
            await gateway.image(ImageRequest("scene 2"), model="openai:gpt-image-1", tags={"team": "video"})
    assert vendor.stats()["by_model"]["gpt-image-1"]["requests"] == 2  # the third was never sent
