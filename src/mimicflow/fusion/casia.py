"""``casia``: Team CASIA's ABAW10 EMI system (2nd; arXiv 2603.13760), as the authors' code has it
(ReLU-H/Team-CASIA26-ABAW-10th-EMI-track, ``code_all/emi_mmta_train_v15_ablation.py`` run by
``v15_ablation.sh``: every temporal module off, mean pooling, the VAD module on, concatenation
fusion). Names below are that file's.

- Every input is average-pooled to exactly ``train.frames`` (128) steps as torch's
  ``adaptive_avg_pool1d`` does (``adaptive_pool_seq``; sampling ``adaptive``): every step is
  valid, a short clip is stretched. A clip without the input reads 128 zero steps, the authors'
  fallback (their extractors write one zero frame), so nothing is masked here.
- A branch per input (``VisualBranch``/``TextBranch``): LayerNorm → linear to ``hidden`` → GELU →
  dropout per step; the mean over the steps; LayerNorm → linear to ``feat_dim`` (z). Audio
  (``AudioVADBranch``, ``vad``): a latent 3-vector ``vad`` = σ(MLP(mean of the projected steps))
  is appended to every step, then LayerNorm → linear → GELU → dropout, before the mean.
  Each branch has its own head (LayerNorm → linear → GELU → dropout → linear 6 → sigmoid) whose
  prediction only the auxiliary loss reads.
- Fusion: the branches' z concatenated → LayerNorm → linear → GELU → dropout → linear 6 →
  sigmoid (clamped to [0, 1]).
- Loss (:func:`casia_loss`): MSE + λ_c(e)·(1 − batch Pearson) + 0.03·Σ w_branch·SmoothL1(branch)
  + 0.01·mean((vad − 0.5)²), λ_c(e) = 0.1·min(1, e/8) for epoch e = 1, 2, …
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mimicflow.config import ClipMode, Loss, LrSchedule, SystemParams
from mimicflow.fusion.losses import REGRESSION_LOSSES
from mimicflow.fusion.models import NUM_EMOTIONS, EmiModel, Inputs, has_frames
from mimicflow.fusion.systems import SystemSpec, register


class CasiaParams(SystemParams):
    """CASIA (ABAW10 2nd): per-input MLP branches over 128 adaptive-pooled steps (audio with a
    latent VAD vector), concatenation fusion, MSE + warmed-up Pearson + auxiliary branch and VAD
    terms; AdamW, cosine per epoch, EMA 0.999 from the first step (the authors' defaults)."""

    hidden: int = Field(256, ge=8)
    feat_dim: int = Field(256, ge=8)  # each branch's output (z)
    dropout: float = Field(0.2, ge=0, lt=1)
    vad: bool = True  # the audio branch's latent VAD vector (``use_vad_module``)
    lr: float = 1e-4
    weight_decay: float = 1e-4
    loss: Loss = "mse"
    corr_weight: float = Field(0.10, ge=0)  # λ_c: weight of 1 − batch Pearson (``lam_corr``)
    corr_warmup_epochs: int = Field(8, ge=1)  # λ_c grows linearly over these epochs
    aux_weight: float = Field(0.03, ge=0)  # ``lam_aux``
    # each branch's share of the auxiliary term, by its input's modality family
    aux_branch_weights: dict[str, float] = Field(
        default_factory=lambda: {"visual": 0.20, "audio": 0.35, "text": 0.45}
    )
    vad_reg_weight: float = Field(0.01, ge=0)  # pulls the latent VAD vector towards 0.5
    ema: float | None = 0.999
    ema_warmup: bool = False
    grad_clip: float = 1.0
    grad_clip_mode: ClipMode = "norm"
    schedule: LrSchedule = "cosine"
    schedule_step: Literal["batch", "epoch"] = "epoch"
    min_delta: float = 1e-4
    standardise: bool = False
    bias_init: Literal["mean", "default"] = "default"


def _mlp_step(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout))


