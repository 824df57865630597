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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mimicflow.data.layout import SPLIT_FILES, VIDEO_SUFFIXES, normalise_clip_id, read_split_csv

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".flac")
STAMP = "%Y%m%dT%H%M%SZ"  # run ids: the UTC time the run claimed its clips


class MonitorBusy(RuntimeError):
    """Another monitoring run holds the work folder."""


@dataclass
class Run:
    """One monitoring run's folders; ``batch`` is a plain clip folder (clips + ``audio/``)."""

    id: str
    folder: Path

    @property
    def batch(self) -> Path:
        return self.folder / "batch"

    @property
    def report(self) -> Path:
        return self.folder / "report"

    @property
    def started(self) -> datetime:
        """When the run claimed its clips (UTC, naive, as Evidently stamps snapshots)."""
        return datetime.strptime(self.id[:16], STAMP)

    def clips(self) -> list[Path]:
        return sorted(p for p in self.batch.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)


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
    log.info(
        "run %s: claimed %d new clips from %s (%d in the batch)",
        run.id,
        len(claimed),
        incoming,
        len(run.clips()),
    )
    return run


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


def _new_id(*folders: Path) -> str:
    """A UTC timestamp, suffixed when a folder of that name exists in any of ``folders``."""
    stamp = datetime.now(UTC).strftime(STAMP)
    run_id, n = stamp, 1
    while any((folder / run_id).exists() for folder in folders):
        run_id, n = f"{stamp}-{n}", n + 1
    return run_id
