"""CUDA gives the CPU's results (within float16/bf16 tolerance): `pytest -m gpu` on a GPU machine.
Skipped where there is no CUDA device; CI never runs them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers.tiny_hf import tiny_audio_model, tiny_image_model, tiny_text_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]  # fmt: skip


def _close(cpu: list[np.ndarray], cuda: list[np.ndarray], tolerance: float) -> None:
    assert [a.shape for a in cpu] == [b.shape for b in cuda]
    for a, b in zip(cpu, cuda):
        scale = float(np.abs(a).max()) or 1.0
        assert float(np.abs(a - b).max()) <= tolerance * scale, (np.abs(a - b).max(), scale)


def test_text_features_on_cuda_match_the_cpu(tmp_path):
    from mimicflow.perception.encoders import HFTextEncoder

    model = tiny_text_model(tmp_path / "bert")
    texts = ["i am so happy.", "this is awful!", "", "wow, funny. so exciting."]
    cpu = HFTextEncoder(model, layers=(1, 2), pooling="sentences", device="cpu").encode(texts)
    cuda = HFTextEncoder(model, layers=(1, 2), pooling="sentences", device="cuda").encode(texts)
    _close(cpu, cuda, 2e-2)


def test_audio_and_visual_features_on_cuda_match_the_cpu(tmp_path):
    from mimicflow.perception.encoders import HFAudioEncoder, HFVisualEncoder

    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (16000, 40000, 520000)]
    audio = tiny_audio_model(tmp_path / "w2v")
    _close(HFAudioEncoder(audio, device="cpu").encode(clips),
           HFAudioEncoder(audio, device="cuda").encode(clips), 2e-2)  # fmt: skip
    crops = [[rng.integers(0, 255, (32, 32, 3), np.uint8) for _ in range(k)] for k in (3, 0, 5)]
    image = tiny_image_model(tmp_path / "vit")
    _close(HFVisualEncoder(image, pooling="mean", device="cpu").encode(crops),
           HFVisualEncoder(image, pooling="mean", device="cuda").encode(crops), 2e-2)  # fmt: skip
