"""The feature store: per clip and feature set a (T × d) float16 sequence, its mask and metadata.

While a stage runs, each clip's features are one small ``.npz`` (content-keyed, atomic, so the
stage resumes). At the end the set is packed into one folder that training opens with
memory maps in milliseconds::

    <store>/<set>/packed/values.npy    (sum of T) × d float16, all clips back to back
                         mask.npy      (sum of T,) bool — False: frame without features
                         offsets.npy   (clips + 1,) int64 — clip i is values[o[i]:o[i+1]]
                         clip_ids.npy  (clips,) str
                         meta.json     model, layer, dim, rate_hz, per-clip presence
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mimicflow.store import write_atomic


def save_clip_features(path: Path, values: np.ndarray, mask: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, values=values.astype(np.float16), mask=mask.astype(bool))

    write_atomic(path, write)


def load_clip_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return data["values"], data["mask"]


def pack(folder: Path, files: dict[str, Path], meta: dict) -> Path:
    """Pack per-clip files (clip id → path, in order) into ``folder/packed``."""
    out = folder / "packed"
    out.mkdir(parents=True, exist_ok=True)
    values, masks, offsets, present = [], [], [0], {}
    for clip_id, path in files.items():
        clip_values, clip_mask = load_clip_features(path)
        values.append(clip_values)
        masks.append(clip_mask)
        offsets.append(offsets[-1] + len(clip_values))
        present[clip_id] = bool(clip_mask.any())
    dim = meta["dim"]
    np.save(
        out / "values.npy", np.concatenate(values) if values else np.zeros((0, dim), np.float16)
    )
    np.save(out / "mask.npy", np.concatenate(masks) if masks else np.zeros(0, bool))
    np.save(out / "offsets.npy", np.asarray(offsets, np.int64))
    np.save(out / "clip_ids.npy", np.asarray(list(files), dtype=str))
    (out / "meta.json").write_text(json.dumps(meta | {"present": present}, indent=2))
    return out


def packed_digest(packed: Path) -> str:
    """SHA-256 of a packed store (each file's name and bytes): what training reads of a set."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(packed).rglob("*") if p.is_file()):
        digest.update(path.relative_to(packed).as_posix().encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


@dataclass
class FeatureTable:
    """One feature set's packed features, memory-mapped."""

    values: np.ndarray
    mask: np.ndarray
    offsets: np.ndarray
    clip_ids: list[str]
    meta: dict

    @classmethod
    def open(cls, packed: Path) -> FeatureTable:
        packed = Path(packed)
        if packed.name != "packed":
            packed = packed / "packed"
        return cls(
            values=np.load(packed / "values.npy", mmap_mode="r"),
            mask=np.load(packed / "mask.npy", mmap_mode="r"),
            offsets=np.load(packed / "offsets.npy"),
            clip_ids=np.load(packed / "clip_ids.npy").tolist(),
            meta=json.loads((packed / "meta.json").read_text()),
        )

    def __post_init__(self) -> None:
        self._row = {clip_id: row for row, clip_id in enumerate(self.clip_ids)}

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def modality(self) -> str:
        """The modality of the set the store holds (audio, visual, text …)."""
        return self.meta["modality"]

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._row

    def row(self, clip_id: str) -> int:
        """The clip's position in the store: its frames are ``offsets[row] : offsets[row + 1]``."""
        return self._row[clip_id]

    def get(self, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(T × d) float16 values and (T,) mask of one clip."""
        row = self._row[clip_id]
        start, stop = self.offsets[row], self.offsets[row + 1]
        return self.values[start:stop], self.mask[start:stop]
