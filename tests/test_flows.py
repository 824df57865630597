"""The Prefect pipeline flow on a real Prefect server and real DVC: a tiny DVC project whose
stages are cheap (one fails once, as a transient failure would), run once with
``python flows/pipeline.py`` and through ``mimicflow flows serve`` + ``run_deployment``; a
project with a stage that hangs shows the task timeout and the deployment's concurrency limit."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .prefect_server import BIN, prefect_env, run_pipeline_flow, stop

REPO = Path(__file__).resolve().parents[1]

DVC_YAML = """\
stages:
  count:           # listed first, runs second: the flow orders stages by their dependencies
    cmd: python count.py
    deps: [flaky.txt, count.py]
    metrics:
      - count.json: {cache: false}
  flaky:
    cmd: python flaky.py
    deps: [flaky.py]
    outs: [flaky.txt]
"""
FLAKY = """\
import pathlib, sys
marker = pathlib.Path(".attempted")
if not marker.exists():
    marker.touch()
    sys.exit("transient failure on the first attempt")
pathlib.Path("flaky.txt").write_text("ok\\n")
"""
COUNT = """\
import json
json.dump({"clips": 3, "mean_words": 7.5}, open("count.json", "w"))
print("tiny stage counted 3 clips")
"""
FLOWS = {
    "pipeline_cron": "17 3 * * *",
    "monitor_cron": "*/20 * * * *",
    "timezone": "Europe/Paris",
    "retries": 2,
    "retry_delay_s": 0,
}


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "flaky.py").write_text(FLAKY)
    (root / "count.py").write_text(COUNT)
    (root / "params.yaml").write_text(yaml.safe_dump({"flows": FLOWS}))
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    return root


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _check_run(flow_run_id, project: Path) -> None:
    """The run completed, retried the flaky stage, streamed DVC's output and left the artifact."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with _client() as client:
        run = client.read_flow_run(flow_run_id)
        assert run.state.is_completed(), run.state
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
        by_name = {t.name: t for t in tasks}
        assert by_name["dvc repro flaky"].run_count == 2  # failed once, retried
        assert by_name["dvc repro count"].state.is_completed()
        assert by_name["dvc repro flaky"].start_time < by_name["dvc repro count"].start_time
        deadline = time.time() + 30
        while time.time() < deadline:  # logs arrive in batches
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            text = "\n".join(log.message for log in logs)
            if "tiny stage counted 3 clips" in text:
                break
            time.sleep(1)
        assert "tiny stage counted 3 clips" in text  # the stage's own output, via DVC
        assert "transient failure on the first attempt" in text
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    by_key = {a.key: a for a in artifacts}
    stages = json.loads(by_key["mimicflow-stages"].data)
    outcomes = [(row["stage"], row["outcome"]) for row in stages]
    assert outcomes == [("flaky", "ran"), ("count", "ran")]
    metrics = json.loads(by_key["mimicflow-metrics"].data)
    assert {row["metric"]: row["value"] for row in metrics} == {"clips": 3, "mean_words": 7.5}
    link = by_key["mimicflow-reports"].data  # a link artifact is stored as markdown
    assert f"({(project / 'reports' / 'index.html').as_uri()})" in link
    assert (project / "flaky.txt").exists() and (project / "reports" / "index.html").exists()


def test_python_flows_pipeline_runs_the_dvc_stages_once(prefect_api, project):
    result = run_pipeline_flow(project, prefect_api, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _client() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["mimicflow-pipeline"]))
        )
    _check_run(max(runs, key=lambda r: r.created).id, project)


def test_serve_registers_the_schedules_and_runs_a_deployment_through_the_api(
    prefect_api, project, tmp_path
):
    url, home = prefect_api
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [str(BIN / "mimicflow"), "flows", "serve", "--project", str(project)],
        cwd=REPO,
        env=prefect_env(home, url),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployments = _wait_for_deployments(
            ["mimicflow-pipeline/nightly", "mimicflow-monitor/hourly"], serve, log, project
        )
        schedules = {name: d.schedules[0].schedule for name, d in deployments.items()}
        assert schedules["mimicflow-pipeline/nightly"].cron == FLOWS["pipeline_cron"]
        assert schedules["mimicflow-monitor/hourly"].cron == FLOWS["monitor_cron"]
        assert {s.timezone for s in schedules.values()} == {"Europe/Paris"}
        assert all(d.schedules[0].active for d in deployments.values())
        assert deployments["mimicflow-pipeline/nightly"].parameters == {"project": str(project)}

        from prefect.deployments import run_deployment

        run = run_deployment("mimicflow-pipeline/nightly", timeout=300)
        assert run.state.is_completed(), f"{run.state}\n{log.read_text()[-3000:]}"
        _check_run(run.id, project)
    finally:
        stop(serve)


