"""``contentmill video`` and ``contentmill demo``: the creator video flow from the command line.

The flow runs in this process against the Prefect API in use (PREFECT_API_URL, or a temporary local one
started for the run), so every run is recorded with its artifacts like a run started from the UI. Prefect's
own console logging is muted while it runs: the CLI shows each step itself, and keeps ``--json`` output and
errors to the one object or the one line its conventions promise. The module stays whole: its options, the
shortcuts that answer before a flow starts (a stored video, a dry run, a script only) and the display of a run
are one command's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, parse_tags, settings_or_fail
from contentmill.errors import ContentmillError, InvalidRequest
from contentmill.settings import Settings
from contentmill.storage import open_store
from contentmill.video.pipeline import VideoResult
from contentmill.video.progress import StepEvent, listening
from contentmill.video.request import DEFAULT_STYLE, CaptionStyle, Language, Orientation, Resolution, VideoRequest
from contentmill.video.summary import DRAFT_NOTE

DEMO_TOPIC = "octopuses"
DEMO_SECONDS = 20
DEMO_MODELS = {"text_model": "local:gemma-3-270m", "speech_model": "local:espeak-ng"}
# Prefect settings this command changes from Prefect's defaults unless the environment sets them: a run
# stays offline, and a temporary API that starts slowly on a busy laptop is waited for.
PREFECT_DEFAULTS: dict[str, Any] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": False,
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": 90,
}
Preset = Literal["douyin", "tiktok", "shorts", "bilibili"]
_PHONE = {"orientation": "vertical", "resolution": 1080, "fps": 30}
# Douyin, TikTok and YouTube Shorts play 9:16 at 1080x1920; Bilibili's player is 16:9 at 1920x1080.
PRESETS: dict[str, dict[str, Any]] = {"douyin": _PHONE, "tiktok": _PHONE, "shorts": _PHONE,
                                      "bilibili": {"orientation": "landscape", "resolution": 1080, "fps": 30}}
_QUIET_LEVELS = ("WARNING", "ERROR", "CRITICAL")
_PREFECT_LOGGERS = ("prefect", "uvicorn", "fastapi")


def video(
    topic: Annotated[str, typer.Argument(help="What the video is about.")],
    lang: Annotated[
        Language, typer.Option("--lang", help="Language of script, narration and subtitles.")
    ] = "en",
    seconds: Annotated[int, typer.Option(min=10, max=180, help="Target length in seconds.")] = 30,
    voice: Annotated[
        str, typer.Option(help="A voice of the speech engine ('default': by language).")
    ] = "default",
    style: Annotated[str, typer.Option(help="Tone of the script (chat models follow it).")] = DEFAULT_STYLE,
    orientation: Annotated[
        Orientation, typer.Option(help="vertical (9:16) or landscape (16:9).")
    ] = "vertical",
    resolution: Annotated[Resolution, typer.Option(help="Short side in pixels: 480, 720 or 1080.")] = 1080,
    preset: Annotated[
        Preset | None,
        typer.Option(help="A platform's format, in place of --orientation and --resolution: douyin, tiktok, "
                     "shorts (1080x1920) or bilibili (1920x1080), 30 fps."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also copy video, subtitles, script and audio here.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE cost tag, repeatable.")] = None,
    edit_scene: Annotated[
        list[str] | None,
        typer.Option("--edit-scene", help="N=NEW NARRATION for scene N (from 1) of this video, repeatable."),
    ] = None,
    reuse_similar: Annotated[
        bool, typer.Option(help="Serve a topic that means the same as an earlier one from its stored video.")
    ] = True,
    script_file: Annotated[
        Path | None,
        typer.Option("--script", help="Narrate this text file as it is: a paragraph per scene, blank lines "
                     "between, an optional '# Title' first line. No text model is called."),
    ] = None,
    source_file: Annotated[
        Path | None,
        typer.Option("--source", help="Notes (text or markdown) the script takes its facts from."),
    ] = None,
    script_only: Annotated[
        bool, typer.Option("--script-only", help="Stop after the script and write it as a file to edit, then "
                           "go on with --script FILE.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what the video would cost; nothing is called or paid.")
    ] = False,
    image_model: Annotated[
        str | None,
        typer.Option("--image-model", help="provider:model making each scene's picture, e.g. openai:gpt-image-1 "
                     "(default: CONTENTMILL_IMAGE_MODEL; unset: an offline illustration per scene)."),
    ] = None,
    footage: Annotated[
        bool, typer.Option("--footage", help="Stock footage found by each scene's words (CONTENTMILL_PEXELS_API_KEY).")
    ] = False,
    captions: Annotated[
        CaptionStyle,
        typer.Option(help="plain subtitles, or karaoke: each word lights up as it is said."),
    ] = "plain",
    music: Annotated[
        Path | None,
        typer.Option(help="An audio file mixed under the narration (ducked while it speaks, looped or cut to the "
                     "video's length, faded out at the end)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Make a narrated short video with burned-in subtitles about TOPIC, and show what each step cost.

    Models come from CONTENTMILL_TEXT_MODEL and CONTENTMILL_SPEECH_MODEL. Running it again with the same
    options reuses every stored step and pays nothing; after a failure it resumes at the failed step.
    With --edit-scene, only the edited scenes are spoken again and the video rendered again.
    """
    settings = settings_or_fail()
    if footage and not (settings.pexels_api_key and settings.pexels_api_key.get_secret_value()):
        fail("--footage needs a Pexels API key: set CONTENTMILL_PEXELS_API_KEY (free at https://www.pexels.com/api/)")
    fields: dict[str, Any] = {
        "topic": topic,
        "language": lang,
        "seconds": seconds,
        "voice": voice,
        "style": style,
        "orientation": orientation,
        "resolution": resolution,
        "tags": parse_tags(tag),
        "scene_edits": _scene_edits(edit_scene or []),
        "reuse_similar": reuse_similar,
        "image_model": image_model,
        "footage": footage,
        "captions": captions,
        "music": str(music) if music is not None else None,
        "own_script": _read_text(script_file, "--script"),
        "source": _read_text(source_file, "--source"),
        **(PRESETS[preset] if preset else {}),
    }
    if script_file is not None and (source_file is not None or script_only):
        fail("--script narrates your script as written: it goes with neither --source nor --script-only")
    if dry_run:
        _dry_run(settings, fields, json_out)
    elif script_only:
        _script_only(settings, fields, out, json_out)
    else:
        _make(settings, fields, out, json_out)


