"""The papers' encoder classes, with tiny models the tests build and load by path: audEERING's
dimensional model (wav2vec2 + VAD regression head), MAE, multi-layer text, DINOv2, the 12 s
audio cut; and the one-line failures for models that need their own code or are not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from mimicflow.clip.encoders import AudioEncoder, TextEncoder
from mimicflow.clip.settings import EncoderSettings, Runtime
from mimicflow.config import FeatureSetParams, Params
from mimicflow.perception.audio import SAMPLE_RATE
from mimicflow.perception.encoders import (
    HFAudioEncoder,
    HFTextEncoder,
    HFVisualEncoder,
    ModelUnavailable,
    batch_first,
)
from mimicflow.perception.miniature import chatglm3_model

from .helpers.tiny_hf import (
    tiny_audio_model,
    tiny_dinov2_model,
    tiny_emotion_model,
    tiny_image_model,
    tiny_mae_model,
    tiny_text_model,
)

RNG = np.random.default_rng(3)
VAD_MODEL = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"


def _noise(seconds: float) -> np.ndarray:
    return (0.1 * RNG.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def _crops(*counts: int, size=(48, 40)) -> list[list[np.ndarray]]:
    return [[RNG.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(n)] for n in counts]


# --- audEERING's dimensional model: wav2vec2 ⊕ its regression head per frame -------------------


def test_vad_head_outputs_follow_the_hidden_states(tmp_path):
    folder, saved = tiny_emotion_model(tmp_path / "vad")
    encoder = HFAudioEncoder(folder, layers=-1, head_outputs=True, device="cpu")
    assert encoder.info.dim == 32 + 3
    for name, weight in saved.classifier.state_dict().items():  # the checkpoint's head, not random
        assert torch.equal(encoder.model.classifier.state_dict()[name], weight)

    clip = _noise(1.0)
    out = encoder.encode([clip])[0]
    plain = HFAudioEncoder(folder, layers=-1, device="cpu")  # the same checkpoint, no head
    np.testing.assert_allclose(out[:, :32], plain.encode([clip])[0], atol=1e-5)

    values = encoder.extractor(clip, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_values"]
    with torch.inference_mode():
        final = plain.model(values).last_hidden_state[0]
        head = saved.classifier
        vad = torch.tanh(final @ head.dense.weight.T + head.dense.bias) @ head.out_proj.weight.T
        vad = vad + head.out_proj.bias
    assert out.shape == (len(final), 35)
    np.testing.assert_allclose(out[:, 32:], vad.numpy(), atol=1e-5)


def test_a_checkpoint_without_the_head_fails_clearly(tmp_path):
    with pytest.raises(ModelUnavailable, match=r"no regression head \(classifier\.dense\.bias"):
        HFAudioEncoder(tiny_audio_model(tmp_path / "w2v"), head_outputs=True, device="cpu")
    with pytest.raises(
        ModelUnavailable, match=r"is a vit model: features\.sets\.<name>\.head_outputs"
    ):
        HFAudioEncoder(tiny_image_model(tmp_path / "vit"), head_outputs=True, device="cpu")


def test_head_outputs_need_a_transformers_model():
    settings = EncoderSettings("audio", "whisper-tiny.en.pt", head_outputs=True)
    with pytest.raises(
        ModelUnavailable, match=r"is a Whisper model: features\.sets\.<name>\.head_outputs"
    ):
        AudioEncoder(settings, Runtime("cpu", 1)).encode([_noise(1.0)])


# --- MAE: no masking, identity patch order --------------------------------------------------------


def test_mae_features_are_deterministic_and_see_every_patch(tmp_path):
    folder = tiny_mae_model(tmp_path / "mae")
    encoder = HFVisualEncoder(folder, pooling="mean", device="cpu", batch_size=8)
    assert encoder.model.config.mask_ratio == 0.0
    crops = _crops(3, 2)
    first, second = encoder.encode(crops), encoder.encode(crops)
    assert [f.shape for f in first] == [(3, 32), (2, 32)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    alone = encoder.encode([[crops[1][0]]])[0]
    np.testing.assert_allclose(alone[0], first[1][0], atol=1e-5)

    from transformers import ViTMAEModel

    pixels = encoder.processor(images=crops[0][:1], return_tensors="pt")["pixel_values"]
    as_saved = ViTMAEModel.from_pretrained(folder).eval()  # masks 75 % of patches at random
    unmasked = ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    with torch.inference_mode():
        masked = [as_saved(pixels, output_hidden_states=True).hidden_states[-1] for _ in range(2)]
        every_patch = unmasked(pixels).last_hidden_state  # patches in random order
    assert masked[0].shape[1] == 1 + 4 and not torch.allclose(masked[0], masked[1])
    assert every_patch.shape[1] == 1 + 16
    np.testing.assert_allclose(first[0][0], every_patch[0].mean(0).numpy(), atol=1e-5)


# --- multi-layer text: concatenation in the order given, or the mean ---------------------------


def test_text_layers_concatenate_in_the_order_given(tmp_path):
    folder = str(tiny_text_model(tmp_path / "bert"))
    texts = ["i am so happy !", "this is awful ."]

    def tokens(layers, merge="concat"):
        spec = FeatureSetParams(modality="text", layers=layers, layer_merge=merge)
        settings = EncoderSettings("text", folder, spec.layer_ids, merge, pooling="tokens")
        return TextEncoder(settings, Runtime("cpu", 2)).encode(texts)

    layer2, layer1 = tokens(2), tokens(1)
    for (concat, _), (mean, _), (two, _), (one, _) in zip(
        tokens([2, 1]), tokens([2, 1], "mean"), layer2, layer1
    ):
        assert concat.shape == (len(two), 64) and mean.shape == (len(two), 32)
        np.testing.assert_allclose(concat[:, :32], two, atol=1e-6)  # first layer 2, then layer 1
        np.testing.assert_allclose(concat[:, 32:], one, atol=1e-6)
        np.testing.assert_allclose(mean, (one + two) / 2, atol=1e-6)
        assert not np.allclose(one, two)


# --- DINOv2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layers", "width"), [(-1, 32), ((1, 2), 64)])
def test_dinov2_cls_and_mean_pooling(tmp_path, layers, width):
    folder = tiny_dinov2_model(tmp_path / "dino")
    crops = _crops(3, 0, 1, size=(64, 50))  # resized and centre-cropped by DINOv2's processor
    cls = HFVisualEncoder(folder, layers=layers, pooling="cls", device="cpu").encode(crops)
    mean = HFVisualEncoder(folder, layers=layers, pooling="mean", device="cpu").encode(crops)
    assert [c.shape for c in cls] == [m.shape for m in mean] == [(3, width), (0, width), (1, width)]
    assert not np.allclose(cls[0], mean[0])


# --- the 12 s audio cut ---------------------------------------------------------------------------


def test_audio_cut_keeps_the_first_seconds(tmp_path):
    folder = str(tiny_audio_model(tmp_path / "w2v"))
    runtime = Runtime("cpu", 2)
    cut = AudioEncoder(EncoderSettings("audio", folder, audio_cut_s=12.0), runtime)
    whole = AudioEncoder(EncoderSettings("audio", folder), runtime)
    long, short = _noise(20.0), _noise(5.0)
    (values, mask), (short_values, _) = cut.encode([long, short])
    first_12s, _ = whole.encode([long[: 12 * SAMPLE_RATE]])[0]
    assert len(values) == len(first_12s) and abs(len(values) - 12 * 50) <= 1 and mask.all()
    np.testing.assert_allclose(values, first_12s, atol=1e-5)
    assert len(whole.encode([long])[0][0]) > len(values) + 350
    np.testing.assert_allclose(short_values, whole.encode([short])[0][0], atol=1e-5)
    assert cut.meta()["audio_cut_s"] == 12.0


# --- models with their own code; models that are not here ---------------------------------------


CUSTOM_CONFIG = """
from transformers import BertConfig


