"""DVC stages ``inputs``, ``train@<fold>`` and ``ensemble``.

``inputs`` digests the feature sets the system reads, so that the training stages depend on
those sets alone.
``train@k`` trains the configured system on every fold but k and early-stops on fold k; it saves
the best weights (safetensors), the fold's validation predictions and its learning curve
(DVCLive). ``ensemble`` gathers the folds into the model serving loads, scores the out-of-fold
predictions (and, on the demo, the hidden test labels), and writes the challenge submission.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from mimicflow import EMOTIONS
from mimicflow.config import Params
from mimicflow.data.synth import truth as demo
from mimicflow.devices import torch_device
from mimicflow.features.store import packed_digest
from mimicflow.fusion.metrics import emotion_scores
from mimicflow.fusion.systems import system as system_spec
from mimicflow.paths import NoCommitYet, StagePaths, require
from mimicflow.training.data import FeatureDataset
from mimicflow.training.ensemble import build_ensemble, load_ensemble, save_fold
from mimicflow.training.folds import UNLABELLED, assign_folds, fold_indices
from mimicflow.training.heads import HeadMismatch, head_mismatch, load_head
from mimicflow.training.trainer import FoldTrainer

log = logging.getLogger(__name__)


def format_rho(value: float | None) -> str:
    """A mean Pearson for a log line: three decimals, or "undefined" (no clip's labels or
    predictions varied: a tiny validation split)."""
    return "undefined" if value is None or value != value else f"{value:.3f}"


def model_inputs(params: Params, system: str, inputs=None) -> tuple[str, ...]:
    """The feature sets ``system`` sees: ``inputs`` (default ``train.inputs``) that it takes."""
    names = inputs or params.train.inputs
    return system_spec(system).inputs({n: params.features.sets[n].modality for n in names})


def _dataset(params: Params, manifest: pd.DataFrame, system: str, inputs=None) -> FeatureDataset:
    names = model_inputs(params, system, inputs)
    for name in names:
        require(StagePaths(params).packed(name) / "meta.json", f"features@{name}")
    return FeatureDataset(params.features.out, manifest, {n: params.train.frames[n] for n in names})


def run_inputs(params: Params) -> dict[str, str]:
    """Stage ``inputs``: ``train.out/inputs.json``, each feature set the system reads (of
    ``train.inputs``) → the SHA-256 of its packed store. ``train@k`` and ``ensemble`` depend on
    this file, not on the features folder: encoding another set leaves it unchanged."""
    paths = StagePaths(params)
    digests = {
        name: packed_digest(require(paths.packed(name), f"features@{name}"))
        for name in model_inputs(params, params.train.system)
    }
    paths.inputs.parent.mkdir(parents=True, exist_ok=True)
    paths.inputs.write_text(json.dumps(digests, indent=2))
    return digests


def gather_curves(paths: StagePaths, folds) -> pd.DataFrame:
    """Every fold's DVCLive curves as one table (fold, step, one column per metric): the data of
    ``dvc plots show``'s charts, one per metric with a line per fold."""
    tables = []
    for fold in folds:
        curves = [
            pd.read_csv(path, sep="\t")
            for path in sorted((paths.curves(fold) / "plots" / "metrics").glob("*.tsv"))
        ]
        if curves:
            table = curves[0]
            for other in curves[1:]:
                table = table.merge(other, on="step", how="outer")
            tables.append(table.assign(fold=fold))
    if not tables:
        return pd.DataFrame(columns=["fold", "step"])
    table = pd.concat(tables, ignore_index=True)
    return table[["fold", "step", *[c for c in table.columns if c not in ("fold", "step")]]]


def check_fold(params: Params, fold: int) -> None:
    """Fail before anything is written: a device this machine lacks, a fold not in train.folds."""
    torch_device(params.train.device, "train.device")
    if fold not in params.train.folds:
        raise ValueError(f"fold {fold} is not one of train.folds {list(params.train.folds)}")


