"""Code tests: the dataset layer reads the Hume-Vidmimic2 layout as users have it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mimicflow import EMOTIONS
from mimicflow.data.layout import (
    DatasetError,
    load_dataset,
    normalise_clip_id,
    read_feature_pickle,
)

HEADER = "Filename," + ",".join(EMOTIONS) + "\n"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (1, "00001"),
        ("12", "00012"),
        ("00012", "00012"),
        ("7.0", "00007"),
        ("00003.mp4", "00003"),
        ("000004", "00004"),
        ("000004.avi", "00004"),
        ("123456", "123456"),
        ("abc", None),
        ("", None),
        ("\u0663", None),
        (float("nan"), None),
    ],
)
def test_filename_cells_become_five_digit_ids(cell, expected):
    assert normalise_clip_id(cell) == expected


def _hume(root, clips=("00001", "00002", "00003"), train="1,0.5,0,0,0,0,0\n", valid=None):
    (root / "raw").mkdir(parents=True)
    (root / "audio").mkdir()
    for clip in clips:
        (root / "raw" / f"{clip}.mp4").write_bytes(b"x")
        (root / "audio" / f"{clip}.mp3").write_bytes(b"x")
    (root / "train_split.csv").write_text(HEADER + train)
    if valid is not None:
        (root / "valid_split.csv").write_text(HEADER + valid)
    return root


def test_hume_layout_splits_and_test_ids(tmp_path):
    dataset = load_dataset(_hume(tmp_path, valid="2,0,0,0,0.25,0,1\n"))
    assert dataset.clip_ids == ["00001", "00002", "00003"]
    assert set(dataset.audio) == {"00001", "00002", "00003"}
    splits = {row.clip_id: row.split for row in dataset.label_rows}
    assert splits == {"00001": "train", "00002": "valid"}  # 00003 has no row: a test clip
    assert dataset.label_rows[1].values["Empathic Pain"] == 0.25
    assert dataset.labelled


def test_plain_folder_is_unlabelled_data(tmp_path):
    for name in ("clip_a.mp4", "00042.webm", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    dataset = load_dataset(tmp_path)
    assert dataset.clip_ids == ["00042", "clip_a"]
    assert not dataset.labelled and dataset.label_rows == []


def test_missing_columns_is_one_clear_error(tmp_path):
    _hume(tmp_path)
    (tmp_path / "train_split.csv").write_text("Filename,Joy\n1,0.5\n")
    with pytest.raises(DatasetError, match=r"lacks the required column.*Admiration"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("case", ["no folder", "raw without labels", "empty folder"])
def test_unusable_datasets(tmp_path, case):
    if case == "raw without labels":
        (tmp_path / "raw").mkdir()
    root = tmp_path / "absent" if case == "no folder" else tmp_path
    with pytest.raises(DatasetError):
        load_dataset(root)


def test_organisers_feature_pickles(tmp_path):
    _hume(tmp_path)
    (tmp_path / "vit").mkdir()
    with open(tmp_path / "vit" / "00002.pkl", "wb") as handle:
        pickle.dump(np.ones((7, 384)), handle)
    dataset = load_dataset(tmp_path)
    array = read_feature_pickle(dataset.features["vit"]["00002"])
    assert array.shape == (7, 384) and array.dtype == np.float32
