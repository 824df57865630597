"""The pipeline flow runs independent DVC stages at once, on a real Prefect server and real DVC:
a tiny project (prepare → two feature sets → three folds → ensemble) whose stage commands record
when they ran. The folds overlap in time, DVC's state is clean after, and a fold that fails
leaves the others committed and cached: the rerun runs only it (and what depends on it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .prefect_server import BIN, prefect_env, run_pipeline_flow

REPO = Path(__file__).resolve().parents[1]
FOLDS = [0, 1, 2]
DVC_YAML = {
    "stages": {
        "prepare": {"cmd": "python work.py prepare", "deps": ["work.py"], "outs": ["prepared"]},
        "features": {
            "foreach": ["audio", "text"],
            "do": {
                "cmd": "python work.py features ${item}",
                "deps": ["work.py", "prepared"],
                "outs": ["features/${item}"],
            },
        },
        "train": {
            "foreach": FOLDS,
            "do": {
                "cmd": "python work.py train ${item}",
                "deps": ["work.py", "features"],
                "outs": ["folds/${item}"],
            },
        },
        "ensemble": {
            "cmd": "python work.py ensemble",
            "deps": ["work.py", "folds"],
            "outs": ["ensemble"],
            "metrics": [{"score.json": {"cache": False}}],
        },
    }
}
# Each stage writes <out>/times.json: when its command started and ended (seconds since the epoch).
# A fold named in broken.txt (not a dependency: the test removes it) fails.
WORK = """\
import json, pathlib, sys, time
stage, item = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
start = time.time()
broken = pathlib.Path("broken.txt")
if stage == "train" and broken.exists() and broken.read_text().strip() == item:
    sys.exit(f"fold {item} failed on purpose")
time.sleep(float(pathlib.Path("seconds.txt").read_text()))
out = {"prepare": "prepared", "features": f"features/{item}", "train": f"folds/{item}",
       "ensemble": "ensemble"}[stage]
pathlib.Path(out).mkdir(parents=True, exist_ok=True)
json.dump({"start": start, "end": time.time()}, open(f"{out}/times.json", "w"))
if stage == "ensemble":
    json.dump({"folds": len(list(pathlib.Path("folds").iterdir()))}, open("score.json", "w"))
"""


def _project(root: Path, seconds: float, concurrency: int, dask_address: str | None = None):
    root.mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / "work.py").write_text(WORK)
    (root / "seconds.txt").write_text(str(seconds))
    flows = {"retries": 0, "stage_concurrency": concurrency, "dask_address": dask_address}
    (root / "params.yaml").write_text(yaml.safe_dump({"flows": flows}))
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    return root


def _run_flow(prefect_api, project: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """``python flows/pipeline.py PROJECT``; returns it and each stage's outcome (the run's
    ``mimicflow-stages`` artifact)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
    )

    result = run_pipeline_flow(project, prefect_api, timeout=600)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["mimicflow-pipeline"]))
        )
        run = max(runs, key=lambda r: r.created)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    (artifact,) = [a for a in artifacts if a.key == "mimicflow-stages"]
    rows = json.loads(artifact.data)
    return result, {row["stage"]: row["outcome"] for row in rows}


