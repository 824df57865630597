"""One clip, from a raw video file to six intensities, through the pipeline's own code.

A clip takes the same road as a dataset clip in the stages: :func:`mimicflow.clip.chain.
clip_features` makes its face track, decoded audio and transcript as artefact files (in a work
folder) and encodes them with the same encoders, so what is served is what was evaluated.
Before that, :func:`check_clip` applies the validate stage's own policy (``clip_problem``) to
an upload. Models are built once per process (``mimicflow predict`` and every BentoML worker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.clip.chain import clip_features
from mimicflow.clip.features import ClipFeatures, present_inputs
from mimicflow.clip.folders import ArtefactFolders
from mimicflow.clip.settings import ClipSettings
from mimicflow.config import ChainParams, Params, ServingParams, ValidateParams
from mimicflow.data.layout import ClipRef
from mimicflow.data.validation import clip_problem
from mimicflow.media import MediaError, MediaInfo, probe_media
from mimicflow.paths import StagePaths
from mimicflow.training.combine import Combination, has_members, load_combination
from mimicflow.training.ensemble import Ensemble, contribution_shares, load_ensemble

log = logging.getLogger(__name__)


class ClipRejected(ValueError):
    """A file that cannot be predicted; ``status`` is the HTTP status the service answers."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What an uploaded clip may be: bytes, seconds and pixels per frame (None: no limit), and
    the validate stage's policy for a usable clip (minimum duration, frame rate, size …)."""

    max_bytes: int | None = None
    max_duration_s: float | None = None
    policy: ValidateParams = field(default_factory=ValidateParams)
    max_pixels: int | None = None

    @classmethod
    def from_params(cls, params: Params | ChainParams) -> Limits:
        return cls.of(params.serving, params.validate_)

    @classmethod
    def of(cls, serving: ServingParams, policy: ValidateParams) -> Limits:
        """The limits ``serving`` sets, with ``policy`` (the validate stage's, as trained)."""
        return cls(
            int(serving.max_upload_mb * 2**20),
            serving.max_duration_s,
            policy,
            serving.max_frame_pixels,
        )


@dataclass
class ExtractedClip(ClipFeatures):
    """A clip's features (as the feature store holds them) and its duration."""

    duration_s: float = 0.0


def check_clip(path: Path, limits: Limits = Limits()) -> MediaInfo:
    """Sniff the content (never the name), enforce ``limits`` and the validate stage's policy
    (``clip_problem``: a still image, a too-short clip … is not a clip); returns the decoded
    media facts; raises ClipRejected. The header's duration and frame size are checked before
    anything decodes, and decoding stops as soon as any stream runs past the duration limit,
    whatever the header claims."""
    size = path.stat().st_size
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise ClipRejected(
            f"file too large: {size / 2**20:.1f} MB (limit {limits.max_bytes / 2**20:.0f} MB)", 413
        )
    try:
        info = probe_media(path, decode=False)
    except MediaError as exc:
        raise ClipRejected(str(exc), 415) from exc
    _check_header(info, limits)
    try:
        decoded = probe_media(path, decode=True, stop_after_s=limits.max_duration_s)
    except MediaError as exc:
        raise ClipRejected(str(exc), 422) from exc
    if decoded.stopped_at_s is not None:
        claimed = info.claimed_duration_s
        raise ClipRejected(
            f"clip too long: more than {limits.max_duration_s:g} s decodes (limit "
            f"{limits.max_duration_s:g} s"
            + (f"; its header claims {claimed:.1f} s)" if claimed is not None else ")")
        )
    problem = clip_problem(decoded, limits.policy)
    if problem is not None:
        raise ClipRejected(f"not a usable clip: {problem}")
    return decoded


