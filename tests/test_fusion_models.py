"""The four systems' modules: shapes, masks (padding and missing modalities never leak in)."""

from __future__ import annotations

import pytest
import torch

from mimicflow.fusion.models import SYSTEMS, build_model, fit_input_scaling

DIMS = {"audio": 12, "visual": 6, "text": 10}
# Every system with its defaults, and mimicmetrics with one attention query per emotion.
VARIANTS = [pytest.param(s, {}, id=s) for s in SYSTEMS] + [
    pytest.param("mimicmetrics", {"queries": 6}, id="mimicmetrics-6-queries")]


def _inputs(batch=4, frames=8, lengths=(8, 5, 3, 8)):
    gen = torch.Generator().manual_seed(0)
    inputs = {}
    for modality, dim in DIMS.items():
        x = torch.randn(batch, frames, dim, generator=gen)
        mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
        inputs[modality] = (x * mask.unsqueeze(-1), mask)
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
def test_a_missing_modality_is_left_out_not_read_as_zeros(system, hyper):
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


def test_modality_dropout_always_keeps_one_modality():
    model = _model("mimicmetrics")
    here = torch.ones(2000, 3, dtype=torch.bool)
    here[:1000, 0] = False
    kept = here & model._keep(here)
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
    moved = {m: ((x * scale[m] + 7.0) * mask.unsqueeze(-1), mask) for m, (x, mask) in inputs.items()}

    def fitted(data):
        model = _model(system, hyper)
        fit_input_scaling(model, {m: (x[mask].mean(0), x[mask].std(0)) for m, (x, mask) in data.items()
                                  if m in model.scalers})  # fmt: skip
        return model(data)["pred"]

    torch.testing.assert_close(fitted(inputs), fitted(moved), atol=1e-4, rtol=1e-4)
