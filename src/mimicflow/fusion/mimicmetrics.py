"""``mimicmetrics`` (ABAW10): unimodal encoders (masked attention pooling, then a LayerNorm-MLP),
pre-trained with their own heads, then an MLP over them with modality dropout; the encoders
fine-tuned at a fraction of the fusion's learning rate (``frozen_inputs`` not at all). The
default system.

``fusion_head: code`` is the authors' ``FusionRegressor`` (src/staged_fusion_training.py):
LayerNorm → dropout → linear → GELU → dropout → linear 6 over the encoders' outputs alone, a
linear output (``unclipped``; ``pred`` clipped to [0, 1]), the unimodal heads linear too, and
kept inputs × 1/(1 − p) under modality dropout (``dropout_rescale``). ``ours`` (before issue
26): presence flags beside each encoder's output, no input LayerNorm, sigmoid outputs.
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
    drop_inputs,
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
    # an input's own pre-training epochs (the authors': motion 100, the others 50)
    pretrain_epochs_by_input: dict[str, int] = Field(default_factory=dict)
    # A clip without a transcript: "mask" leaves text out of its fusion; "zeros" feeds the
    # text encoder's output for an all-zero input as if present (the authors' fallback).
    missing_text: Literal["mask", "zeros"] = "mask"
    # code: the authors' FusionRegressor (the mimicmetrics recipe's); ours: the project default,
    # whose demo figures docs/results.md reports (presence flags, sigmoid outputs)
    fusion_head: Literal["code", "ours"] = "ours"
    dropout_rescale: bool = False  # kept inputs × 1/(1 − modality_dropout) in training
    # inputs whose encoder the fusion stage leaves as pre-training made it (the authors': motion)
    frozen_inputs: tuple[str, ...] = ()
    encoder_hidden: dict[str, int] = Field(default_factory=dict)  # an input's own encoder width


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
        fusion_head: str = "ours",
        dropout_rescale: bool = False,
        encoder_hidden: dict[str, int] | None = None,
    ):
        super().__init__(dims, kinds)
        if missing_text not in ("mask", "zeros"):
            raise ValueError(f"missing_text must be mask or zeros, got {missing_text!r}")
        widths = {m: (encoder_hidden or {}).get(m, hidden) for m in dims}
        self.encoders = nn.ModuleDict(
            {m: UnimodalEncoder(d, widths[m], dropout, queries) for m, d in dims.items()}
        )
        self.code = fusion_head == "code"
        self.linear_output = self.code
        width = sum(widths.values()) + (0 if self.code else len(dims))
        inlet = [nn.LayerNorm(width), nn.Dropout(dropout)] if self.code else []
        self.fusion = nn.Sequential(
            *inlet,
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_EMOTIONS),
        )
        self.modality_dropout = modality_dropout
        self.rescale = dropout_rescale
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
            return self.output(encoder.head(encoder(*inputs[self.unimodal])))
        names = list(self.encoders)
        here = torch.stack([has_frames(inputs[m][1]) for m in names], 1)
        scale = 1.0
        if self.training and self.modality_dropout > 0:
            here = drop_inputs(here, self.modality_dropout)
            scale = 1 / (1 - self.modality_dropout) if self.rescale else 1.0
        parts = []
        for column, m in enumerate(names):
            keep = here[:, column : column + 1].float()
            parts += [self.encoders[m](*inputs[m]) * keep * scale]
            parts += [] if self.code else [keep]
        weights = here.float() / here.float().sum(1, keepdim=True).clamp_min(1.0)
        return self.output(self.fusion(torch.cat(parts, -1))) | {"weights": weights}

    def output(self, raw: torch.Tensor) -> dict:
        """The authors' linear output (clipped for ``pred``), or ours through a sigmoid."""
        if self.code:
            return {"pred": raw.clamp(0.0, 1.0), "unclipped": raw}
        return {"pred": torch.sigmoid(raw)}

    def param_groups(
        self, lr: float, encoder_lr_scale: float, frozen: tuple[str, ...] = ()
    ) -> list[dict]:
        """Fusion at ``lr``; pre-trained encoders fine-tuned at ``encoder_lr_scale`` × lr, those
        of the inputs ``frozen`` in no group (left as pre-training made them)."""
        encoders = [
            p
            for name, p in self.encoders.named_parameters()
            if ".head." not in name and name.split(".")[0] not in frozen
        ]
        return [
            {"params": encoders, "lr": lr * encoder_lr_scale},
            {"params": self.fusion.parameters(), "lr": lr},
        ]


def param_groups(model: MimicMetrics, hyper: MimicMetricsParams) -> list[dict]:
    return model.param_groups(hyper.lr, hyper.encoder_lr_scale, hyper.frozen_inputs)


def pretraining(model: MimicMetrics, hyper: MimicMetricsParams) -> Iterator[Pretraining]:
    """Stage 1: each encoder with its own head, alone; the heads are then dropped."""
    for name in list(model.encoders):
        model.unimodal = name
        yield Pretraining(
            f"pretrain_{name}",
            hyper.pretrain_epochs_by_input.get(name, hyper.pretrain_epochs),
            model.encoders[name].parameters(),
        )
    model.unimodal = None


register(
    SystemSpec(
        name="mimicmetrics",
        params=MimicMetricsParams,
        model=MimicMetrics,
        hyper=(
            "hidden",
            "dropout",
            "modality_dropout",
            "queries",
            "missing_text",
            "fusion_head",
            "dropout_rescale",
            "encoder_hidden",
        ),
        param_groups=param_groups,
        pretraining=pretraining,
    ),
    default=True,
)
