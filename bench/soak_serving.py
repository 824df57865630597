"""Soak: mixed good and hostile requests against the served bento, printed as a table.

    python bench/soak_serving.py [--bento mimicflow-emi:latest] [--requests 100] [--concurrency 4]

Serves the bento with ``bentoml serve`` on a free 127.0.0.1 port and sends, in a shuffled mix:
good clips of 2, 5 and 10 s to ``/predict``; hostile uploads (headers that understate the
duration, in MP4 and Matroska, a short video over a long audio track, frames over the pixel
limit, random bytes, an empty file, text); ``/predict_features`` batches at and over the clip
limit, about nothing, and sent as text/plain. Each answer must be right: a 200 equal to the same
request sent alone before the soak, or the expected 4xx with its reason. Targets: 0 5xx, 0 wrong
answers, each worker's RSS after the soak within 20 % of its RSS after the warm-up (every kind of
request sent once). Limits and feature widths come from the bento itself. Results also go to
bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import numpy as np
import psutil
from bench_serving import serve
from rich.console import Console
from rich.table import Table

from mimicflow.data.faults import lying_clip
from mimicflow.data.synth import face_rig, speech
from mimicflow.media import write_video

RSS_TOLERANCE = 0.2
MODEL = "mimicflow-emi"  # the model-store entry the package stage writes (the bento holds it)
console = Console()


def talking_clip(path: Path, seconds: float) -> Path:
    """A 320x240, 25 fps clip of a face smiling more and more, with speech."""
    voice = speech.synthesize("Oh that is wonderful, I am so happy for you.", "en-us", 50, 150, 120)
    samples = int(seconds * 16000)
    voice = np.pad(voice, (0, max(0, samples - len(voice))))[:samples]
    face = face_rig.FaceAnimator(face_rig.identity_face(1), (320, 240))
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    n = int(seconds * 25)
    frames = (
        face.render(neutral | {"smile": 0.8 * i / n}, 0.0, 0.0, np.zeros(2)) for i in range(n)
    )
    write_video(path, frames, 25, (320, 240), audio=voice)
    return path


def uploads(work: Path, limits: dict) -> dict[str, tuple[Path, int, str]]:
    """Name -> (file, expected status, words the answer must hold; '' for a 200)."""
    over = limits["max_duration_s"] + 30
    side = int(np.sqrt(limits["max_frame_pixels"])) + 16
    wide = work / "wide.mp4"
    write_video(wide, [np.full((side, side, 3), 90, np.uint8)] * 3, 10, (side, side))
    (work / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(200_000))
    (work / "empty.mp4").write_bytes(b"")
    (work / "notes.txt").write_text("not a clip\n")
    too_long = "clip too long"
    return {
        "good 2 s": (talking_clip(work / "good2.mp4", 2), 200, ""),
        "good 5 s": (talking_clip(work / "good5.mp4", 5), 200, ""),
        "good 10 s": (talking_clip(work / "good10.mp4", 10), 200, ""),
        "lying mp4": (lying_clip(work / "lying.mp4", over, 5.0), 422, too_long),
        "lying mkv": (lying_clip(work / "lying.mkv", over, 5.0), 422, too_long),
        "long audio": (lying_clip(work / "audio.mp4", 4.5, 4.5, audio_s=over), 422, too_long),
        "huge frames": (wide, 422, "frames too large"),
        "random bytes": (work / "garbage.mp4", 415, "not a readable media file"),
        "empty": (work / "empty.mp4", 415, "empty file"),
        "text": (work / "notes.txt", 415, "not a readable media file"),
    }


def feature_bodies(dims: dict[str, int]) -> dict[str, tuple[bytes, str, int, str]]:
    """Name -> (body, content type, expected status, words)."""
    rng = np.random.default_rng(1)

    def clip(present: bool = True) -> dict:
        return {
            "features": {
                m: {"values": rng.normal(0, 1, (8, d)).round(4).tolist(), "mask": [present] * 8}
                for m, d in dims.items()
            }
        }

    def body(clips: list) -> bytes:
        return json.dumps({"clips": clips}).encode()

    kind = "application/json"
    return {
        "features x64": (body([clip() for _ in range(64)]), kind, 200, ""),
        "features x65": (body([clip() for _ in range(65)]), kind, 413, "limit 64"),
        "features masked": (body([clip(False)]), kind, 422, "nothing to predict"),
        "features as text": (body([clip()]), "text/plain", 415, "application/json"),
    }


class Soak:
    def __init__(self, url: str, headers: dict, files: dict, bodies: dict):
        self.url, self.headers, self.files, self.bodies = url, headers, files, bodies
        self.reference: dict[str, object] = {}

    def send(self, name: str) -> httpx.Response:
        if name in self.files:
            path = self.files[name][0]
            with open(path, "rb") as handle:
                return httpx.post(
                    f"{self.url}/predict",
                    files={"file": (path.name, handle)},
                    headers=self.headers,
                    timeout=300,
                )
        body, kind, _, _ = self.bodies[name]
        return httpx.post(
            f"{self.url}/predict_features",
            content=body,
            headers=self.headers | {"Content-Type": kind},
            timeout=300,
        )

    def expected(self, name: str) -> tuple[int, str]:
        entry = self.files.get(name) or self.bodies[name]
        return entry[-2], entry[-1]

    def check(self, name: str) -> tuple[str, int, bool, float]:
        """(name, status, right, seconds) of one request."""
        start = time.perf_counter()
        response = self.send(name)
        seconds = time.perf_counter() - start
        status, words = self.expected(name)
        if response.status_code != status:
            return name, response.status_code, False, seconds
        if status == 200:
            answer = _intensities(response.json())
            if name not in self.reference:
                self.reference[name] = answer
            right = np.allclose(answer, self.reference[name], atol=1e-6)
        else:
            right = words in response.json().get("error", "")
        return name, response.status_code, bool(right), seconds


def _intensities(answer) -> np.ndarray:
    answers = answer if isinstance(answer, list) else [answer]
    return np.array([list(a["intensities"].values()) for a in answers])


def worker_rss(log: Path) -> dict[int, int]:
    pids = {int(p) for p in re.findall(r"worker (\d+) ready", log.read_text())}
    return {p: psutil.Process(p).memory_info().rss for p in pids if psutil.pid_exists(p)}


def bento_facts() -> tuple[dict, dict[str, int]]:
    """The packaged serving limits and the ensemble's feature widths."""
    folder = Path(bentoml.models.get(f"{MODEL}:latest").path)
    limits = json.loads((folder / "serving.json").read_text())
    dims = json.loads((folder / "ensemble" / "ensemble.json").read_text())["dims"]
    return limits, dims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bento", default="mimicflow-emi:latest")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    token = os.environ.get("MIMICFLOW_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits, dims = bento_facts()
    with tempfile.TemporaryDirectory(prefix="soak-serving-") as work:
        files = uploads(Path(work), limits)
        soak = Soak("", headers, files, feature_bodies(dims))
        names = [*files, *soak.bodies]
        mix = random.Random(0).choices(names, k=args.requests)
        log = Path(work) / "serve.log"
        process, soak.url = serve(args.bento, log)
        try:
            warm_up = [soak.check(name) for name in names]  # each kind alone: the reference
            warm = worker_rss(log)
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(soak.check, mix))
            wall = time.perf_counter() - start
            after = worker_rss(log)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
    report(args, warm_up, results, wall, warm, after)


