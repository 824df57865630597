"""USTC's Stage I (ABAW8, §3.3, eq. 2): an audio or visual encoder aligned with a text encoder.

Each labelled clip becomes a (clip, prompt) pair: the prompt names its emotions by intensity
word (:func:`emi_prompt`). The clip's encoder (its upper ``layers`` blocks trained, the rest
frozen) and the text encoder (frozen unless ``text_layers``) each end in a linear projection
to a shared unit sphere, trained with the confidence-weighted InfoNCE of eq. 2 at a fixed
τ = 0.07 (:func:`weighted_info_nce`) under SGDR. The aligned encoder is saved in the format its
feature-set loader takes (a transformers folder, or ``whisper.pt`` for Whisper), so a feature
set names the folder as its model and the fusion (Stage II) trains on aligned features.

Inputs per pair: a clip's evenly spaced face crops (visual: the crop embeddings' mean) or its
first ``audio_cut_s`` seconds of audio (audio: the masked mean of the encoder's frames).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from mimicflow import EMOTIONS
from mimicflow.fusion.models import masked_mean
from mimicflow.perception.encoders import PROJECTION_FILE, WhisperAudioEncoder
from mimicflow.training.adaptation import AdaptData, record_adapted

LEVELS = ("low", "medium", "high")
NO_EMOTION = "No marked emotion (every intensity low)"
SCRATCH_VIT = "vit-scratch"  # visual: a small ViT from seeded random weights (no pretrained one)
SAMPLE_RATE = 16000


# --- prompts and weights -------------------------------------------------------------------------


def intensity_word(value: float, bins: tuple[float, float]) -> str:
    """``low`` below ``bins[0]``, ``high`` from ``bins[1]``, ``medium`` between."""
    return LEVELS[int(np.searchsorted(bins, value, side="right"))]


def emi_prompt(intensities: Sequence[float], bins: tuple[float, float] = (1 / 3, 2 / 3)) -> str:
    """The emotions at medium or high intensity, strongest first, e.g. ``"Amusement
    (intensity: high), Joy (intensity: medium)"``; all low gives :data:`NO_EMOTION`."""
    order = np.argsort(-np.asarray(intensities, float), kind="stable")
    parts = [
        f"{EMOTIONS[k]} (intensity: {word})"
        for k in order
        if (word := intensity_word(intensities[k], bins)) != "low"
    ]
    return ", ".join(parts) or NO_EMOTION


def spread_weights(labels: np.ndarray) -> np.ndarray:
    """Eq. 2's confidence weights from each row's label spread: ``w = ½ (1 + s / s̄)``, ``s``
    the standard deviation of a clip's intensities and ``s̄`` its mean over the rows. A clip
    whose profile stands out (one emotion clearly above the rest) weighs more than a flat one
    (at most half weight); the weights average 1, so the loss keeps its scale."""
    spread = np.asarray(labels, float).std(1)
    mean = spread.mean() if len(spread) else 0.0
    return 0.5 * (1 + spread / mean) if mean > 0 else np.ones(len(spread))


def weighted_info_nce(
    embedded, prompts, weights, same, temperature: float = 0.07, symmetric: bool = False
):
    """Eq. 2: ``-1/N Σ w_i log softmax_j(f_i · s_j / τ)[i]`` over unit vectors. Pairs whose
    prompts are the same text (``same``: N × N bool) share the target's mass rather than push
    each other apart. ``symmetric`` adds CLIP's text → modality term (eq. 2 has one direction)."""
    logits = embedded @ prompts.T / temperature
    targets = same.float() / same.float().sum(1, keepdim=True)
    loss = -(targets * logits.log_softmax(1)).sum(1)
    if symmetric:
        loss = (loss - (targets * logits.T.log_softmax(1)).sum(1)) / 2
    return (weights * loss).mean()


# --- encoders ------------------------------------------------------------------------------------


def _trainable(module, layers: int) -> None:
    """Freeze ``module`` but its upper ``layers`` blocks (the ModuleList with most weights)."""
    import torch

    module.requires_grad_(False)
    lists = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList)]
    if layers and lists:
        blocks = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
        for block in list(blocks)[-layers:]:
            block.requires_grad_(True)


