"""Training speed and memory: one fold of each system on synthetic feature stores of 1k, 4k and
16k clips with Hume-like lengths (Whisper-tiny-sized audio frames at 50 Hz, face features at
6 Hz, sentence vectors), plus one fold on the demo store when it exists.

    python bench/bench_training.py [--sizes 1000 4000 16000] [--epochs 3] [--systems ...]
                                   [--devices cpu cuda cuda-host]
                                   (default: cpu, and cuda and cuda-host when present)

``cuda`` holds the clips on the GPU and gathers each batch there (``train.batches_on_device``);
``cuda-host`` assembles each batch on the host (4 loader processes, pinned memory), the path for
features larger than the GPU's memory: side by side, they measure what gathering on the GPU gains.

Each run is a fresh process (stores are written beforehand in their own), so its peak RSS is its
own. An epoch counts every pass over the training clips, MimicMetrics' unimodal pre-training
passes included; clips/s is training clips × epochs / seconds (validation passes included in
the seconds). The projection is the whole Hume-Vidmimic2 train+valid set (``FULL_CLIPS``) through
5-fold training (4/5 of the clips per fold) for ``PROJECTED_EPOCHS`` epochs at the measured rate.
Prints a table; writes bench/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DIMS = {"audio": 384, "visual": 18, "text": 384}
FULL_CLIPS = 12_000  # Hume-Vidmimic2 train + valid (the test split is not trained on)
PROJECTED_EPOCHS = 30


def _one_run(args) -> None:
    """Child process: write (or reuse) the store, train one fold, print JSON."""
    import numpy as np

    from mimicflow.config import TrainParams, load_params
    from mimicflow.fusion.systems import SYSTEMS
    from mimicflow.training.data import FeatureDataset
    from mimicflow.training.folds import assign_folds
    from mimicflow.training.trainer import FoldTrainer

    if args.store == "demo":
        import pandas as pd

        params = load_params()
        folder = params.features.out
        manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
    else:
        from mimicflow.features.synthetic import write_synthetic_store

        folder = Path(args.store)
        manifest_file = folder / "manifest.parquet"
        if not manifest_file.exists():
            write_synthetic_store(folder, args.clips, DIMS, seed=0).to_parquet(manifest_file)
        import pandas as pd

        manifest = pd.read_parquet(manifest_file)
        if args.prepare:  # the store is written in its own process: not in the runs' peak RSS
            return
    device, _, assembly = args.device.partition("-")
    train = TrainParams(
        epochs=args.epochs,
        patience=args.epochs,
        device=device,
        batches_on_device=assembly != "host",
    )
    dataset = FeatureDataset(
        folder,
        manifest,
        {m: train.frames[m] for m in SYSTEMS[args.system].inputs({m: m for m in train.inputs})},
    )
    assignment = assign_folds(manifest, "merged", 5, 0)
    trainer = FoldTrainer(
        train,
        args.system,
        dataset,
        np.flatnonzero((assignment >= 0) & (assignment != 0)),
        np.flatnonzero(assignment == 0),
        0,
    )
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    epochs = len(result.history)
    clips_per_s = len(trainer.train_idx) * epochs / seconds
    print(
        json.dumps(
            {
                "seconds": seconds,
                "epochs": epochs,
                "seconds_per_epoch": seconds / epochs,
                "clips_per_s": clips_per_s,
                "projected_5fold_min": 5 * 0.8 * FULL_CLIPS * PROJECTED_EPOCHS / clips_per_s / 60,
                "val_mean_pearson": result.val_scores["mean_pearson"],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument(
        "--systems",
        nargs="+",
        default=None,  # every registered system
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", nargs="+")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--store")
    parser.add_argument("--clips", type=int)
    parser.add_argument("--system")
    args = parser.parse_args()
    if args.systems is None:
        from mimicflow.fusion.systems import SYSTEMS

        args.systems = list(SYSTEMS)
    systems = args.systems
    if args.child:
        _one_run(args)
        return
    import torch

    devices = args.devices or ["cpu"] + (["cuda", "cuda-host"] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        runs = [("demo", 0)] if Path("data/features/audio/packed").exists() else []
        runs += [(str(Path(scratch) / f"store_{n}"), n) for n in args.sizes]
        for store, clips in runs:
            if store != "demo":
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        "--prepare",
                        "--store",
                        store,
                        "--clips",
                        str(clips),
                    ],
                    check=True,
                )
            for system in systems:
                for device in devices:
                    command = [
                        sys.executable,
                        __file__,
                        "--child",
                        "--store",
                        store,
                        "--clips",
                        str(clips),
                        "--system",
                        system,
                        "--epochs",
                        str(args.epochs),
                        "--device",
                        device,
                    ]
                    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                    row = {
                        "store": "demo" if store == "demo" else f"synthetic {clips}",
                        "system": system,
                        "device": device,
                    }
                    rows.append(row | json.loads(out.strip().splitlines()[-1]))
                    got = rows[-1]
                    print(
                        f"{row['store']:>16} {system:>13} {device:>9}: "
                        f"{got['seconds_per_epoch']:7.2f} s/epoch, {got['clips_per_s']:8.0f} "
                        f"clips/s, 5 folds × {PROJECTED_EPOCHS} epochs of {FULL_CLIPS} clips ≈ "
                        f"{got['projected_5fold_min']:6.1f} min, "
                        f"peak RSS {got['peak_rss_mb']:7.0f} MB",
                        flush=True,
                    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