def report(args, warm_up: list, results: list, wall: float, warm: dict, after: dict) -> None:
    table = Table(
        title=f"soak: {args.requests} mixed requests at concurrency {args.concurrency}, "
        f"{args.bento}, {os.cpu_count()} CPU cores"
    )
    for column in ("request", "sent", "status", "right", "p50 s", "max s"):
        table.add_column(column, justify="left" if column == "request" else "right")
    rows = []
    for name in dict.fromkeys(n for n, *_ in warm_up):
        mine = [r for r in results if r[0] == name]
        if not mine:
            continue
        seconds = [r[3] for r in mine]
        row = {
            "request": name,
            "sent": len(mine),
            "status": ",".join(sorted({str(r[1]) for r in mine})),
            "right": sum(r[2] for r in mine),
            "p50_s": round(float(np.median(seconds)), 2),
            "max_s": round(max(seconds), 2),
        }
        rows.append(row)
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    server_errors = sum(r[1] >= 500 for r in results)
    wrong = sum(not r[2] for r in results) + sum(not r[2] for r in warm_up)
    growth = {p: after[p] / warm[p] - 1 for p in warm if p in after}
    rss = {p: (warm[p] // 2**20, after.get(p, 0) // 2**20) for p in warm}
    console.print(
        f"{len(results)} requests in {wall:.0f} s: {server_errors} 5xx, {wrong} wrong answers; "
        f"worker RSS after warm-up -> after the soak (MiB): {rss}, largest growth "
        f"{max(growth.values(), default=0):+.1%} (target within {RSS_TOLERANCE:.0%})"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    summary = {
        "bento": args.bento,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "cpu_count": os.cpu_count(),
        "wall_s": round(wall, 1),
        "server_errors": server_errors,
        "wrong_answers": wrong,
        "worker_rss_mib": {str(p): list(v) for p, v in rss.items()},
        "rows": rows,
    }
    (out / "soak.json").write_text(json.dumps(summary, indent=2))
    ok = server_errors == 0 and wrong == 0 and all(g <= RSS_TOLERANCE for g in growth.values())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
