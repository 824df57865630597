"""Great Expectations suites for the manifest and labels tables."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mimicflow import EMOTIONS
from mimicflow.data.expectations import run_data_quality_suites

LIMITS = {"min_duration_s": 1.0, "max_duration_s": 60.0, "min_fps": 5.0, "max_fps": 120.0}


def _manifest() -> pd.DataFrame:
    rows = []
    for i, split in enumerate(["train", "valid", "test", "unlabelled"], start=1):
        labelled = split in ("train", "valid")
        rows.append(
            {
                "clip_id": f"{i:05d}",
                "split": split,
                "video_path": f"raw/{i:05d}.mp4",
                "audio_path": "",
                "sha256": "0" * 64,
                "size_bytes": 1000,
                "container": "mp4",
                "duration_s": 5.0,
                "fps": 30.0,
                "n_frames": 150,
                "width": 64,
                "height": 64,
                "video_codec": "h264",
                "has_audio": False,
                "audio_source": "none",
                "audio_codec": None,
                "sample_rate": np.nan,
                "has_vit": False,
                "has_wav2vec2": False,
                "notes": "",
                **{e: (0.5 if labelled else np.nan) for e in EMOTIONS},
            }
        )
    return pd.DataFrame(rows)


def _labels() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Filename": f"{i:05d}.mp4",
                "clip_id": f"{i:05d}",
                "split": split,
                "source": f"{split}_split.csv:2",
                **{e: 0.25 for e in EMOTIONS},
            }
            for i, split in [(1, "train"), (2, "valid")]
        ]
    )


def _failed(summary: dict, suite: str) -> set[tuple[str, str | None]]:
    return {(f["expectation"], f["column"]) for f in summary["suites"][suite]["failed"]}


@pytest.mark.heavy
def test_clean_tables_pass_and_data_docs_are_built(tmp_path):
    summary = run_data_quality_suites(_manifest(), _labels(), tmp_path, **LIMITS)

    assert summary["success"] is True
    for suite in ("manifest", "labels"):
        result = summary["suites"][suite]
        assert result["success"] and result["failed"] == []
        assert result["evaluated"] == result["successful"] > 0
    index = tmp_path / "data_docs" / "index.html"
    assert summary["data_docs"] == str(index.resolve())
    html = index.read_text(encoding="utf-8")
    assert "validations/manifest/" in html and "validations/labels/" in html


def test_bad_rows_are_reported(tmp_path):
    manifest = _manifest()
    manifest.loc[1, "clip_id"] = "00001"  # duplicate id
    manifest.loc[2, "duration_s"] = 600.0  # beyond max_duration_s
    manifest.loc[0, "Joy"] = np.nan  # train row without a label
    labels = _labels()
    labels.loc[0, "Joy"] = 1.5
    labels.loc[1, "Amusement"] = np.nan

    summary = run_data_quality_suites(manifest, labels, tmp_path, **LIMITS)

    assert summary["success"] is False
    assert _failed(summary, "manifest") == {
        ("expect_column_values_to_be_unique", "clip_id"),
        ("expect_column_values_to_be_between", "duration_s"),
        ("expect_column_values_to_not_be_null", "Joy"),
    }
    assert _failed(summary, "labels") == {
        ("expect_column_values_to_be_between", "Joy"),
        ("expect_column_values_to_not_be_null", "Amusement"),
    }
    duration = next(
        f for f in summary["suites"]["manifest"]["failed"] if f["column"] == "duration_s"
    )
    assert duration["unexpected_count"] == 1


def test_empty_labels_are_skipped(tmp_path):
    summary = run_data_quality_suites(_manifest(), _labels().iloc[0:0], tmp_path, **LIMITS)

    assert summary["suites"]["labels"] == {"skipped": True}
    assert summary["success"] is summary["suites"]["manifest"]["success"] is True


def test_runs_are_named_by_dataset_and_time_and_batches_by_dataset(tmp_path):
    """Two datasets validated into one site: the Data Docs list tells them apart."""
    for dataset in ("demo", "hume-vidmimic2"):
        run_data_quality_suites(_manifest(), _labels(), tmp_path, **LIMITS, dataset=dataset)
    results = sorted((tmp_path / "gx").rglob("validations/manifest/*/*/*.json"))
    runs = {p.parts[-3] for p in results}  # validations/<suite>/<run name>/<run time>/<batch>
    assert sorted(r.split(" ")[0] for r in runs) == ["demo", "hume-vidmimic2"]
    assert all(re.fullmatch(r"\S+ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r) for r in runs), runs
    assert {p.stem.split("-manifest")[0] for p in results} == {"demo", "hume-vidmimic2"}
    html = (tmp_path / "data_docs" / "index.html").read_text(encoding="utf-8")
    assert all(run in html for run in runs)
