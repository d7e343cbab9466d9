"""``contentmill prompts``: the template library (packaged and your folders) and the token-waste linter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, settings_or_fail, wide_console
from contentmill.errors import ContentmillError
from contentmill.prompts.library import packaged_dir, template_files
from contentmill.prompts.lint import Finding, lint_file

prompts_app = typer.Typer(help="Prompt templates: list them, lint them for token waste.", no_args_is_help=True)
console = wide_console()


@prompts_app.command("list")
def list_templates(json_out: JsonOption = False) -> None:
    """Every template with its versions, output limit and variables; promoted versions are marked."""
    settings = settings_or_fail()
    try:
        from contentmill.experiments.store import promoted_library
        from contentmill.ledger.store import LedgerStore, settings_url

        with LedgerStore(settings_url(settings)) as store:
            library = promoted_library(settings, store)
    except ContentmillError as exc:
        fail(str(exc))
    rows: list[dict[str, Any]] = []
    for template in library.all():
        rows.append({
            "name": template.name, "version": template.version, "spec": template.spec,
            "description": template.description, "language": template.language,
            "max_output_tokens": template.max_output_tokens,
            "variables": {v.name: {"type": v.type, "required": v.required} for v in template.variables},
            "default": library.get(template.name).version == template.version,
            "pinned": library.pins.get(template.name) == template.version, "source": template.source,
        })
    if json_out:
        emit_json({"templates": rows, "pins": library.pins})
        return
    table = Table(title="prompt templates (* answers NAME without a version; pinned: a promoted winner)")
    for column in ("template", "max out", "variables", "description"):
        table.add_column(column, justify="right" if column == "max out" else "left")
    for row in rows:
        mark = ("*" if row["default"] else "") + (" pinned" if row["pinned"] else "")
        variables = ", ".join(f"{k}:{v['type']}" + ("" if v["required"] else "?") for k, v in row["variables"].items())
        table.add_row(f"{row['spec']} {mark}".strip(), str(row["max_output_tokens"]), variables, row["description"])
    console.print(table)


@prompts_app.command("lint")
def lint(
    paths: Annotated[list[Path] | None, typer.Argument(help="Template files or folders (default: the library).")]
    = None,
    encoding: Annotated[str, typer.Option(help="tiktoken encoding that counts the savings.")] = "o200k_base",
    json_out: JsonOption = False,
) -> None:
    """Flag what wastes tokens (no output limit, repeated context, filler, unused variables) with the tokens each
    fix would save per call. Exits 1 when anything is found."""
    settings = settings_or_fail()
    try:
        files = template_files(paths or [packaged_dir(), *settings.template_dirs])
        findings: list[Finding] = [f for path in files for f in lint_file(path, encoding=encoding)]
    except ContentmillError as exc:
        fail(str(exc))
    saved = sum(f.tokens_saved for f in findings)
    if json_out:
        emit_json({"files": [str(f) for f in files], "findings": [f.as_dict() for f in findings],
                   "tokens_saved": saved, "encoding": encoding})
    elif not findings:
        console.print(f"no token waste found in {len(files)} templates")
    else:
        table = Table(title=f"{len(findings)} findings in {len(files)} templates; {saved} tokens a call to save")
        for column in ("template", "rule", "field", "saves", "what to do"):
            table.add_column(column, justify="right" if column == "saves" else "left")
        for f in findings:
            table.add_row(f.template, f.rule, f.field, str(f.tokens_saved), f.message)
        console.print(table)
    if findings:
        raise typer.Exit(1)
