"""The faces and asr stages over a validated dataset: outputs, kill-and-resume, no orphan
workers after a SIGKILL, Dask."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mimicflow.data.faults import FAULTS
from mimicflow.perception.faces import load_face_track
from mimicflow.stages.asr import run_asr
from mimicflow.stages.faces import run_faces

from .conftest import perception_params as _params
from .helpers.processes import sigkill_main

BIN = Path(sys.executable).parent


def test_faces_stage_covers_every_usable_clip(perceived, validated):
    params, faces, _ = perceived
    manifest = pd.read_parquet(validated[1] / "manifest.parquet")
    index = pd.read_parquet(params.faces.out / "index.parquet")
    assert set(index["clip_id"]) == set(manifest["clip_id"])
    assert faces["face_rate"] > 0.75  # the set includes planted no-face, dark and occluded clips
    fast = index.set_index("clip_id").loc[FAULTS["high_fps"]]  # the 1000 fps clip: sampled by time
    assert 2 <= fast["frames"] <= 4  # 1 s at faces.fps = 3, not 1000 frames
    assert json.loads(params.faces.out.with_suffix(".json").read_text()) == faces


def test_asr_stage_flags_missing_audio(perceived):
    params, _, asr = perceived
    index = pd.read_parquet(params.asr.out / "index.parquet").set_index("clip_id")
    assert not index.loc[FAULTS["no_audio"], "has_audio"]  # the clip without audio
    assert asr["clips_with_speech"] >= asr["clips"] - 4
    transcript = json.loads((params.asr.out / index.loc["00001", "artefact"]).read_text())
    assert transcript["text"] and transcript["segments"][0]["words"]


def test_rerun_recomputes_nothing(perceived):
    params, faces, _ = perceived
    before = {p.name: p.stat().st_mtime_ns for p in params.faces.out.glob("*.npz")}
    assert run_faces(params, progress=False) == faces
    after = {p.name: p.stat().st_mtime_ns for p in params.faces.out.glob("*.npz")}
    assert before == after


def test_sigkill_half_way_then_resume_matches_an_uninterrupted_run(
    perceived, validated, faulty_root, models_dir, tmp_path
):
    reference, _, _ = perceived
    params = _params(validated, faulty_root, models_dir, tmp_path, workers=1)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    command = [str(BIN / "mimicflow"), "stage", "faces", "--params", str(params_file)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    folder = params.faces.out
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("*.npz"))) < 4:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    survivors = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")}
    assert 4 <= len(survivors) < len(pd.read_parquet(reference.faces.out / "index.parquet"))

    subprocess.run(command, check=True, capture_output=True)
    for name, stamp in survivors.items():
        assert (folder / name).stat().st_mtime_ns == stamp  # not recomputed
    resumed = pd.read_parquet(folder / "index.parquet")
    uninterrupted = pd.read_parquet(reference.faces.out / "index.parquet")
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    for name in resumed["artefact"]:
        a, b = load_face_track(folder / name), load_face_track(reference.faces.out / name)
        assert np.array_equal(a.landmarks, b.landmarks, equal_nan=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_asr_on_a_real_dask_cluster_matches_the_local_run(
    perceived, validated, faulty_root, models_dir, tmp_path
):
    reference, _, _ = perceived
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = os.environ | {"DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    processes = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        processes += [
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                ],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            for i in range(2)
        ]
        from dask.distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        params = _params(validated, faulty_root, models_dir, tmp_path, scheduler=address)
        run_asr(params, progress=False)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    on_cluster = pd.read_parquet(params.asr.out / "index.parquet")
    local = pd.read_parquet(reference.asr.out / "index.parquet")
    pd.testing.assert_frame_equal(on_cluster, local)


def test_sigkilled_faces_stage_leaves_no_worker_behind(
    validated, faulty_root, models_dir, tmp_path
):
    params = _params(validated, faulty_root, models_dir, tmp_path, workers=2)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    command = [str(BIN / "mimicflow"), "stage", "faces", "--params", str(params_file)]
    workers, survivors = sigkill_main(command, lambda: any(params.faces.out.glob("*.npz")))
    assert len(workers) == 2
    assert survivors == [], [" ".join(p.cmdline()) for p in survivors]
