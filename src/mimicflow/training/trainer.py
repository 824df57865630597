"""Training one fold of one system: the loop, early stopping, EMA, the systems' schedules.

Everything is seeded (torch, numpy, the batch order, TSN sampling and modality dropout), so a
fold trained twice with the same seed gives the same weights on the same machine.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from mimicflow.config import SystemParams, TrainParams
from mimicflow.fusion.losses import ccc_loss, mimicmetrics_loss, text_anchored_triplet_loss
from mimicflow.fusion.metrics import UndefinedMetricWarning, emotion_scores
from mimicflow.fusion.models import branch_kind, build_model, fit_input_scaling
from mimicflow.training.data import ClipFeatures, FeatureDataset

log = logging.getLogger(__name__)
REGRESSION_LOSSES: dict[str, Callable] = {
    "mse": nn.functional.mse_loss, "ccc": ccc_loss, "mimicmetrics": mimicmetrics_loss,
}  # fmt: skip


@dataclass
class FoldResult:
    """A trained fold: its best weights, the validation predictions and the learning curve."""

    state: dict[str, torch.Tensor]
    model: nn.Module  # with the best weights, in eval mode
    val_pred: np.ndarray  # validation clips × 6
    val_scores: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)  # per epoch: stage, loss, val Pearson


def system_inputs(system: str, kinds: dict[str, str]) -> tuple[str, ...]:
    """The inputs (name → modality) a system uses: Augsburg the audio ones, the others all."""
    if system == "augsburg":
        return tuple(name for name, kind in kinds.items() if branch_kind(kind) == "audio")
    return tuple(kinds)


def model_hyper(system: str, params: SystemParams) -> dict:
    """The constructor arguments of a system's module, from its params section."""
    names = {"fuxi": ("hidden", "embed", "dropout"), "ustc": ("hidden", "heads", "layers", "dropout"),
             "augsburg": ("hidden", "dropout"),
             "mimicmetrics": ("hidden", "dropout", "modality_dropout", "queries")}[system]  # fmt: skip
    return {name: getattr(params, name) for name in names}


def to_tensors(batch: ClipFeatures, device: str = "cpu"):
    inputs = {m: (torch.from_numpy(v).to(device), torch.from_numpy(k).to(device))
              for m, (v, k) in batch.inputs.items()}  # fmt: skip
    return inputs, torch.from_numpy(np.nan_to_num(batch.labels)).to(device)


@torch.inference_mode()
def predict(model: nn.Module, dataset: FeatureDataset, indices, sampling: str, batch_size: int = 64):
    """Predictions (clips × 6) of ``model`` in eval mode."""
    model.eval()
    chunks = []
    for start in range(0, len(indices), batch_size):
        inputs, _ = to_tensors(dataset.batch(indices[start : start + batch_size], sampling))
        chunks.append(model(inputs)["pred"].numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 6), np.float32)


def start_at_training_mean(model: nn.Module, labels: np.ndarray) -> None:
    """Every layer that emits the six intensities (before the sigmoid) starts with the logit of
    the training mean as its bias: training begins at the baseline instead of at 0.5."""
    mean = np.clip(np.nanmean(labels, axis=0), 0.01, 0.99)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear) and layer.out_features == len(mean):
                layer.bias.copy_(torch.from_numpy(np.log(mean / (1 - mean))))


def _ema(model: nn.Module, decay: float) -> AveragedModel:
    """EMA of the weights, with the usual warm-up (decay grows to ``decay`` over the first
    steps, so the average is not dominated by the random initialisation on small data)."""

    def average(averaged, current, steps):
        rate = min(decay, (1 + steps) / (10 + steps))
        return rate * averaged + (1 - rate) * current

    return AveragedModel(model, avg_fn=average, use_buffers=True)


