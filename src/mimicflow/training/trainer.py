"""Training one fold of one system: the loop, early stopping, EMA, learning-rate schedules.

Everything is seeded (torch, numpy, the batch order, TSN sampling and modality dropout), so a
fold trained twice with the same seed gives the same weights on the same machine.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from mimicflow.config import SystemParams, TrainParams
from mimicflow.devices import torch_device
from mimicflow.fusion.losses import REGRESSION_LOSSES
from mimicflow.fusion.metrics import UndefinedMetricWarning, emotion_scores
from mimicflow.fusion.models import branch_kind, fit_input_scaling
from mimicflow.fusion.systems import system as system_spec
from mimicflow.training.data import FeatureBatch, FeatureDataset

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    """A trained fold: its best weights, the validation predictions and the learning curve."""

    state: dict[str, torch.Tensor]
    model: nn.Module  # with the best weights, in eval mode
    val_pred: np.ndarray  # validation clips × 6
    val_scores: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)  # per epoch: stage, loss, val Pearson


def to_tensors(batch: FeatureBatch):
    inputs = {m: (torch.from_numpy(v), torch.from_numpy(k)) for m, (v, k) in batch.inputs.items()}
    return inputs, torch.from_numpy(np.nan_to_num(batch.labels))


def to_device(tensors, device: torch.device):
    """Inputs and targets onto ``device`` (asynchronously from pinned memory)."""
    inputs, target = tensors

    def move(t):
        return t.to(device, non_blocking=True)

    return {m: (move(v), move(k)) for m, (v, k) in inputs.items()}, move(target)


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; full precision otherwise."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: FeatureDataset,
    indices,
    sampling: str,
    batch_size: int = 64,
    amp: bool = False,
    held: DeviceBatches | None = None,
):
    """Predictions (clips × 6) of ``model`` in eval mode, on the model's device; ``held``: the
    dataset's clips held there (pooled by ``sampling``), each batch gathered from them."""
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        if held is None:
            inputs, _ = to_device(to_tensors(dataset.batch(chunk, sampling)), device)
        else:
            inputs, _ = held.batch(chunk)
        with autocast(device, amp):
            chunks.append(model(inputs)["pred"].float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 6), np.float32)


class TrainingBatches(torch.utils.data.Dataset):
    """One epoch's training batches, assembled on the host from the store — in ``DataLoader``
    worker processes where there are any. Batch k draws its random segments ("random" sampling)
    from its own seed, so the batches are the same however many workers assemble them."""

    def __init__(self, dataset: FeatureDataset, batches: list[np.ndarray], sampling: str, seeds):
        self.dataset, self.batches, self.sampling, self.seeds = dataset, batches, sampling, seeds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        rng = np.random.default_rng(self.seeds[k])
        return self.batches[k], to_tensors(self.dataset.batch(self.batches[k], self.sampling, rng))


def copy_to_device(array: np.ndarray, device: torch.device, rows: int = 1 << 18) -> torch.Tensor:
    """``array`` (a memory map, say) as a tensor on ``device``, copied a slice of rows at a time
    (the host never holds more than one slice beyond the map)."""
    out = torch.empty(
        array.shape, dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype, device=device
    )
    for start in range(0, len(array), rows):
        out[start : start + rows] = torch.from_numpy(np.array(array[start : start + rows])).to(
            device
        )
    return out


