"""How small can a training run be and still beat the training mean on held-out clips?

    python scripts/subset_margin.py --clips 64 --epochs 12 --repeats 5  (in a demo workspace)

Draws ``--clips`` clips of the demo's validated manifest at random (``--repeats`` draws, seeds
0, 1, …), trains the project's default system on them through the real train and ensemble
stages (``--epochs``, 5 folds, MimicMetrics' pre-training 1 epoch as in the end-to-end test;
the demo's features as they are), and prints per draw the test
clips' MSE against the hidden labels ÷ that of predicting the labelled clips' mean. Chose the
size of the end-to-end test (tests/test_pipeline_e2e.py). Writes only into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.config import load_params
from mimicflow.data.synth.truth import hidden_labels
from mimicflow.stages.train import run_ensemble, run_train
from mimicflow.training.ensemble import load_ensemble


def draw(params, manifest: pd.DataFrame, truth: pd.DataFrame, seed: int, clips: int, epochs: int):
    rng = np.random.default_rng(seed)
    subset = manifest.iloc[np.sort(rng.choice(len(manifest), clips, replace=False))]
    with tempfile.TemporaryDirectory(prefix="subset-margin-") as work:
        work = Path(work)
        (work / "validated").mkdir()
        subset.reset_index(drop=True).to_parquet(work / "validated/manifest.parquet")
        train = params.train.model_copy(
            update={
                "epochs": epochs,
                "patience": epochs,
                "out": work / "folds",
                "mimicmetrics": params.train.mimicmetrics.model_copy(update={"pretrain_epochs": 1}),
            }
        )
        ensemble = params.ensemble.model_copy(update={"out": work / "ens", "reports": work / "rep"})
        run = params.model_copy(
            update={
                "validate_": params.validate_.model_copy(update={"out": work / "validated"}),
                "train": train,
                "ensemble": ensemble,
            }
        )
        for fold in train.folds:
            run_train(run, fold, progress=False)
        run_ensemble(run)
        test = list(subset.loc[subset["split"] == "test", "clip_id"])
        predicted = load_ensemble(ensemble.out).predict_store(params.features.out, test)
    labels = truth.loc[test].to_numpy()
    mean = subset.loc[subset["split"] != "test", list(EMOTIONS)].mean().to_numpy()
    model = float(((predicted[list(EMOTIONS)].to_numpy() - labels) ** 2).mean())
    return {
        "seed": seed,
        "test_clips": len(test),
        "mse_ratio": model / ((mean - labels) ** 2).mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
    truth = hidden_labels(params.data.root)
    rows = [
        draw(params, manifest, truth, seed, args.clips, args.epochs) for seed in range(args.repeats)
    ]
    for row in rows:
        print(json.dumps(row | {"mse_ratio": round(row["mse_ratio"], 3)}))
    ratios = [row["mse_ratio"] for row in rows]
    span = f"{min(ratios):.2f}–{max(ratios):.2f}"
    print(f"{args.clips} clips × {args.epochs} epochs: MSE ÷ the training mean's {span}")


if __name__ == "__main__":
    main()