def _head(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """LayerNorm → linear → GELU → dropout → linear 6 → sigmoid."""
    return nn.Sequential(
        *_mlp_step(dim, hidden, dropout), nn.Linear(hidden, NUM_EMOTIONS), nn.Sigmoid()
    )


class Branch(nn.Module):
    """One input's branch: per-step projection (with the VAD vector for audio), mean over the
    steps, LayerNorm → linear to ``feat_dim``; returns (z, its head's prediction, vad or None)."""

    def __init__(self, dim: int, hidden: int, feat_dim: int, dropout: float, vad: bool):
        super().__init__()
        self.proj = _mlp_step(dim, hidden, dropout)
        self.vad_head = (
            nn.Sequential(
                *_mlp_step(hidden, hidden // 2, dropout), nn.Linear(hidden // 2, 3), nn.Sigmoid()
            )
            if vad
            else None
        )
        self.fuse_proj = _mlp_step(hidden + 3, hidden, dropout) if vad else None
        self.feat_fc = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, feat_dim))
        self.head = _head(feat_dim, hidden, dropout)

    def forward(self, x: torch.Tensor):
        steps, vad = self.proj(x), None
        if self.vad_head is not None:
            vad = self.vad_head(steps.mean(1))
            steps = self.fuse_proj(torch.cat([steps, vad[:, None].expand(-1, x.shape[1], -1)], -1))
        z = self.feat_fc(steps.mean(1))
        return z, self.head(z), vad


class Casia(EmiModel):
    """The branches' outputs concatenated into the fusion head. ``aux``: each branch's own
    prediction; ``vad``: the audio branches' latent vectors; ``weights``: equal shares of the
    present inputs (a concatenation has no gate to report)."""

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 256,
        feat_dim: int = 256,
        dropout: float = 0.2,
        vad: bool = True,
    ):
        super().__init__(dims, kinds)
        self.branches = nn.ModuleDict(
            {
                m: Branch(d, hidden, feat_dim, dropout, vad and self.kinds[m] == "audio")
                for m, d in dims.items()
            }
        )
        self.fusion_head = _head(len(dims) * feat_dim, hidden, dropout)

    def predict(self, inputs: Inputs) -> dict:
        zs, aux, vads = [], {}, []
        for m, branch in self.branches.items():
            z, aux[m], vad = branch(inputs[m][0])
            zs.append(z)
            if vad is not None:
                vads.append(vad)
        fused = torch.cat(zs, -1)
        here = torch.stack([has_frames(inputs[m][1]) for m in self.branches], 1).float()
        return {
            "pred": self.fusion_head(fused).clamp(0.0, 1.0),
            "aux": aux,
            "vad": torch.cat(vads, 1) if vads else None,
            "fused": fused,
            "weights": here / here.sum(1, keepdim=True).clamp_min(1.0),
        }


def batch_pearson_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8):
    """1 − the mean over columns of the batch Pearson (population std, each clamped at ``eps``:
    a column without variance counts as correlation 0); 0 for a batch under two clips."""
    if pred.shape[0] < 2:
        return pred.new_zeros(())
    pred, target = pred.float(), target.float()
    pred_c, target_c = pred - pred.mean(0, keepdim=True), target - target.mean(0, keepdim=True)
    pred_std = pred_c.std(0, keepdim=True, unbiased=False).clamp_min(eps)
    target_std = target_c.std(0, keepdim=True, unbiased=False).clamp_min(eps)
    return 1.0 - ((pred_c / pred_std) * (target_c / target_std)).mean(0).mean()


def casia_loss(
    model: Casia, out: dict, target: torch.Tensor, hyper: CasiaParams, epoch: int
) -> torch.Tensor:
    """The authors' training loss at ``epoch`` (from 0; their count starts at 1)."""
    pred = torch.nan_to_num(out["pred"].float(), nan=0.5, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
    corr_weight = hyper.corr_weight * min(1.0, (epoch + 1) / hyper.corr_warmup_epochs)
    loss = REGRESSION_LOSSES[hyper.loss](pred, target)
    loss = loss + corr_weight * batch_pearson_loss(pred, target)
    aux = sum(
        hyper.aux_branch_weights.get(model.kinds[m], 0.0) * F.smooth_l1_loss(p.float(), target)
        for m, p in out["aux"].items()
    )
    loss = loss + hyper.aux_weight * aux
    if out["vad"] is not None:
        loss = loss + hyper.vad_reg_weight * ((out["vad"].float() - 0.5) ** 2).mean()
    return loss


register(
    SystemSpec(
        name="casia",
        params=CasiaParams,
        model=Casia,
        hyper=("hidden", "feat_dim", "dropout", "vad"),
        sampling=("adaptive", "adaptive"),
        loss=casia_loss,
    )
)
