"""End-to-end fine-tuning of an audio encoder with Augsburg's head (ABAW6: wav2vec2 and its VAD
head fine-tuned on the first 12 s, 0.386 on validation against 0.262 frozen).

The feature set's own encoder (:class:`WhisperAudioEncoder` for Whisper, :class:`HFAudioEncoder`
for transformers speech models) is loaded, and its upper layers train with the head (global mean
⊕ LSTM last state → dense + tanh → 6, :class:`~mimicflow.fusion.models.Augsburg`) on each clip's
frames as the feature set computes them (``states``: the same windows, padding and attention
masks), so the saved folder serves the features the head was trained on. The layers below and
the convolutional front-end stay frozen; each trained layer below the top learns at
``lr`` × ``layer_lr_decay``^depth. The epoch with the best valid mean Pearson is kept.
"""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.checkpoint import checkpoint

from mimicflow.config import FinetuneParams
from mimicflow.devices import torch_device
from mimicflow.fusion.augsburg import Augsburg
from mimicflow.fusion.metrics import UndefinedMetricWarning, emotion_scores
from mimicflow.perception.asr import load_openai_whisper, save_openai_whisper, whisper_checkpoint
from mimicflow.perception.audio import SAMPLE_RATE
from mimicflow.perception.encoders import HFAudioEncoder, WhisperAudioEncoder, window_batches
from mimicflow.training.adaptation import AdaptData, record_adapted
from mimicflow.training.data import segment_edges
from mimicflow.training.heads import HEAD_FILE
from mimicflow.training.trainer import autocast, start_at_training_mean

log = logging.getLogger(__name__)


def load_encoder(spec: FinetuneParams, device: str) -> WhisperAudioEncoder | HFAudioEncoder:
    """The encoder the feature set would load for ``spec.model`` (the final layer's states):
    Whisper for a CTranslate2 folder, an openai-whisper ``.pt`` or an adapted Whisper folder."""
    if whisper_checkpoint(spec.model) is not None:
        if spec.head_outputs:
            raise ValueError(
                f"{spec.model} is a Whisper model: head_outputs needs audEERING's model"
            )
        return WhisperAudioEncoder(spec.model, device=device)
    return HFAudioEncoder(spec.model, device=device, head_outputs=spec.head_outputs)


def network(encoder: WhisperAudioEncoder | HFAudioEncoder) -> nn.Module:
    """The encoder's torch module (what trains and is saved)."""
    return encoder.encoder if isinstance(encoder, WhisperAudioEncoder) else encoder.model


def _layers(encoder, head_outputs: bool) -> tuple[nn.ModuleList, list[nn.Module]]:
    """The encoder's transformer layers, bottom to top, and the modules above the top layer
    (final norm; audEERING's VAD head), which train with it."""
    if isinstance(encoder, WhisperAudioEncoder):
        return encoder.encoder.blocks, [encoder.encoder.ln_post]
    net = encoder.model
    base = net.base_model
    if not hasattr(getattr(base, "encoder", None), "layers"):
        raise ValueError(f"cannot fine-tune {type(net).__name__}: no encoder.layers to train")
    above = [base.encoder.layer_norm] if getattr(net.config, "do_stable_layer_norm", False) else []
    return base.encoder.layers, above + ([net.classifier] if head_outputs else [])


def trained_modules(encoder, spec: FinetuneParams) -> list[tuple[int, nn.Module]]:
    """The encoder's modules that train, with their depth below the top: the upper
    ``train_layers`` layers and what sits above them (at depth 0). The rest is frozen."""
    layers, above = _layers(encoder, spec.head_outputs)
    count = min(spec.train_layers, len(layers))
    if not count:
        return []
    top = reversed(layers[len(layers) - count :])
    return [(0, module) for module in above] + [(depth, layer) for depth, layer in enumerate(top)]


def _groups(modules: list[tuple[int, nn.Module]], spec: FinetuneParams) -> list[dict]:
    """Parameter groups at layer-wise learning rates: ``lr`` × ``layer_lr_decay``^depth."""
    return [
        {"params": list(module.parameters()), "lr": spec.lr * spec.layer_lr_decay**depth}
        for depth, module in modules
    ]


@contextmanager
def checkpointing(layers: nn.ModuleList, enabled: bool):
    """Gradient checkpointing of the trained layers while the block runs (any encoder: each
    layer's activations are recomputed in the backward pass instead of kept)."""
    if enabled:
        for layer in layers:
            layer.forward = partial(checkpoint, layer.forward, use_reentrant=False)
    try:
        yield
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)


def frames(encoder, audios: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip's frames as the feature set encodes them, padded: (B × T × d, B × T mask)."""
    parts: list[dict[int, torch.Tensor]] = [{} for _ in audios]
    for batch in window_batches(audios, len(audios)):
        hidden, counts = encoder.states(batch)
        for (index, part, _, _), states, count in zip(batch, hidden, counts):
            parts[index][part] = states[:count]
    rows = [torch.cat([p[k] for k in sorted(p)]) for p in parts]
    lengths = torch.tensor([len(r) for r in rows], device=rows[0].device)
    x = pad_sequence(rows, batch_first=True)
    return x, torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]


