"""Several trained systems as one model: per-emotion weights fitted on out-of-fold predictions.

The combine stage's folder holds ``combined.json`` (the members, their versions and weights)
and each member's fold ensemble under ``members/<name>``; :func:`load_combination` reads it.

Each member's weight for an emotion is non-negative and the members' weights sum to 1 for each
emotion: non-negative least squares of the true intensities on the members' predictions
(``scipy.optimize.nnls``), normalised. ``cross_fitted`` scores the combination honestly: the
rows of fold k are combined with weights fitted on the other folds' rows only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.config import ChainParams
from mimicflow.training.ensemble import Ablations, Ensemble, ModelInputs, load_ensemble

COMBINED = "combined.json"  # in the combine stage's folder: the members and their weights


def fit_weights(predictions: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(members × emotions) weights from ``predictions`` (members × rows × emotions) and
    ``truth`` (rows × emotions): per emotion, NNLS then normalised to sum to 1 (equal weights
    where NNLS gives all zeros)."""
    from scipy.optimize import nnls  # the fit only: the served model needs no scipy

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


def merged_chain(members: dict[str, tuple[ChainParams, list[str]]]):
    """One clip chain for several members (name → (its chain, the feature sets it reads)):
    (the chain, whose ``features.sets`` hold every distinct set once, and per member its set
    names → the chain's). A set equal to one already taken is shared; another set under a
    taken name is renamed ``<name>-<member>``. Raises ValueError for members whose faces or
    transcripts differ (one perception serves them all)."""
    (first_name, (first, _)), *_ = members.items()
    sets, inputs = {}, {}
    for member, (chain, names) in members.items():
        if (chain.faces, chain.asr) != (first.faces, first.asr):
            raise ValueError(
                f"members {first_name} and {member} were trained on other faces or transcripts "
                "settings: one perception serves every member"
            )
        inputs[member] = {}
        for name in names:
            spec = chain.features.sets[name]
            key = next((k for k, taken in sets.items() if taken == spec), None)
            if key is None:
                key = name if name not in sets else f"{name}-{member}"
                sets[key] = spec
            inputs[member][name] = key
    features = first.features.model_copy(update={"sets": sets})
    return first.model_copy(update={"features": features}), inputs


@dataclass
class Combination(Ablations):
    """Several members' fold ensembles weighted per emotion; its ``inputs`` are the distinct
    feature sets of its clip chain (``params``), each computed once per clip."""

    members: dict[str, Ensemble]
    routes: dict[str, dict[str, str]]  # member → its feature set names → the chain's
    weights: np.ndarray  # members × emotions
    version: str
    params: ChainParams
    dims: dict[str, int]

    @property
    def inputs(self) -> list[str]:
        return list(self.dims)

    def _member_clips(self, member: str, clips: list[ModelInputs]) -> list[ModelInputs]:
        names = self.routes[member].items()
        return [{name: clip[key] for name, key in names if key in clip} for clip in clips]

    def member_predictions(self, clips: list[ModelInputs]) -> np.ndarray:
        """(members × clips × 6): each member's fold mean."""
        return np.stack(
            [m.predict(self._member_clips(name, clips)) for name, m in self.members.items()]
        )

    def predict(self, clips: list[ModelInputs]) -> np.ndarray:
        """(clips × 6) intensities in [0, 1]: the members' predictions weighted per emotion."""
        if not clips:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        return np.clip(combine(self.member_predictions(clips), self.weights), 0.0, 1.0)

    def predict_store(self, clip_ids: list[str]) -> pd.DataFrame:
        """Predictions for clips of the members' own feature stores (their chains'
        ``features.out``), as the combine stage evaluates them."""
        stacked = np.stack(
            [
                m.predict_store(m.params.features.out, clip_ids)[list(EMOTIONS)].to_numpy()
                for m in self.members.values()
            ]
        )
        return pd.DataFrame(
            {"clip_id": clip_ids, **dict(zip(EMOTIONS, combine(stacked, self.weights).T))}
        )


def load_combination(folder: Path | str) -> Combination:
    """Load a folder written by the ``combine`` stage (``combined.json``, ``members/<name>``)."""
    folder = Path(folder)
    description = json.loads((folder / COMBINED).read_text())
    members = {name: load_ensemble(folder / "members" / name) for name in description["members"]}
    chain, routes = merged_chain({n: (m.params, m.inputs) for n, m in members.items()})
    weights = np.array(
        [[description["members"][n]["weights"][e] for e in EMOTIONS] for n in members]
    )
    dims = {key: members[n].dims[name] for n in members for name, key in routes[n].items()}
    return Combination(members, routes, weights, description["version"], chain, dims)


def has_members(folder: Path | str) -> bool:
    """Whether ``folder`` (the combine stage's output) holds a combination of members."""
    description = Path(folder) / COMBINED
    return description.is_file() and bool(json.loads(description.read_text())["members"])
