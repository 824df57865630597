"""The README's experiment workflow, timed on a small copy of the project: the pipeline from
scratch (``dvc repro``), ``make baseline``, then ``dvc exp run --temp -S train.seed=11``, which
reruns only ``train@*``, ``ensemble`` and what follows.

    python bench/bench_experiment.py [--clips 16] [--epochs 2] [--workdir DIR]

Real stages, real DVC, in a temporary git repository (the project's dvc.yaml, pipelines/,
params.yaml with the demo set cut to --clips clips and --epochs epochs, src/, Makefile,
bentofile.yaml); the bento goes to a private BentoML home. Prints the seconds of each step and the
stages the experiment ran; writes bench/results/experiment.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FILES = ("dvc.yaml", "pyproject.toml", "bentofile.yaml", "Makefile", ".gitignore")


def project(folder: Path, clips: int, epochs: int) -> Path:
    """The project's pipeline files and code in a fresh git + DVC repository at ``folder``."""
    for name in FILES:
        shutil.copy(REPO / name, folder)
    for tree in ("src", "pipelines"):
        shutil.copytree(REPO / tree, folder / tree, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "models" / "members").mkdir(parents=True)  # combine's dependency, kept in git
    shutil.copy(REPO / "models" / "members" / ".gitkeep", folder / "models" / "members")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"]["n_clips"] = clips
    params["train"] |= {"epochs": epochs, "patience": epochs}
    params["train"]["mimicmetrics"]["pretrain_epochs"] = 1
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def timed(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mimicflow-experiment-"))
    (work / "project").mkdir(parents=True)
    folder = project(work / "project", args.clips, args.epochs)
    bin_dir = str(Path(sys.executable).parent)
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BENTOML_HOME": str(work / "bentoml"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        timed(command, folder, env)
    timed(["git", "commit", "-qm", "the project"], folder, env)
    rows = {"dvc repro (from scratch)": timed(["dvc", "repro"], folder, env)[0]}
    rows["make baseline"] = timed(["make", "baseline"], folder, env)[0]
    seconds, output = timed(["dvc", "exp", "run", "--temp", "-S", "train.seed=11"], folder, env)
    rows["dvc exp run --temp -S train.seed=11"] = seconds
    ran = re.findall(r"Running stage '([^']+)'", output)
    for step, value in rows.items():
        print(f"{step:40s} {value:8.1f} s")
    print(f"the experiment ran: {', '.join(ran)}")
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    summary = {"clips": args.clips, "epochs": args.epochs, "seconds": rows, "ran": ran}
    (results / "experiment.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
