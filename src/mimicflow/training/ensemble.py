"""Fold models on disk and their ensemble: what training writes and what serving loads.

A fold folder holds ``model.safetensors`` (tensors only: loading never unpickles anything) and
``fold.json`` (system, hyper-parameters, its ``inputs``: the feature sets, with their dims and
``kinds`` (each set's modality) — frames, scores; the key was ``modalities`` before, still read).
The ensemble folder holds the fold models as ``fold_<k>.safetensors`` plus ``ensemble.json``
(the same description, the params the features were made with, and a content version).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from mimicflow import EMOTIONS
from mimicflow.config import ChainParams, Params
from mimicflow.features.store import FeatureTable
from mimicflow.fusion.systems import build_model
from mimicflow.training.data import POOLINGS

ModelInputs = dict[str, tuple[np.ndarray, np.ndarray]]


def save_fold(folder: Path, state: dict[str, torch.Tensor], description: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    (folder / "fold.json").write_text(json.dumps(description, indent=2))


def build_ensemble(fold_dirs: list[Path], out: Path, params: Params) -> Path:
    """Gather the fold models into ``out`` with one description; returns ``out``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    descriptions = [json.loads((d / "fold.json").read_text()) for d in fold_dirs]
    digest = hashlib.sha256()
    for k, folder in enumerate(fold_dirs):
        shutil.copy2(folder / "model.safetensors", out / f"fold_{k}.safetensors")
        digest.update((folder / "model.safetensors").read_bytes())
    first = descriptions[0]
    description = {
        key: first[key] for key in ("system", "hyper", "dims", "kinds", "frames", "sampling")
    }
    description["inputs"] = described_inputs(first)
    description |= {
        "version": f"{first['system']}-{digest.hexdigest()[:12]}",
        "folds": len(fold_dirs),
        "fold_scores": [d["val_scores"]["mean_pearson"] for d in descriptions],
        "params": ChainParams.from_params(params).model_dump(mode="json", by_alias=True),
    }
    (out / "ensemble.json").write_text(json.dumps(description, indent=2))
    return out


class Ablations:
    """What a model loses without each of its ``inputs``, through its ``predict``."""

    inputs: list[str]

    def predict(self, clips: list[ModelInputs]) -> np.ndarray:
        raise NotImplementedError

    def ablation_changes(self, clips: list[ModelInputs]) -> list[dict[str, float]]:
        """Per clip and input, what the prediction loses without it: the mean absolute change
        of the six intensities when the input's mask is set all False (the models are
        trained with missing inputs); 0 where the clip lacks the input."""
        variants, ablated = list(clips), []
        for k, clip in enumerate(clips):
            for name in self.inputs:
                values, mask = clip.get(name, (None, np.zeros(0, bool)))
                if np.asarray(mask, bool).any():
                    variants.append(clip | {name: (values, np.zeros(len(mask), bool))})
                    ablated.append((k, name))
        scores = self.predict(variants)
        changes = [dict.fromkeys(self.inputs, 0.0) for _ in clips]
        for (k, name), row in zip(ablated, scores[len(clips) :]):
            changes[k][name] = float(np.abs(scores[k] - row).mean())
        return changes

    def contributions(self, clips: list[ModelInputs]) -> list[dict[str, float]]:
        """Per clip, each input's share of the ablation changes: sums to 1 over the
        inputs the clip has, 0 for the others."""
        present = [{m: bool(np.asarray(mask).any()) for m, (_, mask) in c.items()} for c in clips]
        return [
            contribution_shares(changes, here)
            for changes, here in zip(self.ablation_changes(clips), present)
        ]


