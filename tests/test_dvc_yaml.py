"""``dvc.yaml`` is precise: each stage's code deps are the files it runs, and changing a param
makes exactly the stages it shapes stale (real DVC, in a temporary repository)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helpers.code_deps import code_deps

ROOT = Path(__file__).resolve().parents[1]
ENTRY = {  # each stage's entry module (what `mimicflow ...` in its cmd runs)
    "models": "mimicflow.models.catalogue",
    "demo_data": "mimicflow.data.synth.generator",
    "validate": "mimicflow.stages.validate",
    "faces": "mimicflow.stages.faces",
    "asr": "mimicflow.stages.asr",
    "adapt": "mimicflow.stages.adapt",
    "features": "mimicflow.stages.features",
    "inputs": "mimicflow.stages.train",
    "train": "mimicflow.stages.train",
    "ensemble": "mimicflow.stages.train",
    "compare": "mimicflow.stages.compare",
    "member": "mimicflow.stages.members",
    "combine": "mimicflow.stages.members",
    "reference": "mimicflow.monitoring.profile",
}


PIPELINES = ("dvc.yaml", "pipelines/compare/dvc.yaml")
COMPARE = "pipelines/compare/dvc.yaml:compare"


def _stages() -> dict:
    return {
        name: stage
        for path in PIPELINES
        for name, stage in yaml.safe_load((ROOT / path).read_text())["stages"].items()
    }


@pytest.mark.parametrize("stage", sorted(ENTRY))
def test_code_deps_are_the_files_the_stage_runs(stage):
    definition = _stages()[stage]
    deps = (definition.get("do") or definition)["deps"]
    listed = sorted(d for d in deps if d.startswith("src/") and d.endswith(".py"))
    # a plug-in package (its __init__ imports every module in it) is listed as its folder
    listed = sorted(
        listed
        + [
            str(f.relative_to(ROOT))
            for d in deps
            if (ROOT / d).is_dir()
            for f in (ROOT / d).glob("*.py")
        ]
    )
    assert listed == code_deps(ENTRY[stage]), f"{stage}: list exactly these code deps"


def _dvc(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _locked(repo: Path, members: dict | None = None) -> Path:
    """A copy of the pipeline definition and code in ``repo`` (with ``members`` as
    ``ensemble.members``) with every dep and output stood in by a small file, committed to
    dvc.lock as if the pipeline had run."""
    shutil.copy(ROOT / "dvc.yaml", repo)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ensemble"]["members"] = members or {}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(ROOT / "pipelines", repo / "pipelines")
    shutil.copytree(
        ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc:
        paths = {Path(o.fs_path) for s in dvc.index.stages for o in [*s.deps, *s.outs]}
    for path in sorted(paths):
        if not path.exists():
            if path.suffix:  # a file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(path.name)
            else:  # a folder
                path.mkdir(parents=True, exist_ok=True)
                (path / "stand-in").write_text(path.name)
    _dvc(repo, "commit", "--force", "-q")
    assert json.loads(_dvc(repo, "status", "--json")) == {}
    return repo


@pytest.fixture(scope="module")
def locked_repo(tmp_path_factory):
    return _locked(tmp_path_factory.mktemp("dvcrepo"))


@pytest.mark.pipeline  # runs DVC
@pytest.mark.parametrize(
    "key, value, stale",
    [
        ("features.batch_size", 3, set()),  # every encoder is batch-independent
        ("compute.workers", 1, set()),
        ("train.fuxi.lr", 0.01, {COMPARE}),  # not the default system
        ("train.taemi.heads", 2, {COMPARE}),
        ("train.mimicmetrics.lr", 0.01, {f"train@{k}" for k in range(5)} | {"ensemble", COMPARE}),
        (
            "train.inputs",
            ["audio", "text"],
            {"inputs", *(f"train@{k}" for k in range(5))} | {"ensemble", COMPARE},
        ),
        ("faces.fps", 5, {"faces"}),
        ("features.sets.text.layers", -2, {"features@text", COMPARE}),
        ("monitor.components", 4, {"reference"}),
        ("demo.seed", 8, {"demo_data"}),
    ],
)
def test_a_param_makes_exactly_its_stages_stale(locked_repo, key, value, stale):
    params_file = locked_repo / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    section = params
    *parents, last = key.split(".")
    for part in parents:
        section = section[part]
    section[last] = value
    try:
        params_file.write_text(yaml.safe_dump(params))
        assert set(json.loads(_dvc(locked_repo, "status", "--json"))) == stale
    finally:
        params_file.write_text(original)


@pytest.mark.pipeline  # runs DVC
def test_train_folds_make_one_train_stage_each(tmp_path):
    """``train.folds`` is the only place the fold count lives: three folds, three stages, each
    with its DVCLive metrics declared."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["folds"] = [0, 1, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    _dvc(tmp_path, "init", "-q")
    listed = [line.split()[0] for line in _dvc(tmp_path, "stage", "list").splitlines()]
    assert [s for s in listed if s.startswith("train@")] == ["train@0", "train@1", "train@2"]
    for fold in range(3):  # what DVCLive writes for the fold
        path = tmp_path / "reports" / "training" / "curves" / f"fold_{fold}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"step": 9, "val_mean_pearson": fold / 10}))
    shown = json.loads(_dvc(tmp_path, "metrics", "show", "--json"))[""]["data"]
    folds = {p: m["data"]["val_mean_pearson"] for p, m in shown.items() if "curves" in p}
    assert folds == {f"reports/training/curves/fold_{k}/metrics.json": k / 10 for k in range(3)}


