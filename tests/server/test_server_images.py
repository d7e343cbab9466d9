"""``POST /v1/images/generations`` through the openai SDK: the vendor's images passed through inline, priced per
image from the catalog, cached like any call and written to the ledger once per upstream request."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import openai
import pytest
from PIL import Image
from server_helpers import calls, make_key

from contentmill.catalog import load_catalog
from contentmill.providers.fake import fake_png
from contentmill.testing.harness import Served, Upstream

PROMPT = "a lighthouse at dusk, painted"


def test_an_image_is_passed_through_priced_per_image_and_cached(
        sdk: Callable[..., openai.OpenAI], server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    client = sdk(server, make_key(env).secret)
    answer = client.images.generate(model="gpt-image-1", prompt=PROMPT, size="1024x1536", quality="medium")
    assert answer.data is not None and answer.data[0].b64_json
    png = base64.b64decode(answer.data[0].b64_json)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (1024, 1536)
    assert png == fake_png(PROMPT, 1024, 1536)  # the vendor's picture, as it sent it
    again = client.images.generate(model="openai:gpt-image-1", prompt=PROMPT, size="1024x1536", quality="medium")
    assert again.data == answer.data
    [row, hit] = calls(env, at_least=2)
    assert row.api_type == "image" and row.outcome == "ok" and row.usage is not None and row.usage.images == 1
    assert row.cost_usd == pytest.approx(load_catalog().get("openai:gpt-image-1").per_image or -1)
    assert hit.outcome == "cached" and hit.saved_usd == pytest.approx(row.cost_usd)
    assert upstream_server.stats()["by_model"]["gpt-image-1"]["requests"] == 1
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.images.generate(model="dall-e-3", prompt=PROMPT, response_format="url")
