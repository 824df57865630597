"""TAEMI as its code has it: the text vector queries a cross-attention per stream, linear
output, learnable tokens for missing or dropped inputs (the text too), and it learns."""

from __future__ import annotations

import pytest
import torch

from mimicflow.fusion.systems import build_model

DIMS = {"audio": 12, "visual": 6, "text": 10, "motion": 4}
KINDS = {"audio": "audio", "visual": "visual", "text": "text", "motion": "visual"}


def _inputs(batch=4, frames=8, lengths=(8, 5, 3, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, dim in DIMS.items():
        x = torch.randn(batch, frames, dim, generator=gen)
        mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
        inputs[name] = (x * mask.unsqueeze(-1), mask)
    return inputs


def _model(**hyper):
    torch.manual_seed(0)
    return build_model("taemi", DIMS, KINDS, **hyper).eval()


def _without(inputs, names, clips, fill):
    """``inputs`` with inputs ``names`` missing (all-False mask) for ``clips``, ``fill`` beneath."""
    out = dict(inputs)
    for name in names:
        x, mask = inputs[name]
        x, mask = x.clone(), mask.clone()
        mask[clips] = False
        x[clips] = fill(x[clips])
        out[name] = (x, mask)
    return out


def test_the_authors_widths_text_query_and_linear_output():
    model = build_model(
        "taemi",
        {"text": 768, "audio": 1027, "visual": 768},
        {"text": "text", "audio": "audio", "visual": "visual"},
    )
    assert model.pred_head[0].in_features == 1792 and model.pred_head[0].out_features == 512
    attend = model.attend["audio"]
    assert (attend.q_proj.in_features, attend.k_proj.in_features, attend.heads) == (768, 1027, 4)
    assert model.linear_output
    with torch.no_grad():  # no sigmoid: a bias of 2 is read as it is, the prediction clipped
        model.pred_head[-1].weight.zero_()
        model.pred_head[-1].bias.fill_(2.0)
    inputs = {
        n: (torch.randn(2, 5, d), torch.ones(2, 5, dtype=torch.bool))
        for n, d in {"text": 768, "audio": 1027, "visual": 768}.items()
    }
    out = model.eval()(inputs)
    torch.testing.assert_close(out["unclipped"], torch.full((2, 6), 2.0))
    torch.testing.assert_close(out["pred"], torch.ones(2, 6))


@torch.no_grad()
def test_padding_and_frame_order_never_change_a_prediction():
    model, inputs = _model(), _inputs()
    longer = {
        n: (
            torch.cat([x, 77.0 + torch.randn(x.shape[0], 5, x.shape[2])], 1),
            torch.cat([mask, torch.zeros(mask.shape[0], 5, dtype=torch.bool)], 1),
        )
        for n, (x, mask) in inputs.items()
    }
    torch.testing.assert_close(model(inputs)["pred"], model(longer)["pred"])
    x, mask = inputs["audio"]
    shuffled = dict(inputs, audio=(x.flip(1), mask.flip(1)))
    torch.testing.assert_close(model(inputs)["pred"], model(shuffled)["pred"])  # no positions


@torch.no_grad()
@pytest.mark.heavy
def test_a_missing_input_reads_its_learnable_token_never_the_values_under_its_mask():
    model, inputs = _model(), _inputs()
    for name in DIMS:
        zeros = model(_without(inputs, [name], [1], torch.zeros_like))["pred"]
        noise = model(_without(inputs, [name], [1], lambda x: 50.0 * torch.randn_like(x)))["pred"]
        torch.testing.assert_close(zeros, noise)
        assert not torch.allclose(zeros[1], model(inputs)["pred"][1])  # the input did matter
        model.missing[name].data += 1.0  # the token is what the clip reads in its place
        moved = model(_without(inputs, [name], [1], torch.zeros_like))["pred"]
        model.missing[name].data -= 1.0
        assert not torch.allclose(moved[1], zeros[1])
        torch.testing.assert_close(moved[[0, 2, 3]], zeros[[0, 2, 3]])  # the others' stay


@torch.no_grad()
def test_modality_dropout_drops_every_input_the_text_too_in_training_only():
    model, inputs = _model(modality_dropout=1.0), _inputs()
    model.pred_head[2].p = 0.0
    for attend in model.attend.values():
        attend.drop.p = 0.0
    evaluated = model(inputs)["pred"]
    tokens_only = model(_without(inputs, list(DIMS), slice(None), torch.zeros_like))["pred"]
    model.train()
    torch.testing.assert_close(model(inputs)["pred"], tokens_only)  # nothing of the inputs
    assert not torch.allclose(evaluated, tokens_only)


def test_weights_are_the_present_inputs_shares():
    weights = _model()(_without(_inputs(), ["visual"], [1], torch.zeros_like))["weights"]
    assert weights.shape == (4, 4) and weights[1, list(DIMS).index("visual")] == 0
    torch.testing.assert_close(weights.sum(1), torch.ones(4))


@pytest.mark.heavy
def test_it_learns_a_toy_batch():
    model, inputs = _model(), _inputs(batch=16, lengths=tuple(range(1, 9)) * 2)
    target = torch.sigmoid(inputs["text"][0].sum(1)[:, :6] + inputs["audio"][0].mean(1)[:, :6])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model(inputs)["unclipped"], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
