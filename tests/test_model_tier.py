"""Model tests: a trained model beats the training mean, judged on the official valid split
(on which no model trains; the one fold early-stops on it, so the figure is a little
optimistic), through the real train and ensemble stages over a synthetic feature store whose
sets are complementary, as in the demo data: each carries some of the emotions (with
noise of its own), none carries them all. Fused against single inputs is not judged here: on
such data a single input loses by construction. ``mimicflow report --check`` gates it on the
demo test (params ``checks.fused_over_single``, from ``make compare``'s table)."""

from __future__ import annotations

import pandas as pd
import pytest

from mimicflow import EMOTIONS
from mimicflow.config import Params
from mimicflow.features.synthetic import write_synthetic_store
from mimicflow.stages.train import run_ensemble, run_train
from mimicflow.training.ensemble import load_ensemble

pytestmark = pytest.mark.pipeline
DIMS = {"audio": 24, "visual": 16, "text": 32}
CARRIED = {
    "audio": ["Amusement", "Excitement", "Joy"],
    "visual": ["Admiration", "Joy", "Determination"],
    "text": ["Determination", "Empathic Pain", "Amusement"],
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Params over a 360-clip synthetic store (official protocol: one model, train → valid) and
    its manifest."""
    root = tmp_path_factory.mktemp("model_tier")
    manifest = write_synthetic_store(root / "features", 360, DIMS, seed=3, carried=CARRIED)
    (root / "validated").mkdir()
    manifest.to_parquet(root / "validated" / "manifest.parquet")
    params = Params.model_validate(
        {
            "data": {"root": str(root)},
            "validate": {"out": str(root / "validated")},
            "features": {"out": str(root / "features")},
            "train": {
                "protocol": "official",
                "folds": [0],
                "epochs": 15,
                "patience": 6,
                "mimicmetrics": {"pretrain_epochs": 5},
            },
        }
    )
    return params, manifest, root


def _held_out(synthetic, inputs: tuple[str, ...]) -> tuple[dict, pd.DataFrame]:
    """The ensemble's scores on the held-out valid split, and its predictions there."""
    base, manifest, root = synthetic
    name = "+".join(inputs)
    params = base.model_copy(
        update={
            "train": base.train.model_copy(update={"inputs": inputs, "out": root / name / "folds"}),
            "ensemble": base.ensemble.model_copy(
                update={"out": root / name / "ensemble", "reports": root / name / "reports"}
            ),
        }
    )
    for fold in params.train.folds:
        run_train(params, fold, progress=False)
    metrics = run_ensemble(params)
    valid = list(manifest.loc[manifest["split"] == "valid", "clip_id"])
    predictions = load_ensemble(params.ensemble.out).predict_store(params.features.out, valid)
    return metrics["out_of_fold"], predictions.set_index("clip_id")


@pytest.fixture(scope="module")
def fused(synthetic):
    return _held_out(synthetic, ("audio", "visual", "text"))


def test_the_ensemble_beats_the_training_mean_by_a_clear_margin(synthetic, fused):
    _, manifest, _ = synthetic
    scores, predictions = fused
    labels = manifest.set_index("clip_id")[list(EMOTIONS)]
    train = labels[manifest.set_index("clip_id")["split"] == "train"].to_numpy()
    valid = labels.loc[predictions.index].to_numpy()
    baseline_mse = float(((valid - train.mean(0)) ** 2).mean())  # predict the training mean
    mse = float(((valid - predictions[list(EMOTIONS)].to_numpy()) ** 2).mean())
    assert scores["mean_pearson"] > 0.5
    assert mse < 0.7 * baseline_mse, (mse, baseline_mse)
