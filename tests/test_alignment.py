"""USTC's Stage I (modality–text alignment) and the ``adapt`` stage, on tiny models built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mimicflow import EMOTIONS
from mimicflow.cli import app
from mimicflow.config import AlignParams, Params
from mimicflow.data.affectnet import affectnet_prompt, read_affectnet
from mimicflow.training.adaptation import AdaptData
from mimicflow.training.alignment import (
    NO_EMOTION,
    Aligner,
    align_encoder,
    clip_pairs,
    emi_prompt,
    evaluate,
    spread_weights,
)

from .helpers.tiny_hf import tiny_image_model, tiny_text_model, tiny_whisper

PROMPT_WORDS = (
    *tuple(w.lower() for e in EMOTIONS for w in e.split()),
    "intensity",
    "low",
    "medium",
    "high",
    "(",
    ")",
    ":",
    "no",
    "marked",
    "emotion",
    "every",
)
COLOURS = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30]], np.uint8)


def test_prompts_name_the_medium_and_high_emotions_strongest_first():
    labels = np.array([0.1, 0.9, 0.2, 0.3, 0.1, 0.5])
    assert emi_prompt(labels) == "Amusement (intensity: high), Joy (intensity: medium)"
    assert emi_prompt(np.full(6, 0.2)) == NO_EMOTION
    assert emi_prompt(labels, bins=(0.25, 0.95)).startswith("Amusement (intensity: medium), Joy")


def test_weights_grow_with_the_spread_of_a_clips_intensities_and_average_one():
    flat, peaked = np.full(6, 0.4), np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    weights = spread_weights(np.stack([flat, peaked, (flat + peaked) / 2]))
    assert weights[0] == pytest.approx(0.5) and weights[1] > weights[2] > weights[0]
    assert weights.mean() == pytest.approx(1.0)
    assert (spread_weights(np.stack([flat, flat])) == 1).all()


def _toy(n: int = 48, seed: int = 0) -> AdaptData:
    """Clips of four kinds: one emotion high (its prompt), face crops of the kind's colour and
    a tone of the kind's pitch, both noisy."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(n) % 4
    labels = np.full((n, 6), 0.1, np.float32)
    labels[np.arange(n), kinds] = 0.9

    def crops(i):
        noise = rng.integers(0, 40, (3, 32, 32, 3))
        return [np.clip(COLOURS[kinds[i]] + n_, 0, 255).astype(np.uint8) for n_ in noise]

    def audio(i):
        t = np.arange(16000) / 16000
        return (
            0.3 * np.sin(2 * np.pi * 200 * (kinds[i] + 1) * t) + 0.01 * rng.standard_normal(16000)
        ).astype(np.float32)

    valid = np.arange(n) >= n * 3 // 4
    return AdaptData([f"c{i}" for i in range(n)], labels, ~valid, valid, audio, crops, lambda i: "")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        "image": str(tiny_image_model(root / "image")),
        "text": str(tiny_text_model(root / "text", PROMPT_WORDS)),
        "whisper": str(tiny_whisper(root / "tiny-whisper.pt")),
    }


def _spec(models, modality="visual", **extra) -> AlignParams:
    model = models["image"] if modality == "visual" else models["whisper"]
    return AlignParams(
        method="align",
        modality=modality,
        model=model,
        text_model=models["text"],
        **{
            "dim": 16,
            "epochs": 12,
            "batch_size": 12,
            "lr": 1e-2,
            "min_lr": 1e-4,
            "restart_epochs": 6,
            "frames": 2,
        }
        | extra,
    )


@pytest.mark.heavy
def test_the_loss_falls_and_aligned_crops_retrieve_their_own_prompt(tiny_models, tmp_path):
    data = _toy()
    metrics = align_encoder(_spec(tiny_models), data, tmp_path / "visual", progress=False)
    losses = [row["train_loss"] for row in metrics["epochs"]]
    assert losses[-1] < 0.8 * losses[0]
    assert metrics["valid_chance"] == 0.25
    assert metrics["valid_top1"] > 0.5
    assert (
        metrics["version"]
        == json.loads((tmp_path / "visual" / "adapted.json").read_text())["version"]
    )
    # the folder is what a visual feature set loads: the aligned ViT and its image processor
    from mimicflow.perception.encoders import HFVisualEncoder

    encoder = HFVisualEncoder(tmp_path / "visual", device="cpu")
    assert encoder.encode([data.crops(0)])[0].shape == (3, 32)