class DeviceBatches:
    """A dataset's clips held on ``device``, so that a batch is gathered where it is used: every
    clip pooled once ("mean", "centre"), or for "random" each input's frames as the store holds
    them and where each clip's segments lie, one frame per segment drawn per batch from the same
    uniform numbers as :meth:`FeatureDataset.batch` draws (either path gives the same batches)."""

    def __init__(self, dataset: FeatureDataset, sampling: str, device: torch.device):
        self.dataset, self.sampling, self.device = dataset, sampling, device
        self.labels = torch.from_numpy(np.nan_to_num(dataset.labels)).to(device)
        self.inputs = {
            name: (self._frames(table.values),)
            if sampling == "random"
            else tuple(torch.from_numpy(a).to(device) for a in dataset.pooled(name, sampling))
            for name, table in dataset.tables.items()
        }

    def _frames(self, values: np.ndarray):
        """The store's frames: on the CPU its memory map as it is, elsewhere copied there."""
        return values if self.device.type == "cpu" else copy_to_device(values, self.device)

    def batch(self, indices: np.ndarray, rng: np.random.Generator | None = None):
        """(inputs, targets) of clips ``indices`` on the device (``rng``: for "random")."""
        indices = np.asarray(indices, np.int64)
        on_device = torch.from_numpy(indices).to(self.device)
        inputs = {}
        for name, held in self.inputs.items():
            if self.sampling == "random":
                uniform = rng.random((len(indices), self.dataset.frames[name]))
                rows, mask = self.dataset.segments(name).draw(indices, uniform)
                mask = torch.from_numpy(mask).to(self.device)
                if isinstance(held[0], np.ndarray):  # the memory map, on the CPU
                    values = torch.from_numpy(np.asarray(held[0][rows], np.float32))
                else:
                    values = held[0][torch.from_numpy(rows).to(self.device)].float()
                inputs[name] = (values * mask.unsqueeze(-1), mask)
            else:
                inputs[name] = tuple(t.index_select(0, on_device) for t in held)
        return inputs, self.labels.index_select(0, on_device)


def start_at_training_mean(model: nn.Module, labels: np.ndarray) -> None:
    """Every layer that emits the six intensities starts with the training mean as its bias
    (its logit before a sigmoid): training begins at the baseline instead of at 0.5."""
    mean = np.clip(np.nanmean(labels, axis=0), 0.01, 0.99)
    bias = mean if getattr(model, "linear_output", False) else np.log(mean / (1 - mean))
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear) and layer.out_features == len(mean):
                layer.bias.copy_(torch.from_numpy(bias))


class Schedule:
    """A system's learning-rate schedule (``schedule`` in its params), after an optional linear
    warm-up of ``warmup_epochs``: ``batch()`` after every optimiser step, ``epoch(score)`` after
    every validation (the plateau schedule reads the validation mean Pearson). With
    ``schedule_step: epoch`` the schedule counts epochs, not batches, and steps in ``epoch``."""

    def __init__(
        self,
        optimiser: torch.optim.Optimizer,
        hyper: SystemParams,
        epochs: int,
        steps_per_epoch: int,
    ):
        lr_scheduler = torch.optim.lr_scheduler
        self.by_epoch = hyper.schedule_step == "epoch"
        steps_per_epoch = 1 if self.by_epoch else steps_per_epoch
        self.warmup = round(hyper.warmup_epochs * steps_per_epoch)
        self.steps, self.plateau = 0, None
        main = None
        if hyper.schedule == "cosine":
            main = lr_scheduler.CosineAnnealingLR(
                optimiser,
                T_max=max(1, epochs * steps_per_epoch - self.warmup),
                eta_min=hyper.min_lr,
            )
        elif hyper.schedule == "sgdr":
            main = lr_scheduler.CosineAnnealingWarmRestarts(
                optimiser, T_0=hyper.restart_epochs * steps_per_epoch, eta_min=hyper.min_lr
            )
        elif hyper.schedule == "plateau":
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimiser, mode="max", factor=hyper.plateau_factor, patience=hyper.plateau_patience
            )
        if self.warmup:
            warm = lr_scheduler.LinearLR(
                optimiser, start_factor=1 / (self.warmup + 1), total_iters=self.warmup
            )
            main = (
                warm
                if main is None
                else lr_scheduler.SequentialLR(optimiser, [warm, main], [self.warmup])
            )
        self.per_batch = main

    def batch(self) -> None:
        self.steps += 1
        if self.per_batch is not None and not self.by_epoch:
            self.per_batch.step()

    def epoch(self, score: float) -> None:
        if self.per_batch is not None and self.by_epoch:
            self.per_batch.step()
        if self.plateau is not None and self.steps >= self.warmup:
            self.plateau.step(score)


