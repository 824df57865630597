"""One clip, from a raw video file to six intensities, through the pipeline's own code.

The clip goes through exactly what the DVC stages run per clip (``faces_clip``, ``asr_clip``, the
features stages' extractors, artefacts round-tripped through the same files), so a served clip is
encoded as the training clips were; then the fold ensemble predicts. Models are built once per
process and reused (``mimicflow predict`` and every BentoML worker).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

import numpy as np

from mimicflow import EMOTIONS
from mimicflow.config import Params
from mimicflow.data.media import MediaError, MediaInfo, probe_media

if TYPE_CHECKING:
    from mimicflow.stages.features import Extractor
    from mimicflow.training.ensemble import Ensemble

log = logging.getLogger(__name__)
# Modalities computed from a clip's own video, audio and transcript (the organisers' pre-extracted
# vit/wav2vec2 features exist only for their dataset's clips).
CLIP_MODALITIES = ("audio", "visual", "text", "egemaps")


class ClipRejected(ValueError):
    """A file that cannot be predicted; ``status`` is the HTTP status the service answers."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What an uploaded clip may be: bytes and seconds (None: no limit)."""

    max_bytes: int | None = None
    max_duration_s: float | None = None

    @classmethod
    def from_params(cls, params: Params) -> Limits:
        serving = params.serving
        return cls(int(serving.max_upload_mb * 1024 * 1024), serving.max_duration_s)


@dataclass
class ClipInputs:
    """A clip's features per modality, as one clip's feature-store file holds them, and what
    perception saw."""

    features: dict[str, tuple[np.ndarray, np.ndarray]]  # modality → (T × d float16, (T,) bool)
    transcript: str
    duration_s: float
    has_audio: bool
    face_rate: float

    @property
    def present(self) -> dict[str, bool]:
        return present(self.features)


def present(features: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, bool]:
    """Which modalities a clip has: any frame in the mask (a missing one: absent or all False)."""
    return {m: bool(np.asarray(mask).any()) for m, (_, mask) in features.items()}


def check_clip(path: Path, limits: Limits = Limits()) -> MediaInfo:
    """Sniff the content (never the name) and enforce ``limits``; raises ClipRejected."""
    size = path.stat().st_size
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise ClipRejected(f"file too large: {size / 2**20:.1f} MB (limit "
                           f"{limits.max_bytes / 2**20:.0f} MB)", 413)  # fmt: skip
    try:
        info = probe_media(path, decode=False)
    except MediaError as exc:
        raise ClipRejected(str(exc), 415) from exc
    if not info.has_video and not info.has_audio:
        raise ClipRejected("no audio or video streams in this file", 422)
    if not info.has_video:
        raise ClipRejected("no video stream: upload a video clip (audio-only files are not clips)")
    duration = info.claimed_duration_s
    if duration is None:  # a header without a duration: measure what decodes
        duration = probe_media(path, decode=True).decoded_duration_s
    if limits.max_duration_s is not None and duration > limits.max_duration_s:
        raise ClipRejected(f"clip too long: {duration:.1f} s (limit {limits.max_duration_s:g} s)")
    info.claimed_duration_s = duration
    return info


@dataclass
class _Chain:
    faces_settings: str
    asr_settings: str
    extractors: dict[str, Extractor]


@cache
def _chain(params_json: str, modalities: tuple[str, ...]) -> _Chain:
    """The per-process perception settings and feature extractors (their encoders load lazily,
    once)."""
    from mimicflow.stages.features import build_extractor
    from mimicflow.stages.perception import asr_settings, faces_settings

    unknown = [m for m in modalities if m not in CLIP_MODALITIES]
    if unknown:
        raise ValueError(f"modalities {unknown} cannot be computed from a new clip (only "
                         f"{', '.join(CLIP_MODALITIES)})")  # fmt: skip
    params = Params.model_validate_json(params_json)
    return _Chain(
        json.dumps(faces_settings(params), sort_keys=True),
        json.dumps(asr_settings(params), sort_keys=True),
        {m: build_extractor(params, m) for m in modalities},
    )


