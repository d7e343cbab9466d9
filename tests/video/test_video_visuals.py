"""A picture behind every scene: made by the fake upstream's image API through the gateway, one priced ledger
row per scene, the frames showing those pictures, and an edited scene making only its own picture again; stock
footage found by each scene's caption on the fake Pexels search, its frames showing that footage; offline, an
illustration per scene whose frames carry far more than a plain slide's text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from contentmill.catalog import load_catalog
from contentmill.gateway import Gateway
from contentmill.ledger import LedgerStore, settings_url
from contentmill.media import Layout, audio_duration, find_font
from contentmill.media.slides import PALETTES, cover, render_slide
from contentmill.providers.fake import FakeTextModel
from contentmill.settings import load_settings
from contentmill.storage import LocalStore
from contentmill.testing.harness import Upstream
from contentmill.testing.upstream import footage_colour
from contentmill.video import VideoRequest, make_video
from contentmill.video.lineage import video_facts

pytestmark = pytest.mark.slow
SCENES = [
    {"narration": "Octopuses have three hearts and blue blood.", "on_screen_text": "Three hearts"},
    {"narration": "Each arm can taste what it touches.", "on_screen_text": "Arms that taste"},
    {"narration": "They change colour in a fraction of a second.", "on_screen_text": "Instant colour"},
]
SCRIPT = json.dumps({"title": "Octopus facts", "scenes": SCENES})
FrameAt = Callable[[Path, float], Image.Image]


def _request(**fields: object) -> VideoRequest:
    return VideoRequest.model_validate({"topic": "octopuses", "seconds": 10, "text_model": "fake:text",
                                        "speech_model": "openai:tts-1", "resolution": 480, "fps": 10, **fields})


def _band(image: Image.Image) -> Image.Image:
    """The middle of the frame: below the text at the top, above the subtitles."""
    width, height = image.size
    return image.crop((0, round(height * 0.55), width, round(height * 0.68)))


def _difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(_band(a), _band(b))).mean) / 3


async def test_each_scene_shows_its_own_picture_priced_from_the_catalog(
    openai_upstream: Upstream, data_dir: Path, frame_at: FrameAt
) -> None:
    settings = load_settings()
    store = LocalStore(data_dir / "store")
    model = FakeTextModel("fake:text", responses=[SCRIPT])
    request = _request(image_model="openai:gpt-image-1")
    async with Gateway(settings, models={"fake:text": model}) as gateway:
        result = await make_video(request, settings=settings, gateway=gateway, store=store)
    ledger = LedgerStore(settings_url(settings))
    try:
        images = [row for row in ledger.calls() if row.api_type == "image"]
    finally:
        ledger.close()
    price = load_catalog().get("openai:gpt-image-1").per_image
    assert len(images) == len(SCENES) and all(row.outcome == "ok" for row in images)
    assert all(row.cost_usd == pytest.approx(price) and row.usage and row.usage.images == 1 for row in images)
    report = result.steps["visuals"]
    assert report.calls == len(SCENES) and report.cost_usd == pytest.approx(len(SCENES) * (price or 0))

    record = store.get_json(f"steps/visuals/{_visuals_digest(store)}.json")
    pictures = [Image.open(store.fetch(v["key"], data_dir / "pictures")) for v in record["visuals"]]
    layout = Layout.for_size((result.width, result.height))
    expected = [cover(picture, layout) for picture in pictures]
    starts = [0.0]
    for audio in result.audio:
        starts.append(starts[-1] + audio_duration(audio))
    for number in range(len(SCENES)):
        frame = frame_at(Path(result.video), (starts[number] + starts[number + 1]) / 2)
        distances = [_difference(frame, picture) for picture in expected]
        assert distances[number] < 12, distances  # its own picture, through H.264
        assert distances[number] < min(d for i, d in enumerate(distances) if i != number) / 2, distances


async def test_an_edited_scene_makes_only_its_own_picture_again(openai_upstream: Upstream, data_dir: Path) -> None:
    settings = load_settings()
    store = LocalStore(data_dir / "store")
    model = FakeTextModel("fake:text", responses=[SCRIPT])
    async with Gateway(settings, models={"fake:text": model}) as gateway:
        await make_video(_request(image_model="openai:gpt-image-1"), settings=settings, gateway=gateway, store=store)
        paid = openai_upstream.stats()["by_model"]["gpt-image-1"]["requests"]
        edited = await make_video(_request(image_model="openai:gpt-image-1", scene_edits={2: "Arms think alone."}),
                                  settings=settings, gateway=gateway, store=store)
    assert paid == len(SCENES)
    assert openai_upstream.stats()["by_model"]["gpt-image-1"]["requests"] == paid + 1
    assert edited.steps["visuals"].calls == 1


async def test_each_scene_shows_the_footage_its_caption_found(
    openai_upstream: Upstream, data_dir: Path, frame_at: FrameAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTENTMILL_PEXELS_API_KEY", "pexels-test-key")
    monkeypatch.setenv("CONTENTMILL_PEXELS_BASE_URL", openai_upstream.root_url + "/pexels")
    settings = load_settings()
    store = LocalStore(data_dir / "store")
    model = FakeTextModel("fake:text", responses=[SCRIPT])
    async with Gateway(settings, models={"fake:text": model}) as gateway:
        result = await make_video(_request(footage=True), settings=settings, gateway=gateway, store=store)
    report = result.steps["visuals"]
    assert (report.model, report.calls, report.cost_usd) == ("pexels", len(SCENES), 0)
    assert openai_upstream.stats()["by_model"]["pexels-search"]["requests"] == len(SCENES)
    starts = [0.0]
    for audio in result.audio:
        starts.append(starts[-1] + audio_duration(audio))
    colours = [footage_colour(scene["on_screen_text"]) for scene in SCENES]
    for number in range(len(SCENES)):
        frame = frame_at(Path(result.video), (starts[number] + starts[number + 1]) / 2)
        shown = ImageStat.Stat(_band(frame)).mean
        distances = [sum(abs(a - b) for a, b in zip(shown, colour, strict=True)) for colour in colours]
        assert distances[number] == min(distances) and distances[number] < 90, distances  # under the scrim


def _edge_density(image: Image.Image) -> float:
    """Share of the pixels of the frame's middle (below the text, above the subtitles) that lie on an edge."""
    edges = _band(image.convert("L").filter(ImageFilter.FIND_EDGES)).point(lambda value: 255 if value > 24 else 0)
    return ImageStat.Stat(edges.crop((2, 0, edges.width - 2, edges.height))).mean[0] / 255  # not the frame's rim


