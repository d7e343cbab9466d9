"""Cache keys: same meaning -> same key; anything that changes the output -> another key; secrets refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from contentmill.cache import SecretInCacheKey, build_key, speech_key, text_key
from contentmill.cache.keys import CacheKey, normalize_text
from contentmill.requests import Message, SpeechRequest, TextRequest

BASE: dict[str, Any] = {
    "model": "openai:gpt-4o-mini",
    "tenant": "team-a",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe a mug."}],
    "params": {"max_tokens": 64, "temperature": 0.0},
    "template_version": "product-v3",
}


def key(**changes: Any) -> CacheKey:
    return build_key(**{**BASE, **changes})


def test_the_same_request_gives_the_same_key() -> None:
    assert key() == key()
    assert key().path.startswith("text/team-a/")
    assert len(key().digest) == 64


@pytest.mark.parametrize(
    "content",
    [
        "Describe  a mug.",  # doubled space
        "  Describe a mug.\t",  # edge whitespace
        "Describe a mug.\r\n",  # CRLF
        "Describe\u00a0a mug.",  # no-break space
    ],
)
def test_whitespace_does_not_split_the_cache(content: str) -> None:
    messages = [BASE["messages"][0], {"role": "user", "content": content}]
    assert key(messages=messages) == key()


def test_unicode_forms_do_not_split_the_cache() -> None:
    composed, decomposed = "Caf\u00e9 au lait", "Cafe\u0301 au lait"
    assert key(input=composed, messages=None) == key(input=decomposed, messages=None)


def test_line_structure_is_kept() -> None:
    assert normalize_text("a\n\n\n\nb  c ") == "a\n\nb c"
    assert key(input="one\ntwo", messages=None) != key(input="one two", messages=None)


def test_roles_are_part_of_the_key() -> None:
    swapped = [{"role": "user", "content": "Be brief."}, {"role": "system", "content": "Describe a mug."}]
    merged = [{"role": "user", "content": "Be brief.\nDescribe a mug."}]
    assert key(messages=swapped) != key()
    assert key(messages=merged) != key()
    as_objects = [Message("system", "Be brief."), Message("user", "Describe a mug.")]
    assert key(messages=as_objects) == key()


def test_parameters_compare_by_value() -> None:
    assert key(params={"temperature": 0, "max_tokens": 64.0}) == key()
    assert key(params={"max_tokens": 64, "temperature": 0.0, "seed": None}) == key()
    assert key(params={"max_tokens": 64, "temperature": 0.7}) != key()
    assert key(params={"max_tokens": 65, "temperature": 0.0}) != key()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "openai:gpt-4o"}, {"template_version": "product-v4"}, {"tenant": "team-b"},
        {"shareable": True},
    ],
)
def test_what_changes_the_output_or_the_owner_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_a_key_needs_a_tenant_unless_shareable() -> None:
    with pytest.raises(ValueError, match="tenant"):
        key(tenant=None)
    shared = key(tenant=None, shareable=True)
    assert shared.scope == "shared" and shared == key(tenant="team-z", shareable=True)


def test_an_unusual_tenant_name_is_hashed_not_rejected() -> None:
    odd = key(tenant="Équipe Marketing / EU")
    assert odd.scope.startswith("t-") and odd != key(tenant="Équipe Marketing / US")
    assert key(tenant="shared").scope != "shared"  # no tenant can pose as the shared scope


@pytest.mark.parametrize(
    "params",
    [
        {"api_key": "anything"},
        {"Authorization": "Bearer abc.def.ghi"},
        {"headers": {"x-api-key": "k"}},
        {"client_secret": "s"},
        {"user": "sk-proj-0123456789abcdefghijkl"},
        {"metadata": ["fine", "AKIAABCDEFGHIJKLMNOP"]},
        {"token": SecretStr("hidden")},
        {"token": "anything"},
    ],
)
def test_secret_looking_fields_are_refused_without_echoing_them(params: dict[str, Any]) -> None:
    with pytest.raises(SecretInCacheKey) as refused:
        key(params=params)
    message = str(refused.value)
    secrets = ("anything", "abc.def.ghi", "sk-proj-0123456789abcdefghijkl", "AKIAABCDEFGHIJKLMNOP", "hidden")
    assert not any(secret in message for secret in secrets)
    assert "params" in message


def test_token_counts_are_not_mistaken_for_tokens() -> None:
    assert key(params={"max_tokens": 10, "max_completion_tokens": 10, "top_logprobs": 2})


def test_messages_take_only_role_content_and_name() -> None:
    with pytest.raises(ValueError, match="fields"):
        key(messages=[{"role": "user", "content": "hi", "api_key": "sk-x"}])
    assert key(messages=[{"role": "user", "content": "hi", "name": "ann"}]) != key(
        messages=[{"role": "user", "content": "hi", "name": "bob"}]
    )


def test_text_and_speech_requests_have_their_own_keys() -> None:
    request = TextRequest.chat("Describe a mug.", system="Be brief.", max_tokens=64)
    assert text_key(request, model="openai:gpt-4o-mini", tenant="team-a") == text_key(
        TextRequest.chat("Describe  a mug. ", system="Be brief.", max_tokens=64),
        model="openai:gpt-4o-mini", tenant="team-a",
    )
    assert text_key(request, model="openai:gpt-4o-mini", tenant="team-a") != text_key(
        TextRequest.chat("Describe a mug.", system="Be brief.", max_tokens=64, seed=1),
        model="openai:gpt-4o-mini", tenant="team-a",
    )
    speech = speech_key(SpeechRequest("Hello there."), model="openai:tts-1", tenant="team-a")
    assert speech.namespace == "speech"
    other_voice = SpeechRequest("Hello there.", voice="alloy")
    assert speech != speech_key(other_voice, model="openai:tts-1", tenant="team-a")
