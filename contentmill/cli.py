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

from contentmill.commands import JsonOption, emit_json, fail, parse_tags, settings_or_fail
from contentmill.commands.budget import budget_app
from contentmill.commands.cache import cache_app
from contentmill.commands.compare import compare
from contentmill.commands.experiment import experiment_app
from contentmill.commands.graph import graph_app, search
from contentmill.commands.ledger import alerts_app, report_app
from contentmill.commands.products import products
from contentmill.commands.prompts import prompts_app
from contentmill.commands.route import route_app
from contentmill.commands.running import run as run_app
from contentmill.commands.server import keys_app, serve
from contentmill.commands.video import demo, video
from contentmill.commands.voices import voices
from contentmill.errors import ContentmillError
from contentmill.gateway import Gateway, Generation
from contentmill.requests import SpeechRequest, TextRequest

app = typer.Typer(
    name="contentmill",
    help="Text, speech and video generation with AI models at a cost you can predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(video)
app.command()(demo)
app.command()(voices)
app.command()(search)
app.command()(products)
app.add_typer(graph_app, name="graph")
app.add_typer(cache_app, name="cache")
app.add_typer(budget_app, name="budget")
app.add_typer(report_app, name="report")
app.add_typer(alerts_app, name="alerts")
app.command()(compare)
app.add_typer(prompts_app, name="prompts")
app.add_typer(experiment_app, name="experiment")
app.add_typer(route_app, name="route")
app.command()(serve)
app.add_typer(keys_app, name="keys")
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


@app.command()
def doctor(json_out: JsonOption = False) -> None:
    """Check what the current settings need (engines, services, keys) and say what to fix; exit 1 if broken."""
    from contentmill.doctor import run_checks

    settings = settings_or_fail()
    checks = asyncio.run(run_checks(settings))
    healthy = all(check.status != "fail" for check in checks)
    if json_out:
        emit_json({"ok": healthy, "checks": [check.as_dict() for check in checks]})
    else:
        marks = {"ok": "[green]✓[/green]", "fail": "[red]✗[/red]", "skip": "[dim]-[/dim]"}
        for check in checks:
            console.print(f"{marks[check.status]} {check.name:<12} ", end="", highlight=False)
            console.print(check.detail, markup=False, highlight=False, soft_wrap=True)
    if not healthy:
        raise typer.Exit(1)


def main() -> None:
    """Every command (the executable, ``contentmill.entry``, runs ``video`` and ``demo`` without the others)."""
    run_app(app)


if __name__ == "__main__":
    main()
