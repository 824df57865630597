"""Training data from the packed feature store: segment pooling, masks, missing inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mimicflow import EMOTIONS
from mimicflow.data.faults import FAULTS
from mimicflow.training.data import FeatureDataset, segment_pool


def test_segment_pool_averages_valid_frames_and_pads_short_clips():
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    mask = np.array([True, True, False, True, True, True])
    pooled, pooled_mask = segment_pool(values, mask, 3)
    np.testing.assert_allclose(pooled, [[1, 2], [6, 7], [9, 10]])  # frame 2 is left out
    assert pooled_mask.all()
    short, short_mask = segment_pool(values[:2], mask[:2], 4)
    assert short_mask.tolist() == [True, True, False, False] and not short[2:].any()
    empty, empty_mask = segment_pool(np.zeros((0, 2)), np.zeros(0, bool), 3)
    assert not empty_mask.any() and empty.shape == (3, 2)


@pytest.fixture(scope="module")
def dataset(featured):
    params, _ = featured
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
    return FeatureDataset(params.features.out, manifest, {"audio": 32, "visual": 8, "text": 1})


def test_batches_have_fixed_shapes_masks_and_labels(dataset):
    batch = dataset.batch(range(len(dataset)))
    assert batch.inputs["audio"][0].shape == (len(dataset), 32, 384)
    assert batch.inputs["visual"][0].shape == (len(dataset), 8, 18)
    assert batch.inputs["text"][0].shape == (len(dataset), 1, 384)
    assert batch.labels.shape == (len(dataset), 6)
    row = batch.clip_ids.index(
        FAULTS["no_audio"]
    )  # no audio: the input is absent, not zeros-as-data
    assert not batch.has_frames("audio")[row]
    assert batch.has_frames("audio").sum() == len(dataset) - 1


def test_test_clips_have_no_labels(dataset, featured):
    params, _ = featured
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
    labels = dataset.batch(range(len(dataset))).labels
    unlabelled = (manifest["split"] == "test").to_numpy()
    assert np.isnan(labels[unlabelled]).all() and np.isfinite(labels[~unlabelled]).all()


def test_unknown_clips_are_a_clear_error(featured):
    params, _ = featured
    manifest = pd.DataFrame({"clip_id": ["99999"], **{e: [0.0] for e in EMOTIONS}})
    with pytest.raises(KeyError, match="clips without features"):
        FeatureDataset(params.features.out, manifest, {"text": 1})
