"""Wall time of ``contentmill video`` run again for a video that is already made, from the command line.

The video (the creator's own three-scene script, espeak-ng, 480p) is made once; then, in the same run and
interleaved, the command is timed answering from the store before any Prefect API starts (``stored``), and the
same request through the flow run as it went before the store answered (``flow``: a temporary Prefect API
started, every step reused). Each figure is the median of ``--runs`` fresh processes; the last line is their ratio.

    .venv/bin/python bench/rerun.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = (
    "# Octopuses\n\nOctopuses have three hearts and blue blood.\n\n"
    "Each of their eight arms can taste what it touches.\n\n"
    "They change colour in a fraction of a second to hide from sharks.\n"
)
ARGS = ["video", "octopuses", "--resolution", "480", "--json"]
# The command's flow path alone: what every rerun did before the store answered first.
FLOW_ONLY = """
import sys
from rich.console import Console
from contentmill.commands.video import _Display
from contentmill.settings import get_settings
from contentmill.video.request import VideoRequest
settings = get_settings()
request = VideoRequest.checked(topic="octopuses", resolution=480, own_script=open(sys.argv[1]).read())
result = _Display(Console(quiet=True)).run(settings, request)
assert all(report.cached for report in result.steps.values()), result.steps
"""


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the process, which a busy machine inflates less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-400:]}")
    return took, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contentmill-bench-rerun-") as scratch:
        folder = Path(scratch)
        script = folder / "script.txt"
        script.write_text(SCRIPT, encoding="utf-8")
        env = {**os.environ, "CONTENTMILL_DATA_DIR": str(folder / "data"), "CONTENTMILL_TEXT_MODEL":
               "local:gemma-3-270m", "CONTENTMILL_SPEECH_MODEL": "local:espeak-ng",
               "PREFECT_HOME": str(folder / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        cli = [str(Path(sys.executable).with_name("contentmill"))]  # the executable, as a person runs it
        first, _ = _timed([*cli, *ARGS, "--script", str(script)], env, folder)
        print(json.dumps({"bench": "rerun", "case": "first run", "seconds": round(first, 2)}))
        times: dict[str, list[tuple[float, float]]] = {"stored": [], "flow": []}
        for _ in range(options.runs):
            times["stored"].append(_timed([*cli, *ARGS, "--script", str(script)], env, folder))
            times["flow"].append(_timed([sys.executable, "-c", FLOW_ONLY, str(script)], env, folder))
        for case, values in times.items():
            walls, cpus = [wall for wall, _ in values], [cpu for _, cpu in values]
            print(json.dumps({"bench": "rerun", "case": case, "median_s": round(statistics.median(walls), 2),
                              "cpu_s": round(statistics.median(cpus), 2), "runs": [round(w, 2) for w in walls]}))
        ratio = statistics.median(w for w, _ in times["flow"]) / statistics.median(w for w, _ in times["stored"])
        print(json.dumps({"bench": "rerun", "case": "flow over stored", "ratio": round(ratio, 1)}))


if __name__ == "__main__":
    main()
