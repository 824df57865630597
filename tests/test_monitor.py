"""Drift monitoring end to end: the reference from the session's pipeline outputs; a held-out
batch from the same generator (another seed) through ``mimicflow monitor --json`` on a real Dask
cluster → no drift; a shifted batch (slower, lower, quieter speech, darker video, half the clips
without a face) through the Prefect flow, after a run that died half-way → drift in the right
columns; ``reports/index.html`` rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mimicflow.config import MonitorParams
from mimicflow.data.faults import FAULTS
from mimicflow.monitoring import inbox
from mimicflow.monitoring.monitor import run_monitor
from mimicflow.monitoring.profile import build_reference

from .helpers.processes import sigkill_main
from .helpers.shift import shift_dataset
from .prefect_server import BIN, free_port, stop

REPO = Path(__file__).resolve().parents[1]
BATCH = 16
# Columns the shift must move (slower: duration; quieter and lower speech: no-speech probability
# and an audio component; darker video: brightness; faces gone: face rate) and columns it leaves
# alone (same fps and frame size).
SHIFTED = {"duration_s", "no_speech_prob", "video_brightness", "face_rate"}
UNSHIFTED = {"fps", "width", "height"}


@pytest.fixture(scope="module")
def monitored(featured, ensemble_dir, tmp_path_factory):
    """The session's pipeline params with its trained ensemble and a monitor section in a
    temporary folder; the reference built from the session's pipeline outputs (what
    `dvc repro reference` does) for the generator's clips: the planted faults' usable clips are
    three copies of its first clip (3 of 19 rows alike: no sample of the generator; with them a
    same-generator batch's video brightness drifts, p = 0.009)."""
    params, _ = featured
    root = tmp_path_factory.mktemp("monitor")
    settings = MonitorParams(
        reference=root / "reference",
        work=root / "work",
        archive=root / "archive",
        reports=root / "reports",
        workspace=root / "workspace",
        settle_s=0,
    )
    ensemble = params.ensemble.model_copy(update={"out": ensemble_dir})
    params = params.model_copy(update={"monitor": settings, "ensemble": ensemble})
    manifest = pd.read_parquet(Path(params.validate_.out) / "manifest.parquet")
    generated = root / "generated"  # validate's manifest without the planted clips
    generated.mkdir()
    manifest[~manifest["clip_id"].isin(FAULTS.values())].to_parquet(
        generated / "manifest.parquet", index=False
    )
    build_reference(
        params.model_copy(
            update={"validate_": params.validate_.model_copy(update={"out": generated})}
        )
    )
    return params


def _batch(tmp_path_factory, name: str, seed: int, clips: int = BATCH) -> Path:
    from mimicflow.data.synth.generator import generate_dataset

    root = tmp_path_factory.mktemp(name) / "dataset"
    generate_dataset(root, clips, seed, workers=2, progress=False)
    return root


@contextmanager
def dask_cluster():
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1."""
    port = free_port()
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
            start_new_session=True,
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
                start_new_session=True,
            )
            for i in range(2)
        ]
        from dask.distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            yield address, client
    finally:
        for process in processes:
            stop(process)


@pytest.fixture(scope="module")
def no_drift(monitored, tmp_path_factory):
    """A held-out batch (Hume layout, labelled) through the CLI, perception on the Dask cluster."""
    incoming = _batch(tmp_path_factory, "held_out", seed=23)
    clips = sorted(p.name for p in (incoming / "raw").glob("*.mp4"))
    with dask_cluster() as (address, client):
        params = monitored.model_copy(
            update={"compute": monitored.compute.model_copy(update={"scheduler": address})}
        )
        params_file = tmp_path_factory.mktemp("params") / "params.yaml"
        params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
        result = subprocess.run(
            [
                str(BIN / "mimicflow"),
                "monitor",
                "--incoming",
                str(incoming),
                "--json",
                "--params",
                str(params_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout), incoming, clips, executed


def test_held_out_batch_from_the_same_generator_reports_no_drift(no_drift, monitored):
    summary, incoming, clips, executed = no_drift
    assert summary["drift"] is False, summary["drifted_columns"]
    assert len(summary["drifted_columns"]) <= 1
    assert summary["clips"] == BATCH and summary["gx_success"]
    assert (
        Path(summary["report"]).is_file() and Path(summary["report"]).parent.parent.name == "drift"
    )
    # the per-clip maps ran on the Dask cluster (which worker took which clip is the scheduler's
    # choice, by timing: results never depend on it, and neither does this check)
    assert len(executed) == 2 and sum(executed.values()) >= BATCH, executed
    # every clip moved to the archive, with its audio and label rows; none is left behind
    assert not list((incoming / "raw").glob("*.mp4")) and not list((incoming / "audio").glob("*"))
    archived = Path(summary["archive"])
    assert sorted(p.name for p in archived.glob("*.mp4")) == clips
    assert len(list((archived / "audio").glob("*.mp3"))) == BATCH
    labels = pd.read_csv(archived / "labels.csv", dtype={"clip_id": str})
    assert set(labels["clip_id"]) <= {Path(c).stem for c in clips} and len(labels) > BATCH // 2
    assert not [p for p in Path(monitored.monitor.work).iterdir() if p.is_dir()]  # work folder done


@pytest.fixture(scope="module")
def shifted(monitored, prefect_api, tmp_path_factory):
    """A shifted batch: a run dies half-way (after asr), then the Prefect flow resumes it."""
    from prefect.flows import load_flow_from_entrypoint

    source = _batch(tmp_path_factory, "shift_source", seed=29)
    incoming = tmp_path_factory.mktemp("shifted")
    clips = sorted(p.name for p in shift_dataset(source, incoming))

    def dies_half_way(name, func, *args):
        if name == "features-audio":
            raise RuntimeError("killed half-way")
        return func(*args)

    with pytest.raises(RuntimeError, match="killed half-way"):
        run_monitor(monitored, incoming, step=dies_half_way)
    work = Path(monitored.monitor.work)
    (left,) = [p for p in work.iterdir() if p.is_dir()]
    after_crash = {
        "incoming": sorted(p.name for p in incoming.iterdir()),
        "batch": sorted(p.name for p in (left / "batch").glob("*.mp4")),
        "faces": {p.name: p.stat().st_mtime_ns for p in (left / "out" / "faces").glob("*.npz")},
    }
    project = tmp_path_factory.mktemp("project")
    (project / "params.yaml").write_text(
        yaml.safe_dump(monitored.model_dump(mode="json", by_alias=True))
    )
    monitor = load_flow_from_entrypoint(f"{REPO / 'flows' / 'monitor.py'}:monitor")
    summary = monitor(project=str(project), incoming=str(incoming))
    return summary, clips, after_crash, left.name


def test_a_crash_half_way_leaves_everything_consistent_and_the_next_run_resumes(shifted, monitored):
    summary, clips, after_crash, crashed_run = shifted
    assert after_crash["incoming"] == [] and after_crash["batch"] == clips  # claimed, not lost
    assert len(after_crash["faces"]) == BATCH
    assert summary["run"] == crashed_run  # resumed, not started afresh
    archived = Path(summary["archive"])
    assert sorted(p.name for p in archived.glob("*.mp4")) == clips  # each clip archived once
    assert not [p for p in Path(monitored.monitor.work).iterdir() if p.is_dir()]


def test_shifted_batch_reports_drift_in_the_right_columns(shifted):
    summary = shifted[0]
    drifted = set(summary["drifted_columns"])
    assert summary["drift"] is True and summary["clips"] == BATCH
    assert drifted >= SHIFTED, drifted
    assert not UNSHIFTED & drifted, drifted
    assert any(c.startswith("audio_") for c in drifted), drifted
    from evidently.core.report import Snapshot

    report = Snapshot.load(Path(summary["report"]).parent / "report.json")  # Evidently's own format
    counts = [r.count.value for r in report.metric_results.values() if hasattr(r, "count")]
    assert counts == [len(drifted)]


def test_sigkilled_monitor_leaves_no_worker_behind(monitored, tmp_path_factory):
    incoming = _batch(tmp_path_factory, "killed", seed=31, clips=6)
    root = tmp_path_factory.mktemp("killed_monitor")
    settings = monitored.monitor.model_copy(
        update={"work": root / "work", "archive": root / "archive", "reports": root / "reports"}
    )
    params_file = root / "params.yaml"
    params = monitored.model_copy(update={"monitor": settings})
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    command = [
        str(BIN / "mimicflow"),
        "monitor",
        "--incoming",
        str(incoming),
        "--params",
        str(params_file),
    ]
    workers, survivors = sigkill_main(command, lambda: any(root.glob("work/*/out/faces/*.npz")))
    assert len(workers) == monitored.compute.workers == 2
    assert survivors == [], [" ".join(p.cmdline()) for p in survivors]


@pytest.mark.heavy
def test_a_batch_too_small_for_a_verdict_says_so(tmp_path):
    from mimicflow.config import Params
    from mimicflow.monitoring.drift import drift_report
    from mimicflow.monitoring.reports import write_index

    params = Params.model_validate(
        {"monitor": {"reports": str(tmp_path)}, "validate": {"out": str(tmp_path / "none")}}
    )
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(80, 4)), columns=list("abcd"))
    tiny = pd.DataFrame([[0.1, 0.2, 0.3, 0.4]] * 2 + [[1.0, -1.0, 0.5, 0.0]], columns=list("abcd"))
    small = drift_report(reference, tiny, tmp_path / "drift" / "small", params.monitor)
    assert small["clips"] == 3 and small["columns"] == list("abcd")
    assert small["drift"] == (small["share"] >= params.monitor.drift_share)  # a verdict still
    assert small["warning"] == (
        "only 3 clips (monitor.min_clips = 10): too few for a reliable drift verdict"
    )
    saved = json.loads((tmp_path / "drift" / "small" / "summary.json").read_text())
    assert saved["warning"] == small["warning"]
    batch = pd.DataFrame(rng.normal(size=(10, 4)), columns=list("abcd"))
    enough = drift_report(reference, batch, tmp_path / "drift" / "enough", params.monitor)
    assert enough["warning"] is None
    index = write_index(params).read_text()
    assert index.count('class="muted small-batch"') == 1 and "too few for a reliable" in index


def test_claim_takes_only_settled_clips_and_folds_leftover_runs_together(tmp_path):
    incoming, work, reports = tmp_path / "incoming", tmp_path / "work", tmp_path / "reports"
    (incoming / "audio").mkdir(parents=True)
    for name in ("00001.mp4", "00002.webm", "notes.txt", ".00003.mp4.part"):
        (incoming / name).write_bytes(b"x")
    (incoming / "audio" / "00001.mp3").write_bytes(b"a")
    old = os.path.getmtime(incoming / "00001.mp4") - 600
    for name in ("00001.mp4", "notes.txt"):
        os.utime(incoming / name, (old, old))
    with inbox.locked(work):
        with pytest.raises(inbox.MonitorBusy), inbox.locked(work):
            pass
        first = inbox.claim(incoming, work, reports, settle_s=60)
    assert [p.name for p in first.clips()] == ["00001.mp4"]  # 00002 is too fresh, the rest no clip
    assert (first.batch / "audio" / "00001.mp3").is_file()
    assert sorted(p.name for p in incoming.iterdir()) == [".00003.mp4.part", "00002.webm", "audio"]
    assert [f for f, _ in first.not_clips()] == ["not_clips/notes.txt"]  # quarantined, not left
    assert first.waiting_summary()["waiting"] == 1  # 00002.webm
    stray = work / "20000101T000000Z" / "batch"  # a second dead run holding another 00001.mp4
    (stray / "audio").mkdir(parents=True)
    (stray / "00001.mp4").write_bytes(b"y")
    with inbox.locked(work):
        resumed = inbox.claim(incoming, work, reports, settle_s=0)
    assert resumed.id == "20000101T000000Z"  # the oldest run resumes, the other folds into it
    assert [p.name for p in resumed.clips()] == ["00001-1.mp4", "00001.mp4", "00002.webm"]
    assert sorted(p.name for p in work.iterdir()) == [".lock", resumed.id]
    assert np.array_equal(sorted(p.read_bytes() for p in resumed.clips()), [b"x", b"x", b"y"])


def test_reports_index_links_data_docs_and_drift_reports_and_renders_in_chromium(
    no_drift, shifted, monitored, tmp_path
):
    import cv2

    index = Path(monitored.monitor.reports) / "index.html"
    dom = _chromium(["--dump-dom", index.as_uri()])
    assert dom.count('class="drift-report"') == 2 and dom.count('class="batch-data-docs"') == 2
    assert 'id="pipeline-data-docs"' in dom and "no drift" in dom and "video_brightness" in dom
    screenshot = tmp_path / "index.png"
    _chromium([f"--screenshot={screenshot}", "--window-size=1200,800", index.as_uri()])
    pixels = cv2.imread(str(screenshot), cv2.IMREAD_GRAYSCALE)
    assert pixels is not None and (pixels < 200).mean() > 0.01  # text on the page, not blank
    report = Path(shifted[0]["report"])
    rendered = _chromium(["--virtual-time-budget=15000", "--dump-dom", report.as_uri()])
    assert 'class="MuiBox-root' in rendered  # Evidently's React widgets rendered, offline


def _chromium(args: list[str]) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