class TextTower:
    """A transformers text encoder, mean-pooled (the sentence-transformers recipe)."""

    def __init__(self, model: str, layers: int, device: str):
        from transformers import AutoModel, AutoTokenizer

        self.net = AutoModel.from_pretrained(model).to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.device, self.dim = device, self.net.config.hidden_size
        _trainable(self.net, layers)

    def embed(self, texts: list[str]):
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=128, return_tensors="pt"
        ).to(self.device)
        return masked_mean(self.net(**tokens).last_hidden_state, tokens["attention_mask"])


class VisualTower:
    """A transformers image model over face crops (RGB), the CLS token per crop; ``vit-scratch``
    builds a small ViT (4 blocks of 128, 64-pixel input) from seeded random weights."""

    def __init__(self, model: str, layers: int, device: str):
        from transformers import (
            AutoImageProcessor,
            AutoModel,
            ViTConfig,
            ViTImageProcessor,
            ViTModel,
        )

        if model == SCRATCH_VIT:
            config = ViTConfig(
                image_size=64,
                patch_size=8,
                hidden_size=128,
                num_hidden_layers=4,
                num_attention_heads=4,
                intermediate_size=256,
            )
            self.full = ViTModel(config)
            self.processor = ViTImageProcessor(size={"height": 64, "width": 64})
        else:
            self.full = AutoModel.from_pretrained(model)
            self.processor = AutoImageProcessor.from_pretrained(model)
        self.full.to(device)
        self.net = getattr(self.full, "vision_model", None) or self.full  # CLIP: its vision tower
        config = getattr(self.net.config, "vision_config", self.net.config)
        self.device, self.dim = device, config.hidden_size
        _trainable(self.net, layers)
        if model == SCRATCH_VIT:  # random weights: every one trains
            self.net.requires_grad_(True)

    def embed(self, clips: list[list[np.ndarray]]):
        import torch

        crops = [c for clip in clips for c in clip]
        pixels = self.processor(images=crops, return_tensors="pt")["pixel_values"].to(self.device)
        tokens = self.net(pixel_values=pixels).last_hidden_state[:, 0]
        return torch.stack([part.mean(0) for part in tokens.split([len(c) for c in clips])])

    def save(self, out: Path) -> None:
        self.full.save_pretrained(out)
        self.processor.save_pretrained(out)


class WhisperTower:
    """An openai-whisper checkpoint's encoder run as the audio feature set runs it (its final
    layer norm's frames over batch-independent per-second windows, :func:`frames`), so Stage I
    aligns what Stage II encodes; masked mean over the clip's frames."""

    def __init__(self, model: str, layers: int, device: str):
        self.model, self.encoder = model, WhisperAudioEncoder(model, device=device)
        self.net = self.encoder.encoder
        self.device, self.dim = device, self.encoder.info.dim
        _trainable(self.net, layers)

    def embed(self, audios: list[np.ndarray]):
        from mimicflow.training.finetune import frames

        return masked_mean(*frames(self.encoder, audios))

    def save(self, out: Path) -> None:
        from mimicflow.training.finetune import save_encoder

        save_encoder(self.encoder, self.model, out)


class SpeechTower:
    """A transformers speech model (wav2vec2, HuBERT, WavLM …); masked mean of its frames."""

    def __init__(self, model: str, layers: int, device: str):
        from transformers import AutoFeatureExtractor, AutoModel

        self.net = AutoModel.from_pretrained(model).to(device)
        self.extractor = AutoFeatureExtractor.from_pretrained(model)
        self.device, self.dim = device, self.net.config.hidden_size
        _trainable(self.net, layers)

    def embed(self, audios: list[np.ndarray]):
        import torch

        values = self.extractor(
            audios, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt"
        )["input_values"].to(self.device)
        mask = torch.zeros(values.shape, dtype=torch.long, device=self.device)
        for row, audio in enumerate(audios):
            mask[row, : len(audio)] = 1
        masked = getattr(self.extractor, "return_attention_mask", False)
        states = self.net(values, **({"attention_mask": mask} if masked else {})).last_hidden_state
        lengths = self.net._get_feat_extract_output_lengths(mask.sum(-1))
        frames = torch.arange(states.shape[1], device=self.device)[None] < lengths[:, None]
        return masked_mean(states, frames)

    def save(self, out: Path) -> None:
        self.net.save_pretrained(out)
        self.extractor.save_pretrained(out)


