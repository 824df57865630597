"""``ustc`` (ABAW8 runner-up): per input a sequence (TCN for vision, a gated BiLSTM over
[h_t ; h_t − h_{t−1}] for audio, a projection for text), segment average pooling after it, an
MLP mapping layer, quality-aware weights (QAM), the inputs' weighted steps concatenated along
time into a multi-layer Transformer encoder.

QAM (``qam``): ``step`` is eq. 9, a softmax across the inputs at each of the M segments (an
input with one step in a clip, a transcript vector, is broadcast to every segment, as eq. 10
adds f_s at every step); ``clip`` (ours, before issue 26) one softmax over every valid segment
of every input.

Form (``form``): ``eq10`` is eq. 10 and §3.6: at each of the M segments the inputs' steps
summed with their weights β (eq. 9), a Transformer over the M steps, a linear prediction per
step and the MSE averaged over the steps (the clip's label at every step); the clip's prediction
is the mean of its steps (our reading: the paper gives no per-clip read-out), clipped to [0, 1].
``concat`` (ours, the form before issue 26, and Figure 1's "concatenated"): the weighted steps
of all inputs concatenated along time, one prediction per clip through a sigmoid.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from mimicflow.config import SystemParams
from mimicflow.fusion.losses import REGRESSION_LOSSES
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
    quality-aware weights, a Transformer over the inputs' steps in temporal order."""

    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)  # Transformer encoder layers
    segments: int = Field(8, ge=1)  # segment average pooling after each branch
    ema: float | None = 0.999
    qam: Literal["step", "clip"] = "step"  # eq. 9: across the inputs per segment | ours
    # eq10: weighted sum per step, a prediction and loss per step | concat: ours (see above)
    form: Literal["eq10", "concat"] = "concat"


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
        qam: str = "clip",  # a model saved before ``qam`` existed (the params' default: step)
        form: str = "concat",
    ):
        super().__init__(dims, kinds)
        if qam not in ("step", "clip"):
            raise ValueError(f"qam must be step or clip, got {qam!r}")
        if form not in ("eq10", "concat") or (form == "eq10" and qam != "step"):
            raise ValueError(f"form must be concat, or eq10 with qam step; got {form!r}, {qam!r}")
        self.qam, self.form = qam, form
        self.linear_output = form == "eq10"
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
            if self.qam == "step":  # a clip's one step (its transcript vector) at every segment
                single = (mask.sum(1) == 1)[:, None]
                pooled = torch.where(single[..., None], pooled[:, :1], pooled)
                valid = valid | single
            mapped = self.mapping[m](pooled)
            steps.append(mapped)
            masks.append(valid)
            scores.append(self.quality[m](mapped).squeeze(-1))
        qam, weights = self.quality_weights(torch.stack(scores, 2), torch.stack(masks, 2))
        embeddings = {m: masked_mean(step, mask) for m, step, mask in zip(names, steps, masks)}
        shares = self.shares(qam, masks)
        if self.form == "eq10":
            return self.per_step(steps, masks, qam) | {
                "embeddings": embeddings,
                "weights": shares,
                "qam": qam,
            }
        valid = torch.cat(masks, 1)  # B × (inputs · segments), inputs in temporal concatenation
        anything = valid.any(1, keepdim=True)
        # Quality-weighted steps (rescaled: equal weights leave them as they are), then which
        # input and which segment each one is.
        tokens = torch.cat(steps, 1) * weights.unsqueeze(-1)
        tokens = tokens + (self.input_embedding + self.position).flatten(0, 1)
        fused = masked_mean(self.fusion(tokens, src_key_padding_mask=~valid & anything), valid)
        return {
            "pred": torch.sigmoid(self.head(fused)),
            "embeddings": embeddings,
            "weights": shares,
            "qam": qam,
        }

    def per_step(self, steps: list, masks: list, beta: torch.Tensor) -> dict:
        """Eq. 10: Σ_i β_i^t h_i^t at each segment t, the Transformer over the segments, a
        linear prediction per segment (``per_step``, ``step_mask``); ``pred`` their mean."""
        here = torch.stack(masks, 2).any(2)  # B × M: segments with any input
        anything = here.any(1, keepdim=True)
        tokens = (torch.stack(steps, 2) * beta.unsqueeze(-1)).sum(2) + self.position
        states = self.fusion(tokens, src_key_padding_mask=~here & anything)
        per_step = self.head(states)
        clip = masked_mean(per_step, here)
        return {
            "pred": clip.clamp(0.0, 1.0),
            "unclipped": clip,
            "per_step": per_step,
            "step_mask": here,
        }

    def shares(self, beta: torch.Tensor, masks: list) -> torch.Tensor:
        """Each input's share: its β summed over the segments (clip: they sum to 1 over all),
        or averaged over the segments that have any input (step: they sum to 1 per segment)."""
        if self.qam == "clip":
            return beta.sum(1)
        return beta.sum(1) / torch.stack(masks, 2).any(2).sum(1, keepdim=True).clamp_min(1)

    def quality_weights(self, scores: torch.Tensor, valid: torch.Tensor):
        """QAM from quality scores and validity (B × M segments × I inputs): (β: B × M × I,
        each token's scale: B × (I · M) in the concatenated order). ``step`` (eq. 9): softmax
        over the inputs at each segment, a segment without any input all 0; ``clip`` (ours):
        one softmax over every valid (segment, input). Scaled by the count of valid tokens they
        compete with, so equal weights leave the steps as they are."""
        anything = valid.any(2, keepdim=True) if self.qam == "step" else valid.any((1, 2), True)
        masked = scores.masked_fill(~valid, -1e4)
        if self.qam == "step":
            beta = torch.softmax(masked, 2) * anything
            count = valid.sum(2, keepdim=True)
        else:
            beta = torch.softmax(masked.flatten(1), 1).view_as(masked) * anything
            count = valid.sum((1, 2), keepdim=True)
        scale = (beta * count).transpose(1, 2).flatten(1)  # B × (I · M)
        return beta, scale


def ustc_loss(model: Ustc, out: dict, target: torch.Tensor, hyper: UstcParams, epoch: int):
    """The regression loss: per step against the clip's label, over every valid step of the
    batch (``form: eq10``, §3.6), or on the clip's prediction (``concat``)."""
    loss = REGRESSION_LOSSES[hyper.loss]
    if "per_step" not in out:
        return loss(out.get("unclipped", out["pred"]).float(), target)
    here = out["step_mask"]
    steps = target.unsqueeze(1).expand(-1, here.shape[1], -1)
    return loss(out["per_step"][here].float(), steps[here])


register(
    SystemSpec(
        name="ustc",
        params=UstcParams,
        model=Ustc,
        hyper=("hidden", "heads", "layers", "segments", "dropout", "qam", "form"),
        loss=ustc_loss,
    )
)
