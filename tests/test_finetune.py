"""End-to-end encoder fine-tuning (Augsburg) on CPU with tiny models: it learns what the frozen
encoder's features hide, trains only the upper layers, and the saved folder serves, through
the feature set's encoder, the features the head was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mimicflow.clip.encoders import AudioEncoder
from mimicflow.clip.settings import EncoderSettings, Runtime
from mimicflow.config import FinetuneParams
from mimicflow.perception.asr import ALIGNED_WHISPER
from mimicflow.perception.audio import SAMPLE_RATE
from mimicflow.training.adaptation import AdaptData
from mimicflow.training.finetune import finetune, finetune_encoder, frames, save_encoder

from .helpers.tiny_hf import tiny_audio_model, tiny_emotion_model, whisper_state


def _tones(n: int, n_train: int, seconds: float = 0.5) -> AdaptData:
    """Pure tones whose six intensities follow their frequency."""
    rng = np.random.default_rng(0)
    freq = rng.uniform(200, 3000, n)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in freq]
    x = (freq - 200) / 2800
    labels = np.stack([x, 1 - x, x, 1 - x, x**2, 0.5 * x], 1).astype(np.float32)
    train = np.arange(n) < n_train
    return AdaptData(
        [f"c{i}" for i in range(n)],
        labels,
        train,
        ~train,
        lambda i: audio[i],
        lambda i: [],
        lambda i: "",
    )


def _squashed_model(folder: Path) -> Path:
    """A tiny wav2vec2 (seeded) whose final layer norm zeroes all but one of its 32 channels:
    the frozen features show the tone through one random channel; fine-tuning the top (the
    layer norm trains with it) can open the others."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    net = Wav2Vec2Model.from_pretrained(tiny_audio_model(folder))
    with torch.no_grad():
        net.encoder.layer_norm.weight[1:] = 0.0
    net.save_pretrained(folder)
    return folder


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import Wav2Vec2Model

    return Wav2Vec2Model.from_pretrained(folder).state_dict()


def _spec(model: Path, **extra) -> FinetuneParams:
    settings = {"lr": 1e-2, "head_lr": 1e-2, "epochs": 15, "batch_size": 8, "hidden": 16} | extra
    return FinetuneParams(model=str(model), **settings)


@pytest.mark.heavy
def test_finetuning_beats_the_frozen_encoder_and_trains_only_the_upper_layers(tmp_path):
    model = _squashed_model(tmp_path / "w2v")
    data = _tones(48, 32)
    frozen = finetune_encoder(
        _spec(model, train_layers=0), data, tmp_path / "frozen", progress=False
    )
    tuned = finetune_encoder(_spec(model, train_layers=1), data, tmp_path / "tuned", progress=False)
    assert frozen["trained_parameters"] == 0 < tuned["trained_parameters"]
    assert tuned["best_valid_pearson"] > frozen["best_valid_pearson"] + 0.2
    assert (
        len(tuned["epochs"]) == 15
        and tuned["epochs"][tuned["best_epoch"] - 1]["valid_pearson"] == tuned["best_valid_pearson"]
    )

    before, after = _weights(model), _weights(tmp_path / "tuned")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(
        n.startswith(("encoder.layers.1.", "encoder.layer_norm.")) for n in changed
    )
    assert any(n.startswith("encoder.layers.1.") for n in changed)
    assert tuned["trained_parameters"] == sum(
        v.numel()
        for n, v in before.items()
        if n.startswith(("encoder.layers.1.", "encoder.layer_norm."))
    )
    assert (
        json.loads((tmp_path / "tuned" / "adapted.json").read_text())["version"] == tuned["version"]
    )
    untouched = _weights(tmp_path / "frozen")
    assert all(torch.equal(before[n], untouched[n]) for n in before)


@pytest.mark.heavy
def test_gradients_are_clipped_by_value_as_the_authors_do(tmp_path, monkeypatch):
    calls = {"value": [], "norm": []}
    value, norm = torch.nn.utils.clip_grad_value_, torch.nn.utils.clip_grad_norm_

    def spy(kind, clip):
        def clipped(parameters, bound, *args, **kwargs):
            calls[kind].append(bound)
            return clip(parameters, bound, *args, **kwargs)

        return clipped

    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", spy("value", value))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy("norm", norm))
    model, data = tiny_audio_model(tmp_path / "w2v"), _tones(12, 8)
    finetune(_spec(model, train_layers=1, epochs=1), data)
    assert calls["value"] and set(calls["value"]) == {100.0} and not calls["norm"]
    finetune(_spec(model, train_layers=1, epochs=1, grad_clip_mode="norm"), data)
    assert calls["norm"]


