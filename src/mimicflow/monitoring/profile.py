"""Per-clip profiles that drift monitoring compares: one row per clip, numeric columns.

- clip metadata: duration, fps, resolution, video brightness (keyframes), face-found rate, face
  quality and brightness, ASR
  confidence (mean token probability), no-speech probability, transcript length, words per second;
- feature summaries: each monitored feature set's frame-mean vector — as named columns when the
  store names them (the default visual features: FaceMesh measures + FER2013 probabilities),
  otherwise as its first principal components, fitted on the reference;
- predictions: each emotion's intensity by one model of the fold ensemble (``ensemble.out``) that
  never saw the clip: for the reference, the fold that validated it where one did (a clip the
  models trained on would look better predicted than any new one); otherwise, and for every
  batch clip, the fold its id picks (``unseen_fold``), so both profiles hold the same kind of
  prediction.

The ``reference`` DVC stage profiles the training data once (``profile.parquet`` +
``projections.npz``); a monitoring run profiles its batch with the same projections.
"""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.config import Params
from mimicflow.parallel import map_clips
from mimicflow.paths import StagePaths, require

log = logging.getLogger(__name__)

BRIGHTNESS_CROPS = 8  # face crops decoded per clip for its brightness


class ReferenceProfileError(RuntimeError):
    """The reference profile is missing or does not fit the current features."""


