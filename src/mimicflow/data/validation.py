"""Raw-data validation: which clips and label rows are usable, and why the others are not.

Pure functions over a :class:`~mimicflow.data.layout.Dataset`; the ``validate`` stage writes
their results. One bad clip or label row never affects the others.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.config import ValidateParams
from mimicflow.data.layout import MANIFEST_COLUMNS, Dataset, LabelRow, load_dataset
from mimicflow.media import MediaError, MediaInfo, file_sha256, probe_media
from mimicflow.parallel import map_clips

log = logging.getLogger(__name__)
QUARANTINE_COLUMNS = ["Filename", "reason"]


@dataclass
class ValidationResult:
    manifest: pd.DataFrame
    quarantine: pd.DataFrame
    labels: pd.DataFrame  # every label row as read, for the data-quality suite


@dataclass
class ProbedClip:
    """Outcome of probing one clip (and its separate audio file, if any)."""

    clip_id: str
    video: MediaInfo | None
    video_error: str | None
    audio: MediaInfo | None
    audio_error: str | None
    sha256: str | None


def probe_clip(job: tuple[str, str, str | None, float | None]) -> ProbedClip:
    """Probe and decode one clip and its audio file, each until a stream runs past the job's
    last item (seconds; None: to the end); never raises for bad media."""
    clip_id, video_path, audio_path, stop_after_s = job
    video = audio = None
    video_error = audio_error = sha = None
    try:
        video = probe_media(video_path, stop_after_s=stop_after_s)
        sha = file_sha256(video_path)
    except MediaError as exc:
        video_error = str(exc)
    if audio_path is not None:
        try:
            audio = probe_media(audio_path, stop_after_s=stop_after_s)
            if not audio.has_audio or audio.audio_decoded_s <= 0:
                audio, audio_error = None, "no decodable audio"
            elif audio.stopped_at_s is not None:
                audio, audio_error = None, f"longer than {stop_after_s:g} s"
        except MediaError as exc:
            audio_error = str(exc)
    return ProbedClip(clip_id, video, video_error, audio, audio_error, sha)


def clip_problem(info: MediaInfo, params: ValidateParams) -> str | None:
    """Why a decodable file is still not a usable clip, or None when it is usable."""
    if not info.has_video:
        return "no video stream (audio-only file)"
    if info.n_frames == 0:
        return "no decodable video frames"
    if info.stopped_at_s is not None:  # decoding stopped there: whatever the header says
        return (
            f"too long: more than {info.stopped_at_s:g} s decodes (maximum "
            f"{params.max_duration_s} s, validate.max_duration_s)"
        )
    claimed = info.claimed_duration_s
    decoded = info.decoded_duration_s
    if claimed and decoded < claimed * (1 - params.truncation_tolerance):
        return f"truncated: header claims {claimed:.2f} s but only {decoded:.2f} s decodes"
    duration = info.video_decoded_s
    if duration < params.min_duration_s:
        return (
            f"too short: {duration:.2f} s of video (minimum {params.min_duration_s} s, "
            "validate.min_duration_s)"
        )
    if duration > params.max_duration_s:
        return (
            f"too long: {duration:.1f} s (maximum {params.max_duration_s} s, "
            "validate.max_duration_s)"
        )
    if info.fps is None or not params.min_fps <= info.fps <= params.max_fps:
        return f"frame rate {info.fps} fps outside [{params.min_fps}, {params.max_fps}]"
    if min(info.width or 0, info.height or 0) < params.min_side_px:
        return f"resolution {info.width}x{info.height} below {params.min_side_px} px"
    return None


def check_label_rows(
    rows: list[LabelRow], clip_ids: set[str]
) -> tuple[dict[str, LabelRow], list[tuple[str, str]]]:
    """Split label rows into one good row per clip id and quarantine entries for the rest."""
    quarantine: list[tuple[str, str]] = []
    by_id: dict[str, list[LabelRow]] = defaultdict(list)
    for row in rows:
        if row.clip_id is None:
            quarantine.append(
                (row.raw_filename, f"Filename {row.raw_filename!r} is not a clip id ({row.source})")
            )
            continue
        problems = [f"{e} is missing" for e, v in row.values.items() if math.isnan(v)]
        problems += [
            f"{e}={v:g} outside [0, 1]"
            for e, v in row.values.items()
            if not math.isnan(v) and not 0.0 <= v <= 1.0
        ]
        if problems:
            quarantine.append((row.clip_id, f"bad label row ({row.source}): {'; '.join(problems)}"))
            continue
        by_id[row.clip_id].append(row)

    good: dict[str, LabelRow] = {}
    for clip_id, group in by_id.items():
        first, *rest = group
        if any(r.values != first.values or r.split != first.split for r in rest):
            sources = ", ".join(r.source for r in group)
            quarantine.append((clip_id, f"conflicting duplicate label rows: {sources}"))
            continue
        for extra in rest:
            quarantine.append(
                (
                    clip_id,
                    f"duplicate label row ({extra.source}) repeats {first.source}; first kept",
                )
            )
        if clip_id not in clip_ids:
            quarantine.append(
                (clip_id, f"labelled ({first.source}) but raw/ has no clip {clip_id}")
            )
            continue
        good[clip_id] = first
    return good, quarantine


def labels_table(rows: list[LabelRow]) -> pd.DataFrame:
    """All label rows as read, one row each, for the data-quality suite."""
    records = [
        {
            "Filename": r.raw_filename,
            "clip_id": r.clip_id,
            "split": r.split,
            "source": r.source,
            **r.values,
        }
        for r in rows
    ]
    return pd.DataFrame(records, columns=["Filename", "clip_id", "split", "source", *EMOTIONS])


def validate_dataset(
    dataset: Dataset, params: ValidateParams, workers: int = 0, progress: bool = True
) -> ValidationResult:
    """Probe every clip, check every label row, and split the dataset into usable and quarantined:
    every file of ``raw/`` ends up in exactly one of the two (a file that is not a clip under
    its own path, a clip under its clip id)."""
    labels, quarantine = check_label_rows(dataset.label_rows, set(dataset.clips))
    quarantine += [
        (path.relative_to(dataset.root).as_posix(), reason)
        for path, reason in dataset.not_clips.items()
    ]
    bad_label_ids = {clip_id for clip_id, _ in quarantine} - set(labels)

    jobs = [
        (
            clip_id,
            str(path),
            str(dataset.audio[clip_id]) if clip_id in dataset.audio else None,
            params.max_duration_s,
        )
        for clip_id, path in sorted(dataset.clips.items())
        if clip_id not in bad_label_ids
    ]
    probed = map_clips(probe_clip, jobs, workers=workers, progress=progress, label="validate")

    records = []
    for clip in probed:
        if clip.video_error is not None:
            quarantine.append((clip.clip_id, clip.video_error))
            continue
        problem = clip_problem(clip.video, params)
        if problem is not None:
            quarantine.append((clip.clip_id, problem))
            continue
        records.append(_manifest_record(dataset, clip, labels.get(clip.clip_id)))

    manifest = pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS)
    manifest = manifest.astype({"has_audio": bool, "has_vit": bool, "has_wav2vec2": bool})
    quarantine_frame = pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS).sort_values(
        "Filename", kind="stable", ignore_index=True
    )
    return ValidationResult(manifest, quarantine_frame, labels_table(dataset.label_rows))


def _manifest_record(dataset: Dataset, clip: ProbedClip, label: LabelRow | None) -> dict:
    video, audio = clip.video, clip.audio
    notes = []
    if clip.audio_error is not None:
        notes.append(f"audio file unusable ({clip.audio_error})")
    if video.has_audio and video.audio_decoded_s > 0:  # one audio policy: the clip's own track
        source, audio_info = "clip", video
    elif audio is not None:  # the organisers' audio file, for a video without a track
        source, audio_info = "file", audio
        notes.append(
            "the video has no audio track: audio from "
            f"{dataset.audio[clip.clip_id].relative_to(dataset.root).as_posix()}"
        )
    else:
        source, audio_info = "none", None
        notes.append("no audio: audio modality missing")
    if label is not None:
        split, values = label.split, label.values
    else:
        split = "test" if dataset.labelled else "unlabelled"
        values = dict.fromkeys(EMOTIONS, float("nan"))
    return {
        "clip_id": clip.clip_id,
        "split": split,
        "video_path": dataset.clips[clip.clip_id].relative_to(dataset.root).as_posix(),
        "audio_path": (
            dataset.audio[clip.clip_id].relative_to(dataset.root).as_posix()
            if source == "file"
            else ""
        ),
        "sha256": clip.sha256,
        "size_bytes": video.size_bytes,
        "container": video.container,
        "duration_s": round(video.video_decoded_s, 3),
        "fps": video.fps,
        "n_frames": video.n_frames,
        "width": video.width,
        "height": video.height,
        "video_codec": video.video_codec,
        "has_audio": source != "none",
        "audio_source": source,
        "audio_codec": audio_info.audio_codec if audio_info else None,
        "sample_rate": audio_info.sample_rate if audio_info else None,
        "has_vit": clip.clip_id in dataset.features.get("vit", {}),
        "has_wav2vec2": clip.clip_id in dataset.features.get("wav2vec2", {}),
        "notes": "; ".join(notes),
        **values,
    }


def validate_folder(
    root: Path,
    out: Path,
    params: ValidateParams,
    workers: int = 0,
    progress: bool = True,
    name: str | None = None,
) -> dict:
    """Validate the dataset at ``root`` into ``out`` (``manifest.parquet``, ``quarantine.csv``,
    ``data_docs/``, ``summary.json``); returns the summary. ``name`` (default: the folder's
    name) names the dataset's Great Expectations runs and batches.

    Raises :class:`~mimicflow.data.layout.DatasetError` only when the dataset as a whole is
    unusable; bad clips and label rows are quarantined.
    """
    from mimicflow.data.expectations import run_data_quality_suites

    dataset = load_dataset(root)
    log.info("validating %d clips in %s", len(dataset.clips), root)
    result = validate_dataset(dataset, params, workers=workers, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.manifest.to_parquet(out / "manifest.parquet", index=False)
    result.quarantine.to_csv(out / "quarantine.csv", index=False)
    quality = run_data_quality_suites(
        result.manifest,
        result.labels,
        out,
        min_duration_s=params.min_duration_s,
        max_duration_s=params.max_duration_s,
        min_fps=params.min_fps,
        max_fps=params.max_fps,
        dataset=name or Path(root).resolve().name,
    )
    if not quality["suites"]["manifest"]["success"]:
        log.warning("the manifest fails its own expectations: see %s", quality["data_docs"])
    manifest = result.manifest
    summary = {
        "clips_found": len(dataset.clips),
        "clips_usable": len(manifest),
        "quarantined_rows": len(result.quarantine),
        "splits": manifest["split"].value_counts().sort_index().to_dict(),
        "clips_without_audio": int((~manifest["has_audio"]).sum()),
        "clips_with_audio_file": int((manifest["audio_source"] == "file").sum()),
        "total_hours": round(float(manifest["duration_s"].sum()) / 3600, 4),
        "gx_manifest_success": quality["suites"]["manifest"]["success"],
        "gx_labels_success": quality["suites"]["labels"].get("success"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "%d usable clips, %d quarantined rows; data docs: %s",
        summary["clips_usable"],
        summary["quarantined_rows"],
        quality["data_docs"],
    )
    return summary
