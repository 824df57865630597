"""The DVC baseline workflow on the project's own pipeline files (real git, DVC and make, in a
temporary repository): ``dvc repro``, then ``make baseline`` commits dvc.lock and the metrics and
plots files; after it an experiment changing ``train.seed`` runs only ``train@*``, ``ensemble``
and what follows, and encoding one more feature set retrains nothing.

Each stage's command is a stand-in ``mimicflow`` first on PATH: it logs the command and writes
the outputs ``dvc.yaml`` declares for it, their content the command and ``params.yaml`` (a
stage's outputs change when it reruns under other params). Every other ``mimicflow`` command,
the ``inputs`` stage included, is the real one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import chdir
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.pipeline  # real git, DVC and make repositories

ROOT = Path(__file__).resolve().parents[1]
REAL = ("mimicflow stage inputs",)  # stage commands that run for real
COMPARE = "pipelines/compare/dvc.yaml:compare"
STAND_IN = """\
import hashlib, json, os, sys
from pathlib import Path

command = " ".join(["mimicflow", *sys.argv[1:]])
outs = json.loads(Path(os.environ["STAND_IN_OUTS"]).read_text())
if command in outs:  # a stage's command: logged
    with open(os.environ["STAND_IN_LOG"], "a") as log:
        log.write(command + "\\n")
if outs.get(command) is None:  # not a stage's, or one that runs for real
    os.execv(sys.executable, [sys.executable, "-m", "mimicflow.cli", *sys.argv[1:]])
stamp = hashlib.sha256((command + Path("params.yaml").read_text()).encode()).hexdigest()
for out in outs[command]:
    path = Path(out)
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"stamp": stamp}))
    else:  # a folder: a feature set's store is read from <set>/packed
        (path / "packed").mkdir(parents=True, exist_ok=True)
        (path / "packed" / "stand-in").write_text(stamp)
"""


class Project:
    """The temporary repository, its environment and the stand-in's log."""

    def __init__(self, path: Path, bin_dir: Path):
        self.path, self.log, self.outs = path, bin_dir / "ran.log", bin_dir / "outs.json"
        self.env = os.environ | {
            "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
            + os.environ.get("PATH", ""),
            "STAND_IN_LOG": str(self.log),
            "STAND_IN_OUTS": str(self.outs),
            "DVC_NO_ANALYTICS": "1",
        }

    def run(self, *command: str) -> str:
        result = subprocess.run(
            command, cwd=self.path, env=self.env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result.stdout

    def dvc(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "dvc", *args)

    def dvc_stderr(self, *args: str) -> str:
        command = [sys.executable, "-m", "dvc", *args]
        result = subprocess.run(
            command, cwd=self.path, env=self.env, capture_output=True, text=True, check=True
        )
        return result.stderr

    def map_stages(self) -> dict[str, str]:
        """Write the stand-in's command → outputs map; returns command → stage name."""
        from dvc.repo import Repo

        with chdir(self.path), Repo(".") as repo:  # addresses relative to the project
            stages = [s for s in repo.index.stages if s.cmd]
            root = Path(repo.root_dir)
            outs = {
                s.cmd: None
                if s.cmd in REAL
                else [Path(o.fs_path).relative_to(root).as_posix() for o in s.outs]
                for s in stages
            }
            names = {s.cmd: s.addressing for s in stages}
        self.outs.write_text(json.dumps(outs))
        return names

    def ran(self, names: dict[str, str]) -> set[str]:
        """The stages whose commands ran since the last call."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.write_text("")
        return {names[line] for line in lines}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The project after `dvc repro` and `make baseline`, and its command → stage map."""
    path = tmp_path_factory.mktemp("project")
    for name in (
        "dvc.yaml",
        "params.yaml",
        "pyproject.toml",
        "bentofile.yaml",
        "Makefile",
        ".gitignore",
    ):
        shutil.copy(ROOT / name, path)
    shutil.copytree(ROOT / "pipelines", path / "pipelines")
    shutil.copytree(
        ROOT / "src", path / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    (path / "models" / "members").mkdir(parents=True)  # in git as models/members/.gitkeep
    shutil.copy(ROOT / "models" / "members" / ".gitkeep", path / "models" / "members")
    bin_dir = tmp_path_factory.mktemp("bin")
    stand_in = bin_dir / "mimicflow"
    stand_in.write_text(f"#!{sys.executable}\n{STAND_IN}")
    stand_in.chmod(0o755)
    project = Project(path, bin_dir)
    project.run("git", "init", "-q")
    project.run("git", "config", "user.email", "test@example.com")
    project.run("git", "config", "user.name", "test")
    project.dvc("init", "-q")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "the project")
    names = project.map_stages()
    project.dvc("repro")  # the root dvc.yaml: every stage but the comparison
    ran = project.ran(names)
    assert ran == set(names.values()) - {COMPARE}
    project.run("make", "baseline")
    return project, names


def test_the_baseline_commits_the_lock_and_metrics_and_leaves_nothing_behind(baseline):
    project, _ = baseline
    assert project.run("git", "status", "--porcelain") == ""
    committed = set(project.run("git", "show", "--name-only", "--format=", "HEAD").split())
    assert {"dvc.lock", "reports/training/metrics.json", "reports/training/curves.tsv"} <= committed
    assert "models/ensemble" not in committed  # cached by DVC, not git
    # Every declared metric is there: no "DVC failed to load some metrics" (compare.json is
    # not a metric: the comparison may never run).
    assert project.dvc_stderr("metrics", "show") == ""
    # Up to date, but for the comparison, which `dvc repro` leaves out.
    assert set(json.loads(project.dvc("status", "--json"))) == {COMPARE}


def test_an_experiment_changing_the_seed_runs_only_training_and_what_follows(baseline):
    project, names = baseline
    project.dvc("exp", "run", "--temp", "-S", "train.seed=11", "--name", "seed11")
    assert project.ran(names) == {f"train@{k}" for k in range(5)} | {
        "ensemble",
        "package",
        "reference",
    }
    shown = json.loads(project.dvc("exp", "show", "--json"))
    commit = next(row for row in shown if row["rev"] != "workspace")
    assert "reports/training/metrics.json" in commit["data"]["metrics"]  # the baseline's, not "!"
    (experiment,) = [e for e in commit["experiments"] if e["name"] == "seed11"]
    data = experiment["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["seed"] == 11


def test_encoding_another_feature_set_retrains_nothing(baseline):
    project, _ = baseline
    params_file = project.path / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["features"]["sets"]["motion"] = {"modality": "visual", "model": "motion"}
    try:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        names = project.map_stages()
        project.dvc("repro")
        ran = project.ran(names)
        # `inputs` re-digests the sets mimicmetrics reads: unchanged, so no train@k runs.
        assert ran == {"features@motion", "inputs", "reference"}
        assert set(json.loads(project.dvc("status", "--json"))) == {COMPARE}
    finally:
        params_file.write_text(original)
