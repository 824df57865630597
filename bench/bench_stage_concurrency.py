"""The five ``train@k`` folds through the Prefect pipeline flow, one at a time
(``flows.stage_concurrency: 1``) and at once (2 and 5), on a scratch DVC project: the repository's
``params.yaml`` (the demo's training: system, epochs, patience, batch) with a synthetic feature
store of the demo's size and widths (``--clips``, Whisper-tiny audio, face measures, MiniLM
text) in place of the demo's, and ``dvc.yaml``'s ``train`` stage (its command, outputs and
params; deps: the manifest). Each setting starts clean (no ``dvc.lock``, no outputs), so every
fold runs; ``dvc status`` must be clean after each.

    python bench/bench_stage_concurrency.py [--clips 480] [--epochs N] [--concurrency 1 2 5]

Runs against ``PREFECT_API_URL`` when set, else a ``prefect server start`` of its own (the tests'
helper; Prefect's temporary server times out on a loaded machine). Prints a table
(wall seconds of the flow, the folds' span, ``dvc status``) and writes
bench/results/stage_concurrency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DIMS = {"audio": 384, "visual": 18, "text": 384}  # as bench/bench_training.py


def _project(root: Path, clips: int, epochs: int | None) -> Path:
    """A DVC project with only the ``train`` stage, over a synthetic store."""
    from mimicflow.features.synthetic import write_synthetic_store

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if epochs:
        params["train"]["epochs"] = epochs
    params["features"]["out"] = "data/features"
    params["validate"]["out"] = "data/validated"
    root.mkdir(parents=True)
    (root / "data/validated").mkdir(parents=True)
    manifest = write_synthetic_store(root / "data/features", clips, DIMS, seed=0)
    manifest.to_parquet(root / "data/validated/manifest.parquet")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    train = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    train["do"]["deps"] = ["${validate.out}/manifest.parquet"]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": train}}, sort_keys=False))
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for command in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "dvc.yaml", "params.yaml", ".dvc"],
        ["git", *identity, "commit", "-qm", "bench"],  # DVCLive (train@k) needs a HEAD
    ):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    return root


def _fresh(root: Path, params: dict, concurrency: int) -> None:
    """No lock file, no outputs: every fold runs; the flow runs ``concurrency`` at once."""
    (root / "dvc.lock").unlink(missing_ok=True)
    for folder in (params["train"]["out"], params["ensemble"]["reports"]):
        shutil.rmtree(root / folder, ignore_errors=True)
    params["flows"] |= {"stage_concurrency": concurrency, "retries": 0}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _measure(root: Path, concurrency: int, env: dict[str, str]) -> dict:
    params = yaml.safe_load((root / "params.yaml").read_text())
    _fresh(root, params, concurrency)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "flows" / "pipeline.py"), str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"the flow failed at concurrency {concurrency}: {done.stderr[-2000:]}")
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    folds = [
        json.loads((root / params["train"]["out"] / str(k) / "fold.json").read_text())
        for k in params["train"]["folds"]
    ]
    return {
        "concurrency": concurrency,
        "flow_s": round(seconds, 1),
        "folds": len(folds),
        "epochs": params["train"]["epochs"],
        "dvc_status_clean": json.loads(status.stdout) == {},
        "load_1min_after": round(os.getloadavg()[0], 1),  # the machine is shared: say how busy
    }


@contextmanager
def _prefect(scratch: str):
    """The environment for the flow: ``PREFECT_API_URL``'s server, or one started here."""
    if os.environ.get("PREFECT_API_URL"):
        yield dict(os.environ)
        return
    sys.path.insert(0, str(REPO))
    from tests.prefect_server import prefect_env, start_server, stop

    home = Path(scratch) / "prefect"
    home.mkdir()
    process, url = start_server(home, home / "server.log", timeout=300)
    try:
        yield prefect_env(home, url)
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=480)  # the demo's demo.n_clips
    parser.add_argument("--epochs", type=int, default=None)  # default: params.yaml's train.epochs
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 5])
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # clean up: server, scratch
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as scratch, _prefect(scratch) as env:
        root = _project(Path(scratch) / "project", args.clips, args.epochs)
        rows = [_measure(root, n, env) for n in args.concurrency]
    print(f"{'at once':>8} {'flow s':>8} {'× vs 1':>7} {'dvc status':>11} {'load':>5}")
    base = rows[0]["flow_s"]
    for row in rows:
        clean = "clean" if row["dvc_status_clean"] else "CHANGED"
        speedup = base / row["flow_s"]
        print(
            f"{row['concurrency']:>8} {row['flow_s']:>8} {speedup:>7.2f} {clean:>11}"
            f" {row['load_1min_after']:>5}"
        )
    RESULTS.mkdir(exist_ok=True)
    result = {"cpus": os.cpu_count(), "clips": args.clips, "rows": rows}
    (RESULTS / "stage_concurrency.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
