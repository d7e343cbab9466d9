"""``contentmill serve`` driven by the official openai SDK (sync, async, streaming, errors), against the fake
upstream as a real server: answers, headers, ledger rows, and the statuses the SDK maps to its exceptions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from server_helpers import ADMIN_KEY, UPSTREAM_KEY, calls, make_key, server_env

from contentmill.testing.harness import Served, Upstream

MESSAGES = [{"role": "user", "content": "Describe a blue ceramic mug."}]


SDK = Callable[..., openai.OpenAI]


@pytest.fixture
def admin_client() -> Iterator[Callable[[Served], httpx.Client]]:
    made: list[httpx.Client] = []

    def make(server: Served) -> httpx.Client:
        made.append(httpx.Client(base_url=server.root_url, headers={"authorization": f"Bearer {ADMIN_KEY}"},
                                 timeout=10))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_a_chat_completion_through_the_sdk_is_answered_billed_and_recorded_once(
        sdk: SDK, server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    issued = make_key(env, project="mugs")
    raw = sdk(server, issued.secret).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=40)  # type: ignore[arg-type]
    answer = raw.parse()
    assert answer.choices[0].message.content.startswith("Sure.")
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    rows = calls(env)
    assert len(rows) == 1 and upstream_server.stats()["requests"] == 1
    row = rows[0]
    assert row.outcome == "ok" and row.model == "openai:gpt-4o-mini"
    assert row.tags["team"] == "shop" and row.tags["project"] == "mugs" and row.tags["vkey"] == issued.key.id
    assert row.tags["request"] == raw.headers["x-contentmill-request-id"]
    assert float(raw.headers["x-contentmill-cost-usd"]) == pytest.approx(row.cost_usd, abs=1e-9) and row.cost_usd > 0
    assert row.usage is not None and row.usage.output_tokens == answer.usage.completion_tokens
    assert raw.headers["x-contentmill-cached"] == "false"
    again = sdk(server, issued.secret).chat.completions.with_raw_response.create(
        model="openai:gpt-4o-mini", messages=MESSAGES, max_tokens=40)  # type: ignore[arg-type]
    assert again.headers["x-contentmill-cached"] == "true" and float(again.headers["x-contentmill-cost-usd"]) == 0
    assert again.parse().choices[0].message.content == answer.choices[0].message.content
    assert upstream_server.stats()["requests"] == 1


def test_a_stream_passes_pieces_through_and_bills_the_upstreams_final_usage(
        sdk: SDK, server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    issued = make_key(env)
    stream = sdk(server, issued.secret).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=40, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(pieces) > 3 and usage is not None
    served = upstream_server.stats()
    assert served["requests"] == 1 and usage.completion_tokens == served["output_tokens"]
    [row] = calls(env)
    assert row.outcome == "ok" and row.usage is not None and not row.usage.estimated
    assert row.usage.output_tokens == served["output_tokens"] and row.usage.input_tokens == served["input_tokens"]
    assert row.cost_usd > 0


async def test_async_clients_at_once_each_get_their_answer_and_one_ledger_row(
        server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    issued = make_key(env)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=issued.secret, max_retries=0) as sdk:
        async def one(i: int) -> str:
            if i % 2:
                answer = await sdk.chat.completions.create(
                    model="gpt-4o-mini", max_tokens=30,
                    messages=[{"role": "user", "content": f"Name product {i}."}])
                return answer.choices[0].message.content or ""
            stream = await sdk.chat.completions.create(
                model="gpt-4o-mini", max_tokens=30, stream=True,
                messages=[{"role": "user", "content": f"Name product {i}."}])
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        texts = await asyncio.gather(*(one(i) for i in range(16)))
    assert all(t.startswith("Sure.") for t in texts)
    rows = calls(env, at_least=16)
    assert len(rows) == 16 == upstream_server.stats()["requests"]
    assert {r.outcome for r in rows} == {"ok"} and len({r.tags["request"] for r in rows}) == 16


def test_errors_come_in_openais_shape_as_the_sdks_exception_classes(
        sdk: SDK, server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    only_mini = make_key(env, models=["gpt-4o-mini"])
    with pytest.raises(openai.AuthenticationError) as bad_key:
        sdk(server, "cm-not-a-key").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert bad_key.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "sk-no-scheme").models.list()
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk(server, only_mini.secret).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert denied.value.code == "model_not_allowed"
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk(server, only_mini.secret).chat.completions.create(model="no-such-model", messages=MESSAGES)  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk(server, only_mini.secret).chat.completions.create(model="gpt-4o-mini", messages=[])
    assert bad.value.code == "invalid_value" and bad.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as too_long:
        sdk(server, only_mini.secret).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=10_000_000)  # type: ignore[arg-type]
    assert too_long.value.code == "context_length_exceeded"
    huge = httpx.post(server.base_url + "/chat/completions", headers={"authorization": f"Bearer {only_mini.secret}"},
                      content=b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
                      + b"x" * (5 * 1024 * 1024) + b'"}]}', timeout=30)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    garbage = httpx.post(server.base_url + "/chat/completions", content=b"{not json",
                         headers={"authorization": f"Bearer {only_mini.secret}"}, timeout=10)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"
    assert httpx.get(server.root_url + "/nowhere", timeout=10).status_code == 404
    assert upstream_server.stats()["requests"] == 0
    server.stop()
    assert "Traceback" not in server.stderr


def test_an_exhausted_key_budget_is_a_429_the_sdk_does_not_retry(
        sdk: SDK, serve: Callable[..., Served], env: dict[str, str], upstream_server: Upstream) -> None:
    server = serve(env)
    issued = make_key(env, budget_usd=0.00005)
    retrying = sdk(server, issued.secret, max_retries=2)
    answered, refused = 0, None
    for i in range(40):
        try:
            retrying.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
                                        messages=[{"role": "user", "content": f"Product {i}, one line."}])
            answered += 1
        except openai.RateLimitError as exc:
            refused = exc
            break
    assert refused is not None and refused.code == "budget_exceeded" and answered >= 1
    assert upstream_server.stats()["requests"] == answered  # the refusal reached no upstream, the SDK retried none
    rows = calls(env)
    spent = sum(r.cost_usd for r in rows if r.charged)
    assert spent <= 0.00005
    assert len([r for r in rows if r.outcome == "refused"]) == 1  # one refusal row: the SDK did not retry


def test_an_upstream_that_keeps_failing_is_a_502_with_one_error_row(
        sdk: SDK, serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    failing = upstream(api_key=[UPSTREAM_KEY], error_rate=1.0)
    env = server_env(failing.base_url, tmp_path / "data", max_retries="1")
    server = serve(env)
    issued = make_key(env)
    with pytest.raises(openai.APIStatusError) as failed:
        sdk(server, issued.secret).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    [row] = calls(env)
    assert row.outcome == "error" and row.error_type == "ProviderUnavailable" and row.cost_usd == 0
    assert failing.stats()["errors_5xx"] == 2  # the first try and one retry: one row for the call


def test_models_lists_what_the_key_may_use(sdk: SDK, server: Served, env: dict[str, str]) -> None:
    everything = {m.id for m in sdk(server, make_key(env).secret).models.list()}
    assert {"openai:gpt-4o-mini", "openai:gpt-4o", "auto", "local:espeak-ng"} <= everything
    assert not any(m.startswith(("qwen:", "deepseek:")) for m in everything)  # their keys are not set here
    limited = {m.id for m in sdk(server, make_key(env, models=["openai:gpt-4o-mini"]).secret).models.list()}
    assert limited == {"openai:gpt-4o-mini"}
    bare = sdk(server, make_key(env, models=["gpt-4o-mini"]).secret)  # named as clients name it
    assert {m.id for m in bare.models.list()} == {"openai:gpt-4o-mini"}
    assert bare.chat.completions.create(model="openai:gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]


def test_routing_skips_models_the_server_has_no_key_for(sdk: SDK, server: Served, env: dict[str, str]) -> None:
    client = sdk(server, make_key(env).secret)
    for asked in ("auto", "tier:light", "tier:standard", "tier:premium"):
        raw = client.chat.completions.with_raw_response.create(model=asked, messages=MESSAGES, max_tokens=20)  # type: ignore[arg-type]
        assert raw.headers["x-contentmill-model"].startswith(("openai:", "local:")), asked
        assert raw.headers["x-contentmill-route-decision"]


def test_the_local_engines_serve_openai_clients_as_they_call(sdk: SDK, server: Served, env: dict[str, str]) -> None:
    client = sdk(server, make_key(env).secret)
    audio = client.audio.speech.create(model="local:espeak-ng", voice="alloy", input="Hello there")
    assert audio.content[:4] == b"RIFF" and len(audio.content) > 10_000  # OpenAI's voice names: the default voice
    with pytest.raises(openai.BadRequestError, match="gives 384 dimensions"):
        client.embeddings.create(model="local:all-minilm-l6-v2", input="a mug", dimensions=64)


def test_metrics_label_routes_by_pattern_and_count_failed_calls(
        sdk: SDK, serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    failing = upstream(api_key=[UPSTREAM_KEY], error_rate=1.0)
    env = server_env(failing.base_url, tmp_path / "data", max_retries="0")
    server = serve(env)
    with pytest.raises(openai.APIStatusError):
        sdk(server, make_key(env).secret).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    for path in ("/scan/a", "/scan/b", "/v1/batches/batch_abc"):
        httpx.get(server.root_url + path, timeout=10)
    wrong = httpx.delete(server.base_url + "/chat/completions", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    page = httpx.get(server.root_url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).text
    assert 'contentmill_model_calls_total{model="openai:gpt-4o-mini",outcome="error",team="shop"} 1.0' in page
    assert 'route="unknown",status="404"} 2.0' in page and "/scan/" not in page
    assert 'route="/v1/batches/{id}",status="401"} 1.0' in page


def test_a_revoked_key_is_refused_within_a_second_and_keys_work_over_the_admin_api(
        sdk: SDK, admin_client: Callable[[Served], httpx.Client], server: Served, env: dict[str, str]) -> None:
    admin = admin_client(server)
    made = admin.post("/admin/keys", json={"team": "ads", "budget_usd": 1, "period": "day", "rpm": 100})
    assert made.status_code == 201
    as_string = admin.post("/admin/keys", json={"team": "ads", "models": "gpt-4o-mini"})
    assert as_string.status_code == 400 and "a list of model names" in as_string.json()["error"]["message"]
    secret, key_id = made.json()["key"], made.json()["id"]
    assert sdk(server, secret).models.list().data
    known = httpx.post(server.root_url + "/admin/keys", json={"team": "ads"},
                       headers={"authorization": f"Bearer {secret}"}, timeout=10)
    assert known.status_code == 403 and known.json()["error"]["code"] == "admin_key_required"  # known, not allowed
    listed = admin.get("/admin/keys").json()["data"]
    assert [k["id"] for k in listed] == [key_id] and all("key" not in k for k in listed)
    assert admin.post(f"/admin/keys/{key_id}/revoke").json()["state"] == "revoked"
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError):
        sdk(server, secret).models.list()
    assert admin.get("/admin/keys/vk-none").status_code == 404
    assert httpx.get(server.root_url + "/admin/keys", timeout=10).status_code == 401
    assert httpx.get(server.root_url + "/admin/keys", headers={"authorization": "Bearer wrong"},
                     timeout=10).status_code == 401


def test_rotating_a_key_stops_the_old_secret_and_keeps_the_id(
        sdk: SDK, admin_client: Callable[[Served], httpx.Client], server: Served) -> None:
    admin = admin_client(server)
    first = admin.post("/admin/keys", json={"team": "ads"}).json()
    second = admin.post(f"/admin/keys/{first['id']}/rotate").json()
    assert second["id"] == first["id"] and second["key"] != first["key"]
    time.sleep(1.1)
    assert sdk(server, second["key"]).models.list().data
    with pytest.raises(openai.AuthenticationError):
        sdk(server, first["key"]).models.list()


def test_a_server_without_an_admin_key_has_no_admin_api(serve: Callable[..., Served], env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "CONTENTMILL_ADMIN_KEY"}
    server = serve(env)
    answer = httpx.get(server.root_url + "/admin/keys", headers={"authorization": "Bearer anything"}, timeout=10)
    assert answer.status_code == 404 and "CONTENTMILL_ADMIN_KEY" in answer.json()["error"]["message"]
