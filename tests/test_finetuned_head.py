"""``train.augsburg.head: finetuned``: the fold's model is the head the adapt stage fine-tuned
with the encoder (ABAW6 §4's predictor), loaded, not trained, and refused where the stored
features would not give that model's own predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mimicflow import EMOTIONS
from mimicflow.cli import app
from mimicflow.clip.encoders import clip_encoder
from mimicflow.clip.settings import EncoderSettings, Runtime
from mimicflow.config import FeatureSetParams, FinetuneParams, Params
from mimicflow.features.store import pack, save_clip_features
from mimicflow.features.synthetic import write_synthetic_store
from mimicflow.paths import StagePaths
from mimicflow.perception.audio import SAMPLE_RATE
from mimicflow.recipes import validate_overlay
from mimicflow.stages.compare import recipe_params
from mimicflow.stages.train import run_ensemble, run_train, train_fold
from mimicflow.training.adaptation import AdaptData
from mimicflow.training.ensemble import load_ensemble
from mimicflow.training.finetune import finetune, predict, save_finetuned
from mimicflow.training.heads import HeadMismatch, head_mismatch

from .helpers.tiny_hf import tiny_emotion_model

SEGMENTS = 8  # the head's segment means; the clips run 5 to 30 wav2vec2 frames


def _clips(n: int, n_train: int) -> AdaptData:
    """Tones of 0.1 to 0.6 s whose six intensities follow their frequency."""
    rng = np.random.default_rng(0)
    freq, seconds = rng.uniform(200, 3000, n), rng.uniform(0.1, 0.6, n)
    audio = [
        (0.3 * np.sin(2 * np.pi * f * np.arange(int(s * SAMPLE_RATE)) / SAMPLE_RATE)).astype(
            np.float32
        )
        for f, s in zip(freq, seconds)
    ]
    x = (freq - 200) / 2800
    labels = np.stack([x, 1 - x, x, 1 - x, x**2, 0.5 * x], 1).astype(np.float32)
    train = np.arange(n) < n_train
    ids = [f"c{i:02d}" for i in range(n)]
    return AdaptData(ids, labels, train, ~train, lambda i: audio[i], lambda i: [], lambda i: "")


def _params(root: Path, spec: FinetuneParams, model: str | None = None, **train) -> Params:
    """Params of a project in ``root``: the adapt entry ``spec``, set ``audio`` encoded by the
    encoder it fine-tunes (or by ``model``), the augsburg head it fine-tunes as the fold's."""
    base = Params().model_dump(mode="json", by_alias=True)
    overlay = {
        "validate": {"out": str(root / "validated")},
        "adapt": {"out": str(root / "adapted"), "encoders": {"audio": spec.model_dump()}},
        "features": {
            "out": str(root / "features"),
            "sets": {
                "audio": {
                    "modality": "audio",
                    "model": model or str(root / "adapted" / "audio"),
                    "audio_cut_s": spec.audio_cut_s,
                    "head_outputs": spec.head_outputs,
                }
            },
        },
        "train": {
            "out": str(root / "folds"),
            "system": "augsburg",
            "inputs": ["audio"],
            "protocol": "final",
            "folds": [0],
            "frames": {"audio": SEGMENTS},
            "device": "cpu",
            "augsburg": {"head": "finetuned", "hidden": 64},  # 64: not the head's; unused
        }
        | train,
        "ensemble": {"out": str(root / "ensemble"), "reports": str(root / "reports")},
        "monitor": {"feature_sets": ["audio"]},
    }
    return validate_overlay(base, overlay)


def _encode(params: Params, data: AdaptData) -> None:
    """The features stage's encoder of set ``audio`` over every clip, packed as it packs."""
    settings = EncoderSettings.from_params(params, "audio")
    encoder = clip_encoder(settings, Runtime("cpu", 4))
    folder = Path(params.features.out) / "audio"
    files = {}
    for clip_id, (values, mask) in zip(
        data.clip_ids, encoder.encode([data.audio(i) for i in range(len(data))])
    ):
        files[clip_id] = folder / "clips" / f"{clip_id}.npz"
        files[clip_id].parent.mkdir(parents=True, exist_ok=True)
        save_clip_features(files[clip_id], values, mask)
    pack(folder, files, encoder.meta() | {"modality": "audio", "settings": settings.key()})


def _manifest(params: Params, data: AdaptData) -> None:
    manifest = pd.DataFrame(
        {"clip_id": data.clip_ids, "split": np.where(data.train, "train", "valid")}
        | dict(zip(EMOTIONS, data.labels.T))
    )
    StagePaths(params).manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(StagePaths(params).manifest)


