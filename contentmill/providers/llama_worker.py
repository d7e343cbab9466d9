"""The process that runs llama.cpp for :class:`~contentmill.providers.llama_local.LlamaTextModel`.

llama.cpp is native code with CPU kernels picked at build time; a fault in one (an instruction the CPU or its
hypervisor does not allow, an abort on a bad tensor) kills the process it runs in. So the model runs here, in a
child process, and a crash ends this process only: the parent sees the pipe close, names the signal in an
:class:`~contentmill.errors.EngineCrashed` and starts a new process for the next call.

Protocol: one JSON object a line each way. The first line out is ``{"ready": ...}`` (or ``{"error": ...}`` and
exit 1). Requests carry an ``id``; every answer names the ``id`` it belongs to::

    in:  {"id": 3, "op": "tokenize", "text": "...", "add_bos": false}   out: {"id": 3, "tokens": 12}
    in:  {"id": 4, "op": "generate", "stream": true, "prompt": "...", "max_tokens": 64, "temperature": 0.0,
          "stop": ["\\n"], "seed": null, "json": false}
    out: {"id": 4, "piece": "Hello", "request_id": "cmpl-..."}  ... then
         {"id": 4, "end": {"text": ..., "input_tokens": 9, "output_tokens": 20, "finish_reason": "stop",
                            "request_id": "cmpl-..."}}
    in:  {"op": "cancel", "id": 4}                                       ends generation 4 at the next token
    out: {"id": 5, "error": {"message": "..."}}

Generations run one at a time on the main thread (a llama.cpp context is not thread-safe); tokenizing only reads
the vocabulary and is answered at once by the thread that reads requests, also while a generation runs. The
process exits when its input closes (the parent exited, however it died) and, on Linux, when the parent dies.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import signal
import sys
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from contentmill.providers.llama_local import INSTALL_HINT

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import CreateCompletionResponse, CreateCompletionStreamResponse

_PR_SET_PDEATHSIG = 1


class Refused(Exception):
    """What this engine cannot do (load the model, answer a request); its message goes to the parent."""


class _TokenRecorder(Protocol):
    """A Llama that keeps the tokens its last generation sampled (a streamed completion reports no usage)."""

    sampled: list[int]


@cache
def _recording_llama_class() -> type[Llama]:
    try:
        import llama_cpp
    except ImportError:
        raise Refused(f"the local text model needs llama-cpp-python: {INSTALL_HINT}") from None

    class RecordingLlama(llama_cpp.Llama):
        """Records sampled tokens, so a streamed completion's output count is exact too."""

        sampled: list[int]

        def generate(self, *args: Any, **kwargs: Any) -> Generator[int, Sequence[int] | None, None]:
            self.sampled = []
            for token in super().generate(*args, **kwargs):
                self.sampled.append(token)
                yield token

    return RecordingLlama


