"""``contentmill voices``: the speech models that can speak here and their voices, with a sample of each local
voice to hear (``--sample DIR``: one WAV per voice, made through the gateway, free)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, settings_or_fail
from contentmill.errors import ContentmillError
from contentmill.requests import SpeechRequest
from contentmill.settings import Settings

SAMPLES = {"en": "Octopuses have three hearts, and each of their eight arms can taste what it touches.",
           "zh": "章鱼有三颗心脏，它的八条腕足都能尝到触碰到的东西。"}
_CHINESE_VOICES = ("cmn", "zh", "yue")


def _language(voice: str) -> str:
    return "zh" if voice.partition("+")[0].lower() in _CHINESE_VOICES else "en"


def _rows(settings: Settings) -> list[dict[str, Any]]:
    """Each speech model that can be called with these settings: its voices and whether it runs here."""
    from contentmill.catalog import load_catalog
    from contentmill.providers.resolve import configured

    catalog = load_catalog(settings.catalog_file)
    return [{"model": name, "local": catalog.provider(info.provider).kind == "local",
             "voices": list(info.voices or ("default",)), "default": name == settings.speech_model}
            for name, info in sorted(catalog.models.items())
            if info.modality == "speech" and info.provider != "fake" and configured(name, settings, catalog)]


async def _samples(settings: Settings, rows: list[dict[str, Any]], folder: Path) -> dict[str, list[str]]:
    """A WAV per voice of each local model in ``folder``, each one call through the gateway."""
    from contentmill.gateway import Gateway

    made: dict[str, list[str]] = {}
    async with Gateway(settings) as gateway:
        for row in rows:
            if not row["local"]:
                continue
            for voice in row["voices"]:
                language = _language(voice)
                spoken = await gateway.speak(SpeechRequest(SAMPLES[language], voice=voice, language=language),
                                             model=row["model"], tags={"job": "voice-sample"})
                path = folder / f"{row['model'].replace(':', '-')}-{voice.replace('+', '-')}.wav"
                path.write_bytes(spoken.audio or b"")
                made.setdefault(row["model"], []).append(str(path))
    return made


def voices(
    sample: Annotated[
        Path | None, typer.Option(help="Write a short sample of each local voice into this folder (WAV files).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """The speech models that can speak here and their voices (the first is each model's default)."""
    settings = settings_or_fail()
    try:
        rows = _rows(settings)
        if sample is not None:
            sample.mkdir(parents=True, exist_ok=True)
            made = asyncio.run(_samples(settings, rows, sample))
            for row in rows:
                row["samples"] = made.get(row["model"], [])
    except ContentmillError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"could not write the samples into {sample}: {exc.strerror or exc}")
    if json_out:
        emit_json({"voices": rows})
        return
    table = Table(title="contentmill voices (--voice; the speech model from CONTENTMILL_SPEECH_MODEL)")
    for column in ("model", "where", "voices", *(["samples"] if sample is not None else [])):
        table.add_column(column, no_wrap=column == "model")
    for row in rows:
        name = f"{row['model']} (default)" if row["default"] else row["model"]
        cells = [name, "this machine" if row["local"] else "API", ", ".join(row["voices"])]
        if sample is not None:
            cells.append("\n".join(row["samples"]) or "-")
        table.add_row(*cells)
    Console(highlight=False).print(table)
