"""Encoder kinds: a feature set names its kind; params written before kinds had names still read
the same, and their artefacts keep their names (the settings' keys)."""

from __future__ import annotations

import pytest

from mimicflow.clip.settings import KINDS, EncoderSettings, model_field
from mimicflow.config import Params


def _params(tmp_path, sets: dict) -> Params:
    (tmp_path / "fer").mkdir(exist_ok=True)
    first = next(iter(sets))
    for spec in sets.values():
        spec.setdefault("fer_model", str(tmp_path / "fer"))
    return Params.model_validate(
        {
            "models": {"dir": str(tmp_path / "models")},
            "faces": {"detector_model": str(tmp_path), "mesh_model": str(tmp_path)},
            "asr": {"model": str(tmp_path)},
            "features": {"sets": sets},
            "train": {"inputs": [first], "frames": {first: 4}},
            "monitor": {"feature_sets": [first]},
        }
    )


# (params as written before kinds had names, the same set naming its kind)
LEGACY = {
    "visual": ({"modality": "visual", "model": "default", "pooling": "cls"}, "face-measures"),
    "motion": ({"modality": "visual", "model": "motion"}, "motion"),
    "vit": ({"modality": "visual", "model": "org/vit", "pooling": "cls"}, "visual-transformers"),
    "speech": ({"modality": "audio", "model": "org/wav2vec2"}, "audio-transformers"),
    "words": ({"modality": "text", "model": "org/minilm"}, "text-transformers"),
    "prosody": ({"modality": "egemaps"}, "egemaps"),
    "pickles": ({"modality": "wav2vec2"}, "organisers"),
}


@pytest.mark.parametrize("name", LEGACY)
def test_a_set_without_a_kind_reads_as_before_kinds_had_names(tmp_path, name):
    legacy, kind = LEGACY[name]
    old = EncoderSettings.from_params(_params(tmp_path, {name: dict(legacy)}), name)
    explicit = dict(legacy, kind=kind)
    if legacy.get("model") in ("default", "motion"):
        del explicit["model"]
    new = EncoderSettings.from_params(_params(tmp_path, {name: explicit}), name)
    assert old.kind == new.kind == kind
    assert old.key() == new.key()  # the artefacts made before keep their names


def test_the_visual_chains_are_kinds_and_pooling_only_pools(tmp_path):
    sets = {
        "a": {"modality": "visual", "kind": "face-measures", "pooling": "mean"},
        "b": {"modality": "visual", "kind": "face-measures", "pooling": "cls"},
        "c": {"modality": "visual", "kind": "motion"},
    }
    params = _params(tmp_path, sets)
    keys = {n: EncoderSettings.from_params(params, n).key() for n in sets}
    assert keys["a"] == keys["b"] != keys["c"]  # pooling does not touch the FaceMesh chain


def test_a_new_kind_is_named_in_its_artefacts_key(tmp_path):
    from dataclasses import replace

    from mimicflow.clip.settings import EncoderKind, register_kind

    base = KINDS["visual-transformers"]
    register_kind(replace(base, name="test-visual", legacy_key=None))
    try:
        sets = {
            "old": {"modality": "visual", "kind": "visual-transformers", "model": "org/vit"},
            "new": {"modality": "visual", "kind": "test-visual", "model": "org/vit"},
        }
        params = _params(tmp_path, sets)
        old, new = (EncoderSettings.from_params(params, n) for n in sets)
        assert old.key() != new.key()
        assert isinstance(KINDS["test-visual"], EncoderKind)
    finally:
        del KINDS["test-visual"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"modality": "visual", "kind": "nosuch"}, "not an encoder kind"),
        ({"modality": "text", "kind": "whisper", "model": "org/w"}, "makes audio features"),
    ],
)
def test_a_wrong_kind_is_one_clear_error(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        EncoderSettings.from_params(_params(tmp_path, {"s": spec}), "s")


def test_the_model_field_a_bundle_copies_follows_the_kind():
    from mimicflow.config import FeatureSetParams

    def field(**spec):
        return model_field(FeatureSetParams(**spec))

    assert field(modality="visual", kind="face-measures") == "fer_model"
    assert field(modality="visual", model="default") == "fer_model"
    assert field(modality="visual", kind="motion") is None
    assert field(modality="audio", kind="whisper", model="x") == "model"
    assert field(modality="egemaps") is None
