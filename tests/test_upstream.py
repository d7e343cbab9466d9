"""The fake OpenAI-compatible upstream over real HTTP: answers, usage, streaming, limits, faults, speech, auth."""

from __future__ import annotations

import io
import json
import math
import re
import signal
import socket
import time
import uuid
import wave
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest

from contentmill.audio import CHARS_PER_SECOND
from contentmill.errors import EngineError
from contentmill.metering import count_message_tokens, count_tokens, encoding_name_for
from contentmill.providers.fake import fake_reply
from contentmill.testing.harness import Upstream, start_upstream, upstream_args
from contentmill.testing.upstream import DEFAULT_MODELS, format_duration, key_fingerprint

Start = Callable[..., Upstream]
MESSAGES = [
    {"role": "system", "content": "You write short product copy."},
    {"role": "user", "content": "Describe a walnut desk lamp."},
]
TEXT = "\n".join(m["content"] for m in MESSAGES)
RATE_LIMIT_HEADERS = {
    f"x-ratelimit-{what}-{unit}" for what in ("limit", "remaining", "reset") for unit in ("requests", "tokens")
}
GO_DURATION = re.compile(r"(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)")


@pytest.fixture(scope="module")
def shared() -> Iterator[Upstream]:
    """One server for the tests that need no options; each test keeps to an API key of its own."""
    with start_upstream() as server:
        yield server


@pytest.fixture
def key() -> str:
    return f"sk-test-{uuid.uuid4().hex}"


def client(server: Upstream, key: str | None = None, timeout: float = 10.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=timeout, trust_env=False)


@pytest.fixture
def api(shared: Upstream, key: str) -> Iterator[httpx.Client]:
    with client(shared, key) as http:
        yield http


def chat(http: httpx.Client, headers: Mapping[str, str] | None = None, **body: Any) -> httpx.Response:
    payload = {"model": "gpt-4o-mini", "messages": MESSAGES, **body}
    return http.post("/chat/completions", json=payload, headers=headers)


def speak(http: httpx.Client, text: str, speed: float = 1.0) -> httpx.Response:
    body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav", "speed": speed}
    return http.post("/audio/speech", json=body)


def sse_data(response: httpx.Response) -> list[str]:
    """The data of each Server-Sent Event, checking the framing on the way."""
    blocks = response.text.split("\n\n")
    assert blocks[-1] == "" and all(block.startswith("data: ") for block in blocks[:-1])
    return [block.removeprefix("data: ") for block in blocks[:-1]]


# -- chat -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-3.5-turbo"])
def test_chat_answers_fake_reply_with_tiktoken_usage(api: httpx.Client, model: str) -> None:
    response = chat(api, model=model, max_tokens=200)
    assert response.status_code == 200
    body = response.json()
    encoding = encoding_name_for(model)
    text, finish = fake_reply(TEXT, 200, 0, encoding)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == model
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"] == text
    assert body["choices"][0]["finish_reason"] == finish == "stop"
    prompt, completion = count_message_tokens(MESSAGES, encoding), count_tokens(text, encoding)
    assert {k: body["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    assert RATE_LIMIT_HEADERS <= set(response.headers.keys())
    assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])


def test_max_tokens_cuts_the_answer_and_seed_changes_it(api: httpx.Client) -> None:
    body = chat(api, max_completion_tokens=3, seed=5).json()
    text, finish = fake_reply(TEXT, 3, 5, "o200k_base")
    assert (body["choices"][0]["message"]["content"], body["choices"][0]["finish_reason"]) == (text, "length")
    assert body["usage"]["completion_tokens"] == count_tokens(text, "o200k_base") == 3


def test_stop_sequence_ends_the_answer(api: httpx.Client) -> None:
    body = chat(api, max_tokens=100, stop=["."]).json()
    assert body["choices"][0]["message"]["content"] == fake_reply(TEXT, 100)[0].split(".")[0]
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("latency_ms", [0, 60])
def test_stream_reassembles_to_the_plain_answer(api: httpx.Client, latency_ms: int) -> None:
    plain = chat(api, max_tokens=60).json()
    headers = {"X-Upstream-Latency-Ms": str(latency_ms)}
    response = chat(api, headers, max_tokens=60, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(response)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    *answer, usage_chunk = chunks
    assert answer[0]["choices"][0]["delta"]["role"] == "assistant"
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in answer)
        == plain["choices"][0]["message"]["content"]
    )
    assert [c["choices"][0]["finish_reason"] for c in answer] == [None] * (len(answer) - 1) + ["stop"]
    assert all(c["usage"] is None for c in answer)
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == plain["usage"]