class FoldTrainer:
    """Train ``system`` on ``train_idx`` of ``dataset``, early-stopped on ``val_idx``."""

    def __init__(self, params: TrainParams, system: str, dataset: FeatureDataset, train_idx,
                 val_idx, seed: int, on_epoch: Callable[[dict], None] | None = None):  # fmt: skip
        self.params, self.system = params, system
        self.hyper = params.system_params(system)
        self.dataset, self.train_idx, self.val_idx = dataset, np.asarray(train_idx), np.asarray(val_idx)
        self.seed, self.on_epoch = seed, on_epoch or (lambda row: None)
        self.sampling = ("random", "centre") if system == "fuxi" else ("mean", "mean")
        self.history: list[dict] = []

    def _new_model(self):
        torch.manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        model = build_model(self.system, self.dataset.dims(), self.dataset.kinds(),
                            **model_hyper(self.system, self.hyper))  # fmt: skip
        fit_input_scaling(model, self.dataset.feature_stats(self.train_idx, self.sampling[1]))
        start_at_training_mean(model, self.dataset.labels[self.train_idx])
        return model

    def fit(self) -> FoldResult:
        model = self._new_model()
        if self.system == "mimicmetrics":
            self._pretrain_encoders(model)
        best = self._fit_loop(model, stage="fusion")
        model.load_state_dict(best)
        val_pred = predict(model, self.dataset, self.val_idx, self.sampling[1])
        scores = emotion_scores(val_pred, self.dataset.labels[self.val_idx], where="validation")
        best_epoch = max((r for r in self.history if r["stage"] == "fusion"),
                         key=lambda r: r["val_mean_pearson"])["epoch"]  # fmt: skip
        return FoldResult(best, model.eval(), val_pred, scores, best_epoch, self.history)

    def refit(self, indices, chosen: FoldResult) -> FoldResult:
        """Protocol ``final``: a new model trained on ``indices`` for the epochs ``chosen`` found
        best (no early stopping: its weights after the last of them). Validation predictions
        and scores stay ``chosen``'s."""
        self.train_idx, epochs = np.asarray(indices), chosen.best_epoch + 1
        model = self._new_model()
        if self.system == "mimicmetrics":
            self._pretrain_encoders(model)
        state = self._fit_loop(model, stage="final", epochs=epochs, keep="last")
        model.load_state_dict(state)
        return FoldResult(state, model.eval(), chosen.val_pred, chosen.val_scores, chosen.best_epoch,
                          self.history)  # fmt: skip

    def _pretrain_encoders(self, model) -> None:
        """MimicMetrics stage 1: each encoder with its own head, alone; heads then dropped."""
        for modality in list(model.encoders):
            model.unimodal = modality
            model.load_state_dict(self._fit_loop(model, stage=f"pretrain_{modality}",
                                                 epochs=self.hyper.pretrain_epochs))  # fmt: skip
        model.unimodal = None

    def _optimiser(self, model, stage: str):
        hyper = self.hyper
        if stage.startswith("pretrain_"):
            groups = model.encoders[stage.removeprefix("pretrain_")].parameters()
        elif self.system == "fuxi":
            groups = model.param_groups(hyper.lr, hyper.branch_lr)
        elif self.system == "mimicmetrics":
            groups = model.param_groups(hyper.lr, hyper.encoder_lr_scale)
        else:
            groups = model.parameters()
        optimiser = torch.optim.AdamW(groups, lr=hyper.lr, weight_decay=hyper.weight_decay)
        if self.system == "fuxi":
            steps = max(1, -(-len(self.train_idx) // self.params.batch_size))
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimiser, T_0=hyper.restart_epochs * steps, eta_min=hyper.min_lr)
            return optimiser, scheduler, "step"
        if self.system == "mimicmetrics" and stage == "fusion":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimiser, mode="max", factor=hyper.plateau_factor, patience=hyper.plateau_patience)
            return optimiser, scheduler, "plateau"
        return optimiser, None, None

    def _loss(self, model, out, inputs, target):
        loss = REGRESSION_LOSSES[self.hyper.loss](out["pred"], target)
        text = [name for name, kind in model.kinds.items() if kind == "text"]
        if self.system == "fuxi" and text and self.hyper.triplet_weight > 0:
            values, mask = inputs[text[0]]
            text_vec = values.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            fused = nn.functional.normalize(torch.stack(list(out["embeddings"].values()), 1).mean(1), dim=-1)
            loss = loss + self.hyper.triplet_weight * text_anchored_triplet_loss(
                fused, text_vec, self.hyper.triplet_margin)
        return loss

    def _fit_loop(self, model, stage: str, epochs: int | None = None, keep: str = "best") -> dict:
        """Train until the validation mean Pearson stops improving; the best weights (of the EMA
        model when the system uses one), or with ``keep="last"`` all ``epochs`` and the last."""
        optimiser, scheduler, schedule = self._optimiser(model, stage)
        ema = _ema(model, self.hyper.ema) if self.hyper.ema else None
        evaluated = ema.module if ema else model
        best_score, best_state, waited = -np.inf, copy.deepcopy(evaluated.state_dict()), 0
        size = self.params.batch_size
        for epoch in range(epochs or self.params.epochs):
            model.train()
            order = self.rng.permutation(self.train_idx)
            losses = []
            for start in range(0, len(order) - 1, size):
                batch = self.dataset.batch(order[start : start + size], self.sampling[0], self.rng)
                inputs, target = to_tensors(batch)
                loss = self._loss(model, model(inputs), inputs, target)
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimiser.step()
                if ema:
                    ema.update_parameters(model)
                if schedule == "step":
                    scheduler.step()
                losses.append(loss.item())
            pred = predict(evaluated, self.dataset, self.val_idx, self.sampling[1])
            with warnings.catch_warnings():  # an undefined emotion is left out of the mean
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                score = emotion_scores(pred, self.dataset.labels[self.val_idx])["mean_pearson"]
            score = -1.0 if score is None else score
            if schedule == "plateau":
                scheduler.step(score)
            row = {"stage": stage, "epoch": epoch, "train_loss": float(np.mean(losses)),
                   "val_mean_pearson": score}  # fmt: skip
            self.history.append(row)
            self.on_epoch(row)
            if keep == "last":
                best_state = copy.deepcopy(evaluated.state_dict())
            elif score > best_score:
                best_score, best_state, waited = score, copy.deepcopy(evaluated.state_dict()), 0
            else:
                waited += 1
                if waited >= self.params.patience:
                    break
        log.debug("%s: best validation mean Pearson %.3f", stage, best_score)
        return best_state
