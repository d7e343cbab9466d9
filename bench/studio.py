"""The studio against the library: a video made through ``POST /studio/runs`` against the same video made by
``make_video`` in a process of its own, and the media route's range requests against the server's cheapest answer.

Both makers use the embedded engines ($0: Gemma 3 270M writes, espeak-ng speaks), the same request (10 s, 480p,
landscape) and a fresh data directory each (nothing stored to reuse; the assembled model is linked in), and run
in turns so a disturbance of the shared machine falls on both. The studio's figure is the wall time from the POST
to the run reading ``done`` (polled every 0.2 s), the library's the time around ``make_video``; the ratio of their
medians is the figure. Then, on the studio's last video: 64 KiB range requests (``Range: bytes=a-b``, as a
``<video>`` element seeks) against ``GET /healthz`` on the same connection, p50 of each and their difference.

    .venv/bin/python bench/studio.py [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from contentmill.ledger import LedgerStore
from contentmill.server.keys import KeyStore
from contentmill.testing.harness import Served, start_gateway_server

REQUEST = {"topic": "octopuses", "seconds": 10, "orientation": "landscape", "resolution": 480}
DIRECT = """
import asyncio, json, sys, time
from contentmill.video import VideoRequest, make_video
request = VideoRequest(**json.loads(sys.argv[1]))
started = time.perf_counter()
result = asyncio.run(make_video(request))
print(json.dumps({"seconds": time.perf_counter() - started, "duration_s": result.duration_s}))
"""
RANGE = 64 * 1024
STARTED: list[Served] = []  # the studio servers still running (the last one serves the range requests)


def data_dir(root: Path, models: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "models").symlink_to(models, target_is_directory=True)
    return folder


def environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTMILL_")}
    return {**env, "CONTENTMILL_DATA_DIR": str(folder), "CONTENTMILL_MONITOR_INTERVAL_S": "0"}


def direct(folder: Path) -> float:
    answer = subprocess.run([sys.executable, "-c", DIRECT, json.dumps(REQUEST)], env=environment(folder),
                            capture_output=True, text=True, check=True)
    return float(json.loads(answer.stdout.strip().splitlines()[-1])["seconds"])


def studio(folder: Path) -> tuple[float, str, str, str]:
    """Seconds from the POST to done, the server's root URL, a key, and the folder (the server keeps running)."""
    env = environment(folder)
    store = LedgerStore(f"sqlite:///{folder / 'ledger.sqlite3'}")
    store.migrate()
    key = KeyStore(store).create("bench").secret
    store.close()
    server = start_gateway_server(env)
    auth = {"authorization": f"Bearer {key}", "accept": "application/json"}
    form = {k: str(v) for k, v in REQUEST.items()}
    with httpx.Client(base_url=server.root_url, timeout=30) as client:
        started = time.perf_counter()
        run = client.post("/studio/runs", headers=auth, json=form).json()
        while run["state"] not in ("done", "failed", "interrupted"):
            time.sleep(0.2)
            run = client.get(f"/studio/runs/{run['id']}", headers=auth).json()
        seconds = time.perf_counter() - started
    if run["state"] != "done":
        server.stop()
        raise SystemExit(f"the studio run ended {run['state']}: {run['error']}")
    STARTED.append(server)
    return seconds, server.root_url, key, str(run["media"]["video"])


def ranges(root_url: str, key: str, video: str, count: int = 200) -> dict[str, float]:
    auth = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=root_url, timeout=30) as client:
        size = int(client.head(video, headers=auth).headers["content-length"])
        media, floor = [], []
        for n in range(count):
            start = (n * RANGE) % max(1, size - RANGE)
            began = time.perf_counter()
            answer = client.get(video, headers={**auth, "range": f"bytes={start}-{start + RANGE - 1}"})
            media.append(time.perf_counter() - began)
            assert answer.status_code == 206
            began = time.perf_counter()
            client.get("/healthz")
            floor.append(time.perf_counter() - began)
    p50, base = statistics.median(media) * 1000, statistics.median(floor) * 1000
    return {"range_p50_ms": round(p50, 3), "healthz_p50_ms": round(base, 3), "added_ms": round(p50 - base, 3),
            "video_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    from contentmill.providers.llama_local import model_path

    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        root = Path(tmp)
        models = model_path(root / "gemma").parent
        made: dict[str, list[float]] = {"direct": [], "studio": []}
        last: tuple[str, str, str] | None = None
        try:
            for n in range(args.runs):
                made["direct"].append(direct(data_dir(root, models, f"direct-{n}")))
                seconds, url, key, video = studio(data_dir(root, models, f"studio-{n}"))
                made["studio"].append(seconds)
                last = (url, key, video)
                for name in made:
                    print(json.dumps({"figure": f"{name}_run_s", "run": n, "seconds": round(made[name][-1], 2)}))
                while len(STARTED) > 1:
                    STARTED.pop(0).stop()
            direct_s, studio_s = statistics.median(made["direct"]), statistics.median(made["studio"])
            print(json.dumps({"figure": "studio_over_direct", "direct_s": round(direct_s, 2),
                              "studio_s": round(studio_s, 2), "ratio": round(studio_s / direct_s, 3),
                              "runs": args.runs, "request": REQUEST}))
            assert last is not None
            print(json.dumps({"figure": "media_range_64k", **ranges(*last)}))
        finally:
            for server in STARTED:
                server.stop()


if __name__ == "__main__":
    main()