def extract_clip(params: Params, video: Path, work_dir: Path,
                 modalities: tuple[str, ...] = ("audio", "visual", "text")) -> ClipInputs:  # fmt: skip
    """Faces and transcript (side by side), then each modality's features, for one clip.

    ``work_dir`` receives the clip's perception artefacts, as the stages write them."""
    from threadpoolctl import threadpool_limits

    from mimicflow.perception.faces import load_face_track
    from mimicflow.stages.perception import asr_clip, decoded_audio, faces_clip

    chain = _chain(params.model_dump_json(), tuple(modalities))
    work_dir = Path(work_dir)
    faces_file, asr_file, audio_file = (work_dir / n for n in ("faces.npz", "asr.json", "audio.npz"))
    # Single-threaded BLAS, as the stages' workers run them: Whisper's transcript of a borderline
    # clip can change with the thread count.
    with threadpool_limits(limits=1), ThreadPoolExecutor(2) as pool:
        faces = pool.submit(faces_clip, ("clip", str(video), str(faces_file), chain.faces_settings))
        asr = pool.submit(asr_clip, ("clip", str(video), str(asr_file), chain.asr_settings,
                                     str(audio_file)))  # fmt: skip
        face_row, asr_row = faces.result(), asr.result()
    transcript = json.loads(asr_file.read_text())
    inputs = {
        "audio": lambda: decoded_audio(str(video), audio_file),  # from the cache, as the stage
        "egemaps": lambda: decoded_audio(str(video), audio_file),
        "visual": lambda: load_face_track(faces_file),
        "text": lambda: transcript["text"],
    }
    features = {}
    for modality, extractor in chain.extractors.items():
        values, mask = extractor.encode([inputs[modality]()])[0]
        features[modality] = (np.asarray(values, np.float16), np.asarray(mask, bool))
    duration = check_clip(Path(video)).claimed_duration_s
    return ClipInputs(features, transcript["text"], duration, bool(asr_row["has_audio"]),
                      float(face_row["face_rate"]))  # fmt: skip


def prediction(ensemble: Ensemble, features: list[dict[str, tuple[np.ndarray, np.ndarray]]]
               ) -> list[dict]:  # fmt: skip
    """The ensemble's answer per clip: intensities, each modality's presence and fusion weight,
    the model version."""
    if not features:
        return []
    scores = np.asarray(ensemble.predict(features), np.float64)
    contributions = ensemble.contributions(features)
    answers = []
    for clip, row, weights in zip(features, scores, contributions):
        here = present(clip)
        modalities = {m: {"present": here.get(m, False), "weight": round(float(weights.get(m, 0.0)), 6)}
                      for m in ensemble.modalities}  # fmt: skip
        answers.append({"intensities": {e: round(float(v), 6) for e, v in zip(EMOTIONS, row)},
                        "modalities": modalities, "model_version": ensemble.version})  # fmt: skip
    return answers


def clip_prediction(ensemble: Ensemble, clip: ClipInputs) -> dict:
    """One clip's full answer: ``prediction`` plus its transcript and duration."""
    return prediction(ensemble, [clip.features])[0] | {
        "transcript": clip.transcript, "duration_s": round(clip.duration_s, 3)}  # fmt: skip


def predict_clips(ensemble: Ensemble, paths: list[Path], limits: Limits = Limits(),
                  progress: bool = False) -> list[dict]:  # fmt: skip
    """``{"file", ...prediction}`` per path, or ``{"file", "error"}`` for a file that cannot be
    predicted: one bad file never stops the others."""
    import av
    from rich.console import Console
    from rich.progress import track

    results: list[dict] = []
    clips: list[tuple[int, ClipInputs]] = []
    for path in track(paths, "clips", disable=not progress, console=Console(stderr=True)):
        results.append({"file": str(path)})
        try:
            check_clip(Path(path), limits)
            with TemporaryDirectory(prefix="mimicflow-clip-") as work:
                clips.append((len(results) - 1, extract_clip(ensemble.params, Path(path), Path(work),
                                                             tuple(ensemble.modalities))))  # fmt: skip
        except (ClipRejected, OSError, av.error.FFmpegError) as exc:
            log.debug("%s: %s", path, exc)
            reason = getattr(exc, "strerror", None) if isinstance(exc, OSError) else None
            results[-1]["error"] = f"cannot read the file: {reason}" if reason else str(exc)
    answers = prediction(ensemble, [c.features for _, c in clips])
    for (index, clip), answer in zip(clips, answers):
        results[index] |= answer | {"transcript": clip.transcript,
                                    "duration_s": round(clip.duration_s, 3)}  # fmt: skip
    return results
