"""An ensemble or a bento keeps loading when params keys change: it keeps the clip chain's
params on a versioned schema of its own (``ChainParams``), never the whole params object; and
when its description's own key was renamed (``modalities``, now ``inputs``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from safetensors.torch import save_file

from mimicflow.config import CHAIN_SCHEMA, ChainParams, Params
from mimicflow.fusion.systems import SYSTEMS, build_model
from mimicflow.serving.bundle import read_bundle
from mimicflow.training.ensemble import build_ensemble, load_ensemble


def _old_params_dump() -> dict:
    """What ``ensemble.json`` held before the schema (version 0: a whole params dump), with
    keys this version no longer has: a removed system's section, a renamed train key, a faces
    key since renamed, a section since removed."""
    dump = Params().model_dump(mode="json", by_alias=True)
    dump["train"] |= {"casia": {"hidden": 64}, "n_epochs": 3, "out": "elsewhere/folds"}
    dump["faces"] |= {"old_threshold": 0.4, "fps": 5.0}
    dump["retired"] = {"anything": 1}
    return dump


def _ensemble_folder(folder, params: dict, inputs_key: str = "inputs"):
    """An ensemble of one fold; ``inputs_key``: ``modalities`` as written before its rename."""
    spec = SYSTEMS["augsburg"]
    hyper = spec.hyper_of(spec.params(hidden=8))
    model = build_model("augsburg", {"audio": 4}, {"audio": "audio"}, **hyper)
    folder.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "fold_0.safetensors"
    )
    description = {
        "system": "augsburg",
        "hyper": hyper,
        "dims": {"audio": 4},
        "kinds": {"audio": "audio"},
        inputs_key: ["audio"],
        "frames": {"audio": 4},
        "sampling": "mean",
        "version": "augsburg-test",
        "folds": 1,
        "fold_scores": [0.5],
        "params": params,
    }
    (folder / "ensemble.json").write_text(json.dumps(description))
    return folder


def test_the_whole_params_object_refuses_the_old_dump_and_the_chain_schema_reads_it():
    old = _old_params_dump()
    with pytest.raises(ValidationError):
        Params.model_validate(old)
    chain = ChainParams.model_validate(old)
    assert chain.schema_version == CHAIN_SCHEMA
    assert chain.faces.fps == 5.0 and str(chain.train_out) == "elsewhere/folds"


def test_an_ensemble_written_before_a_key_was_renamed_keeps_loading(tmp_path):
    folder = _ensemble_folder(tmp_path / "ensemble", _old_params_dump(), "modalities")
    ensemble = load_ensemble(folder)
    assert ensemble.params.faces.fps == 5.0 and ensemble.inputs == ["audio"]
    clip = {"audio": (np.ones((3, 4), np.float32), np.ones(3, bool))}
    assert ensemble.predict([clip]).shape == (1, 6)


def test_folds_written_with_the_old_key_make_an_ensemble_with_the_new_one(tmp_path):
    written = _ensemble_folder(tmp_path / "old", {}, "modalities")
    fold = tmp_path / "fold_0"
    fold.mkdir()
    (written / "fold_0.safetensors").rename(fold / "model.safetensors")
    description = json.loads((written / "ensemble.json").read_text())
    (fold / "fold.json").write_text(json.dumps(description | {"val_scores": {"mean_pearson": 0.5}}))
    out = build_ensemble([fold], tmp_path / "ensemble", Params())
    built = json.loads((out / "ensemble.json").read_text())
    assert built["inputs"] == ["audio"] and "modalities" not in built
    assert load_ensemble(out).inputs == ["audio"]


def test_a_bento_bundle_written_before_a_key_was_renamed_keeps_loading(tmp_path):
    bundle = tmp_path / "bundle"
    chain_now = ChainParams().model_dump(mode="json", by_alias=True)
    _ensemble_folder(bundle / "ensemble", chain_now, "modalities")
    chain = _old_params_dump()
    chain["models"]["dir"] = "pretrained"
    (bundle / "params.json").write_text(json.dumps(chain))
    (bundle / "serving.json").write_text(json.dumps({"max_upload_mb": 10}))
    loaded = read_bundle(bundle)
    assert loaded.params.faces.fps == 5.0 and loaded.serving.max_upload_mb == 10
    assert loaded.params.models.dir == bundle / "pretrained" and loaded.ensemble.inputs == ["audio"]


def test_a_file_of_a_newer_schema_is_one_clear_error():
    with pytest.raises(ValidationError, match="newer mimicflow"):
        ChainParams.model_validate({"schema_version": CHAIN_SCHEMA + 1})
