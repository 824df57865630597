"""DVC stage ``compare`` (``make compare``): the comparison table.

Each recipe's demo flavour, every system on the feature sets of ``train.inputs``, and the
default system on one input at a time, each cross-validated on the same folds (``train.folds``,
protocol merged) with the same epoch budget, next to a predict-the-training-mean baseline
(out-of-fold, and on the demo also the fold models' mean on the hidden test labels).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from mimicflow.config import Params
from mimicflow.data.synth import truth as demo
from mimicflow.fusion.metrics import emotion_scores
from mimicflow.fusion.systems import SYSTEMS
from mimicflow.fusion.systems import system as system_spec
from mimicflow.paths import StagePaths
from mimicflow.stages.train import model_inputs, train_fold
from mimicflow.training.folds import UNLABELLED, assign_folds
from mimicflow.training.trainer import predict

log = logging.getLogger(__name__)


def cross_validate(params: Params, system: str, inputs=None, progress: bool = True) -> dict:
    """Out-of-fold scores of ``system`` (on ``inputs``) and of the training-mean baseline;
    on the demo data also the fold models' mean on the hidden test labels."""
    config = params.train
    manifest = StagePaths(params).read_manifest()
    test_idx = np.flatnonzero(
        assign_folds(manifest, config.protocol, config.n_folds, config.seed) == UNLABELLED
    )
    truth = demo.hidden_labels(
        params.data.root
    )  # demo data only: real test clips have no labels to score
    score_test = truth is not None and len(test_idx) > 0
    oof_pred, oof_true, base_pred, test_pred = [], [], [], []
    for fold in config.folds:
        result, dataset, val_idx, trainer = train_fold(params, fold, system, inputs, progress)
        train_mask = np.ones(len(dataset), bool)
        train_mask[val_idx] = False
        labelled = np.isfinite(dataset.labels).all(1)
        train_mean = dataset.labels[train_mask & labelled].mean(0)
        oof_pred.append(result.val_pred)
        oof_true.append(dataset.labels[val_idx])
        base_pred.append(np.repeat(train_mean[None], len(val_idx), 0))
        if score_test:
            test_pred.append(predict(result.model, dataset, test_idx, trainer.sampling[1]))
    pred, true, base = (np.concatenate(x) for x in (oof_pred, oof_true, base_pred))
    scores = emotion_scores(pred, true, f"{system} out-of-fold")
    row = {
        "mean_pearson": scores["mean_pearson"],
        "mse": float(((pred - true) ** 2).mean()),
        "baseline_mean_pearson": emotion_scores(base, true, "baseline")["mean_pearson"],
        "baseline_mse": float(((base - true) ** 2).mean()),
        "inputs": list(model_inputs(params, system, inputs)),
    }
    if score_test:
        test_true = truth.loc[manifest["clip_id"].iloc[test_idx]].to_numpy()
        row["demo_hidden_test_mean_pearson"] = emotion_scores(
            np.mean(test_pred, 0), test_true, f"{system} demo test"
        )["mean_pearson"]
    log.info(
        "%s: out-of-fold ρ %.3f, MSE %.3f, demo test ρ %s",
        system,
        row["mean_pearson"] or float("nan"),
        row["mse"],
        row.get("demo_hidden_test_mean_pearson"),
    )
    return row


def recipe_params(params: Params, name: str) -> Params:
    """``params`` with recipe ``name``'s demo flavour applied, trained as the comparison trains
    every row (see ``redirected``): ``ensemble.compare_epochs`` epochs at most, its feature sets
    under ``<ensemble.compare_out>/<name>``."""
    from mimicflow.recipes import load_recipes, recipe_overlay, validate_overlay

    recipes = load_recipes(params.ensemble.recipes_dir)
    if name not in recipes:
        raise ValueError(
            f"no recipe {name!r} in {params.ensemble.recipes_dir} (it has {', '.join(recipes)})"
        )
    base = params.model_dump(mode="json", by_alias=True)
    applied = validate_overlay(base, recipe_overlay(recipes[name], demo=True))
    return redirected(
        params, applied, params.ensemble.compare_out / name, params.ensemble.compare_epochs
    )


