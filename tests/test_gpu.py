"""CUDA gives the CPU's results (within float16/bf16 tolerance): `pytest -m gpu` on a GPU machine.
Skipped where there is no CUDA device; CI never runs them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from .helpers.tiny_hf import tiny_audio_model, tiny_image_model, tiny_text_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _close(cpu: list[np.ndarray], cuda: list[np.ndarray], tolerance: float) -> None:
    assert [a.shape for a in cpu] == [b.shape for b in cuda]
    for a, b in zip(cpu, cuda):
        if not a.size:  # an empty text or a clip without crops: (0 × d) on both
            continue
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
    _close(
        HFAudioEncoder(audio, device="cpu").encode(clips),
        HFAudioEncoder(audio, device="cuda").encode(clips),
        2e-2,
    )
    crops = [[rng.integers(0, 255, (32, 32, 3), np.uint8) for _ in range(k)] for k in (3, 0, 5)]
    image = tiny_image_model(tmp_path / "vit")
    _close(
        HFVisualEncoder(image, pooling="mean", device="cpu").encode(crops),
        HFVisualEncoder(image, pooling="mean", device="cuda").encode(crops),
        2e-2,
    )


def _train_one_epoch(tmp_path, system: str, device: str, amp: bool):
    """One epoch (a fixed number of steps, seed 0; no epoch to pick) of ``system`` on a
    synthetic store: (validation predictions, weights)."""
    from mimicflow.config import TrainParams
    from mimicflow.features.synthetic import write_synthetic_store
    from mimicflow.fusion.systems import SYSTEMS
    from mimicflow.training.data import FeatureDataset
    from mimicflow.training.folds import assign_folds, fold_indices
    from mimicflow.training.trainer import FoldTrainer

    store = tmp_path / "store"
    if not (store / "manifest.parquet").exists():
        manifest = write_synthetic_store(store, 240, {"audio": 16, "visual": 8, "text": 12}, 3)
        manifest.to_parquet(store / "manifest.parquet")
    manifest = pd.read_parquet(store / "manifest.parquet")
    small = {"hidden": 32}
    params = TrainParams(
        epochs=1,
        patience=1,
        device=device,
        amp=amp,
        frames={"audio": 8, "visual": 4, "text": 4},
        fuxi=small | {"embed": 32},
        ustc=small,
        augsburg=small,
        abaw8=small | {"audio_hidden": 16, "visual_hidden": 16},
        taemi=small,
        mimicmetrics=small | {"pretrain_epochs": 1},
    )
    inputs = SYSTEMS[system].inputs({m: m for m in params.inputs})
    dataset = FeatureDataset(store, manifest, {m: params.frames[m] for m in inputs})
    train_idx, val_idx = fold_indices(assign_folds(manifest, "merged", 4, seed=0), 0)
    result = FoldTrainer(params, system, dataset, train_idx, val_idx, seed=0).fit()
    assert next(result.model.parameters()).device.type == device
    assert all(t.device.type == "cpu" for t in result.state.values())  # saved from the CPU
    return result.val_pred, {k: v.float().numpy() for k, v in result.state.items()}


# Tolerances (a priori, to be tightened from the first GPU run's figures, which
# scripts/gpu_check.sh prints): fp32 with TF32 off differs from the CPU by summation order only,
# so after one epoch each prediction is within 1e-3 and each weight tensor within 1 % (relative
# L2; Adam turns a sign flip of a near-zero gradient into a full ±lr step, so single weights are
# not compared). bf16 autocast (train.amp, the CUDA default) keeps 8 bits of mantissa: 0.05.
SYSTEM_NAMES = ["augsburg", "mimicmetrics", "fuxi", "ustc", "abaw8", "taemi"]


@pytest.mark.parametrize("system", SYSTEM_NAMES)
def test_one_epoch_on_cuda_gives_the_cpu_predictions_and_weights(tmp_path, system, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    cpu_pred, cpu_state = _train_one_epoch(tmp_path, system, "cpu", amp=False)
    cuda_pred, cuda_state = _train_one_epoch(tmp_path, system, "cuda", amp=False)
    np.testing.assert_allclose(cuda_pred, cpu_pred, atol=1e-3)
    assert cuda_state.keys() == cpu_state.keys()
    for name, weights in cpu_state.items():
        distance = np.linalg.norm(cuda_state[name] - weights)
        assert distance <= 1e-2 * max(np.linalg.norm(weights), 1e-6), (name, distance)


@pytest.mark.parametrize("system", SYSTEM_NAMES)
def test_one_epoch_in_bf16_on_cuda_stays_near_the_cpu_predictions(tmp_path, system):
    cpu_pred, _ = _train_one_epoch(tmp_path, system, "cpu", amp=False)
    cuda_pred, _ = _train_one_epoch(tmp_path, system, "cuda", amp=True)
    np.testing.assert_allclose(cuda_pred, cpu_pred, atol=5e-2)


@pytest.mark.parametrize("sampling", ["mean", "random"])
def test_batches_gathered_on_the_gpu_equal_the_host_batches(tmp_path, sampling):
    from mimicflow.features.synthetic import write_synthetic_store
    from mimicflow.training.data import FeatureDataset
    from mimicflow.training.trainer import DeviceBatches

    manifest = write_synthetic_store(tmp_path, 64, {"audio": 16, "visual": 8}, seed=3)
    dataset = FeatureDataset(tmp_path, manifest, {"audio": 8, "visual": 4})
    indices = np.arange(0, 64, 3)
    host = dataset.batch(indices, sampling, np.random.default_rng(1))
    inputs, _ = DeviceBatches(dataset, sampling, torch.device("cuda")).batch(
        indices, np.random.default_rng(1)
    )
    for name, (values, mask) in host.inputs.items():
        assert inputs[name][0].device.type == "cuda"
        np.testing.assert_array_equal(inputs[name][0].cpu().numpy(), values)
        np.testing.assert_array_equal(inputs[name][1].cpu().numpy(), mask)


def test_encoder_finetuning_on_cuda_matches_the_cpu(tmp_path):
    """End-to-end fine-tuning (adapt method finetune) on CUDA, bf16: the same learning curve's
    end as the CPU's, within tolerance, and the saved encoder serves on the CPU."""
    from mimicflow.config import FinetuneParams
    from mimicflow.training.finetune import finetune_encoder

    from .test_finetune import _squashed_model, _tones

    model = _squashed_model(tmp_path / "w2v")
    data = _tones(48, 32)
    spec = FinetuneParams(
        model=str(model), train_layers=1, lr=1e-2, head_lr=1e-2, epochs=10, batch_size=8, hidden=16
    )
    scores = {
        device: finetune_encoder(spec, data, tmp_path / device, device, progress=False)
        for device in ("cpu", "cuda")
    }
    assert abs(scores["cuda"]["best_valid_pearson"] - scores["cpu"]["best_valid_pearson"]) < 0.15, (
        scores
    )