def _check_header(info: MediaInfo, limits: Limits) -> None:
    """What the header alone refuses: no video, a claimed duration or frame size too large."""
    if not info.has_video and not info.has_audio:
        raise ClipRejected("no audio or video streams in this file", 422)
    if not info.has_video:
        raise ClipRejected("no video stream: upload a video clip (audio-only files are not clips)")
    claimed = info.claimed_duration_s
    if (
        limits.max_duration_s is not None
        and claimed is not None
        and claimed > limits.max_duration_s
    ):
        raise ClipRejected(f"clip too long: {claimed:.1f} s (limit {limits.max_duration_s:g} s)")
    pixels = (info.width or 0) * (info.height or 0)
    if limits.max_pixels is not None and pixels > limits.max_pixels:
        raise ClipRejected(
            f"frames too large: {info.width}x{info.height} = {pixels / 1e6:.1f} megapixels "
            f"(limit {limits.max_pixels / 1e6:g})"
        )


def extract_clip(
    params: Params | ChainParams,
    video: Path,
    work_dir: Path,
    inputs: tuple[str, ...] = ("audio", "visual", "text"),
    duration_s: float | None = None,
) -> ExtractedClip:
    """The clip's features per feature set in ``inputs``, its artefacts written into ``work_dir``
    (``duration_s``: what :func:`check_clip` measured, else measured here)."""
    folders = ArtefactFolders(Path(work_dir), Path(work_dir), Path(work_dir))
    clip = ClipRef("clip", Path(video), "upload")
    found = clip_features(clip, _settings(params.model_dump_json(), tuple(inputs)), folders)
    if duration_s is None:
        duration_s = probe_media(video, decode=True).video_decoded_s
    return ExtractedClip(
        found.features, found.transcript, found.has_audio, found.face_rate, duration_s
    )


@cache
def _settings(params_json: str, inputs: tuple[str, ...]) -> ClipSettings:
    """The clip chain's settings (model names resolved once per process)."""
    return ClipSettings.from_params(ChainParams.model_validate_json(params_json), inputs)


def prediction(
    ensemble: Ensemble | Combination, features: list[dict[str, tuple[np.ndarray, np.ndarray]]]
) -> list[dict]:
    """The ensemble's answer per clip: intensities, each input's presence and contribution
    (``change``: what the intensities lose without it; ``share``: of the clip's total), the
    model version; for a combination also its ``members`` block."""
    if not features:
        return []
    scores = np.asarray(ensemble.predict(features), np.float64)
    members = member_answers(ensemble, features)
    answers = []
    for k, (clip, row, changes) in enumerate(
        zip(features, scores, ensemble.ablation_changes(features))
    ):
        here = present_inputs(clip)
        shares = contribution_shares(changes, here)
        inputs = {
            m: {
                "present": here.get(m, False),
                "change": round(changes[m], 6),
                "share": round(shares[m], 6),
            }
            for m in ensemble.inputs
        }
        answers.append(
            {
                "intensities": {e: round(float(v), 6) for e, v in zip(EMOTIONS, row)},
                "inputs": inputs,
                "model_version": ensemble.version,
            }
            | ({"members": members[k]} if members else {})
        )
    return answers


def member_answers(model: Ensemble | Combination, features: list) -> list[dict] | None:
    """A combination's ``members`` block per clip: each member's intensities and its weight
    per emotion (None for a single system)."""
    if not isinstance(model, Combination):
        return None
    predictions = model.member_predictions(features)
    return [
        {
            name: {
                "intensities": {e: round(float(v), 6) for e, v in zip(EMOTIONS, predictions[m, k])},
                "weights": {e: round(float(w), 6) for e, w in zip(EMOTIONS, model.weights[m])},
            }
            for m, name in enumerate(model.members)
        }
        for k in range(len(features))
    ]


def clip_prediction(ensemble: Ensemble | Combination, clip: ExtractedClip) -> dict:
    """One clip's full answer: ``prediction`` plus its transcript and duration. A clip in which
    none of the inputs was found is rejected (the answer would be the model's prior)."""
    if not any(clip.present_inputs.get(m, False) for m in ensemble.inputs):
        raise ClipRejected(
            f"nothing to predict from: none of {', '.join(ensemble.inputs)} "
            "was found in the clip (no face in any sampled frame, no audio, "
            "no speech)"
        )
    return prediction(ensemble, [clip.features])[0] | {
        "transcript": clip.transcript,
        "duration_s": round(clip.duration_s, 3),
    }


