"""Training data: the packed feature store read lazily (memory maps) into fixed-budget sequences
with masks — variable lengths without padding harming learning.

A clip longer than an input's frame budget is cut into that many equal segments (TSN). Each
segment becomes the mean of its valid frames (``sampling="mean"``, deterministic), or one random
valid frame (``"random"``, Fuxi's training augmentation) or its centre valid frame (``"centre"``,
Fuxi's evaluation). A shorter clip is padded and its padding masked. A missing input is an
all-False mask plus a ``present`` flag of False. The deterministic poolings are made once for
every clip, as one array per input; random frames are drawn for a whole batch in one vectorised
step (:class:`SegmentFrames`), from uniform numbers the caller supplies.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from mimicflow import EMOTIONS
from mimicflow.features.store import FeatureTable


def segment_edges(length: int, frames: int) -> np.ndarray:
    """Where a clip of ``length`` frames is cut into ``frames`` segments (TSN): ``frames + 1``
    frame indices, segment k holding frames ``edges[k]`` … ``edges[k + 1] − 1``."""
    return np.linspace(0, length, frames + 1).astype(int)


def segment_pool(
    values: np.ndarray, mask: np.ndarray, frames: int
) -> tuple[np.ndarray, np.ndarray]:
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
    edges = segment_edges(length, frames)
    for k, (start, stop) in enumerate(pairwise(edges)):
        valid = mask[start:stop]
        if valid.any():
            out[k] = values[start:stop][valid].mean(axis=0)
            out_mask[k] = True
    return out, out_mask


def segment_centre(
    values: np.ndarray, mask: np.ndarray, frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """One valid frame per segment, the one nearest the segment's centre. Clips no longer than
    ``frames`` are padded as in :func:`segment_pool`."""
    if len(values) <= frames:
        return segment_pool(values, mask, frames)
    out = np.zeros((frames, values.shape[1]), np.float32)
    out_mask = np.zeros(frames, bool)
    mask = np.asarray(mask, bool)
    edges = segment_edges(len(values), frames)
    for k, (start, stop) in enumerate(pairwise(edges)):
        valid = np.flatnonzero(mask[start:stop]) + start
        if valid.size:
            pick = valid[np.abs(valid - (start + stop - 1) / 2).argmin()]
            out[k], out_mask[k] = values[pick], True
    return out, out_mask


def adaptive_pool(
    values: np.ndarray, mask: np.ndarray, frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """A clip's valid frames average-pooled to exactly ``frames`` steps as torch's
    ``adaptive_avg_pool1d`` does (step k: frames ⌊kT/K⌋ … ⌈(k+1)T/K⌉ − 1, so neighbouring bins
    may share a frame and a short clip is stretched by repetition); every step valid. A clip
    without a valid frame: zeros, all masked (CASIA, ``adaptive_pool_seq``)."""
    out = np.zeros((frames, values.shape[1]), np.float32)
    valid = np.asarray(values, np.float32)[np.asarray(mask, bool)]
    if not len(valid):
        return out, np.zeros(frames, bool)
    length = len(valid)
    cumulative = np.concatenate([np.zeros((1, valid.shape[1])), np.cumsum(valid, 0, np.float64)])
    steps = np.arange(frames)
    start, stop = steps * length // frames, -((-(steps + 1) * length) // frames)
    out[:] = (cumulative[stop] - cumulative[start]) / (stop - start)[:, None]
    return out, np.ones(frames, bool)


POOLINGS = {"mean": segment_pool, "centre": segment_centre, "adaptive": adaptive_pool}


class SegmentFrames:
    """Where each clip's segments lie among one input's valid frames, so that one random valid
    frame per segment is drawn for a whole batch at once (Fuxi's TSN sampling).

    Segment k of clip i holds the valid frames ``rows[start[i, k] : start[i, k] + count[i, k]]``
    (rows of the packed store); a clip no longer than ``frames`` has one segment per frame."""

    def __init__(self, table: FeatureTable, clip_ids: list[str], frames: int):
        valid = np.asarray(table.mask, bool)
        self.rows = np.flatnonzero(valid)
        before = np.concatenate([[0], np.cumsum(valid)])  # valid frames ahead of each store row
        self.start = np.zeros((len(clip_ids), frames), np.int64)
        self.count = np.zeros((len(clip_ids), frames), np.int64)
        for i, clip_id in enumerate(clip_ids):
            row = table.row(clip_id)
            offset, length = table.offsets[row], table.offsets[row + 1] - table.offsets[row]
            edges = offset + (
                np.arange(length + 1) if length <= frames else segment_edges(length, frames)
            )
            segments = len(edges) - 1
            self.start[i, :segments] = before[edges[:-1]]
            self.count[i, :segments] = before[edges[1:]] - before[edges[:-1]]

    def draw(self, indices: np.ndarray, uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store rows (clips × frames) of one valid frame per segment of clips ``indices``,
        picked by ``uniform`` (same shape, in [0, 1)), and the mask of segments that have one."""
        count = self.count[indices]
        mask = count > 0
        if not len(self.rows):
            return np.zeros(count.shape, np.int64), mask
        pick = self.start[indices] + np.minimum(
            (uniform * count).astype(np.int64), np.maximum(count - 1, 0)
        )
        return self.rows[np.where(mask, pick, 0)], mask


@dataclass
class FeatureBatch:
    """Everything a model sees for a set of clips (a batch, or a whole fold)."""

    clip_ids: list[str]
    inputs: dict[str, tuple[np.ndarray, np.ndarray]]  # input → (clips × frames × d, clips × frames)
    labels: np.ndarray  # clips × 6 (NaN where unlabelled)

    def has_frames(self, name: str) -> np.ndarray:
        return self.inputs[name][1].any(axis=1)


class FeatureDataset:
    """Clips of a manifest with their packed features and labels; indexable, batchable."""

    def __init__(self, features_dir: Path, manifest, frames: dict[str, int]):
        self.tables = {m: FeatureTable.open(Path(features_dir) / m) for m in frames}
        self.frames = frames
        self.clip_ids = list(manifest["clip_id"])
        self._pooled: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._segments: dict[str, SegmentFrames] = {}
        self._means: dict[tuple[str, int], np.ndarray] = {}
        self.labels = manifest[list(EMOTIONS)].to_numpy(np.float32)
        missing = {m: [c for c in self.clip_ids if c not in t] for m, t in self.tables.items()}
        if any(missing.values()):
            raise KeyError(
                f"clips without features: { {m: c[:5] for m, c in missing.items() if c} }"
            )

    def __len__(self) -> int:
        return len(self.clip_ids)

    def dims(self) -> dict[str, int]:
        return {m: t.dim for m, t in self.tables.items()}

    def kinds(self) -> dict[str, str]:
        """Each input's modality, as its store records it."""
        return {m: t.modality for m, t in self.tables.items()}

    def batch(
        self,
        indices,
        sampling: str = "mean",
        rng: np.random.Generator | None = None,
        names: tuple[str, ...] | None = None,
    ) -> FeatureBatch:
        """Clips ``indices`` as fixed-size arrays. ``sampling``: "mean", "centre", or "random"
        (its frames drawn from ``rng``: one uniform number per segment, input by input)."""
        indices = np.asarray(indices, np.int64)
        inputs = {}
        for name in names or tuple(self.tables):
            if sampling == "random":
                uniform = rng.random((len(indices), self.frames[name]))
                rows, mask = self.segments(name).draw(indices, uniform)
                values = np.asarray(self.tables[name].values[rows], np.float32) * mask[..., None]
                inputs[name] = (values, mask)
            else:
                values, mask = self.pooled(name, sampling)
                inputs[name] = (values[indices], mask[indices])
        return FeatureBatch([self.clip_ids[i] for i in indices], inputs, self.labels[indices])

    def pooled(self, name: str, sampling: str) -> tuple[np.ndarray, np.ndarray]:
        """Every clip's input ``name`` pooled by ``sampling`` ("mean" or "centre"): (clips ×
        frames × d) float32 and (clips × frames) bool, made on first use."""
        if (name, sampling) not in self._pooled:
            frames, table = self.frames[name], self.tables[name]
            values = np.zeros((len(self), frames, table.dim), np.float32)
            mask = np.zeros((len(self), frames), bool)
            for i, clip_id in enumerate(self.clip_ids):
                values[i], mask[i] = POOLINGS[sampling](*table.get(clip_id), frames)
            self._pooled[name, sampling] = values, mask
        return self._pooled[name, sampling]

    def segments(self, name: str) -> SegmentFrames:
        """Where every clip's segments of input ``name`` lie among its valid frames."""
        if name not in self._segments:
            self._segments[name] = SegmentFrames(
                self.tables[name], self.clip_ids, self.frames[name]
            )
        return self._segments[name]

    def clip_mean(self, indices, name: str) -> np.ndarray:
        """(clips × d) each clip's input ``name`` averaged over all its valid frames (the whole
        clip, before any segment sampling); zeros where it has none. Cached per clip."""
        for index in indices:
            if (name, index) not in self._means:
                values, mask = self.tables[name].get(self.clip_ids[index])
                valid = np.asarray(values, np.float32)[np.asarray(mask, bool)]
                self._means[name, index] = (
                    valid.mean(0) if len(valid) else np.zeros(self.tables[name].dim, np.float32)
                )
        return np.stack([self._means[name, index] for index in indices])

    def feature_stats(
        self, indices, sampling: str = "mean", chunk: int = 256
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per input, each feature's mean and standard deviation over the valid segments of
        clips ``indices`` as a model sees them (``sampling`` "mean" or "centre"), in chunks."""
        stats = {}
        for name, table in self.tables.items():
            total, squares, count = np.zeros(table.dim), np.zeros(table.dim), 0
            for start in range(0, len(indices), chunk):
                chunk_idx = indices[start : start + chunk]
                values, mask = self.batch(chunk_idx, sampling, names=(name,)).inputs[name]
                valid = values[mask].astype(np.float64)
                total, squares, count = (
                    total + valid.sum(0),
                    squares + (valid**2).sum(0),
                    count + len(valid),
                )
            mean = total / max(count, 1)
            std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
            stats[name] = (mean.astype(np.float32), std.astype(np.float32))
        return stats
