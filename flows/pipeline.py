"""The DVC pipeline as a Prefect flow: each stage of ``dvc.yaml`` is a task that runs it through
``dvc repro --single-item`` (DVC keeps caching and lineage) once the stages it depends on have
succeeded, independent stages at once (``flows.stage_concurrency``; on the workers of a Dask
cluster with ``flows.dask_address``), retried on failure and failed after
``flows.task_timeout_s``, with DVC's output streamed into the run's logs. A failed stage stops
only the stages depending on it. ``reports/index.html`` is regenerated at the end, and the run's
artifacts are tables of the stages and of ``dvc metrics show`` and a link to the reports.

``python flows/pipeline.py [PROJECT]`` runs it once; ``mimicflow flows serve`` serves it nightly.
"""

from __future__ import annotations

import os
import sys
from contextlib import chdir
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import as_completed

from mimicflow.config import load_params
from mimicflow.monitoring.reports import write_index
from mimicflow.orchestration import (
    dvc_graph,
    publish_run,
    repro_args,
    repro_on_dask,
    run_dvc,
    run_graph,
    stage_groups,
)


class StagesFailed(RuntimeError):
    """One or more DVC stages failed; the others' outputs are committed."""


@task(name="dvc-stage")
def run_stage(project: Path, stage: str, dask_address: str | None = None) -> str:
    """``dvc repro --single-item <stage>`` here or on a Dask worker: "ran" or "cached"
    (unchanged, skipped by DVC)."""
    log = get_run_logger()
    if dask_address:
        log.info("$ dvc %s  (on the Dask cluster %s)", " ".join(repro_args(stage)), dask_address)
        output = repro_on_dask(dask_address, stage, project)
        for line in output.splitlines():
            log.info("%s", line)
    else:
        output = run_dvc(repro_args(stage), project, log)
    return "ran" if f"Running stage '{stage}'" in output else "cached"


@flow(name="mimicflow-pipeline")
def pipeline(project: str = ".") -> dict[str, str]:
    """Run every DVC stage of ``project``, each after those it depends on; returns each stage's
    outcome. Raises :class:`StagesFailed` (after the artifacts) when a stage failed."""
    root = Path(project).resolve()
    settings = load_params(root / "params.yaml").flows
    stage_task = run_stage.with_options(
        retries=settings.retries,
        retry_delay_seconds=settings.retry_delay_s,
        timeout_seconds=settings.task_timeout_s,
    )
    upstream = dvc_graph(root)
    limit = settings.stage_concurrency or os.cpu_count() or 1
    log = get_run_logger()
    groups = " → ".join(" | ".join(group) for group in stage_groups(upstream))
    log.info("stages (| at once, up to %d): %s", limit, groups)

    def start(stage: str):
        named = stage_task.with_options(task_run_name=f"dvc repro {stage}")
        return named.submit(root, stage, settings.dask_address)

    summary = run_graph(upstream, start, limit, lambda futures: next(as_completed(futures)))
    with chdir(root):  # params paths are relative to the project
        index = write_index(load_params(root / "params.yaml"))
    publish_run(root, summary, root / index)
    failed = {stage: s["error"] for stage, s in summary.items() if s["outcome"] == "failed"}
    if failed:
        raise StagesFailed(
            f"{len(failed)} stage(s) failed: {'; '.join(f'{k}: {v}' for k, v in failed.items())}"
        )
    return {stage: entry["outcome"] for stage, entry in summary.items()}


if __name__ == "__main__":
    try:
        pipeline(sys.argv[1] if len(sys.argv) > 1 else ".")
    except StagesFailed as error:  # the run's log has the details: end with its one line
        sys.exit(str(error))