def train_fold(
    params: Params,
    fold: int,
    system: str | None = None,
    inputs=None,
    progress: bool = True,
    on_epoch=None,
):
    """Train one fold; returns (FoldResult, dataset, validation indices, the trainer).

    Protocol ``final``: the fold's validation picks the epochs, then the model is trained anew
    on the training and validation clips for that many epochs; the validation predictions and
    scores stay those of the first model (the second has seen the clips). A system's
    fine-tuned head (``head: finetuned``) is loaded and evaluated instead: zero epochs, no
    refit (:func:`finetuned_head`)."""
    system = system or params.train.system
    config = params.train
    check_fold(params, fold)
    manifest = StagePaths(params).read_manifest()
    assignment = assign_folds(
        manifest, config.protocol, config.n_folds, config.seed, config.holdout_fraction
    )
    dataset = _dataset(params, manifest, system, inputs)
    train_idx, val_idx = fold_indices(assignment, fold)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{system} fold {fold}", total=None)

        def step(row):
            bar.update(
                task,
                advance=1,
                description=f"{system} fold {fold} {row['stage']} "
                f"val ρ {format_rho(row['val_mean_pearson'])}",
            )
            if on_epoch:
                on_epoch(row)

        trainer = FoldTrainer(config, system, dataset, train_idx, val_idx, config.seed + fold, step)
        if trainer.spec.finetuned(trainer.hyper):
            return trainer.load(*finetuned_head(params, system, dataset)), dataset, val_idx, trainer
        result = trainer.fit()
        if config.protocol == "final":
            result = trainer.refit(np.union1d(train_idx, val_idx), result)
        return result, dataset, val_idx, trainer


def finetuned_head(params: Params, system: str, dataset: FeatureDataset) -> tuple[dict, dict]:
    """The head the adapt stage fine-tuned with the encoder of the system's one input: its
    settings and weights (under the input's name). Refused unless evaluating it on the stored
    features gives the fine-tuned model's own predictions (:func:`head_mismatch`)."""
    option = f"train.{system}.head finetuned"
    if params.train.protocol not in ("official", "final"):
        raise HeadMismatch(
            f"{option}: protocol {params.train.protocol} validates on clips the head was "
            "trained on (adapt fine-tunes it on the train split): use official or final"
        )
    (name,) = dataset.tables
    features = params.features.sets[name]
    folder = Path(features.model)
    entry = params.adapt.encoders.get(folder.name)
    if (
        folder.parent.resolve() != Path(params.adapt.out).resolve()
        or getattr(entry, "method", None) != "finetune"
    ):
        raise HeadMismatch(
            f"{option}: feature set {name!r} is not encoded by an encoder the adapt stage "
            f"fine-tuned (its model {features.model!r} is no finetune entry of adapt.encoders)"
        )
    head = load_head(folder)
    longest = int(np.diff(dataset.tables[name].offsets).max(initial=0))
    problem = head_mismatch(
        head, features, dataset.dims()[name], longest, params.train.frames[name]
    )
    if problem:
        raise HeadMismatch(f"{option}: feature set {name!r} does not fit the head: {problem}")
    old = "scalers.audio."
    state = {
        f"scalers.{name}.{k[len(old) :]}" if k.startswith(old) else k: v
        for k, v in head["state"].items()
    }
    return head["hyper"], state


def write_fold(params: Params, out, fold: int, result, dataset, val_idx, trainer) -> dict:
    """Save a trained fold into ``out``: its model and description (``fold.json``), its
    validation predictions and its history; returns the description."""
    description = {
        "system": trainer.system,
        "fold": fold,
        "hyper": trainer.model_hyper,
        "dims": dataset.dims(),
        "kinds": dataset.kinds(),
        "inputs": list(dataset.tables),
        "frames": dataset.frames,
        "protocol": params.train.protocol,
        "sampling": trainer.sampling[1],
        "best_epoch": result.best_epoch,
        "val_scores": result.val_scores,
    }
    save_fold(out, result.state, description)
    predictions = pd.DataFrame(
        {
            "clip_id": [dataset.clip_ids[i] for i in val_idx],
            **dict(zip(EMOTIONS, result.val_pred.T)),
        }
    )
    predictions.to_csv(out / "val_predictions.csv", index=False)
    pd.DataFrame(result.history).to_csv(out / "history.csv", index=False)
    return description


