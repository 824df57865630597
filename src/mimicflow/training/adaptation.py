"""What an encoder adaptation (USTC's Stage I alignment, end-to-end fine-tuning) trains on.

The ``adapt`` stage reads the labelled clips of the manifest into an :class:`AdaptData`; each
adaptation method takes it and writes an encoder folder that a feature set names as its model.
Raw inputs are read lazily, one clip at a time, so a large dataset is never held in memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class AdaptData:
    """The labelled clips of the official split, their intensities and readers of their inputs."""

    clip_ids: list[str]
    labels: np.ndarray  # clips × 6 intensities in [0, 1] (EMOTIONS order)
    train: np.ndarray  # bool per clip: the official train split (fitting)
    valid: np.ndarray  # bool per clip: the official valid split (model selection)
    audio: Callable[[int], np.ndarray | None]  # 16 kHz mono float32 by clip index; None: no track
    crops: Callable[[int], list[np.ndarray]]  # the aligned face crops (BGR uint8) with a face
    transcript: Callable[[int], str]  # the clip's transcript ("" without speech)

    def __len__(self) -> int:
        return len(self.clip_ids)


def folder_version(folder: Path) -> str:
    """Sixteen hex digits of the folder's files' content (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def record_adapted(out: Path, metrics: dict) -> dict:
    """Write ``adapted.json`` into an adapted encoder's folder: its version (the weights'
    content, part of the features' key of the sets naming it) and the metrics; returns the
    metrics with the version."""
    metrics = {**metrics, "version": folder_version(out)}
    (out / "adapted.json").write_text(
        json.dumps({"version": metrics["version"], "metrics": metrics}, indent=2)
    )
    return metrics