def segment_means(
    x: torch.Tensor, mask: torch.Tensor, segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip of more than ``segments`` frames as that many segment means, a shorter one as it
    is: (B × T × d) → (B × ≤segments × d). The segments are cut as the fusion stage's
    ``train.frames`` cuts them (:func:`~mimicflow.training.data.segment_edges`), so a fold
    reading the stored frames sees the same steps."""
    if x.shape[1] <= segments:
        return x, mask
    spans = np.full(mask.shape, -1)
    for row, length in enumerate(mask.sum(1).tolist()):
        steps = np.arange(length)
        edges = segment_edges(length, segments)
        spans[row, :length] = (
            steps if length <= segments else np.searchsorted(edges, steps, side="right") - 1
        )
    member = torch.from_numpy(spans[..., None] == np.arange(segments)).to(x.device)
    counts = member.sum(1)  # B × segments
    pooled = torch.einsum("bts,btd->bsd", member.to(x.dtype), x)
    return pooled / counts.clamp_min(1).unsqueeze(-1).to(x.dtype), counts > 0


def head_settings(spec: FinetuneParams) -> dict:
    """The Augsburg head's constructor settings (:class:`~mimicflow.fusion.augsburg.Augsburg`)."""
    return {
        "hidden": spec.hidden,
        "dropout": spec.dropout,
        "lstm_layers": spec.lstm_layers,
        "lstm_dropout": spec.lstm_dropout,
        "dense_hidden": spec.dense_hidden,
    }


class FinetuneModel(nn.Module):
    """The encoder, its upper layers trained, and Augsburg's head over its final-layer frames.
    The frozen part runs as at inference, in training too (no dropout, no SpecAugment)."""

    def __init__(self, encoder, spec: FinetuneParams):
        super().__init__()
        self.encoder, self.net, self.segments = encoder, network(encoder), spec.segments
        modules = trained_modules(encoder, spec)
        self.depths = [depth for depth, _ in modules]
        self.trained = nn.ModuleList(module for _, module in modules)
        self.net.requires_grad_(False)
        self.trained.requires_grad_(True)
        self.head = Augsburg({"audio": encoder.info.dim}, {"audio": "audio"}, **head_settings(spec))

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        self.trained.train(mode)
        return self

    def forward(self, audios: list[np.ndarray]) -> dict:
        x, mask = frames(self.encoder, audios)
        if self.segments:
            x, mask = segment_means(x, mask, self.segments)
        return self.head({"audio": (x, mask)})


def _audio(data: AdaptData, index: int, cut: float | None) -> np.ndarray | None:
    audio = data.audio(index)
    if audio is None or not audio.size:
        return None
    return audio if cut is None else audio[: int(cut * SAMPLE_RATE)]


def _with_audio(data: AdaptData, indices: np.ndarray, cut: float | None):
    """The clips among ``indices`` with an audio track, and their audio (read now)."""
    pairs = [(i, _audio(data, i, cut)) for i in indices]
    pairs = [(i, a) for i, a in pairs if a is not None]
    return np.array([i for i, _ in pairs], int), [a for _, a in pairs]


@torch.inference_mode()
def predict(
    model: FinetuneModel,
    data: AdaptData,
    indices: np.ndarray,
    spec: FinetuneParams,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for the clips of ``indices`` with audio: (their indices, clips × 6)."""
    model.eval()
    kept, chunks = [], []
    for start in range(0, len(indices), spec.batch_size):
        rows, audios = _with_audio(data, indices[start : start + spec.batch_size], spec.audio_cut_s)
        if len(rows):
            with autocast(device, spec.amp):
                chunks.append(model(audios)["pred"].float().cpu().numpy())
            kept.append(rows)
    if not chunks:
        return np.zeros(0, int), np.zeros((0, 6), np.float32)
    return np.concatenate(kept), np.concatenate(chunks)


def _score(model, data: AdaptData, valid: np.ndarray, spec, device) -> float | None:
    rows, pred = predict(model, data, valid, spec, device)
    if not len(rows):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return emotion_scores(pred, np.nan_to_num(data.labels[rows]))["mean_pearson"]


def finetune_encoder(
    spec: FinetuneParams, data: AdaptData, out: Path, device: str = "cpu", progress: bool = True
) -> dict:
    """Fine-tune ``spec.model`` (:func:`finetune`) and save the encoder into ``out`` as a model
    folder the audio feature set loads (``features.sets.<name>.model: <out>``), with its head
    and ``adapted.json`` (its version and the metrics). Returns the metrics: the learning curve,
    the best epoch and the trained parameter count."""
    model, metrics = finetune(spec, data, device, progress)
    return save_finetuned(model, spec, out, metrics)


def save_finetuned(model: FinetuneModel, spec: FinetuneParams, out: Path, metrics: dict) -> dict:
    """``out`` anew: the fine-tuned encoder's folder, its head (:data:`HEAD_FILE`) and
    ``adapted.json``; returns the metrics with the folder's version."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    save_encoder(model.encoder, spec.model, out)
    save_head(model, spec, out / HEAD_FILE)
    return record_adapted(out, metrics)


def save_head(model: FinetuneModel, spec: FinetuneParams, path: Path) -> None:
    """The fine-tuned head as ``train.augsburg.head: finetuned`` loads it: its weights (its one
    input named ``audio``), constructor settings, input width, and what framed its input (the
    segments, the audio cut, the VAD outputs)."""
    torch.save(
        {
            "state": {k: v.detach().float().cpu() for k, v in model.head.state_dict().items()},
            "hyper": head_settings(spec),
            "dim": model.encoder.info.dim,
            "segments": spec.segments,
            "audio_cut_s": spec.audio_cut_s,
            "head_outputs": spec.head_outputs,
        },
        path,
    )


def finetune(
    spec: FinetuneParams, data: AdaptData, device: str = "cpu", progress: bool = True
) -> tuple[FinetuneModel, dict]:
    """Train the encoder's upper layers and Augsburg's head on the train clips (MSE on the six
    intensities); the model at the epoch with the best valid mean Pearson, and the metrics."""
    torch.manual_seed(spec.seed)
    dev = torch.device(torch_device(device, "adapt.device"))
    encoder = load_encoder(spec, str(dev))
    model = FinetuneModel(encoder, spec).to(dev)
    groups = _groups(list(zip(model.depths, model.trained, strict=True)), spec)
    train, valid = np.flatnonzero(data.train), np.flatnonzero(data.valid)
    start_at_training_mean(model.head, data.labels[train])
    optimizer = torch.optim.AdamW(
        [*groups, {"params": list(model.head.parameters()), "lr": spec.head_lr}],
        weight_decay=spec.weight_decay,
    )
    steps = spec.epochs * math.ceil(len(train) / spec.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    trained = [p for g in optimizer.param_groups for p in g["params"]]
    rng = np.random.default_rng(spec.seed)
    history, best, best_rho = [], None, -math.inf
    with (
        Progress(disable=not progress, transient=True) as bar,
        checkpointing(model.trained, spec.gradient_checkpointing),
    ):
        for epoch in range(1, spec.epochs + 1):
            model.train()
            order = rng.permutation(train)
            task = bar.add_task(f"fine-tuning, epoch {epoch}/{spec.epochs}", total=len(order))
            losses = []
            for start in range(0, len(order), spec.batch_size):
                rows, audios = _with_audio(
                    data, order[start : start + spec.batch_size], spec.audio_cut_s
                )
                bar.advance(task, min(spec.batch_size, len(order) - start))
                if not len(rows):
                    continue
                target = torch.from_numpy(np.nan_to_num(data.labels[rows]).astype(np.float32)).to(
                    dev
                )
                with autocast(dev, spec.amp):
                    pred = model(audios)["unclipped"]
                loss = nn.functional.mse_loss(pred.float(), target)
                optimizer.zero_grad()
                loss.backward()
                if spec.grad_clip_mode == "value":  # the authors' (abaw/trainer.py)
                    nn.utils.clip_grad_value_(trained, spec.grad_clip)
                else:
                    nn.utils.clip_grad_norm_(trained, spec.grad_clip)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
            bar.remove_task(task)
            rho = _score(model, data, valid, spec, dev)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)) if losses else None,
                    "valid_pearson": rho,
                }
            )
            log.info(
                "fine-tuning epoch %d: train loss %s, valid ρ %s",
                epoch,
                history[-1]["train_loss"],
                rho,
            )
            score = -math.inf if rho is None else rho
            if best is None or score > best_rho:
                best_rho, best = score, (epoch, _trained_state(model))
    model.load_state_dict(best[1], strict=False)
    model.eval()
    metrics = {
        "method": "finetune",
        "modality": spec.modality,
        "model": spec.model,
        "best_epoch": best[0],
        "best_valid_pearson": history[best[0] - 1]["valid_pearson"],
        "trained_parameters": sum(p.numel() for p in model.trained.parameters()),
        "head_parameters": sum(p.numel() for p in model.head.parameters()),
        "clips": {"train": len(train), "valid": len(valid)},
        "epochs": history,
    }
    return model, metrics


def _trained_state(model: FinetuneModel) -> dict[str, torch.Tensor]:
    """A copy of what trains: the head and the encoder's unfrozen parameters."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {
        n: t.detach().clone()
        for n, t in model.state_dict().items()
        if n in names or n.startswith("head.")
    }


def save_encoder(encoder, model: str, out: Path) -> None:
    """The trained encoder as a model folder: an openai-whisper checkpoint (``model``'s
    decoder beside the trained encoder) or a transformers model with its feature extractor
    (audEERING's VAD head included)."""
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(encoder, HFAudioEncoder):
        encoder.model.save_pretrained(out)
        encoder.extractor.save_pretrained(out)
        return
    whisper = load_openai_whisper(model, "cpu")
    whisper.encoder.load_state_dict(
        {k: v.float().cpu() for k, v in encoder.encoder.state_dict().items()}
    )
    save_openai_whisper(whisper, out)
