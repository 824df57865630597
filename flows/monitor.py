"""Drift monitoring as a Prefect flow: each step of
:func:`mimicflow.monitoring.monitor.run_monitor` (claim, validate, faces, asr, features, profile,
drift, archive, publish) is a task; the verdict is a markdown artifact and the report a link
artifact. ``python flows/monitor.py [PROJECT]`` runs it once over ``monitor.incoming``; ``mimicflow
flows serve`` (or ``prefect deploy``, prefect.yaml) serves it hourly.
"""

from __future__ import annotations

import json
import sys
from contextlib import chdir
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from mimicflow.config import load_params
from mimicflow.monitoring.monitor import run_monitor
from mimicflow.orchestration import logs_into_prefect, prefect_steps


@flow(name="mimicflow-monitor")
def monitor(project: str = ".", incoming: str | None = None) -> dict:
    """Monitor the clips in ``incoming`` (default: ``monitor.incoming`` of the project's params)."""
    with chdir(Path(project).resolve()), logs_into_prefect():  # params paths are project-relative
        params = load_params()
        summary = run_monitor(
            params,
            Path(incoming) if incoming else None,
            step=prefect_steps(params.flows.task_timeout_s),
        )
    verdict = {True: "**drift**", False: "no drift", None: "no verdict"}[summary["drift"]]
    columns = ", ".join(f"`{c}`" for c in summary["drifted_columns"]) or "none"
    report = None
    if summary["report"]:  # the report as a link (a file: URI), in the verdict and on its own
        report = (Path(project).resolve() / summary["report"]).as_uri()
        create_link_artifact(
            report,
            link_text=summary["report"],
            key="mimicflow-drift-report",
            description="the Evidently report of this run",
        )
    create_markdown_artifact(
        key="mimicflow-drift",
        markdown=(
            f"# Drift monitoring\n\n{summary['clips']} clips: {verdict}\n\n"
            f"Drifted columns: {columns}\n\n"
            + (f"Report: [{summary['report']}]({report})\n\n" if report else "")
            + f"```json\n{json.dumps(summary, indent=2)}\n```\n"
        ),
        description="Evidently verdict for the clips of this run",
    )
    return summary


if __name__ == "__main__":
    monitor(sys.argv[1] if len(sys.argv) > 1 else ".")