async def test_offline_scenes_get_an_illustration_each(openai_upstream: Upstream, data_dir: Path,
                                                       frame_at: FrameAt) -> None:
    settings = load_settings()
    store = LocalStore(data_dir / "store")
    model = FakeTextModel("fake:text", responses=[SCRIPT])
    async with Gateway(settings, models={"fake:text": model}) as gateway:
        result = await make_video(_request(), settings=settings, gateway=gateway, store=store)
    report = result.steps["visuals"]
    assert report.model == "offline:icons" and report.calls == 0 and report.cost_usd == 0
    record = store.get_json(f"steps/visuals/{_visuals_digest(store)}.json")
    icons = [visual["source"] for visual in record["visuals"]]
    assert len(set(icons)) == len(SCENES) and icons[0] == "fontawesome:heart"  # "three hearts"
    plain = render_slide("", size=(result.width, result.height), font=find_font("A", language="en"),
                         palette=PALETTES[1])  # what a scene without text showed before: its gradient
    middle = sum(audio_duration(audio) for audio in result.audio[:1]) + 0.5
    frame = frame_at(Path(result.video), middle)
    assert _edge_density(frame) > 0.02 and _edge_density(frame) > 10 * _edge_density(plain), (
        _edge_density(frame), _edge_density(plain))


def _visuals_digest(store: LocalStore) -> str:
    (record,) = store.path("steps/visuals").glob("*.json")
    return record.stem


def test_a_similar_topic_is_served_from_an_earlier_video_only_with_the_same_visuals() -> None:
    offline, drawn = video_facts(_request()), video_facts(_request(image_model="openai:gpt-image-1"))
    filmed = video_facts(_request(footage=True))
    assert len({str(facts.fields) for facts in (offline, drawn, filmed)}) == 3  # hard constraints of the dedupe
