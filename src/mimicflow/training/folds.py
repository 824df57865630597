"""Which clips each model trains and validates on, by protocol (``train.protocol``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS

TRAIN_ONLY = -1  # trained on by every fold, validated by none (official/final: the train split)
UNLABELLED = -2  # test clips: predicted, never trained on


def assign_folds(
    manifest: pd.DataFrame,
    protocol: str,
    folds: int,
    seed: int,
    holdout_fraction: float = 0.2,
) -> np.ndarray:
    """The fold that validates each manifest row (or ``TRAIN_ONLY`` / ``UNLABELLED``),
    deterministic for ``seed``.

    ``merged`` (Fuxi): the labelled clips of train and valid are shuffled into ``folds`` folds.
    ``official`` and ``final``: one model; the train split trains it, the valid split is fold 0.
    ``resplit``: one model; ``round(holdout_fraction × labelled)`` clips drawn at random from the
    valid split are fold 0, the rest of valid trains with the train split.
    """
    labelled = manifest[list(EMOTIONS)].notna().all(axis=1).to_numpy()
    assignment = np.where(labelled, TRAIN_ONLY, UNLABELLED)
    if protocol != "merged":
        valid = labelled & (manifest["split"].to_numpy() == "valid")
        if not valid.any() or valid.sum() == labelled.sum():
            raise ValueError(
                f"protocol {protocol} needs labelled clips in both the train and the "
                "valid split (use protocol merged otherwise)"
            )
        assignment[_held_out(valid, labelled, protocol, holdout_fraction, seed)] = 0
        return assignment
    members = np.flatnonzero(labelled)
    if len(members) < folds:
        raise ValueError(f"{len(members)} labelled clips cannot make {folds} folds")
    shuffled = np.random.default_rng(seed).permutation(members)
    assignment[shuffled] = np.arange(len(shuffled)) % folds
    return assignment


def _held_out(
    valid: np.ndarray, labelled: np.ndarray, protocol: str, fraction: float, seed: int
) -> np.ndarray:
    """The rows that validate the one model: the valid split, or (``resplit``) a seeded draw
    of ``round(fraction × labelled)`` of its clips."""
    if protocol != "resplit":
        return np.flatnonzero(valid)
    wanted = round(fraction * labelled.sum())
    if not 0 < wanted <= valid.sum():
        raise ValueError(
            f"protocol resplit holds out {wanted} clips ({fraction:g} of {labelled.sum()} "
            f"labelled) but the valid split has {valid.sum()}"
        )
    return np.random.default_rng(seed).choice(np.flatnonzero(valid), wanted, replace=False)


def fold_indices(assignment: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of ``fold``."""
    train = (assignment == TRAIN_ONLY) | ((assignment >= 0) & (assignment != fold))
    return np.flatnonzero(train), np.flatnonzero(assignment == fold)
