"""Challenge metrics and the published systems' losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mimicflow import EMOTIONS
from mimicflow.fusion.losses import (
    ccc_loss,
    mimicmetrics_loss,
    pearson_loss,
    text_anchored_triplet_loss,
)
from mimicflow.fusion.metrics import UndefinedMetricWarning, ccc, emotion_scores, pearson

RNG = np.random.default_rng(1)


def test_pearson_and_ccc_match_their_definitions():
    a, b = RNG.random(50), RNG.random(50)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert pearson(a, 2 * a + 3) == pytest.approx(1.0)
    assert ccc(a, a) == pytest.approx(1.0)
    assert ccc(a, a + 0.5) < pearson(a, a + 0.5)  # CCC punishes the bias Pearson ignores


def test_an_all_zero_emotion_is_undefined_with_a_warning_not_nan():
    true = RNG.random((40, 6))
    true[:, EMOTIONS.index("Empathic Pain")] = 0.0
    pred = true + 0.1 * RNG.standard_normal(true.shape)
    with pytest.warns(UndefinedMetricWarning, match="Empathic Pain in fold 3"):
        scores = emotion_scores(pred, true, where="fold 3")
    assert scores["pearson"]["Empathic Pain"] is None
    assert scores["undefined"] == ["Empathic Pain"]
    defined = [v for e, v in scores["pearson"].items() if e != "Empathic Pain"]
    assert scores["mean_pearson"] == pytest.approx(np.mean(defined))
    assert not np.isnan(scores["mean_pearson"])


def test_losses_reward_better_predictions_and_never_nan():
    true = torch.rand(32, 6)
    good, bad = true + 0.05 * torch.randn(32, 6), torch.rand(32, 6)
    for loss in (ccc_loss, pearson_loss, mimicmetrics_loss):
        assert loss(good, true) < loss(bad, true)
    constant = torch.zeros(32, 6)
    assert torch.isfinite(pearson_loss(constant, true)) and torch.isfinite(ccc_loss(constant, true))


def test_triplet_loss_orders_fused_features_like_the_text_features():
    text = torch.tensor([[0.0], [0.1], [5.0]])  # clips 0 and 1 say nearly the same
    agree = torch.tensor([[0.0, 0.0], [0.0, 0.05], [3.0, 0.0]])  # fused keeps that order
    disagree = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 0.05]])  # fused swaps it
    g = torch.Generator().manual_seed(0)
    assert text_anchored_triplet_loss(agree, text, generator=g).item() == 0.0
    loss = text_anchored_triplet_loss(disagree, text, generator=g)
    assert loss.item() == pytest.approx((9.0 - 0.0025 + 0.1) + (9.0 - 9.0025 + 0.1))
