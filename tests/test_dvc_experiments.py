"""DVC experiments: the metrics and plots files are versioned (git sees them, the cache keeps the
rest), and an experiment with a changed param appears beside the committed baseline with its
metric (real git and DVC, in a temporary repository)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _git_ignored(path: str) -> bool:
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    assert result.returncode in (0, 1), f"git check-ignore failed on {path}"
    return result.returncode == 0


def _outputs() -> tuple[list[str], list[str]]:
    """The pipeline's outputs as (uncached metrics and plots files, cached outputs), with
    folders stood in by a file inside them."""
    from dvc.repo import Repo

    versioned, cached = [], []
    with Repo(str(ROOT)) as repo:
        for out in (o for stage in repo.index.stages for o in stage.outs):
            path = Path(out.fs_path).relative_to(ROOT).as_posix()
            if out.plot and not Path(path).suffix:  # a DVCLive folder of curves
                path = f"{path}/metrics/val_mean_pearson.tsv"
            elif not Path(path).suffix:
                path = f"{path}/stand-in"
            (cached if out.use_cache else versioned).append(path)
    return versioned, cached


@pytest.mark.pipeline  # DVC on this repository (it writes .dvc/tmp)
def test_metrics_and_plots_are_versioned_and_the_rest_is_cached():
    versioned, cached = _outputs()
    assert "reports/training/metrics.json" in versioned
    assert "reports/training/curves/fold_0/metrics.json" in versioned
    assert [p for p in versioned if _git_ignored(p)] == []
    assert [p for p in cached if not _git_ignored(p)] == []


def _run(repo: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


TRAIN = """\
import json, yaml
params = yaml.safe_load(open("params.yaml"))["train"]
json.dump({"score": params["lr"] * params["epochs"]}, open("metrics.json", "w"))
"""
DVC_YAML = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [train.lr, train.epochs]
    metrics:
      - metrics.json: {cache: false}
"""


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, sys.executable, "-m", "dvc", *args)


@pytest.mark.pipeline
def test_an_experiment_appears_beside_the_baseline_with_its_metric(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"lr": 0.5, "epochs": 4}}))
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "config", "user.email", "test@example.com")
    _run(repo, "git", "config", "user.name", "test")
    _dvc(repo, "init", "-q")
    _dvc(repo, "repro", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "baseline")

    _dvc(repo, "exp", "run", "-S", "train.lr=2", "--name", "faster")
    shown = json.loads(_dvc(repo, "exp", "show", "--json"))

    baseline = next(row for row in shown if row["rev"] != "workspace")  # the commit
    experiments = {e["name"]: e["revs"][0]["data"] for e in baseline["experiments"]}
    base_data = baseline["data"]
    assert base_data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.5
    assert base_data["metrics"]["metrics.json"]["data"]["score"] == 2.0
    faster = experiments["faster"]
    assert faster["params"]["params.yaml"]["data"]["train"] == {"lr": 2, "epochs": 4}
    assert faster["metrics"]["metrics.json"]["data"]["score"] == 8.0
    # The workspace is the experiment's: `dvc metrics diff` compares it with the baseline.
    diff = json.loads(_dvc(repo, "metrics", "diff", "--json"))
    assert diff["metrics.json"]["score"] == {"old": 2.0, "new": 8, "diff": 6.0}


@pytest.mark.pipeline  # spawns dvc (the unit tier spawns none)
def test_plots_show_one_chart_per_metric_with_a_line_per_fold(tmp_path):
    """``dvc plots show`` on the project's ``dvc.yaml``: the DVCLive curves of every fold, as
    ``ensemble`` gathers them, make one chart per metric, one line (colour) per fold."""
    import shutil

    import pandas as pd

    from mimicflow.config import Params
    from mimicflow.paths import StagePaths
    from mimicflow.stages.train import gather_curves

    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    _run(tmp_path, "git", "init", "-q")
    _dvc(tmp_path, "init", "-q")
    shutil.copytree(ROOT / ".dvc" / "plots", tmp_path / ".dvc" / "plots")
    paths = StagePaths(Params())
    folds = [0, 1, 2, 3, 4]
    for fold in folds:  # what DVCLive writes: one TSV per metric
        metrics = tmp_path / paths.curves(fold) / "plots" / "metrics"
        metrics.mkdir(parents=True)
        steps = range(3 + fold)
        for name in ("train_loss", "val_mean_pearson"):
            table = pd.DataFrame({"step": steps, name: [fold + s / 10 for s in steps]})
            table.to_csv(metrics / f"{name}.tsv", sep="\t", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        curves = gather_curves(paths, folds)
        curves.to_csv(paths.reports / "curves.tsv", sep="\t", index=False)
    shown = json.loads(_dvc(tmp_path, "plots", "show", "--json"))
    charts = {name: plots for name, plots in shown["data"].items() if "per fold" in name}
    assert sorted(charts) == ["Training loss per fold", "Validation mean Pearson per fold"]
    for plots in charts.values():
        (chart,) = plots  # one chart, every fold in it
        content = chart["content"]
        assert content["encoding"]["color"]["field"] == "fold"
        values = content["data"]["values"]
        assert sorted({int(v["fold"]) for v in values}) == folds
        assert len(values) == sum(3 + fold for fold in folds)
    assert not [name for name in shown["data"] if "fold_" in name]  # no chart per file
