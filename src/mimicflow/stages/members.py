"""DVC stages ``member@<name>`` and ``combine``: several trained systems as one served model.

``member@<name>`` trains member ``name`` of ``ensemble.members`` (a recipe's demo or paper
flavour, or the workspace's own system, with its overlay) on the pipeline's folds (protocol
merged over ``train.folds`` and ``train.seed``); its feature sets are made once (a set made
already, by the pipeline, the comparison or another member, is linked). It writes
``<ensemble.members_out>/<name>/``: the folds, their ensemble, the out-of-fold predictions
(``oof.csv``) and every clip's prediction by the fold models' mean (``predictions.csv``).

``combine`` fits each member's weight per emotion on the members' out-of-fold predictions,
scores the combination honestly (fold k's rows with weights fitted without them) beside each
member and the members' mean, and writes ``<ensemble.combined_out>`` (the members' ensembles and
``combined.json``, what ``package`` serves) and ``<ensemble.reports>/combined.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.config import Params
from mimicflow.data.synth import truth as demo
from mimicflow.fusion.metrics import emotion_scores
from mimicflow.paths import MissingStageInput, StagePaths
from mimicflow.stages.compare import recipe_features, redirected
from mimicflow.stages.train import train_fold, write_fold
from mimicflow.training.combine import (
    COMBINED,
    align_members,
    combine,
    cross_fitted,
    fit_weights,
)
from mimicflow.training.ensemble import build_ensemble, load_ensemble

log = logging.getLogger(__name__)


def member_params(params: Params, name: str) -> Params:
    """The params member ``name`` trains with: its recipe's flavour (or ``params``), then its
    overlay, on the pipeline's folds; its feature sets under ``<compare_out>/member-<name>``."""
    from mimicflow.recipes import load_recipes, merge, recipe_overlay, validate_overlay

    members = params.ensemble.members
    if name not in members:
        raise ValueError(
            f"no member {name!r} in ensemble.members (it has {', '.join(members) or 'none'})"
        )
    spec, overlay = members[name], {}
    if spec.recipe is not None:
        recipes = load_recipes(params.ensemble.recipes_dir)
        if spec.recipe not in recipes:
            raise ValueError(
                f"member {name}: no recipe {spec.recipe!r} in {params.ensemble.recipes_dir} "
                f"(it has {', '.join(recipes)})"
            )
        merge(overlay, recipe_overlay(recipes[spec.recipe], demo=spec.flavour == "demo"))
    merge(overlay, spec.overlay)
    base = params.model_dump(mode="json", by_alias=True)
    base["ensemble"]["members"] = {}  # a member is one system
    applied = validate_overlay(base, overlay)
    return redirected(params, applied, Path(params.ensemble.compare_out) / f"member-{name}")


def member_dir(params: Params, name: str) -> Path:
    return Path(params.ensemble.members_out) / name


def run_member(params: Params, name: str, progress: bool = True) -> dict:
    """Stage ``member@<name>``: train the member on every fold, gather and apply its ensemble."""
    member = member_params(params, name)
    recipe_features(params, member, progress)
    out = member_dir(params, name)
    shutil.rmtree(out, ignore_errors=True)
    oof, fold_dirs = [], []
    for fold in member.train.folds:
        result, dataset, val_idx, trainer = train_fold(member, fold, progress=progress)
        folder = out / "folds" / str(fold)
        write_fold(member, folder, fold, result, dataset, val_idx, trainer)
        predictions = pd.read_csv(folder / "val_predictions.csv", dtype={"clip_id": str})
        oof.append(predictions.assign(fold=fold))
        fold_dirs.append(folder)
    ensemble = load_ensemble(build_ensemble(fold_dirs, out / "ensemble", member))
    pd.concat(oof).to_csv(out / "oof.csv", index=False)
    clips = list(StagePaths(params).read_manifest()["clip_id"])
    ensemble.predict_store(member.features.out, clips).to_csv(out / "predictions.csv", index=False)
    summary = {
        "member": name,
        "system": member.train.system,
        "version": ensemble.version,
        "inputs": list(ensemble.inputs),
    }
    (out / "member.json").write_text(json.dumps(summary, indent=2))
    return summary


