"""The embedded default visual features: FaceMesh geometry and FER2013 expression probabilities.

Per sampled frame of a clip's ``FaceTrack``:

* ``FACIAL_MEASURE_NAMES``: action-unit-like measures from the 468-point FaceMesh, taken in the
  face's own frame (origin between the eye centres, eye line horizontal, y down) and in units of
  the inter-ocular distance, so they do not depend on the face's size or roll in the image; then
  the head pose in degrees.
* ``EXPRESSION_NAMES``: the seven FER2013 class probabilities of the aligned crop, from the
  ``fer`` package's mini-Xception (a weight-quantised ``.tflite`` with float input and output,
  ending in a softmax) run on LiteRT, with ``fer``'s preprocessing: grayscale, 64×64 (OpenCV's
  default bilinear resize), scaled to [-1, 1].

"Right" and "left" are the subject's (the right eye is on the image's left), as in
``face_mediapipe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mimicflow.perception.face_mediapipe import (
    LEFT_EYE_CONTOUR,
    MOUTH_LEFT_CORNER,
    MOUTH_RIGHT_CORNER,
    RIGHT_EYE_CONTOUR,
)

if TYPE_CHECKING:
    from mimicflow.perception.faces import FaceTrack

# FaceMesh canonical indices (see face_mediapipe for the eye contours and mouth corners).
RIGHT_EYE_CORNERS, LEFT_EYE_CORNERS = (33, 133), (362, 263)  # outer/inner, inner/outer
RIGHT_EYELIDS, LEFT_EYELIDS = (159, 145), (386, 374)  # upper and lower lid, mid-eye
RIGHT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)  # upper edge then lower, outer to inner
LEFT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)
RIGHT_INNER_BROW, LEFT_INNER_BROW = (107, 55), (336, 285)  # the brow heads' upper/lower edge
INNER_LIPS = (13, 14)  # upper and lower lip's inner edge on the midline

# Rigid points (eye corners, nose bridge to subnasale, forehead) with their coordinates in
# MediaPipe's canonical face model (canonical_face_model.obj, centimetres; x to the image's
# right, y up, z towards the camera), flipped to the mesh's axes: x right, y down, z away from
# the camera.
POSE_POINTS = (33, 133, 362, 263, 168, 6, 4, 1, 2, 10)
CANONICAL_POSE_POINTS = np.array(
    [
        [-4.445859, 2.663991, 3.173422],
        [-1.856432, 2.585245, 3.757904],
        [1.856432, 2.585245, 3.757904],
        [4.445859, 2.663991, 3.173422],
        [0.0, 3.271027, 5.236015],
        [0.0, 2.473255, 5.788627],
        [0.0, -0.463170, 7.586580],
        [0.0, -1.126865, 7.475604],
        [0.0, -2.089024, 6.058267],
        [0.0, 8.261778, 4.481535],
    ]
) * [1.0, -1.0, -1.0]

FACIAL_MEASURE_NAMES = (
    "lip_corner_raise",  # lip centre line (mean height of 13, 14) minus mean height of 61, 291
    "lip_stretch",  # mouth width: 61 to 291
    "mouth_open",  # inner lip gap: 13 to 14
    "brow_raise_right",  # right eye corners' (33, 133) height minus the right brow's mean height
    "brow_raise_left",  # the same for the left eye (362, 263) and brow
    "brow_inner_gap",  # distance between the brow heads (107 + 55, 336 + 285); smaller: furrow
    "eye_open_right",  # lid gap 159 to 145
    "eye_open_left",  # lid gap 386 to 374
    "head_roll",  # eye-line angle, degrees, counter-clockwise on screen (cv2's sign)
    "head_yaw",  # degrees, positive when the face turns towards the image's right
    "head_pitch",  # degrees, positive when the face turns up
)
EXPRESSION_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EXPRESSION_BATCH = 32


def _facing(points: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors the faces point along (mesh axes), from a rotation fitted (Kabsch) to
    the rigid ``POSE_POINTS`` of (n, 468, 3) finite meshes."""
    canonical = CANONICAL_POSE_POINTS - CANONICAL_POSE_POINTS.mean(0)
    observed = points[:, POSE_POINTS] - points[:, POSE_POINTS].mean(1, keepdims=True)
    u, _, vt = np.linalg.svd(np.einsum("pi,npj->nij", canonical, observed))
    flip = np.sign(np.linalg.det(u @ vt))  # a rotation, not a reflection
    vt[:, 2] *= flip[:, None]
    rotation = np.swapaxes(vt, 1, 2) @ np.swapaxes(u, 1, 2)  # canonical → observed
    return -rotation[:, :, 2]  # the canonical face looks along -z (towards the camera)


