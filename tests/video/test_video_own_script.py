"""The creator's own script (``--script FILE``, flow parameter ``own_script``) and the cost shown before paying
(``--dry-run``): scenes read from paragraphs, narrated exactly, with no text model call; an estimate priced from the
catalog that calls nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from contentmill.catalog import load_catalog
from contentmill.errors import InvalidRequest
from contentmill.ledger import LedgerStore, settings_url
from contentmill.metering import Usage
from contentmill.settings import load_settings
from contentmill.testing.harness import Upstream
from contentmill.video import VideoRequest, prompts
from contentmill.video.estimate import CHARACTERS_PER_WORD, estimate_video
from contentmill.video.narration import narration_step
from contentmill.video.own import parse_own_script, script_as_text
from contentmill.video.pipeline import step_resources
from contentmill.video.writing import script_step

CLI = Path(__file__).with_name("cli_app.py")
SCENES = [
    "Octopuses have three hearts and blue blood.",
    "Each of their eight arms can taste what it touches.",
    "They change colour in a fraction of a second to hide from sharks.",
]
SPLIT = SCENES[1].replace(" can ", "\ncan ")  # a paragraph's lines are one scene
OWN = f"# Eight arms, three hearts\n\n{SCENES[0]}\n\n{SPLIT}\n \n\n{SCENES[2]}"


def test_paragraphs_are_scenes_and_the_title_line_is_the_title() -> None:
    script = parse_own_script(OWN, "en", "Octopuses")
    assert script.title == "Eight arms, three hearts"
    assert [scene.narration for scene in script.scenes] == SCENES  # a paragraph's lines joined, blank ones split
    assert script.scenes[0].on_screen_text == "Octopuses have three hearts"  # from what the scene says
    assert parse_own_script(script_as_text(script), "en", "x") == script
    assert parse_own_script("Just one scene here.", "en", "Octopuses").title == "Octopuses"


@pytest.mark.parametrize(
    ("text", "language", "message"),
    [
        ("# Only a title\n\n  \n", "en", "the script has no scenes"),
        ("\n\n".join(f"Scene number {n} of many." for n in range(21)), "en", "at most 20"),
        ("章鱼有三颗心脏。\n\nOctopuses have blue blood.", "en", "scene 1 of the script: it is not written in English"),
    ],
)
def test_a_script_that_cannot_be_narrated_says_what_to_fix(text: str, language: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_own_script(text, language, "x")  # type: ignore[arg-type]


async def test_an_own_script_is_narrated_scene_for_scene_without_a_text_model_call(
    openai_upstream: Upstream, data_dir: Path
) -> None:
    settings = load_settings()
    request = VideoRequest(topic="octopuses", own_script=OWN, seconds=15).with_models(settings)
    async with step_resources(settings) as (gateway, store):
        script = await script_step(request, gateway, store)
        narration = await narration_step(request, script, gateway, store)
        again = await script_step(request, gateway, store)
    assert script.strategy == "own" and script.report.calls == 0 and script.report.model is None
    assert [clip.narration for clip in narration.clips] == SCENES
    assert again.key == script.key and again.report.cached
    with LedgerStore(settings_url(settings)) as ledger:
        assert sorted(record.api_type for record in ledger.calls()) == ["speech"] * len(SCENES)
    assert "gpt-4o-mini" not in openai_upstream.stats()["by_model"]


def test_the_estimate_prices_the_prompt_and_the_script_from_the_catalog(data_dir: Path) -> None:
    settings = load_settings()
    catalog = load_catalog()
    asked = VideoRequest(topic="octopuses", seconds=30, text_model="openai:gpt-4o-mini",
                         speech_model="openai:tts-1")
    script, speech, visuals, render = estimate_video(asked, catalog).rows
    assert script.calls == 1 and script.cost_usd > 0 and script.up_to_usd > script.cost_usd
    characters = round(prompts.spoken_budget(30, "en") * CHARACTERS_PER_WORD)
    assert speech.calls == prompts.scene_count(30)
    assert speech.cost_usd == pytest.approx(catalog.cost("openai:tts-1", Usage(characters=characters)))
    assert render.cost_usd == 0 and visuals.cost_usd == 0 and visuals.model == "offline:icons"
    pictured = estimate_video(asked.model_copy(update={"image_model": "openai:gpt-image-1"}), catalog).rows[2]
    assert pictured.calls == prompts.scene_count(30)
    assert pictured.cost_usd == pytest.approx(catalog.cost("openai:gpt-image-1", Usage(images=pictured.calls)))
    footage = estimate_video(asked.model_copy(update={"footage": True, "own_script": OWN}), catalog).rows[2]
    assert (footage.model, footage.calls, footage.cost_usd) == ("pexels", 3, 0)  # a search per scene, free

    own = estimate_video(asked.model_copy(update={"own_script": OWN}), catalog)
    assert own.rows[0].cost_usd == 0 and own.rows[0].calls == 0
    characters = sum(len(text) for text in SCENES)
    assert own.rows[1].usage == f"~{characters} chars" and own.rows[1].calls == 3
    assert own.cost_usd == pytest.approx(catalog.cost("openai:tts-1", Usage(characters=characters)))
    assert settings.data_dir == data_dir


@pytest.mark.slow
def test_dry_run_prints_the_estimate_and_calls_nothing(openai_upstream: Upstream, tmp_path: Path) -> None:
    script = tmp_path / "mine.txt"
    script.write_text(OWN, encoding="utf-8")
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "COLUMNS": "160"}  # and no Prefect API
    run = [sys.executable, str(CLI), "video", "octopuses", "--seconds", "30", "--dry-run"]
    done = subprocess.run([*run, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    estimate = json.loads(done.stdout)
    assert estimate["dry_run"] is True and estimate["cost_usd"] > 0
    assert [row["step"] for row in estimate["steps"]] == ["script", "narration", "visuals", "render"]
    table = subprocess.run([*run, "--script", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert table.returncode == 0, table.stderr
    assert "your own script" in table.stdout and "estimated total" in table.stdout
    assert openai_upstream.stats()["requests"] == 0
    with LedgerStore(settings_url(load_settings())) as ledger:
        assert ledger.count_calls() == 0


def _text_rows() -> int:
    with LedgerStore(settings_url(load_settings())) as ledger:
        return sum(record.api_type == "text" for record in ledger.calls())


@pytest.mark.slow
def test_script_only_writes_a_file_to_edit_and_script_makes_the_video_of_the_edit(
    openai_upstream: Upstream, prefect_api: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "120"}
    video = [sys.executable, str(CLI), "video", "octopuses", "--seconds", "15", "--resolution", "480", "--json"]
    done = subprocess.run([*video, "--script-only"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    written = Path(answer["script_file"])
    assert written == tmp_path / "octopuses-script.txt" and f"--script {written}" in answer["next"]
    assert parse_own_script(written.read_text(encoding="utf-8"), "en", "x").scenes  # the format --script reads
    text_rows, tts = _text_rows(), openai_upstream.stats()["by_model"].get("tts-1")
    assert text_rows > 0 and tts is None  # written and paid for, nothing spoken yet

    written.write_text("# My octopuses\n\n" + "\n\n".join(SCENES[:2]) + "\n", encoding="utf-8")
    done = subprocess.run([*video, "--script", str(written)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["title"] == "My octopuses" and len(result["audio"]) == 2
    assert result["steps"]["script"]["calls"] == 0 and _text_rows() == text_rows  # no text model call
    assert openai_upstream.stats()["by_model"]["tts-1"]["requests"] == 2
    assert json.loads(Path(result["script"]).read_text(encoding="utf-8"))["scenes"][1]["narration"] == SCENES[1]
    with Image.open(result["thumbnail"]) as thumbnail:  # the first scene's frame, its title over its picture
        assert thumbnail.format == "JPEG" and thumbnail.size == (480, 854)
        darkest, lightest = thumbnail.convert("L").getextrema()
        assert lightest - darkest > 100  # a picture, not a blank frame

    # the same command again answers from the store before any Prefect API is started (none is reachable here)
    offline = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    again = subprocess.run([*video, "--script", str(written)], cwd=tmp_path, env=offline, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["flow_run_id"] is None and rerun["video"] == result["video"] and rerun["cost_usd"] == 0
    assert rerun["thumbnail"] == result["thumbnail"]
    assert all(step["cached"] for step in rerun["steps"].values())
    assert openai_upstream.stats()["by_model"]["tts-1"]["requests"] == 2