def curves_logger(live_dir: Path):
    """DVCLive's logger for one fold's curves (no DVC experiment, dvc.yaml or report of its own)."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        return Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)
    except SCMError as exc:  # DVCLive reads HEAD before it checks that a commit exists
        raise NoCommitYet(
            f"training needs a git repository with at least one commit here ({exc}): "
            "commit once, e.g. `git add -A && git commit -m init`"
        ) from exc


def run_train(params: Params, fold: int, progress: bool = True) -> dict:
    """Stage ``train@<fold>``: ``train.out/<fold>/`` with the model, predictions and curve."""
    check_fold(params, fold)
    paths = StagePaths(params)
    out, live_dir = paths.fold(fold), paths.curves(fold)
    with curves_logger(live_dir) as live:

        def log_epoch(row):
            if row["stage"] == "fusion":
                live.log_metric("train_loss", row["train_loss"])
            if row["stage"] in ("fusion", "loaded"):  # loaded: a fine-tuned head, one step
                live.log_metric("val_mean_pearson", row["val_mean_pearson"])
                live.next_step()

        result, dataset, val_idx, trainer = train_fold(
            params, fold, progress=progress, on_epoch=log_epoch
        )
    description = write_fold(params, out, fold, result, dataset, val_idx, trainer)
    log.info(
        "fold %d: validation mean Pearson %.3f (best epoch %d)",
        fold,
        result.val_scores["mean_pearson"] or float("nan"),
        result.best_epoch,
    )
    return description


def run_ensemble(params: Params) -> dict:
    """Stage ``ensemble``: ``ensemble.out`` plus metrics, plots data and the submission CSV."""
    config, paths = params.train, StagePaths(params)
    reports = paths.reports
    reports.mkdir(parents=True, exist_ok=True)
    fold_dirs = [paths.fold(k) for k in config.folds]
    for folder in fold_dirs:
        require(folder / "fold.json", f"train@{folder.name}")
    ensemble = load_ensemble(build_ensemble(fold_dirs, paths.ensemble, params))
    manifest = StagePaths(params).read_manifest()
    labels = manifest.set_index("clip_id")[list(EMOTIONS)]

    oof = pd.concat(
        [pd.read_csv(d / "val_predictions.csv", dtype={"clip_id": str}) for d in fold_dirs]
    )
    metrics = {
        "system": config.system,
        "protocol": config.protocol,
        "version": ensemble.version,
        "folds": [json.loads((d / "fold.json").read_text())["val_scores"] for d in fold_dirs],
        "out_of_fold": emotion_scores(
            oof[list(EMOTIONS)].to_numpy(), labels.loc[oof["clip_id"]].to_numpy(), "out-of-fold"
        ),
    }
    assignment = assign_folds(
        manifest, config.protocol, config.n_folds, config.seed, config.holdout_fraction
    )
    predictions = ensemble.predict_store(params.features.out, list(manifest["clip_id"]))
    predictions["fold"] = assignment
    test = predictions[predictions["fold"] == UNLABELLED]
    truth = demo.hidden_labels(params.data.root)
    if truth is not None and len(test):
        metrics["demo_hidden_test"] = emotion_scores(
            test[list(EMOTIONS)].to_numpy(), truth.loc[test["clip_id"]].to_numpy(), "demo test"
        )
    oracle = demo.oracle_mean_pearson(params.data.root)
    if oracle is not None:
        metrics["demo_oracle_mean_pearson"] = oracle
        held_out = metrics.get("demo_hidden_test", metrics["out_of_fold"])["mean_pearson"]
        metrics["fraction_of_oracle"] = held_out / oracle if held_out is not None else None
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2))

    submission = test.rename(columns={"clip_id": "Filename"})[["Filename", *EMOTIONS]]
    submission.to_csv(reports / "submission.csv", index=False, float_format="%.6f")
    pd.DataFrame(
        {"emotion": EMOTIONS, "pearson": [metrics["out_of_fold"]["pearson"][e] for e in EMOTIONS]}
    ).to_csv(reports / "per_emotion.csv", index=False)
    scatter = oof.melt(id_vars="clip_id", var_name="emotion", value_name="predicted")
    scatter["true"] = [labels.at[c, e] for c, e in zip(scatter["clip_id"], scatter["emotion"])]
    scatter.to_csv(reports / "oof_scatter.csv", index=False)
    gather_curves(paths, config.folds).to_csv(reports / "curves.tsv", sep="\t", index=False)
    return metrics
