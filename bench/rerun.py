"""Wall time of ``contentmill video`` for a video that is already made, from the command line.

The video (the creator's own three-scene script, espeak-ng, 480p) is made once; then, in the same run and
interleaved, the command is timed answering from the store before any Prefect API starts (``stored``), and the
same request through the flow run as it went before the store answered (``flow``: a temporary Prefect API
started, every step reused).

A topic that means the same as an earlier one likewise: a video about "How do octopuses breathe?" is written by a
chat model (the fake OpenAI-compatible upstream, so nothing is paid), then "how octopuses breathe" is timed
answered from the store through the knowledge graph (``similar stored``) and through the flow run as before
(``similar flow``). Before each of these runs the record a previous one left under the asked request is removed,
so every run finds the earlier video through the graph, not through its own record.

Each figure is the median of ``--runs`` fresh processes; a ratio line follows each pair.

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

from contentmill.testing.harness import start_upstream

SCRIPT = (
    "# Octopuses\n\nOctopuses have three hearts and blue blood.\n\n"
    "Each of their eight arms can taste what it touches.\n\n"
    "They change colour in a fraction of a second to hide from sharks.\n"
)
ARGS = ["video", "octopuses", "--resolution", "480", "--json"]
EARLIER, SIMILAR = "How do octopuses breathe?", "how octopuses breathe"
CHAT = ["--resolution", "480", "--seconds", "15", "--json"]
# The command's flow path alone: what every rerun did before the store answered first.
FLOW_ONLY = """
import sys
from rich.console import Console
from contentmill.commands.video import _Display
from contentmill.settings import get_settings
from contentmill.video.request import VideoRequest
settings = get_settings()
fields = {"own_script": open(sys.argv[2]).read()} if len(sys.argv) > 2 else {"seconds": 15}
request = VideoRequest.checked(topic=sys.argv[1], resolution=480, **fields)
result = _Display(Console(quiet=True)).run(settings, request)
assert all(report.cached for report in result.steps.values()), result.steps
"""


def _timed(command: list[str], env: dict[str, str], cwd: Path, similar: bool = False) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the process, which a busy machine inflates less.
    ``similar``: the command's answer must be the earlier topic's video."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-400:]}")
    if similar and not (json.loads(done.stdout).get("similar_to") or {}).get("asked") == SIMILAR:
        raise SystemExit(f"{' '.join(command)} did not reuse the earlier video: {done.stdout[:400]}")
    return took, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _forget(records: Path, kept: set[Path]) -> None:
    """Remove the request records written since ``kept`` was taken: the next run finds its video anew."""
    for path in set(records.glob("*.json")) - kept:
        path.unlink()


def _report(times: dict[str, list[tuple[float, float]]], slow: str, fast: str) -> None:
    for case in (fast, slow):
        walls, cpus = [wall for wall, _ in times[case]], [cpu for _, cpu in times[case]]
        print(json.dumps({"bench": "rerun", "case": case, "median_s": round(statistics.median(walls), 2),
                          "cpu_s": round(statistics.median(cpus), 2), "runs": [round(w, 2) for w in walls]}))
    ratio = statistics.median(w for w, _ in times[slow]) / statistics.median(w for w, _ in times[fast])
    print(json.dumps({"bench": "rerun", "case": f"{slow} over {fast}", "ratio": round(ratio, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contentmill-bench-rerun-") as scratch, \
            start_upstream("--latency-ms", "0") as upstream:
        folder = Path(scratch)
        script = folder / "script.txt"
        script.write_text(SCRIPT, encoding="utf-8")
        env = {**os.environ, "CONTENTMILL_DATA_DIR": str(folder / "data"), "CONTENTMILL_TEXT_MODEL":
               "openai:gpt-4o-mini", "OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": "sk-bench",
               "CONTENTMILL_SPEECH_MODEL": "local:espeak-ng", "PREFECT_HOME": str(folder / "prefect"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        cli = [str(Path(sys.executable).with_name("contentmill"))]  # the executable, as a person runs it
        first, _ = _timed([*cli, *ARGS, "--script", str(script)], env, folder)
        print(json.dumps({"bench": "rerun", "case": "first run", "seconds": round(first, 2)}))
        earlier, _ = _timed([*cli, "video", EARLIER, *CHAT], env, folder)
        print(json.dumps({"bench": "rerun", "case": "first run of the earlier topic", "seconds": round(earlier, 2)}))
        records = folder / "data" / "store" / "steps" / "requests"
        kept = set(records.glob("*.json"))
        times: dict[str, list[tuple[float, float]]] = {"stored": [], "flow": [], "similar stored": [],
                                                       "similar flow": []}
        for _ in range(options.runs):
            times["stored"].append(_timed([*cli, *ARGS, "--script", str(script)], env, folder))
            times["flow"].append(_timed([sys.executable, "-c", FLOW_ONLY, "octopuses", str(script)], env, folder))
            times["similar stored"].append(_timed([*cli, "video", SIMILAR, *CHAT], env, folder, similar=True))
            _forget(records, kept)
            times["similar flow"].append(_timed([sys.executable, "-c", FLOW_ONLY, SIMILAR], env, folder))
            _forget(records, kept)
        _report(times, "flow", "stored")
        _report(times, "similar flow", "similar stored")


if __name__ == "__main__":
    main()
