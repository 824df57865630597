"""Where per-clip work runs, and the map over a batch of per-clip jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from mimicflow.parallel import map_clips

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Compute:
    """``workers`` local processes (0: one per core) or a Dask scheduler address; a progress bar."""

    workers: int = 0
    scheduler: str | None = None
    progress: bool = True


def map_jobs(
    func: Callable, jobs: list, label: str, compute: Compute, done: int = 0
) -> pd.DataFrame:
    """``func`` over the jobs (one index row each), saying how many were already done."""
    if done:
        log.info("%s: %d of %d clips already done (resuming)", label, done, len(jobs))
    return pd.DataFrame(
        map_clips(
            func,
            jobs,
            workers=compute.workers,
            progress=compute.progress,
            label=label,
            scheduler=compute.scheduler,
        )
    )