def modality_tower(modality: str, model: str, layers: int, device: str):
    """The encoder to align: visual (image model), audio (a Whisper ``.pt`` or a speech model)."""
    if modality == "visual":
        return VisualTower(model, layers, device)
    tower = WhisperTower if model.endswith(".pt") else SpeechTower
    return tower(model, layers, device)


# --- pairs and training --------------------------------------------------------------------------


@dataclass
class Pair:
    """One (input, prompt) pair: ``read()`` gives the encoder's input, None where it is absent."""

    read: Callable[[], object]
    prompt: str
    weight: float = 1.0


def spaced(items: list, count: int) -> list:
    """``count`` evenly spaced items (all of them when there are fewer)."""
    if len(items) <= count:
        return items
    return [items[int(k)] for k in np.linspace(0, len(items) - 1, count).round()]


def clip_pairs(spec, data: AdaptData, rows: np.ndarray, weights: np.ndarray) -> list[Pair]:
    """The pairs of clips ``rows``: their input for ``spec.modality`` and their prompt."""
    cut = int(spec.audio_cut_s * SAMPLE_RATE) if spec.audio_cut_s else None

    def reader(i: int):
        if spec.modality == "visual":
            return lambda: [c[..., ::-1] for c in spaced(data.crops(i), spec.frames)] or None
        return lambda: None if (a := data.audio(i)) is None or not a.size else a[:cut]

    return [Pair(reader(i), emi_prompt(data.labels[i], spec.bins), float(weights[i])) for i in rows]


class Aligner:
    """The modality tower, the text tower and their projections into one space."""

    def __init__(self, spec, device: str):
        import torch

        self.spec, self.device = spec, device
        self.tower = modality_tower(spec.modality, spec.model, spec.layers, device)
        self.text = TextTower(spec.text_model, spec.text_layers, device)
        self.heads = torch.nn.ModuleList(
            [torch.nn.Linear(self.tower.dim, spec.dim), torch.nn.Linear(self.text.dim, spec.dim)]
        ).to(device)

    def parameters(self) -> list:
        nets = (self.tower.net, self.text.net, self.heads)
        return [p for net in nets for p in net.parameters() if p.requires_grad]

    def train(self, mode: bool) -> None:
        """Training mode (dropout) for what trains: a frozen text encoder stays in eval mode."""
        for net in (self.tower.net, self.heads):
            net.train(mode)
        self.text.net.train(mode and self.spec.text_layers > 0)

    def embed(self, inputs: list):
        import torch.nn.functional as F

        return F.normalize(self.heads[0](self.tower.embed(inputs)), dim=-1)

    def embed_text(self, prompts: list[str]):
        import torch.nn.functional as F

        return F.normalize(self.heads[1](self.text.embed(prompts)), dim=-1)

    def loss(self, inputs: list, pairs: list[Pair]):
        import torch

        prompts = [p.prompt for p in pairs]
        same = torch.tensor([[a == b for b in prompts] for a in prompts], device=self.device)
        weights = torch.tensor([p.weight for p in pairs], dtype=torch.float32, device=self.device)
        return weighted_info_nce(
            self.embed(inputs),
            self.embed_text(prompts),
            weights,
            same,
            self.spec.temperature,
            self.spec.symmetric,
        )


def _present(pairs: list[Pair]) -> tuple[list, list[Pair]]:
    read = [(p.read(), p) for p in pairs]
    kept = [(x, p) for x, p in read if x is not None]
    return [x for x, _ in kept], [p for _, p in kept]