def test_zero_epochs_saves_the_starting_encoder_the_run_without_stage_i(tiny_models, tmp_path):
    from mimicflow.perception.encoders import HFVisualEncoder

    data = _toy(16)
    metrics = align_encoder(_spec(tiny_models, epochs=0), data, tmp_path / "visual", progress=False)
    assert metrics["epochs"] == [] and metrics["valid_top1"] is not None
    crops = [data.crops(0), data.crops(1)]
    before = HFVisualEncoder(tiny_models["image"], device="cpu").encode(crops)
    after = HFVisualEncoder(tmp_path / "visual", device="cpu").encode(crops)
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_untrained_towers_retrieve_at_chance_level(tiny_models):
    """The test above can fail: before training, retrieval is no better than chance."""
    data = _toy()
    spec = _spec(tiny_models)
    before = evaluate(
        Aligner(spec, "cpu"),
        clip_pairs(spec, data, np.flatnonzero(data.valid), np.ones(len(data))),
        12,
    )
    assert before["top1"] <= 0.5


def test_an_aligned_whisper_is_a_folder_the_audio_set_loads(tiny_models, tmp_path):
    from mimicflow.clip.encoders import AudioEncoder
    from mimicflow.clip.settings import EncoderSettings, Runtime

    data = _toy(24)
    metrics = align_encoder(
        _spec(tiny_models, "audio", epochs=2, audio_cut_s=0.5),
        data,
        tmp_path / "audio",
        progress=False,
    )
    assert all(np.isfinite(row["train_loss"]) for row in metrics["epochs"])
    encoder = AudioEncoder(EncoderSettings("audio", str(tmp_path / "audio")), Runtime("cpu", 4))
    values, mask = encoder.encode([data.audio(0)])[0]
    assert values.shape == (50, 32) and mask.all()


def test_stage_ii_reads_stage_is_projected_space_when_the_set_says_so(tiny_models, tmp_path):
    """``projected: true``: each crop's features go through the projection Stage I trained, so
    a clip's mean feature is the aligner's (pre-normalisation) embedding of the clip; without
    it, the tower's raw states."""
    from types import SimpleNamespace

    import torch

    from mimicflow.clip.encoders import clip_encoder
    from mimicflow.clip.settings import EncoderSettings, Runtime
    from mimicflow.perception.encoders import PROJECTION_FILE
    from mimicflow.training.alignment import VisualTower

    data = _toy(16)
    folder = tmp_path / "visual"
    align_encoder(_spec(tiny_models, epochs=1), data, folder, progress=False)
    crops = data.crops(0)
    track = SimpleNamespace(crops=[c[..., ::-1] for c in crops], has_face=np.ones(3, bool))
    settings = EncoderSettings(
        "visual", str(folder), pooling="cls", kind="visual-transformers", projected=True
    )
    values, mask = clip_encoder(settings, Runtime("cpu", 4)).encode([track])[0]
    tower = VisualTower(str(folder), 0, "cpu")
    head = torch.nn.Linear(tower.dim, 16)
    head.load_state_dict(torch.load(folder / PROJECTION_FILE, weights_only=True))
    with torch.no_grad():
        expected = head(tower.embed([crops]))[0].numpy()
    assert values.shape == (3, 16) and mask.all()
    np.testing.assert_allclose(values.mean(0), expected, atol=1e-4)
    raw = EncoderSettings("visual", str(folder), pooling="cls", kind="visual-transformers")
    assert clip_encoder(raw, Runtime("cpu", 4)).encode([track])[0][0].shape == (3, tower.dim)
    assert raw.key() != settings.key()
    bare = EncoderSettings(
        "visual", tiny_models["image"], kind="visual-transformers", projected=True
    )
    with pytest.raises(FileNotFoundError, match="projected: true needs a Stage I folder"):
        clip_encoder(bare, Runtime("cpu", 4))


