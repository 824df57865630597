"""What the Prefect flows in ``flows/`` share: the DVC stage graph, running a DVC command with its
output streamed into a logger, the run's artifacts, and library steps as Prefect tasks.

Prefect is imported inside the functions that need it, so the library stays importable (and
fast to import) without a Prefect API.
"""

from __future__ import annotations

import graphlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path


class DvcError(RuntimeError):
    """A DVC command failed; the message carries its last output lines."""


def dvc_env() -> dict[str, str]:
    """The environment for DVC subprocesses: this interpreter's scripts first on PATH (stage
    commands such as ``mimicflow`` resolve to this environment), analytics off."""
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }


def run_dvc(args: list[str], project: Path, log: logging.Logger | logging.LoggerAdapter) -> str:
    """Run ``dvc <args>`` in ``project`` (an argument list, no shell), streaming every output line
    into ``log``; returns the output. Raises :class:`DvcError` on a non-zero exit. Interrupted
    (a Prefect task timeout, a cancelled run), it ends DVC and the stage command it runs."""
    command = [sys.executable, "-m", "dvc", *args]
    log.info("$ dvc %s", " ".join(args))
    lines = []
    with subprocess.Popen(
        command,
        cwd=project,
        env=dvc_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    ) as process:
        try:
            for line in process.stdout:
                line = line.rstrip()
                if line:
                    lines.append(line)
                    log.info("%s", line)
        except BaseException:
            with suppress(ProcessLookupError):  # its own process group: DVC and the stage
                os.killpg(process.pid, signal.SIGTERM)
            raise
    if process.returncode:
        tail = "\n".join(lines[-15:])
        raise DvcError(
            f"`dvc {' '.join(args)}` failed (exit {process.returncode}) in {project}:\n{tail}"
        )
    return "\n".join(lines)


def dvc_stages(project: Path) -> list[str]:
    """Every stage of the project's ``dvc.yaml`` (``foreach`` items expanded, e.g.
    ``features@audio``; other pipeline files such as ``pipelines/compare/dvc.yaml`` left out), in
    an order where each stage comes after those it depends on: DVC's own stage graph, read
    through its Python API (``dvc.yaml`` + ``dvc.lock``), ties broken by ``dvc.yaml`` order."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        root_file = Path(repo.root_dir, "dvc.yaml")
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        stages = [s for s in repo.index.stages if s.cmd and Path(s.dvcfile.path) == root_file]
        upstream = {s.name: {u.name for u in graph.successors(s) if u in stages} for s in stages}
    nodes = list(upstream)
    sorter = graphlib.TopologicalSorter(upstream)
    sorter.prepare()
    order = []
    while sorter.is_active():  # ready stages in dvc.yaml order, so the order is stable
        ready = sorted(sorter.get_ready(), key=nodes.index)
        order += ready
        sorter.done(*ready)
    return order


def dvc_outputs(project: Path, versioned: bool | None = None) -> list[str]:
    """Every output path (relative) that the project's pipeline files declare, from DVC's index:
    all of them, or only the ``cache: false`` ones git versions (``versioned=True``) or the ones
    DVC caches (``False``)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        root = Path(repo.root_dir)
        outs = [o for s in repo.index.stages if s.cmd for o in s.outs]
        return sorted(
            {
                Path(o.fs_path).relative_to(root).as_posix()
                for o in outs
                if versioned is None or o.use_cache != versioned
            }
        )


def publish_run(project: Path, stages: dict[str, dict], reports: Path) -> None:
    """The pipeline run's artifacts: a table of its stages (outcome, seconds), a table of the
    project's DVC metrics (``dvc.api.metrics_show``) and a link to the reports page."""
    from dvc.api import metrics_show
    from prefect.artifacts import create_link_artifact, create_table_artifact

    create_table_artifact(
        [
            {"stage": name, "outcome": s["outcome"], "seconds": round(s["seconds"], 1)}
            for name, s in stages.items()
        ],
        key="mimicflow-stages",
        description="DVC stages of this run",
    )
    metrics = _flatten(metrics_show(repo=str(project)))
    create_table_artifact(
        [{"metric": key, "value": value} for key, value in metrics],
        key="mimicflow-metrics",
        description="`dvc metrics show` after this run",
    )
    create_link_artifact(
        reports.resolve().as_uri(),
        link_text=str(reports),
        key="mimicflow-reports",
        description="the reports page",
    )


def _flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def prefect_steps(timeout_s: float) -> Callable:
    """A ``step`` function that runs each library step as a Prefect task (its own state, timing
    and logs in the UI) that fails after ``timeout_s`` seconds."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    def step(name: str, func: Callable, *args):
        return task(func, name=name, cache_policy=NO_CACHE, timeout_seconds=timeout_s)(*args)

    return step


@contextmanager
def logs_into_prefect():
    """While a flow runs, the ``mimicflow`` loggers' records go to its Prefect run logs too."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("mimicflow")
    handler, level = APILogHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
