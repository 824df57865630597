"""Recipe values reach the model: for every recipe, paper and demo flavour, the trainer built
from the applied params (through ``train_fold``, as stage ``train`` builds it) runs with the
recipe's optimiser groups (learning rates, weight decay), schedule, loss and its weights, EMA
decay, gradient clipping, epochs and batch size. Each value is observed where the trainer
uses it, and compared with the recipe file's own value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mimicflow.fusion.fuxi as fuxi_module
import mimicflow.training.trainer as trainer_module
from mimicflow.config import Params
from mimicflow.features.synthetic import write_synthetic_store
from mimicflow.recipes import load_recipes, recipe_overlay, validate_overlay
from mimicflow.stages.train import model_inputs, train_fold

ROOT = Path(__file__).resolve().parents[1]
RECIPES = load_recipes(ROOT / "recipes")
SCHEDULES = {
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
    "sgdr": torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
}


class Stop(Exception):
    """Raised after the first step of the fusion stage: everything is built and used by then."""


def _applied(name: str, demo: bool, root: Path) -> Params:
    """The flavour's params over a synthetic store of its inputs (80 clips)."""
    base = Params().model_dump(mode="json", by_alias=True)
    base["validate"]["out"] = str(root / "validated")
    base["features"]["out"] = str(root / "features")
    overlay = recipe_overlay(RECIPES[name], demo)
    # 8 frames per input (Augsburg's 600-frame LSTM of width 1027 costs minutes a step on a CPU):
    # the values under test do not depend on it
    overlay["train"]["frames"] = dict.fromkeys(overlay["train"]["frames"], 8)
    # a recipe's `head: finetuned` loads the adapt stage's head (test_finetune.py); the values
    # under test here are its `retrained` option's
    overlay["train"].get("augsburg", {}).pop("head", None)
    params = validate_overlay(base, overlay)
    inputs = model_inputs(params, params.train.system)
    manifest = write_synthetic_store(root / "features", 80, dict.fromkeys(inputs, 8), seed=1)
    for name_ in inputs:  # each store records its set's modality (motion is visual)
        meta = root / "features" / name_ / "packed" / "meta.json"
        data = json.loads(meta.read_text())
        data["modality"] = params.features.sets[name_].modality
        meta.write_text(json.dumps(data))
    (root / "validated").mkdir()
    manifest.to_parquet(root / "validated" / "manifest.parquet")
    return params


