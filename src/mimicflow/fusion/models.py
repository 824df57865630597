"""What the fusion systems share: the model interface, input scaling, masks and pooling.

Every model is built for named inputs (feature sets) of known widths (``dims``: name → d) and
modalities (``kinds``: name → audio | visual | text | egemaps | vit | wav2vec2; a system picks
each input's branch by its modality, and takes any number of inputs per modality).
Every model takes ``inputs``: name → (x: B × T × d, mask: B × T bool) and returns a dict with
``pred`` (B × 6 in [0, 1]) and, where the system has them, ``embeddings`` (input → B × h) and
``weights`` (B × inputs: each input's share of the fusion). An input missing for a clip is an
all-False mask row: it is left out of that clip's fusion, never fed in as zeros; padding
never enters a recurrent state (sequences are packed) nor a pooled mean (masked). Every system
first standardises each input feature with the training fold's mean and standard deviation,
held as buffers so they travel with the weights (:func:`fit_input_scaling`).

The systems themselves are one module each beside this one (:mod:`mimicflow.fusion.systems`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

Inputs = dict[str, tuple[torch.Tensor, torch.Tensor]]
NUM_EMOTIONS = 6


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid time steps: (B × T × d), (B × T) → (B × d); zeros where none is valid."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def run_packed(rnn: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor):
    """Run ``rnn`` over each sequence up to its last valid step (packed: padding never enters
    the state). Returns (outputs B × T × h, last hidden state per direction of the top layer)."""
    lengths = torch.where(mask.any(1), mask.shape[1] - mask.flip(1).float().argmax(1), 1)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, hidden = rnn(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
    hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    directions = 2 if rnn.bidirectional else 1
    return outputs, hidden[-directions:].transpose(0, 1).reshape(x.shape[0], -1)


def has_frames(mask: torch.Tensor) -> torch.Tensor:
    return mask.any(1)


def fuse_mean(embeddings: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
    """Average of the present inputs' embeddings, and each input's weight in it."""
    stacked = torch.stack([embeddings[m] for m in embeddings], 1)  # B × M × h
    here = torch.stack([has_frames(masks[m]) for m in embeddings], 1).float()  # B × M
    weights = here / here.sum(1, keepdim=True).clamp_min(1.0)
    return (stacked * weights.unsqueeze(-1)).sum(1), weights


AUDIO_KINDS, VISUAL_KINDS = ("audio", "egemaps", "wav2vec2"), ("visual", "vit")


def branch_kind(modality: str) -> str:
    """The branch family of an input's modality: audio, visual or text."""
    if modality in AUDIO_KINDS:
        return "audio"
    if modality in VISUAL_KINDS:
        return "visual"
    if modality == "text":
        return "text"
    raise ValueError(f"unknown modality {modality!r}")


def drop_inputs(here: torch.Tensor, p: float, always: tuple[int, ...] = ()) -> torch.Tensor:
    """Modality dropout on ``here`` (B × inputs, present or not): each present input is
    dropped with probability ``p`` (the columns ``always`` never), and a clip keeps at least one."""
    keep = torch.rand(here.shape, device=here.device) >= p
    keep[:, list(always)] = True
    none_left = ~(keep & here).any(1)
    scores = torch.rand(here.shape, device=here.device).masked_fill(~here, -1.0)
    rescue = nn.functional.one_hot(scores.argmax(1), here.shape[1]).bool()
    return here & (keep | (rescue & none_left.unsqueeze(1)))


class InputScaler(nn.Module):
    """Per-feature z-score with fixed statistics; padding stays zero."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std * mask.unsqueeze(-1)


class EmiModel(nn.Module):
    """What the systems share: standardised inputs, then the system's own ``predict``.

    Hand-made features mix scales (head pose in degrees beside mouth ratios near 0.01); without
    this a per-frame LayerNorm or the first linear layer sees little but the largest ones.
    """

    linear_output = False  # True: the output layer is linear (its loss reads ``unclipped``)

    def __init__(self, dims: dict[str, int], kinds: dict[str, str]):
        super().__init__()
        self.kinds = {name: branch_kind(kinds[name]) for name in dims}
        self.scalers = nn.ModuleDict({m: InputScaler(d) for m, d in dims.items()})

    def forward(self, inputs: Inputs) -> dict:
        return self.predict(
            {
                m: (self.scalers[m](x, mask), mask)
                for m, (x, mask) in inputs.items()
                if m in self.scalers
            }
        )

    def predict(self, inputs: Inputs) -> dict:
        raise NotImplementedError


def fit_input_scaling(model: EmiModel, stats: dict[str, tuple]) -> None:
    """Set each input's scaler from (mean, std) arrays; near-constant features keep std 1."""
    with torch.no_grad():
        for name, (mean, std) in stats.items():
            std = torch.as_tensor(std, dtype=torch.float32)
            model.scalers[name].mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            model.scalers[name].std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))


class AttentionPool(nn.Module):
    """Masked attention pooling over time: a learned score per step, softmax over valid steps.

    With ``queries`` > 1 each query pools on its own (e.g. one per emotion, so each can attend
    to the words or moments that carry it); the pooled vectors are concatenated (``out_dim``).
    """

    def __init__(self, dim: int, queries: int = 1):
        super().__init__()
        self.score = nn.Linear(dim, queries)
        self.out_dim = queries * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).masked_fill(~mask.unsqueeze(-1), -1e4)  # B × T × queries
        weights = torch.softmax(scores, 1) * mask.any(1)[:, None, None]
        return torch.einsum("btq,btd->bqd", weights, x).flatten(1)


def segment_average(x: torch.Tensor, mask: torch.Tensor, segments: int):
    """Segment average pooling: each clip's steps up to its last valid one are cut into
    ``segments`` equal spans, each the mean of its valid steps. (B × T × d), (B × T) →
    (B × segments × d), (B × segments); a span without a valid step is masked."""
    steps = torch.arange(mask.shape[1], device=mask.device)
    length = torch.where(mask.any(1), mask.shape[1] - mask.flip(1).float().argmax(1), 1)
    span = steps[None] * segments // length[:, None]  # B × T: each step's segment
    member = (span.unsqueeze(-1) == torch.arange(segments, device=mask.device)) & mask.unsqueeze(-1)
    counts = member.sum(1)  # B × segments
    pooled = torch.einsum("bts,btd->bsd", member.to(x.dtype), x) / counts.clamp_min(1).unsqueeze(-1)
    return pooled, counts > 0
