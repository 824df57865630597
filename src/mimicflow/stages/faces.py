"""DVC stage ``faces``: every usable clip's face track (resumable, parallel), the index and the
stage metrics."""

from __future__ import annotations

from mimicflow.clip.faces import faces_batch
from mimicflow.clip.settings import FaceSettings
from mimicflow.config import Params
from mimicflow.paths import StagePaths
from mimicflow.stages.clips import artefact_folders, compute, manifest_clip_refs, write_metrics


def run_faces(params: Params, progress: bool = True) -> dict:
    paths = StagePaths(params)
    index = faces_batch(
        manifest_clip_refs(params),
        FaceSettings.from_params(params),
        artefact_folders(params),
        compute(params, progress),
    )
    index.to_parquet(paths.index(paths.faces), index=False)
    frames = int(index["frames"].sum()) if len(index) else 0
    return write_metrics(
        paths.metrics(paths.faces),
        {
            "clips": len(index),
            "frames": frames,
            "face_rate": round(float(index["frames_with_face"].sum() / frames), 4)
            if frames
            else 0.0,
            "clips_without_face": int((index["frames_with_face"] == 0).sum()) if len(index) else 0,
            "clips_decoded_partly": int((~index["decode_complete"]).sum()) if len(index) else 0,
        },
    )
