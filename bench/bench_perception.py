"""Bench: the perception stages' throughput, and two side-by-side ratios, printed as a table.

    python bench/bench_perception.py [--n 40] [--workers 2] [--side-by-side 8]

On a fresh synthetic set of ``--n`` clips (validated first), measures in one run:
- faces and asr stages (embedded models, ``--workers`` processes): video-seconds per wall-second;
  target: faces + asr together >= 4x real time on 2 cores;
- faster-whisper vs openai-whisper on the same ``--side-by-side`` clips, one process (ratio);
- time-based sampling (6 fps) vs the naive way (decode and detect every frame) on the same clips,
  one process (ratio).
Results also go to bench/results/perception.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import pandas as pd
from rich.console import Console
from rich.table import Table

from mimicflow.config import Params
from mimicflow.data.synth.generator import generate_dataset
from mimicflow.models.catalogue import catalogue, prepare, resolve
from mimicflow.perception.asr import load_asr
from mimicflow.perception.audio import decode_audio
from mimicflow.perception.faces import detect_faces, load_face_detector, process_clip
from mimicflow.stages import validate
from mimicflow.stages.asr import run_asr
from mimicflow.stages.faces import run_faces

TARGET_REALTIME = 4.0


def _timed(func, *args):
    start = time.perf_counter()
    value = func(*args)
    return time.perf_counter() - start, value


def naive_faces(path: Path, detector) -> int:
    """Decode every frame and detect on every frame (what time-based sampling avoids)."""
    frames = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            detect_faces(detector, frame.to_ndarray(format="bgr24"))
            frames += 1
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--side-by-side", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = Params.model_validate(
            {
                "data": {"root": str(tmp / "demo")},
                "validate": {"out": str(tmp / "validated")},
                "faces": {"out": str(tmp / "faces")},
                "asr": {"out": str(tmp / "asr")},
                "compute": {"workers": args.workers},
            }
        )
        entries = catalogue(params.models.entries)
        prepare(list(params.models.prepare), params.models.dir, entries)
        generate_dataset(params.data.root, args.n, seed=3, workers=args.workers, progress=False)
        validate.run(params, progress=False)
        manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
        video_s = float(manifest["duration_s"].sum())

        faces_s, _ = _timed(run_faces, params, False)
        asr_s, _ = _timed(run_asr, params, False)

        clips = [params.data.root / p for p in manifest["video_path"].head(args.side_by_side)]
        clip_s = float(manifest["duration_s"].head(args.side_by_side).sum())
        whisper_dir = resolve(params.asr.model, params.models.dir, entries)
        audio = [decode_audio(c) for c in clips]
        times = {}
        for backend in ("faster-whisper", "openai-whisper"):
            model = load_asr(backend, whisper_dir, threads=1)
            model.transcribe(audio[0])  # warm-up (and the one-time conversion for openai-whisper)
            times[backend], _ = _timed(lambda m=model: [m.transcribe(a) for a in audio])
        models = {
            "detector": params.models.dir / "blazeface",
            "mesh": params.models.dir / "facemesh",
        }
        detector = load_face_detector("blazeface", models, 0.5)
        sampled_s, _ = _timed(lambda: [process_clip(c, detector, 6.0, 224) for c in clips])
        naive_s, naive_frames = _timed(lambda: sum(naive_faces(c, detector) for c in clips))

    results = {
        "clips": len(manifest),
        "video_s": round(video_s, 1),
        "workers": args.workers,
        "faces_stage_s": round(faces_s, 1),
        "faces_x_realtime": round(video_s / faces_s, 1),
        "asr_stage_s": round(asr_s, 1),
        "asr_x_realtime": round(video_s / asr_s, 1),
        "faces_plus_asr_x_realtime": round(video_s / (faces_s + asr_s), 1),
        "target_x_realtime": TARGET_REALTIME,
        "side_by_side_clips": len(clips),
        "side_by_side_video_s": round(clip_s, 1),
        "faster_whisper_s": round(times["faster-whisper"], 2),
        "openai_whisper_s": round(times["openai-whisper"], 2),
        "openai_over_faster_ratio": round(times["openai-whisper"] / times["faster-whisper"], 2),
        "faces_time_sampled_s": round(sampled_s, 2),
        "faces_every_frame_s": round(naive_s, 2),
        "every_frame_over_sampled_ratio": round(naive_s / sampled_s, 2),
        "frames_decoded_naive": naive_frames,
    }
    table = Table(title=f"mimicflow perception bench ({len(manifest)} clips)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, str(value))
    console = Console()
    console.print(table)
    verdict = "meets" if results["faces_plus_asr_x_realtime"] >= TARGET_REALTIME else "MISSES"
    console.print(f"faces + asr {verdict} the {TARGET_REALTIME:.0f}x real-time target")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "perception.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