def facial_measures(mesh: np.ndarray) -> np.ndarray:
    """(n, K) float32 measures (``FACIAL_MEASURE_NAMES``) of (n, 468, 3) FaceMesh points in image
    pixels; rows are NaN where the mesh is not finite."""
    points = np.asarray(mesh, np.float64)
    out = np.full((len(points), len(FACIAL_MEASURE_NAMES)), np.nan, np.float32)
    valid = np.isfinite(points).all(axis=(1, 2))
    if not valid.any():
        return out
    points = points[valid]
    right_eye = points[:, list(RIGHT_EYE_CONTOUR), :2].mean(1)
    left_eye = points[:, list(LEFT_EYE_CONTOUR), :2].mean(1)
    eye_line = left_eye - right_eye
    angle = np.arctan2(eye_line[:, 1], eye_line[:, 0])
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    offset = points[:, :, :2] - (right_eye + left_eye)[:, None] / 2
    scale = np.linalg.norm(eye_line, axis=1)[:, None]
    face = (
        np.stack(
            [
                cos * offset[..., 0] + sin * offset[..., 1],
                cos * offset[..., 1] - sin * offset[..., 0],
            ],
            axis=-1,
        )
        / scale[..., None]
    )

    def at(indices) -> np.ndarray:  # mean face-frame position of some points, (n, 2)
        return face[:, list(indices)].mean(1)

    def gap(a, b) -> np.ndarray:
        return np.linalg.norm(at(a) - at(b), axis=1)

    corners = (MOUTH_RIGHT_CORNER, MOUTH_LEFT_CORNER)
    facing = _facing(points)
    out[valid] = np.column_stack(
        [
            at(INNER_LIPS)[:, 1] - at(corners)[:, 1],
            gap([MOUTH_RIGHT_CORNER], [MOUTH_LEFT_CORNER]),
            gap(INNER_LIPS[:1], INNER_LIPS[1:]),
            at(RIGHT_EYE_CORNERS)[:, 1] - at(RIGHT_BROW)[:, 1],
            at(LEFT_EYE_CORNERS)[:, 1] - at(LEFT_BROW)[:, 1],
            gap(RIGHT_INNER_BROW, LEFT_INNER_BROW),
            gap(RIGHT_EYELIDS[:1], RIGHT_EYELIDS[1:]),
            gap(LEFT_EYELIDS[:1], LEFT_EYELIDS[1:]),
            -np.degrees(angle),
            np.degrees(np.arcsin(np.clip(facing[:, 0], -1, 1))),
            np.degrees(np.arcsin(np.clip(-facing[:, 1], -1, 1))),
        ]
    )
    return out


class ExpressionClassifier:
    """The FER2013 mini-Xception (``emotion_model_quantized.tflite``) on LiteRT."""

    def __init__(self, model_dir: Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(
            model_path=str(Path(model_dir) / "emotion_model_quantized.tflite"), num_threads=threads
        )
        self._interpreter.allocate_tensors()
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        if out["shape"][-1] != len(EXPRESSION_NAMES) or inp["dtype"] != np.float32:
            raise ValueError(f"unexpected FER model I/O: {inp['shape']} → {out['shape']}")
        self._input, self._output, self._batch = inp["index"], out["index"], int(inp["shape"][0])
        self.input_size = int(inp["shape"][2]), int(inp["shape"][1])  # (width, height)

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        """A BGR (or gray) face crop as ``fer`` feeds it: gray, resized, in [-1, 1], (h, w, 1)."""
        gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        gray = cv2.resize(gray, self.input_size)
        return ((gray.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, 7) class probabilities (``EXPRESSION_NAMES``), each row summing to 1."""
        if not crops:
            return np.zeros((0, len(EXPRESSION_NAMES)), np.float32)
        faces = np.stack([self.preprocess(crop) for crop in crops])
        probabilities = []
        for start in range(0, len(faces), EXPRESSION_BATCH):
            batch = faces[start : start + EXPRESSION_BATCH]
            if len(batch) != self._batch:
                self._interpreter.resize_tensor_input(self._input, batch.shape)
                self._interpreter.allocate_tensors()
                self._batch = len(batch)
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            probabilities.append(self._interpreter.get_tensor(self._output).copy())
        probabilities = np.concatenate(probabilities).astype(np.float32)
        return probabilities / probabilities.sum(1, keepdims=True)  # the softmax, up to rounding


def visual_default_features(
    track: FaceTrack, classifier: ExpressionClassifier | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per sampled frame [facial measures, expression probabilities] as (n, K + 7) float32, the
    (n,) mask of frames with the main face and a finite mesh, and the column names. Without a
    ``classifier``: the facial measures and head pose alone (n, K), the motion features.
    Rows outside the mask are zeros."""
    measures = facial_measures(track.mesh)
    mask = np.asarray(track.has_face, bool) & np.isfinite(measures).all(1)
    k = len(FACIAL_MEASURE_NAMES)
    expressions = EXPRESSION_NAMES if classifier is not None else ()
    features = np.zeros((len(mask), k + len(expressions)), np.float32)
    features[mask, :k] = measures[mask]
    if classifier is not None:
        features[mask, k:] = classifier.predict([track.crops[i] for i in np.flatnonzero(mask)])
    return features, mask, [*FACIAL_MEASURE_NAMES, *expressions]