@dataclass(slots=True)
class Engine:
    """One loaded model and what is asked of it; used only inside the engine process."""

    llama: Llama

    @classmethod
    def load(cls, path: str, n_ctx: int, n_threads: int | None) -> Engine:
        llama_class = _recording_llama_class()
        try:
            # Every call starts from an empty context (see generate), so Gemma's sliding-window layers keep only
            # their window instead of n_ctx tokens of cache.
            llama = llama_class(model_path=path, n_ctx=n_ctx, n_threads=n_threads, swa_full=False, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise Refused(f"llama.cpp could not load {path}: {exc}") from exc
        return cls(llama)

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Tokens as llama.cpp reads a prompt: special-token text (``<start_of_turn>``) is one token.

        Needs no lock: tokenizing only reads the vocabulary, as llama.cpp's own server does across threads.
        """
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _options(self, ask: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
        prompt = str(ask["prompt"])
        input_tokens = len(self.tokenize(prompt, add_bos=True))
        options: dict[str, Any] = {
            "max_tokens": int(ask["max_tokens"]),
            "temperature": float(ask["temperature"]),
            "stop": list(ask["stop"]),
            "seed": ask["seed"],
        }
        if ask.get("json"):
            from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

            options["grammar"] = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return prompt, input_tokens, options

    def generate(self, ask: dict[str, Any], send: _Sender, cancelled: threading.Event) -> dict[str, Any]:
        """Run one completion from an empty context (reusing a cached prefix changes batch shapes and so, now and
        then, a greedy pick: equal requests must give equal answers); streamed pieces go to ``send``."""
        prompt, input_tokens, options = self._options(ask)
        self.llama.reset()  # type: ignore[no-untyped-call]  # unannotated in llama_cpp
        if not ask.get("stream"):
            response = cast("CreateCompletionResponse", self.llama.create_completion(prompt, **options))
            usage = response.get("usage")
            if usage is None:
                raise Refused("llama.cpp returned a completion without usage")
            choice = response["choices"][0]
            return {"text": choice["text"], "input_tokens": usage["prompt_tokens"],
                    "output_tokens": usage["completion_tokens"], "finish_reason": choice["finish_reason"] or "stop",
                    "request_id": response["id"]}
        finish, request_id = "stop", None
        chunks = cast("Generator[CreateCompletionStreamResponse, None, None]",
                      self.llama.create_completion(prompt, stream=True, **options))
        try:
            for chunk in chunks:
                if cancelled.is_set():
                    finish = "cancelled"
                    break
                choice, request_id = chunk["choices"][0], chunk["id"]
                if choice["text"]:
                    send({"id": ask["id"], "piece": choice["text"], "request_id": request_id})
                finish = choice["finish_reason"] or finish
        finally:
            chunks.close()
        return {"text": None, "input_tokens": input_tokens, "output_tokens": self._completion_tokens(),
                "finish_reason": finish, "request_id": request_id}

    def _completion_tokens(self) -> int:
        """Tokens the last generation produced, counted as llama.cpp's usage counts them (no end token)."""
        import llama_cpp

        sampled = cast("_TokenRecorder", self.llama).sampled
        vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        ends = bool(sampled) and vocab is not None and llama_cpp.llama_vocab_is_eog(vocab, sampled[-1])
        return len(sampled) - int(ends)


class _Sender(Protocol):
    def __call__(self, message: dict[str, Any]) -> None: ...


def _line_writer(out: IO[bytes]) -> _Sender:
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"
        with lock:
            out.write(data)
            out.flush()

    return send


def _system_info() -> str:
    """The CPU features llama.cpp was built to use, as it reports them ("AVX2 = 1 | AVX512 = 0 | ...")."""
    import llama_cpp

    return bytes(llama_cpp.llama_print_system_info()).decode("utf-8", "replace").strip()


def _die_with_parent(parent: int) -> None:
    """On Linux, the kernel kills this process when the parent dies, also mid-generation inside llama.cpp."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(0)


def _error(message: str, request_id: object = None) -> dict[str, Any]:
    return {"id": request_id, "error": {"message": message}}


def _serve(engine: Engine, source: IO[bytes], send: _Sender) -> None:
    work: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancelled: dict[object, threading.Event] = {}
    closing = threading.Event()

    def take(message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "tokenize":
            count = len(engine.tokenize(str(message["text"]), add_bos=bool(message.get("add_bos"))))
            send({"id": message["id"], "tokens": count})
        elif op == "cancel":
            if (event := cancelled.get(message["id"])) is not None:
                event.set()
        else:
            cancelled[message["id"]] = threading.Event()
            work.put(message)

    def read() -> None:
        for line in source:
            try:
                take(json.loads(line))
            except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                send(_error(f"unreadable request: {exc}"))
        closing.set()
        for event in list(cancelled.values()):
            event.set()
        work.put(None)

    threading.Thread(target=read, name="requests", daemon=True).start()
    while (ask := work.get()) is not None:
        request_id = ask["id"]
        event = cancelled.get(request_id) or threading.Event()
        try:
            if event.is_set() or closing.is_set():
                continue
            if ask.get("op") != "generate":
                send(_error(f"unknown operation {ask.get('op')!r}", request_id))
                continue
            send({"id": request_id, "end": engine.generate(ask, send, event)})
        except Refused as exc:
            send(_error(str(exc), request_id))
        except (ValueError, RuntimeError) as exc:
            send(_error(f"llama.cpp failed: {exc}", request_id))
        finally:
            cancelled.pop(request_id, None)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one llama.cpp model over stdin/stdout (JSON lines).")
    parser.add_argument("--model", required=True)
    parser.add_argument("--n-ctx", type=int, required=True)
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes our input
    _die_with_parent(args.parent)
    # The protocol gets its own copy of stdout; anything else written to fd 1 (native code, stray prints) goes to
    # stderr, which the parent keeps for the message of a crash.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    send = _line_writer(out)
    try:
        engine = Engine.load(args.model, args.n_ctx, args.n_threads)
    except Refused as exc:
        send(_error(str(exc)))
        raise SystemExit(1) from None
    send({"ready": {"n_ctx": engine.llama.n_ctx(), "pid": os.getpid(), "system_info": _system_info()}})
    try:
        _serve(engine, sys.stdin.buffer, send)
    except BrokenPipeError:  # the parent went away while we wrote
        pass
    finally:
        engine.llama.close()


if __name__ == "__main__":
    main()
