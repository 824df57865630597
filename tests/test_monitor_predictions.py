"""The predicted-emotion columns of drift monitoring are made alike in the reference and in a batch:
each clip's prediction comes from one fold model that never saw it, never from the folds' mean
(less spread than any one model, so a same-distribution batch would drift against the
reference's out-of-fold predictions)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from mimicflow import EMOTIONS
from mimicflow.config import ChainParams, Params
from mimicflow.features.store import pack, save_clip_features
from mimicflow.fusion.systems import SYSTEMS, build_model
from mimicflow.monitoring.profile import predictions, unseen_fold
from mimicflow.training.ensemble import load_ensemble

DIMS, KINDS = {"audio": 4}, {"audio": "audio"}
CLIPS = [f"{i:05d}" for i in range(1, 13)]


def _params(tmp_path) -> Params:
    """An ensemble of two differing fold models, a feature store of ``CLIPS`` and fold 0's
    validation predictions for the first four clips."""
    spec = SYSTEMS["augsburg"]
    hyper = spec.hyper_of(spec.params(hidden=8))
    ensemble, folds = tmp_path / "ensemble", tmp_path / "folds"
    ensemble.mkdir()
    for k in range(2):
        torch.manual_seed(k)
        model = build_model("augsburg", DIMS, KINDS, **hyper)
        state = {n: v.contiguous() for n, v in model.state_dict().items()}
        save_file(state, ensemble / f"fold_{k}.safetensors")
    chain = ChainParams().model_dump(mode="json", by_alias=True) | {"train_out": str(folds)}
    description = {
        "system": "augsburg",
        "hyper": hyper,
        "dims": DIMS,
        "kinds": KINDS,
        "inputs": ["audio"],
        "frames": {"audio": 4},
        "sampling": "mean",
        "version": "augsburg-test",
        "folds": 2,
        "fold_scores": [0.5, 0.5],
        "params": chain,
    }
    (ensemble / "ensemble.json").write_text(json.dumps(description))
    rng = np.random.default_rng(0)
    files = {}
    for clip_id in CLIPS:
        files[clip_id] = tmp_path / "clips" / f"{clip_id}.npz"
        files[clip_id].parent.mkdir(exist_ok=True)
        save_clip_features(files[clip_id], rng.normal(size=(6, 4)), np.ones(6, bool))
    pack(tmp_path / "features" / "audio", files, {"dim": 4, "modality": "audio"})
    params = Params()
    return params.model_copy(
        update={
            "ensemble": params.ensemble.model_copy(update={"out": ensemble}),
            "features": params.features.model_copy(update={"out": tmp_path / "features"}),
        }
    )


def _fold_model(params: Params, clip_ids: list[str], fold: int) -> np.ndarray:
    ensemble = load_ensemble(params.ensemble.out)
    frame = ensemble.predict_store(params.features.out, clip_ids, folds=[fold] * len(clip_ids))
    return frame[list(EMOTIONS)].to_numpy()


def test_a_batch_clip_is_predicted_by_one_fold_model_as_a_reference_clip_is(tmp_path):
    params = _params(tmp_path)
    validated = CLIPS[:4]
    oof = pd.DataFrame(_fold_model(params, validated, 0), columns=list(EMOTIONS))
    (tmp_path / "folds" / "0").mkdir(parents=True)
    oof.assign(clip_id=validated).to_csv(tmp_path / "folds/0/val_predictions.csv", index=False)

    batch = predictions(params, CLIPS, out_of_fold=False).to_numpy()
    reference = predictions(params, CLIPS, out_of_fold=True).to_numpy()

    picked = [unseen_fold(c, 2) for c in CLIPS]
    assert 0 < sum(picked) < len(CLIPS)  # both folds take a share of the clips
    by_fold = np.stack([_fold_model(params, CLIPS, k) for k in range(2)])
    assert (np.abs(by_fold[0] - by_fold[1]).max(axis=1) > 1e-3).all()  # they differ on each clip
    np.testing.assert_allclose(batch, by_fold[picked, np.arange(len(CLIPS))], atol=1e-6)
    # the reference: fold 0's validation predictions where it validated, else as in a batch
    np.testing.assert_allclose(reference[:4], by_fold[0, :4], atol=1e-6)
    np.testing.assert_allclose(reference[4:], batch[4:], atol=1e-6)


def test_the_fold_for_a_clip_is_stable_and_shares_the_clips_out():
    ids = [f"{i:05d}" for i in range(1, 501)]
    picks = [unseen_fold(c, 5) for c in ids]
    assert picks == [unseen_fold(c, 5) for c in ids]
    assert min(np.bincount(picks, minlength=5)) > 60