def predict_clips(
    ensemble: Ensemble | Combination,
    paths: list[Path],
    limits: Limits = Limits(),
    progress: bool = False,
) -> list[dict]:
    """``{"file", ...prediction}`` per path, or ``{"file", "error"}`` for a file that cannot be
    predicted: one bad file never stops the others."""
    import av
    from rich.console import Console
    from rich.progress import track

    results: list[dict] = []
    for path in track(paths, "clips", disable=not progress, console=Console(stderr=True)):
        results.append({"file": str(path)})
        try:
            info = check_clip(Path(path), limits)
            with TemporaryDirectory(prefix="mimicflow-clip-") as work:
                clip = extract_clip(
                    ensemble.params,
                    Path(path),
                    Path(work),
                    tuple(ensemble.inputs),
                    info.video_decoded_s,
                )
            results[-1] |= clip_prediction(ensemble, clip)
        except (ClipRejected, OSError, av.error.FFmpegError) as exc:
            log.debug("%s: %s", path, exc)
            reason = getattr(exc, "strerror", None) if isinstance(exc, OSError) else None
            results[-1]["error"] = f"cannot read the file: {reason}" if reason else str(exc)
    return results


def fixed_sample(clip_ids: list[str], n: int) -> list[str]:
    """``n`` of ``clip_ids`` spread evenly over their sorted order (all of them for n = 0):
    the same clips on every run."""
    ordered = sorted(clip_ids)
    if n == 0 or n >= len(ordered):
        return ordered
    return [ordered[i] for i in np.linspace(0, len(ordered) - 1, n).round().astype(int)]


def served_vs_stored(answers: dict[str, dict], stored: pd.DataFrame, tolerance: float) -> dict:
    """Served = evaluated: each clip's answer (``{"intensities": …}`` or ``{"error": …}``, by
    clip id) against its stored row (``Filename`` and the six emotions, as in the submission).
    ``passed``: some clips answered, and the largest absolute difference ≤ ``tolerance``. A clip
    refused (nothing found in it: no face, no audio, no speech) is listed, not compared."""
    rows = stored.assign(Filename=stored["Filename"].astype(str)).set_index("Filename")
    refused = {c: a["error"] for c, a in answers.items() if "error" in a}
    answered = [c for c in answers if c not in refused]
    served = np.array([[answers[c]["intensities"][e] for e in EMOTIONS] for c in answered])
    difference = np.abs(served.reshape(-1, len(EMOTIONS)) - rows.loc[answered, list(EMOTIONS)])
    largest = float(difference.to_numpy().max()) if answered else None
    return {
        "clips": len(answers),
        "compared": len(answered),
        "refused": refused,
        "max_abs_difference": largest,
        "mean_abs_difference": float(difference.to_numpy().mean()) if answered else None,
        "clips_over_tolerance": int((difference.max(axis=1) > tolerance).sum()),
        "tolerance": tolerance,
        "passed": largest is not None and largest <= tolerance,
    }


def check_served(params: Params, progress: bool = False) -> dict:
    """``served_vs_stored`` on a fixed sample (``checks.served_clips``) of the submission's
    clips, each predicted again from its video by the code the endpoint runs; with
    ``ensemble.members``, the combination against the combine stage's predictions."""
    paths = StagePaths(params)
    submission = pd.read_csv(paths.reports / "submission.csv", dtype={"Filename": str})
    clips = fixed_sample(list(submission["Filename"]), params.checks.served_clips)
    videos = paths.read_manifest().set_index("clip_id").loc[clips, "video_path"]
    if has_members(params.ensemble.combined_out):
        ensemble = load_combination(params.ensemble.combined_out)
        submission = pd.read_csv(
            Path(params.ensemble.combined_out) / "predictions.csv", dtype={"clip_id": str}
        ).rename(columns={"clip_id": "Filename"})
    else:
        ensemble = load_ensemble(paths.ensemble)
    answers = predict_clips(
        ensemble,
        [Path(params.data.root) / v for v in videos],
        Limits.from_params(ensemble.params),
        progress,
    )
    return served_vs_stored(dict(zip(clips, answers)), submission, params.checks.served_tolerance)
