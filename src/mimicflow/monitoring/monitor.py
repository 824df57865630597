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

import pandas as pd

from mimicflow.clip.compute import Compute
from mimicflow.clip.faces import faces_batch
from mimicflow.clip.features import encode_set
from mimicflow.clip.folders import ArtefactFolders
from mimicflow.clip.settings import AsrSettings, EncoderSettings, FaceSettings, Runtime
from mimicflow.clip.speech import speech_batch
from mimicflow.config import Params
from mimicflow.data.layout import manifest_clips
from mimicflow.data.validation import QUARANTINE_COLUMNS, validate_folder
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
    ``{"drift", "drifted_columns", "report", "clips", "quarantine", "waiting", ...}``: ``drift``
    is None when no clip was compared (no verdict), ``report`` None when no clip came;
    ``waiting`` clips are left in the inbox until ``waiting_until`` (``monitor.settle_s``)."""
    settings = params.monitor
    incoming = Path(incoming or settings.incoming)
    if not incoming.is_dir():
        raise FileNotFoundError(f"incoming folder {incoming} does not exist")
    reference, projections = load_reference(params)  # fails before anything moves
    work, reports = Path(settings.work), Path(settings.reports)
    with inbox.locked(work):
        run = step("claim", inbox.claim, incoming, work, reports, settings.settle_s)
        waiting = run.waiting_summary()
        if waiting["waiting"]:
            log.info(
                "%d clips wait in %s until %s (monitor.settle_s = %g s)",
                waiting["waiting"],
                incoming,
                waiting["waiting_until"],
                settings.settle_s,
            )
        if not run.clips() and not run.not_clips():
            inbox.publish(run, reports)
            log.info("no new clips in %s", incoming)
            return NO_VERDICT | {"quarantine": []} | waiting
        summary = _compare(params, run, reference, projections, step)
        archived = step("archive", inbox.archive, run, Path(settings.archive))
        published = step("publish", inbox.publish, run, reports)
        summary |= {"run": run.id, "archive": str(archived), **waiting}
        if published is not None:
            html = published / "report.html"
            summary["report"] = str(html) if html.is_file() else None
            (published / "summary.json").write_text(json.dumps(summary, indent=2))
    write_index(params)
    return summary


NO_VERDICT = {"drift": None, "drifted_columns": [], "report": None, "clips": 0}


def _compare(params: Params, run: inbox.Run, reference, projections, step: Step) -> dict:
    """Validate the batch's clips, take the usable ones through perception, profile them and
    compare with the reference; the batch's quarantine (validate's and the files that are no
    clips) goes into the batch. Returns the summary so far."""
    local = run_params(params, run)
    checked = None
    if run.clips():
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
    summary = dict(NO_VERDICT)
    if checked is not None and checked["clips_usable"]:
        from mimicflow.training.ensemble import ensemble_version

        perceive(local, step)
        current, _ = step("profile", profile, local, projections)
        labels = {"batch": run.id, "model_version": ensemble_version(local.ensemble.out)}
        summary = step(
            "drift",
            drift_report,
            reference,
            current,
            run.report,
            params.monitor,
            run.started,
            labels,
        )
        step("workspace", add_run, params.monitor.workspace, run.report / "report.json", run.id)
    quarantine = _keep_validation(local, run, checked is not None)
    return summary | {
        "quarantined": len(quarantine),
        "quarantine": quarantine,
        "gx_success": None if checked is None else checked["gx_manifest_success"],
    }


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
    for name in local.monitor.feature_sets:
        settings = EncoderSettings.from_params(local, name)
        runtime, out = Runtime.from_params(local), paths.features(name)
        step(f"features-{name}", encode_set, clips, settings, runtime, folders, out, None, False)


def _keep_validation(local: Params, run: inbox.Run, validated: bool) -> list[dict]:
    """The batch's manifest and quarantine list (validate's, plus the files that are no clips)
    go to the archive with it, its data docs to the report; returns the quarantine list."""
    folder = Path(local.validate_.out)
    rows = run.not_clips()
    if validated:
        shutil.copy2(folder / "manifest.parquet", run.batch / "manifest.parquet")
        checked = pd.read_csv(folder / "quarantine.csv", dtype=str, keep_default_na=False)
        rows = [*checked.itertuples(index=False, name=None), *rows]
    quarantine = pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)
    quarantine.to_csv(run.batch / "quarantine.csv", index=False)
    if (folder / "data_docs").is_dir():
        shutil.copytree(folder / "data_docs", run.report / "data_docs", dirs_exist_ok=True)
    return [{"file": f, "reason": r} for f, r in quarantine.itertuples(index=False)]
