"""Claiming new clips from the incoming folder and archiving them, so that nothing is lost,
nothing is processed twice, and a crash at any point leaves every folder consistent.

A clip is always in exactly one place, and only ever moves by ``os.replace`` (atomic on one
file system)::

    incoming/ ──claim──▶ work/<run>/batch/ ──archive (one rename of the folder)──▶ archive/<run>/

A run that dies leaves its ``work/<run>/`` behind; the next run resumes it (same run id, so the
stages' content-keyed per-clip outputs are reused) and claims whatever arrived since. A
run's drift report is written into ``work/<run>/report`` and published to
``reports/drift/<run>`` right after its batch is archived; a run that died between the two is
published by the next one. A lock file keeps two runs from overlapping.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mimicflow.data.layout import SPLIT_FILES, VIDEO_SUFFIXES, normalise_clip_id, read_split_csv

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".flac")
STAMP = "%Y%m%dT%H%M%SZ"  # run ids: the UTC time the run claimed its clips
NOT_CLIPS = "not_clips"  # the batch's folder of claimed files that are no clips


class MonitorBusy(RuntimeError):
    """Another monitoring run holds the work folder."""


@dataclass
class Run:
    """One monitoring run's folders; ``batch`` is a plain clip folder (clips + ``audio/``)."""

    id: str
    folder: Path
    waiting: list[float] = field(default_factory=list)  # when each clip left unsettled settles

    @property
    def batch(self) -> Path:
        return self.folder / "batch"

    @property
    def rejected(self) -> Path:
        """Files claimed from the inbox that are no clips (kept, with the batch, for a person)."""
        return self.batch / NOT_CLIPS

    @property
    def report(self) -> Path:
        return self.folder / "report"

    @property
    def started(self) -> datetime:
        """When the run claimed its clips (UTC, naive, as Evidently stamps snapshots)."""
        return datetime.strptime(self.id[:16], STAMP)

    def clips(self) -> list[Path]:
        return sorted(p for p in self.batch.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)

    def not_clips(self) -> list[tuple[str, str]]:
        """``(file, reason)`` for each file claimed that is no clip."""
        kinds = ", ".join(VIDEO_SUFFIXES)
        files = sorted(self.rejected.iterdir()) if self.rejected.is_dir() else []
        return [
            (f"{NOT_CLIPS}/{p.name}", f"not a clip: no video file suffix ({kinds})") for p in files
        ]

    def waiting_summary(self) -> dict:
        """How many clips were left in the inbox to settle (``monitor.settle_s``), and until
        when (UTC, ISO 8601; None when none waits)."""
        until = max(self.waiting, default=None)
        return {
            "waiting": len(self.waiting),
            "waiting_until": (
                None
                if until is None
                else datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
            ),
        }