@pytest.mark.heavy
def test_finetuning_is_deterministic_for_a_seed(tmp_path):
    model, data = tiny_audio_model(tmp_path / "w2v"), _tones(12, 8)
    spec = _spec(model, train_layers=1, epochs=2)
    assert finetune(spec, data)[1] == finetune(spec, data)[1]


def _served(folder: Path, clips: list[np.ndarray], head_outputs: bool = False) -> list[np.ndarray]:
    settings = EncoderSettings("audio", str(folder), (-1,), head_outputs=head_outputs)
    return [values for values, _ in AudioEncoder(settings, Runtime("cpu", 2)).encode(clips)]


def _trained_features(model, clips: list[np.ndarray]) -> list[np.ndarray]:
    with torch.inference_mode():
        x, mask = frames(model.encoder, clips)
    return [row[m].numpy() for row, m in zip(x, mask)]


def test_the_saved_audeering_model_serves_the_training_features_with_its_head(tmp_path):
    folder, original = tiny_emotion_model(tmp_path / "emotion")
    spec = _spec(folder, train_layers=1, epochs=2, head_outputs=True, gradient_checkpointing=True)
    model, _ = finetune(spec, _tones(12, 8))
    save_encoder(model.encoder, spec.model, tmp_path / "adapted")

    from mimicflow.perception.emotion_head import Wav2Vec2EmotionModel

    saved = Wav2Vec2EmotionModel.from_pretrained(tmp_path / "adapted").state_dict()
    assert not torch.equal(
        saved["classifier.dense.weight"], original.state_dict()["classifier.dense.weight"]
    )
    clips = [np.sin(np.arange(n) / 7).astype(np.float32) for n in (8000, 20000, 3000)]
    served = _served(tmp_path / "adapted", clips, head_outputs=True)
    assert served[0].shape[1] == 32 + 3
    for got, want in zip(served, _trained_features(model, clips)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def _tiny_whisper(folder: Path) -> Path:
    """A tiny random openai-whisper model saved as a model folder."""
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=16,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=64,
        n_text_ctx=8,
        n_text_state=16,
        n_text_head=2,
        n_text_layer=1,
    )
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    torch.save(
        {"dims": dims.__dict__, "model_state_dict": whisper_state(Whisper(dims))},
        folder / ALIGNED_WHISPER,
    )
    return folder


def test_a_finetuned_whisper_encoder_is_served_by_the_whisper_feature_path(tmp_path):
    pytest.importorskip("whisper")
    model_dir = _tiny_whisper(tmp_path / "whisper")
    spec = _spec(model_dir, train_layers=1, epochs=2, lr=1e-2)
    model, _ = finetune(spec, _tones(12, 8))
    save_encoder(model.encoder, spec.model, tmp_path / "adapted")

    before = torch.load(model_dir / ALIGNED_WHISPER, weights_only=True)["model_state_dict"]
    after = torch.load(tmp_path / "adapted" / ALIGNED_WHISPER, weights_only=True)[
        "model_state_dict"
    ]
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith(("encoder.blocks.1.", "encoder.ln_post.")) for n in changed)
    clips = [np.sin(np.arange(n) / 5).astype(np.float32) for n in (8000, 20000)]
    for got, want in zip(_served(tmp_path / "adapted", clips), _trained_features(model, clips)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_segment_means_pool_long_clips_and_keep_short_ones():
    import torch

    from mimicflow.training.finetune import segment_means

    x = torch.arange(2 * 8 * 1, dtype=torch.float32).reshape(2, 8, 1)
    mask = torch.tensor([[True] * 8, [True] * 3 + [False] * 5])
    pooled, kept = segment_means(x, mask, 4)
    assert pooled.shape == (2, 4, 1)
    assert pooled[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.5]  # pairs of the 8 frames
    assert pooled[1, :3, 0].tolist() == [8.0, 9.0, 10.0] and kept[1].tolist() == [True] * 3 + [
        False
    ]
