"""Training data: the packed feature store read lazily (memory maps), one clip at a time, into
fixed-budget sequences with masks — variable lengths without padding harming learning.

A clip longer than a modality's frame budget is cut into that many equal segments and each
segment averaged over its valid frames (TSN-style, deterministic); a shorter clip is padded and
its padding masked. A missing modality is an all-False mask plus a ``present`` flag of False.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from mimicflow import EMOTIONS
from mimicflow.features.store import FeatureTable


def segment_pool(values: np.ndarray, mask: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T × d) with mask (T,) → (frames × d) float32 and mask (frames,)."""
    out = np.zeros((frames, values.shape[1]), np.float32)
    out_mask = np.zeros(frames, bool)
    length = len(values)
    if length == 0:
        return out, out_mask
    values = np.asarray(values, np.float32)
    mask = np.asarray(mask, bool)
    if length <= frames:
        out[:length], out_mask[:length] = values * mask[:, None], mask
        return out, out_mask
    edges = np.linspace(0, length, frames + 1).astype(int)
    for k, (start, stop) in enumerate(pairwise(edges)):
        valid = mask[start:stop]
        if valid.any():
            out[k] = values[start:stop][valid].mean(axis=0)
            out_mask[k] = True
    return out, out_mask


@dataclass
class ClipFeatures:
    """Everything a model sees for a set of clips (a batch, or a whole fold)."""

    clip_ids: list[str]
    inputs: dict[str, tuple[np.ndarray, np.ndarray]]  # modality → (clips × frames × d, clips × frames)
    labels: np.ndarray  # clips × 6 (NaN where unlabelled)

    def present(self, modality: str) -> np.ndarray:
        return self.inputs[modality][1].any(axis=1)


class FeatureDataset:
    """Clips of a manifest with their packed features and labels; indexable, batchable."""

    def __init__(self, features_dir: Path, manifest, frames: dict[str, int]):
        self.tables = {m: FeatureTable.open(Path(features_dir) / m) for m in frames}
        self.frames = frames
        self.clip_ids = list(manifest["clip_id"])
        self.labels = manifest[list(EMOTIONS)].to_numpy(np.float32)
        missing = {m: [c for c in self.clip_ids if c not in t] for m, t in self.tables.items()}
        if any(missing.values()):
            raise KeyError(f"clips without features: { {m: c[:5] for m, c in missing.items() if c} }")

    def __len__(self) -> int:
        return len(self.clip_ids)

    def dims(self) -> dict[str, int]:
        return {m: t.dim for m, t in self.tables.items()}

    def batch(self, indices) -> ClipFeatures:
        inputs = {}
        for modality, table in self.tables.items():
            pooled = [segment_pool(*table.get(self.clip_ids[i]), self.frames[modality]) for i in indices]
            inputs[modality] = (np.stack([v for v, _ in pooled]), np.stack([m for _, m in pooled]))
        return ClipFeatures([self.clip_ids[i] for i in indices], inputs, self.labels[list(indices)])
