"""Bench: the served endpoint under a bounded loopback load, printed as a table.

    python bench/bench_serving.py [--bento mimicflow-emi:latest] [--requests 20,60,200]

Serves the bento (built by ``dvc repro``, the ``package`` stage) with ``bentoml serve`` on a free
127.0.0.1 port, then POSTs one 7 s talking-face clip to ``/predict`` at concurrency 1, 4 and 8
(a fixed number of requests each, after two warm-up requests): p50/p95 latency, throughput and
errors. Targets on 2 CPU cores: p50 <= 1.5 s at concurrency 1; 0 errors over 200 requests at
concurrency 8. Results also go to bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mimicflow.data.synth import face_rig, speech
from mimicflow.media import write_video

CLIP_S = 7.0
TARGET_P50_S = 1.5
CONCURRENCY = (1, 4, 8)
console = Console()


def make_clip(path: Path) -> None:
    """7 s at 25 fps, 320x240: a face smiling more and more, and speech."""
    voice = speech.synthesize(
        "Oh that is wonderful, I am really so happy for you. What a great day, I love it.",
        "en-us",
        50,
        150,
        120,
    )
    samples = int(CLIP_S * 16000)
    voice = np.pad(voice, (0, max(0, samples - len(voice))))[:samples]
    face = face_rig.FaceAnimator(face_rig.identity_face(1), (320, 240))
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    n = int(CLIP_S * 25)
    frames = (
        face.render(neutral | {"smile": 0.8 * i / n}, 0.0, 0.0, np.zeros(2)) for i in range(n)
    )
    write_video(path, frames, 25, (320, 240), audio=voice)


def serve(bento: str, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                bento,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bentoml serve {bento} exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(1)
    os.killpg(process.pid, signal.SIGTERM)
    sys.exit("the server was not ready in 300 s")


def load(url: str, clip: bytes, concurrency: int, requests: int, headers: dict, bar) -> dict:
    def one(_: int) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            response = httpx.post(
                f"{url}/predict", files={"file": ("clip.mp4", clip)}, headers=headers, timeout=120
            )
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        bar.advance(task)
        return time.perf_counter() - start, ok

    task = bar.add_task(f"concurrency {concurrency}", total=requests)
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    latencies = np.array([t for t, ok in results if ok])
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": sum(not ok for _, ok in results),
        "p50_s": round(float(np.percentile(latencies, 50)), 3) if len(latencies) else None,
        "p95_s": round(float(np.percentile(latencies, 95)), 3) if len(latencies) else None,
        "throughput_rps": round(requests / wall, 2),
        "video_s_per_s": round(requests * CLIP_S / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bento", default="mimicflow-emi:latest")
    parser.add_argument("--requests", default="20,60,200", help="per concurrency 1,4,8")
    args = parser.parse_args()
    counts = [int(n) for n in args.requests.split(",")]
    token = os.environ.get("MIMICFLOW_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as work:
        clip_path = Path(work) / "clip.mp4"
        make_clip(clip_path)
        clip = clip_path.read_bytes()
        process, url = serve(args.bento, Path(work) / "serve.log")
        try:
            for _ in range(2):  # warm-up
                response = httpx.post(
                    f"{url}/predict",
                    files={"file": ("clip.mp4", clip)},
                    headers=headers,
                    timeout=120,
                )
                response.raise_for_status()
            with Progress(console=console) as bar:
                rows = [load(url, clip, c, n, headers, bar) for c, n in zip(CONCURRENCY, counts)]
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
    table = Table(
        title=f"/predict, {CLIP_S:g} s clip ({len(clip) / 1024:.0f} KiB), {args.bento}, "
        f"{os.cpu_count()} CPU cores"
    )
    for column in ("concurrency", "requests", "errors", "p50 s", "p95 s", "req/s", "video-s/s"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    single = rows[0]["p50_s"]
    console.print(
        f"p50 at concurrency 1: {single} s (target <= {TARGET_P50_S} s); errors at "
        f"concurrency 8: {rows[-1]['errors']} of {rows[-1]['requests']} (target 0)"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "serving.json").write_text(
        json.dumps(
            {"bento": args.bento, "clip_s": CLIP_S, "cpu_count": os.cpu_count(), "rows": rows},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
