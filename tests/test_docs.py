"""The README and docs/ stay true to the repository: every relative link and image points at a file that exists
(and at a heading of it, when it names one), every ``contentmill`` command a code block of the README or of a
page shows exists in the CLI with the options it is shown with, the fake upstream takes the flags shown, and
every setting is documented."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import AliasChoices

from contentmill.cli import app
from contentmill.settings import ENV_PREFIX, Settings
from contentmill.testing.upstream.cli import parse_args

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(?:```|~~~)\s*([\w+-]*)")
NOT_SHELL = {"python", "yaml", "yml", "toml", "json", "nginx", "ini"}  # code blocks that hold no command line
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SOURCE = re.compile(r"<(?:img|a)\s[^>]*?(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
# "contentmill WORD" as a command: after a line start, a space, a path or "$(" (not a database named contentmill,
# nor "from contentmill import" in a drawing).
COMMAND = re.compile(r"(?:^|[\s/(])contentmill[ \t]+(?!contentmill\b|import\b)([a-z][a-z-]*)(?=\s|$)(.*)$")
UPSTREAM = re.compile(r"-m\s+contentmill\.testing\.upstream\b(.*)$")
COMMAND_END = re.compile(r"\s(?:\||>|&&|;|#)|\$\(|\)\s*$")


def split_page(text: str) -> tuple[list[str], list[str]]:
    """The lines of a markdown page outside fenced code blocks, and the lines inside blocks that may hold a
    command line (a block marked python, yaml, toml, json ... holds none)."""
    prose: list[str] = []
    code: list[str] = []
    language: str | None = None  # None: outside a block
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence is not None:
            language = fence.group(1).lower() if language is None else None
            continue
        if language is None:
            prose.append(line)
        elif language not in NOT_SHELL:
            code.append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a page's headings make, with GitHub's -1, -2 ... for repeated ones."""
    seen: dict[str, int] = {}
    found = set()
    for line in split_page(page.read_text(encoding="utf-8"))[0]:
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> Iterator[str]:
    """The link and image targets of a page's prose (code blocks and inline code hold none)."""
    for line in split_page(page.read_text(encoding="utf-8"))[0]:
        line = INLINE_CODE.sub("", line)
        yield from LINK.findall(line)
        yield from HTML_SOURCE.findall(line)


def relative_links() -> list[tuple[str, str]]:
    return [(page.relative_to(ROOT).as_posix(), target) for page in PAGES for target in links(page)
            if not EXTERNAL.match(target)]


@pytest.mark.parametrize(("page", "target"), relative_links())
def test_relative_links_and_images_resolve(page: str, target: str) -> None:
    path, _, anchor = target.partition("#")
    source = ROOT / page
    destination = (source.parent / path).resolve() if path else source
    assert destination.exists(), f"{page} links to {target}, but {destination} does not exist"
    if anchor:
        assert destination.suffix == ".md", f"{page} links to an anchor of {path}, which is not a page"
        assert anchor in anchors(destination), f"{page} links to #{anchor}, no heading of {destination.name}"


def test_pages_link_to_each_other() -> None:
    """The README indexes every page of docs/, and the pages are found by the link check above."""
    readme = set(links(ROOT / "README.md"))
    missing = [page.name for page in PAGES[1:] if f"docs/{page.name}" not in readme]
    assert not missing, f"the README's index of docs/ lacks {missing}"
    assert len(relative_links()) > len(PAGES), "the link check found almost no links: is the pattern broken?"


def commands_shown(page: Path) -> Iterator[str]:
    """Each ``contentmill ...`` command line of a page's code blocks, continuation lines joined."""
    code = "\n".join(split_page(page.read_text(encoding="utf-8"))[1]).replace("\\\n", " ")
    for line in code.splitlines():
        match = COMMAND.search(line)
        if match is not None:
            rest = match.group(2)
            end = COMMAND_END.search(rest)
            yield f"{match.group(1)}{rest[: end.start()] if end else rest}".strip()


def shown_commands() -> list[tuple[str, str]]:
    return [(page.relative_to(ROOT).as_posix(), shown) for page in PAGES for shown in commands_shown(page)]


@cache
def cli_commands() -> dict[str, Any]:
    """The CLI's commands by name, as click sees them (groups such as ``keys`` hold their own)."""
    return dict(getattr(typer.main.get_command(app), "commands", {}))


def options_of(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(opt for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-"))
    return names


def words(shown: str) -> list[str]:
    """The words of a shown command line, with the brackets and ellipses of a synopsis taken off."""
    try:
        tokens = shlex.split(shown)
    except ValueError:  # an unbalanced quote in a synopsis: plain words are enough to find the options
        tokens = shown.split()
    return [token.strip("[]").removesuffix("...").strip("[]") for token in tokens]


def test_readme_shows_commands() -> None:
    shown = [command for page, command in shown_commands() if page == "README.md"]
    assert {command.split()[0] for command in shown} >= {"video", "products", "serve", "keys", "report"}


@pytest.mark.parametrize(("page", "shown"), shown_commands())
def test_shown_commands_exist_in_the_cli(page: str, shown: str) -> None:
    tokens = words(shown)
    command = cli_commands().get(tokens[0])
    assert command is not None, f"{page} shows `contentmill {shown}`: there is no command {tokens[0]!r}"
    name, rest = tokens[0], tokens[1:]
    subcommands = getattr(command, "commands", None)
    if subcommands and rest and not rest[0].startswith("-"):
        command = subcommands.get(rest[0])
        assert command is not None, f"{page} shows `contentmill {shown}`: {name} has no {rest[0]!r}"
        name, rest = f"{name} {rest[0]}", rest[1:]
    known = options_of(command)
    unknown = [word.split("=")[0] for word in rest
               if word.startswith("-") and len(word) > 1 and word.split("=")[0] not in known]
    assert not unknown, f"{page} shows `contentmill {shown}`: {name} has no option {unknown}"


def upstream_lines() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for line in split_page(page.read_text(encoding="utf-8"))[1]:
            match = UPSTREAM.search(line)
            if match is not None:
                rest = match.group(1)
                end = COMMAND_END.search(rest)
                found.append((page.relative_to(ROOT).as_posix(), (rest[: end.start()] if end else rest).strip()))
    return found


@pytest.mark.parametrize(("page", "flags"), upstream_lines())
def test_shown_upstream_command_lines_parse(page: str, flags: str) -> None:
    """``python -m contentmill.testing.upstream FLAGS`` as a page shows it: argparse exits on a flag it lacks."""
    try:
        parse_args(shlex.split(flags))
    except SystemExit:
        pytest.fail(f"{page} runs the fake upstream with {flags!r}, which its command line refuses")


def test_pages_show_the_upstream() -> None:
    assert {page for page, _ in upstream_lines()} >= {"README.md", "docs/testing.md"}


def test_every_setting_is_documented() -> None:
    """Each field of ``Settings`` by the variable that sets it (the vendors' own names for their keys and
    endpoints), in docs/configuration.md or, for the cache's, in docs/cache.md."""
    text = "".join((ROOT / "docs" / name).read_text(encoding="utf-8") for name in ("configuration.md", "cache.md"))
    missing = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variables = list(alias.choices) if isinstance(alias, AliasChoices) else [ENV_PREFIX + name.upper()]
        missing += [variable for variable in variables if f"`{variable}`" not in text]
    assert not missing, f"docs/configuration.md does not name {missing}"
