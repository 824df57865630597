"""``mimicmetrics`` (ABAW10): unimodal encoders (masked attention pooling, then a LayerNorm-MLP),
pre-trained with their own heads, then an MLP over them with modality dropout; the encoders
fine-tuned at a fraction of the fusion's learning rate. The default system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

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
from mimicflow.fusion.systems import Pretraining, SystemSpec, register


class MimicMetricsParams(SystemParams):
    """MimicMetrics (ABAW10): unimodal pre-training, then MLP fusion with modality dropout."""

    loss: Loss = "mimicmetrics"
    weight_decay: float = 1e-4
    schedule: LrSchedule = "plateau"  # every stage
    modality_dropout: float = Field(0.3, ge=0, lt=1)
    queries: int = Field(
        6, ge=1
    )  # attention-pooling queries per encoder: one per emotion (paper: 1)
    encoder_lr_scale: float = Field(0.05, gt=0)  # encoders fine-tuned at 0.05 × lr
    pretrain_epochs: int = Field(20, ge=1)
    # A clip without a transcript: "mask" leaves text out of its fusion; "zeros" feeds the
    # text encoder's output for an all-zero input as if present (the authors' fallback).
    missing_text: Literal["mask", "zeros"] = "mask"


class UnimodalEncoder(nn.Module):
    """The authors' order: masked attention pooling over the input frames, then a LayerNorm-MLP
    (LayerNorm, linear, GELU, dropout, LayerNorm); ``head`` (dropout, linear) is used only in
    unimodal pre-training."""

    def __init__(self, dim: int, hidden: int, dropout: float, queries: int = 1):
        super().__init__()
        self.pool = AttentionPool(dim, queries)
        self.project = nn.Sequential(
            nn.LayerNorm(self.pool.out_dim),
            nn.Linear(self.pool.out_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.LayerNorm(hidden),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, NUM_EMOTIONS))

    def forward(self, x, mask):
        return self.project(self.pool(x, mask))


class MimicMetrics(EmiModel):
    """Unimodal encoders, then an MLP over their outputs with modality dropout.

    ``missing_text``: ``mask`` leaves a clip without text out of its fusion; ``zeros`` (the
    authors' fallback) gives such a clip one all-zero text frame, encoded as if present."""

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        dropout: float = 0.2,
        modality_dropout: float = 0.3,
        queries: int = 1,
        missing_text: str = "mask",
    ):
        super().__init__(dims, kinds)
        if missing_text not in ("mask", "zeros"):
            raise ValueError(f"missing_text must be mask or zeros, got {missing_text!r}")
        self.encoders = nn.ModuleDict(
            {m: UnimodalEncoder(d, hidden, dropout, queries) for m, d in dims.items()}
        )
        self.fusion = nn.Sequential(
            nn.Linear(len(dims) * (hidden + 1), hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_EMOTIONS),
        )
        self.modality_dropout = modality_dropout
        self.zero_text = missing_text == "zeros"
        self.unimodal: str | None = None  # set during pre-training: train one encoder + its head

    def forward(self, inputs: Inputs) -> dict:
        if self.zero_text:
            inputs = dict(inputs)
            for name in (n for n in inputs if self.kinds.get(n) == "text"):
                x, mask = inputs[name]
                absent = ~mask.any(1)
                first = torch.zeros_like(mask)
                first[:, 0] = True
                inputs[name] = (x * ~absent[:, None, None], mask | (first & absent[:, None]))
        return super().forward(inputs)

    def predict(self, inputs: Inputs) -> dict:
        if self.unimodal is not None:
            encoder = self.encoders[self.unimodal]
            return {"pred": torch.sigmoid(encoder.head(encoder(*inputs[self.unimodal])))}
        names = list(self.encoders)
        here = torch.stack([has_frames(inputs[m][1]) for m in names], 1)
        if self.training and self.modality_dropout > 0:
            here = drop_modalities(here, self.modality_dropout)
        parts = []
        for column, m in enumerate(names):
            keep = here[:, column : column + 1].float()
            parts += [self.encoders[m](*inputs[m]) * keep, keep]
        weights = here.float() / here.float().sum(1, keepdim=True).clamp_min(1.0)
        return {"pred": torch.sigmoid(self.fusion(torch.cat(parts, -1))), "weights": weights}

    def param_groups(self, lr: float, encoder_lr_scale: float) -> list[dict]:
        """Fusion at ``lr``; pre-trained encoders fine-tuned at ``encoder_lr_scale`` × lr."""
        encoders = [p for name, p in self.encoders.named_parameters() if ".head." not in name]
        return [
            {"params": encoders, "lr": lr * encoder_lr_scale},
            {"params": self.fusion.parameters(), "lr": lr},
        ]


def param_groups(model: MimicMetrics, hyper: MimicMetricsParams) -> list[dict]:
    return model.param_groups(hyper.lr, hyper.encoder_lr_scale)


def pretraining(model: MimicMetrics, hyper: MimicMetricsParams) -> Iterator[Pretraining]:
    """Stage 1: each encoder with its own head, alone; the heads are then dropped."""
    for name in list(model.encoders):
        model.unimodal = name
        yield Pretraining(
            f"pretrain_{name}", hyper.pretrain_epochs, model.encoders[name].parameters()
        )
    model.unimodal = None


register(
    SystemSpec(
        name="mimicmetrics",
        params=MimicMetricsParams,
        model=MimicMetrics,
        hyper=("hidden", "dropout", "modality_dropout", "queries", "missing_text"),
        param_groups=param_groups,
        pretraining=pretraining,
    ),
    default=True,
)
