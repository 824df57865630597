"""End-to-end: the real DVC pipeline, as it stands, on a handful of synthetic clips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _run(args, cwd):
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=True)


@pytest.mark.pipeline
def test_dvc_repro_runs_the_pipeline_and_a_second_run_does_nothing(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "dvc.yaml", project)
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"]["n_clips"] = 16
    params["train"] |= {"epochs": 2, "patience": 2}
    params["train"]["mimicmetrics"]["pretrain_epochs"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], project)
    _run(["dvc", "init", "-q"], project)
    _run(["git", "add", "-A"], project)  # DVCLive (train stages) needs a repo with one commit
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], project)

    first = _run(["dvc", "repro", "ensemble"], project)  # compare, package, reference: own tests
    for stage in (
        "models",
        "demo_data",
        "validate",
        "faces",
        "asr",
        "adapt",
        "features@audio",
        "features@visual",
        "features@text",
        "inputs",
        "train@0",
        "train@4",
        "ensemble",
    ):
        assert f"Running stage '{stage}'" in first.stdout, stage
    assert (project / "models/pretrained/whisper-tiny.en/model.bin").exists()
    manifest = pd.read_parquet(project / "data/validated/manifest.parquet")
    assert len(manifest) == 16
    assert (project / "data/validated/data_docs/index.html").exists()
    assert (project / "models/ensemble/ensemble.json").exists()
    inputs = json.loads((project / "models/folds/inputs.json").read_text())
    assert sorted(inputs) == ["audio", "text", "visual"]  # what mimicmetrics reads
    curves = pd.read_csv(project / "reports/training/curves.tsv", sep="\t")
    assert sorted(curves["fold"].unique()) == params["train"]["folds"]
    assert {"step", "train_loss", "val_mean_pearson"} <= set(curves.columns)

    second = _run(["dvc", "repro", "ensemble"], project)
    assert "Running stage" not in second.stdout

    metrics = json.loads(_run(["dvc", "metrics", "show", "--json"], project).stdout)
    values = next(iter(metrics.values()))["data"]
    assert values["data/validated/summary.json"]["data"]["clips_usable"] == 16
    assert values["data/features/text.json"]["data"]["dim"] == 384
    training = values["reports/training/metrics.json"]["data"]
    assert training["demo_oracle_mean_pearson"] > 0.8 and "fraction_of_oracle" in training

    # switching one encoder setting invalidates that feature set and nothing else
    params["features"]["sets"]["text"]["layers"] = -2
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    status = json.loads(
        _run(["dvc", "status", "ensemble", "--with-deps", "--json"], project).stdout
    )
    assert set(status) == {"features@text"}