class TinyGLMConfig(BertConfig):
    model_type = "tinyglm"
"""
CUSTOM_MODEL = """
from transformers import BertModel

from .configuration_tinyglm import TinyGLMConfig


class TinyGLMModel(BertModel):
    config_class = TinyGLMConfig
"""


def _custom_code_model(folder):
    """A tiny BERT whose config and model classes live in the model folder (as ChatGLM3's do)."""
    tiny_text_model(folder)
    (folder / "configuration_tinyglm.py").write_text(CUSTOM_CONFIG)
    (folder / "modeling_tinyglm.py").write_text(CUSTOM_MODEL)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "tinyglm"
    config["auto_map"] = {
        "AutoConfig": "configuration_tinyglm.TinyGLMConfig",
        "AutoModel": "modeling_tinyglm.TinyGLMModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_custom_code_needs_trust_remote_code(tmp_path):
    folder = _custom_code_model(tmp_path / "tinyglm")
    with pytest.raises(ModelUnavailable) as error:
        HFTextEncoder(folder, device="cpu")
    assert "runs code from its model repository" in str(error.value)
    named = str(error.value.for_set("fuxi_text"))
    assert "features.sets.fuxi_text.trust_remote_code: true" in named
    trusted = HFTextEncoder(folder, device="cpu", trust_remote_code=True)
    assert type(trusted.model).__name__ == "TinyGLMModel"
    assert trusted.encode(["i am so happy !"])[0].shape == (1, 32)


# --- ChatGLM3's contract: no last_hidden_state, [s, b, h] states, left padding ----------------


def test_chatglm3_text_features_are_the_real_tokens_batch_first(tmp_path):
    """Fuxi's text path on the ChatGLM3 stand-in: the layers come from ``hidden_states``, are
    turned batch-first, and the left-padded rows give each text's own tokens (as alone)."""
    folder = chatglm3_model(tmp_path / "chatglm3", layers=3)
    texts = ["i am so happy !", "wow .", "this is awful , so sad ."]

    def encoder(pooling):
        return HFTextEncoder(
            folder, layers=(1, 3), pooling=pooling, device="cpu", trust_remote_code=True
        )

    tokens = encoder("tokens")
    assert tokens.tokenizer.padding_side == "left" and tokens.info.dim == 64
    batch = tokens.encode(texts)
    ids = [tokens.tokenizer(t)["input_ids"] for t in texts]
    assert [b.shape for b in batch] == [(len(i), 64) for i in ids]
    with torch.inference_mode():
        out = tokens.model(torch.tensor([ids[1]]), output_hidden_states=True)
    assert not hasattr(out, "last_hidden_state") and out.hidden_states[0].shape[1] == 1
    direct = torch.cat([out.hidden_states[1][:, 0], out.hidden_states[3][:, 0]], -1)
    np.testing.assert_allclose(batch[1], direct.numpy(), atol=1e-5)
    for pooling in ("tokens", "cls", "mean"):
        together = encoder(pooling).encode(texts)
        for text, value in zip(texts, together):
            np.testing.assert_allclose(value, encoder(pooling).encode([text])[0], atol=1e-5)
    cls = encoder("cls")
    cls.normalize = False
    np.testing.assert_allclose(cls.encode(texts)[1][0], batch[1][0], atol=1e-5)


def test_sequence_first_states_are_recognised_by_their_shape():
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert batch_first(torch.zeros(5, 2, 3), mask, "bert").shape == (2, 5, 3)
    assert batch_first(torch.zeros(2, 5, 3), mask, "bert").shape == (2, 5, 3)
    square = torch.arange(12.0).reshape(2, 2, 3)
    assert torch.equal(batch_first(square, torch.ones(2, 2), "chatglm"), square.transpose(0, 1))


def test_a_model_that_is_not_here_names_what_to_do():
    with pytest.raises(ModelUnavailable) as error:
        HFTextEncoder("mimicflow-tests/no-such-model", device="cpu")
    message = str(error.value)
    assert "\n" not in message and "mimicflow-tests/no-such-model" in message
    assert "hf download mimicflow-tests/no-such-model" in message


def test_features_stage_names_a_model_that_is_not_here(validated, faulty_root, tmp_path):
    """The real CLI, offline, on the validated synthetic manifest: exit code 2, one line that
    names the model id and the feature set, no traceback."""
    _, validated_out = validated
    vad = {"modality": "audio", "model": VAD_MODEL, "head_outputs": True}
    params = Params.model_validate(
        {
            "data": {"root": str(faulty_root)},
            "validate": {"out": str(validated_out)},
            "faces": {"out": str(tmp_path / "faces")},
            "asr": {"out": str(tmp_path / "asr"), "audio_out": str(tmp_path / "audio")},
            "features": {
                "out": str(tmp_path / "features"),
                "device": "cpu",
                "sets": {**Params().features.sets, "vad": vad},
            },
        }
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mimicflow.cli",
            "stage",
            "features",
            "vad",
            "--params",
            str(params_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1, output
    assert VAD_MODEL in errors[0] and "features.sets.vad.model" in errors[0]
