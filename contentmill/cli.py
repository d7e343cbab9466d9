"""The ``contentmill`` command. Every reporting command takes ``--json`` and then prints one JSON object;
errors exit non-zero with one line on stderr."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, settings_or_fail
from contentmill.commands.budget import budget_app
from contentmill.commands.cache import cache_app
from contentmill.commands.ledger import alerts_app, report_app
from contentmill.errors import ContentmillError
from contentmill.gateway import Gateway, Generation
from contentmill.providers.base import SpeechRequest, TextRequest

app = typer.Typer(
    name="contentmill",
    help="Text, speech and video generation with AI models at a cost you can predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cache_app, name="cache")
app.add_typer(budget_app, name="budget")
app.add_typer(report_app, name="report")
app.add_typer(alerts_app, name="alerts")
console = Console()
T = TypeVar("T")


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine, turning contentmill errors into a one-line message and exit code 1."""
    try:
        return asyncio.run(factory())
    except ContentmillError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"invalid input: {exc}")


def parse_tags(pairs: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--tag takes KEY=VALUE (got {pair!r})")
        tags[key.strip()] = value.strip()
    return tags


def usd(value: float) -> str:
    return f"${value:,.6f}"


def describe(gen: Generation) -> str:
    """One cost line for a generation."""
    u = gen.usage
    if gen.audio is not None:
        amount = f"{u.characters} chars -> {gen.duration_s or 0:.2f} s audio"
    else:
        amount = f"{u.input_tokens} in + {u.output_tokens} out tokens"
    flag = " (estimated)" if u.estimated else ""
    return f"{gen.model}: {amount}{flag}, {usd(gen.cost_usd)}, {gen.latency_s:.2f} s"


@app.command()
def models(json_out: JsonOption = False) -> None:
    """List the model catalog with unit prices and limits."""
    settings = settings_or_fail()
    try:
        from contentmill.catalog import load_catalog

        catalog = load_catalog(settings.catalog_file)
    except ContentmillError as exc:
        fail(str(exc))
    rows: list[dict[str, Any]] = []
    for info in sorted(catalog.models.values(), key=lambda m: (m.modality, m.name)):
        rows.append({
            "model": info.name, "modality": info.modality, "free": info.free,
            "input_per_mtok": info.input_per_mtok, "cached_input_per_mtok": info.cached_input_per_mtok,
            "output_per_mtok": info.output_per_mtok, "per_mchar": info.per_mchar,
            "per_second": info.per_second, "rpm": info.rpm, "tpm": info.tpm,
            "context_window": info.context_window, "quality": info.quality, "priced": info.missing_price() is None,
        })
    if json_out:
        emit_json({"models": rows})
        return
    table = Table(title="contentmill models (USD)")
    table.add_column("model", no_wrap=True)
    for column in ("kind", "in/1M tok", "out/1M tok", "/1M chars", "rpm", "tpm", "context"):
        table.add_column(column, justify="left" if column == "kind" else "right")

    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    for row in rows:
        free = row["free"]
        table.add_row(
            row["model"], row["modality"], "free" if free else cell(row["input_per_mtok"]),
            "free" if free else cell(row["output_per_mtok"]), "free" if free else cell(row["per_mchar"]),
            cell(row["rpm"]), cell(row["tpm"]), cell(row["context_window"]),
        )
    console.print(table)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to ask the model.")],
    model: Annotated[str | None, typer.Option(help="provider:model (default: CONTENTMILL_TEXT_MODEL)")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Upper bound on output tokens (and cost).")] = 256,
    system: Annotated[str | None, typer.Option(help="A system instruction.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable (team, project, ...).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Generate text through the gateway and report its usage and cost."""
    settings = settings_or_fail()
    tags = parse_tags(tag)

    async def go() -> Generation:
        async with Gateway(settings) as gateway:
            request = TextRequest.chat(prompt, system=system, max_tokens=max_tokens, temperature=temperature)
            return await gateway.generate(request, model=model, tags=tags)

    gen = run(go)
    if json_out:
        emit_json(gen.as_dict())
        return
    console.print(gen.text or "", markup=False, highlight=False)
    console.print(f"[dim]{describe(gen)}[/dim]", highlight=False)


@app.command()
def speak(
    text: Annotated[str, typer.Argument(help="What to say.")],
    out: Annotated[Path, typer.Option(help="Where to write the WAV file.")] = Path("speech.wav"),
    model: Annotated[str | None, typer.Option(help="provider:model (default: CONTENTMILL_SPEECH_MODEL)")] = None,
    lang: Annotated[str, typer.Option(help="Language: en or zh.")] = "en",
    voice: Annotated[str, typer.Option(help="A voice name of the engine.")] = "default",
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Synthesize speech through the gateway into a WAV file and report its cost."""
    settings = settings_or_fail()
    tags = parse_tags(tag)

    async def go() -> Generation:
        async with Gateway(settings) as gateway:
            return await gateway.speak(SpeechRequest(text, voice=voice, language=lang), model=model, tags=tags)

    gen = run(go)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gen.audio or b"")
    if json_out:
        emit_json({**gen.as_dict(), "path": str(out)})
        return
    console.print(f"wrote {out}")
    console.print(f"[dim]{describe(gen)}[/dim]", highlight=False)


DEMO_PROMPT = """Short, friendly facts for a narrated video.

Topic: honey bees
Fact: Honey bees visit about two million flowers to make a single pound of honey.

Topic: the moon
Fact: The moon drifts about four centimetres farther from Earth every year.

Topic: {topic}
Fact:"""


@app.command()
def demo(
    topic: Annotated[str, typer.Option(help="What the demo writes and narrates about.")] = "octopuses",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: DATA_DIR/demo).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Write one fact with the text model and narrate it with the speech model, with the cost of each."""
    settings = settings_or_fail()
    folder = out or settings.data_dir / "demo"

    async def go() -> tuple[Generation, Generation]:
        async with Gateway(settings) as gateway:
            with console.status(f"writing with {settings.text_model} ...", spinner="dots") as status:
                request = TextRequest(prompt=DEMO_PROMPT.format(topic=topic), max_tokens=60, stop=("\n",))
                text = await gateway.generate(request, tags={"job": "demo"})
                fact = (text.text or "").strip() or f"{topic.capitalize()} are remarkable."
                status.update(f"narrating with {settings.speech_model} ...")
                speech = await gateway.speak(SpeechRequest(fact), tags={"job": "demo"})
            return text, speech

    console.quiet = json_out
    text, speech = run(go)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fact.txt").write_text((text.text or "").strip() + "\n", encoding="utf-8")
    (folder / "narration.wav").write_bytes(speech.audio or b"")
    total = text.cost_usd + speech.cost_usd
    if json_out:
        emit_json({
            "text": text.as_dict(), "speech": speech.as_dict(), "cost_usd": total,
            "files": {"text": str(folder / "fact.txt"), "audio": str(folder / "narration.wav")},
        })
        return
    console.print(f"[bold]{topic}[/bold]: {(text.text or '').strip()}", highlight=False)
    console.print(f"text   {describe(text)}", highlight=False)
    console.print(f"speech {describe(speech)}", highlight=False)
    console.print(f"total  {usd(total)}   files in {folder}/", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
