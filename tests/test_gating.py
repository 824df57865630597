"""Data checks gate the pipeline: a manifest that fails its Great Expectations suite stops
``mimicflow validate`` (and so ``dvc repro``) with one line, unless ``validate.on_failure`` is
``warn``; the data docs keep every run (real GX, real DVC, the installed CLI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimicflow import EMOTIONS

MIMICFLOW = str(Path(sys.executable).parent / "mimicflow")
# Each test runs the CLI (GX import, a GX context): 15 s of CPU or more.
pytestmark = pytest.mark.pipeline


@pytest.fixture
def unusable_clips(tmp_path) -> Path:
    """A dataset in the Hume layout whose every clip is unreadable: the manifest is empty, and an
    empty manifest fails its suite (at least one row)."""
    root = tmp_path / "dataset"
    (root / "raw").mkdir(parents=True)
    for clip in ("00001", "00002"):
        (root / "raw" / f"{clip}.mp4").write_bytes(b"not a video")
    (root / "train_split.csv").write_text(
        "Filename," + ",".join(EMOTIONS) + "\n00001," + ",".join(["0.5"] * len(EMOTIONS)) + "\n"
    )
    return root


def _validate(root: Path, out: Path, on_failure: str | None = None):
    params = out.parent / f"params-{on_failure}.yaml"
    params.write_text(
        yaml.safe_dump({"validate": {"on_failure": on_failure}} if on_failure else {})
    )
    command = [MIMICFLOW, "validate", str(root), "--out", str(out), "--params", str(params)]
    # in the test's folder: with --out nothing may land there (asserted below)
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, cwd=out.parent
    )


def test_a_failing_manifest_stops_validate_with_one_line(unusable_clips, tmp_path):
    result = _validate(unusable_clips, tmp_path / "out")  # on_failure: stop, the default
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert "fails its Great Expectations suite" in errors[0] and "data_docs" in errors[0]


def test_warn_carries_on_and_the_data_docs_keep_every_run(unusable_clips, tmp_path):
    out = tmp_path / "out"
    for run in range(2):
        if run:  # as `dvc repro` does before it runs the stage again
            shutil.rmtree(out / "data_docs")
        result = _validate(unusable_clips, out, "warn")
        assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gx_manifest_success"] is False and summary["clips_usable"] == 0
    runs = sorted((out / "data_docs" / "validations" / "manifest").glob("*/*/*.html"))
    assert len(runs) == 2  # one page per run: the first rebuilt from the context's results
    results = sorted((out / "gx").rglob("validations/manifest/**/*.json"))
    assert len(results) == 2  # the file-backed context keeps each run's result
    index = (out / "data_docs" / "index.html").read_text(encoding="utf-8")
    assert all(run.parent.name in index for run in runs)
    assert not (tmp_path / "reports").exists()  # with --out, nothing is written outside it


DVC_YAML = """\
stages:
  validate:
    cmd: {mimicflow} validate dataset --out validated
    deps: [dataset]
    params: [validate]
    outs: [validated/manifest.parquet, validated/data_docs]
    metrics:
      - validated/summary.json: {{cache: false}}
  downstream:
    cmd: python -c "open('downstream.txt', 'w')"
    deps: [validated/manifest.parquet]
    outs: [downstream.txt]
"""


def test_dvc_repro_stops_at_validate(unusable_clips, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    unusable_clips.rename(repo / "dataset")
    (repo / "dvc.yaml").write_text(DVC_YAML.format(mimicflow=MIMICFLOW))
    (repo / "params.yaml").write_text(yaml.safe_dump({"validate": {"on_failure": "stop"}}))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)

    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "fails its Great Expectations suite" in output and "Traceback" not in output
    assert not (repo / "downstream.txt").exists()
