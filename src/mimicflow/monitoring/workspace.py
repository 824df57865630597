"""Drift over time: every monitoring run's Evidently snapshot goes into a local Evidently
workspace (``monitor.workspace``), project ``mimicflow``, with the run's time, so
``evidently ui --workspace <dir>`` charts the share of drifted columns run after run (the
project's dashboard panel) and opens each run's report. Runs add to it one at a time (the
monitor holds its work-folder lock), so the project is created exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evidently.ui.workspace import Project, Workspace

PROJECT = "mimicflow"
SNAPSHOT_ID = "evidently_snapshot_id.txt"  # beside a run's report.json


def project(workspace: Workspace) -> Project:
    """The ``mimicflow`` project, created with its dashboard on first use."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    found = workspace.search_project(PROJECT)
    if found:
        return found[0]
    made = workspace.create_project(
        PROJECT,
        description="mimicflow: drift of each monitored "
        "batch against the training data's reference",
    )
    drifted = "evidently:metric_v2:DriftedColumnsCount"
    made.dashboard.add_panel(
        line_plot_panel(
            title="Share of drifted columns per run",
            values=[
                PanelMetric(legend="share", metric=drifted, metric_labels={"value_type": "share"})
            ],
        )
    )
    made.dashboard.add_panel(
        bar_plot_panel(
            title="Drifted columns per run",
            size="half",
            values=[
                PanelMetric(legend="columns", metric=drifted, metric_labels={"value_type": "count"})
            ],
        )
    )
    return made


def add_run(folder: Path, report: Path, name: str) -> str:
    """Add the run's Evidently snapshot (``report.json``, stamped with the run's time) to the
    workspace at ``folder``, created if missing, as ``name``; returns the snapshot's id. The id
    is kept beside the report (``SNAPSHOT_ID``): a run resumed after a crash replaces the
    snapshot it added before with its newer report, so each run is in the workspace once."""
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    Path(folder).mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(folder))
    project_id = project(workspace).id
    kept = Path(report).with_name(SNAPSHOT_ID)
    if kept.is_file():
        workspace.delete_run(project_id, kept.read_text().strip())
    snapshot_id = str(workspace.add_run(project_id, Snapshot.load(str(report)), name=name).id)
    kept.write_text(snapshot_id)
    return snapshot_id
