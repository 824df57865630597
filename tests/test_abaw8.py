"""The ``abaw8`` system (Augsburg, ABAW8) and the pipeline options its recipe added: the first
transcript segment, gradient clipping by value, FFHQ-style face crops."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mimicflow.clip.folders import ArtefactFolders
from mimicflow.clip.settings import AsrSettings, EncoderSettings, FaceSettings
from mimicflow.clip.speech import transcript_text
from mimicflow.config import Params
from mimicflow.data.layout import ClipRef
from mimicflow.fusion.abaw8 import Abaw8Params
from mimicflow.fusion.systems import build_model
from mimicflow.perception.faces import align_face, ffhq_square
from mimicflow.store import settings_hash
from mimicflow.training.trainer import clip_gradients

DIMS = {"voice": 12, "face": 6, "words": 10}
KINDS = {"voice": "audio", "face": "visual", "words": "text"}
LENGTHS = {"voice": (9, 4, 1, 6), "face": (3, 7, 9, 2), "words": (1, 1, 1, 1)}


def _model(**hyper):
    torch.manual_seed(0)
    return build_model("abaw8", DIMS, KINDS, **({"hidden": 16, "visual_hidden": 8} | hyper)).eval()


def _inputs(frames=9):
    gen = torch.Generator().manual_seed(1)
    inputs = {}
    for name, dim in DIMS.items():
        x = torch.randn(4, frames, dim, generator=gen)
        mask = torch.arange(frames)[None] < torch.tensor(LENGTHS[name])[:, None]
        inputs[name] = (x * mask.unsqueeze(-1), mask)
    return inputs


@torch.no_grad()
def test_each_clip_is_read_at_its_own_last_valid_step_in_a_mixed_batch():
    model, inputs = _model(), _inputs()
    together = model(inputs)["unclipped"]
    for row in range(4):
        alone = {
            name: (
                x[row : row + 1, : LENGTHS[name][row]],
                mask[row : row + 1, : LENGTHS[name][row]],
            )
            for name, (x, mask) in inputs.items()
        }
        torch.testing.assert_close(
            together[row : row + 1], model(alone)["unclipped"], atol=1e-6, rtol=1e-5
        )


@torch.no_grad()
def test_padding_content_never_changes_a_prediction():
    model, inputs = _model(), _inputs()
    noisy = {name: (x + 100.0 * (~mask).unsqueeze(-1), mask) for name, (x, mask) in inputs.items()}
    torch.testing.assert_close(model(inputs)["unclipped"], model(noisy)["unclipped"])


@torch.no_grad()
def test_branches_by_modality_and_the_codes_widths():
    model = build_model(
        "abaw8", {"a": 1027, "v": 1280, "t": 768}, {"a": "wav2vec2", "v": "vit", "t": "text"}
    )
    lstm = {name: branch.lstm for name, branch in model.branches.items() if hasattr(branch, "lstm")}
    assert (lstm["a"].input_size, lstm["a"].hidden_size, lstm["a"].num_layers) == (1027, 1027, 2)
    assert (lstm["v"].input_size, lstm["v"].hidden_size, lstm["v"].bidirectional) == (
        1280,
        768,
        False,
    )
    assert "t" not in lstm and model.head[1].in_features == 1027 + 768 + 768
    assert (model.head[1].out_features, model.head[-1].out_features) == (1027, 6)
    assert _model(audio_hidden=5).branches["voice"].lstm.hidden_size == 5


@torch.no_grad()
def test_a_missing_input_contributes_nothing_but_zeros():
    model, inputs = _model(), _inputs()
    x, mask = inputs["face"]
    missing = mask.clone()
    missing[2] = False
    garbage = x.clone()
    garbage[2] = 50.0
    a = model(inputs | {"face": (x, missing)})
    b = model(inputs | {"face": (garbage, missing)})
    torch.testing.assert_close(a["unclipped"], b["unclipped"])
    torch.testing.assert_close(a["weights"][2], torch.tensor([0.5, 0.0, 0.5]))


@torch.no_grad()
def test_the_output_is_linear_and_only_the_prediction_clipped():
    model = _model()
    model.head[-1].bias.fill_(3.0)
    out = model(_inputs())
    assert model.linear_output and (out["unclipped"] > 1).any() and (out["pred"] <= 1).all()
    torch.testing.assert_close(out["pred"], out["unclipped"].clamp(0, 1))


def test_the_recipe_defaults_are_the_codes():
    hyper = Abaw8Params()
    assert (hyper.hidden, hyper.audio_hidden, hyper.visual_hidden, hyper.lstm_layers) == (
        1027,
        None,
        768,
        2,
    )
    assert (hyper.lr, hyper.weight_decay, hyper.grad_clip, hyper.grad_clip_mode) == (
        1e-4,
        0.01,
        100.0,
        "value",
    )
    assert (hyper.schedule, hyper.warmup_epochs, hyper.min_lr, hyper.dropout) == (
        "cosine",
        1.0,
        0.0,
        0.0,
    )


def test_gradients_are_clipped_by_value_or_by_norm():
    layer = nn.Linear(3, 1, bias=False)
    grads = torch.tensor([[4.0, -0.5, -3.0]])
    layer.weight.grad = grads.clone()
    clip_gradients(layer, Abaw8Params(grad_clip=1.0))
    torch.testing.assert_close(layer.weight.grad, torch.tensor([[1.0, -0.5, -1.0]]))
    layer.weight.grad = grads.clone()
    clip_gradients(layer, Abaw8Params(grad_clip=1.0, grad_clip_mode="norm"))
    torch.testing.assert_close(layer.weight.grad, grads / grads.norm(), rtol=1e-4, atol=1e-6)


def _clip_with_transcript(tmp_path: Path, segments: list[str]):
    clip = ClipRef("00001", tmp_path / "00001.mp4", "ab" * 32)
    folders = ArtefactFolders(tmp_path / "faces", tmp_path / "transcripts", tmp_path / "audio")
    settings = AsrSettings("faster-whisper", "whisper-tiny.en", "int8", "en", 1)
    path = folders.transcript(clip, settings)
    path.parent.mkdir(parents=True)
    rows = [
        {
            "start": 2.0 * k,
            "end": 2.0 * k + 2,
            "text": f" {text}",
            "avg_logprob": -0.2,
            "no_speech_prob": 0.1,
            "words": [],
        }
        for k, text in enumerate(segments)
    ]
    path.write_text(json.dumps({"text": " ".join(segments), "segments": rows}))
    return clip, settings, folders


def test_the_first_segment_alone_or_the_whole_transcript(tmp_path):
    clip, settings, folders = _clip_with_transcript(tmp_path, ["I am so happy.", "Really, truly."])
    assert transcript_text(clip, settings, folders) == "I am so happy. Really, truly."
    assert transcript_text(clip, settings, folders, first_segment=True) == "I am so happy."
    silent, settings, folders = _clip_with_transcript(tmp_path / "silent", [])
    assert transcript_text(silent, settings, folders, first_segment=True) == ""


def _text_settings(models_dir, **overrides) -> EncoderSettings:
    """The text set's settings (its model's version read from the session's materialised
    models)."""
    params = Params.model_validate(
        {
            "models": {"dir": str(models_dir)},
            "features": {
                "sets": {"text": {"modality": "text", "model": "all-minilm-l6-v2", **overrides}}
            },
            "monitor": {"feature_sets": ["text"]},
            "train": {"inputs": ["text"]},
        }
    )
    return EncoderSettings.from_params(params, "text")


def test_the_transcript_option_enters_the_settings_key_and_the_default_keeps_old_keys(models_dir):
    full = _text_settings(models_dir)
    first = _text_settings(models_dir, transcript="first_segment")
    assert first.transcript == "first_segment" and first.key() != full.key()
    # options added after artefacts existed; a kind older than kind names is keyed without it
    later = {"transcript", "model_version", "projected", "kind"}
    before = {k: v for k, v in asdict(full).items() if k not in later}
    assert full.key() == settings_hash(before)


def test_face_alignment_enters_the_face_settings_key_and_the_default_keeps_old_keys():
    arcface = FaceSettings("blazeface", "d", "m", 6.0, 224, 0.5, False)
    ffhq = FaceSettings("blazeface", "d", "m", 6.0, 224, 0.5, False, "ffhq")
    fallback = FaceSettings("blazeface", "d", "m", 6.0, 224, 0.5, False, far_fallback=True)
    assert len({arcface.key(), ffhq.key(), fallback.key()}) == 3
    assert arcface.key() == settings_hash(
        {k: v for k, v in asdict(arcface).items() if k not in ("alignment", "far_fallback")}
    )


FACE = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 95.0], [75.0, 95.0]])  # upright


def test_the_ffhq_square_is_upright_for_an_upright_face_and_turns_with_it():
    square = ffhq_square(FACE)
    side = square[3] - square[0]  # top edge
    assert abs(side[1]) < 1e-9 and side[0] == pytest.approx(np.linalg.norm(square[1] - square[0]))
    assert side[0] == pytest.approx(
        2 * max(40.0 * 2.0, 45.0 * 1.8)
    )  # 2 × eye distance vs 1.8 × eye-mouth, each way
    assert square.mean(0) == pytest.approx([60.0, 50.0 + 0.1 * 45.0])
    angle = np.deg2rad(20)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    np.testing.assert_allclose(ffhq_square(FACE @ turn.T), square @ turn.T, atol=1e-9)


def test_an_ffhq_crop_puts_the_eyes_midpoint_on_the_vertical_centre_line():
    image = np.zeros((160, 160, 3), np.uint8)
    image[48:53, 58:63] = 255  # a mark between the eyes
    crop = align_face(image, FACE, 256, "ffhq")
    assert crop.shape == (256, 256, 3)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert xs.mean() == pytest.approx(128, abs=2)
    assert ys.mean() == pytest.approx(128 - 0.1 * 45.0 * 256 / 162.0, abs=2)  # 162 px square → 256
