"""``ustc`` (ABAW8 runner-up): per input a sequence (TCN for vision, a gated BiLSTM over
[h_t ; h_t − h_{t−1}] for audio, a projection for text), segment average pooling after it, an
MLP mapping layer, per-step quality-aware weights (QAM), the inputs' weighted steps concatenated
along time into a multi-layer Transformer encoder.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mimicflow.config import SystemParams
from mimicflow.fusion.models import (
    NUM_EMOTIONS,
    EmiModel,
    Inputs,
    masked_mean,
    run_packed,
    segment_average,
)
from mimicflow.fusion.systems import SystemSpec, register


class UstcParams(SystemParams):
    """USTC (ABAW8): TCN vision, gated BiLSTM audio, segment pooling, MLP mapping, per-step
    quality-aware weights, a Transformer over the modalities' steps in temporal order."""

    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)  # Transformer encoder layers
    segments: int = Field(8, ge=1)  # segment average pooling after each branch
    ema: float | None = 0.999


class TemporalConvNet(nn.Module):
    """Dilated residual 1-D convolutions (TCN) over time; one output per step."""

    def __init__(self, dim: int, hidden: int, dilations=(1, 2, 4), dropout: float = 0.2):
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d), nn.GELU(), nn.Dropout(dropout)
            )
            for d in dilations
        )

    def forward(self, x, mask):
        h = (self.inp(x) * mask.unsqueeze(-1)).transpose(1, 2)
        for block in self.blocks:
            h = (h + block(h)) * mask.unsqueeze(1)  # padding stays zero at every layer
        return h.transpose(1, 2)


class GatedBiLSTM(nn.Module):
    """BiLSTM whose outputs are gated by a sigmoid over [h_t ; h_t − h_{t−1}]; one output per
    step."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.gate = nn.Linear(4 * hidden, 2 * hidden)
        self.out = nn.Linear(2 * hidden, hidden)

    def forward(self, x, mask):
        h, _ = run_packed(self.lstm, x, mask)
        delta = h - torch.cat([h[:, :1], h[:, :-1]], 1)
        return self.out(h * torch.sigmoid(self.gate(torch.cat([h, delta], -1))))


class Projected(nn.Module):
    """Linear projection + GELU per step (the text branch); one output per step."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())

    def forward(self, x, mask):
        return self.inp(x)


class Ustc(EmiModel):
    """Branch per input (TCN for visual, gated BiLSTM for audio, a projection for text), each
    sequence segment-average pooled to ``segments`` steps, an MLP mapping layer per input to
    the shared width, a quality MLP scoring every step (softmax over all valid steps of the
    clip), and the weighted steps of all inputs concatenated along time (+ a learned input
    embedding and position) into a ``layers``-deep Transformer encoder; masked mean; head."""

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        heads: int = 4,
        layers: int = 2,
        segments: int = 8,
        dropout: float = 0.2,
    ):
        super().__init__(dims, kinds)
        branch = {
            "visual": lambda d: TemporalConvNet(d, hidden, dropout=dropout),
            "audio": lambda d: GatedBiLSTM(d, hidden),
            "text": lambda d: Projected(d, hidden),
        }
        self.branches = nn.ModuleDict({m: branch[self.kinds[m]](d) for m, d in dims.items()})
        self.mapping = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
                for m in dims
            }
        )
        self.quality = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1)
                )
                for m in dims
            }
        )
        self.segments = segments
        self.input_embedding = nn.Parameter(torch.zeros(len(dims), 1, hidden))
        self.position = nn.Parameter(torch.zeros(segments, hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout, batch_first=True)
        self.fusion = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, NUM_EMOTIONS))

    def predict(self, inputs: Inputs) -> dict:
        names = list(self.branches)
        steps, masks, scores = [], [], []
        for m in names:
            x, mask = inputs[m]
            pooled, valid = segment_average(self.branches[m](x, mask), mask, self.segments)
            mapped = self.mapping[m](pooled)
            steps.append(mapped)
            masks.append(valid)
            scores.append(self.quality[m](mapped).squeeze(-1))
        valid = torch.cat(masks, 1)  # B × (inputs · segments), inputs in temporal concatenation
        anything = valid.any(1, keepdim=True)
        weights = torch.softmax(torch.cat(scores, 1).masked_fill(~valid, -1e4), 1) * anything
        # Quality-weighted steps (rescaled: equal weights leave them as they are), then which
        # input and which segment each one is.
        scale = (weights * valid.sum(1, keepdim=True)).unsqueeze(-1)
        tokens = torch.cat(steps, 1) * scale + (self.input_embedding + self.position).flatten(0, 1)
        fused = masked_mean(self.fusion(tokens, src_key_padding_mask=~valid & anything), valid)
        shares = weights.unflatten(1, (len(names), self.segments)).sum(-1)  # B × M
        embeddings = {m: masked_mean(step, mask) for m, step, mask in zip(names, steps, masks)}
        return {
            "pred": torch.sigmoid(self.head(fused)),
            "embeddings": embeddings,
            "weights": shares,
        }


register(
    SystemSpec(
        name="ustc",
        params=UstcParams,
        model=Ustc,
        hyper=("hidden", "heads", "layers", "segments", "dropout"),
    )
)
