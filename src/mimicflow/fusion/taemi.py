"""TAEMI (ABAW10 winner) — a design after its abstract (arXiv 2603.14976), not a replication.

The abstract gives: the Whisper transcript as the anchor, the query of two cross-attention
branches (one over the visual frames, one over the acoustic frames); learnable tokens standing in
for a missing visual or acoustic stream; modality dropout in training. Everything else is ours
(docs/fidelity.md, "TAEMI"):

- every input projected to ``hidden`` (linear + LayerNorm), plus a learned embedding of which
  input it is and a sinusoidal position of its step; the inputs of one modality are concatenated
  along time (the text inputs into one query sequence, the visual ones into one key sequence …);
- a branch per stream: ``layers`` pre-norm Transformer decoder layers (self-attention over the
  transcript, cross-attention from it to the stream, feed-forward), padding masked throughout;
- a clip without a transcript gets a learnable query token, a clip without a stream a learnable
  token as that stream's one key: the prediction never reads what lies under an all-False mask;
- modality dropout (training only): each present stream is replaced by its token with
  probability ``modality_dropout``; the text anchor is never dropped, and a clip without a
  transcript keeps at least one stream;
- masked attention pooling of the transcript itself and of each branch's output, concatenated,
  then LayerNorm-MLP → six sigmoids.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from mimicflow.config import Loss, LrSchedule, SystemParams
from mimicflow.fusion.models import (
    NUM_EMOTIONS,
    AttentionPool,
    EmiModel,
    Inputs,
    drop_modalities,
    has_frames,
)
from mimicflow.fusion.systems import SystemSpec, register

STREAMS = ("visual", "audio")


def sinusoid(steps: int, dim: int, device) -> torch.Tensor:
    """Fixed sinusoidal position encodings (steps × dim)."""
    position = torch.arange(steps, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / dim)
    )
    table = torch.zeros(steps, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table


class TaemiParams(SystemParams):
    """TAEMI (ABAW10 winner), after its abstract: the transcript queries a cross-attention
    branch over the visual and one over the acoustic frames; learnable tokens for a missing
    stream; modality dropout. Every value below is ours (docs/fidelity.md)."""

    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)  # decoder layers per branch (self-attn, cross-attn, feed-forward)
    modality_dropout: float = Field(0.2, ge=0, lt=1)  # per stream; the text anchor is always kept
    loss: Loss = "mimicmetrics"
    ema: float | None = 0.999
    schedule: LrSchedule = "cosine"
    warmup_epochs: float = 1.0


class Taemi(EmiModel):
    """Text-anchored dual cross-attention with learnable tokens for missing streams.

    ``weights`` are each present input's equal share (the fusion has no gate to report)."""

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.2,
        modality_dropout: float = 0.2,
    ):
        super().__init__(dims, kinds)
        self.text = [name for name in dims if self.kinds[name] == "text"]
        self.streams = {kind: [n for n in dims if self.kinds[n] == kind] for kind in STREAMS}
        self.streams = {kind: names for kind, names in self.streams.items() if names}
        self.project = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden)) for m, d in dims.items()}
        )
        self.input_embedding = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(hidden)) for m in dims}
        )
        # the query of a clip without a transcript; the key of a clip without a stream
        self.tokens = nn.ParameterDict(
            {
                kind: nn.Parameter(0.02 * torch.randn(1, 1, hidden))
                for kind in ("text", *self.streams)
            }
        )
        layer = nn.TransformerDecoderLayer(
            hidden, heads, 4 * hidden, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.branches = nn.ModuleDict(
            {
                kind: nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(hidden))
                for kind in self.streams
            }
        )
        self.pools = nn.ModuleDict(
            {part: AttentionPool(hidden) for part in ("text", *self.streams)}
        )
        width = len(self.pools) * hidden
        self.head = nn.Sequential(
            nn.LayerNorm(width),
            nn.Dropout(dropout),
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_EMOTIONS),
        )
        self.modality_dropout = modality_dropout

    def sequence(self, part: str, names: list[str], inputs: Inputs, keep: torch.Tensor):
        """The inputs ``names`` projected and concatenated along time, then ``part``'s token as
        one more step, valid exactly where none of the inputs' steps is (or ``keep`` is False).
        Returns (B × T × hidden, valid B × T)."""
        token = self.tokens[part].expand(keep.shape[0], 1, -1)
        steps, valid = [], []
        for name in names:
            x, mask = inputs[name]
            position = sinusoid(x.shape[1], token.shape[-1], x.device)
            steps.append(self.project[name](x) + self.input_embedding[name] + position)
            valid.append(mask & keep[:, None])
        here = (
            torch.cat(valid, 1).any(1, keepdim=True) if valid else torch.zeros_like(keep[:, None])
        )
        return torch.cat([*steps, token], 1), torch.cat([*valid, ~here], 1)

    def predict(self, inputs: Inputs) -> dict:
        parts = ("text", *self.streams)
        names = {"text": self.text, **self.streams}
        first = next(iter(inputs.values()))[1]
        here = torch.stack(
            [
                torch.stack([has_frames(inputs[n][1]) for n in names[p]]).any(0)
                if names[p]
                else torch.zeros_like(first[:, 0])
                for p in parts
            ],
            1,
        )
        if self.training and self.modality_dropout > 0:
            here = drop_modalities(here, self.modality_dropout, always=(0,))  # text is the anchor
        query, query_valid = self.sequence("text", self.text, inputs, here[:, 0])
        pooled = [self.pools["text"](query, query_valid)]
        for column, kind in enumerate(self.streams, 1):
            keys, keys_valid = self.sequence(kind, self.streams[kind], inputs, here[:, column])
            out = self.branches[kind](
                query, keys, tgt_key_padding_mask=~query_valid, memory_key_padding_mask=~keys_valid
            )
            pooled.append(self.pools[kind](out, query_valid))
        inputs_here = torch.stack([has_frames(inputs[n][1]) for n in self.project], 1).float()
        weights = inputs_here / inputs_here.sum(1, keepdim=True).clamp_min(1.0)
        return {"pred": torch.sigmoid(self.head(torch.cat(pooled, -1))), "weights": weights}


register(
    SystemSpec(
        name="taemi",
        params=TaemiParams,
        model=Taemi,
        hyper=("hidden", "heads", "layers", "dropout", "modality_dropout"),
    )
)
