"""Prompt templates: packaged and user ones, versions and pins, variables checked before any call."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contentmill.errors import TemplateError, TemplateVariableError
from contentmill.prompts import PromptTemplate, TemplateLibrary
from contentmill.settings import load_settings


def test_packaged_templates_cover_the_flows_and_each_has_an_output_limit() -> None:
    library = TemplateLibrary.from_dirs([])
    assert {"product_description", "video_scene", "video_script", "quality_judge"} <= set(library.names())
    for template in library.all():
        assert template.max_output_tokens > 0


def test_render_is_a_chat_request_bounded_by_the_template_limit() -> None:
    template = TemplateLibrary.from_dirs([]).get("video_scene@1")
    request = template.render({"topic": "honey bees", "angle": "how it works", "words": 20})
    assert request.max_tokens == template.max_output_tokens == 128
    system, user = request.messages
    assert system.role == "system" and "narration" in system.content
    assert user.content.startswith("Topic: honey bees\nAngle: how it works\nStyle: friendly and clear")
    assert "at most 20 words" in user.content
    assert template.spec == "video_scene@1"


def test_literal_braces_stay_literal() -> None:
    request = TemplateLibrary.from_dirs([]).get("video_script").render(topic="volcanoes")
    assert '{"title": "...", "scenes": [{"narration"' in (request.messages[0].content)
    assert request.response_format == "json"


@pytest.mark.parametrize(("values", "variable", "problem"), [
    ({"category": "Kitchen"}, "name", "is missing"),
    ({"name": "Bottle", "category": "Kitchen", "colour": "red"}, "colour", "is not declared"),
    ({"name": "Bottle", "category": "Kitchen", "words": "sixty"}, "words", "must be a int"),
    ({"name": "Bottle", "category": "Kitchen", "words": True}, "words", "must be a int"),
    ({"name": 3, "category": "Kitchen"}, "name", "must be a str"),
])
def test_variables_are_checked_before_a_call(values: dict[str, object], variable: str, problem: str) -> None:
    template = TemplateLibrary.from_dirs([]).get("product_description@1")
    with pytest.raises(TemplateVariableError, match=problem) as caught:
        template.render(values)
    assert caught.value.variable == variable
    assert repr(variable) in str(caught.value)


def test_a_template_without_an_output_limit_or_with_undeclared_variables_is_refused() -> None:
    base = {"name": "t", "version": "1", "user": "Describe {item}", "variables": {"item": "str"}}
    with pytest.raises(TemplateError, match="max_output_tokens is missing"):
        PromptTemplate.from_dict(base)
    with pytest.raises(TemplateError, match="undeclared variables item"):
        PromptTemplate.from_dict({**base, "max_output_tokens": 50, "variables": {}})
    with pytest.raises(TemplateError, match="unknown fields"):
        PromptTemplate.from_dict({**base, "max_output_tokens": 50, "max_tokens": 10})


def test_user_folders_add_versions_and_pins_choose_the_default(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    template = {"name": "product_description", "version": "7", "max_output_tokens": 40,
                "variables": {"name": "str"}, "user": "Name: {name}"}
    (folder / "pd.yaml").write_text(yaml.safe_dump(template), encoding="utf-8")
    library = TemplateLibrary.from_settings(load_settings(template_dirs=str(folder)))
    assert library.versions("product_description") == ["1", "2", "7"]
    assert library.get("product_description").version == "7"
    assert library.with_pins({"product_description": "2"}).get("product_description").version == "2"
    with pytest.raises(TemplateError, match="has no version '9'"):
        library.get("product_description@9")
    with pytest.raises(TemplateError, match="no template named 'nope'"):
        library.get("nope")
