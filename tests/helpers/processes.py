"""SIGKILL a command's main process while its process pool works, and see what of its process
tree outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

import psutil


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sigkill_main(
    command: list[str], busy: Callable[[], bool], timeout: float = 600, grace: float = 5
) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Run ``command``; once ``busy()`` holds, SIGKILL its main process alone (as ``kill -9
    <pid>`` does). Returns (its pool workers at that moment, every descendant still running
    ``grace`` seconds later). The whole session is killed on the way out, survivors included."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        main = psutil.Process(process.pid)
        deadline = time.monotonic() + timeout
        while not busy():
            assert process.poll() is None, f"{command} ended (rc {process.returncode}) before"
            assert time.monotonic() < deadline, f"{command} not busy after {timeout} s"
            time.sleep(0.1)
        tree = main.children(recursive=True)
        workers = [p for p in tree if _alive(p) and p.ppid() != main.pid]  # forked by the server
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        end = time.monotonic() + grace
        while any(_alive(p) for p in tree) and time.monotonic() < end:
            time.sleep(0.2)
        return workers, [p for p in tree if _alive(p)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
