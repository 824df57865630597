"""The DVC pipeline as a Prefect flow: each stage of ``dvc.yaml`` is a task that runs it through
``dvc repro --single-item`` (DVC keeps caching and lineage), in dependency order, retried on
failure and failed after ``flows.task_timeout_s``, with DVC's output streamed into the run's logs;
``reports/index.html`` is regenerated at the end, and the run's artifacts are tables of the stages
and of ``dvc metrics show`` and a link to the reports.

``python flows/pipeline.py [PROJECT]`` runs it once; ``mimicflow flows serve`` serves it nightly.
"""

from __future__ import annotations

import sys
import time
from contextlib import chdir
from pathlib import Path

from prefect import flow, get_run_logger, task

from mimicflow.config import load_params
from mimicflow.monitoring.reports import write_index
from mimicflow.orchestration import dvc_stages, publish_run, run_dvc


@task(name="dvc-stage")
def run_stage(project: Path, stage: str) -> str:
    """``dvc repro --single-item <stage>``: "ran" or "cached" (unchanged, skipped by DVC)."""
    output = run_dvc(["repro", "--single-item", stage], project, get_run_logger())
    return "ran" if f"Running stage '{stage}'" in output else "cached"


@flow(name="mimicflow-pipeline")
def pipeline(project: str = ".") -> dict[str, str]:
    """Run every DVC stage of ``project`` in dependency order; returns each stage's outcome."""
    root = Path(project).resolve()
    settings = load_params(root / "params.yaml")
    stage_task = run_stage.with_options(
        retries=settings.flows.retries,
        retry_delay_seconds=settings.flows.retry_delay_s,
        timeout_seconds=settings.flows.task_timeout_s,
    )
    stages = dvc_stages(root)
    get_run_logger().info("stages in order: %s", ", ".join(stages))
    summary = {}
    for stage in stages:
        start = time.perf_counter()
        outcome = stage_task.with_options(task_run_name=f"dvc repro {stage}")(root, stage)
        summary[stage] = {"outcome": outcome, "seconds": time.perf_counter() - start}
    with chdir(root):  # params paths are relative to the project
        index = write_index(settings)
    publish_run(root, summary, root / index)
    return {stage: entry["outcome"] for stage, entry in summary.items()}


if __name__ == "__main__":
    pipeline(sys.argv[1] if len(sys.argv) > 1 else ".")