def _read_text(path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        fail(f"{option} {path}: no such file")
    except UnicodeDecodeError:
        fail(f"{option} {path}: not UTF-8 text; save it as UTF-8 plain text or markdown")
    except OSError as exc:
        fail(f"{option} {path}: cannot be read ({exc.strerror or exc})")


def _request(settings: Settings, fields: dict[str, Any]) -> VideoRequest:
    try:
        return VideoRequest.checked(**fields).with_models(settings)
    except InvalidRequest as exc:
        fail(str(exc))


def _dry_run(settings: Settings, fields: dict[str, Any], json_out: bool) -> None:
    """The cost table of the video, from the catalog's prices and what is stored; nothing is called."""
    from contentmill.catalog import load_catalog
    from contentmill.video.estimate import estimate_video

    request = _request(settings, fields)
    store = open_store(settings)
    try:
        estimate = estimate_video(request, load_catalog(settings.catalog_file), store)
    except ContentmillError as exc:
        fail(str(exc))
    finally:
        store.close()
    if json_out:
        emit_json(estimate.as_json())
        return
    console = Console(highlight=False)
    table = Table(title=f"{request.topic}: estimated cost (nothing was called)")
    for column in ("step", "model", "calls", "usage", "cost (USD)", "up to (USD)", "note"):
        table.add_column(column, justify="right" if column in ("calls", "cost (USD)", "up to (USD)") else "left",
                         no_wrap=column != "note")
    for row in estimate.rows:
        table.add_row(row.step, row.model, str(row.calls), row.usage, f"{row.cost_usd:.6f}", f"{row.up_to_usd:.6f}",
                      row.note)
    console.print(table)
    console.print(f"[bold]estimated total ${estimate.cost_usd:,.6f}[/bold] (at most ${estimate.up_to_usd:,.6f})")


def _script_only(settings: Settings, fields: dict[str, Any], out: Path | None, json_out: bool) -> None:
    """Write (or reuse) the script, save it as a text file to edit, and say how to go on from it."""
    from contentmill.video.own import script_as_text
    from contentmill.video.pipeline import make_script
    from contentmill.video.publish import slug

    request = _request(settings, fields)
    try:
        result = asyncio.run(make_script(request, settings=settings))
    except ContentmillError as exc:
        fail(f"the script step failed: {exc}")
    target = (out or Path.cwd()) / f"{slug(request.topic)}-script.txt"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(script_as_text(result.script), encoding="utf-8")
    except OSError as exc:
        fail(f"could not write the script to {target}: {exc.strerror or exc}")
    again = f"contentmill video {shlex.quote(request.topic)} --script {shlex.quote(str(target))}"
    if request.language != "en":
        again += f" --lang {request.language}"
    if json_out:
        emit_json({"script_file": str(target), "title": result.script.title, "draft": result.script.draft,
                   "scenes": [scene.narration for scene in result.script.scenes],
                   "cost_usd": result.report.cost_usd, "next": again})
        return
    console = Console(highlight=False)
    console.print(f"script ({len(result.script.scenes)} scenes, ${result.report.cost_usd:,.6f}) written to {target}")
    if result.script.draft:
        console.print(f"[yellow]{DRAFT_NOTE}[/yellow]")
    console.print(f"edit it (a paragraph per scene), then make the video from it:\n  {again}")


def _scene_edits(values: list[str]) -> dict[int, str]:
    edits: dict[int, str] = {}
    for value in values:
        number, sep, text = value.partition("=")
        if not sep or not number.strip().isdigit():
            fail(f"--edit-scene takes N=NEW NARRATION, e.g. --edit-scene '2=Octopuses have three hearts.' "
                 f"(got {value!r})")
        edits[int(number)] = text
    return edits


def demo(json_out: JsonOption = False) -> None:
    """A short video about octopuses, made offline by the embedded engines (Gemma 3 270M and espeak-ng)."""
    settings = settings_or_fail()
    fields: dict[str, Any] = {
        "topic": DEMO_TOPIC,
        "seconds": DEMO_SECONDS,
        **DEMO_MODELS,
        "tags": {"job": "demo"},
    }
    _make(settings, fields, None, json_out)


def _make(settings: Settings, fields: dict[str, Any], out: Path | None, json_out: bool) -> None:
    try:
        request = VideoRequest.checked(**fields)
    except InvalidRequest as exc:
        fail(str(exc))
    console = Console(quiet=json_out, highlight=False)
    result = _stored_video(settings, request)
    if result is None:
        result = _Display(console).run(settings, request)
    else:
        console.print("[green]✓[/green] stored     every step of this video is stored: nothing called, no flow run")
    if out is not None:
        result = _copy_out(settings, result, out)
    if json_out:
        emit_json(result.as_json())
        return
    _summary(console, result)


def _stored_video(settings: Settings, request: VideoRequest) -> VideoResult | None:
    """The finished video of this very request, or of an earlier topic that means the same, from the store before
    any Prefect API is started (None: run it)."""
    if request.review:
        return None
    from contentmill.video.rerun import recall, recall_similar

    try:
        store = open_store(settings)
        try:
            resolved = request.with_models(settings)
            return recall(store, settings, resolved) or recall_similar(store, settings, resolved)
        finally:
            store.close()
    except (ContentmillError, OSError):
        return None  # the flow run finds what is stored, or says what is wrong


class _Display:
    """A spinner on the running step, a line per finished step; remembers where a failure happened."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.step = "start"
        self.done: list[str] = []
        self.status: Status | None = None

    def event(self, event: StepEvent) -> None:
        if event.phase == "start":
            self.step = event.step
            if self.status is not None:
                self.status.update(f"{event.step}: {event.detail} ...")
            return
        self.done.append(event.step)
        report = event.report
        if report is None:
            return
        paid = f", {report.calls} calls, ${report.cost_usd:,.6f}" if report.calls else ""
        reused = " [dim](stored result reused)[/dim]" if report.cached else ""
        took = f"[dim]{report.seconds:.1f} s[/dim]"
        self.console.print(f"[green]✓[/green] {event.step:<10} {event.detail}{paid} {took}{reused}")

    def run(self, settings: Settings, request: VideoRequest) -> VideoResult:
        from contentmill.flows.creator_video import creator_video  # imports Prefect: only when needed

        parameters = request.model_dump()
        with ExitStack() as stack:
            stack.enter_context(_prefect_defaults())
            if settings.log_level.upper() in _QUIET_LEVELS:
                _mute_prefect_console()
            self.status = stack.enter_context(
                self.console.status("starting the flow run ...", spinner="dots")
            )
            stack.enter_context(listening(self.event))
            try:
                return cast(VideoResult, asyncio.run(creator_video(**parameters)))
            except ContentmillError as exc:
                fail(self._failure(exc))
            except ValueError as exc:
                fail(f"invalid input: {exc}")
            except (OSError, RuntimeError) as exc:
                fail(f"the flow could not run ({type(exc).__name__}): {exc}")
        raise AssertionError("unreachable")  # fail() exits

    def _failure(self, error: Exception) -> str:
        if not self.done:
            return f"the {self.step} step failed: {error}"
        return (
            f"the {self.step} step failed: {error} (stored: {', '.join(self.done)}; run the same command "
            "again to resume from there without paying for them again)"
        )


@contextmanager
def _prefect_defaults() -> Iterator[None]:
    import prefect.settings

    updates = {
        getattr(prefect.settings, name): value
        for name, value in PREFECT_DEFAULTS.items()
        if name not in os.environ
    }
    with prefect.settings.temporary_settings(updates=updates):
        yield


class _NotPrefect(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(_PREFECT_LOGGERS)


def _mute_prefect_console() -> None:
    """Keep Prefect's records off the console for the rest of this process (the API still gets them).

    Not undone after the run on purpose: the temporary API logs its shutdown when the process exits.
    """
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in _PREFECT_LOGGERS)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not any(
                isinstance(existing, _NotPrefect) for existing in handler.filters
            ):
                handler.addFilter(_NotPrefect())


def _copy_out(settings: Settings, result: VideoResult, out: Path) -> VideoResult:
    """Copies of the published files in ``out``; the result then points at them."""
    store = open_store(settings)
    try:
        video = store.save_as(f"{result.folder}video.mp4", out / "video.mp4")
        srt = store.save_as(f"{result.folder}subtitles.srt", out / "subtitles.srt")
        script = store.save_as(f"{result.folder}script.json", out / "script.json")
        audio = [
            store.save_as(f"{result.folder}audio/scene-{n:02d}.wav", out / "audio" / f"scene-{n:02d}.wav")
            for n in range(1, len(result.audio) + 1)
        ]
        thumbnail = store.save_as(f"{result.folder}thumbnail.jpg", out / "thumbnail.jpg") if result.thumbnail else None
    except (ContentmillError, OSError) as exc:
        fail(f"could not copy the video's files into {out}: {exc}")
    finally:
        store.close()
    return result.model_copy(
        update={"video": str(video), "srt": str(srt), "script": str(script), "audio": tuple(map(str, audio)),
                "thumbnail": str(thumbnail) if thumbnail else None}
    )


def _summary(console: Console, result: VideoResult) -> None:
    table = Table(title=f"{result.title}: {result.duration_s:.1f} s, {result.width}x{result.height}")
    for column in ("step", "model", "usage", "cost (USD)", "result", "time"):
        right = column in ("cost (USD)", "time")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "usage")
    for name, report in result.steps.items():
        table.add_row(
            name,
            report.model or "-",
            report.usage_text(),
            f"{report.cost_usd:.6f}",
            "reused" if report.cached else "made",
            f"{report.seconds:.1f} s",
        )
    console.print(table)
    if result.similar_to:
        asked, score = result.similar_to["asked"], result.similar_to["score"]
        console.print(f"{asked!r} means the same as the earlier {result.topic!r} (similarity {score:.3f}): "
                      "its video was reused; --no-reuse-similar makes a new one")
    if result.draft:
        console.print(f"[yellow]{DRAFT_NOTE}[/yellow]")
    saved = f" (reusing stored results saved ${result.saved_usd:,.6f})" if result.saved_usd else ""
    console.print(f"[bold]total cost ${result.cost_usd:,.6f}[/bold]{saved}")
    console.print(f"video     {result.video}\nsubtitles {result.srt}\nscript    {result.script}")
    if result.thumbnail:
        console.print(f"thumbnail {result.thumbnail}")
    if result.flow_run_id:
        console.print(f"[dim]flow run  {result.flow_run_id}[/dim]")