def _dvc_status(project: Path) -> dict:
    done = subprocess.run(
        [str(BIN / "dvc"), "status", "--json"], cwd=project, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _times(project: Path, out: str) -> dict:
    return json.loads((project / out / "times.json").read_text())


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_independent_stages_run_at_once_and_dvc_stays_clean(prefect_api, tmp_path, engine):
    cluster = None
    if engine == "dask":
        from dask.distributed import LocalCluster

        cluster = LocalCluster(n_workers=3, threads_per_worker=1, processes=True)
    try:
        address = cluster.scheduler_address if cluster else None
        project = _project(tmp_path / "project", 8, concurrency=3, dask_address=address)
        result, outcomes = _run_flow(prefect_api, project)
    finally:
        if cluster:
            cluster.close()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(outcomes.values()) == {"ran"} and len(outcomes) == 7
    folds = [_times(project, f"folds/{k}") for k in FOLDS]
    assert max(t["start"] for t in folds) < min(t["end"] for t in folds)  # all three at once
    sets = [_times(project, f"features/{name}") for name in ("audio", "text")]
    assert max(t["start"] for t in sets) < min(t["end"] for t in sets)
    assert max(t["end"] for t in sets) <= min(t["start"] for t in folds)  # the order holds
    assert max(t["end"] for t in folds) <= _times(project, "ensemble")["start"]
    assert _dvc_status(project) == {}  # dvc.lock and the cache hold every stage's outputs
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert {f"train@{k}" for k in FOLDS} <= set(lock)


def test_a_failed_fold_leaves_the_others_cached_and_a_rerun_runs_only_it(prefect_api, tmp_path):
    project = _project(tmp_path / "project", 0.5, concurrency=3)
    (project / "broken.txt").write_text("1")
    result, outcomes = _run_flow(prefect_api, project)
    assert result.returncode != 0
    assert "1 stage(s) failed: train@1" in result.stdout + result.stderr
    assert outcomes["train@1"] == "failed" and outcomes["ensemble"] == "skipped"
    assert outcomes["train@0"] == outcomes["train@2"] == "ran"
    status = _dvc_status(project)
    assert set(status) == {"train@1", "ensemble"}, status  # the other folds are committed
    before = {k: _times(project, f"folds/{k}") for k in (0, 2)}
    for k in (0, 2):  # and cached: DVC restores them from its cache
        subprocess.run(["rm", "-r", str(project / "folds" / str(k))], check=True)
    subprocess.run([str(BIN / "dvc"), "checkout", "train@0", "train@2"], cwd=project, check=True)
    assert {k: _times(project, f"folds/{k}") for k in (0, 2)} == before

    (project / "broken.txt").unlink()
    result, outcomes = _run_flow(prefect_api, project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = {stage for stage, outcome in outcomes.items() if outcome == "ran"}
    assert ran == {"train@1", "ensemble"}, outcomes
    assert {k: _times(project, f"folds/{k}") for k in (0, 2)} == before
    assert _dvc_status(project) == {}


def test_run_graph_keeps_the_limit_and_skips_what_depends_on_a_failure():
    """The flow's scheduler on a thread pool: never more than ``limit`` stages at once, each
    after its upstream; a failure skips its dependents and stops nothing else."""
    import threading
    import time
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from mimicflow.orchestration import run_graph

    upstream = {"a": [], "f1": ["a"], "f2": ["a"], "f3": ["a"], "f4": ["a"], "e": ["f1", "f2"]}
    upstream |= {"g": ["f3", "f4"], "h": ["e"]}
    lock, running, peak, order = threading.Lock(), [0], [0], []

    def work(stage):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            order.append(stage)
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        if stage == "f2":
            raise RuntimeError("f2 broke:\nits traceback\nits last line")
        return "ran"

    with ThreadPoolExecutor(8) as pool:
        summary = run_graph(
            upstream,
            lambda stage: pool.submit(work, stage),
            2,
            lambda futures: next(iter(wait(futures, return_when=FIRST_COMPLETED).done)),
        )
    assert peak[0] == 2
    outcomes = {stage: entry["outcome"] for stage, entry in summary.items()}
    assert outcomes == {"a": "ran", "f1": "ran", "f2": "failed", "f3": "ran", "f4": "ran"} | {
        "e": "skipped",
        "g": "ran",
        "h": "skipped",
    }
    assert summary["f2"]["error"] == "f2 broke: its last line"
    assert order[0] == "a" and order[-1] == "g" and "e" not in order
    assert list(summary) == list(upstream)


# A long first attempt (the test kills its Dask worker meanwhile), a short second one.
SLOW = """\
import os, pathlib, time
started = pathlib.Path("started.txt")
attempts = started.read_text().split() if started.exists() else []
started.write_text(" ".join([*attempts, str(os.getpid())]))
time.sleep(120 if not attempts else 1)
pathlib.Path("done.txt").write_text("done")
"""


def test_a_dask_worker_lost_mid_stage_ends_its_stage_and_another_worker_runs_it(
    prefect_api, tmp_path
):
    import time

    import psutil
    from dask.distributed import LocalCluster

    url, home = prefect_api
    project = tmp_path / "project"
    project.mkdir()
    stage = {"cmd": "python slow.py", "deps": ["slow.py"], "outs": ["done.txt"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"slow": stage}}))
    (project / "slow.py").write_text(SLOW)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        flows = {"retries": 1, "retry_delay_s": 1, "dask_address": cluster.scheduler_address}
        (project / "params.yaml").write_text(yaml.safe_dump({"flows": flows}))
        for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
            subprocess.run(command, cwd=project, check=True, capture_output=True)
        flow = subprocess.Popen(
            [sys.executable, str(REPO / "flows" / "pipeline.py"), str(project)],
            cwd=project,
            env=prefect_env(home, url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 180
        while not (project / "started.txt").exists():
            assert time.time() < deadline and flow.poll() is None, "the stage never started"
            time.sleep(0.5)
        first = psutil.Process(int((project / "started.txt").read_text().split()[0]))
        from dask.distributed import Client

        with Client(cluster) as client:
            workers = set(client.run(os.getpid).values())
        (worker,) = [p for p in first.parents() if p.pid in workers]  # …dvc ← the worker
        worker.kill()
        output, _ = flow.communicate(timeout=300)
    assert flow.returncode == 0, output[-3000:]
    assert len((project / "started.txt").read_text().split()) == 2  # the stage ran again
    assert not first.is_running() or first.status() == psutil.STATUS_ZOMBIE  # the first ended
    assert _dvc_status(project) == {}
