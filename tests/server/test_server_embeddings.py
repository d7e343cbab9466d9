"""``POST /v1/embeddings`` through the openai SDK: a vendor model priced per input token, and the bundled MiniLM
as a free model; both cached like any call and written to the ledger."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import openai
import pytest
from server_helpers import calls, make_key

from contentmill.catalog import load_catalog
from contentmill.metering import count_tokens
from contentmill.testing.harness import Served, Upstream
from contentmill.testing.upstream import fake_vector

TEXTS = ["a blue ceramic mug", "a walnut desk with two drawers"]


def test_a_vendors_embeddings_are_passed_through_and_priced_per_input_token(
        sdk: Callable[..., openai.OpenAI], server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    client = sdk(server, make_key(env).secret)
    answer = client.embeddings.create(model="text-embedding-3-small", input=TEXTS)  # base64 on the wire (the SDK asks)
    assert [len(d.embedding) for d in answer.data] == [1536, 1536]
    assert np.allclose(answer.data[1].embedding, fake_vector(TEXTS[1], 1536), atol=1e-6)
    tokens = sum(count_tokens(t, "cl100k_base") for t in TEXTS)
    assert answer.usage.prompt_tokens == tokens
    floats = client.embeddings.create(model="openai:text-embedding-3-small", input=TEXTS, encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(answer.data[0].embedding, abs=1e-6)
    [row, hit] = calls(env, at_least=2)
    assert row.api_type == "embedding" and row.outcome == "ok" and row.usage is not None
    assert row.usage.input_tokens == tokens
    assert row.cost_usd == pytest.approx(tokens * 0.02 / 1e6) == load_catalog().cost(row.model, row.usage)
    assert hit.outcome == "cached" and hit.saved_usd == pytest.approx(row.cost_usd)
    assert upstream_server.stats()["requests"] == 1


@pytest.mark.slow
def test_the_bundled_minilm_is_a_free_embedding_model(
        sdk: Callable[..., openai.OpenAI], server: Served, env: dict[str, str]) -> None:
    answer = sdk(server, make_key(env).secret).embeddings.create(model="local:all-minilm-l6-v2", input=TEXTS,
                                                                 encoding_format="float")
    vectors = np.array([d.embedding for d in answer.data])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert answer.usage.prompt_tokens > len(TEXTS)
    [row] = calls(env)
    assert row.model == "local:all-minilm-l6-v2" and row.cost_usd == 0 and row.outcome == "ok"
