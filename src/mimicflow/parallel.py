"""The map over clips: a local process pool, or Dask distributed when given a scheduler address.

Either way: a progress bar, results in input order, and the per-clip function runs in long-lived
worker processes, so models cached per process (``functools.cache``) load once per worker.
Per-clip work runs with single-threaded BLAS/OpenMP everywhere (the parallelism is across
clips), which also makes floating-point results identical locally and on a cluster. Local
workers die with the process that made the pool, even when it is killed (SIGKILL).
"""

from __future__ import annotations

import multiprocessing
import os
import select
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

Job = TypeVar("Job")
Result = TypeVar("Result")
# The longest path an AF_UNIX socket may bind to (Linux: 108 bytes with the NUL). forkserver's
# socket is $TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX (Python 3.11's multiprocessing.util).
SOCKET_PATH_MAX = 107


def resolve_workers(workers: int, n_jobs: int) -> int:
    """``workers`` = 0 means one per core; never more workers than jobs."""
    wanted = workers or os.cpu_count() or 1
    return max(1, min(wanted, n_jobs))


def pool_context() -> multiprocessing.context.BaseContext:
    """forkserver; spawn where $TMPDIR is too long a path for forkserver's socket (a dry-run's
    scratch folder deep in a tree, a cluster's per-job temporary folder), which would fail."""
    listener = os.path.join(tempfile.gettempdir(), "pymp-xxxxxxxx", "listener-xxxxxxxx")
    fits = len(os.fsencode(listener)) <= SOCKET_PATH_MAX
    return multiprocessing.get_context("forkserver" if fits else "spawn")


def call_single_threaded(func: Callable[[Job], Result], job: Job) -> Result:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return func(job)


def exit_with(parent: int) -> None:
    """Pool-worker initializer: end this worker as soon as process ``parent`` exits.

    Under forkserver a worker's OS parent is the fork server, which outlives a killed main
    process (each worker holds its keep-alive pipe), so a parent-death signal never fires; the
    worker watches the main process itself, from a daemon thread.
    """
    if hasattr(os, "pidfd_open"):  # Linux: woken by the kernel when ``parent`` exits
        try:
            handle = os.pidfd_open(parent)
        except ProcessLookupError:
            os._exit(1)
        wait = partial(select.select, [handle], [], [])
    else:
        wait = partial(_poll_until_gone, parent)
    threading.Thread(target=_exit_after, args=(wait,), name="exit-with-parent", daemon=True).start()


def _poll_until_gone(pid: int) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)


def _exit_after(wait: Callable[[], object]) -> None:
    wait()
    os._exit(1)  # no clean-up: the results have nowhere to go


def map_clips(
    func: Callable[[Job], Result],
    jobs: Sequence[Job],
    workers: int = 0,
    progress: bool = True,
    label: str = "clips",
    scheduler: str | None = None,
) -> list[Result]:
    """Apply ``func`` (a picklable top-level function) to every job; results keep job order.

    ``scheduler``: a Dask scheduler address (``tcp://host:8786``); the workers must see the same
    file system paths as this process (shared storage or one machine).
    """
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
        if scheduler:
            from dask.distributed import Client
            from dask.distributed import as_completed as dask_completed

            with Client(scheduler, timeout="30s") as client:
                futures = client.map(partial(call_single_threaded, func), jobs, pure=False)
                index_of = {future.key: index for index, future in enumerate(futures)}
                for future in dask_completed(futures):
                    results[index_of[future.key]] = future.result()
                    bar.advance(task)
        elif n_workers == 1:
            for index, job in enumerate(jobs):
                results[index] = call_single_threaded(func, job)
                bar.advance(task)
        else:
            with ProcessPoolExecutor(
                n_workers, mp_context=pool_context(), initializer=exit_with, initargs=(os.getpid(),)
            ) as pool:
                futures = {
                    pool.submit(call_single_threaded, func, job): index
                    for index, job in enumerate(jobs)
                }
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.advance(task)
    return results  # type: ignore[return-value]
