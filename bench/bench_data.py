"""Bench: demo-data generation time and validation throughput, printed as a table.

    python bench/bench_data.py [--n 320] [--workers 2]

Generates the default demo set (target: ≤ 180 s on 2 cores for ≥ 300 clips), then validates
it (probe + full decode + GX suites) and reports clips/s and video-seconds per wall-second.
Results also go to bench/results/data.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mimicflow.config import Params
from mimicflow.data.layout import load_dataset
from mimicflow.data.synth.generator import generate_dataset
from mimicflow.data.validation import validate_dataset
from mimicflow.stages import validate

TARGET_SYNTH_S = 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=Params().demo.n_clips)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    params = Params.model_validate({"compute": {"workers": args.workers}})

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        start = time.perf_counter()
        generate_dataset(root, args.n, seed=7, workers=args.workers)
        synth_s = time.perf_counter() - start

        start = time.perf_counter()
        manifest = validate_dataset(load_dataset(root), params.validate_, args.workers).manifest
        probe_s = time.perf_counter() - start
        start = time.perf_counter()
        validate.run(params, root, Path(tmp) / "validated", progress=False)
        stage_s = time.perf_counter() - start

    video_s = float(manifest["duration_s"].sum())
    results = {
        "clips": args.n,
        "workers": args.workers,
        "synth_s": round(synth_s, 1),
        "synth_target_s": TARGET_SYNTH_S,
        "synth_clips_per_s": round(args.n / synth_s, 2),
        "video_hours": round(video_s / 3600, 3),
        "validate_probe_decode_s": round(probe_s, 1),
        "validate_clips_per_s": round(args.n / probe_s, 1),
        "validate_video_s_per_wall_s": round(video_s / probe_s, 1),
        "validate_stage_s": round(stage_s, 1),
    }
    table = Table(title=f"mimicflow data bench ({args.n} clips, {args.workers} workers)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, str(value))
    Console().print(table)
    verdict = "meets" if synth_s <= TARGET_SYNTH_S else "MISSES"
    Console().print(f"synth {verdict} the {TARGET_SYNTH_S:.0f} s target")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "data.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