@contextmanager
def locked(work: Path) -> Iterator[None]:
    """Hold ``work/.lock`` for the duration; raises :class:`MonitorBusy` if another run has it."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise MonitorBusy(f"another monitoring run holds {work / '.lock'}") from exc
        yield


def claim(incoming: Path, work: Path, reports: Path, settle_s: float) -> Run:
    """Resume a leftover run (or start one) and move the settled clips of ``incoming`` into its
    batch; a clip's audio file (``incoming/audio/<stem>.*``) moves with it, and label rows of
    claimed clips are copied to ``batch/labels.csv``. Call with :func:`locked` held."""
    leftovers = sorted(p for p in work.iterdir() if p.is_dir())
    for folder in leftovers:  # died after archiving: only the report is left to publish
        if not (folder / "batch").exists():
            publish(Run(folder.name, folder), reports)
    leftovers = [p for p in leftovers if p.exists()]
    if leftovers:
        run = Run(leftovers[0].name, leftovers[0])
        for other in leftovers[1:]:  # several dead runs: fold them into the oldest
            _merge(other / "batch", run.batch)
            shutil.rmtree(other)
        log.info("resuming run %s (%d clips left by a run that stopped)", run.id, len(run.clips()))
    else:
        run_id = _new_id(work, reports / "drift")
        run = Run(run_id, work / run_id)
    (run.batch / "audio").mkdir(parents=True, exist_ok=True)

    labels = [
        row
        for split, name in SPLIT_FILES.items()
        if (incoming / name).is_file()
        for row in read_split_csv(incoming / name, split)
    ]
    claimed = []
    now = time.time()
    for clip in _incoming_clips(incoming):
        if now - clip.stat().st_mtime < settle_s:
            run.waiting.append(clip.stat().st_mtime + settle_s)
            continue  # maybe still being written
        target = _free_name(run.batch, clip.name)
        os.replace(clip, target)
        for audio in _audio_files(incoming / "audio", clip.stem):
            os.replace(audio, run.batch / "audio" / f"{target.stem}{audio.suffix}")
        claimed.append((clip.stem, target.stem))
    if claimed and labels:
        ids = {normalise_clip_id(stem) or stem: new for stem, new in claimed}
        rows = [
            {
                "clip_id": normalise_clip_id(ids[r.clip_id]) or ids[r.clip_id],
                "split": r.split,
                **r.values,
            }
            for r in labels
            if r.clip_id in ids
        ]
        if rows:
            path = run.batch / "labels.csv"
            pd.DataFrame(rows).to_csv(path, mode="a", header=not path.exists(), index=False)
    _claim_not_clips(incoming, run, now - settle_s)
    log.info(
        "run %s: claimed %d new clips from %s (%d in the batch)",
        run.id,
        len(claimed),
        incoming,
        len(run.clips()),
    )
    return run


def _claim_not_clips(incoming: Path, run: Run, settled: float) -> None:
    """Move the settled files of ``incoming`` (and ``incoming/raw``) that are no clips, label
    files or hidden files (being written) into ``run.rejected``: quarantined, never left to
    sit in the inbox unmentioned."""
    for folder in (incoming, incoming / "raw"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if (
                path.is_file()
                and not path.name.startswith(".")
                and path.suffix.lower() not in VIDEO_SUFFIXES
                and path.name not in SPLIT_FILES.values()
                and path.stat().st_mtime <= settled
            ):
                run.rejected.mkdir(parents=True, exist_ok=True)
                os.replace(path, _free_name(run.rejected, path.name))


def archive(run: Run, archive_root: Path) -> Path:
    """Move the run's whole batch into ``archive_root/<run>`` in one rename."""
    archive_root.mkdir(parents=True, exist_ok=True)
    target = archive_root / run.id
    os.replace(run.batch, target)
    return target


def publish(run: Run, reports: Path) -> Path | None:
    """Move the run's report to ``reports/drift/<run>`` and remove the run's work folder."""
    target = None
    if run.report.is_dir():
        target = reports / "drift" / run.id
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(run.report, target)
    shutil.rmtree(run.folder)
    return target


def _incoming_clips(incoming: Path) -> list[Path]:
    found = []
    for folder in (incoming, incoming / "raw"):
        if folder.is_dir():
            found += [
                p
                for p in sorted(folder.iterdir())
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES
            ]
    return found


def _audio_files(folder: Path, stem: str) -> list[Path]:
    return [folder / f"{stem}{s}" for s in AUDIO_SUFFIXES if (folder / f"{stem}{s}").is_file()]


def _free_name(folder: Path, name: str) -> Path:
    """``name`` in ``folder``, or ``<stem>-<n><suffix>`` when a clip of that name is there."""
    target, n = folder / name, 1
    while target.exists():
        target, n = folder / f"{Path(name).stem}-{n}{Path(name).suffix}", n + 1
    return target


def _merge(source: Path, target: Path) -> None:
    (target / "audio").mkdir(parents=True, exist_ok=True)
    if not source.is_dir():
        return
    if (source / "labels.csv").is_file():
        rows = pd.read_csv(source / "labels.csv", dtype={"clip_id": str})
        rows.to_csv(
            target / "labels.csv",
            mode="a",
            header=not (target / "labels.csv").exists(),
            index=False,
        )
    for clip in sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        new = _free_name(target, clip.name)
        os.replace(clip, new)
        for audio in _audio_files(source / "audio", clip.stem):
            os.replace(audio, target / "audio" / f"{new.stem}{audio.suffix}")
    if (source / NOT_CLIPS).is_dir():
        (target / NOT_CLIPS).mkdir(exist_ok=True)
        for path in sorted((source / NOT_CLIPS).iterdir()):
            os.replace(path, _free_name(target / NOT_CLIPS, path.name))


def _new_id(*folders: Path) -> str:
    """A UTC timestamp, suffixed when a folder of that name exists in any of ``folders``."""
    stamp = datetime.now(UTC).strftime(STAMP)
    run_id, n = stamp, 1
    while any((folder / run_id).exists() for folder in folders):
        run_id, n = f"{stamp}-{n}", n + 1
    return run_id
