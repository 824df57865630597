"""The systems' modules: shapes, masks (padding and missing inputs never leak in)."""

from __future__ import annotations

import pytest
import torch

from mimicflow.fusion.models import drop_inputs, fit_input_scaling, segment_average
from mimicflow.fusion.systems import SYSTEMS, build_model

DIMS = {"audio": 12, "visual": 6, "text": 10}
# Every system with its defaults, and variants of their options.
VARIANTS = [pytest.param(s, {}, id=s) for s in SYSTEMS] + [
    pytest.param("mimicmetrics", {"queries": 6}, id="mimicmetrics-6-queries"),
    pytest.param("mimicmetrics", {"missing_text": "zeros"}, id="mimicmetrics-zero-text"),
    pytest.param("ustc", {"segments": 3, "layers": 1}, id="ustc-3-segments"),
    pytest.param("ustc", {"qam": "step"}, id="ustc-qam-step"),
    pytest.param("ustc", {"qam": "step", "form": "eq10"}, id="ustc-eq10"),
    pytest.param("mimicmetrics", {"fusion_head": "code"}, id="mimicmetrics-code-head"),
]


def _inputs(batch=4, frames=8, lengths=(8, 5, 3, 8)):
    gen = torch.Generator().manual_seed(0)
    inputs = {}
    for name, dim in DIMS.items():
        x = torch.randn(batch, frames, dim, generator=gen)
        mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
        inputs[name] = (x * mask.unsqueeze(-1), mask)
    return inputs


def _model(system, hyper=None):
    torch.manual_seed(0)
    dims = {"audio": DIMS["audio"]} if system == "augsburg" else DIMS
    return build_model(system, dims, {m: m for m in dims}, **(hyper or {})).eval()


@pytest.mark.parametrize(("system", "hyper"), VARIANTS)
@torch.no_grad()
def test_predictions_are_six_intensities_in_unit_range(system, hyper):
    out = _model(system, hyper)(_inputs())
    assert out["pred"].shape == (4, 6)
    assert ((out["pred"] >= 0) & (out["pred"] <= 1)).all()


@pytest.mark.parametrize(("system", "hyper"), VARIANTS)
def test_padding_content_never_changes_a_prediction(system, hyper):
    model, inputs = _model(system, hyper), _inputs()
    noisy = {m: (x + 100.0 * (~mask).unsqueeze(-1), mask) for m, (x, mask) in inputs.items()}
    torch.testing.assert_close(model(inputs)["pred"], model(noisy)["pred"])


@pytest.mark.parametrize(("system", "hyper"), [v for v in VARIANTS if v.values[0] != "augsburg"])
def test_a_missing_input_is_left_out_not_read_as_zeros(system, hyper):
    model, inputs = _model(system, hyper), _inputs()
    x, mask = inputs["visual"]
    missing = mask.clone()
    missing[1] = False  # clip 1 has no face at all
    garbage = x.clone()
    garbage[1] = 50.0
    a = model(inputs | {"visual": (x, missing)})
    b = model(inputs | {"visual": (garbage, missing)})
    torch.testing.assert_close(a["pred"], b["pred"])
    weights = a["weights"][1]
    assert weights[list(DIMS).index("visual")] == 0 and weights.sum().item() == pytest.approx(1.0)


def test_modality_dropout_always_keeps_one_input():
    here = torch.ones(2000, 3, dtype=torch.bool)
    here[:1000, 0] = False
    kept = drop_inputs(here, 0.3)
    assert kept.any(1).all()
    assert 0.2 < 1 - kept[1000:].float().mean() < 0.4  # about p = 0.3 dropped where all present


def test_unknown_system_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        build_model("nope", DIMS, {m: m for m in DIMS})


