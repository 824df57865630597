"""A fine-tuned encoder folder's Augsburg head (written by the adapt stage's ``finetune``,
training/finetune.py), as ``train.augsburg.head: finetuned`` reads it: the fold's model, loaded,
not trained, where the stored features reproduce the fine-tuned model's own input."""

from __future__ import annotations

from pathlib import Path

import torch

from mimicflow.config import FeatureSetParams
from mimicflow.paths import require

# The head's weights (its one input named ``audio``), constructor settings, input width, and
# what framed its input (segments, audio cut, VAD outputs), in the adapted folder.
HEAD_FILE = "finetuned_head.pt"


class HeadMismatch(ValueError):
    """``head: finetuned`` cannot make the adapt stage's head the fold's model (params error)."""


def head_mismatch(head: dict, features: FeatureSetParams, dim: int, longest: int, frames: int):
    """Why a fold evaluating ``head`` on feature set ``features`` (input width ``dim``, its
    longest clip ``longest`` frames, pooled to ``frames`` segments) would not give the
    fine-tuned model's own predictions, or None: the set must be framed as adapt framed the
    head's input (the final layer, unprojected, the same audio cut and VAD outputs) and pooled
    to the segments the head saw (without segments: no clip pooled)."""
    segments = head["segments"]
    checks = [
        (features.layer_ids == (-1,), f"its layers are {features.layers}, not -1 (the final)"),
        (not features.projected, "it is projected"),
        (
            features.head_outputs == head["head_outputs"],
            f"head_outputs {features.head_outputs}, the head's {head['head_outputs']}",
        ),
        (
            features.audio_cut_s == head["audio_cut_s"],
            f"audio_cut_s {features.audio_cut_s}, the head's {head['audio_cut_s']}",
        ),
        (dim == head["dim"], f"{dim}-d frames, the head's {head['dim']}-d"),
        (
            frames == segments if segments else longest <= frames,
            f"train.frames {frames}, the head saw "
            + (f"{segments} segments" if segments else f"every frame (clips up to {longest})"),
        ),
    ]
    return next((message for ok, message in checks if not ok), None)


def load_head(folder: Path) -> dict:
    """What ``training.finetune.save_head`` wrote into an adapted folder (without it: run the
    adapt stage)."""
    path = require(Path(folder) / HEAD_FILE, "adapt")
    return torch.load(path, map_location="cpu", weights_only=True)