@dataclass
class Ensemble(Ablations):
    """The mean of the fold models. Inputs are raw per-clip features, as the store holds them."""

    models: list[torch.nn.Module]
    inputs: list[str]
    frames: dict[str, int]
    sampling: str
    version: str
    params: ChainParams  # the clip chain it was trained with (its own versioned schema)
    dims: dict[str, int]

    def _forward(self, clips: list[ModelInputs]) -> list[dict]:
        batch = {}
        for name in self.inputs:
            pooled = []
            for clip in clips:
                values, mask = clip.get(name, (np.zeros((0, self.dims[name])), np.zeros(0, bool)))
                pooled.append(
                    POOLINGS[self.sampling](
                        np.asarray(values, np.float32),
                        np.asarray(mask, bool),
                        self.frames[name],
                    )
                )
            batch[name] = (
                torch.from_numpy(np.stack([v for v, _ in pooled])),
                torch.from_numpy(np.stack([m for _, m in pooled])),
            )
        with torch.inference_mode():
            return [model(batch) for model in self.models]

    def predict(self, clips: list[ModelInputs], folds: list[int] | None = None) -> np.ndarray:
        """(clips × 6) intensities in [0, 1]: the mean of the fold models' predictions, or with
        ``folds`` each clip's prediction by its one fold model ``folds[i]``."""
        if not clips:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        outputs = np.stack([o["pred"].numpy() for o in self._forward(clips)])
        if folds is None:
            return np.clip(outputs.mean(axis=0), 0.0, 1.0)
        return np.clip(outputs[np.asarray(folds, int), np.arange(len(clips))], 0.0, 1.0)

    def predict_store(
        self,
        features_dir: Path,
        clip_ids: list[str],
        batch_size: int = 64,
        folds: list[int] | None = None,
    ) -> pd.DataFrame:
        """Predictions for clips of a feature store (``features_dir/<set>/packed``); with
        ``folds``, each clip's by its one fold model (see ``predict``)."""
        tables = {m: FeatureTable.open(Path(features_dir) / m) for m in self.inputs}
        rows = []
        for start in range(0, len(clip_ids), batch_size):
            chunk = clip_ids[start : start + batch_size]
            clips = [{m: t.get(c) for m, t in tables.items() if c in t} for c in chunk]
            rows.append(
                self.predict(clips, None if folds is None else folds[start : start + batch_size])
            )
        values = np.concatenate(rows) if rows else np.zeros((0, len(EMOTIONS)))
        return pd.DataFrame({"clip_id": clip_ids, **dict(zip(EMOTIONS, values.T))})


def contribution_shares(changes: dict[str, float], present: dict[str, bool]) -> dict[str, float]:
    """``changes`` normalised to sum to 1 over the ``present`` inputs (0 for absent ones);
    equal shares when removing any one changes nothing."""
    here = [m for m in changes if present.get(m, False)]
    total = sum(changes[m] for m in here)
    return {
        m: (changes[m] / total if total > 0 else 1 / len(here)) if m in here else 0.0
        for m in changes
    }


def described_inputs(description: dict) -> list[str]:
    """A ``fold.json``/``ensemble.json``'s input names (``modalities`` in those written before)."""
    return description["inputs"] if "inputs" in description else description["modalities"]


def ensemble_version(folder: Path | str) -> str:
    """The content version of the ensemble in ``folder`` ("none" when there is none)."""
    description = Path(folder) / "ensemble.json"
    return json.loads(description.read_text())["version"] if description.is_file() else "none"


def load_ensemble(folder: Path | str) -> Ensemble:
    """Load an ensemble folder written by the ``ensemble`` stage."""
    folder = Path(folder)
    description_file = folder / "ensemble.json"
    if not description_file.is_file():
        raise FileNotFoundError(
            f"no ensemble in {folder}: run `dvc repro ensemble` (or "
            "`mimicflow stage ensemble`) first"
        )
    description = json.loads(description_file.read_text())
    models = []
    for k in range(description["folds"]):
        model = build_model(
            description["system"], description["dims"], description["kinds"], **description["hyper"]
        )
        # Folds trained before input standardisation saw raw features: identity scalers.
        identity = {n: t for n, t in model.state_dict().items() if n.startswith("scalers.")}
        model.load_state_dict(identity | load_file(folder / f"fold_{k}.safetensors"))
        models.append(model.eval())
    return Ensemble(
        models,
        described_inputs(description),
        description["frames"],
        description["sampling"],
        description["version"],
        ChainParams.model_validate(description["params"]),
        description["dims"],
    )
