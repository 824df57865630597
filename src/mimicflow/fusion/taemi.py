"""``taemi``: TAEMI, the ABAW10 EMI winner (arXiv 2603.14976), as its released code has it
(ZZZRamsey/CVPR_2026_ABAW_10th_EMI, ``abaw/model_ablation.py`` ``ModelAblation`` with every flag
off, as ``train.py`` and ``infer.py`` build it). Names below are that file's.

- The transcript's vector (the text encoder's CLS; the masked mean of an input's steps when it
  has several) is the one query of a ``CrossAttentionLayer`` per audio and per visual input:
  q = LayerNorm(linear(text)), k = LayerNorm(linear(frames)), v = linear(frames), ``heads``
  heads of ``hidden``/``heads``, padding masked, softmax dropout, an output projection; no
  residual, no feed-forward, no positions.
- Fusion: [text, one attended vector per stream] concatenated (768 + 512 + 512 = 1792) → linear
  (``hidden``) → GELU → dropout 0.1 → linear 6. The output is linear (``unclipped``, what the
  loss reads); ``pred`` is it clipped to [0, 1] (the authors clip their submission files).
- Learnable tokens (``miss_*``, N(0, 0.02²) in the input's own space): a clip without a
  transcript reads the text token; a clip without a stream attends to that stream's token alone.
- Modality dropout (training only): every input, the text included, is replaced by its token
  with probability ``modality_dropout``, independently (no input is always kept).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mimicflow.config import ClipMode, Loss, LrSchedule, SystemParams
from mimicflow.fusion.models import NUM_EMOTIONS, EmiModel, Inputs, has_frames, masked_mean
from mimicflow.fusion.systems import SystemSpec, register


class TaemiParams(SystemParams):
    """TAEMI (ABAW10 winner), its code's defaults: the transcript's vector queries a 4-head
    cross-attention (512) over each stream; concat → 512 → 6, linear; MSE; AdamW 1e-4 (wd 0.01),
    1-epoch warm-up + cosine per step; gradients clipped by value (100); no EMA."""

    hidden: int = Field(512, ge=8)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)  # the head's and the attention's
    modality_dropout: float = Field(0.1, ge=0, lt=1)  # per input, the text too
    lr: float = 1e-4
    weight_decay: float = 0.01
    loss: Loss = "mse"
    grad_clip: float = 100.0
    grad_clip_mode: ClipMode = "value"
    schedule: LrSchedule = "cosine"
    warmup_epochs: float = 1.0
    standardise: bool = False
    bias_init: Literal["mean", "default"] = "default"


class CrossAttention(nn.Module):
    """One query vector attending over a frame sequence (the authors' ``CrossAttentionLayer``)."""

    def __init__(self, query_dim: int, kv_dim: int, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(query_dim, hidden), nn.Linear(kv_dim, hidden)
        self.v_proj, self.out_proj = nn.Linear(kv_dim, hidden), nn.Linear(hidden, hidden)
        self.ln_q, self.ln_kv = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, frames: torch.Tensor, valid: torch.Tensor):
        """(B × d_q), (B × T × d_kv), valid (B × T) → B × hidden."""
        batch, steps, _ = frames.shape
        q = self.ln_q(self.q_proj(query)).view(batch, self.heads, 1, -1)
        k = self.ln_kv(self.k_proj(frames)).view(batch, steps, self.heads, -1).transpose(1, 2)
        v = self.v_proj(frames).view(batch, steps, self.heads, -1).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])  # B × heads × 1 × T
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        out = self.drop(F.softmax(scores, -1)) @ v  # B × heads × 1 × head_dim
        return self.out_proj(out.reshape(batch, -1))


class Taemi(EmiModel):
    """Text-anchored cross-attention over each stream, concatenated with the text vector.

    ``weights`` are each present input's equal share (the fusion has no gate to report)."""

    linear_output = True

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 512,
        heads: int = 4,
        dropout: float = 0.1,
        modality_dropout: float = 0.1,
    ):
        super().__init__(dims, kinds)
        self.text = [name for name in dims if self.kinds[name] == "text"]
        self.streams = [name for name in dims if self.kinds[name] != "text"]
        if not self.text:
            raise ValueError("taemi needs a text input (the transcript is the query)")
        query = sum(dims[name] for name in self.text)
        self.missing = nn.ParameterDict(
            {name: nn.Parameter(0.02 * torch.randn(dims[name])) for name in dims}
        )
        self.attend = nn.ModuleDict(
            {n: CrossAttention(query, dims[n], hidden, heads, dropout) for n in self.streams}
        )
        self.pred_head = nn.Sequential(
            nn.Linear(query + hidden * len(self.streams), hidden),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, NUM_EMOTIONS),
        )
        self.modality_dropout = modality_dropout

    def predict(self, inputs: Inputs) -> dict:
        names = [*self.text, *self.streams]
        present = torch.stack([has_frames(inputs[n][1]) for n in names], 1)  # B × inputs
        here = present
        if self.training and self.modality_dropout > 0:
            here = here & (torch.rand(here.shape, device=here.device) >= self.modality_dropout)
        texts = []
        for column, name in enumerate(self.text):
            vector = masked_mean(*inputs[name])
            texts.append(torch.where(here[:, column : column + 1], vector, self.missing[name]))
        query = torch.cat(texts, -1)
        parts = [query]
        for column, name in enumerate(self.streams, len(self.text)):
            x, mask = inputs[name]
            keep = here[:, column]
            token = self.missing[name].expand(x.shape[0], 1, -1)
            frames = torch.cat([x * keep[:, None, None], token], 1)
            valid = torch.cat([mask & keep[:, None], ~keep[:, None]], 1)
            parts.append(self.attend[name](query, frames, valid))
        raw = self.pred_head(torch.cat(parts, -1))
        order = [names.index(name) for name in self.scalers]  # the inputs' own order
        weights = present[:, order].float()
        weights = weights / weights.sum(1, keepdim=True).clamp_min(1.0)
        return {"pred": raw.clamp(0.0, 1.0), "unclipped": raw, "weights": weights}


register(
    SystemSpec(
        name="taemi",
        params=TaemiParams,
        model=Taemi,
        hyper=("hidden", "heads", "dropout", "modality_dropout"),
    )
)
