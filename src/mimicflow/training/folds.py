"""Which clips each cross-validation fold trains and validates on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS

HELD_OUT = -1  # labelled but outside the folds (the official valid split, protocol "official")
UNLABELLED = -2  # test clips: predicted, never trained on


def assign_folds(manifest: pd.DataFrame, protocol: str, folds: int, seed: int) -> np.ndarray:
    """Fold number per manifest row, deterministic for ``seed``.

    ``merged`` (Fuxi): the labelled clips of train and valid are shuffled into ``folds`` folds.
    ``official``: only the train split is folded; valid stays held out for the ensemble.
    """
    labelled = manifest[list(EMOTIONS)].notna().all(axis=1).to_numpy()
    in_cv = labelled & (manifest["split"].to_numpy() != "valid" if protocol == "official" else True)
    assignment = np.where(labelled, HELD_OUT, UNLABELLED)
    members = np.flatnonzero(in_cv)
    if len(members) < folds:
        raise ValueError(f"{len(members)} labelled clips cannot make {folds} folds")
    shuffled = np.random.default_rng(seed).permutation(members)
    assignment[shuffled] = np.arange(len(shuffled)) % folds
    return assignment
