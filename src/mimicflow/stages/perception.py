"""DVC stages ``faces`` and ``asr``: one artefact per usable clip, resumable, parallel.

Each clip's artefact is named by clip id, content hash and a hash of the settings that shape
it, and written atomically; a stage killed half-way resumes without recomputing finished clips.
Models are built once per worker process (cached), never per clip.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow.config import Params
from mimicflow.parallel import map_clips
from mimicflow.perception.audio import SAMPLE_RATE
from mimicflow.stages import face_models, read_stage_output, resolve_model
from mimicflow.store import artefact_name, prune, settings_hash, write_atomic

log = logging.getLogger(__name__)


def _manifest(params: Params) -> pd.DataFrame:
    return read_stage_output(params.validate_.out / "manifest.parquet", "validate")



# --- faces ---------------------------------------------------------------------------------------


@cache
def _face_detector(settings_json: str):
    from mimicflow.perception.faces import load_face_detector

    s = json.loads(settings_json)
    models = {"detector": Path(s["detector"]), "mesh": Path(s["mesh"])}
    return load_face_detector(s["backend"], models, s["threshold"], s["full_range"])


def faces_clip(job: tuple[str, str, str, str]) -> dict:
    """Faces for one clip (skipped when its artefact exists); returns its index row."""
    from mimicflow.perception.faces import load_face_track, process_clip, save_face_track

    clip_id, video, artefact, settings_json = job
    path = Path(artefact)
    if path.exists():
        track = load_face_track(path)
    else:
        s = json.loads(settings_json)
        track = process_clip(video, _face_detector(settings_json), s["fps"], s["crop_size"])
        write_atomic(path, lambda tmp: save_face_track(track, tmp))
    return {"clip_id": clip_id, "artefact": path.name, **track.summary}


def faces_settings(params: Params) -> dict:
    """Everything that shapes a clip's face track (the artefact key; ``faces_clip``'s job)."""
    faces = params.faces
    return {
        "backend": faces.backend, "fps": faces.fps, "crop_size": faces.crop_size,
        "threshold": faces.threshold, "full_range": faces.full_range,
        **{role: str(path or "") for role, path in face_models(params).items()},
    }  # fmt: skip


def run_faces(params: Params, progress: bool = True) -> dict:
    faces = params.faces
    settings = faces_settings(params)
    index = _run_per_clip(params, faces.out, ".npz", settings, faces_clip, "faces", progress)
    return _write_metrics(faces.out, {
        "clips": len(index),
        "frames": int(index["frames"].sum()),
        "face_rate": round(float(index["frames_with_face"].sum() / max(1, index["frames"].sum())), 4),
        "clips_without_face": int((index["frames_with_face"] == 0).sum()),
        "clips_decoded_partly": int((~index["decode_complete"]).sum()),
    })


# --- asr -----------------------------------------------------------------------------------------


@cache
def _asr_backend(settings_json: str):
    from mimicflow.perception.asr import load_asr

    s = json.loads(settings_json)
    return load_asr(s["backend"], s["model"], compute_type=s["compute_type"],
                    language=s["language"], beam_size=s["beam_size"])  # fmt: skip


AUDIO_SETTINGS = {"sample_rate": SAMPLE_RATE, "channels": 1}


def audio_artefact(params: Params, clip_id: str, content_sha256: str) -> Path:
    """Where the asr stage keeps a clip's decoded 16 kHz mono audio (decoded once, reused by
    the audio encoders)."""
    name = artefact_name(clip_id, content_sha256, settings_hash(AUDIO_SETTINGS), ".npz")
    return Path(params.asr.audio_out).resolve() / name


def decoded_audio(media: str, cache: Path) -> np.ndarray | None:
    """The clip's audio from the cache, decoding (and caching) it on first use."""
    from mimicflow.perception.audio import decode_audio

    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            return data["audio"].astype(np.float32) if bool(data["has_audio"]) else None
    audio = decode_audio(media)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            stored = np.zeros(0, np.float16) if audio is None else audio.astype(np.float16)
            np.savez(handle, audio=stored, has_audio=audio is not None)

    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, write)
    return audio


def asr_clip(job: tuple[str, str, str, str, str]) -> dict:
    """Transcribe one clip (skipped when its artefact exists); returns its index row."""
    clip_id, media, artefact, settings_json, audio_cache = job
    path = Path(artefact)
    if path.exists():
        transcript = json.loads(path.read_text())
    else:
        audio = decoded_audio(media, Path(audio_cache))
        transcript = _asr_backend(settings_json).transcribe(audio).as_dict()
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(transcript)))
    return {
        "clip_id": clip_id,
        "artefact": path.name,
        "has_audio": transcript["has_audio"],
        "has_speech": transcript["has_speech"],
        "words": len(transcript["text"].split()),
        "mean_logprob": transcript["mean_logprob"],
        "no_speech_prob": transcript["no_speech_prob"],
    }


def asr_settings(params: Params) -> dict:
    """Everything that shapes a clip's transcript (the artefact key; ``asr_clip``'s job)."""
    asr = params.asr
    return asr.model_dump(mode="json", exclude={"out", "audio_out"}) | {
        "model": resolve_model(params, asr.model)
    }


def run_asr(params: Params, progress: bool = True) -> dict:
    asr = params.asr
    settings = asr_settings(params)
    index = _run_per_clip(params, asr.out, ".json", settings, asr_clip, "asr", progress)
    keep = {audio_artefact(params, r.clip_id, r.sha256).name for r in _manifest(params).itertuples()}
    prune(Path(asr.audio_out), keep, ".npz")
    return _write_metrics(asr.out, {
        "clips": len(index),
        "clips_with_speech": int(index["has_speech"].sum()),
        "clips_without_audio": int((~index["has_audio"]).sum()),
        "mean_words": round(float(index["words"].mean()), 2) if len(index) else 0.0,
    })


# --- shared --------------------------------------------------------------------------------------


def _write_metrics(out: Path, metrics: dict) -> dict:
    """Stage metrics go beside the artefact folder (``<out>.json``), for ``dvc metrics show``."""
    Path(out).with_suffix(".json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _run_per_clip(params, out: Path, suffix: str, settings: dict, func, label, progress):
    """Map ``func`` over the manifest's clips, write ``index.parquet``, drop stale artefacts."""
    manifest = _manifest(params)
    root = Path(params.data.root).resolve()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tag = settings_hash(settings)
    settings_json = json.dumps(settings, sort_keys=True)
    jobs = []
    for row in manifest.itertuples():
        media = row.video_path if label == "faces" or not row.audio_path else row.audio_path
        name = artefact_name(row.clip_id, row.sha256, tag, suffix)
        job = (row.clip_id, str(root / media), str(out / name), settings_json)
        if label == "asr":
            job += (str(audio_artefact(params, row.clip_id, row.sha256)),)
        jobs.append(job)
    done = sum(Path(job[2]).exists() for job in jobs)
    if done:
        log.info("%s: %d of %d clips already done (resuming)", label, done, len(jobs))
    rows = map_clips(func, jobs, workers=params.compute.workers, progress=progress, label=label,
                     scheduler=params.compute.scheduler)  # fmt: skip
    index = pd.DataFrame(rows)
    index.to_parquet(out / "index.parquet", index=False)
    prune(out, set(index["artefact"]) if len(index) else set(), suffix)
    return index
