"""CASIA (ABAW10 2nd) as its authors' code has it: adaptive pooling to 128 steps, the loss, EMA
without warm-up, the cosine schedule stepped per epoch, no input scaling or bias start."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mimicflow.config import TrainParams
from mimicflow.features.synthetic import write_synthetic_store
from mimicflow.fusion.casia import CasiaParams, batch_pearson_loss, casia_loss
from mimicflow.fusion.systems import build_model
from mimicflow.training.data import FeatureDataset, adaptive_pool
from mimicflow.training.trainer import FoldTrainer, Schedule, _ema

DIMS = {"visual": 6, "audio": 12, "text": 8}
KINDS = {m: m for m in DIMS}


@pytest.mark.parametrize("length", [5, 128, 300])
def test_adaptive_pooling_is_torchs_over_the_valid_frames(length):
    rng = np.random.default_rng(length)
    values = rng.normal(size=(length + 3, 4)).astype(np.float32)
    mask = np.ones(length + 3, bool)
    mask[[1, -1, -2]] = False  # the pooling reads the valid frames only
    pooled, valid = adaptive_pool(values, mask, 128)
    expected = F.adaptive_avg_pool1d(torch.from_numpy(values[mask]).T[None], 128)[0].T
    np.testing.assert_allclose(pooled, expected.numpy(), atol=1e-6)
    assert valid.all()
    empty, none = adaptive_pool(values, np.zeros(length + 3, bool), 128)
    assert not none.any() and not empty.any()


def _out(batch: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = {
        "pred": torch.rand(batch, 6, generator=g),
        "aux": {m: torch.rand(batch, 6, generator=g) for m in DIMS},
        "vad": torch.rand(batch, 3, generator=g),
    }
    target = torch.rand(batch, 6, generator=g)
    target[:, 3] = 0.0  # a column without variance (Empathic Pain is often all 0 in a batch)
    return out, target


@pytest.mark.parametrize(("epoch", "corr_weight"), [(0, 0.0125), (3, 0.05), (7, 0.1), (20, 0.1)])
def test_the_loss_is_the_authors(epoch, corr_weight):
    model = build_model("casia", DIMS, KINDS, hidden=16, feat_dim=16)
    out, y = _out()
    p = out["pred"]
    pc, yc = p - p.mean(0), y - y.mean(0)
    corr = (pc / pc.std(0, unbiased=False)) * (yc / y.std(0, unbiased=False).clamp_min(1e-8))
    pearson = 1 - corr.mean(0).mean()
    assert corr.mean(0)[3] == 0  # the constant column counts as correlation 0, not left out
    aux = sum(
        w * F.smooth_l1_loss(out["aux"][m], y)
        for m, w in {"visual": 0.2, "audio": 0.35, "text": 0.45}.items()
    )
    expected = (
        F.mse_loss(p, y)
        + corr_weight * pearson
        + 0.03 * aux
        + 0.01 * ((out["vad"] - 0.5) ** 2).mean()
    )
    loss = casia_loss(model, out, y, CasiaParams(), epoch)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert batch_pearson_loss(p[:1], y[:1]).item() == 0.0


def test_the_model_concatenates_the_branches_and_the_audio_branch_has_the_vad_vector():
    model = build_model("casia", DIMS, KINDS, hidden=16, feat_dim=10).eval()
    assert model.fusion_head[0].normalized_shape == (30,)
    assert model.branches["audio"].vad_head is not None
    assert model.branches["visual"].vad_head is None and model.branches["text"].vad_head is None
    inputs = {
        m: (torch.randn(4, 128, d), torch.ones(4, 128, dtype=torch.bool)) for m, d in DIMS.items()
    }
    out = model(inputs)
    assert out["pred"].shape == (4, 6) and out["vad"].shape == (4, 3)
    assert out["fused"].shape == (4, 30) and ((out["pred"] >= 0) & (out["pred"] <= 1)).all()
    assert set(out["aux"]) == set(DIMS)


def test_ema_without_warm_up_averages_from_the_first_step():
    model = torch.nn.Linear(3, 2)
    w0 = model.weight.detach().clone()
    ema = _ema(model, 0.999, warmup=False)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module.weight, 0.999 * w0 + 0.001 * (w0 + 1.0))


def test_the_cosine_schedule_steps_per_epoch():
    optimiser = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    schedule = Schedule(optimiser, CasiaParams(), epochs=30, steps_per_epoch=5)
    rates = []
    for _ in range(2):
        for _ in range(5):
            rates.append(optimiser.param_groups[0]["lr"])
            schedule.batch()
        schedule.epoch(0.0)
    assert rates[:5] == [1e-4] * 5
    assert rates[5:] == pytest.approx([1e-4 * 0.5 * (1 + math.cos(math.pi / 30))] * 5)


def test_no_input_scaling_and_pytorch_initial_biases(tmp_path):
    manifest = write_synthetic_store(tmp_path, 24, DIMS, seed=3)
    frames = {m: 16 for m in DIMS}
    dataset = FeatureDataset(tmp_path, manifest, frames)
    params = TrainParams(device="cpu", frames=frames, casia={"hidden": 16, "feat_dim": 8})
    trainer = FoldTrainer(params, "casia", dataset, np.arange(16), np.arange(16, 24), seed=1)
    model = trainer.new_model()
    torch.manual_seed(1)
    fresh = build_model("casia", dataset.dims(), dataset.kinds(), hidden=16, feat_dim=8)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)  # scalers identity, biases as initialised
    batch = dataset.batch(np.arange(4), "adaptive")
    assert all(mask.all() for _, mask in batch.inputs.values())
