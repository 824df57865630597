"""Bench: small faces in large frames, and what finding them costs, printed as tables.

    python bench/bench_small_faces.py [--n 24] [--workers 1]

1. Detection rate: one demo clip (a synthetic talking face, 320x240) padded into a 1280x720
   frame at several scales (0.2: 256x192 in the frame), through the faces chain (6 fps
   sampling, ``process_clip``) with the short-range model alone, short range with the
   full-range fallback (``faces.far_fallback``, the default) and full range alone.
2. Cost: the faces stage over ``--n`` fresh demo clips with ``far_fallback`` off, then on (fresh
   outputs each): wall time and the share of sampled frames with a face.
Results also go to bench/results/small_faces.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from mimicflow.config import Params
from mimicflow.data.synth import face_rig
from mimicflow.data.synth.generator import generate_dataset
from mimicflow.media import write_video
from mimicflow.models.catalogue import catalogue, prepare
from mimicflow.perception.faces import load_face_detector, process_clip
from mimicflow.stages import validate
from mimicflow.stages.faces import run_faces

SCALES = (0.2, 0.15, 0.12, 0.1, 0.08)
MODES = {
    "short range": (False, False),
    "short + fallback": (False, True),
    "full range": (True, False),
}
console = Console()


def padded_clip(path: Path, scale: float, seconds: float = 4.0) -> float:
    """A talking face padded into 1280x720 at ``scale`` of the frame's width; returns the face's
    height in pixels (of the padded frame)."""
    face = face_rig.FaceAnimator(face_rig.identity_face(2), (320, 240))
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    width = int(1280 * scale)
    height = width * 3 // 4
    frames = []
    for i in range(int(seconds * 25)):
        image = face.render(neutral | {"smile": 0.6 * i / 100}, 0.0, 0.0, np.zeros(2))
        canvas = np.full((720, 1280, 3), 235, np.uint8)
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        canvas[300 : 300 + height, 800 : 800 + width] = small
        frames.append(canvas)
    write_video(path, frames, 25, (1280, 720))
    return 0.75 * 240 * scale * 1280 / 320  # the rig's face spans about 3/4 of the frame height


def detection_rates(tmp: Path, models: dict[str, Path]) -> list[dict]:
    rows = []
    detectors = {
        mode: load_face_detector("blazeface", models, 0.5, full, fallback)
        for mode, (full, fallback) in MODES.items()
    }
    for scale in SCALES:
        clip = tmp / f"screencast_{scale}.mp4"
        face_px = padded_clip(clip, scale)
        row = {"scale": scale, "face_px": round(face_px)}
        for mode, detector in detectors.items():
            start = time.perf_counter()
            track = process_clip(clip, detector, 6.0, 224)
            row[mode] = f"{int(track.has_face.sum())}/{len(track.times)}"
            row[f"{mode} s"] = round(time.perf_counter() - start, 2)
        rows.append(row)
    return rows


def stage_cost(tmp: Path, n: int, workers: int) -> list[dict]:
    root = tmp / "demo"
    generate_dataset(root, n, seed=3, workers=workers, progress=False)
    rows = []
    for fallback in (False, True):
        params = Params.model_validate(
            {
                "data": {"root": str(root)},
                "validate": {"out": str(tmp / "validated")},
                "faces": {"out": str(tmp / f"faces_{fallback}"), "far_fallback": fallback},
                "compute": {"workers": workers},
            }
        )
        if not fallback:
            validate.run(params, progress=False)
        start = time.perf_counter()
        run_faces(params, False)
        seconds = time.perf_counter() - start
        index = pd.read_parquet(Path(params.faces.out) / "index.parquet")
        rows.append(
            {
                "far_fallback": fallback,
                "faces_stage_s": round(seconds, 1),
                "frames_with_face": int(index["frames_with_face"].sum()),
                "frames": int(index["frames"].sum()),
            }
        )
    return rows


def _print(title: str, rows: list[dict]) -> None:
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    params = Params()
    prepare(["blazeface", "facemesh"], params.models.dir, catalogue(params.models.entries))
    models = {"detector": params.models.dir / "blazeface", "mesh": params.models.dir / "facemesh"}
    with tempfile.TemporaryDirectory(prefix="bench-small-faces-") as tmp:
        rates = detection_rates(Path(tmp), models)
        cost = stage_cost(Path(tmp), args.n, args.workers)
    _print("a demo face padded into 1280x720: sampled frames (6 fps) with a face", rates)
    _print(f"faces stage on {args.n} demo clips, {args.workers} worker(s)", cost)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "small_faces.json").write_text(json.dumps({"rates": rates, "cost": cost}, indent=2))


if __name__ == "__main__":
    main()
