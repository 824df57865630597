"""Fuxi's triplet loss as eq. 3 writes it: raw squared distances between the fused features f̂
the prediction reads, absent branches left out."""

from __future__ import annotations

from pathlib import Path

import torch

from mimicflow.fusion.fuxi import FuxiParams, triplet_loss
from mimicflow.fusion.losses import text_anchored_triplet_loss
from mimicflow.fusion.systems import build_model
from mimicflow.recipes import load_recipes, recipe_overlay

ROOT = Path(__file__).resolve().parents[1]

DIMS = {"audio": 5, "visual": 4, "text": 6}


def _setting(batch: int = 8):
    torch.manual_seed(0)
    model = build_model("fuxi", DIMS, {m: m for m in DIMS}, hidden=8, embed=16).eval()
    inputs = {
        m: (torch.randn(batch, 6, d), torch.ones(batch, 6, dtype=torch.bool))
        for m, d in DIMS.items()
    }
    inputs["audio"] = (inputs["audio"][0] * 0, torch.zeros(batch, 6, dtype=torch.bool))  # no audio
    text = torch.randn(batch, DIMS["text"])
    return model, inputs, text


def _term(model, inputs, text, hyper=None):
    torch.manual_seed(5)  # the same triplets drawn every time
    return triplet_loss(model, model(inputs), hyper or FuxiParams(), lambda branch: text)


@torch.no_grad()
def test_the_triplet_term_is_eq_3_on_the_unnormalised_fused_feature():
    model, inputs, text = _setting()
    hyper = FuxiParams()
    fused = model(inputs)["fused"]
    torch.manual_seed(5)
    expected = hyper.triplet_weight * text_anchored_triplet_loss(fused, text, hyper.triplet_margin)
    torch.testing.assert_close(_term(model, inputs, text), expected)
    for ours in (FuxiParams(triplet_normalize=True), FuxiParams(triplet_on="all_branches")):
        assert not torch.isclose(_term(model, inputs, text, ours), expected)


@torch.no_grad()
def test_an_absent_branch_never_enters_the_triplet_term():
    model, inputs, text = _setting()
    before = _term(model, inputs, text)
    model.branches["audio"].project.bias += 5.0  # what an absent branch would add
    torch.testing.assert_close(_term(model, inputs, text), before)
    ours = FuxiParams(triplet_on="all_branches", triplet_normalize=True)  # before issue 26
    changed = _term(model, inputs, text, ours)
    model.branches["audio"].project.bias -= 5.0
    assert not torch.isclose(changed, _term(model, inputs, text, ours))


@torch.no_grad()
def test_triplets_per_batch_is_one_when_the_recipe_reads_section_3_4_so():
    """``triplets: 1`` draws one triplet of three clips per batch (§3.4, our reading): the
    term equals eq. 3 on the one triplet; null draws one triplet per clip (ours)."""
    fused, text = torch.randn(8, 16), torch.randn(8, 6)
    generator = torch.Generator().manual_seed(3)
    one = text_anchored_triplet_loss(fused, text, 0.1, generator, count=1)
    trio = torch.randperm(8, generator=torch.Generator().manual_seed(3))[:3]
    d = {
        (i, j): float((text[trio[i]] - text[trio[j]]).pow(2).sum())
        for i, j in ((0, 1), (0, 2), (1, 2))
    }
    a, p = min(d, key=d.get)
    n = 3 - a - p
    anc, pos, neg = fused[trio[a]], fused[trio[p]], fused[trio[n]]
    close = (anc - pos).pow(2).sum()
    expected = torch.relu(close - (anc - neg).pow(2).sum() + 0.1) + torch.relu(
        close - (pos - neg).pow(2).sum() + 0.1
    )
    torch.testing.assert_close(one, expected)
    many = text_anchored_triplet_loss(fused, text, 0.1, torch.Generator().manual_seed(3))
    assert not torch.isclose(one, many)


@torch.no_grad()
def test_the_demo_flavour_triplet_term_leaves_room_for_the_regression_loss():
    """Issue 24: at the demo's rates, a triplet term in the tens (raw squared distances between
    256-d fused features, weight 0.1) drowned the MSE under the gradient clip and Fuxi's demo
    stayed at the training mean. The demo flavour's term, on its own widths, stays below the
    MSE of predicting the mean of uniform labels (1/12) at every draw."""
    section = recipe_overlay(load_recipes(ROOT / "recipes")["fuxi"], demo=True)["train"]["fuxi"]
    hyper = FuxiParams(**section)
    torch.manual_seed(0)
    dims = {"audio": 384, "visual": 64, "text": 768}
    model = build_model("fuxi", dims, {m: m for m in dims}, hidden=hyper.hidden, embed=hyper.embed)
    inputs = {
        m: (torch.randn(16, 8, d), torch.ones(16, 8, dtype=torch.bool)) for m, d in dims.items()
    }
    out, text = model.eval()(inputs), torch.randn(16, dims["text"])
    terms = []
    for seed in range(20):
        torch.manual_seed(seed)
        terms.append(float(triplet_loss(model, out, hyper, lambda branch: text)))
    assert max(terms) < 1 / 12, terms
