"""Training data: the packed feature store read lazily (memory maps), one clip at a time, into
fixed-budget sequences with masks — variable lengths without padding harming learning.

A clip longer than a modality's frame budget is cut into that many equal segments (TSN). Each
segment becomes the mean of its valid frames (``sampling="mean"``, deterministic), or one random
valid frame (``"random"``, Fuxi's training augmentation) or its centre valid frame (``"centre"``,
Fuxi's evaluation). A shorter clip is padded and its padding masked. A missing modality is an
all-False mask plus a ``present`` flag of False. Deterministic batches are cached per clip.
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


def segment_sample(values: np.ndarray, mask: np.ndarray, frames: int,
                   rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """One valid frame per segment: random with ``rng``, else the valid frame nearest the
    segment's centre. Clips no longer than ``frames`` are padded as in :func:`segment_pool`."""
    if len(values) <= frames:
        return segment_pool(values, mask, frames)
    out = np.zeros((frames, values.shape[1]), np.float32)
    out_mask = np.zeros(frames, bool)
    mask = np.asarray(mask, bool)
    edges = np.linspace(0, len(values), frames + 1).astype(int)
    for k, (start, stop) in enumerate(pairwise(edges)):
        valid = np.flatnonzero(mask[start:stop]) + start
        if valid.size:
            pick = rng.choice(valid) if rng is not None else valid[np.abs(valid - (start + stop - 1) / 2).argmin()]
            out[k], out_mask[k] = values[pick], True
    return out, out_mask


def pool_clip(values, mask, frames: int, sampling: str, rng=None):
    if sampling == "mean":
        return segment_pool(values, mask, frames)
    return segment_sample(values, mask, frames, rng if sampling == "random" else None)


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
        self._cache: dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray]] = {}
        self._means: dict[tuple[str, int], np.ndarray] = {}
        self.labels = manifest[list(EMOTIONS)].to_numpy(np.float32)
        missing = {m: [c for c in self.clip_ids if c not in t] for m, t in self.tables.items()}
        if any(missing.values()):
            raise KeyError(f"clips without features: { {m: c[:5] for m, c in missing.items() if c} }")

    def __len__(self) -> int:
        return len(self.clip_ids)

    def dims(self) -> dict[str, int]:
        return {m: t.dim for m, t in self.tables.items()}

    def kinds(self) -> dict[str, str]:
        """Each input's modality, as its store records it."""
        return {m: t.modality for m, t in self.tables.items()}

    def batch(self, indices, sampling: str = "mean", rng: np.random.Generator | None = None,
              modalities: tuple[str, ...] | None = None) -> ClipFeatures:
        """Clips ``indices`` as fixed-size arrays. ``sampling``: "mean", "random" or "centre"."""
        inputs = {}
        for modality in modalities or tuple(self.tables):
            pooled = [self._clip(i, modality, sampling, rng) for i in indices]
            inputs[modality] = (np.stack([v for v, _ in pooled]), np.stack([m for _, m in pooled]))
        return ClipFeatures([self.clip_ids[i] for i in indices], inputs, self.labels[list(indices)])

    def clip_mean(self, indices, name: str) -> np.ndarray:
        """(clips × d) each clip's input ``name`` averaged over all its valid frames (the whole
        clip, before any segment sampling); zeros where it has none. Cached per clip."""
        for index in indices:
            if (name, index) not in self._means:
                values, mask = self.tables[name].get(self.clip_ids[index])
                valid = np.asarray(values, np.float32)[np.asarray(mask, bool)]
                self._means[name, index] = valid.mean(0) if len(valid) else np.zeros(self.tables[name].dim, np.float32)
        return np.stack([self._means[name, index] for index in indices])

    def feature_stats(self, indices, sampling: str = "mean",
                      chunk: int = 256) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        """Per modality, each feature's mean and standard deviation over the valid segments of
        clips ``indices`` as a model sees them (``sampling`` "mean" or "centre"), in chunks."""
        stats = {}
        for modality, table in self.tables.items():
            total, squares, count = np.zeros(table.dim), np.zeros(table.dim), 0
            for start in range(0, len(indices), chunk):
                chunk_idx = indices[start : start + chunk]
                values, mask = self.batch(chunk_idx, sampling, modalities=(modality,)).inputs[modality]
                valid = values[mask].astype(np.float64)
                total, squares, count = total + valid.sum(0), squares + (valid**2).sum(0), count + len(valid)
            mean = total / max(count, 1)
            std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
            stats[modality] = (mean.astype(np.float32), std.astype(np.float32))
        return stats

    def _clip(self, index: int, modality: str, sampling: str, rng):
        frames = self.frames[modality]
        values, mask = self.tables[modality].get(self.clip_ids[index])
        if sampling == "random":
            return pool_clip(values, mask, frames, sampling, rng)
        key = (modality, index, sampling)
        if key not in self._cache:
            self._cache[key] = pool_clip(values, mask, frames, sampling)
        return self._cache[key]