def test_stream_without_usage_option_sends_no_usage(api: httpx.Client) -> None:
    chunks = [json.loads(item) for item in sse_data(chat(api, max_tokens=20, stream=True))[:-1]]
    assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["choices"][0]["delta"] == {}


def test_json_mode_answers_a_json_object(api: httpx.Client) -> None:
    messages = [{"role": "user", "content": "Describe a walnut desk lamp as JSON."}]
    answers = [
        chat(api, messages=messages, max_tokens=300, response_format={"type": "json_object"}).json() for _ in range(2)
    ]
    content = answers[0]["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict) and json.loads(content)
    assert answers[1]["choices"][0]["message"]["content"] == content
    refused = chat(api, max_tokens=300, response_format={"type": "json_object"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "messages"


# -- rate limits ----------------------------------------------------------------------------------------------


def test_rpm_limit_refuses_like_openai_and_recovers_after_retry_after(upstream: Start, key: str) -> None:
    server = upstream(rpm=120)
    with client(server, key) as http:
        served = [chat(http, max_tokens=5) for _ in range(120)]
        assert [r.status_code for r in served] == [200] * 120  # the bucket starts full
        for _ in range(20):  # it refills 2 a second, so it runs dry within a few more
            refused = chat(http, max_tokens=5)
            if refused.status_code == 429:
                break
            served.append(refused)
        assert refused.status_code == 429
        error = refused.json()["error"]
        wait_ms = int(refused.headers["retry-after-ms"])
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert error["message"] == (
            f"Rate limit reached for gpt-4o-mini in organization org-upstream on requests per min (RPM): "
            f"Limit 120, Used 120, Requested 1. Please try again in {format_duration(wait_ms / 1000)}."
        )
        assert 0 < wait_ms <= 500  # one request comes back in 60/120 s
        assert int(refused.headers["Retry-After"]) == math.ceil(wait_ms / 1000)
        assert refused.headers["x-ratelimit-limit-requests"] == "120"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert GO_DURATION.fullmatch(refused.headers["x-ratelimit-reset-requests"])
        time.sleep(wait_ms / 1000)
        assert chat(http, max_tokens=5).status_code == 200
    counters = server.stats()["by_key"][key_fingerprint(key)]
    assert (counters["requests"], counters["rejected_429"]) == (len(served) + 1, 1)


def test_tpm_limit_charges_max_tokens_and_spares_speech(upstream: Start, key: str) -> None:
    server = upstream(tpm=6000)
    prompt = count_message_tokens(MESSAGES, "o200k_base")
    with client(server, key) as http:
        first = chat(http, max_tokens=6000 - prompt - 40)
        assert first.status_code == 200
        assert int(first.headers["x-ratelimit-remaining-tokens"]) < 1000  # charged max_tokens, not the ~30 used
        refused = chat(http, max_tokens=50)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"
        found = re.fullmatch(
            r"Rate limit reached for gpt-4o-mini in organization org-upstream on tokens per min \(TPM\): "
            r"Limit 6000, Used (\d+), Requested (\d+)\. Please try again in \S+\.",
            refused.json()["error"]["message"],
        )
        assert found and int(found[2]) == prompt + 50 and int(found[1]) + prompt + 50 > 6000
        wait_ms = int(refused.headers["retry-after-ms"])
        assert 0 < wait_ms <= (prompt + 50) * 10  # 6000 a minute refill 1 token per 10 ms
        assert speak(http, "Tokens are spent, yet speech goes on.").status_code == 200
        time.sleep(wait_ms / 1000)
        assert chat(http, max_tokens=50).status_code == 200
        too_large = chat(http, max_tokens=6000)
    assert too_large.status_code == 429 and "Retry-After" not in too_large.headers
    assert too_large.json()["error"]["message"].startswith("Request too large for gpt-4o-mini")


def test_error_rate_is_reproducible_with_a_seed(upstream: Start, key: str) -> None:
    runs = []
    for _ in range(2):
        server = upstream(error_rate=0.5, seed=11)
        with client(server, key) as http:
            responses = [chat(http, max_tokens=5) for _ in range(24)]
        runs.append([r.status_code for r in responses])
        assert server.stats()["errors_5xx"] == runs[-1].count(500)
    assert runs[0] == runs[1] and set(runs[0]) == {200, 500}
    failed = next(r for r in responses if r.status_code == 500)
    assert failed.json()["error"]["type"] == "server_error"


# -- faults ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "kind"), [("500", 500, "server_error"), ("503", 503, "server_error"), ("429", 429, "requests")]
)
def test_fault_header_answers_that_status(api: httpx.Client, fault: str, status: int, kind: str) -> None:
    response = chat(api, {"X-Upstream-Fault": fault}, max_tokens=5)
    assert response.status_code == status and response.json()["error"]["type"] == kind
    if status == 429:
        assert (response.headers["Retry-After"], response.headers["retry-after-ms"]) == ("1", "1000")


def test_malformed_fault_answers_200_that_is_not_json(api: httpx.Client) -> None:
    response = chat(api, {"X-Upstream-Fault": "malformed"}, max_tokens=5)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    audio = api.post(
        "/audio/speech",
        json={"model": "tts-1", "input": "Hi", "voice": "alloy"},
        headers={"X-Upstream-Fault": "malformed"},
    )
    assert audio.status_code == 200
    with pytest.raises((wave.Error, EOFError)):
        wave.open(io.BytesIO(audio.content)).close()


def test_disconnect_fault_closes_without_an_answer(api: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        chat(api, {"X-Upstream-Fault": "disconnect"}, max_tokens=5)
    assert chat(api, max_tokens=5).status_code == 200


def test_timeout_fault_outlasts_the_client(shared: Upstream, key: str) -> None:
    with client(shared, key, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            chat(http, {"X-Upstream-Fault": "timeout"}, max_tokens=5)
        assert chat(http, max_tokens=5).status_code == 200


def test_latency_header_delays_one_answer(api: httpx.Client) -> None:
    started = time.monotonic()
    assert chat(api, {"X-Upstream-Latency-Ms": "150"}, max_tokens=5).status_code == 200
    assert time.monotonic() - started >= 0.15
    assert chat(api, {"X-Upstream-Latency-Ms": "soon"}, max_tokens=5).status_code == 400


def test_unknown_fault_is_a_bad_request(api: httpx.Client) -> None:
    response = chat(api, {"X-Upstream-Fault": "gremlins"}, max_tokens=5)
    assert response.status_code == 400 and "X-Upstream-Fault must be one of" in response.json()["error"]["message"]


# -- speech ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "speed"), [("A calm voice reads the walnut desk lamp description aloud to you.", 1.25), ("Hi", 1.0)]
)
def test_speech_is_a_wav_as_long_as_the_text(
    shared: Upstream, api: httpx.Client, key: str, text: str, speed: float
) -> None:
    response = speak(api, text, speed)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as wav:
        rate, frames = wav.getframerate(), wav.getnframes()
    assert frames / rate == pytest.approx(max(0.2, len(text) / CHARS_PER_SECOND / speed), abs=1 / rate)
    assert shared.stats()["by_key"][key_fingerprint(key)]["characters"] == len(text)


# -- auth, models, stats, bad requests ------------------------------------------------------------------------


def test_auth_refuses_missing_and_wrong_keys(upstream: Start) -> None:
    good, wrong = "sk-good-0123456789abcdef", "sk-wrong-0123456789abcdef"
    server = upstream(api_key=[good, "sk-another-one"], models="acme-1,acme-2")
    with client(server) as anonymous, client(server, wrong) as stranger, client(server, good) as member:
        missing, refused, listed = anonymous.get("/models"), chat(stranger, max_tokens=5), member.get("/models")
        served = chat(member, max_tokens=5)
    for response in (missing, refused):
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        assert "x-request-id" in response.headers and RATE_LIMIT_HEADERS <= set(response.headers.keys())
    assert key_fingerprint(wrong) in refused.json()["error"]["message"] and wrong not in refused.text
    assert [m["id"] for m in listed.json()["data"]] == [*DEFAULT_MODELS, "acme-1", "acme-2"]
    assert listed.json()["object"] == "list" and served.status_code == 200
    assert server.stats()["requests"] == 1


def test_stats_count_by_key_and_model_and_reset_zeroes_them(shared: Upstream, api: httpx.Client, key: str) -> None:
    shared.reset()
    usages = [chat(api, max_tokens=30).json()["usage"] for _ in range(2)]
    chat(api, {"X-Upstream-Fault": "500"})
    chat(api, {"X-Upstream-Fault": "429"})
    speak(api, "Hello there")
    stats = shared.stats()
    tokens = {
        "input_tokens": sum(u["prompt_tokens"] for u in usages),
        "output_tokens": sum(u["completion_tokens"] for u in usages),
    }
    expected = {
        "requests": 3,
        "rejected_429": 1,
        "errors_5xx": 1,
        **tokens,
        "characters": len("Hello there"),
        "streamed_output_tokens": 0,
        "streams_cut": 0,
    }
    assert stats["by_key"] == {key_fingerprint(key): expected}
    assert {k: stats[k] for k in expected} == expected
    assert stats["by_model"]["gpt-4o-mini"] == {**expected, "requests": 2, "characters": 0}
    assert stats["by_model"]["tts-1"]["characters"] == len("Hello there")
    assert key not in json.dumps(stats)
    shared.reset()
    cleared = shared.stats()
    assert cleared["by_key"] == {} and cleared["by_model"] == {} and cleared["requests"] == cleared["characters"] == 0


CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
SPEECH = {"model": "tts-1", "input": "Hi", "voice": "alloy"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/chat/completions", b"{not json", None),
        ("/chat/completions", {"messages": MESSAGES}, "model"),
        ("/chat/completions", {"model": "gpt-4o-mini"}, "messages"),
        ("/chat/completions", {**CHAT, "messages": "hello"}, "messages"),
        ("/chat/completions", {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ("/chat/completions", {**CHAT, "max_tokens": 0}, "max_tokens"),
        ("/chat/completions", {**CHAT, "n": 2}, "n"),
        ("/chat/completions", {**CHAT, "response_format": {"type": "json_schema"}}, "response_format"),
        ("/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
        ("/audio/speech", {**SPEECH, "response_format": "mp3"}, "response_format"),
        ("/audio/speech", {"model": "tts-1", "input": "Hi"}, "voice"),
        ("/audio/speech", {**SPEECH, "speed": 5}, "speed"),
    ],
)
def test_bad_request_is_a_400_naming_the_parameter(api: httpx.Client, path: str, body: Any, param: str) -> None:
    response = api.post(path, content=body) if isinstance(body, bytes) else api.post(path, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_unknown_path_is_openais_404(api: httpx.Client) -> None:
    response = api.post("/completions/legacy", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/completions/legacy)"


# -- the process ----------------------------------------------------------------------------------------------


def test_sigterm_stops_cleanly_even_with_a_hanging_request(upstream: Start) -> None:
    server = upstream()
    host, port = server.base_url.removeprefix("http://").removesuffix("/v1").rsplit(":", 1)
    body = json.dumps({**CHAT, "max_tokens": 5}).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-test\r\n"
        f"X-Upstream-Fault: timeout\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request + body)
        time.sleep(0.2)  # let the server start waiting on it
        assert server.stop() == 0
        assert sock.recv(1024) == b""  # closed without an answer
    assert server.stderr == ""


def test_sigint_stops_cleanly(upstream: Start) -> None:
    server = upstream()
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(10) == 0
    server.stop()
    assert server.stderr == ""


def test_harness_reports_a_server_that_cannot_start() -> None:
    with pytest.raises(EngineError, match=r"exited with code 2(.|\n)*--error-rate is a share from 0 to 1"):
        start_upstream(error_rate=2)


def test_options_become_flags() -> None:
    assert upstream_args(rpm=5, api_key=["a", "b"], latency_ms=20, seed=None) == [
        "--rpm", "5", "--api-key", "a", "--api-key", "b", "--latency-ms", "20",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (0.0004, "1ms"),
        (0.12, "120ms"),
        (1, "1s"),
        (2.3834, "2.384s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
    ],
)
def test_durations_read_like_openais(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_key_fingerprints_never_show_the_key() -> None:
    assert key_fingerprint("sk-proj-0123456789abcdefWXYZ") == "sk-...WXYZ"
    short = key_fingerprint("sk-good")
    assert short.startswith("sk-...") and "good" not in short and short == key_fingerprint("sk-good")
