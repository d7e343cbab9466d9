"""A linter for prompt templates that flags what wastes tokens, each finding with the tokens it would save.

Rules:

- ``no-length-limit``: no ``max_output_tokens``; an unbounded call may bill up to ``UNBOUNDED_OUTPUT_TOKENS``
  output tokens, so the saving is that minus ``SUGGESTED_LIMIT``.
- ``repeated-sentence``: the same sentence (3+ words) written again; ``repeated-context``: a run of
  ``MIN_REPEAT_WORDS``+ words written again. Saving: the tokens of the text without the repeat.
- ``boilerplate``: filler such as "As an AI language model" or "Please make sure to". Saving: the tokens of the
  text with the phrase removed (or shortened).
- ``unused-variable``: declared, never used (0 tokens: nothing is sent, but callers build a value for nothing);
  ``undeclared-variable``: used, not declared (the call would fail).

Savings are per call, counted with ``contentmill.metering`` (tiktoken) as the difference between the text's
tokens before and after the fix, so they are exact for the encoding given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from contentmill.errors import TemplateError
from contentmill.metering import count_tokens
from contentmill.prompts.template import PromptTemplate, placeholders, read_yaml

UNBOUNDED_OUTPUT_TOKENS = 4096  # what a call without max_tokens may produce on many chat APIs
SUGGESTED_LIMIT = 512
MIN_REPEAT_WORDS = 8
MIN_SENTENCE_WORDS = 3
# Filler that costs tokens and changes nothing a model does; each with what to write instead.
BOILERPLATE: dict[str, str] = {
    "as an ai language model,": "",
    "as an ai language model": "",
    "you are a helpful assistant.": "",
    "i want you to act as": "act as",
    "i would like you to": "",
    "i want you to": "",
    "please make sure to": "",
    "please make sure that": "",
    "make sure that you": "",
    "please ensure that": "",
    "it is very important that": "",
    "it is important to note that": "",
    "it is important that": "",
    "please note that": "",
    "keep in mind that": "",
    "do your best to": "",
    "feel free to": "",
    "in order to": "to",
    "at the end of the day": "",
    "needless to say,": "",
    "kindly": "",
}
Severity = Literal["error", "warning", "info"]
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Finding:
    """One waste: where, what, and the tokens a call would save once fixed."""

    template: str
    rule: str
    severity: Severity
    message: str
    tokens_saved: int
    field: str = ""
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tidy(text: str) -> str:
    """Text after a removal: no doubled spaces, no space before punctuation, lines kept."""
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r" +([.,;:!?])", r"\1", text)
    return "\n".join(line.strip() for line in text.split("\n"))


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _repeated_sentence(texts: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The first sentence (3+ words) written again: (field, sentence, that field's text without the copy)."""
    seen: set[str] = set()
    for field_name, text in texts.items():
        for match in _SENTENCE.finditer(text):
            sentence = match.group().strip()
            key = _norm(sentence)
            if len(key.split()) < MIN_SENTENCE_WORDS:
                continue
            if key in seen:
                return field_name, sentence, text[: match.start()] + text[match.end():]
            seen.add(key)
    return None


