"""The ``package`` stage into a private BentoML home, and a real ``bentoml serve`` of the bento
it built on 127.0.0.1, for the serving tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml


def package(
    root: Path, models_dir: Path, ensemble_dir: Path, env: dict, combined=None, **serving
) -> dict:
    """``mimicflow stage package`` with ``serving`` params, BentoML home ``env``'s (with
    ``combined``, the combine stage's folder: its combination); returns the stage's summary
    (``bento.json``)."""
    params = root / "params.yaml"
    ensemble = {"out": str(ensemble_dir)}
    if combined is not None:
        ensemble["combined_out"] = str(combined)
    params.write_text(
        yaml.safe_dump(
            {
                "models": {"dir": str(models_dir)},
                "ensemble": ensemble,
                "serving": {"out": str(root / "bento"), **serving},
            }
        )
    )
    command = [sys.executable, "-m", "mimicflow.cli", "stage", "package", "--params", str(params)]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((root / "bento" / "bento.json").read_text())


def bento_env(root: Path, **variables: str) -> dict[str, str]:
    """This environment with a private BentoML home under ``root``, plus ``variables``."""
    return os.environ | {
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        **variables,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(bento: str, root: Path, env: dict, timeout: float = 300) -> Iterator[str]:
    """``bentoml serve BENTO`` on a free port, logging to ``root/serve.log``, until /readyz
    answers 200; yields its URL and stops it (its whole process group) afterwards."""
    port = _free_port()
    with open(root / "serve.log", "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                bento,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, (root / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"server not ready in {timeout} s"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