def test_stage_one_alignment_on_cuda_learns_as_on_the_cpu(tmp_path):
    """USTC's Stage I (adapt method align) on CUDA: aligned crops retrieve their prompt above
    chance, and as often as on the CPU."""
    from mimicflow.training.alignment import align_encoder

    from .test_alignment import PROMPT_WORDS, _spec, _toy

    models = {
        "image": str(tiny_image_model(tmp_path / "image")),
        "text": str(tiny_text_model(tmp_path / "text", PROMPT_WORDS)),
    }
    data = _toy()
    metrics = {
        device: align_encoder(_spec(models), data, tmp_path / device, device, progress=False)
        for device in ("cpu", "cuda")
    }
    for device, figures in metrics.items():
        assert figures["valid_top1"] > figures["valid_chance"], (device, figures["valid_top1"])
    # the same seed and steps: the same retrieval within 0.15 (a priori: bf16 on the towers)
    assert abs(metrics["cuda"]["valid_top1"] - metrics["cpu"]["valid_top1"]) <= 0.15, metrics


def test_the_embedded_whisper_audio_encoder_on_cuda_matches_the_cpu(models_dir):
    """The default audio feature set's encoder (Whisper tiny.en, the package's weights) on CUDA:
    every frame within 2 % of the CPU's (a priori, as the transformers encoders above)."""
    from mimicflow.config import Params
    from mimicflow.models.catalogue import catalogue, resolve
    from mimicflow.perception.encoders import WhisperAudioEncoder

    model = resolve(Params().features.sets["audio"].model, models_dir, catalogue())
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (16000, 56000, 200000)]
    _close(
        WhisperAudioEncoder(model, device="cpu").encode(clips),
        WhisperAudioEncoder(model, device="cuda").encode(clips),
        2e-2,
    )


