"""What the per-clip stages share: the manifest's clips, the artefact folders, where work runs
and the metrics file."""

from __future__ import annotations

import json
from pathlib import Path

from mimicflow.clip.compute import Compute
from mimicflow.clip.folders import ArtefactFolders
from mimicflow.config import Params
from mimicflow.data.layout import ClipRef, manifest_clips
from mimicflow.paths import StagePaths


def manifest_clip_refs(params: Params) -> list[ClipRef]:
    """The validated manifest's clips, as the clip library takes them."""
    return manifest_clips(StagePaths(params).read_manifest(), Path(params.data.root))


def artefact_folders(params: Params) -> ArtefactFolders:
    paths = StagePaths(params)
    return ArtefactFolders(paths.faces, paths.transcripts, paths.audio)


def compute(params: Params, progress: bool) -> Compute:
    return Compute(params.compute.workers, params.compute.scheduler, progress)


def write_metrics(path: Path, metrics: dict) -> dict:
    """A stage's metrics file (for ``dvc metrics show``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(metrics, indent=2))
    return metrics
