"""Encoders: tiny random transformers models by path (the code path users run with hub ids),
and the real embedded defaults (Whisper tiny.en encoder, all-MiniLM-L6-v2)."""

from __future__ import annotations

import numpy as np
import pytest

from mimicflow.perception.audio import SAMPLE_RATE
from mimicflow.perception.encoders import (
    HFAudioEncoder,
    HFTextEncoder,
    HFVisualEncoder,
    WhisperAudioEncoder,
    split_sentences,
)

from .helpers.tiny_hf import tiny_audio_model, tiny_image_model, tiny_text_model

RNG = np.random.default_rng(0)


def _noise(seconds: float) -> np.ndarray:
    return (0.1 * RNG.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def test_any_transformers_speech_model_by_path(tmp_path):
    encoder = HFAudioEncoder(
        tiny_audio_model(tmp_path / "w2v"), layers=1, device="cpu", batch_size=2
    )
    assert encoder.info.rate_hz == pytest.approx(50.0)
    clips = [_noise(1.0), _noise(2.5), _noise(0.4)]
    out = encoder.encode(clips)
    assert [o.shape[1] for o in out] == [32, 32, 32]
    assert [abs(len(o) - 50 * len(c) / SAMPLE_RATE) <= 1 for o, c in zip(out, clips)] == [True] * 3
    alone = encoder.encode([clips[2]])[0]  # batching with longer clips must not change a clip
    np.testing.assert_allclose(alone, out[2], atol=1e-4)


def test_any_transformers_image_model_by_path(tmp_path):
    encoder = HFVisualEncoder(tiny_image_model(tmp_path / "vit"), layers=-1, device="cpu")
    crops = [
        [RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(n)] for n in (3, 0, 2)
    ]
    out = encoder.encode(crops)
    assert [o.shape for o in out] == [(3, 32), (0, 32), (2, 32)]


@pytest.mark.parametrize(("pooling", "layer"), [("mean", -1), ("cls", 1), ("tokens", 2)])
def test_any_transformers_text_model_by_path(tmp_path, pooling, layer):
    encoder = HFTextEncoder(
        tiny_text_model(tmp_path / "bert"), layers=layer, pooling=pooling, device="cpu"
    )
    out = encoder.encode(["i am so happy !", "", "this is awful ."])
    assert out[1].shape == (0, 32)  # an empty transcript is a missing input, not zeros
    if pooling == "tokens":
        assert out[0].shape == (7, 32)  # [CLS] 5 words [SEP]
    else:
        assert out[0].shape == (1, 32) and not np.allclose(out[0], out[2])


def test_sentence_pooling_gives_one_vector_per_sentence(tmp_path):
    encoder = HFTextEncoder(tiny_text_model(tmp_path / "bert"), pooling="sentences", device="cpu")
    out = encoder.encode(["Well. I am so happy! Is it?", "", "this is awful ."])
    assert [o.shape for o in out] == [(3, 32), (0, 32), (1, 32)]
    alone = encoder.encode(["I am so happy!"])[0]
    np.testing.assert_allclose(out[0][1], alone[0], atol=1e-5)  # context-free per sentence
    assert split_sentences("Okay.  Wow! Yes?no") == ["Okay.", "Wow!", "Yes?no"]


def test_whisper_encoder_hidden_states(models_dir):
    encoder = WhisperAudioEncoder(models_dir / "whisper-tiny.en", layers=-1, device="cpu")
    long_clip = _noise(31.0)  # two windows
    out = encoder.encode([_noise(2.0), long_clip])
    assert out[0].shape == (100, 384) and out[1].shape == (1550, 384)
    assert np.isfinite(out[1]).all()
    middle = WhisperAudioEncoder(models_dir / "whisper-tiny.en", layers=2, device="cpu")
    assert not np.allclose(middle.encode([long_clip[:32000]])[0], out[1][:100])


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_whisper_features_do_not_depend_on_the_batch(models_dir, batch_size):
    """A short clip batched with longer ones (and one of the same padded length) encodes as
    it does alone: nothing is padded to a neighbour."""
    encoder = WhisperAudioEncoder(
        models_dir / "whisper-tiny.en", layers=-1, device="cpu", batch_size=batch_size
    )
    short, same_second, longer = _noise(1.3), _noise(1.9), _noise(10.0)
    batched = encoder.encode([longer, short, same_second])
    alone = encoder.encode([short])[0]
    assert batched[1].shape == alone.shape == (65, 384)
    np.testing.assert_allclose(batched[1], alone, atol=1e-4)
    np.testing.assert_allclose(batched[2], encoder.encode([same_second])[0], atol=1e-4)


def test_minilm_embeds_meaning(models_dir):
    encoder = HFTextEncoder(models_dir / "all-minilm-l6-v2", device="cpu")
    happy, glad, hurt = (
        v[0]
        for v in encoder.encode(
            [
                "I am so full of joy, this is wonderful!",
                "This makes me really happy.",
                "Oh no, that must really hurt.",
            ]
        )
    )
    assert np.linalg.norm(happy) == pytest.approx(1.0, abs=1e-4)
    assert happy @ glad > happy @ hurt + 0.1