def test_the_pipeline_flow_orders_the_real_stages_and_runs_the_independent_ones_at_once(tmp_path):
    """The Prefect pipeline flow's task graph (``dvc_graph``: DVC's own graph of the project's
    ``dvc.yaml``) in groups: validate → faces | asr → adapt → features@* → inputs → train@* →
    ensemble → package | reference, each group's stages at once and after every earlier group;
    the comparison (its own pipeline file) is not in it."""
    from mimicflow.orchestration import dvc_graph, stage_groups

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    features = [f"features@{name}" for name in params["features"]["sets"]]
    folds = [f"train@{k}" for k in params["train"]["folds"]]
    assert params["ensemble"]["members"] == {}  # by default: no member@ stage
    # the project's dvc.yaml and params read from a copy: DVC's API writes .dvc/tmp
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    upstream = dvc_graph(tmp_path)
    assert stage_groups(upstream) == [
        ["models", "demo_data"],
        ["validate"],
        ["faces", "asr", "combine"],  # no members: combine has nothing to wait for
        ["adapt"],
        features,
        ["inputs"],
        folds,
        ["ensemble"],
        ["package", "reference"],
    ]
    assert set(upstream["ensemble"]) >= {"inputs", *folds}
    assert not set(upstream["reference"]) & {"package"}  # bento and profile side by side
    assert "combine" in upstream["package"]
    # less compare; the foreach definitions (member: none by default) replaced by their items
    assert len(upstream) == len(_stages()) - 4 + len(features) + len(folds)


@pytest.mark.pipeline  # spawns dvc (the unit tier spawns none)
def test_make_clean_removes_every_declared_output(tmp_path):
    """``make clean`` removes what DVC lists as the pipelines' outputs, nothing else."""
    from mimicflow.orchestration import dvc_outputs

    for name in ("dvc.yaml", "params.yaml", "Makefile"):
        shutil.copy(ROOT / name, tmp_path)
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    _dvc(tmp_path, "init", "-q")
    outputs = dvc_outputs(tmp_path)
    assert "models/ensemble" in outputs and "reports/training/compare.json" in outputs
    for path in (tmp_path / p for p in outputs):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix:
            path.write_text("stand-in")
        else:
            path.mkdir(exist_ok=True)
            (path / "stand-in").write_text("stand-in")
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["make", "clean"],
        cwd=tmp_path,
        env=os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p for p in outputs if (tmp_path / p).exists()] == []
    assert (tmp_path / "params.yaml").is_file() and (tmp_path / "pipelines").is_dir()


@pytest.mark.pipeline  # runs DVC
def test_adding_a_member_trains_only_that_member(tmp_path):
    """``ensemble.members``: each member is a stage of its own; adding one (as ``dvc exp run
    -S`` does) makes only it and the combination stale, changing one member's overlay only it."""
    repo = _locked(tmp_path, {"taemi": {"recipe": "taemi", "flavour": "demo"}})
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    listed = [line.split()[0] for line in _dvc(repo, "stage", "list").splitlines()]
    assert [s for s in listed if s.startswith("member@")] == ["member@taemi"]
    params = yaml.safe_load(original)
    params["ensemble"]["members"]["abaw8"] = {"recipe": "augsburg-abaw8"}
    params_file.write_text(yaml.safe_dump(params))
    assert set(json.loads(_dvc(repo, "status", "--json"))) == {"member@abaw8", "combine"}
    params = yaml.safe_load(original)
    params["ensemble"]["members"]["taemi"]["overlay"] = {"train": {"epochs": 3}}
    params_file.write_text(yaml.safe_dump(params))
    assert set(json.loads(_dvc(repo, "status", "--json"))) == {"member@taemi", "combine"}
