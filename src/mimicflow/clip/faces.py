"""One clip's face track (sampled frames, main face tracked, aligned crops, landmarks, mesh),
made when its file is missing; and the map over a batch. Detectors load once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

from mimicflow.clip.compute import Compute, map_jobs
from mimicflow.clip.folders import ArtefactFolders
from mimicflow.clip.settings import FaceSettings
from mimicflow.data.layout import ClipRef
from mimicflow.store import prune, write_atomic


@cache
def face_detector(settings: FaceSettings):
    from mimicflow.perception.faces import load_face_detector

    models = {"detector": Path(settings.detector), "mesh": Path(settings.mesh)}
    return load_face_detector(
        settings.backend, models, settings.threshold, settings.full_range, settings.far_fallback
    )


@dataclass(frozen=True)
class FacesJob:
    clip: ClipRef
    settings: FaceSettings
    folders: ArtefactFolders


def faces(job: FacesJob) -> dict:
    """The clip's face track (made when missing); returns its index row."""
    from mimicflow.perception.faces import load_face_track, process_clip, save_face_track

    path = job.folders.face_track(job.clip, job.settings)
    if path.exists():
        track = load_face_track(path)
    else:
        settings = job.settings
        track = process_clip(
            job.clip.video,
            face_detector(settings),
            settings.fps,
            settings.crop_size,
            settings.alignment,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: save_face_track(track, tmp))
    return {"clip_id": job.clip.clip_id, "artefact": path.name, **track.summary}


def faces_batch(
    clips: list[ClipRef],
    settings: FaceSettings,
    folders: ArtefactFolders,
    compute: Compute | None = None,
) -> pd.DataFrame:
    """Every clip's face track; returns the index (one row per clip) and drops stale tracks."""
    compute = compute or Compute()
    done = sum(folders.face_track(c, settings).exists() for c in clips)
    index = map_jobs(faces, [FacesJob(c, settings, folders) for c in clips], "faces", compute, done)
    prune(Path(folders.faces), set(index["artefact"]) if len(index) else set(), ".npz")
    return index