@pytest.mark.heavy  # fine-tuning a tiny wav2vec2, encoding, one fold and the ensemble: ~30 s
def test_the_fold_and_ensemble_predict_as_the_finetuned_model(tmp_path):
    folder, _ = tiny_emotion_model(tmp_path / "emotion")
    spec = FinetuneParams(
        model=str(folder),
        head_outputs=True,
        train_layers=1,
        epochs=2,
        batch_size=8,
        lr=1e-2,
        head_lr=1e-2,
        hidden=16,
        dense_hidden=24,  # the authors' head: a dense layer wider than the LSTM
        segments=SEGMENTS,
    )
    data = _clips(24, 16)
    model, metrics = finetune(spec, data)
    params = _params(tmp_path, spec)
    save_finetuned(model, spec, params.adapt.out / "audio", metrics)
    _encode(params, data)
    _manifest(params, data)

    valid = np.flatnonzero(data.valid)
    rows, want = predict(model, data, valid, spec, torch.device("cpu"))
    assert len(rows) == len(valid) and want.std(0).max() > 1e-3  # predictions that vary
    description = run_train(params, 0, progress=False)
    assert description["best_epoch"] == 0 and description["hyper"]["hidden"] == spec.hidden
    assert description["hyper"]["dense_hidden"] == 24
    curve = StagePaths(params).curves(0) / "plots" / "metrics" / "val_mean_pearson.tsv"
    assert len(pd.read_csv(curve, sep="\t")) == 1  # dvc.yaml's plots output exists
    fold = pd.read_csv(StagePaths(params).fold(0) / "val_predictions.csv")
    assert list(fold["clip_id"]) == [data.clip_ids[i] for i in rows]
    np.testing.assert_allclose(fold[list(EMOTIONS)].to_numpy(), want, atol=1e-4)

    run_ensemble(params)
    ensemble = load_ensemble(StagePaths(params).ensemble)
    served = ensemble.predict_store(params.features.out, [data.clip_ids[i] for i in rows])
    np.testing.assert_allclose(served[list(EMOTIONS)].to_numpy(), want, atol=1e-4)

    with pytest.raises(HeadMismatch, match=r"train\.frames 6, the head saw 8 segments"):
        train_fold(_params(tmp_path, spec, frames={"audio": 6}), 0, progress=False)


def test_a_head_is_refused_where_the_features_would_not_reproduce_it(tmp_path):
    head = {"dim": 35, "segments": 8, "audio_cut_s": 12.0, "head_outputs": True}
    features = FeatureSetParams(modality="audio", model="m", audio_cut_s=12, head_outputs=True)
    assert head_mismatch(head, features, 35, 30, 8) is None
    without_vad = features.model_copy(update={"head_outputs": False})
    assert "head_outputs False, the head's True" in head_mismatch(head, without_vad, 32, 30, 8)
    assert "32-d frames, the head's 35-d" in head_mismatch(head, features, 32, 30, 8)
    every = head | {"segments": None}  # the head saw every frame: no clip may be pooled
    assert head_mismatch(every, features, 35, 30, 30) is None
    assert "every frame (clips up to 31)" in head_mismatch(every, features, 35, 31, 30)

    # a set that no adapt entry fine-tuned: one line, before anything is written
    spec = FinetuneParams(model="whisper-tiny.en")
    params = _params(tmp_path, spec, model="whisper-tiny.en")
    manifest = write_synthetic_store(params.features.out, 12, {"audio": 8}).fillna(0.5)
    manifest["split"] = np.where(np.arange(12) < 8, "train", "valid")
    StagePaths(params).validated.mkdir()
    manifest.to_parquet(StagePaths(params).manifest)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    run = CliRunner().invoke(app, ["stage", "train", "--fold", "0", "--params", str(params_file)])
    assert run.exit_code == 2 and "Traceback" not in run.output
    said = " ".join(run.output.split())
    assert "train.augsburg.head finetuned: feature set 'audio' is not encoded by" in said
    assert not StagePaths(params).fold(0).exists()
    # merged folds validate on train clips, which the head saw
    merged = _params(tmp_path, spec, protocol="merged", folds=[0, 1])
    with pytest.raises(HeadMismatch, match="protocol merged validates on clips the head was"):
        train_fold(merged, 0, progress=False)


def test_the_comparison_retrains_a_finetuned_head_on_its_merged_folds():
    params = recipe_params(Params(), "augsburg")
    assert params.train.protocol == "merged" and params.train.augsburg.head == "retrained"
