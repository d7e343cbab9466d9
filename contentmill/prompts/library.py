"""The template library: the packaged templates, then each folder of the ``template_dirs`` setting.

A user template with the same name and version as a packaged one replaces it. ``get(name)`` without a version
answers the pinned version when one is pinned (a promoted experiment pins its winner), else the highest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path

from contentmill.errors import TemplateError
from contentmill.prompts.template import PromptTemplate, version_key
from contentmill.settings import Settings

SUFFIXES = (".yaml", ".yml")


def packaged_dir() -> Path:
    return Path(str(files("contentmill.prompts").joinpath("templates")))


def template_files(paths: Iterable[Path]) -> list[Path]:
    """Template files named by ``paths``: files as given, folders searched for *.yaml / *.yml (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise TemplateError(f"{path}: no such template file or folder (check CONTENTMILL_TEMPLATE_DIRS)")
    return found


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``name@version`` (or a bare ``name``) as its two parts."""
    name, sep, version = spec.strip().partition("@")
    if not name or (sep and not version):
        raise TemplateError(f"name a template as NAME or NAME@VERSION (got {spec!r})")
    return name, version or None


class TemplateLibrary:
    """Templates by name and version; ``pins`` maps a name to the version ``get(name)`` answers."""

    def __init__(self, templates: Iterable[PromptTemplate], pins: Mapping[str, str] | None = None) -> None:
        self._by_name: dict[str, dict[str, PromptTemplate]] = {}
        for template in templates:
            self._by_name.setdefault(template.name, {})[template.version] = template
        self.pins = dict(pins or {})

    @classmethod
    def from_dirs(cls, dirs: Iterable[Path], pins: Mapping[str, str] | None = None) -> TemplateLibrary:
        return cls((PromptTemplate.from_file(p) for p in template_files([packaged_dir(), *dirs])), pins)

    @classmethod
    def from_settings(cls, settings: Settings, pins: Mapping[str, str] | None = None) -> TemplateLibrary:
        return cls.from_dirs(settings.template_dirs, pins)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[str]:
        return sorted(self._by_name.get(name, {}), key=version_key)

    def all(self) -> list[PromptTemplate]:
        return [self._by_name[n][v] for n in self.names() for v in self.versions(n)]

    def get(self, spec: str, version: str | None = None) -> PromptTemplate:
        """``get("name@2")``, ``get("name", "2")`` or ``get("name")`` (pinned, else the highest version)."""
        name, given = parse_spec(spec)
        versions = self._by_name.get(name)
        if not versions:
            raise TemplateError(f"no template named {name!r}; known: {', '.join(self.names()) or 'none'} "
                                "(add folders with CONTENTMILL_TEMPLATE_DIRS)")
        wanted = version or given or self.pins.get(name) or self.versions(name)[-1]
        if wanted not in versions:
            raise TemplateError(f"template {name!r} has no version {wanted!r}; versions: "
                                f"{', '.join(self.versions(name))}")
        return versions[wanted]

    def with_pins(self, pins: Mapping[str, str]) -> TemplateLibrary:
        return TemplateLibrary(self.all(), {**self.pins, **pins})
