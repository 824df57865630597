"""Synthetic feature stores with Hume-like clip lengths, for training benchmarks and model tests.

Each clip has sparse intensities (as the labels of Hume-Vidmimic2); every feature set's frames
are noise plus the intensities projected on a fixed random basis, on a random share of the frames
— so there is something to learn, more in some sets than others. Lengths follow the real data: a
long-tailed duration (median ≈ 6 s) at each set's frame rate. A set's name is its modality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.features.store import pack, save_clip_features

RATES_HZ = {"audio": 50.0, "visual": 6.0, "text": None}  # text: one vector per sentence
SIGNAL = {"audio": 0.6, "visual": 0.3, "text": 1.0}


def write_synthetic_store(
    folder: Path,
    n_clips: int,
    dims: dict[str, int],
    seed: int = 0,
    missing_rate: float = 0.03,
    carried: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Write ``folder/<set>/packed`` for ``n_clips`` clips; returns their manifest
    (``clip_id``, ``split``, the six labels; a quarter of the clips are unlabelled test).
    ``carried``: the emotions each set carries (default: all six), to make the sets
    complementary."""
    rng = np.random.default_rng(seed)
    latent = (rng.random((n_clips, 6)) < 0.3) * rng.beta(2.2, 2.0, (n_clips, 6))
    durations = np.clip(rng.lognormal(np.log(6.0), 0.6, n_clips), 1.0, 60.0)
    clip_ids = [f"{i + 1:05d}" for i in range(n_clips)]
    for name, dim in dims.items():
        basis = rng.normal(size=(6, dim)) / np.sqrt(6)
        if carried is not None:
            basis[[e not in carried[name] for e in EMOTIONS]] = 0.0
        files = {}
        for index, clip_id in enumerate(clip_ids):
            rate = RATES_HZ.get(name)
            frames = int(durations[index] * rate) if rate else int(rng.integers(1, 5))
            values = rng.normal(size=(frames, dim)).astype(np.float32)
            carrying = rng.random(frames) < 0.8
            values[carrying] += SIGNAL.get(name, 0.5) * 3 * (latent[index] @ basis)
            mask = np.full(frames, rng.random() >= missing_rate)
            files[clip_id] = folder / name / "clips" / f"{clip_id}.npz"
            files[clip_id].parent.mkdir(parents=True, exist_ok=True)
            save_clip_features(files[clip_id], values, mask)
        pack(
            folder / name,
            files,
            {
                "model": "synthetic",
                "modality": name,
                "dim": dim,
                "rate_hz": RATES_HZ.get(name),
            },
        )
    annotators = rng.integers(3, 9, n_clips)[:, None]
    labels = rng.binomial(annotators, latent) / annotators
    split = rng.choice(["train", "valid", "test"], n_clips, p=[0.5, 0.25, 0.25])
    labels[split == "test"] = np.nan
    return pd.DataFrame({"clip_id": clip_ids, "split": split, **dict(zip(EMOTIONS, labels.T))})
