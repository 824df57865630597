"""Training losses of the published systems (torch): MSE, CCC, Pearson, the MimicMetrics mix, and
Fuxi's text-anchored triplet loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def ccc_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 − CCC, averaged over the emotion columns of (batch × 6) tensors."""
    pred_mean, true_mean = pred.mean(0), true.mean(0)
    covariance = ((pred - pred_mean) * (true - true_mean)).mean(0)
    denom = pred.var(0, unbiased=False) + true.var(0, unbiased=False) + (pred_mean - true_mean) ** 2
    return (1 - 2 * covariance / (denom + EPS)).mean()


def pearson_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 − Pearson per column, averaged; columns without variance contribute 0 (not NaN)."""
    pred, true = pred - pred.mean(0), true - true.mean(0)
    denom = torch.sqrt((pred**2).sum(0) * (true**2).sum(0))
    defined = denom > EPS
    correlation = (pred * true).sum(0) / denom.clamp_min(EPS)
    return torch.where(defined, 1 - correlation, torch.zeros_like(correlation)).mean()


def mimicmetrics_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """MimicMetrics (ABAW10): 0.7 · (1 − CCC) + 0.3 · MSE."""
    return 0.7 * ccc_loss(pred, true) + 0.3 * F.mse_loss(pred, true)


def text_anchored_triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    """Fuxi (ABAW6): pull a clip's audio/visual embedding (positive) towards its own text
    embedding (anchor) and away from another clip's (negative), by cosine distance."""
    d_pos = 1 - F.cosine_similarity(anchor, positive, dim=-1)
    d_neg = 1 - F.cosine_similarity(anchor, negative, dim=-1)
    return F.relu(d_pos - d_neg + margin).mean()