def _wait_for_deployments(names, process, log, project, timeout=180):
    """The deployments as ``process`` registered them for ``project`` (an earlier test's serve
    left deployments of the same names, for its own project)."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.time() + timeout
    found = {}
    with _client() as client:
        while time.time() < deadline and len(found) < len(names):
            assert process.poll() is None, log.read_text()[-3000:]
            for name in names:
                try:
                    deployment = client.read_deployment_by_name(name)
                except ObjectNotFound:
                    deployment = None
                if deployment and deployment.parameters == {"project": str(project)}:
                    found[name] = deployment
                else:
                    time.sleep(1)
    assert len(found) == len(names), log.read_text()[-3000:]
    return found


HANG = """\
import os, pathlib, time
with open("started.txt", "a") as started:
    started.write(f"{os.getpid()}\\n")
time.sleep(300)
"""


def _wait_for_state(run_id, done, timeout=180):
    deadline = time.time() + timeout
    with _client() as client:
        while time.time() < deadline:
            run = client.read_flow_run(run_id)
            if done(run):
                return run
            time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} is still {run.state}")


def test_a_hung_stage_times_out_and_a_run_due_meanwhile_is_cancelled(prefect_api, tmp_path):
    import psutil
    from prefect.deployments import run_deployment

    url, home = prefect_api
    project = tmp_path / "hung"
    project.mkdir()
    stage = {"cmd": "python hang.py", "always_changed": True}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"hang": stage}}))
    (project / "hang.py").write_text(HANG)
    flows = FLOWS | {"retries": 0, "task_timeout_s": 15}
    (project / "params.yaml").write_text(yaml.safe_dump({"flows": flows}))
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=project, check=True, capture_output=True)
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [str(BIN / "mimicflow"), "flows", "serve", "--project", str(project)],
        cwd=REPO,
        env=prefect_env(home, url),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployment = _wait_for_deployments(["mimicflow-pipeline/nightly"], serve, log, project)
        options = deployment["mimicflow-pipeline/nightly"]
        assert options.global_concurrency_limit.limit == 1
        assert options.concurrency_options.collision_strategy == "CANCEL_NEW"

        first = run_deployment("mimicflow-pipeline/nightly", timeout=0)
        _wait_for_state(first.id, lambda _: (project / "started.txt").exists())  # stage running
        started = time.time()
        second = run_deployment("mimicflow-pipeline/nightly", timeout=0)
        second = _wait_for_state(second.id, lambda r: r.state.is_final())
        assert second.state.is_cancelled(), f"{second.state}\n{log.read_text()[-3000:]}"

        first = _wait_for_state(first.id, lambda r: r.state.is_final())
        assert first.state.is_failed(), first.state
        assert time.time() - started < 60  # the stage would sleep 300 s
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with _client() as client:
            runs = FlowRunFilter(id=FlowRunFilterId(any_=[first.id]))
            tasks = client.read_task_runs(flow_run_filter=runs)
        assert [t.state.name for t in tasks if t.name == "dvc repro hang"] == ["TimedOut"]
        pids = [int(p) for p in (project / "started.txt").read_text().split()]
        assert len(pids) == 1  # the cancelled run never started the stage
        deadline = time.time() + 10
        while psutil.pid_exists(pids[0]) and psutil.Process(pids[0]).status() != "zombie":
            assert time.time() < deadline, "the timed-out stage is still running"
            time.sleep(0.2)
    finally:
        stop(serve)


def test_prefect_deploy_registers_both_deployments_from_prefect_yaml(prefect_api, tmp_path):
    """``prefect deploy --all`` (prefect.yaml) on a real server, to a process work pool: both
    deployments, with params.yaml's schedules, one run at a time and the checkout to run in."""
    url, home = prefect_api
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "flows", checkout / "flows")
    shutil.copy(REPO / "prefect.yaml", checkout)
    env = prefect_env(home, url) | {"PWD": str(checkout)}  # a shell in the checkout sets it

    def prefect(*args: str) -> str:
        result = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    prefect("work-pool", "create", "mimicflow", "--type", "process", "--overwrite")
    prefect("deploy", "--all")
    listed = prefect("deployment", "ls")
    names = ["mimicflow-pipeline/nightly", "mimicflow-monitor/hourly"]
    assert all(name in listed for name in names), listed
    flows = yaml.safe_load((REPO / "params.yaml").read_text())["flows"]
    crons = [flows["pipeline_cron"], flows["monitor_cron"]]
    with _client() as client:
        for name, cron in zip(names, crons):
            deployment = client.read_deployment_by_name(name)
            (schedule,) = deployment.schedules
            assert (schedule.schedule.cron, schedule.schedule.timezone) == (
                cron,
                flows["timezone"],
            )
            assert deployment.work_pool_name == "mimicflow"
            assert deployment.parameters == {"project": "."}
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(checkout)}}
            ]
