"""End-to-end fine-tuning speed (the ``adapt`` stage's ``finetune`` method): one training step
(forward and backward) of Whisper tiny.en's upper blocks with Augsburg's head, over a batch of
synthetic clips with the demo's lengths, the head over every frame against over segment means
(``segments``), side by side in one process.

    python bench/bench_adapt.py [--batch 16] [--train-layers 2] [--segments 150] [--repeats 3]
                                [--device cpu|cuda]

Needs the embedded models (``mimicflow models prepare``). Prints the median seconds per step and
the ratio; writes bench/results/adapt.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mimicflow.config import FinetuneParams
from mimicflow.perception.asr import whisper_checkpoint
from mimicflow.training.finetune import FinetuneModel, load_encoder


def step_seconds(
    spec: FinetuneParams, audios: list[np.ndarray], device: str, repeats: int
) -> float:
    model = FinetuneModel(load_encoder(spec, device), spec).to(device).train()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(audios)["unclipped"].pow(2).mean().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-layers", type=int, default=2)
    parser.add_argument("--segments", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    seconds = rng.uniform(3.0, 12.0, args.batch)  # the demo's clips: 1.7–19.6 s, median 5.9
    audios = [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in seconds]
    model = str(whisper_checkpoint(Path("models/pretrained/whisper-tiny.en")))
    rows = {}
    for segments in (None, args.segments):
        spec = FinetuneParams(model=model, train_layers=args.train_layers, segments=segments)
        rows["every frame" if segments is None else f"{segments} segments"] = step_seconds(
            spec, audios, args.device, args.repeats
        )
    (every, pooled) = rows.values()
    result = {
        "batch": args.batch,
        "device": args.device,
        "seconds_per_step": rows,
        "ratio": every / pooled,
    }
    print(json.dumps(result, indent=2))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/adapt.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
