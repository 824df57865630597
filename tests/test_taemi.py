"""TAEMI: padding and missing streams never read, learnable tokens in their place, modality
dropout only in training, and it learns."""

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


@torch.no_grad()
def test_padding_length_and_content_never_change_a_prediction():
    model, inputs = _model(), _inputs()
    longer = {
        n: (
            torch.cat([x, 77.0 + torch.randn(x.shape[0], 5, x.shape[2])], 1),
            torch.cat([mask, torch.zeros(mask.shape[0], 5, dtype=torch.bool)], 1),
        )
        for n, (x, mask) in inputs.items()
    }
    torch.testing.assert_close(model(inputs)["pred"], model(longer)["pred"])


@torch.no_grad()
@pytest.mark.heavy
def test_a_missing_stream_reads_its_learnable_token_never_the_values_under_its_mask():
    model, inputs = _model(), _inputs()
    for names in (["visual", "motion"], ["audio"], ["text"]):
        zeros = model(_without(inputs, names, [1], torch.zeros_like))["pred"]
        noise = model(_without(inputs, names, [1], lambda x: 50.0 * torch.randn_like(x)))["pred"]
        torch.testing.assert_close(zeros, noise)
        assert not torch.allclose(zeros[1], model(inputs)["pred"][1])  # the stream did matter
        kind = "text" if names == ["text"] else KINDS[names[0]]
        model.tokens[kind].data += 1.0  # the token is what the clip reads in its place
        moved = model(_without(inputs, names, [1], torch.zeros_like))["pred"]
        model.tokens[kind].data -= 1.0
        assert not torch.allclose(moved[1], zeros[1])
        torch.testing.assert_close(moved[[0, 2, 3]], zeros[[0, 2, 3]])  # the others' stay


@torch.no_grad()
def test_one_visual_input_missing_leaves_the_token_out_while_the_other_is_present():
    model, inputs = _model(), _inputs()
    zeros = model(_without(inputs, ["motion"], [1], torch.zeros_like))["pred"]
    model.tokens["visual"].data += 1.0
    torch.testing.assert_close(
        model(_without(inputs, ["motion"], [1], torch.zeros_like))["pred"], zeros
    )


@torch.no_grad()
def test_modality_dropout_replaces_the_streams_by_their_tokens_in_training_only():
    model, inputs = _model(dropout=0.0, modality_dropout=1.0), _inputs()
    evaluated = model(inputs)["pred"]
    tokens_only = model(
        _without(inputs, ["audio", "visual", "motion"], slice(None), torch.zeros_like)
    )["pred"]
    model.train()
    torch.testing.assert_close(model(inputs)["pred"], tokens_only)  # the text anchor is kept
    assert not torch.allclose(evaluated, tokens_only)
    # without a transcript a clip keeps one of its streams
    no_text = _without(inputs, ["text"], slice(None), torch.zeros_like)
    model.eval()
    all_tokens = model(
        _without(no_text, ["audio", "visual", "motion"], slice(None), torch.zeros_like)
    )["pred"]
    model.train()
    assert not torch.isclose(model(no_text)["pred"], all_tokens).all(1).any()


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
        loss = torch.nn.functional.mse_loss(model(inputs)["pred"], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
