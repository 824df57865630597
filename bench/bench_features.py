"""Bench: feature extraction throughput and peak memory per feature set, with a projection to the
full Hume-Vidmimic2 (≈17,000 clips, 33 h of video).

    python bench/bench_features.py [--n 40] [--big 8] [--out bench/results/features.json]

Runs the pipeline up to the features on a fresh synthetic set, then each feature set's features
stage in its own process (the stage as `dvc repro` runs it), timing it and reading the
process's peak RSS. ``--big N`` also times real-size encoders (wav2vec2-base and ViT-base
architectures, random weights built here: the same compute as the pretrained ones) on N clips.
Device: whatever ``features.device: auto`` picks (CUDA when present). Results also go to
``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from mimicflow.config import Params
from mimicflow.data.synth.generator import generate_dataset
from mimicflow.models.catalogue import catalogue, prepare
from mimicflow.stages import validate
from mimicflow.stages.asr import run_asr
from mimicflow.stages.faces import run_faces

HUME_CLIPS, HUME_SECONDS = 17_000, 33 * 3600
TARGET_H100_MINUTES = 30


def run_stage(params_file: Path, name: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of `mimicflow stage features SET` in a child."""
    command = [
        str(Path(sys.executable).parent / "mimicflow"),
        "stage",
        "features",
        name,
        "--params",
        str(params_file),
    ]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"features {name} failed: {child.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 2**20


def big_models(folder: Path) -> dict[str, Path]:
    """wav2vec2-base and ViT-base architectures with random weights, saved like hub models."""
    from transformers import (
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    audio, image = folder / "wav2vec2-base-arch", folder / "vit-base-arch"
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(audio)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(audio)
    ViTModel(ViTConfig()).save_pretrained(image)
    ViTImageProcessor().save_pretrained(image)
    return {"audio": audio, "visual": image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument(
        "--big", type=int, default=8, help="clips for the real-size encoders (0: skip)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "features.json",
        help="where the rows go as JSON",
    )
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = {
            "data": {"root": str(tmp / "demo")},
            "validate": {"out": str(tmp / "validated")},
            "faces": {"out": str(tmp / "faces")},
            "asr": {"out": str(tmp / "asr"), "audio_out": str(tmp / "audio")},
            "features": {"out": str(tmp / "features")},
            "compute": {"workers": 2},
        }
        params = Params.model_validate(raw)
        prepare(list(params.models.prepare), params.models.dir, catalogue())
        raw["models"] = {"dir": str(params.models.dir.resolve())}
        params = Params.model_validate(raw)
        generate_dataset(params.data.root, args.n, seed=5, workers=2, progress=False)
        validate.run(params, progress=False)
        run_faces(params, progress=False)
        run_asr(params, progress=False)  # also caches the decoded audio
        manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
        video_s = float(manifest["duration_s"].sum())

        params_file = tmp / "params.yaml"
        params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
        one_file = tmp / "params-one.yaml"  # the same stage on one clip: its start-up cost
        one = params.model_dump(mode="json", by_alias=True)
        one["validate"]["out"], one["features"]["out"] = str(tmp / "one"), str(tmp / "one-features")
        (tmp / "one").mkdir()
        manifest.head(1).to_parquet(tmp / "one" / "manifest.parquet", index=False)
        one_file.write_text(yaml.safe_dump(one))
        first_s = float(manifest["duration_s"].iloc[0])
        for name in ("audio", "visual", "text"):
            startup, _ = run_stage(one_file, name)
            wall, peak = run_stage(params_file, name)
            # the steady rate excludes start-up; when start-up is most of the run (text: 40
            # transcripts encode in well under a second) fall back to the whole-run rate,
            # which makes the projection an upper bound
            work = wall - startup
            steady = (video_s - first_s) / work if work > 0.25 * wall else video_s / wall
            model = params.features.sets[name].model
            rows.append((name, model, len(manifest), video_s, wall, peak, startup, steady))

        if args.big:
            subset = manifest.head(args.big)
            subset.to_parquet(params.validate_.out / "manifest.parquet", index=False)
            sub_s = float(subset["duration_s"].sum())
            for name, path in big_models(tmp / "big").items():
                sets = params.model_dump(mode="json")["features"]["sets"]
                sets[name] = {"modality": name, "model": str(path)}  # the others as they are
                raw["features"] = {"out": str(tmp / "big-features"), "sets": sets}
                params_file.write_text(yaml.safe_dump(raw))
                wall, peak = run_stage(params_file, name)
                rows.append((name, path.name, len(subset), sub_s, wall, peak, 0.0, sub_s / wall))

    results = []
    for name, model, clips, seconds, wall, peak, startup, steady in rows:
        results.append(
            {
                "feature_set": name,
                "model": model,
                "device": device,
                "clips": clips,
                "video_s": round(seconds, 1),
                "wall_s": round(wall, 1),
                "startup_s": round(startup, 1),
                "clips_per_s": round(clips / wall, 2),
                "video_s_per_wall_s": round(steady, 1),
                "peak_rss_gib": round(peak, 2),
                "hume_projection_min": round((startup + HUME_SECONDS / steady) / 60, 1),
            }
        )
    table = Table(
        title=f"mimicflow features bench ({device}; projection: {HUME_CLIPS} clips, 33 h; "
        "video_s_per_wall_s is the steady rate, start-up excluded)"
    )
    for column in results[0]:
        table.add_column(column, justify="right")
    for row in results:
        table.add_row(*(str(v) for v in row.values()))
    console = Console(width=170)
    console.print(table)
    default = sum(r["hume_projection_min"] for r in results[:3])
    console.print(
        f"embedded defaults, the three sets, full dataset on this {device}: {default:.0f} min"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