@pytest.mark.parametrize(("system", "hyper"), VARIANTS)
def test_fitted_input_scaling_makes_predictions_blind_to_feature_units(system, hyper):
    """Rescaling and shifting a feature (degrees vs radians, a different encoder's range) does
    not change a prediction once the scalers are fitted on data in those units."""
    inputs = _inputs()
    scale = {m: torch.logspace(-2, 2, d) for m, d in DIMS.items()}  # 0.01× … 100× per feature
    moved = {
        m: ((x * scale[m] + 7.0) * mask.unsqueeze(-1), mask) for m, (x, mask) in inputs.items()
    }

    def fitted(data):
        model = _model(system, hyper)
        fit_input_scaling(
            model,
            {
                m: (x[mask].mean(0), x[mask].std(0))
                for m, (x, mask) in data.items()
                if m in model.scalers
            },
        )
        return model(data)["pred"]

    torch.testing.assert_close(fitted(inputs), fitted(moved), atol=1e-4, rtol=1e-4)


def test_segment_average_pools_valid_steps_and_masks_empty_segments():
    x = torch.arange(10.0).reshape(1, 10, 1)
    mask = torch.tensor(
        [[1, 1, 0, 1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool
    )  # 8 steps, step 2 missing
    pooled, valid = segment_average(x, mask, 4)
    assert pooled.flatten().tolist() == [0.5, 3.0, 4.5, 6.5] and valid.all()
    short, short_valid = segment_average(x[:, :3], mask[:, :3], 4)  # 2 steps into 4 segments
    assert short_valid.tolist() == [[True, False, True, False]] and short.flatten().tolist() == [
        0,
        0,
        1,
        0,
    ]


@torch.no_grad()
def test_ustc_qam_is_a_softmax_across_the_inputs_at_each_segment_with_text_broadcast():
    """Eq. 9: [β_v, β_a, β_s] = softmax at every segment m; a one-step transcript vector takes
    part at every segment; an input absent from a clip weighs 0 there."""
    torch.manual_seed(0)
    dims = {"visual": 6, "audio": 5, "text": 4}
    model = build_model("ustc", dims, {m: m for m in dims}, hidden=16, segments=4, qam="step")
    model.eval()
    audio_mask = torch.ones(3, 40, dtype=torch.bool)
    audio_mask[1] = False  # clip 1 has no audio
    inputs = {
        "visual": (torch.randn(3, 20, 6), torch.ones(3, 20, dtype=torch.bool)),
        "audio": (torch.randn(3, 40, 5), audio_mask),
        "text": (torch.randn(3, 1, 4), torch.ones(3, 1, dtype=torch.bool)),
    }
    qam = model(inputs)["qam"]  # B × segments × inputs
    assert qam.shape == (3, 4, 3)
    torch.testing.assert_close(qam.sum(-1), torch.ones(3, 4))
    assert (qam[:, :, 2] > 0).all()  # the transcript at every segment
    assert (qam[1, :, 1] == 0).all()


def test_ustc_eq10_predicts_per_step_from_the_weighted_sum_and_its_loss_is_per_step():
    """Eq. 10 / §3.6: one Transformer token per segment (Σ_i β_i h_i), a linear prediction per
    segment, the clip's prediction their mean; the MSE is averaged over the steps, not taken on
    the mean (a clip whose steps straddle the label has a per-step loss, a mean one of 0)."""
    from mimicflow.config import Params
    from mimicflow.fusion.ustc import ustc_loss

    model = _model("ustc", {"qam": "step", "form": "eq10", "segments": 4})
    out = model(_inputs())
    assert out["per_step"].shape == (4, 4, 6) and out["step_mask"].shape == (4, 4)
    here = out["step_mask"].unsqueeze(-1).float()
    mean = (out["per_step"] * here).sum(1) / here.sum(1)
    torch.testing.assert_close(out["unclipped"], mean)
    torch.testing.assert_close(out["pred"], mean.clamp(0, 1))
    hyper = Params().train.system_params("ustc")
    target = torch.full((4, 6), 0.5)
    straddle = {
        "per_step": torch.tensor([0.3, 0.7])[None, :, None].expand(4, 2, 6),
        "step_mask": torch.ones(4, 2, dtype=torch.bool),
        "unclipped": target,
        "pred": target,
    }
    assert float(ustc_loss(model, straddle, target, hyper, 0)) == pytest.approx(0.04)
    concat = {"pred": target}
    assert float(ustc_loss(model, concat, target, hyper, 0)) == 0.0
    with pytest.raises(ValueError, match="eq10 with qam step"):
        build_model("ustc", DIMS, {m: m for m in DIMS}, qam="clip", form="eq10")


def test_ustc_weights_are_the_quality_scores_shares_of_all_steps():
    model, inputs = _model("ustc", {"qam": "clip"}), _inputs()
    with torch.no_grad():
        model.quality["audio"][-1].bias.fill_(20.0)  # every audio step scores far above the rest
    shares = model(inputs)["weights"]
    assert shares.shape == (4, 3)
    torch.testing.assert_close(shares.sum(1), torch.ones(4))
    assert (shares[:, list(DIMS).index("audio")] > 0.99).all()


@torch.no_grad()
def test_augsburg_reads_each_clips_last_valid_step_in_a_mixed_batch():
    model, inputs = _model("augsburg"), _inputs(lengths=(8, 5, 3, 1))
    together = model(inputs)["unclipped"]
    x, mask = inputs["audio"]
    for row, length in enumerate((8, 5, 3, 1)):
        alone = model({"audio": (x[row : row + 1, :length], mask[row : row + 1, :length])})[
            "unclipped"
        ]
        torch.testing.assert_close(together[row : row + 1], alone, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_augsburg_output_is_linear_and_its_prediction_clipped():
    model = _model("augsburg")
    model.out.bias.fill_(3.0)
    out = model(_inputs())
    assert (out["unclipped"] > 1).any() and (out["pred"] <= 1).all()
    torch.testing.assert_close(out["pred"], out["unclipped"].clamp(0, 1))


@torch.no_grad()
def test_mimicmetrics_zero_text_fallback_reads_a_missing_transcript_as_a_zero_frame():
    inputs = _inputs()
    x, mask = inputs["text"]
    none = inputs | {"text": (torch.zeros_like(x), torch.zeros_like(mask))}
    explicit = torch.zeros_like(mask)
    explicit[:, 0] = True  # one all-zero text frame, present
    zero_frame = inputs | {"text": (torch.zeros_like(x), explicit)}
    zeros = _model("mimicmetrics", {"missing_text": "zeros"})
    torch.testing.assert_close(zeros(none)["pred"], zeros(zero_frame)["pred"])
    assert (zeros(none)["weights"][:, list(DIMS).index("text")] > 0).all()
    masked = _model("mimicmetrics", {"missing_text": "mask"})
    assert not torch.allclose(masked(none)["pred"], masked(zero_frame)["pred"])
    assert (masked(none)["weights"][:, list(DIMS).index("text")] == 0).all()


def test_augsburgs_dense_layer_is_the_authors_2054_to_2054_when_the_recipe_says_so():
    wide = build_model(
        "augsburg", {"audio": 1027}, {"audio": "audio"}, hidden=1027, dense_hidden=2054
    )
    assert wide.dense[1].weight.shape == (2054, 2054) and wide.out.in_features == 2054
    ours = build_model("augsburg", {"audio": 1027}, {"audio": "audio"}, hidden=1027)
    assert ours.dense[1].weight.shape == (1027, 2054)


def test_a_model_saved_before_issue_26_is_rebuilt_as_it_was():
    """A fold.json written before ``qam``/``fusion_head`` existed names neither: the rebuilt
    model is the one that was trained (the params' values are passed explicitly to every new
    model: the paper's QAM by default; the authors' MimicMetrics head in its recipe)."""
    from mimicflow.config import Params
    from mimicflow.recipes import load_recipes

    hyper = Params().train
    assert build_model("ustc", DIMS, {m: m for m in DIMS}).qam == "clip"
    assert not build_model("mimicmetrics", DIMS, {m: m for m in DIMS}).code
    assert hyper.system_params("ustc").qam == "step"
    assert hyper.system_params("mimicmetrics").fusion_head == "ours"  # the project default
    recipe = load_recipes()["mimicmetrics"].params["train"]["mimicmetrics"]
    assert recipe["fusion_head"] == "code" and recipe["dropout_rescale"] is True