def clip_gradients(model: nn.Module, hyper: SystemParams) -> None:
    """Clip the gradients to ``grad_clip``: their global norm, or each value
    (``grad_clip_mode``)."""
    if hyper.grad_clip_mode == "value":
        nn.utils.clip_grad_value_(model.parameters(), hyper.grad_clip)
    else:
        nn.utils.clip_grad_norm_(model.parameters(), hyper.grad_clip)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s state dict (its tensors cloned, its metadata kept)."""
    state = module.state_dict()
    copied = type(state)((name, tensor.detach().clone()) for name, tensor in state.items())
    copied._metadata = state._metadata  # load_state_dict reads the versions from it
    return copied


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu() for name, tensor in state.items()}


def _ema(model: nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """EMA of the weights, with the usual warm-up (decay grows to ``decay`` over the first
    steps, so the average is not dominated by the random initialisation on small data), or
    without it (``warmup`` False: ``decay`` from the first step, the average starting at the
    initial weights)."""
    if not warmup:
        averaged = AveragedModel(
            model,
            avg_fn=lambda averaged, current, steps: decay * averaged + (1 - decay) * current,
            use_buffers=True,
        )
        averaged.n_averaged.fill_(1)  # the first update averages with the initial weights
        return averaged

    def average(averaged, current, steps):
        rate = min(decay, (1 + steps) / (10 + steps))
        return rate * averaged + (1 - rate) * current

    return AveragedModel(model, avg_fn=average, use_buffers=True)


class FoldTrainer:
    """Train ``system`` on ``train_idx`` of ``dataset``, early-stopped on ``val_idx``. What is
    particular to a system (sampling, optimiser groups, extra losses, pre-training) comes from
    its spec (:mod:`mimicflow.fusion.systems`)."""

    def __init__(
        self,
        params: TrainParams,
        system: str,
        dataset: FeatureDataset,
        train_idx,
        val_idx,
        seed: int,
        on_epoch: Callable[[dict], None] | None = None,
    ):
        self.params, self.system, self.spec = params, system, system_spec(system)
        self.hyper = params.system_params(system)
        self.model_hyper = self.spec.hyper_of(self.hyper)  # the model's constructor settings
        self.dataset, self.train_idx, self.val_idx = (
            dataset,
            np.asarray(train_idx),
            np.asarray(val_idx),
        )
        self.seed, self.on_epoch = seed, on_epoch or (lambda row: None)
        self.sampling = self.spec.sampling
        self.device = torch.device(torch_device(params.device, "train.device"))
        cuda = self.device.type == "cuda"
        self.amp = params.amp and cuda
        self.workers = params.loader_workers if params.loader_workers is not None else 4 * cuda
        # On the GPU (batches_on_device), or on the CPU without loader processes, the clips are
        # held as tensors (per sampling, made on first use) and every batch gathered from them.
        self.holds = params.batches_on_device if cuda else self.workers == 0
        self.held: dict[str, DeviceBatches] = {}
        self.means: dict[str, torch.Tensor] = {}  # per branch: every clip's whole-clip mean
        self.history: list[dict] = []

    def new_model(self):
        """The system's model as the seed initialises it, its input scaling fitted on the
        training clips, its output at their mean (and the batch order's generator reset)."""
        torch.manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        model = self.spec.build(self.dataset.dims(), self.dataset.kinds(), **self.model_hyper)
        if self.hyper.standardise:
            fit_input_scaling(model, self.dataset.feature_stats(self.train_idx, self.sampling[1]))
        if self.hyper.bias_init == "mean":
            start_at_training_mean(model, self.dataset.labels[self.train_idx])
        return model.to(self.device)

    def fit(self) -> FoldResult:
        model = self.new_model()
        self._pretrain(model)
        best = self._fit_loop(model, stage="fusion")
        model.load_state_dict(best)
        val_pred = self._predict(model, self.val_idx)
        scores = emotion_scores(val_pred, self.dataset.labels[self.val_idx], where="validation")
        best_epoch = max(
            (r for r in self.history if r["stage"] == "fusion"), key=lambda r: r["val_mean_pearson"]
        )["epoch"]
        return FoldResult(_on_cpu(best), model.eval(), val_pred, scores, best_epoch, self.history)

    def load(self, hyper: dict, state: dict[str, torch.Tensor]) -> FoldResult:
        """A model given, not trained (zero epochs): built with ``hyper``, its weights
        ``state``, evaluated on the validation clips as a trained fold is (one history row,
        stage ``loaded``)."""
        self.model_hyper = hyper
        model = self.spec.build(self.dataset.dims(), self.dataset.kinds(), **hyper)
        model.load_state_dict(state)
        model.to(self.device).eval()
        val_pred = self._predict(model, self.val_idx)
        scores = emotion_scores(val_pred, self.dataset.labels[self.val_idx], where="validation")
        score = scores["mean_pearson"]
        row = {"stage": "loaded", "epoch": 0, "train_loss": None}
        self.history.append(row | {"val_mean_pearson": -1.0 if score is None else score})
        self.on_epoch(self.history[-1])
        return FoldResult(_on_cpu(model.state_dict()), model, val_pred, scores, 0, self.history)

    def refit(self, indices, chosen: FoldResult) -> FoldResult:
        """Protocol ``final``: a new model trained on ``indices`` for the epochs ``chosen`` found
        best (no early stopping: its weights after the last of them), on the same learning-rate
        schedule (over ``epochs``). Validation predictions and scores stay ``chosen``'s."""
        self.train_idx, epochs = np.asarray(indices), chosen.best_epoch + 1
        model = self.new_model()
        self._pretrain(model)
        state = self._fit_loop(
            model, stage="final", epochs=epochs, keep="last", horizon=self.params.epochs
        )
        model.load_state_dict(state)
        return FoldResult(
            _on_cpu(state),
            model.eval(),
            chosen.val_pred,
            chosen.val_scores,
            chosen.best_epoch,
            self.history,
        )

    def _pretrain(self, model) -> None:
        """The system's pre-training stages, if any, each one's best weights kept."""
        if self.spec.pretraining is None:
            return
        for stage in self.spec.pretraining(model, self.hyper):
            state = self._fit_loop(model, stage.name, stage.epochs, groups=stage.parameters)
            model.load_state_dict(state)

    def _held(self, sampling: str) -> DeviceBatches:
        """The dataset's clips held on the device for ``sampling``, made on first use."""
        if sampling not in self.held:
            self.held[sampling] = DeviceBatches(self.dataset, sampling, self.device)
        return self.held[sampling]

    def _batches(self):
        """One epoch of (clip indices, tensors) in a new random order: gathered from
        :class:`DeviceBatches` (:attr:`holds`), else assembled on the host, by
        ``loader_workers`` processes (into pinned memory when training on CUDA)."""
        order, size = self.rng.permutation(self.train_idx), self.params.batch_size
        batches = [order[start : start + size] for start in range(0, len(order) - 1, size)]
        seeds = self.rng.integers(0, 2**63, len(batches))
        if self.holds:
            held, draws = self._held(self.sampling[0]), self.sampling[0] == "random"
            # A DataLoader draws its workers' base seed from torch's generator once per epoch:
            # drawn here too, so that the dropout that follows is the same on either path.
            torch.empty((), dtype=torch.int64).random_()
            return (
                (batch, held.batch(batch, np.random.default_rng(seed) if draws else None))
                for batch, seed in zip(batches, seeds, strict=True)
            )
        return torch.utils.data.DataLoader(
            TrainingBatches(self.dataset, batches, self.sampling[0], seeds),
            batch_size=None,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )

    def _predict(self, model, indices) -> np.ndarray:
        held = self._held(self.sampling[1]) if self.holds else None
        return predict(model, self.dataset, indices, self.sampling[1], amp=self.amp, held=held)

    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (a last batch of one clip is left out)."""
        return len(range(0, len(self.train_idx) - 1, self.params.batch_size))

    def optimiser(self, model, epochs: int, groups=None) -> tuple[torch.optim.Optimizer, Schedule]:
        """AdamW over ``groups`` (default: the system's parameter groups), with the system's
        schedule for ``epochs``."""
        hyper = self.hyper
        if groups is None:
            groups = self.spec.param_groups(model, hyper)
        optimiser = torch.optim.AdamW(groups, lr=hyper.lr, weight_decay=hyper.weight_decay)
        return optimiser, Schedule(optimiser, hyper, epochs, self.steps_per_epoch())

    def clip_mean(self, indices, branch: str) -> torch.Tensor:
        """Clips ``indices``' features averaged over the whole clip (not over the segments
        sampled for the batch), of every input of the ``branch`` family, side by side (every
        clip's, on the device, made on first use)."""
        if branch not in self.means:
            names = [n for n, kind in self.dataset.kinds().items() if branch_kind(kind) == branch]
            every = np.arange(len(self.dataset))
            means = np.concatenate([self.dataset.clip_mean(every, n) for n in names], 1)
            self.means[branch] = torch.from_numpy(means).to(self.device)
        return self.means[branch][torch.from_numpy(np.asarray(indices, np.int64)).to(self.device)]

    def _loss(self, model, out, indices, target, epoch: int):
        if self.spec.loss is not None:  # the system's own training loss
            return self.spec.loss(model, out, target, self.hyper, epoch)
        loss = REGRESSION_LOSSES[self.hyper.loss](out.get("unclipped", out["pred"]).float(), target)
        if self.spec.extra_loss is not None:
            extra = self.spec.extra_loss(
                model, out, self.hyper, lambda branch: self.clip_mean(indices, branch)
            )
            if extra is not None:
                loss = loss + extra
        return loss

    def _fit_loop(
        self,
        model,
        stage: str,
        epochs: int | None = None,
        keep: str = "best",
        horizon: int | None = None,
        groups=None,
    ) -> dict:
        """Train until the validation mean Pearson stops improving; the best weights (of the EMA
        model when the system uses one), or with ``keep="last"`` all ``epochs`` and the last.
        The schedule spans ``horizon`` epochs (default: ``epochs``); the optimiser steps
        ``groups`` (default: the system's)."""
        epochs = epochs or self.params.epochs
        optimiser, schedule = self.optimiser(model, horizon or epochs, groups)
        ema = _ema(model, self.hyper.ema, self.hyper.ema_warmup) if self.hyper.ema else None
        evaluated = ema.module if ema else model
        best_score, best_state, waited = -np.inf, _snapshot(evaluated), 0
        for epoch in range(epochs):
            model.train()
            losses = []
            for batch, tensors in self._batches():
                indices = np.asarray(batch)  # the loader hands the clips' indices over as a tensor
                inputs, target = to_device(tensors, self.device)
                with autocast(self.device, self.amp):
                    loss = self._loss(model, model(inputs), indices, target, epoch)
                optimiser.zero_grad()
                loss.backward()
                clip_gradients(model, self.hyper)
                optimiser.step()
                if ema:
                    ema.update_parameters(model)
                schedule.batch()
                losses.append(loss.detach())  # read once per epoch: no host sync per step
            pred = self._predict(evaluated, self.val_idx)
            with warnings.catch_warnings():  # an undefined emotion is left out of the mean
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                score = emotion_scores(pred, self.dataset.labels[self.val_idx])["mean_pearson"]
            score = -1.0 if score is None else score
            schedule.epoch(score)
            row = {
                "stage": stage,
                "epoch": epoch,
                "train_loss": float(np.mean(torch.stack(losses).tolist() if losses else [])),
                "val_mean_pearson": score,
            }
            self.history.append(row)
            self.on_epoch(row)
            if keep == "last":
                best_state = _snapshot(evaluated)
            elif score > best_score + self.hyper.min_delta:
                best_score, best_state, waited = score, _snapshot(evaluated), 0
            else:
                waited += 1
                if waited >= self.params.patience:
                    break
        log.debug("%s: best validation mean Pearson %.3f", stage, best_score)
        return best_state
