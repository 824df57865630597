"""Training speed and memory: one fold of each system on synthetic feature stores of 1k, 4k and
16k clips with Hume-like lengths (Whisper-tiny-sized audio frames at 50 Hz, face features at
6 Hz, sentence vectors), plus one fold on the demo store when it exists.

    python bench/bench_training.py [--sizes 1000 4000 16000] [--epochs 3] [--systems ...]

Each run is a fresh process (stores are written beforehand in their own), so its peak RSS is its
own. An epoch counts every pass over the training clips, MimicMetrics' unimodal pre-training
passes included. Prints a table; writes
bench/results/training.json.
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


def _one_run(args) -> None:
    """Child process: write (or reuse) the store, train one fold, print JSON."""
    import numpy as np

    from mimicflow.config import TrainParams, load_params
    from mimicflow.training.data import FeatureDataset
    from mimicflow.training.folds import assign_folds
    from mimicflow.training.trainer import FoldTrainer, system_inputs

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
    train = TrainParams(epochs=args.epochs, patience=args.epochs)
    dataset = FeatureDataset(folder, manifest, {m: train.frames[m]
                                                for m in system_inputs(args.system, {m: m for m in train.inputs})})  # fmt: skip
    assignment = assign_folds(manifest, "merged", 5, 0)
    trainer = FoldTrainer(train, args.system, dataset, np.flatnonzero((assignment >= 0) & (assignment != 0)),
                          np.flatnonzero(assignment == 0), 0)  # fmt: skip
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    epochs = len(result.history)
    print(json.dumps({"seconds": seconds, "epochs": epochs, "seconds_per_epoch": seconds / epochs,
                      "val_mean_pearson": result.val_scores["mean_pearson"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--systems", nargs="+", default=["mimicmetrics", "fuxi", "ustc", "augsburg"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--store")
    parser.add_argument("--clips", type=int)
    parser.add_argument("--system")
    args = parser.parse_args()
    if args.child:
        _one_run(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        runs = [("demo", 0)] if Path("data/features/audio/packed").exists() else []
        runs += [(str(Path(scratch) / f"store_{n}"), n) for n in args.sizes]
        for store, clips in runs:
            if store != "demo":
                subprocess.run([sys.executable, __file__, "--child", "--prepare", "--store", store,
                                "--clips", str(clips)], check=True)  # fmt: skip
            for system in args.systems:
                command = [sys.executable, __file__, "--child", "--store", store, "--clips", str(clips),
                           "--system", system, "--epochs", str(args.epochs)]  # fmt: skip
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                row = {"store": "demo" if store == "demo" else f"synthetic {clips}", "system": system}
                rows.append(row | json.loads(out.strip().splitlines()[-1]))
                print(f"{row['store']:>16} {system:>13}: {rows[-1]['seconds_per_epoch']:7.2f} s/epoch, "
                      f"peak RSS {rows[-1]['peak_rss_mb']:7.0f} MB", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
