"""The features stage over the validated faulty set: real embedded encoders, the packed store,
resume, missing inputs, and a tiny transformers model switched in through params."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mimicflow.config import FeatureSetParams
from mimicflow.data.faults import FAULTS
from mimicflow.features.store import FeatureTable
from mimicflow.stages.features import run_features

from .helpers.tiny_hf import tiny_text_model


def _manifest(params):
    return pd.read_parquet(params.validate_.out / "manifest.parquet")


def test_every_clip_in_every_feature_set(featured):
    params, metrics = featured
    clips = list(_manifest(params)["clip_id"])
    dims = {"audio": 384, "text": 384}
    for name, figures in metrics.items():
        table = FeatureTable.open(params.features.out / name)
        assert table.clip_ids == clips and figures["clips"] == len(clips)
        assert table.values.dtype == np.float16 and table.dim == figures["dim"]
        if name in dims:
            assert table.dim == dims[name]
        values, mask = table.get(clips[0])
        assert values.shape[1] == table.dim and len(mask) == len(values)


def test_missing_inputs_are_flags_not_zeros(featured):
    params, _ = featured
    audio = FeatureTable.open(params.features.out / "audio")
    assert audio.get(FAULTS["no_audio"])[0].shape[0] == 0  # the clip without audio
    assert not audio.meta["present"][FAULTS["no_audio"]]
    assert audio.meta["rate_hz"] == 50.0
    text = FeatureTable.open(params.features.out / "text")
    asr = pd.read_parquet(params.asr.out / "index.parquet").set_index("clip_id")
    for clip_id, spoken in asr["has_speech"].items():
        assert text.meta["present"][clip_id] == bool(spoken)
    visual = FeatureTable.open(params.features.out / "visual")
    faces = pd.read_parquet(params.faces.out / "index.parquet").set_index("clip_id")
    for clip_id in faces.index:
        values, mask = visual.get(clip_id)
        assert len(values) == faces.loc[clip_id, "frames"]
        assert int(mask.sum()) <= faces.loc[clip_id, "frames_with_face"]
        assert not np.asarray(values, np.float32)[~np.asarray(mask)].any()  # absent rows are zero


def test_audio_features_follow_the_clip_duration(featured):
    params, _ = featured
    audio = FeatureTable.open(params.features.out / "audio")
    manifest = _manifest(params).set_index("clip_id")
    for clip_id in manifest.index[:5]:
        frames = len(audio.get(clip_id)[0])
        assert abs(frames / 50.0 - manifest.loc[clip_id, "duration_s"]) < 0.3


def test_rerun_recomputes_nothing(featured):
    params, metrics = featured
    folder = params.features.out / "text"
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")}
    assert run_features(params, "text", progress=False) == metrics["text"]
    assert before == {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")}


def test_a_transformers_model_by_path_replaces_the_default(featured, tmp_path):
    params, _ = featured
    tiny = tiny_text_model(tmp_path / "bert")
    switched = params.model_copy(
        update={
            "features": params.features.model_copy(
                update={
                    "out": tmp_path / "features",
                    "sets": params.features.sets
                    | {
                        "text": params.features.sets["text"].model_copy(
                            update={"model": str(tiny), "layers": 1}
                        )
                    },
                }
            )
        }
    )
    metrics = run_features(switched, "text", progress=False)
    assert metrics["dim"] == 32
    meta = json.loads((tmp_path / "features" / "text" / "packed" / "meta.json").read_text())
    assert meta["layers"] == [1] and meta["model"] == str(tiny) and meta["modality"] == "text"


def test_egemaps_descriptors_from_the_cached_audio(featured, tmp_path):
    pytest.importorskip("opensmile")
    params, _ = featured
    switched = params.model_copy(
        update={
            "features": params.features.model_copy(
                update={
                    "out": tmp_path / "features",
                    "sets": params.features.sets
                    | {"egemaps": FeatureSetParams(modality="egemaps")},
                }
            )
        }
    )
    metrics = run_features(switched, "egemaps", progress=False)
    table = FeatureTable.open(tmp_path / "features" / "egemaps")
    values, _ = table.get("00001")
    assert metrics["dim"] == 25 and table.meta["columns"][0] == "Loudness_sma3"
    manifest = _manifest(params).set_index("clip_id")
    assert abs(len(values) / 100.0 - manifest.loc["00001", "duration_s"]) < 0.3
