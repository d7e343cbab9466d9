"""The linter finds each kind of planted waste and says how many tokens fixing it saves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from contentmill.metering import count_tokens
from contentmill.prompts import TemplateLibrary, lint_template
from contentmill.prompts.lint import SUGGESTED_LIMIT, UNBOUNDED_OUTPUT_TOKENS

CLEAN_SYSTEM = "You write product descriptions. Answer in English."
CLEAN_USER = "Describe {product} in {words} words."
FACT = "The bottle keeps drinks cold for a whole day and hot for twelve hours"


def tokens(text: str) -> int:
    return count_tokens(text, "o200k_base")


def rules(findings: list) -> dict[str, list]:  # type: ignore[type-arg]
    found: dict[str, list] = {}  # type: ignore[type-arg]
    for finding in findings:
        found.setdefault(finding.rule, []).append(finding)
    return found


def test_a_clean_template_has_no_findings_and_the_packaged_ones_are_clean() -> None:
    clean = {"name": "c", "version": "1", "max_output_tokens": 80, "system": CLEAN_SYSTEM, "user": CLEAN_USER,
             "variables": {"product": "str", "words": "int"}}
    assert lint_template(clean) == []
    for template in TemplateLibrary.from_dirs([]).all():
        assert lint_template(template) == [], template.spec


def test_no_length_limit() -> None:
    found = lint_template({"name": "t", "version": "1", "user": "Hello"})
    assert [(f.rule, f.severity, f.tokens_saved) for f in found] == [
        ("no-length-limit", "error", UNBOUNDED_OUTPUT_TOKENS - SUGGESTED_LIMIT)]


def test_repeated_sentence_saves_the_tokens_of_its_copy() -> None:
    system = CLEAN_SYSTEM + " Answer in English."
    found = lint_template({"name": "t", "version": "1", "max_output_tokens": 50, "system": system, "user": "Hi"})
    assert [(f.rule, f.text) for f in found] == [("repeated-sentence", "Answer in English.")]
    assert found[0].tokens_saved == tokens(system) - tokens(CLEAN_SYSTEM) > 0


def test_repeated_context_across_system_and_user() -> None:
    system = f"Facts: {FACT}."
    user = f"Describe the bottle. Remember that {FACT.lower()}, so say it."
    found = lint_template({"name": "t", "version": "1", "max_output_tokens": 50, "system": system, "user": user})
    assert [f.rule for f in found] == ["repeated-context"]
    assert found[0].field == "user"
    assert found[0].text.lower() == FACT.lower() + ","
    fixed = "Describe the bottle. Remember that so say it."
    assert found[0].tokens_saved == tokens(user) - tokens(fixed) >= 14


def test_boilerplate_phrases_each_with_their_saving() -> None:
    system = "As an AI language model, you write product copy. Please make sure to keep it short."
    user = "It is very important that you mention the price. Write it in order to sell the lamp."
    found = lint_template({"name": "t", "version": "1", "max_output_tokens": 50, "system": system, "user": user})
    assert [(f.rule, f.text.lower()) for f in found] == [
        ("boilerplate", "as an ai language model,"), ("boilerplate", "please make sure to"),
        ("boilerplate", "it is very important that"), ("boilerplate", "in order to")]
    system_fixed = "You write product copy. Keep it short."
    user_fixed = "You mention the price. Write it to sell the lamp."
    saved = {f.field: 0 for f in found}
    for f in found:
        saved[f.field] += f.tokens_saved
    assert saved == {"system": tokens(system) - tokens(system_fixed), "user": tokens(user) - tokens(user_fixed)}
    assert all(f.tokens_saved > 0 for f in found)


def test_unused_and_undeclared_variables() -> None:
    found = lint_template({"name": "t", "version": "1", "max_output_tokens": 50, "user": "Describe {product} {size}",
                           "variables": {"product": "str", "colour": "str"}})
    assert [(f.rule, f.text, f.severity) for f in found] == [
        ("unused-variable", "colour", "warning"), ("undeclared-variable", "size", "error")]


def test_cli_lint_reports_every_kind_as_json(tmp_path: Path) -> None:
    system = "You are a helpful assistant. Please note that answers are short. Be very brief. Be very brief."
    planted = {"name": "waste", "version": "1", "variables": {"product": "str", "unused": "str"}, "system": system,
               "user": "Describe {product}."}
    (tmp_path / "waste.yaml").write_text(yaml.safe_dump(planted), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTMILL_")}
    env["CONTENTMILL_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", "from contentmill.commands.prompts import prompts_app; prompts_app()", "lint",
         str(tmp_path), "--json"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    kinds = [f["rule"] for f in report["findings"]]
    assert kinds == ["no-length-limit", "repeated-sentence", "boilerplate", "boilerplate", "unused-variable"]
    assert report["tokens_saved"] == sum(f["tokens_saved"] for f in report["findings"]) > 3584
