"""``fuxi`` (ABAW6 winner): per input 2 BiGRU layers + LayerNorm + linear, linear to 256;
average late fusion; dropout; two FC; sigmoid. Trained on TSN frames (one random valid frame
per segment; the segment centres in evaluation), with a text-anchored triplet loss beside the
regression loss, per-branch learning rates and EMA.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from mimicflow.config import LrSchedule, SystemParams
from mimicflow.fusion.losses import text_anchored_triplet_loss
from mimicflow.fusion.models import (
    NUM_EMOTIONS,
    EmiModel,
    Inputs,
    fuse_mean,
    masked_mean,
    run_packed,
)
from mimicflow.fusion.systems import SystemSpec, register


class FuxiParams(SystemParams):
    """Fuxi (ABAW6): TSN sampling, BiGRU branches, average fusion, text-anchored triplet, EMA."""

    hidden: int = 64
    dropout: float = 0.3
    embed: int = Field(256, ge=8)
    ema: float | None = 0.999
    schedule: LrSchedule = "sgdr"
    min_lr: float = 1e-8
    # Per-module learning rates: a branch's by its modality (audio, visual, text); the fusion
    # head's is ``lr``. A modality not named here trains at ``lr``.
    branch_lr: dict[str, float] = Field(default_factory=dict)
    triplet_margin: float = 0.1
    triplet_weight: float = Field(0.1, ge=0)  # beside the regression loss
    # eq. 3 on f̂, the presence-weighted fused feature the prediction reads (``fused``), or on
    # the mean of every branch's embedding, absent ones too (``all_branches``, ours)
    triplet_on: Literal["fused", "all_branches"] = "fused"
    triplet_normalize: bool = False  # ours: unit-length features before the distances
    # triplets drawn per batch (§3.4 "three examples from a mini-batch": 1, a reading);
    # null: one per clip of the batch (ours)
    triplets: int | None = Field(None, ge=1)


class FuxiBranch(nn.Module):
    """2 BiGRU layers + LayerNorm + linear, pooled over valid steps, then linear to ``embed``."""

    def __init__(self, dim: int, hidden: int, embed: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(
            dim, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=dropout
        )
        self.norm = nn.LayerNorm(2 * hidden)
        self.linear = nn.Linear(2 * hidden, hidden)
        self.project = nn.Linear(hidden, embed)

    def forward(self, x, mask):
        outputs, _ = run_packed(self.gru, x, mask)
        return self.project(masked_mean(self.linear(self.norm(outputs)), mask))


class Fuxi(EmiModel):
    """A BiGRU branch per input, their embeddings averaged over the present ones, a head."""

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        embed: int = 256,
        dropout: float = 0.3,
    ):
        super().__init__(dims, kinds)
        self.branches = nn.ModuleDict(
            {m: FuxiBranch(d, hidden, embed, dropout) for m, d in dims.items()}
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(embed, embed // 2),
            nn.ReLU(),
            nn.Linear(embed // 2, NUM_EMOTIONS),
        )

    def predict(self, inputs: Inputs) -> dict:
        embeddings = {m: branch(*inputs[m]) for m, branch in self.branches.items()}
        fused, weights = fuse_mean(embeddings, {m: inputs[m][1] for m in embeddings})
        return {
            "pred": torch.sigmoid(self.head(fused)),
            "embeddings": embeddings,
            "fused": fused,
            "weights": weights,
        }

    def param_groups(self, lr: float, branch_lr: dict[str, float]) -> list[dict]:
        """Per-module learning rates: each branch at its modality's rate in ``branch_lr``
        (audio, visual, text; ``lr`` where absent), the fusion head at ``lr``."""
        groups = [
            {
                "params": list(branch.parameters()),
                "lr": branch_lr.get(self.kinds[name], lr),
                "name": name,
            }
            for name, branch in self.branches.items()
        ]
        return [*groups, {"params": list(self.head.parameters()), "lr": lr, "name": "fusion"}]


def param_groups(model: Fuxi, hyper: FuxiParams) -> list[dict]:
    return model.param_groups(hyper.lr, hyper.branch_lr)


def triplet_loss(model: Fuxi, out: dict, hyper: FuxiParams, clip_mean) -> torch.Tensor | None:
    """The text-anchored triplet loss (eq. 3) on raw squared distances between the fused
    features f̂ the prediction reads (``triplet_on``, ``triplet_normalize`` for ours); the
    ordering is each clip's text features averaged over the whole clip (every text input's, side
    by side), not over the segments sampled for the batch. None without a text input."""
    if "text" not in model.kinds.values() or hyper.triplet_weight <= 0:
        return None
    if hyper.triplet_on == "fused":
        fused = out["fused"].float()
    else:
        fused = torch.stack(list(out["embeddings"].values()), 1).mean(1).float()
    if hyper.triplet_normalize:
        fused = nn.functional.normalize(fused, dim=-1)
    return hyper.triplet_weight * text_anchored_triplet_loss(
        fused, clip_mean("text"), hyper.triplet_margin, count=hyper.triplets
    )


register(
    SystemSpec(
        name="fuxi",
        params=FuxiParams,
        model=Fuxi,
        hyper=("hidden", "embed", "dropout"),
        sampling=("random", "centre"),
        param_groups=param_groups,
        extra_loss=triplet_loss,
    )
)
