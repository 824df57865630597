"""Drift over time: two real monitoring runs (a batch from the training data's generator, then a
shifted one) go into one Evidently workspace, project ``mimicflow``; their drift shares read
back through the Workspace API and from a real ``evidently ui`` serving that workspace."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from mimicflow.config import MonitorParams
from mimicflow.monitoring.monitor import run_monitor
from mimicflow.monitoring.profile import build_reference
from mimicflow.monitoring.workspace import PROJECT

from .helpers.shift import shift_dataset
from .prefect_server import BIN, free_port, stop

DRIFTED = "evidently:metric_v2:DriftedColumnsCount"


@pytest.fixture(scope="module")
def two_runs(featured, ensemble_dir, tmp_path_factory):
    """The reference from the session's pipeline outputs, then two monitoring runs; returns
    (their summaries, the monitor settings)."""
    from mimicflow.data.synth.generator import generate_dataset

    params, _ = featured
    root = tmp_path_factory.mktemp("drift_workspace")
    settings = MonitorParams(
        reference=root / "reference",
        work=root / "work",
        archive=root / "archive",
        reports=root / "reports",
        workspace=root / "workspace",
        settle_s=0,
    )
    params = params.model_copy(
        update={
            "monitor": settings,
            "ensemble": params.ensemble.model_copy(update={"out": ensemble_dir}),
        }
    )
    build_reference(params)
    generate_dataset(root / "same", 8, 41, workers=2, progress=False)
    generate_dataset(root / "source", 8, 43, workers=2, progress=False)
    shift_dataset(root / "source", root / "shifted", face_every=4)
    first = run_monitor(params, root / "same")
    time.sleep(1.1)  # run ids (and snapshot times) have one-second resolution
    second = run_monitor(params, root / "shifted")
    return [first, second], settings


def _runs(folder: Path) -> list[tuple]:
    """(timestamp, name, drift share) of each snapshot in the workspace, oldest first."""
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(folder))
    (project,) = workspace.search_project(PROJECT)
    runs = []
    for snapshot_id in workspace.list_runs(project.id):
        model = workspace.get_run(project.id, snapshot_id)
        (share,) = [
            r.share.value
            for r in Snapshot.load_model(model).metric_results.values()
            if r.metric_value_location.metric.params["type"] == DRIFTED
        ]
        runs.append((model.timestamp, model.name, share))
    return sorted(runs)


def test_each_run_is_a_snapshot_with_its_drift_share(two_runs):
    (first, second), settings = two_runs
    runs = _runs(settings.workspace)
    assert [name for _, name, _ in runs] == [first["run"], second["run"]]
    assert [share for *_, share in runs] == pytest.approx(
        [first["share"], second["share"]], abs=1e-4
    )
    assert first["drift"] is False and second["drift"] is True
    assert runs[0][0] < runs[1][0]  # stamped with each run's own time


def test_evidently_ui_charts_the_drift_share_per_run(two_runs):
    (first, second), settings = two_runs
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    process = subprocess.Popen(
        [
            str(BIN / "evidently"),
            "ui",
            "--workspace",
            str(settings.workspace),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, (
                "evidently ui did not start"
            )
            try:
                projects = httpx.get(f"{url}/projects", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.5)
        (project,) = [p for p in projects if p["name"] == PROJECT]
        dashboard = httpx.get(f"{url}/v2/dashboards/{project['id']}").json()
        (panel,) = [p for p in dashboard["panels"] if "Share of drifted" in p["title"]]
        (metric,) = panel["values"]
        query = {
            "series_filter": [
                {
                    "tags": [],
                    "metadata": {},
                    "metric": metric["metric"],
                    "metric_labels": metric["metric_labels"],
                }
            ]
        }
        series = httpx.post(
            f"{url}/v2/snapshots/{project['id']}/data_series_batch", json=query
        ).json()
    finally:
        stop(process)
    values = [v for s in series["series"] for v in s["values"] if v is not None]
    assert len(series["sources"]) == 2
    assert sorted(values) == pytest.approx(sorted([first["share"], second["share"]]), abs=1e-4)


@pytest.mark.heavy
def test_a_resumed_run_replaces_its_snapshot_instead_of_adding_a_second(tmp_path):
    """A run that died after adding its snapshot adds it again when resumed (with a report that
    may now cover more clips): the workspace keeps the newer one only."""
    import numpy as np
    import pandas as pd
    from evidently.ui.workspace import Workspace

    from mimicflow.monitoring.drift import drift_report
    from mimicflow.monitoring.workspace import SNAPSHOT_ID, add_run

    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(60, 3)), columns=list("abc"))
    report = tmp_path / "work" / "run" / "report"
    drift_report(
        reference,
        pd.DataFrame(rng.normal(size=(12, 3)), columns=list("abc")),
        report,
        MonitorParams(),
    )
    first = add_run(tmp_path / "workspace", report / "report.json", "run")
    drift_report(
        reference,
        pd.DataFrame(rng.normal(size=(20, 3)), columns=list("abc")),
        report,
        MonitorParams(),
    )
    second = add_run(tmp_path / "workspace", report / "report.json", "run")
    workspace = Workspace(str(tmp_path / "workspace"))
    (project,) = workspace.search_project(PROJECT)
    assert [str(i) for i in workspace.list_runs(project.id)] == [second] and second != first
    assert (report / SNAPSHOT_ID).read_text() == second


def test_a_snapshot_carries_the_batch_clips_model_and_verdict(tmp_path):
    """What the Evidently UI lists and filters runs by: the snapshot's metadata and tags."""
    import numpy as np
    import pandas as pd
    from evidently.ui.workspace import Workspace

    from mimicflow.monitoring.drift import drift_report
    from mimicflow.monitoring.workspace import add_run

    rng = np.random.default_rng(1)
    reference = pd.DataFrame(rng.normal(size=(80, 3)), columns=list("abc"))
    shifted = pd.DataFrame(rng.normal(3.0, 1.0, size=(15, 3)), columns=list("abc"))
    report = tmp_path / "report"
    labels = {"batch": "20261206T101500", "model_version": "mimicmetrics-0123456789ab"}
    summary = drift_report(reference, shifted, report, MonitorParams(), metadata=labels)
    add_run(tmp_path / "workspace", report / "report.json", labels["batch"])
    workspace = Workspace(str(tmp_path / "workspace"))
    (project,) = workspace.search_project(PROJECT)
    (run_id,) = workspace.list_runs(project.id)
    model = workspace.get_run(project.id, run_id)
    assert summary["drift"] is True
    assert model.metadata == labels | {"clips": "15", "verdict": "drift"}
    assert set(model.tags) == {
        "drift",
        "batch:20261206T101500",
        "model_version:mimicmetrics-0123456789ab",
    }
