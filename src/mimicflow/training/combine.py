"""Several trained systems as one model: per-emotion weights fitted on out-of-fold predictions.

Each member's weight for an emotion is non-negative and the members' weights sum to 1 for each
emotion: non-negative least squares of the true intensities on the members' predictions
(``scipy.optimize.nnls``), normalised. ``cross_fitted`` scores the combination honestly: the
rows of fold k are combined with weights fitted on the other folds' rows only.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from mimicflow import EMOTIONS


def fit_weights(predictions: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(members × emotions) weights from ``predictions`` (members × rows × emotions) and
    ``truth`` (rows × emotions): per emotion, NNLS then normalised to sum to 1 (equal weights
    where NNLS gives all zeros)."""
    members, _, emotions = predictions.shape
    weights = np.full((members, emotions), 1.0 / members)
    for e in range(emotions):
        w, _ = nnls(predictions[:, :, e].T.astype(float), truth[:, e].astype(float))
        if w.sum() > 0:
            weights[:, e] = w / w.sum()
    return weights


def combine(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(rows × emotions): the members' predictions weighted per emotion."""
    return np.einsum("mre,me->re", predictions, weights)


def cross_fitted(
    predictions: np.ndarray, truth: np.ndarray, folds: np.ndarray
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The combination's out-of-fold predictions (rows × emotions) and each fold's weights:
    fold k's rows are combined with weights fitted without them."""
    combined = np.zeros(predictions.shape[1:])
    weights = {}
    for fold in np.unique(folds):
        held = folds == fold
        weights[int(fold)] = fit_weights(predictions[:, ~held], truth[~held])
        combined[held] = combine(predictions[:, held], weights[int(fold)])
    return combined, weights


def align_members(tables: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The members' out-of-fold tables (name → DataFrame with ``clip_id``, ``fold`` and one
    column per emotion) on common rows: (clip ids, folds, members × rows × emotions). Raises
    ValueError naming the members whose clips or folds differ from the first member's."""
    names = list(tables)
    first = tables[names[0]].set_index("clip_id").sort_index()
    for name in names[1:]:
        other = tables[name].set_index("clip_id").sort_index()
        if list(other.index) != list(first.index):
            raise ValueError(
                f"members {names[0]} and {name} were trained on different clips "
                f"({len(first)} and {len(other)} out-of-fold rows): retrain them on the same data"
            )
        if not (other["fold"].to_numpy() == first["fold"].to_numpy()).all():
            raise ValueError(
                f"members {names[0]} and {name} were trained on different folds: "
                "retrain them with the same train.folds and train.seed"
            )
    stacked = np.stack(
        [tables[n].set_index("clip_id").loc[first.index, list(EMOTIONS)].to_numpy() for n in names]
    )
    return list(first.index), first["fold"].to_numpy(), stacked