def _repeated_run(texts: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The longest run of MIN_REPEAT_WORDS+ words written twice: (field, run, field text without the copy)."""
    words: list[tuple[str, int, int, str]] = []  # field, start, end, normalized word
    for field_name, text in texts.items():
        words += [(field_name, m.start(), m.end(), _norm(m.group())) for m in _WORD.finditer(text)]
    keys = [w[3] for w in words]
    first: dict[tuple[str, ...], int] = {}  # where each run of MIN_REPEAT_WORDS words first occurs
    best: tuple[int, int] | None = None  # length, start index of the second copy
    for j in range(len(keys) - MIN_REPEAT_WORDS + 1):
        gram = tuple(keys[j: j + MIN_REPEAT_WORDS])
        i = first.setdefault(gram, j)
        if i + MIN_REPEAT_WORDS > j:  # the first occurrence itself, or one overlapping it
            continue
        length = MIN_REPEAT_WORDS
        while j + length < len(keys) and i + length < j and keys[i + length] == keys[j + length]:
            length += 1
        if best is None or length > best[0]:
            best = (length, j)
    if best is None:
        return None
    length, j = best
    span = [w for w in words[j: j + length] if w[0] == words[j][0]]  # the copy's part in one field
    field_name, start, end = span[0][0], span[0][1], span[-1][2]
    text = texts[field_name]
    return field_name, text[start:end], text[:start] + text[end:]


def _boilerplate(texts: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The first filler phrase found: (field, phrase as written, that field's text without it)."""
    for field_name, text in texts.items():
        for phrase, instead in BOILERPLATE.items():
            match = re.search(r"\b" + re.escape(phrase) + r"(?=\W|$)\s*", text, re.IGNORECASE)
            if match is None:
                continue
            head = text[: match.start()]
            after = head + (instead + " " if instead else "") + text[match.end():]
            starts_sentence = not head.strip() or head.rstrip(" ").endswith((".", "!", "?", "\n", ":"))
            if starts_sentence and match.start() < len(after):
                after = head + after[match.start()].upper() + after[match.start() + 1:]
            return field_name, match.group().strip(), after
    return None


RULES = (("repeated-sentence", _repeated_sentence), ("repeated-context", _repeated_run),
         ("boilerplate", _boilerplate))


def _describe(rule: str, text: str) -> str:
    if rule == "repeated-sentence":
        return f"sentence repeated: {text!r}; say it once"
    if rule == "repeated-context":
        return f"{len(text.split())} words written twice: {text[:80]!r}; say them once"
    return f"filler phrase {text!r}: cut it"


def lint_template(data: Mapping[str, Any] | PromptTemplate, *, encoding: str = "o200k_base") -> list[Finding]:
    """Findings for one template (a loaded one, or a file's raw mapping, which may lack a limit)."""
    raw = _raw(data)
    name = f"{raw.get('name', '?')}@{raw.get('version', '?')}"
    texts = {k: str(raw[k]) for k in ("system", "user") if raw.get(k)}
    findings: list[Finding] = []
    if not raw.get("max_output_tokens"):
        findings.append(Finding(
            name, "no-length-limit", "error",
            f"no max_output_tokens: a call may bill up to {UNBOUNDED_OUTPUT_TOKENS} output tokens; set a limit "
            f"(e.g. {SUGGESTED_LIMIT}) that fits the answer", UNBOUNDED_OUTPUT_TOKENS - SUGGESTED_LIMIT,
            "max_output_tokens"))
    work = dict(texts)
    for rule, detect in RULES:  # one waste at a time, each measured on what the earlier fixes left
        while (found := detect(work)) is not None:
            field_name, text, fixed = found
            fixed = _tidy(fixed)
            findings.append(Finding(name, rule, "warning", _describe(rule, text),
                                    count_tokens(work[field_name], encoding) - count_tokens(fixed, encoding),
                                    field_name, text))
            work[field_name] = fixed
    findings += _variable_findings(name, raw, texts)
    return findings


def _variable_findings(name: str, raw: Mapping[str, Any], texts: Mapping[str, str]) -> list[Finding]:
    declared = list((raw.get("variables") or {}).keys())
    used: list[str] = []
    try:
        for text in texts.values():
            used += [n for n in placeholders(text) if n not in used]
    except TemplateError as exc:
        return [Finding(name, "bad-placeholder", "error", str(exc), 0)]
    findings = [
        Finding(name, "unused-variable", "warning",
                f"variable {var!r} is declared but never used: callers build a value the model never sees", 0,
                "variables", var)
        for var in declared if var not in used]
    findings += [
        Finding(name, "undeclared-variable", "error",
                f"variable {var!r} is used but not declared: declare it (with its type) or the call fails", 0,
                "variables", var)
        for var in used if var not in declared]
    return findings


def _raw(data: Mapping[str, Any] | PromptTemplate) -> Mapping[str, Any]:
    if not isinstance(data, PromptTemplate):
        return data
    return {"name": data.name, "version": data.version, "system": data.system, "user": data.user,
            "max_output_tokens": data.max_output_tokens, "variables": {v.name: v.type for v in data.variables}}


def lint_file(path: Path, *, encoding: str = "o200k_base") -> list[Finding]:
    return lint_template(read_yaml(path), encoding=encoding)