def test_faster_whisper_in_float16_on_cuda_transcribes_as_int8_on_the_cpu(models_dir, synth_root):
    """The ASR stage's CUDA default (faster-whisper, float16) against its CPU default (int8) on
    the demo's spoken clips: each transcript within a word error rate of 0.25 of the CPU's
    (a priori: the two quantisations may pick a different word now and then), and as close to
    the spoken text as the CPU's test asks (median < 0.4)."""
    from mimicflow.config import Params
    from mimicflow.models.catalogue import catalogue, resolve
    from mimicflow.perception.asr import FasterWhisperASR
    from mimicflow.perception.audio import decode_audio

    from .test_asr import word_error_rate

    model = resolve(Params().asr.model, models_dir, catalogue())
    cpu = FasterWhisperASR(model, device="cpu", compute_type="int8", threads=2)
    cuda = FasterWhisperASR(model, device="cuda", compute_type="float16")
    truth = pd.read_csv(synth_root / "synth_truth.csv", dtype=str, keep_default_na=False)
    apart, errors = [], []
    for row in truth[truth["text"] != ""].head(4).itertuples():
        audio = decode_audio(synth_root / "raw" / f"{row.clip_id}.mp4")
        on_cpu, on_cuda = cpu.transcribe(audio).text, cuda.transcribe(audio).text
        apart.append(word_error_rate(on_cpu, on_cuda))
        errors.append(word_error_rate(row.text, on_cuda))
    assert max(apart) <= 0.25, apart
    assert np.median(errors) < 0.4, errors


def test_predict_on_cuda_gives_the_cpu_answers(ensemble_dir, synth_root):
    """`mimicflow predict`'s path (clip chain → ensemble) with the chain on CUDA against the
    same ensemble with the chain on the CPU, on three demo clips: each intensity within 0.03
    (a priori: float16 ASR may change a word of the transcript, the encoders differ by < 2 %)."""
    from dataclasses import replace

    from mimicflow.inference import Limits, predict_clips
    from mimicflow.training.ensemble import load_ensemble

    clips = sorted((synth_root / "raw").glob("*.mp4"))[:3]
    answers = {}
    for device in ("cpu", "cuda"):
        loaded = load_ensemble(ensemble_dir)
        chain = loaded.params.model_copy(
            update={
                "asr": loaded.params.asr.model_copy(update={"device": device}),
                "features": loaded.params.features.model_copy(update={"device": device}),
            }
        )
        loaded = replace(loaded, params=chain)
        answers[device] = predict_clips(loaded, clips, Limits.from_params(chain))
    for cpu, cuda in zip(answers["cpu"], answers["cuda"]):
        assert "error" not in cpu and "error" not in cuda, (cpu, cuda)
        gaps = [abs(cpu["intensities"][e] - cuda["intensities"][e]) for e in cpu["intensities"]]
        assert max(gaps) <= 0.03, (cpu["file"], gaps)
