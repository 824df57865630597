"""Training losses of the published systems (torch): MSE, CCC, Pearson, the MimicMetrics mix, and
Fuxi's text-anchored triplet loss."""

from __future__ import annotations

from collections.abc import Callable

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
    fused: torch.Tensor,
    text: torch.Tensor,
    margin: float = 0.1,
    generator=None,
    count: int | None = None,
) -> torch.Tensor:
    """Fuxi (ABAW6, eq. 3): triplets of clips drawn from the batch are ordered by their *text*
    features — the two closest are anchor and positive (interchangeable), the third negative —
    and their *fused* features must keep that order by ``margin`` (squared Euclidean, both
    directions). ``fused``: B × h, ``text``: B × d (pooled text features); ``count`` triplets
    (None: one per clip of the batch), the loss their mean."""
    batch = fused.shape[0]
    if batch < 3:
        return fused.sum() * 0.0
    draws = batch if count is None else count
    idx = torch.stack([torch.randperm(batch, generator=generator)[:3] for _ in range(draws)]).to(
        fused.device
    )
    t = text[idx]  # B × 3 × d
    d_text = torch.stack(
        [
            (t[:, 0] - t[:, 1]).pow(2).sum(-1),
            (t[:, 0] - t[:, 2]).pow(2).sum(-1),
            (t[:, 1] - t[:, 2]).pow(2).sum(-1),
        ],
        1,
    )  # pairs (0,1) (0,2) (1,2)
    closest = d_text.argmin(1)
    order = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 2, 0]], device=fused.device)[closest]
    anc, pos, neg = (fused[idx.gather(1, order[:, k : k + 1]).squeeze(1)] for k in range(3))
    d_ap = (anc - pos).pow(2).sum(-1)
    return (
        F.relu(d_ap - (anc - neg).pow(2).sum(-1) + margin)
        + F.relu(d_ap - (pos - neg).pow(2).sum(-1) + margin)
    ).mean()


# ``loss`` in a system's params section: the regression loss on the six intensities.
REGRESSION_LOSSES: dict[str, Callable] = {
    "mse": F.mse_loss,
    "ccc": ccc_loss,
    "mimicmetrics": mimicmetrics_loss,
}
