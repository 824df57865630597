"""The map over clips: a local process pool with a progress bar, results in input order."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

Job = TypeVar("Job")
Result = TypeVar("Result")


def resolve_workers(workers: int, n_jobs: int) -> int:
    """``workers`` = 0 means one per core; never more workers than jobs."""
    wanted = workers or os.cpu_count() or 1
    return max(1, min(wanted, n_jobs))


def map_clips(
    func: Callable[[Job], Result],
    jobs: Sequence[Job],
    workers: int = 0,
    progress: bool = True,
    label: str = "clips",
) -> list[Result]:
    """Apply ``func`` (a picklable top-level function) to every job; results keep job order."""
    n_workers = resolve_workers(workers, len(jobs))
    results: list[Result | None] = [None] * len(jobs)
    with Progress(
        f"[bold]{label}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=len(jobs))
        if n_workers == 1:
            for index, job in enumerate(jobs):
                results[index] = func(job)
                bar.advance(task)
        else:
            context = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(n_workers, mp_context=context) as pool:
                futures = {pool.submit(func, job): index for index, job in enumerate(jobs)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.advance(task)
    return results  # type: ignore[return-value]