def brightness(job: tuple[str, str]) -> tuple[float, float]:
    """A clip's mean grey level (0–255): of its video's keyframes (decoded alone: cheap), and of
    up to ``BRIGHTNESS_CROPS`` of its face crops (NaN without a face)."""
    import av
    import cv2

    from mimicflow.media import decode_frames

    video, faces = job
    with av.open(video, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        frames = decode_frames(container, stream)  # validate's tolerance: damage ends it quietly
        levels = [frame.to_ndarray(format="gray").mean() for frame in frames]
    with np.load(faces, allow_pickle=False) as data:
        offsets, jpeg, has_face = data["jpeg_offsets"], data["jpeg"], data["has_face"]
    frames = np.flatnonzero(has_face)
    picks = frames[np.linspace(0, len(frames) - 1, min(BRIGHTNESS_CROPS, len(frames))).astype(int)]
    crops = [
        cv2.imdecode(jpeg[offsets[i] : offsets[i + 1]], cv2.IMREAD_GRAYSCALE).mean() for i in picks
    ]
    return (
        float(np.mean(levels)) if levels else float("nan"),
        float(np.mean(crops)) if crops else float("nan"),
    )


def metadata(params: Params) -> pd.DataFrame:
    """Clip metadata from the validate, faces and asr outputs, indexed by clip id."""
    paths = StagePaths(params)
    manifest = paths.read_manifest()
    faces = paths.read_index("faces").set_index("clip_id")
    asr = paths.read_index("asr").set_index("clip_id")
    frame = manifest.set_index("clip_id")[["duration_s", "fps", "width", "height"]].astype(float)
    root, folder = Path(params.data.root).resolve(), paths.faces.resolve()
    jobs = [
        (str(root / video), str(folder / artefact))
        for video, artefact in zip(manifest["video_path"], faces.loc[frame.index, "artefact"])
    ]
    levels = map_clips(
        brightness,
        jobs,
        workers=params.compute.workers,
        progress=False,
        scheduler=params.compute.scheduler,
    )
    frame["video_brightness"] = [video for video, _ in levels]
    frame["face_rate"] = faces["face_rate"]
    frame["face_quality"] = faces["mean_quality"].where(faces["frames_with_face"] > 0)
    frame["face_brightness"] = [face for _, face in levels]
    speech = asr["has_speech"].astype(bool)
    frame["asr_confidence"] = np.exp(asr["mean_logprob"].astype(float)).where(speech)
    frame["no_speech_prob"] = (
        asr["no_speech_prob"].astype(float).where(asr["has_audio"].astype(bool))
    )
    frame["transcript_words"] = asr["words"].astype(float)
    frame["words_per_s"] = frame["transcript_words"] / frame["duration_s"]
    return frame


def clip_means(params: Params, name: str, clip_ids: list[str]) -> tuple[np.ndarray, dict]:
    """Each clip's mean over its present frames (NaN rows where the set is missing), and the
    store's metadata."""
    from mimicflow.features.store import FeatureTable

    packed = StagePaths(params).packed(name)
    require(packed / "meta.json", f"features@{name}")
    table = FeatureTable.open(packed)
    means = np.full((len(clip_ids), table.dim), np.nan, np.float32)
    for row, clip_id in enumerate(clip_ids):
        values, mask = table.get(clip_id)
        if mask.any():
            means[row] = values[mask].astype(np.float32).mean(axis=0)
    return means, table.meta


def predictions(params: Params, clip_ids: list[str], out_of_fold: bool) -> pd.DataFrame:
    """Each clip's intensities (``pred_<emotion>`` columns) by one fold model that never saw it,
    in the reference and in a batch alike: with ``out_of_fold`` (the reference), the folds'
    validation predictions where a clip has one; otherwise the fold ``unseen_fold`` picks by its
    id. (The folds' mean is less spread than any one fold model, and no mean of models that
    never saw a training clip exists to compare it with.)"""
    from mimicflow.training.ensemble import load_ensemble

    ensemble = load_ensemble(StagePaths(params).ensemble)
    folds = [unseen_fold(clip_id, len(ensemble.models)) for clip_id in clip_ids]
    frame = ensemble.predict_store(Path(params.features.out), clip_ids, folds=folds)
    frame = frame.set_index("clip_id").loc[clip_ids, list(EMOTIONS)].astype(float)
    validated = sorted(Path(ensemble.params.train_out).glob("*/val_predictions.csv"))
    if out_of_fold and validated:
        oof = (
            pd.concat(pd.read_csv(f, dtype={"clip_id": str}) for f in validated)
            .groupby("clip_id")
            .mean()
        )
        shared = frame.index.intersection(oof.index)
        frame.loc[shared] = oof.loc[shared, list(EMOTIONS)].to_numpy()
        log.info("reference predictions: %d of %d clips out-of-fold", len(shared), len(frame))
    return frame.add_prefix("pred_")


def unseen_fold(clip_id: str, folds: int) -> int:
    """The fold model that predicts a clip no fold validated: chosen by a stable hash of its id
    (the same in every run and process), so the folds share the clips evenly."""
    return zlib.crc32(clip_id.encode()) % folds


def profile(params: Params, projections: dict[str, np.ndarray] | None = None):
    """The profile of every clip in ``params``' outputs. With ``projections`` None (the reference)
    the principal components are fitted here; returns ``(profile, projections)``."""
    frame = metadata(params)
    clip_ids = frame.index.tolist()
    fitted = {} if projections is None else projections
    for name in params.monitor.feature_sets:
        means, meta = clip_means(params, name, clip_ids)
        names = meta.get("columns")
        if names and len(names) == means.shape[1]:
            summary = pd.DataFrame(means, index=frame.index, columns=[f"{name}_{n}" for n in names])
        else:
            if projections is None:
                fitted |= _fit_components(name, means, params.monitor.components)
            summary = _project(name, means, fitted, frame.index)
        frame = frame.join(summary)
    if params.monitor.predictions:
        frame = frame.join(predictions(params, clip_ids, out_of_fold=projections is None))
    return frame, fitted


def _fit_components(name: str, means: np.ndarray, k: int) -> dict[str, np.ndarray]:
    present = means[~np.isnan(means).any(axis=1)].astype(np.float64)
    if len(present) < 2:
        raise ReferenceProfileError(
            f"{name}: fewer than two reference clips carry it; cannot fit its principal components"
        )
    centre = present.mean(axis=0)
    _, _, vt = np.linalg.svd(present - centre, full_matrices=False)
    components = vt[: min(k, len(vt))]
    # a component's sign is arbitrary: fix it so the largest loading is positive (reproducible)
    components *= np.sign(
        components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
    )[:, None]
    return {f"{name}_centre": centre, f"{name}_components": components}


def _project(name: str, means: np.ndarray, fitted: dict, index: pd.Index) -> pd.DataFrame:
    centre, components = fitted[f"{name}_centre"], fitted[f"{name}_components"]
    if means.shape[1] != len(centre):
        raise ReferenceProfileError(
            f"{name} features are {means.shape[1]}-d but the reference's are "
            f"{len(centre)}-d: rebuild it (`dvc repro reference`)"
        )
    scores = (means.astype(np.float64) - centre) @ components.T
    return pd.DataFrame(
        scores, index=index, columns=[f"{name}_pc{i + 1}" for i in range(len(components))]
    )


def build_reference(params: Params) -> dict:
    """The ``reference`` stage: profile the pipeline's clips into ``monitor.reference``."""
    out = StagePaths(params).reference
    frame, projections = profile(params)
    out.mkdir(parents=True, exist_ok=True)
    frame.reset_index().to_parquet(out / "profile.parquet", index=False)
    np.savez(out / "projections.npz", **projections)
    summary = {
        "clips": len(frame),
        "columns": list(frame.columns),
        "predictions": params.monitor.predictions,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("reference profile: %d clips x %d columns -> %s", len(frame), frame.shape[1], out)
    return summary


def load_reference(params: Params) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The reference profile and its projections, or a message saying how to build them."""
    folder = StagePaths(params).reference
    if not (folder / "profile.parquet").is_file():
        raise ReferenceProfileError(
            f"no reference profile in {folder}: build it from the training data "
            "with `dvc repro reference`"
        )
    frame = pd.read_parquet(folder / "profile.parquet").set_index("clip_id")
    with np.load(folder / "projections.npz", allow_pickle=False) as data:
        projections = {key: data[key] for key in data.files}
    return frame, projections