class Seen:
    """What the trainer used, recorded by spies on the functions it calls."""

    def __init__(self, monkeypatch):
        self.optimisers, self.schedules, self.ema, self.clips = [], [], [], []
        self.losses, self.totals, self.triplets, self.stages = [], [], [], []
        adamw, schedule, ema = torch.optim.AdamW, trainer_module.Schedule, trainer_module._ema
        monkeypatch.setattr(torch.optim, "AdamW", self._record(adamw, self.optimisers))
        seen = self

        class StopAfterOneStep(schedule):
            """The schedule, recorded; the first fusion step (everything used once) ends it."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                seen.schedules.append(self)

            def batch(self) -> None:
                super().batch()
                if seen.stages[-1][0] == "fusion":
                    raise Stop

        monkeypatch.setattr(trainer_module, "Schedule", StopAfterOneStep)
        monkeypatch.setattr(trainer_module, "_ema", self._spy(ema, self.ema, lambda m, d, *_: d))
        for mode in ("norm", "value"):
            clip = getattr(torch.nn.utils, f"clip_grad_{mode}_")
            monkeypatch.setattr(
                torch.nn.utils, f"clip_grad_{mode}_", self._spy(clip, self.clips, self._clip(mode))
            )
        # in place: the trainer and CASIA's own loss read the same table
        for key, function in list(trainer_module.REGRESSION_LOSSES.items()):
            monkeypatch.setitem(trainer_module.REGRESSION_LOSSES, key, self._loss(key, function))
        triplet = fuxi_module.text_anchored_triplet_loss  # where Fuxi's spec looks it up
        monkeypatch.setattr(
            fuxi_module, "text_anchored_triplet_loss", self._spy(triplet, self.triplets, None)
        )
        self.steps = []
        fit_loop, total = trainer_module.FoldTrainer._fit_loop, trainer_module.FoldTrainer._loss
        steps = trainer_module.FoldTrainer.steps_per_epoch
        monkeypatch.setattr(
            trainer_module.FoldTrainer, "steps_per_epoch", self._spy(steps, self.steps, None)
        )

        def fit_loop_spy(trainer, model, stage, epochs=None, **kwargs):
            self.stages.append((stage, epochs))
            return fit_loop(trainer, model, stage, 1 if stage.startswith("pretrain") else epochs)

        monkeypatch.setattr(trainer_module.FoldTrainer, "_fit_loop", fit_loop_spy)
        monkeypatch.setattr(
            trainer_module.FoldTrainer, "_loss", self._spy(total, self.totals, lambda *a: len(a[4]))
        )

    @staticmethod
    def _clip(mode):
        return lambda parameters, value, *a, **k: (mode, value)

    @staticmethod
    def _record(cls, into: list):
        def build(*args, **kwargs):
            made = cls(*args, **kwargs)
            into.append(made)
            return made

        return build

    @staticmethod
    def _spy(function, into: list, what):
        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            into.append((what(*args, **kwargs) if what else args, result))
            return result

        return call

    def _loss(self, name, function):
        def call(pred, target):
            value = function(pred, target)
            self.losses.append((name, value.detach()))
            return value

        return call


def _lr(group: dict) -> float:
    return group.get("initial_lr", group["lr"])  # a warm-up scales lr; the schedule keeps it


@pytest.mark.heavy  # one fusion step per recipe and flavour: about 15 s each on 2 cores
@pytest.mark.parametrize("demo", [False, True], ids=["paper", "demo"])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_values_reach_the_trainer(name, demo, tmp_path, monkeypatch):
    params = _applied(name, demo, tmp_path)
    train = recipe_overlay(RECIPES[name], demo)["train"]  # the recipe file's values
    system = train["system"]
    hyper = train[system]
    seen = Seen(monkeypatch)

    with pytest.raises(Stop):
        train_fold(params, train["folds"][0], progress=False)

    # optimiser: the fusion stage's (the last built), its groups' rates and weight decay
    optimiser, schedule = seen.optimisers[-1], seen.schedules[-1]
    groups = optimiser.param_groups
    assert {g["weight_decay"] for g in groups} == {hyper["weight_decay"]}
    inputs = model_inputs(params, system)
    if system == "fuxi":
        kinds = {n: params.features.sets[n].modality for n in inputs}
        expected = {n: hyper["branch_lr"].get(kinds[n], hyper["lr"]) for n in inputs}
        assert {g["name"]: _lr(g) for g in groups} == expected | {"fusion": hyper["lr"]}
    elif system == "mimicmetrics":
        lr = hyper["lr"]
        assert [_lr(g) for g in groups] == pytest.approx([lr * hyper["encoder_lr_scale"], lr])
        assert [s for s in seen.stages if s[0].startswith("pretrain")] == [
            (
                f"pretrain_{n}",
                hyper.get("pretrain_epochs_by_input", {}).get(n, hyper["pretrain_epochs"]),
            )
            for n in inputs
        ]
    else:
        assert [_lr(g) for g in groups] == [hyper["lr"]]

    # schedule: its kind and horizon, warm-up, floor
    steps = seen.steps[-1][1]  # optimiser steps per epoch
    if hyper.get("schedule_step") == "epoch":  # the schedule steps once an epoch instead
        steps = 1
    assert schedule.warmup == round(hyper["warmup_epochs"] * steps)
    main = schedule.per_batch
    if schedule.warmup and main is not None:
        main = main._schedulers[-1]
    if hyper["schedule"] == "plateau":
        assert main is None and schedule.plateau.factor == hyper["plateau_factor"]
        assert schedule.plateau.patience == hyper["plateau_patience"]
    else:
        assert type(main) is SCHEDULES[hyper["schedule"]] and main.eta_min == hyper["min_lr"]
        if hyper["schedule"] == "sgdr":
            period = main.T_0
            assert period == hyper["restart_epochs"] * steps
        else:  # the cosine spans the recipe's epochs
            assert main.T_max == train["epochs"] * steps - schedule.warmup

    # loss: the recipe's, and Fuxi's triplet term at its margin and weight
    assert {name_ for name_, _ in seen.losses} == {hyper["loss"]}
    if system == "fuxi" and hyper["triplet_weight"] > 0:
        args, triplet = seen.triplets[-1]
        assert args[2] == hyper["triplet_margin"]
        (_, regression), (_, total) = seen.losses[-1], seen.totals[-1]
        assert float(total.detach()) == pytest.approx(
            float(regression) + hyper["triplet_weight"] * float(triplet.detach()), rel=1e-5
        )

    # EMA decay, gradient clipping, epochs and batch size
    assert [decay for decay, _ in seen.ema] == ([hyper["ema"]] if hyper["ema"] else [])
    default = type(params.train.system_params()).model_fields["grad_clip_mode"].default
    mode = hyper.get("grad_clip_mode", default)
    assert {clip for clip, _ in seen.clips} == {(mode, hyper["grad_clip"])}
    assert params.train.epochs == train["epochs"] and params.train.patience == train["patience"]
    assert seen.totals[-1][0] == train["batch_size"]  # clips in the fusion stage's first batch
