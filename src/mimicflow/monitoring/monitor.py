"""One drift-monitoring run over the clips that arrived in the incoming folder.

Claim the clips, validate them with the same checks and Great Expectations suites, take them
through the clip library (faces, speech, features: what the stages map over the dataset), on a
copy of the params whose data root and output folders point into the run's work folder, profile
them, compare the profile with the
training data's reference (Evidently), archive the clips, publish the report, refresh
``reports/index.html``. Each step goes through ``step(name, func, *args)``: a plain call here, a
Prefect task in ``flows/monitor.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from mimicflow.clip.compute import Compute
from mimicflow.clip.faces import faces_batch
from mimicflow.clip.features import encode_set
from mimicflow.clip.folders import ArtefactFolders
from mimicflow.clip.settings import AsrSettings, EncoderSettings, FaceSettings, Runtime
from mimicflow.clip.speech import speech_batch
from mimicflow.config import Params
from mimicflow.data.layout import manifest_clips
from mimicflow.data.validation import validate_folder
from mimicflow.monitoring import inbox
from mimicflow.monitoring.drift import drift_report
from mimicflow.monitoring.profile import load_reference, profile
from mimicflow.monitoring.reports import write_index
from mimicflow.monitoring.workspace import add_run
from mimicflow.paths import StagePaths

log = logging.getLogger(__name__)
Step = Callable[..., object]


def call(name: str, func: Callable, *args):
    """Run a step as a plain function call."""
    return func(*args)


def run_params(params: Params, run: inbox.Run) -> Params:
    """``params`` with the dataset root at the run's batch and every stage output inside the
    run's work folder (models and compute settings unchanged)."""
    out = run.folder.resolve() / "out"
    return params.model_copy(
        update={
            "data": params.data.model_copy(update={"root": run.batch.resolve()}),
            "validate_": params.validate_.model_copy(update={"out": out / "validated"}),
            "faces": params.faces.model_copy(update={"out": out / "faces"}),
            "asr": params.asr.model_copy(update={"out": out / "asr", "audio_out": out / "audio"}),
            "features": params.features.model_copy(update={"out": out / "features"}),
        }
    )


def run_monitor(params: Params, incoming: Path | None = None, step: Step = call) -> dict:
    """Process what is in ``incoming`` (default ``monitor.incoming``); returns the summary
    ``{"drift", "drifted_columns", "report", "clips", ...}`` (``report`` None when no clip came)."""
    from mimicflow.training.ensemble import ensemble_version

    settings = params.monitor
    incoming = Path(incoming or settings.incoming)
    if not incoming.is_dir():
        raise FileNotFoundError(f"incoming folder {incoming} does not exist")
    reference, projections = load_reference(params)  # fails before anything moves
    work, reports = Path(settings.work), Path(settings.reports)
    with inbox.locked(work):
        run = step("claim", inbox.claim, incoming, work, reports, settings.settle_s)
        if not run.clips():
            inbox.publish(run, reports)
            log.info("no new clips in %s", incoming)
            return {"drift": False, "drifted_columns": [], "report": None, "clips": 0}
        local = run_params(params, run)
        checked = step(
            "validate",
            validate_folder,
            run.batch,
            local.validate_.out,
            local.validate_,
            local.compute.workers,
            False,
            f"incoming-{run.id}",  # the batch's GX runs, named by the monitoring run
        )
        summary = {"drift": False, "drifted_columns": [], "report": None, "clips": 0}
        if checked["clips_usable"]:
            perceive(local, step)
            current, _ = step("profile", profile, local, projections)
            labels = {"batch": run.id, "model_version": ensemble_version(local.ensemble.out)}
            summary = step(
                "drift",
                drift_report,
                reference,
                current,
                run.report,
                settings,
                run.started,
                labels,
            )
            step("workspace", add_run, settings.workspace, run.report / "report.json", run.id)
        _keep_validation(local, run)
        archived = step("archive", inbox.archive, run, Path(settings.archive))
        published = step("publish", inbox.publish, run, reports)
        summary |= {
            "quarantined": checked["quarantined_rows"],
            "run": run.id,
            "gx_success": checked["gx_manifest_success"],
            "archive": str(archived),
        }
        if published is not None:
            html = published / "report.html"
            summary["report"] = str(html) if html.is_file() else None
            (published / "summary.json").write_text(json.dumps(summary, indent=2))
    write_index(params)
    return summary


def perceive(local: Params, step: Step = call) -> None:
    """The batch's clips through the clip library into ``local``'s output folders: face tracks,
    audio and transcripts (with their indexes), then each monitored feature set's store: the
    batch functions the stages run."""
    paths = StagePaths(local)
    clips = manifest_clips(paths.read_manifest(), Path(local.data.root))
    folders = ArtefactFolders(paths.faces, paths.transcripts, paths.audio)
    compute = Compute(local.compute.workers, local.compute.scheduler, progress=False)
    faces = step("faces", faces_batch, clips, FaceSettings.from_params(local), folders, compute)
    faces.to_parquet(paths.index(paths.faces), index=False)
    speech = step("asr", speech_batch, clips, AsrSettings.from_params(local), folders, compute)
    speech.to_parquet(paths.index(paths.transcripts), index=False)
    for name in local.monitor.modalities:
        settings = EncoderSettings.from_params(local, name)
        runtime, out = Runtime.from_params(local), paths.features(name)
        step(f"features-{name}", encode_set, clips, settings, runtime, folders, out, None, False)


def _keep_validation(local: Params, run: inbox.Run) -> None:
    """The batch's manifest and quarantine list go to the archive with it, its data docs to
    the report."""
    validated = Path(local.validate_.out)
    for name in ("manifest.parquet", "quarantine.csv"):
        shutil.copy2(validated / name, run.batch / name)
    if (validated / "data_docs").is_dir():
        shutil.copytree(validated / "data_docs", run.report / "data_docs", dirs_exist_ok=True)
