"""A native engine in a child process, spoken to in JSON lines: a crash in it is an error here, not a dead caller.

The child (for instance :mod:`contentmill.providers.llama_worker`) writes ``{"ready": {...}}`` once it is
loaded, then answers requests by their ``id``. One thread here reads its output and hands each message to the
request it names, so several requests can be in flight (the child decides what runs at once); another keeps the
last lines of its stderr for the message of a crash. When the child's output ends, every request still waiting
gets an :class:`~contentmill.errors.EngineCrashed` that names the signal or exit status, and the process is
reaped: nothing is left behind. The child exits by itself when this process closes its input or dies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import IO, Any

from contentmill.errors import EngineCrashed, EngineError

log = logging.getLogger(__name__)

Message = dict[str, Any]
_Sink = Callable[[Message | EngineCrashed], None]


def describe_exit(returncode: int) -> str:
    """'was killed by signal SIGSEGV (Segmentation fault)' or 'exited with status 3'."""
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        text = signal.strsignal(number)
        return f"was killed by signal {name}" + (f" ({text})" if text else "")
    return f"exited with status {returncode}"


class EngineProcess:
    """One child process running ``argv``; ``engine`` names it in errors and ``hint`` says what to try."""

    def __init__(self, argv: Sequence[str], *, engine: str, model: str, hint: str) -> None:
        self.engine, self.model, self.hint = engine, model, hint
        self._ids = itertools.count(1)
        self._pending: dict[int, _Sink] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stderr: deque[str] = deque(maxlen=20)
        self._ready: Message | None = None
        self._failure: EngineCrashed | EngineError | None = None
        self._settled = threading.Event()  # ready, refused to start, or died
        self._busy_with = "loading"
        self._proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True
        )
        self.pid = self._proc.pid
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True,
                                        name=f"{engine}-{self.pid}-out")
        self._reader.start()
        self._stderr_reader = threading.Thread(target=self._keep_stderr, args=(self._proc.stderr,), daemon=True,
                                               name=f"{engine}-{self.pid}-err")
        self._stderr_reader.start()

    # -- state ------------------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._failure is None and self._proc.poll() is None

    def wait_ready(self, timeout_s: float | None = None) -> Message:
        """What the child said when it was loaded; raises what stopped it from loading."""
        if not self._settled.wait(timeout_s):
            raise EngineError(f"the {self.engine} did not start within {timeout_s:.0f} s")
        if self._failure is not None:
            raise self._failure
        assert self._ready is not None
        return self._ready

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the child's input (it exits when it sees that), then wait for it; kill it if it lingers."""
        self._close_stdin()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout_s)

    def _close_stdin(self) -> None:
        with self._write_lock:
            stdin = self._proc.stdin
            if stdin is not None and not stdin.closed:
                try:
                    stdin.close()
                except OSError:  # the child is gone and the last write did not reach it
                    pass

    # -- requests ---------------------------------------------------------------------------------------

    def call(self, message: Message) -> Message:
        """Send one request and block until its single answer."""
        answers: queue.Queue[Message | EngineCrashed] = queue.Queue()
        request_id = self._send(message, answers.put)
        try:
            answer = answers.get()
        finally:
            self._forget(request_id)
        if isinstance(answer, EngineCrashed):
            raise answer
        return answer

    async def ask(self, message: Message, *, busy_with: str = "a call") -> AsyncGenerator[Message, None]:
        """Send one request and yield its answers as they arrive; leaving early tells the child to stop it."""
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[Message | EngineCrashed] = asyncio.Queue()

        def sink(answer: Message | EngineCrashed) -> None:
            try:
                loop.call_soon_threadsafe(answers.put_nowait, answer)
            except RuntimeError:  # the loop closed: nobody waits for this answer any more
                pass

        self._busy_with = busy_with
        request_id = self._send(message, sink)
        finished = False
        try:
            while True:
                answer = await answers.get()
                if isinstance(answer, EngineCrashed):
                    finished = True
                    raise answer
                finished = "piece" not in answer
                yield answer
                if finished:
                    return
        finally:
            self._forget(request_id)
            if not finished:
                self._cancel(request_id)

    def _send(self, message: Message, sink: _Sink) -> int:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            request_id = next(self._ids)
            self._pending[request_id] = sink
        try:
            self._write({**message, "id": request_id})
        except (OSError, ValueError):  # a broken pipe, or its input closed after it died
            self._reader.join(5.0)  # the child is gone: its reader names how it went
            self._forget(request_id)
            raise self._failure or self._crashed(self._proc.wait()) from None
        return request_id

    def _cancel(self, request_id: int) -> None:
        try:
            self._write({"op": "cancel", "id": request_id})
        except (OSError, ValueError):
            pass

    def _forget(self, request_id: int) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def _write(self, message: Message) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        data = json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"
        with self._write_lock:
            stdin.write(data)
            stdin.flush()

    # -- the child's output -----------------------------------------------------------------------------

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("%s %s wrote an unreadable line: %.200r", self.engine, self.pid, line)
                continue
            if "ready" in message:
                self._ready = message["ready"]
                self._settled.set()
                continue
            request_id = message.get("id")
            if request_id is None and "error" in message and not self._settled.is_set():
                self._failure = EngineError(str(message["error"].get("message")))
                self._settled.set()
                continue
            with self._lock:
                sink = self._pending.get(request_id) if isinstance(request_id, int) else None
            if sink is not None:
                sink(message)
        stdout.close()
        returncode = self._proc.wait()
        self._close_stdin()
        self._stderr_reader.join(2.0)  # its last lines name the fault, when it printed any
        crashed = self._crashed(returncode)
        with self._lock:
            self._failure = self._failure or crashed
            waiting, self._pending = list(self._pending.values()), {}
        self._settled.set()
        for sink in waiting:
            sink(crashed)

    def _keep_stderr(self, stderr: IO[bytes]) -> None:
        for raw in stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr.append(line)
                log.debug("%s %s: %s", self.engine, self.pid, line)
        stderr.close()

    def _crashed(self, returncode: int) -> EngineCrashed:
        when = "while loading" if self._ready is None else f"during {self._busy_with}"
        said = f"; its last words: {self._stderr[-1][:300]}" if self._stderr else ""
        return EngineCrashed(
            f"the {self.engine}, process {self.pid}, {describe_exit(returncode)} {when}{said}; nothing of the "
            f"call was delivered and the next call starts a new process. {self.hint}",
            provider="local",
            model=self.model,
        )
