"""``augsburg`` (ABAW6): audio only — global mean ⊕ LSTM last state → dense + tanh → linear 6
(``pred`` clipped to [0, 1]; ``unclipped`` is the linear output). It takes the audio inputs only.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from mimicflow.config import SystemParams
from mimicflow.fusion.models import (
    NUM_EMOTIONS,
    EmiModel,
    Inputs,
    has_frames,
    masked_mean,
    run_packed,
)
from mimicflow.fusion.systems import SystemSpec, register


class AugsburgParams(SystemParams):
    """Augsburg (ABAW6): audio only, global mean ⊕ LSTM last state → dense + tanh."""

    lstm_layers: int = Field(2, ge=1)
    lstm_dropout: float = Field(0.1, ge=0, lt=1)
    # the dense layer's width (None: ``hidden``, ours); the authors' is as wide as its input,
    # 2 · 1027 = 2054 (abaw/model.py)
    dense_hidden: int | None = Field(None, ge=8)
    # the fold's model: retrained (a new head on the frozen features, ours) | finetuned (the
    # head the adapt stage trained with its audio input's encoder, loaded, not trained: ABAW6
    # §4's predictor; the settings above then do not apply)
    head: Literal["retrained", "finetuned"] = "retrained"


class Augsburg(EmiModel):
    """Audio only: [global mean vector ; LSTM last state] → the regression head of audEERING's
    VAD model the paper follows (dropout, dense + tanh, dropout, a linear projection to 6).
    The output is linear, as in the paper: ``unclipped`` is what the loss sees, ``pred`` the
    same clipped to [0, 1]."""

    linear_output = True

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        dropout: float = 0.2,
        lstm_layers: int = 2,
        lstm_dropout: float = 0.1,
        dense_hidden: int | None = None,
    ):
        super().__init__(dims, kinds)
        audio = [name for name, kind in self.kinds.items() if kind == "audio"]
        if len(audio) != 1:
            raise ValueError(f"augsburg takes one audio input, got {audio or 'none'}")
        self.audio = audio[0]
        dim = dims[self.audio]
        self.lstm = nn.LSTM(
            dim,
            hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=lstm_dropout if lstm_layers > 1 else 0.0,
        )
        dense = dense_hidden or hidden
        self.dense = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(dim + hidden, dense), nn.Tanh(), nn.Dropout(dropout)
        )
        self.out = nn.Linear(dense, NUM_EMOTIONS)

    def predict(self, inputs: Inputs) -> dict:
        x, mask = inputs[self.audio]
        _, last = run_packed(self.lstm, x, mask)
        features = torch.cat([masked_mean(x, mask), last * has_frames(mask).unsqueeze(-1)], -1)
        raw = self.out(self.dense(features))
        weights = has_frames(mask).float().unsqueeze(-1)
        return {"pred": raw.clamp(0.0, 1.0), "unclipped": raw, "weights": weights}


register(
    SystemSpec(
        name="augsburg",
        params=AugsburgParams,
        model=Augsburg,
        hyper=("hidden", "dropout", "lstm_layers", "lstm_dropout", "dense_hidden"),
        branches=("audio",),
        finetuned_head=True,
    )
)
