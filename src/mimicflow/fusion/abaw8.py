"""``abaw8``: the Augsburg ABAW8 winner (Hallmen et al., arXiv 2504.11460; code
Skyy93/CVPR2025_abaw, branch EMI, ``abaw/model.py``) on :mod:`mimicflow.fusion.models`' interface.

Each input gets a branch by its modality: audio a unidirectional LSTM (as wide as its input
unless ``audio_hidden`` says otherwise), visual a unidirectional LSTM to ``visual_hidden``,
both read at each clip's true last valid step (packed sequences); text its pooled vector (one
step, or the masked mean of several). The branch outputs are concatenated → dense + tanh →
linear 6. The output is linear (``unclipped``, what the loss sees); ``pred`` is it clipped to
[0, 1]. An absent input (all-False mask) contributes zeros.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mimicflow.config import ClipMode, LrSchedule, SystemParams
from mimicflow.fusion.models import (
    NUM_EMOTIONS,
    EmiModel,
    Inputs,
    has_frames,
    masked_mean,
    run_packed,
)
from mimicflow.fusion.systems import SystemSpec, register


class Abaw8Params(SystemParams):
    """Augsburg (ABAW8): an LSTM per audio and visual input (last valid step), the text vector,
    concatenated → dense + tanh → linear 6 (clipped to [0, 1] after the loss)."""

    hidden: int = Field(1027, ge=8)  # the fusion head's dense layer
    dropout: float = Field(0.0, ge=0, lt=1)  # on the concatenated branch outputs (the code: none)
    audio_hidden: int | None = Field(None, ge=8)  # audio LSTM width (None: its input's width)
    visual_hidden: int = Field(768, ge=8)  # visual LSTM width
    lstm_layers: int = Field(2, ge=1)
    lr: float = 1e-4
    grad_clip: float = 100.0
    grad_clip_mode: ClipMode = "value"
    schedule: LrSchedule = "cosine"
    warmup_epochs: float = 1.0


class LastStepLSTM(nn.Module):
    """A unidirectional LSTM whose output is its state at each clip's last valid step."""

    def __init__(self, dim: int, hidden: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return run_packed(self.lstm, x, mask)[1]


class PooledVector(nn.Module):
    """The input's vector as it is (the masked mean over its steps when it has several)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask)


class Abaw8(EmiModel):
    linear_output = True

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 1027,
        dropout: float = 0.0,
        audio_hidden: int | None = None,
        visual_hidden: int = 768,
        lstm_layers: int = 2,
    ):
        super().__init__(dims, kinds)
        branch = {
            "audio": lambda d: LastStepLSTM(d, audio_hidden or d, lstm_layers),
            "visual": lambda d: LastStepLSTM(d, visual_hidden, lstm_layers),
            "text": PooledVector,
        }
        self.branches = nn.ModuleDict({m: branch[self.kinds[m]](d) for m, d in dims.items()})
        width = sum(b.out_dim for b in self.branches.values())
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(width, hidden),
            nn.Tanh(),
            nn.Linear(hidden, NUM_EMOTIONS),
        )

    def predict(self, inputs: Inputs) -> dict:
        here = torch.stack([has_frames(inputs[m][1]) for m in self.branches], 1)  # B × inputs
        parts = [
            branch(*inputs[m]) * here[:, k : k + 1]
            for k, (m, branch) in enumerate(self.branches.items())
        ]
        raw = self.head(torch.cat(parts, -1))
        weights = here.float() / here.float().sum(1, keepdim=True).clamp_min(1.0)
        return {"pred": raw.clamp(0.0, 1.0), "unclipped": raw, "weights": weights}


register(
    SystemSpec(
        name="abaw8",
        params=Abaw8Params,
        model=Abaw8,
        hyper=("hidden", "dropout", "audio_hidden", "visual_hidden", "lstm_layers"),
    )
)
