"""The challenge's metrics: Pearson per emotion and their mean (ABAW EMI), plus CCC.

An emotion whose labels (or predictions) have no variance in a fold has an undefined Pearson:
it is reported as ``None`` with a warning and left out of the mean — never a NaN silently
averaged in, never a crash.
"""

from __future__ import annotations

import warnings

import numpy as np

from mimicflow import EMOTIONS


class UndefinedMetricWarning(UserWarning):
    """A correlation is undefined (zero variance) and was left out."""


def pearson(pred: np.ndarray, true: np.ndarray) -> float | None:
    """Pearson correlation of two vectors; None when either has zero variance."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    pred, true = pred - pred.mean(), true - true.mean()
    denom = np.sqrt((pred**2).sum() * (true**2).sum())
    return float((pred * true).sum() / denom) if denom > 1e-12 else None


def ccc(pred: np.ndarray, true: np.ndarray) -> float | None:
    """Lin's concordance correlation coefficient; None for two constant vectors."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    denom = pred.var() + true.var() + (pred.mean() - true.mean()) ** 2
    return (
        float(2 * ((pred - pred.mean()) * (true - true.mean())).mean() / denom)
        if denom > 1e-12
        else None
    )


def emotion_scores(pred: np.ndarray, true: np.ndarray, where: str = "") -> dict:
    """Per-emotion Pearson and CCC and the challenge score (mean Pearson over defined emotions).

    ``pred`` and ``true`` are (clips × 6). Undefined values are None, with a warning naming the
    emotion (and ``where``, e.g. "fold 3").
    """
    per_emotion, per_emotion_ccc = {}, {}
    for column, emotion in enumerate(EMOTIONS):
        value = pearson(pred[:, column], true[:, column])
        if value is None:
            warnings.warn(
                f"Pearson for {emotion}{' in ' + where if where else ''} is undefined (no variance "
                "in labels or predictions); left out of the mean",
                UndefinedMetricWarning,
                stacklevel=2,
            )
        per_emotion[emotion] = value
        per_emotion_ccc[emotion] = ccc(pred[:, column], true[:, column])
    defined = [v for v in per_emotion.values() if v is not None]
    return {
        "mean_pearson": float(np.mean(defined)) if defined else None,
        "pearson": per_emotion,
        "ccc": per_emotion_ccc,
        "undefined": [e for e, v in per_emotion.items() if v is None],
        "clips": len(true),
    }
