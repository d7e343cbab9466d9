"""The studio in a real Chromium against ``contentmill serve`` with the embedded engines (Gemma 3 270M writes, espeak-ng
speaks, $0): a creator signs in, hears a voice's sample, types a topic, starts, reloads the page mid-run and finds
the run going on, watches the finished video play in the page, changes a scene's narration and watches the new
video; the page fits a phone's width. The screenshots are docs/img/studio.png and studio-phone.png
(DOCS_SCREENSHOTS=1 refreshes them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from server_helpers import make_key, server_env
from web_browser import PHONE, WIDE, chromium, screenshot_path, sign_in

from contentmill.testing.harness import Served, Upstream

pytestmark = pytest.mark.slow
PLAYABLE = """() => {
  const video = document.querySelector('[data-testid="video-player"]');
  return video !== null && video.readyState >= 2 && video.duration > 5;
}"""


def test_a_studio_run_from_topic_to_a_playing_video(
        serve: Callable[..., Served], upstream_server: Upstream, gemma_models: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(gemma_models, target_is_directory=True)
    env = server_env(upstream_server.base_url, data)  # the default models: local:gemma-3-270m and local:espeak-ng
    server = serve(env)
    key = make_key(env, team="creators", name="ana")
    with chromium() as browser:
        page = browser.new_page(viewport=WIDE)
        sign_in(page, server.root_url, key.secret, "/studio")
        expect(page.get_by_test_id("text-model-select")).to_have_value("local:gemma-3-270m")
        expect(page.get_by_test_id("speech-model-select")).to_have_value("local:espeak-ng")
        page.get_by_test_id("voice-select").select_option("en-us+f3")
        page.get_by_test_id("voice-sample").click()  # the sample is spoken by the chosen voice and loads in the page
        page.wait_for_function("() => document.getElementById('voice-audio').duration > 1", timeout=30_000)
        page.get_by_test_id("topic-input").fill("octopuses")
        page.get_by_test_id("seconds-input").fill("10")
        page.get_by_test_id("orientation-select").select_option("landscape")
        page.get_by_test_id("resolution-select").select_option("480")
        page.get_by_test_id("start-button").click()

        progress = page.get_by_test_id("run-progress")
        expect(progress).to_have_attribute("data-state", "running", timeout=20_000)
        expect(page.get_by_test_id("step-script")).to_have_attribute("data-state", "done", timeout=120_000)
        page.reload()  # the run goes on in the server; the page finds it again from its address
        expect(page.get_by_test_id("step-script")).to_have_attribute("data-state", "done")
        expect(progress).to_have_attribute("data-state", "done", timeout=180_000)
        expect(page.get_by_test_id("run-cost")).to_have_text("$0.000000")  # the embedded engines cost nothing

        page.wait_for_function(PLAYABLE, timeout=30_000)
        page.evaluate("() => document.querySelector('[data-testid=\"video-player\"]').play()")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"video-player\"]').currentTime > 1", timeout=15_000)
        page.evaluate("() => document.querySelector('[data-testid=\"video-player\"]').pause()")
        duration = page.evaluate("() => document.querySelector('[data-testid=\"video-player\"]').duration")
        assert duration > 5
        expect(page.locator('#past tr[data-run] td').nth(3)).to_have_text("done")
        for name in ("dl-video", "dl-subtitles", "dl-script"):
            assert "download=1" in (page.locator(f"#{name}").get_attribute("href") or "")
        page.screenshot(path=str(screenshot_path("studio.png", tmp_path)), full_page=True)

        first_run = progress.get_attribute("data-run")
        page.get_by_test_id("scene-edit").locator("summary").click()
        page.get_by_test_id("scene-select").select_option("1")
        page.get_by_test_id("scene-narration").fill("Octopuses have three hearts and blue blood.")
        page.get_by_test_id("rerender-button").click()  # only scene 1 is spoken again; the video is rendered again
        expect(progress).not_to_have_attribute("data-run", first_run or "", timeout=20_000)
        expect(progress).to_have_attribute("data-state", "done", timeout=120_000)
        page.wait_for_function(PLAYABLE, timeout=30_000)
        expect(page.locator("#past tr[data-run]")).to_have_count(2)

        page.set_viewport_size(PHONE)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the studio is {overflow} px wider than a phone's screen"
        page.screenshot(path=str(screenshot_path("studio-phone.png", tmp_path)), full_page=True)
