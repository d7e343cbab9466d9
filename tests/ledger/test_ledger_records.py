"""A ledger record is safe to show anyone: tags that look like credentials are refused, loudly."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_helpers import T0, call

from contentmill.errors import ContentmillError, LedgerError, UnsafeTag
from contentmill.ledger import Budget, check_tags
from contentmill.ledger.records import _PLAIN_VALUE, secret_kind
from contentmill.metering import Usage

SECRET_VALUES = [
    "sk-proj-4f9aB3xYz0123456789abcdef",
    "sk-ant-api03-abcdefghijklmnop",
    "Bearer eyJhbGciOiJIUzI1NiJ9.payload",
    "token ghp_0123456789abcdefghijklmnopqrstuv",
    "ghp_0123456789abcdefghijklmnopqrstuv",
    "xoxb-123456789012-abcdefghij",
    "AKIAIOSFODNN7EXAMPLE",
    "AIzaSyA-0123456789abcdefghijklmnopqrstu",
    "hf_abcdefghijklmnopqrstuvwxyz0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
    "postgresql://app:hunter2@db.internal/prod",
    "-----BEGIN RSA PRIVATE KEY-----",
    "q8Zr2Lm9Xw4Tb7Np1Kc6Vd3Hs5Jf0Gy2Ea8Ru",  # 36 random-looking characters
]
SECRET_KEYS = [
    "api_key",
    "OPENAI_API_KEY",
    "openaiApiKey",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "password",
    "db-passwd",
    "Authorization",
    "credentials",
]
ORDINARY = {
    "team": "ads",
    "project": "spring-sale",
    "job": "nightly-2025-05-01",
    "api_type": "text",
    "tokenizer": "o200k_base",
    "keyword": "walnut lamp",
    "monkey": "business",
    "flow_run": "3f1c0e5e-8a4d-4c55",
    "request": "5d41402abc4b2a76b9719d911017c592",
    "run_id": "0b8e1a7c2f3d4e5f6a7b8c9d0e1f2a3b",
    "campaign": "ProductDescriptionsNightlyRunForShopCatalog",
    "sku": "B07ZPKN6YR",
    "tier": "basic template",
    "note": "token accounting for bearer bonds",
}


@pytest.mark.parametrize("value", SECRET_VALUES)
def test_a_credential_in_a_tag_value_is_refused_without_being_repeated(value: str) -> None:
    with pytest.raises(UnsafeTag) as caught:
        check_tags({"note": value})
    message = str(caught.value)
    assert "note" in message and "remove it" in message
    assert value not in message and value[:12] not in message


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_tag_named_like_a_credential_is_refused(key: str) -> None:
    with pytest.raises(UnsafeTag, match="named like a credential"):
        check_tags({key: "anything"})


def test_a_credential_used_as_a_tag_name_is_refused_and_not_echoed() -> None:
    with pytest.raises(UnsafeTag) as caught:
        check_tags({"sk-abcdefghijklmnop": "x"})
    assert "sk-abcdefghijklmnop" not in str(caught.value)


def test_ordinary_tags_pass_unchanged() -> None:
    assert check_tags(ORDINARY) == ORDINARY


def test_records_refuse_secret_tags_and_the_error_is_a_contentmill_error() -> None:
    with pytest.raises(ContentmillError):
        call(tags={"team": "ads", "api_key": "x"})
    with pytest.raises(UnsafeTag):
        call(tags={"team": "Bearer abcdefghijklmnopqrstuvwxyz"})


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({"": "x"}, "tag name"),
        ({"has space": "x"}, "tag name"),
        ({"team": "a\nb"}, "control characters"),
        ({"team": "x" * 300}, "300 characters"),
    ],
)
def test_malformed_tags_are_refused(tags: dict[str, str], problem: str) -> None:
    with pytest.raises(LedgerError, match=problem):
        check_tags(tags)


def test_a_record_names_its_provider_and_is_in_utc() -> None:
    record = call(model="deepseek:deepseek-chat")
    assert record.provider == "deepseek" and record.ts == T0 and record.ts.tzinfo is not None
    assert len(record.id) == 32 and record.tokens == 150 and record.charged


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"model": "gpt-4o"}, "provider:model"),
        ({"api_type": "audio"}, "api_type"),
        ({"outcome": "maybe"}, "outcome"),
        ({"cost_usd": -1.0}, "negative"),
        ({"request_hash": "NOT HEX"}, "hex"),
        ({"ts": datetime(2025, 5, 1)}, "zone"),
        ({"error_type": "timed out!"}, "exception name"),
        ({"provider": "other"}, "does not match"),
    ],
)
def test_a_malformed_record_is_refused(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(LedgerError, match=problem):
        call(**fields)


def test_the_tokens_of_a_call_that_never_answered_are_its_estimate() -> None:
    record = call(usage=None, outcome="error", error_type="ProviderTimeout", estimate=Usage(300, 700))
    assert record.tokens == 1000


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"period": "year"}, "period"),
        ({"limit_usd": 0}, "positive"),
        ({"soft_pct": 120}, "percentage"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"scope_value": ""}, "scope"),
    ],
)
def test_a_malformed_budget_is_refused(fields: dict[str, object], problem: str) -> None:
    values: dict[str, object] = {
        "scope_key": "team",
        "scope_value": "ads",
        "period": "day",
        "limit_usd": 10.0,
    }
    values.update(fields)
    with pytest.raises(LedgerError, match=problem):
        Budget(**values)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=256))
def test_a_value_of_lower_case_letters_and_digits_is_one_no_credential_check_refuses(value: str) -> None:
    """Such values (request ids, digests, names) skip the credential patterns; this holds only while none of
    them can match one, which a new pattern must keep true."""
    assert _PLAIN_VALUE.fullmatch(value)
    assert secret_kind(value) is None
    assert check_tags({"request": value}) == {"request": value}