def evaluate(aligner: Aligner, pairs: list[Pair], batch_size: int) -> dict:
    """Loss, and retrieval among the distinct prompts of ``pairs``: top-1 accuracy of each
    input's own prompt, against chance (1 / prompts) and always naming the commonest prompt."""
    import torch

    if not pairs:
        return {}
    aligner.train(False)
    embedded, kept, losses = [], [], []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            inputs, chunk = _present(pairs[start : start + batch_size])
            if len(chunk) >= 2:
                losses.append(float(aligner.loss(inputs, chunk)) * len(chunk))
            if chunk:
                embedded.append(aligner.embed(inputs))
                kept += chunk
        if not kept:
            return {}
        prompts = sorted({p.prompt for p in kept})
        scores = torch.cat(embedded) @ aligner.embed_text(prompts).T
    own = np.array([prompts.index(p.prompt) for p in kept])
    top1 = float((scores.argmax(1).cpu().numpy() == own).mean())
    return {
        "loss": sum(losses) / len(kept) if losses else None,
        "top1": top1,
        "chance": 1 / len(prompts),
        "majority": float(np.bincount(own).max() / len(own)),
        "prompts": len(prompts),
    }


def fit(
    aligner: Aligner,
    train: list[Pair],
    valid: list[Pair],
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """SGDR-scheduled AdamW on the trainable weights; one row of metrics per epoch."""
    import torch

    spec = aligner.spec
    rng = np.random.default_rng(spec.seed)
    steps = max(1, math.ceil(len(train) / spec.batch_size))
    optimiser = torch.optim.AdamW(aligner.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimiser, T_0=spec.restart_epochs * steps, eta_min=spec.min_lr
    )
    history = []
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"align {spec.modality}", total=spec.epochs * steps)
        for epoch in range(spec.epochs):
            aligner.train(True)
            order = rng.permutation(len(train))
            losses = []
            for start in range(0, len(order), spec.batch_size):
                inputs, chunk = _present([train[k] for k in order[start : start + spec.batch_size]])
                if len(chunk) >= 2:
                    loss = aligner.loss(inputs, chunk)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    losses.append(float(loss.detach()))
                schedule.step()
                bar.advance(task)
            row = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else None,
                "lr": schedule.get_last_lr()[0],
            }
            row |= {f"valid_{k}": v for k, v in evaluate(aligner, valid, spec.batch_size).items()}
            history.append(row)
            if on_epoch:
                on_epoch(row)
    return history


def align_encoder(
    spec,
    data: AdaptData,
    out: Path,
    device: str = "cpu",
    progress: bool = True,
    external: Sequence[Pair] = (),
) -> dict:
    """Stage I for one encoder (``spec``: :class:`~mimicflow.config.AlignParams`, its models
    resolved to loadable paths): fit on the train clips (and ``external`` pairs), report on the
    valid clips, save the aligned encoder into ``out`` with ``adapted.json`` (its version: the
    weights' content hash); returns the metrics."""
    import torch

    torch.manual_seed(spec.seed)
    weights = spread_weights(data.labels)
    train = clip_pairs(spec, data, np.flatnonzero(data.train), weights) + list(external)
    valid = clip_pairs(spec, data, np.flatnonzero(data.valid), weights)
    aligner = Aligner(spec, device)
    history = fit(aligner, train, valid, progress)
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    aligner.tower.save(out)
    torch.save(
        {k: v.detach().cpu() for k, v in aligner.heads[0].state_dict().items()},
        out / PROJECTION_FILE,
    )
    last = (
        history[-1]
        if history
        else {f"valid_{k}": v for k, v in evaluate(aligner, valid, spec.batch_size).items()}
    )
    metrics = {
        "method": "align",
        "modality": spec.modality,
        "model": spec.model,
        "train_pairs": len(train),
        "external_pairs": len(external),
        "valid_pairs": len(valid),
        "valid_top1": last.get("valid_top1"),
        "valid_chance": last.get("valid_chance"),
        "valid_majority": last.get("valid_majority"),
        "epochs": history,
    }
    return record_adapted(out, metrics)
