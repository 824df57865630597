"""`mimicflow recipe dry-run`: every recipe's paper flavour end to end on miniature models of
its architecture classes, through the real CLI in its own process; a failure names its stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimicflow.config import Params

ROOT = Path(__file__).resolve().parents[1]
# Every recipe in recipes/, on 6 clips (2 a split: the fewest the chain runs on). The default run
# (pipeline tier) dry-runs the recipes without encoder fine-tuning, about 20-60 CPU-seconds each
# (docs/recipes.md has the figures); Augsburg's two recipes fine-tune audEERING's wav2vec2 end
# to end with the paper's LSTM head over 600 frames (minutes an epoch on 2 cores): slow tier.
# Fuxi's dry-run is the killed-and-rerun test's rerun (the same checks), so its own is slow too.
DEFAULT_TIER = {"casia", "mimicmetrics", "taemi", "ustc"}
DRY_CLIPS = "6"
NAMES = [
    pytest.param(p.stem, marks=() if p.stem in DEFAULT_TIER else pytest.mark.slow)
    for p in sorted((ROOT / "recipes").glob("*.yaml"))
]
CHAIN = ["models", "data", "validate", "faces", "asr", "features", "train", "ensemble"]


def _dry_run(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mimicflow.cli", "recipe", "dry-run", *args]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False)


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_dry_runs(name, synth_root, models_dir, tmp_path):
    params = tmp_path / "params.yaml"
    defaults = Params().model_dump(mode="json", by_alias=True)
    defaults["models"]["dir"] = str(models_dir)
    params.write_text(yaml.safe_dump(defaults))
    scratch = tmp_path / "scratch"
    run = _dry_run(
        name,
        "--json",
        "--clips",
        DRY_CLIPS,
        "--data",
        str(synth_root),
        "--scratch",
        str(scratch),
        "--params",
        str(params),
    )
    _assert_passed(run, name, scratch)


def _assert_passed(run: subprocess.CompletedProcess, name: str, scratch: Path) -> None:
    """A ``--json`` dry-run of ``name`` passed: every stage's row in order, the last one with the
    served-vs-evaluated check, its scratch folder removed."""
    assert run.returncode == 0, run.stdout + run.stderr
    rows = json.loads(run.stdout)
    stages = [r["stage"] for r in rows]
    adapts = name in ("augsburg-abaw8", "augsburg", "ustc")
    assert stages == [*CHAIN[:5], *(["adapt"] if adapts else []), *CHAIN[5:], "package", "serve"]
    assert all(r["seconds"] >= 0 and r["peak_rss_mb"] > 0 for r in rows)
    assert "|served − evaluated|" in rows[-1]["outputs"]
    assert not scratch.exists()  # a pass removes its scratch folder


def test_an_unknown_recipe_is_one_line():
    run = _dry_run("hsemotion")
    assert run.returncode == 2 and "no recipe 'hsemotion'" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr


def test_a_failing_stage_is_named_and_its_files_stay_in_the_scratch(tmp_path):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (ROOT / "recipes" / "fuxi.yaml").read_text()
    (recipes / "fuxi.yaml").write_text(text.replace("THUDM/chatglm3-6b", "nobody/no-miniature"))
    scratch = tmp_path / "scratch"
    run = _dry_run("fuxi", "--scratch", str(scratch), "--recipes", str(recipes))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "error: dry-run failed at stage models: LookupError: no miniature of nobody/no-miniature"
    )
    assert str(scratch) in errors[0] and (scratch / "weights").is_dir()
    assert "Traceback" not in run.stderr


def _tree(folder: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (but ``skip``, and the interpreter's bytecode caches of the
    repository's modules) with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
        if skip is None or skip not in p.parents
    }


def _running(scratch: Path) -> list[int]:
    """The processes whose command line names ``scratch`` (a dry-run's, or its children's)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(scratch) in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _kill_after(command, env, cwd, stage: str, signum: int) -> int:
    """Start the dry-run, send ``signum`` when it has printed ``stage``'s row; its exit code."""
    run = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, text=True)
    try:
        for line in run.stdout:
            if line.split()[:1] == [stage]:
                break
        run.send_signal(signum)
        return run.wait(timeout=60)
    finally:
        run.kill()  # a run that did not stop is not left behind
        run.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_dry_run_leaves_nothing_outside_its_scratch_and_a_rerun_starts_clean(
    synth_root, models_dir, tmp_path
):
    """SIGTERM after validate, then SIGKILL (no handler runs) after faces: no process of the
    run is left, nothing changed in the repository, the working folder, $TMPDIR or $HOME; the
    rerun in the same scratch folder passes."""
    import signal
    import time

    params = tmp_path / "params.yaml"
    defaults = Params().model_dump(mode="json", by_alias=True)
    defaults["models"]["dir"] = str(models_dir)
    params.write_text(yaml.safe_dump(defaults))
    cwd, home, tmp, scratch = (tmp_path / n for n in ("cwd", "home", "tmp", "scratch"))
    for folder in (cwd, home, tmp):
        folder.mkdir()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HOME": str(home), "TMPDIR": str(tmp)}
    command = [sys.executable, "-m", "mimicflow.cli", "recipe", "dry-run", "fuxi", "--clips"]
    command += [DRY_CLIPS, "--data", str(synth_root), "--scratch", str(scratch)]
    command += ["--params", str(params)]
    command += ["--recipes", str(ROOT / "recipes")]
    repo = _tree(ROOT, skip=ROOT / ".git")
    for stage, signum in (("validate", signal.SIGTERM), ("faces", signal.SIGKILL)):
        code = _kill_after(command, env, cwd, stage, signum)
        assert code == -signum or code == 128 + signum, code
        for _ in range(50):  # the run's process group goes with it
            if not _running(scratch):
                break
            time.sleep(0.2)
        assert _running(scratch) == []
        assert (scratch / "validated").is_dir()  # half-way: its files are in the scratch
        assert _tree(cwd) == _tree(home) == _tree(tmp) == {}
        assert _tree(ROOT, skip=ROOT / ".git") == repo
    rerun = subprocess.run(
        [*command, "--json"], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    _assert_passed(rerun, "fuxi", scratch)
    assert _tree(cwd) == _tree(home) == _tree(tmp) == {}
    assert _tree(ROOT, skip=ROOT / ".git") == repo
