"""Token counting is tiktoken's own, offline, for OpenAI families, in English and Chinese."""

import hashlib

import pytest
import quicktok

from contentmill.metering import (
    Usage,
    count_message_tokens,
    count_tokens,
    encoding_name_for,
    get_encoding,
    install_offline_encoding,
)

ENGLISH = (
    "The stainless steel water bottle keeps drinks cold for 24 hours and hot for 12. It holds 750 ml, "
    "fits most cup holders, and the powder-coated finish won't sweat or slip. Dishwasher-safe lid; BPA-free."
)
CHINESE = "这款不锈钢保温杯可保冷24小时、保温12小时，容量750毫升，适合大多数杯架。杯盖可用洗碗机清洗，不含双酚A。"


def test_known_token_ids() -> None:
    # Reference ids published with tiktoken for these encodings.
    assert get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert get_encoding("o200k_base").encode("hello world") == [24912, 2375]


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("text", [ENGLISH, CHINESE], ids=["english", "chinese"])
def test_counts_match_an_independent_bpe_implementation(encoding: str, text: str) -> None:
    ours = get_encoding(encoding).encode_ordinary(text)
    theirs = quicktok.get_encoding(encoding).encode(text)
    assert ours == list(theirs)
    assert count_tokens(text, encoding) == len(ours)
    assert get_encoding(encoding).decode(ours) == text


def test_chinese_costs_more_tokens_per_character_in_cl100k_than_o200k() -> None:
    assert count_tokens(CHINESE, "o200k_base") < count_tokens(CHINESE, "cl100k_base")


def test_offline_file_matches_tiktokens_checksum(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    path = install_offline_encoding("o200k_base")
    assert path.parent == tmp_path
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    assert install_offline_encoding("o200k_base") == path  # second call reuses the verified file


def test_empty_cache_dir_is_refused_with_a_clear_error(monkeypatch) -> None:
    from contentmill.errors import ConfigError

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(ConfigError, match="TIKTOKEN_CACHE_DIR"):
        install_offline_encoding("cl100k_base")


def test_message_tokens_follow_openais_accounting() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ENGLISH}]
    enc = get_encoding("o200k_base")
    body = sum(len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages)
    assert count_message_tokens(messages, "o200k_base") == body + 3 * len(messages) + 3


@pytest.mark.parametrize(
    ("model", "encoding"),
    [("openai:gpt-4o", "o200k_base"), ("gpt-4o-mini", "o200k_base"), ("openai:gpt-4.1-mini", "o200k_base"),
     ("openai:gpt-3.5-turbo", "cl100k_base"), ("deepseek:deepseek-chat", "cl100k_base")],
)
def test_encoding_for_model(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding


def test_usage_adds_and_round_trips() -> None:
    a = Usage(input_tokens=10, output_tokens=5, characters=3)
    b = Usage(input_tokens=1, cached_input_tokens=1, seconds=2.5, estimated=True)
    total = a + b
    assert (total.input_tokens, total.output_tokens, total.cached_input_tokens) == (11, 5, 1)
    assert total.seconds == 2.5 and total.characters == 3 and total.estimated
    assert Usage.from_dict(total.as_dict()) == total
    assert total.total_tokens == 16
