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
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


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


# Ends a DVC process group (its leader's id, argv[2]) when the process that started it (argv[1])
# dies first: a Dask worker lost mid-stage must not leave its stage running beside the retry.
_GUARD = """
import os, signal, sys, time
parent, group = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
while alive(group):
    if not alive(parent):
        os.killpg(group, signal.SIGTERM)
        break
    time.sleep(0.1)
"""


def run_dvc(
    args: list[str],
    project: Path,
    log: logging.Logger | logging.LoggerAdapter,
    guarded: bool = False,
) -> str:
    """Run ``dvc <args>`` in ``project`` (an argument list, no shell), streaming every output line
    into ``log``; returns the output. Raises :class:`DvcError` on a non-zero exit. Interrupted
    (a Prefect task timeout, a cancelled run), it ends DVC and the stage command it runs;
    ``guarded``: so does this process's death (a killed Dask worker), through a watcher process.

    The calling thread polls the process rather than blocking on its output, so an exception
    sent to it (Prefect's timeout of a task in a worker thread) lands even while DVC is silent."""
    command = [sys.executable, "-m", "dvc", *args]
    log.info("$ dvc %s", " ".join(args))
    lines: list[str] = []
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
        guard = None
        if guarded:
            watcher = [sys.executable, "-c", _GUARD, str(os.getpid()), str(process.pid)]
            guard = subprocess.Popen(watcher, start_new_session=True)
        reader = threading.Thread(target=_pump, args=(process.stdout, lines, log), daemon=True)
        reader.start()
        try:
            while process.poll() is None:
                time.sleep(0.2)
            reader.join()
        except BaseException:
            with suppress(ProcessLookupError):  # its own process group: DVC and the stage
                os.killpg(process.pid, signal.SIGTERM)
            raise
    if guard:
        with suppress(subprocess.TimeoutExpired):
            guard.wait(timeout=5)  # it sees DVC gone within 0.1 s
    if process.returncode:
        tail = "\n".join(lines[-15:])
        raise DvcError(
            f"`dvc {' '.join(args)}` failed (exit {process.returncode}) in {project}:\n{tail}"
        )
    return "\n".join(lines)


def _pump(stream, lines: list[str], log: logging.Logger | logging.LoggerAdapter) -> None:
    for line in stream:
        line = line.rstrip()
        if line:
            lines.append(line)
            log.info("%s", line)


def repro_args(stage: str) -> list[str]:
    """The DVC command line that runs one stage: ``dvc repro --single-item`` (DVC checks and
    caches it, and skips it when unchanged), waiting for the repository lock rather than failing
    after DVC's 3 s: concurrent repros each hold it only to check and to commit, not while the
    stage's command runs (docs/monitoring.md, "Independent stages at once")."""
    return ["--wait-for-lock", "repro", "--single-item", stage]


def repro_on_dask(address: str, stage: str, project: Path) -> str:
    """Run :func:`repro_args` on a worker of the Dask cluster at ``address`` (its workers see
    ``project`` at the same path, with the same environment); returns DVC's output. A worker
    lost mid-stage: its stage is ended with it and Dask resubmits the stage to another worker
    (its ``allowed-failures``)."""
    from dask.distributed import Client

    with Client(address, timeout="30s") as client:
        log = logging.getLogger(__name__)
        future = client.submit(run_dvc, repro_args(stage), project, log, True, pure=False)
        try:
            while not future.done():  # polled: a Prefect timeout lands in this thread
                time.sleep(0.2)
            return future.result()
        except BaseException:
            future.cancel()
            raise


def dvc_graph(project: Path) -> dict[str, list[str]]:
    """Every stage of the project's ``dvc.yaml`` (``foreach`` items expanded, e.g.
    ``features@audio``; other pipeline files such as ``pipelines/compare/dvc.yaml`` left out)
    with the stages it depends on, both in ``dvc.yaml`` order: DVC's own stage graph, read
    through its Python API (``dvc.yaml`` + ``dvc.lock``)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        root_file = Path(repo.root_dir, "dvc.yaml")
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        stages = [s for s in repo.index.stages if s.cmd and Path(s.dvcfile.path) == root_file]
        return {s.name: [u.name for u in stages if graph.has_edge(s, u)] for s in stages}


def stage_groups(upstream: dict[str, list[str]]) -> list[list[str]]:
    """The stages in groups that may run at once: each group's stages depend only on earlier
    groups' (and not on each other), in ``upstream``'s order."""
    nodes = list(upstream)
    sorter = graphlib.TopologicalSorter(upstream)
    sorter.prepare()
    groups = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=nodes.index)
        groups.append(ready)
        sorter.done(*ready)
    return groups


def run_graph(
    upstream: dict[str, list[str]],
    start: Callable[[str], Any],
    limit: int,
    first_done: Callable[[list], Any],
) -> dict[str, dict]:
    """Run every stage of ``upstream`` once all it depends on has succeeded, up to ``limit`` at
    once: ``start(stage)`` returns a future whose ``result()`` is the stage's outcome or raises;
    ``first_done(futures)`` returns one that has finished. A stage that fails does not stop the
    others; those depending on it are "skipped". Returns each stage's ``outcome`` ("failed",
    "skipped" or its result), ``seconds``, ``start`` and ``end`` (``time.time()``), and ``error``
    when it failed, in the order of :func:`stage_groups`."""
    sorter = graphlib.TopologicalSorter(upstream)
    sorter.prepare()
    summary: dict[str, dict] = {}
    queue: list[str] = []
    running: dict[Any, str] = {}
    while sorter.is_active():
        queue += sorted(sorter.get_ready(), key=list(upstream).index)
        while queue and len(running) < limit:
            stage = queue.pop(0)
            if any(summary[u]["outcome"] in ("failed", "skipped") for u in upstream[stage]):
                summary[stage] = {"outcome": "skipped", "seconds": 0.0}
                sorter.done(stage)
                continue
            summary[stage] = {"start": time.time()}
            running[start(stage)] = stage
        if not running:
            continue
        future = first_done(list(running))
        stage = running.pop(future)
        entry = summary[stage]
        try:
            entry["outcome"] = future.result()
        except Exception as error:  # the stage failed (after its retries): record, go on
            entry |= {"outcome": "failed", "error": _one_line(error)}
        entry["end"] = time.time()
        entry["seconds"] = entry["end"] - entry["start"]
        sorter.done(stage)
    return {stage: summary[stage] for group in stage_groups(upstream) for stage in group}


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
    project's DVC metrics (``dvc.api.metrics_show``; of the files present, after a failed
    stage) and a link to the reports page."""
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
    metrics = _flatten(_present_metrics(project, metrics_show))
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


def _one_line(error: Exception) -> str:
    """An error's first line, with its last (a failed command's last output line) when longer."""
    lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1].strip()}"


def _present_metrics(project: Path, metrics_show: Callable) -> dict:
    """Every metrics file's values, or those of the files present when a stage that writes one
    did not run (it failed, or one it depends on did)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        paths = [o.fs_path for s in repo.index.stages if s.cmd for o in s.outs if o.metric]
    present = [path for path in paths if Path(path).exists()]
    if len(present) == len(paths):
        return metrics_show(repo=str(project))
    return metrics_show(*present, repo=str(project)) if present else {}


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