def _read_members(params: Params) -> dict[str, pd.DataFrame]:
    tables = {}
    for name in params.ensemble.members:
        path = member_dir(params, name) / "oof.csv"
        if not path.is_file():
            raise MissingStageInput(
                f"member {name} has no trained folds ({path.parent}): train it with "
                f"`dvc repro member@{name}` (or `mimicflow stage member {name}`)"
            )
        tables[name] = pd.read_csv(path, dtype={"clip_id": str})
    return tables


def _rows(names: list[str], stacked: np.ndarray, combined: np.ndarray, truth: np.ndarray, where):
    """Per-emotion Pearson of each member, the members' mean and the combination."""
    rows = {name: stacked[i] for i, name in enumerate(names)}
    rows |= {"mean of members": stacked.mean(0), "combined": combined}
    return {label: emotion_scores(pred, truth, f"{label} {where}") for label, pred in rows.items()}


def _predictions(params: Params, names: list[str]) -> tuple[list[str], np.ndarray]:
    """Every manifest clip's prediction by each member's fold mean: (clip ids, members × clips
    × emotions)."""
    clips = list(StagePaths(params).read_manifest()["clip_id"])
    tables = [
        pd.read_csv(member_dir(params, n) / "predictions.csv", dtype={"clip_id": str})
        for n in names
    ]
    return clips, np.stack(
        [t.set_index("clip_id").loc[clips, list(EMOTIONS)].to_numpy() for t in tables]
    )


def _test_rows(params: Params, names, clips, stacked, weights) -> dict | None:
    """The rows on the demo's hidden test labels (None elsewhere)."""
    truth = demo.hidden_labels(params.data.root)
    if truth is None:
        return None
    manifest = StagePaths(params).read_manifest().set_index("clip_id")
    test = [
        i
        for i, c in enumerate(clips)
        if manifest.loc[c, list(EMOTIONS)].isna().any() and c in truth.index
    ]
    if not test:
        return None
    held = stacked[:, test]
    true = truth.loc[[clips[i] for i in test]].to_numpy()
    return _rows(names, held, combine(held, weights), true, "demo test")


def run_combine(params: Params) -> dict:
    """Stage ``combine``: the members' weights per emotion and the report beside its members."""
    out, reports = Path(params.ensemble.combined_out), StagePaths(params).reports
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    reports.mkdir(parents=True, exist_ok=True)
    names = list(params.ensemble.members)
    if not names:  # package serves the default system's ensemble
        for path in (out / COMBINED, reports / COMBINED):
            path.write_text(json.dumps({"members": {}}, indent=2))
        return {"members": {}}
    ids, folds, stacked = align_members(_read_members(params))
    labels = StagePaths(params).read_manifest().set_index("clip_id")[list(EMOTIONS)]
    truth = labels.loc[ids].to_numpy()
    combined_oof, _ = cross_fitted(stacked, truth, folds)
    weights = fit_weights(stacked, truth)  # served: fitted on every out-of-fold row
    digest = hashlib.sha256()
    members = {}
    for i, name in enumerate(names):
        shutil.copytree(member_dir(params, name) / "ensemble", out / "members" / name)
        version = json.loads((out / "members" / name / "ensemble.json").read_text())["version"]
        digest.update(f"{version}{weights[i].tolist()}".encode())
        members[name] = {"version": version, "weights": dict(zip(EMOTIONS, weights[i].tolist()))}
    description = {"version": f"combined-{digest.hexdigest()[:12]}", "members": members}
    (out / COMBINED).write_text(json.dumps(description, indent=2))
    clips, every = _predictions(params, names)  # evaluated: what serving must answer
    combined = pd.DataFrame({"clip_id": clips, **dict(zip(EMOTIONS, combine(every, weights).T))})
    combined.to_csv(out / "predictions.csv", index=False)
    report = description | {
        "out_of_fold": _rows(names, stacked, combined_oof, truth, "out-of-fold"),
        "demo_hidden_test": _test_rows(params, names, clips, every, weights),
        "demo_oracle_mean_pearson": demo.oracle_mean_pearson(params.data.root),
    }
    (reports / COMBINED).write_text(json.dumps(report, indent=2))
    return report
