"""A real Prefect server on loopback for the flow tests (one per session, its own PREFECT_HOME)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    return os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }


def run_pipeline_flow(project: Path, prefect_api: tuple[str, Path], timeout: float):
    """``python flows/pipeline.py PROJECT`` in the project, against the session's server."""
    url, home = prefect_api
    return subprocess.run(
        [sys.executable, str(REPO / "flows" / "pipeline.py"), str(project)],
        cwd=project,
        env=prefect_env(home, url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_server(home: Path, log: Path, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """``prefect server start --host 127.0.0.1`` on a free port; returns (process, API URL)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=prefect_env(home, api_url),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return process, api_url
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"prefect server did not answer in {timeout} s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session=True`` and its children (its group)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
