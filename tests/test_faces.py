"""Faces: time-based sampling, main-face tracking, backends (real weights and a tiny SCRFD)."""

from __future__ import annotations

import numpy as np
import pytest

from mimicflow.data.faults import FAULTS
from mimicflow.data.synth import face_rig
from mimicflow.media import write_video
from mimicflow.perception.detection import Detection
from mimicflow.perception.faces import (
    load_face_detector,
    load_face_track,
    process_clip,
    sample_frames,
    save_face_track,
    track_main_face,
)

from .helpers.tiny_scrfd import build_tiny_scrfd


def _still_clip(path, fps, seconds, image):
    frames = [image] * round(fps * seconds)
    write_video(path, frames, fps, (image.shape[1], image.shape[0]))
    return path


@pytest.mark.parametrize("source_fps", [25, 1000])
def test_sampling_is_by_time_not_by_frame(tmp_path, source_fps):
    image = np.full((64, 64, 3), 128, np.uint8)
    clip = _still_clip(tmp_path / "c.mp4", source_fps, 2.0, image)
    sampled = sample_frames(clip, fps=6)
    assert len(sampled.times) in (12, 13)
    assert np.allclose(np.diff(sampled.times), 1 / 6, atol=1 / source_fps + 1e-6)
    assert sampled.complete


def _det(x, size, score=0.9):
    box = np.array([x, 10, x + size, 10 + size], np.float32)
    return Detection(box, score, np.zeros((5, 2), np.float32))


def test_main_face_is_a_track_not_the_largest_box_per_frame():
    frames = [[_det(10, 40)] for _ in range(10)]
    frames[4].append(_det(100, 90))  # a bigger face for one frame (a passer-by)
    frames[7] = []  # a missed detection
    main = track_main_face(frames)
    assert main[4] == 0 and main[7] is None
    assert all(m == 0 for i, m in enumerate(main) if i != 7)


def test_insightface_backend_loads_through_model_zoo(tmp_path):
    onnx = build_tiny_scrfd(tmp_path / "det_tiny.onnx")
    detector = load_face_detector("insightface", {"detector": onnx}, threshold=0.5)
    image = np.zeros((480, 640, 3), np.uint8)
    image[192:288, 320:416] = 255  # the tiny model "detects" bright squares
    found = detector.detect(image)
    assert found
    best = max(found, key=lambda d: d.score)
    centre = (best.box[:2] + best.box[2:]) / 2
    assert 320 <= centre[0] <= 416 and 192 <= centre[1] <= 288
    assert best.landmarks.shape == (5, 2)
    assert not detector.detect(np.zeros((480, 640, 3), np.uint8))


@pytest.mark.parametrize("backend", ["blazeface", "centerface"])
def test_real_backends_on_an_animated_face(tmp_path, models_dir, backend):
    models = {"detector": models_dir / backend, "mesh": models_dir / "facemesh"}
    detector = load_face_detector(backend, models, threshold=0.5)
    face = face_rig.FaceAnimator(face_rig.identity_face(2), (256, 256))
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    frame = face.render(neutral, 0.0, 0.0, np.zeros(2))
    clip = _still_clip(tmp_path / "face.mp4", 25, 1.0, frame)
    track = process_clip(clip, detector, fps=6, crop_size=112)
    assert track.summary["face_rate"] == 1.0
    assert track.crops[0].shape == (112, 112, 3)
    eyes = track.landmarks[0, :2]
    assert eyes[0, 0] < eyes[1, 0]  # image-left eye first
    truth = face.landmarks[:2]
    assert np.abs(eyes - truth).max() < 0.25 * face.eye_distance
    has_mesh = not np.isnan(track.mesh[0].astype(np.float32)).any()
    assert has_mesh == (backend == "blazeface")
    assert 0.3 < track.quality[0] <= 1.0


def test_frames_without_a_face_are_flagged_not_dropped(tmp_path, models_dir):
    detector = load_face_detector(
        "blazeface", {"detector": models_dir / "blazeface", "mesh": models_dir / "facemesh"}, 0.5
    )
    scene = face_rig.no_face_scene()[:256, :256].copy()
    clip = _still_clip(tmp_path / "table.mp4", 25, 1.0, scene)
    track = process_clip(clip, detector, fps=6, crop_size=112)
    assert len(track.times) == 6 and not track.has_face.any()
    assert np.isnan(track.landmarks).all()


def test_face_track_round_trip(tmp_path, models_dir, synth_root):
    detector = load_face_detector(
        "centerface", {"detector": models_dir / "centerface", "mesh": None}, 0.5
    )
    track = process_clip(synth_root / "raw" / "00001.mp4", detector, fps=2, crop_size=112)
    save_face_track(track, tmp_path / "t.npz")
    loaded = load_face_track(tmp_path / "t.npz")
    assert np.array_equal(loaded.has_face, track.has_face)
    assert loaded.summary == track.summary
    assert np.abs(loaded.crops[0].astype(int) - track.crops[0]).mean() < 4  # JPEG q90


def test_truncated_clip_is_sampled_as_far_as_it_decodes(faulty_root):
    sampled = sample_frames(
        faulty_root / "raw" / f"{FAULTS['truncated']}.mp4", fps=6
    )  # the planted truncation
    assert len(sampled.times) > 0 and not sampled.complete
    assert sample_frames(faulty_root / "raw" / "00001.mp4", fps=6).complete


def test_several_faces_keep_the_main_one(tmp_path, models_dir):
    detector = load_face_detector(
        "blazeface", {"detector": models_dir / "blazeface", "mesh": models_dir / "facemesh"}, 0.5
    )
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    big = face_rig.FaceAnimator(face_rig.identity_face(5), (256, 256)).render(
        neutral, 0.0, 0.0, np.zeros(2)
    )
    small = face_rig.FaceAnimator(face_rig.identity_face(0), (256, 256)).render(
        neutral, 0.0, 0.0, np.zeros(2)
    )
    small = np.pad(small[::2, ::2], ((64, 64), (0, 0), (0, 0)), mode="edge")
    frame = np.hstack([big, small])  # 384 x 256: a large face and a smaller one beside it
    clip = _still_clip(tmp_path / "two.mp4", 25, 1.0, frame)
    track = process_clip(clip, detector, fps=6, crop_size=112)
    assert track.max_faces == 2 and track.has_face.all()
    assert (track.boxes[:, 0] < 256).all()  # the main face is the large one on the left


def test_a_fifth_of_a_second_still_gives_frames(faulty_root, models_dir):
    detector = load_face_detector(
        "centerface", {"detector": models_dir / "centerface", "mesh": None}, 0.5
    )
    track = process_clip(
        faulty_root / "raw" / f"{FAULTS['too_short']}.mp4", detector, fps=6, crop_size=112
    )
    assert 1 <= len(track.times) <= 2 and track.complete
