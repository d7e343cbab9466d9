"""One versioned prompt template: a system and a user text with ``{variables}``, the variables' declared types,
and an explicit limit on output tokens, which becomes the request's ``max_tokens`` (and so bounds its cost).

Variables are checked before any call: a missing, unknown or wrongly typed one is a TemplateVariableError that
names it. Literal braces in a template are written doubled, ``{{`` and ``}}``, as in ``str.format``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from contentmill.errors import TemplateError, TemplateVariableError
from contentmill.requests import TextRequest

VarType = Literal["str", "int", "float", "bool", "list"]
VAR_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list, tuple),
}
_VERSION = re.compile(r"^\d+(\.\d+)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_FIELDS = {"name", "version", "description", "language", "system", "user", "variables", "max_output_tokens",
           "temperature", "response_format"}


@dataclass(frozen=True, slots=True)
class Variable:
    """A declared variable: its type, whether a call must give it, and its default when not."""

    name: str
    type: VarType = "str"
    required: bool = True
    default: Any = None
    description: str = ""


def placeholders(text: str) -> list[str]:
    """The variable names a template text uses, in order of first use (``{{`` escapes are not variables)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        hint = "write literal braces as {{ and }}"
        raise TemplateError(f"unbalanced braces in template text ({exc}); {hint}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"placeholder {{{name}}} must be a plain variable name like {{product}}")
        if name not in names:
            names.append(name)
    return names


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A template of one version; ``spec`` (``name@version``) is what the gateway records as template_version."""

    name: str
    version: str
    max_output_tokens: int
    user: str
    system: str | None = None
    description: str = ""
    language: str = "en"
    variables: tuple[Variable, ...] = ()
    temperature: float = 0.0
    response_format: Literal["text", "json"] = "text"
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = self.source or self.name
        if not _NAME.match(self.name):
            raise TemplateError(f"{where}: name {self.name!r} must be lower-case letters, digits, '_' or '-'")
        if not _VERSION.match(self.version):
            raise TemplateError(f"{where}: version {self.version!r} must be numbers joined by dots, e.g. 2 or 1.1")
        if self.max_output_tokens <= 0:
            raise TemplateError(f"{where}: max_output_tokens must be a positive number of tokens")
        declared = {v.name for v in self.variables}
        undeclared = [n for n in self.used_variables() if n not in declared]
        if undeclared:
            raise TemplateError(f"{where}: uses undeclared variables {', '.join(undeclared)}; declare them")

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def used_variables(self) -> list[str]:
        return list(dict.fromkeys(placeholders(self.system or "") + placeholders(self.user)))

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values to render with (defaults filled in), or an error naming the first bad variable."""
        declared = {v.name: v for v in self.variables}
        for name in values:
            if name not in declared:
                raise TemplateVariableError(
                    self.spec, name, f"is not declared; declared: {', '.join(declared) or 'none'}")
        checked: dict[str, Any] = {}
        for var in self.variables:
            if var.name not in values or values[var.name] is None:
                if var.required:
                    raise TemplateVariableError(self.spec, var.name, f"is missing (a {var.type} is required)")
                checked[var.name] = var.default if var.default is not None else ""
                continue
            value = values[var.name]
            allowed = VAR_TYPES[var.type]
            if not isinstance(value, allowed) or (isinstance(value, bool) and var.type != "bool"):
                raise TemplateVariableError(
                    self.spec, var.name, f"must be a {var.type}, got {type(value).__name__} {value!r:.60}")
            checked[var.name] = ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
        return checked

    def render(self, values: Mapping[str, Any] | None = None, **more: Any) -> TextRequest:
        """A chat request with ``max_tokens`` = the template's output limit; variables checked first."""
        checked = self.check({**(values or {}), **more})
        system = self.system.format_map(checked).strip() if self.system else None
        user = self.user.format_map(checked).strip()
        return TextRequest.chat(user, system=system, max_tokens=self.max_output_tokens,
                                temperature=self.temperature, response_format=self.response_format)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> PromptTemplate:
        where = source or str(data.get("name", "template"))
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise TemplateError(f"{where}: unknown fields {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
        for needed in ("name", "version", "user", "max_output_tokens"):
            if data.get(needed) in (None, ""):
                hint = " (an explicit output limit is required)" if needed == "max_output_tokens" else ""
                raise TemplateError(f"{where}: {needed} is missing{hint}")
        try:
            return cls(
                name=str(data["name"]), version=str(data["version"]), max_output_tokens=int(data["max_output_tokens"]),
                user=str(data["user"]), system=data.get("system"), description=str(data.get("description", "")),
                language=str(data.get("language", "en")), variables=_variables(data.get("variables") or {}, where),
                temperature=float(data.get("temperature", 0.0)),
                response_format=data.get("response_format", "text"), source=source,
            )
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"{where}: {exc}") from None

    @classmethod
    def from_file(cls, path: Path) -> PromptTemplate:
        return cls.from_dict(read_yaml(path), str(path))


def read_yaml(path: Path) -> dict[str, Any]:
    """A template file's mapping, or a TemplateError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: cannot read the template: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: a template file holds one mapping (name, version, user, ...)")
    return data


def _variables(raw: Any, where: str) -> tuple[Variable, ...]:
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: variables is a mapping of name -> type or {{type, required, default}}")
    found = []
    for name, spec in raw.items():
        entry = {"type": spec} if isinstance(spec, str) else dict(spec or {})
        kind = entry.get("type", "str")
        if kind not in VAR_TYPES:
            raise TemplateError(f"{where}: variable {name!r} has type {kind!r}; use one of {', '.join(VAR_TYPES)}")
        required = bool(entry.get("required", "default" not in entry))
        found.append(Variable(str(name), cast(VarType, kind), required, entry.get("default"),
                              str(entry.get("description", ""))))
    return tuple(found)