def redirected(params: Params, applied: Params, folder: Path, budget: int | None = None) -> Params:
    """``applied`` (``params`` with an overlay) trained on the pipeline's folds: protocol merged
    over ``train.folds`` and ``train.seed``, at most ``budget`` epochs, the pipeline's faces and
    transcripts, and its feature sets under ``folder`` (a set the pipeline already made is linked
    there, not made again). Its ``adapt`` entries write under ``<folder>/adapted``, and the sets
    naming them follow. A fine-tuned head (``head: finetuned``) is retrained: adapt trained it
    on the train split, which merged folds validate on."""
    epochs = applied.train.epochs if budget is None else min(applied.train.epochs, budget)
    system = applied.train.system
    hyper = applied.train.system_params(system)
    if system_spec(system).finetuned(hyper):  # trained on the train split: not cross-validated
        hyper = hyper.model_copy(update={"head": "retrained"})
    train = applied.train.model_copy(
        update={
            "protocol": "merged",
            "folds": params.train.folds,
            "seed": params.train.seed,
            "epochs": epochs,
            system: hyper,
        }
    )
    adapt = applied.adapt.model_copy(update={"out": folder / "adapted"})
    sets = {
        key: spec.model_copy(update={"model": str(adapt.out / Path(spec.model).name)})
        if Path(spec.model).parent == applied.adapt.out
        else spec
        for key, spec in applied.features.sets.items()
    }
    features = applied.features.model_copy(update={"out": folder, "sets": sets})
    return applied.model_copy(
        update={
            "train": train,
            "features": features,
            "adapt": adapt,
            "faces": params.faces,
            "asr": params.asr,
        }
    )  # one perception for every row


def _made_sets(params: Params) -> dict[str, Path]:
    """Settings key → store of every feature set made so far: the pipeline's, then those the
    comparison and the ensemble's members encoded (under ``ensemble.compare_out``)."""
    made = {}
    stores = [StagePaths(params).features(name) for name in params.features.sets]
    compared = Path(params.ensemble.compare_out)
    if compared.is_dir():
        stores += sorted(p for p in compared.glob("*/*") if p.is_dir() and not p.is_symlink())
    for store in stores:
        meta = store / "packed" / "meta.json"
        if meta.is_file():
            made.setdefault(json.loads(meta.read_text()).get("settings"), store)
    return made


def recipe_features(params: Params, recipe: Params, progress: bool) -> None:
    """Make the recipe's adapted encoders (its Stage I), then its feature sets: each one made
    already (same settings: the pipeline's, another recipe's or member's) is linked, the others
    are encoded from the pipeline's faces and transcripts."""
    from mimicflow.clip.settings import EncoderSettings
    from mimicflow.stages.adapt import run_adapt
    from mimicflow.stages.features import run_features

    if recipe.adapt.encoders:
        log.info("adapting the encoders of %s", ", ".join(recipe.adapt.encoders))
        run_adapt(recipe, progress)

    made = _made_sets(params)
    for name in model_inputs(recipe, recipe.train.system):
        target = StagePaths(recipe).features(name)
        key = EncoderSettings.from_params(recipe, name).key()
        if target.is_symlink():
            target.unlink()
        store = made.get(key)
        if store is None:
            log.info("encoding feature set %s", name)
            run_features(recipe, name, progress)
        elif store.resolve() != target.resolve():  # made elsewhere: linked
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            target.symlink_to(store.resolve(), target_is_directory=True)


def _compare_recipes(params: Params) -> tuple[str, ...]:
    """``ensemble.compare_recipes``, or every recipe in ``recipes_dir`` when it is None."""
    from mimicflow.recipes import load_recipes

    names = params.ensemble.compare_recipes
    return tuple(load_recipes(params.ensemble.recipes_dir)) if names is None else names


def run_compare(params: Params, progress: bool = True) -> dict:
    """Stage ``compare``: each recipe's demo flavour, every system on ``train.inputs``, and the
    default system on each single input — all on the same folds, with the same epoch budget."""
    budget = min(params.train.epochs, params.ensemble.compare_epochs)
    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": budget})})
    runs = {
        f"recipe {name} (demo)": (recipe_params(params, name), None, None)
        for name in _compare_recipes(params)
    }
    systems = params.ensemble.compare_systems
    runs |= {name: (params, name, None) for name in (SYSTEMS if systems is None else systems)}
    default = params.train.system
    taken = model_inputs(params, default)
    if len(taken) > 1:  # a system that takes one of the inputs has no single-input rows
        runs |= {f"{default} ({m} only)": (params, default, (m,)) for m in taken}
    table = {}
    for label, (run_params, system, inputs) in runs.items():
        if system is None:
            recipe_features(params, run_params, progress)
        log.info("cross-validating %s", label)
        table[label] = cross_validate(
            run_params, system or run_params.train.system, inputs, progress
        )
    table = {
        "default_system": default,
        "oracle_mean_pearson": demo.oracle_mean_pearson(params.data.root),
        "runs": table,
    }
    reports = StagePaths(params).reports
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "compare.json").write_text(json.dumps(table, indent=2))
    return table
