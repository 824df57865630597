"""MimicMetrics' fusion as the authors' code has it (src/staged_fusion_training.py): the
FusionRegressor's LayerNorm inlet and linear output, modality dropout with 1/(1 − p), and an
encoder the fusion stage leaves frozen."""

from __future__ import annotations

import copy

import numpy as np
import torch

from mimicflow.config import TrainParams
from mimicflow.features.synthetic import write_synthetic_store
from mimicflow.fusion.systems import build_model
from mimicflow.training.data import FeatureDataset
from mimicflow.training.folds import assign_folds, fold_indices
from mimicflow.training.trainer import FoldTrainer

DIMS = {"text": 10, "audio": 12, "visual": 6, "motion": 4}
KINDS = {"text": "text", "audio": "audio", "visual": "visual", "motion": "visual"}


def _inputs(batch: int = 6):
    gen = torch.Generator().manual_seed(0)
    return {
        m: (torch.randn(batch, 5, d, generator=gen), torch.ones(batch, 5, dtype=torch.bool))
        for m, d in DIMS.items()
    }


def test_the_fusion_head_is_the_authors_with_a_linear_output():
    model = build_model(
        "mimicmetrics", DIMS, KINDS, hidden=384, encoder_hidden={"motion": 128}, fusion_head="code"
    ).eval()
    assert isinstance(model.fusion[0], torch.nn.LayerNorm)
    assert model.fusion[0].normalized_shape == (384 * 3 + 128,)  # no presence flags
    assert isinstance(model.fusion[1], torch.nn.Dropout)
    with torch.no_grad():
        model.fusion[-1].weight.zero_()
        model.fusion[-1].bias.fill_(2.0)
    out = model(_inputs())
    torch.testing.assert_close(out["unclipped"], torch.full((6, 6), 2.0))
    torch.testing.assert_close(out["pred"], torch.ones(6, 6))
    ours = build_model("mimicmetrics", DIMS, KINDS, hidden=16)  # saved before: ours
    assert ours.fusion[0].in_features == 4 * (16 + 1) and not ours.linear_output


@torch.no_grad()
def test_modality_dropout_scales_the_kept_inputs_by_one_over_one_minus_p():
    torch.manual_seed(0)
    model = build_model(
        "mimicmetrics",
        DIMS,
        KINDS,
        hidden=8,
        dropout=0.0,
        modality_dropout=0.3,
        fusion_head="code",
        dropout_rescale=True,
    )
    inputs = _inputs(batch=64)
    encoded = torch.cat([model.encoders[m](*inputs[m]) for m in DIMS], -1)  # B × 32
    seen = []
    model.fusion[0].register_forward_hook(lambda module, args, out: seen.append(args[0]))
    model.train()(inputs)
    blocks = seen[0].view(64, 4, 8)
    kept = blocks.abs().sum(-1) > 0
    assert (~kept).any() and kept.any(1).all()
    expected = encoded.view(64, 4, 8) / 0.7
    torch.testing.assert_close(blocks[kept], expected[kept], atol=1e-6, rtol=1e-5)


def test_a_frozen_encoder_is_left_as_pre_training_made_it(tmp_path, monkeypatch):
    manifest = write_synthetic_store(tmp_path, 32, {"audio": 6, "visual": 4, "text": 5}, seed=2)
    frames = {"audio": 4, "visual": 3, "text": 2}
    params = TrainParams(
        epochs=2,
        patience=2,
        batch_size=8,
        device="cpu",
        frames=frames,
        mimicmetrics={"hidden": 8, "pretrain_epochs": 1, "frozen_inputs": ["visual"]},
    )
    dataset = FeatureDataset(tmp_path, manifest, frames)
    train_idx, val_idx = fold_indices(assign_folds(manifest, "merged", 2, seed=0), 0)
    trainer = FoldTrainer(params, "mimicmetrics", dataset, train_idx, val_idx, seed=0)
    pretrained = {}
    pretrain = trainer._pretrain

    def recorded(model):
        pretrain(model)
        pretrained.update(copy.deepcopy(model.encoders.state_dict()))

    monkeypatch.setattr(trainer, "_pretrain", recorded)
    after = trainer.fit().model.encoders.state_dict()
    for name, tensor in pretrained.items():
        if name.startswith("visual."):
            assert torch.equal(after[name], tensor), name
    moved = [not torch.equal(after[n], t) for n, t in pretrained.items() if n.startswith("text.")]
    assert any(moved) and np.isfinite(trainer.history[-1]["val_mean_pearson"])