def test_stage_is_whisper_tower_embeds_what_the_audio_set_encodes(tiny_models, tmp_path):
    """The Whisper tower reads the feature set's per-second windows: a clip embeds the same
    alone or beside a longer one (no padding to a neighbour), and its embedding is the mean of
    the frames the audio feature set encodes from the saved folder."""
    import torch

    from mimicflow.perception.encoders import WhisperAudioEncoder
    from mimicflow.training.alignment import WhisperTower

    data = _toy(8)
    short, long = data.audio(0)[:12000], np.tile(data.audio(1), 3)
    tower = WhisperTower(tiny_models["whisper"], 0, "cpu")
    tower.net.eval()
    with torch.no_grad():
        alone = tower.embed([short])[0]
        beside = tower.embed([short, long])[0]
    torch.testing.assert_close(alone, beside, atol=1e-5, rtol=1e-5)
    tower.save(tmp_path / "audio")
    frames = WhisperAudioEncoder(tmp_path / "audio", device="cpu").encode([short])[0]
    np.testing.assert_allclose(frames.mean(0), alone.numpy(), atol=1e-4)


def test_affectnet_layout_gives_prompts_with_aus_only_where_annotated(tmp_path):
    import cv2

    (tmp_path / "images").mkdir()
    notes = tmp_path / "annotations"
    notes.mkdir()
    rows = {
        "0001": ("1", "0.83", "0.65"),
        "0002": ("6", "-0.5", "0.7"),
        "0003": ("9", "0", "0"),
        "0004": ("3", "0.1", "0.9"),
    }
    for name, (exp, val, aro) in rows.items():
        cv2.imwrite(str(tmp_path / "images" / f"{name}.jpg"), np.full((24, 24, 3), 90, np.uint8))
        if name != "0004":  # no annotations: skipped
            for kind, value in (("exp", exp), ("val", val), ("aro", aro)):
                np.save(notes / f"{name}_{kind}.npy", np.array(value))  # AffectNet: 0-d strings
    np.save(notes / "0001_au.npy", np.array([6, 12]))
    images = read_affectnet(tmp_path)
    assert [i.path.stem for i in images] == ["0001", "0002"]  # 0003: class 9 (uncertain)
    assert affectnet_prompt(images[0]) == (
        "Happy with AU6 (Cheek Raiser) and AU12 (Lip Corner Puller), Valence=0.83, Arousal=0.65"
    )
    assert affectnet_prompt(images[1]) == "Anger, Valence=-0.50, Arousal=0.70"
    assert images[0].read().shape == (24, 24, 3)
    with pytest.raises(FileNotFoundError, match="AffectNet"):
        read_affectnet(tmp_path / "images")


def test_stage_adapt_without_entries_writes_an_empty_folder_quickly(tmp_path):
    import yaml

    out = tmp_path / "adapted"
    (out / "old").mkdir(parents=True)  # an entry since removed
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"adapt": {"out": str(out)}}))
    result = CliRunner().invoke(app, ["stage", "adapt", "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert list(out.iterdir()) == [] and json.loads((tmp_path / "adapted.json").read_text()) == {}


def test_a_feature_set_naming_an_adapted_folder_needs_its_entry(tiny_models):
    sets = {"visual": {"modality": "visual", "model": "models/adapted/visual"}}
    raw = {
        "features": {"sets": sets},
        "train": {"inputs": ["visual"]},
        "monitor": {"feature_sets": ["visual"]},
    }
    with pytest.raises(ValueError, match=r"adapt\.encoders needs a visual entry 'visual'"):
        Params.model_validate(raw)
    entry = {"method": "align", "modality": "visual", "model": "vit-scratch"}
    assert Params.model_validate(raw | {"adapt": {"encoders": {"visual": entry}}})
    with pytest.raises(ValueError, match="visual encoder only"):
        AlignParams(method="align", modality="audio", model="x", external=Path("affectnet"))


def test_a_retrained_encoder_changes_its_features_key(tmp_path, models_dir):
    """(The visual chain's face mesh is read from the session's materialised models.)"""
    from mimicflow.clip.settings import EncoderSettings

    raw = {
        "models": {"dir": str(models_dir)},
        "adapt": {
            "out": str(tmp_path),
            "encoders": {
                "visual": {"method": "align", "modality": "visual", "model": "vit-scratch"}
            },
        },
        "features": {"sets": {"visual": {"modality": "visual", "model": str(tmp_path / "visual")}}},
        "train": {"inputs": ["visual"]},
        "monitor": {"feature_sets": ["visual"]},
    }
    params = Params.model_validate(raw)
    (tmp_path / "visual").mkdir()
    keys = []
    for version in ("a", "b"):
        (tmp_path / "visual" / "adapted.json").write_text(json.dumps({"version": version}))
        keys.append(EncoderSettings.from_params(params, "visual").key())
    assert keys[0] != keys[1]
