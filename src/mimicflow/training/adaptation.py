"""What an encoder adaptation (USTC's Stage I alignment, end-to-end fine-tuning) trains on.

The ``adapt`` stage reads the labelled clips of the manifest into an :class:`AdaptData`; each
adaptation method takes it and writes an encoder folder that a feature set names as its model.
Raw inputs are read lazily, one clip at a time, so a large dataset is never held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
