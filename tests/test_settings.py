"""Settings come from the environment and contentmill.toml; bad values name the variable to fix."""

from pathlib import Path

import pytest

from contentmill.catalog import builtin_catalog
from contentmill.errors import ConfigError, MissingCredential
from contentmill.providers.resolve import speech_model, text_model
from contentmill.settings import load_settings

VENDOR_VARIABLES = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "DEEPSEEK_API_KEY", "DASHSCOPE_API_KEY", "QWEN_API_KEY"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VENDOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CONTENTMILL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_profile() -> None:
    settings = load_settings()
    assert settings.profile == "embedded"
    assert settings.text_model == "local:gemma-3-270m"
    assert settings.speech_model == "local:espeak-ng"
    assert settings.redis_url is None and settings.s3_bucket is None


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CONTENTMILL_PROFILE": "services",
        "CONTENTMILL_DATA_DIR": "/srv/cm",
        "CONTENTMILL_REDIS_URL": "redis://127.0.0.1:6379/0",
        "CONTENTMILL_DATABASE_URL": "postgresql://127.0.0.1/cm",
        "CONTENTMILL_S3_BUCKET": "media",
        "CONTENTMILL_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "CONTENTMILL_TEXT_MODEL": "openai:gpt-4o-mini",
        "CONTENTMILL_SPEECH_MODEL": "openai:tts-1",
        "OPENAI_API_KEY": "sk-test-123",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.profile == "services" and str(settings.data_dir) == "/srv/cm"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000" and settings.s3_bucket == "media"
    assert settings.text_model == "openai:gpt-4o-mini" and settings.speech_model == "openai:tts-1"
    assert settings.openai_api_key is not None
    assert "sk-test-123" not in repr(settings) and "sk-test-123" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CONTENTMILL_PROFILE", "cloud", "CONTENTMILL_PROFILE"),
        ("CONTENTMILL_TEXT_MODEL", "gpt-4o", "CONTENTMILL_TEXT_MODEL: .*provider:model"),
        ("CONTENTMILL_REDIS_URL", "localhost:6379", "CONTENTMILL_REDIS_URL: .*redis://"),
        ("CONTENTMILL_MAX_RETRIES", "many", "CONTENTMILL_MAX_RETRIES"),
        ("CONTENTMILL_REQUEST_TIMEOUT_S", "-1", "CONTENTMILL_REQUEST_TIMEOUT_S"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                      message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings()
    said = str(refused.value)
    assert said.count(repr(value)) == 1 and said.count(variable) == 1 and "Value error" not in said


def test_services_profile_needs_its_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTMILL_PROFILE", "services")
    with pytest.raises(ConfigError, match="CONTENTMILL_REDIS_URL, CONTENTMILL_DATABASE_URL") as refused:
        load_settings()
    assert str(refused.value) == ("invalid settings: the services profile needs CONTENTMILL_REDIS_URL, "
                                  "CONTENTMILL_DATABASE_URL to be set")


def test_toml_file_and_environment_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "contentmill.toml").write_text('text_model = "qwen:qwen-turbo"\nmax_retries = 5\n')
    assert load_settings().text_model == "qwen:qwen-turbo"
    monkeypatch.setenv("CONTENTMILL_TEXT_MODEL", "deepseek:deepseek-chat")
    settings = load_settings()
    assert settings.text_model == "deepseek:deepseek-chat" and settings.max_retries == 5


def test_config_variable_must_point_at_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONTENTMILL_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="CONTENTMILL_CONFIG"):
        load_settings()


@pytest.mark.parametrize(
    ("model", "variable"),
    [("openai:gpt-4o-mini", "OPENAI_API_KEY"), ("deepseek:deepseek-chat", "DEEPSEEK_API_KEY"),
     ("qwen:qwen-plus", "DASHSCOPE_API_KEY")],
)
def test_missing_key_names_the_variable_to_set(model: str, variable: str) -> None:
    with pytest.raises(MissingCredential, match=f"set the environment variable {variable}"):
        text_model(model, load_settings(), builtin_catalog())


def test_wrong_modality_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="openai:tts-1 is a speech model"):
        text_model("openai:tts-1", load_settings(), builtin_catalog())
    with pytest.raises(ConfigError, match="is a text model"):
        speech_model("fake:text", load_settings(), builtin_catalog())
