"""One clip's sound: its 16 kHz mono audio (decoded once, cached) and its transcript, made
when missing; and the map over a batch. Speech recognisers load once per process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow.clip.compute import Compute, map_jobs
from mimicflow.clip.folders import ArtefactFolders
from mimicflow.clip.settings import AsrSettings
from mimicflow.data.layout import ClipRef
from mimicflow.store import prune, write_atomic


@cache
def speech_recogniser(settings: AsrSettings):
    from mimicflow.perception.asr import load_asr

    batched = {"batch_size": settings.batch_size} if settings.backend == "faster-whisper" else {}
    return load_asr(
        settings.backend,
        settings.model,
        device=settings.device,
        compute_type=settings.compute_type,
        language=settings.language,
        beam_size=settings.beam_size,
        **batched,
    )


def audio(clip: ClipRef, folders: ArtefactFolders) -> np.ndarray | None:
    """The clip's 16 kHz mono audio (float16 on disk), decoded once and cached; None without
    an audio track."""
    from mimicflow.perception.audio import decode_audio

    path = folders.decoded_audio(clip)
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return data["audio"].astype(np.float32) if bool(data["has_audio"]) else None
    decoded = decode_audio(clip.audio_media)
    stored = np.zeros(0, np.float16) if decoded is None else decoded.astype(np.float16)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, audio=stored, has_audio=decoded is not None)

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)
    return None if decoded is None else stored.astype(np.float32)  # what a reader of the cache gets


@dataclass(frozen=True)
class SpeechJob:
    clip: ClipRef
    settings: AsrSettings
    folders: ArtefactFolders


def transcript(job: SpeechJob) -> dict:
    """The clip's transcript (made when missing, from its cached audio); returns its index row."""
    path = job.folders.transcript(job.clip, job.settings)
    if path.exists():
        result = json.loads(path.read_text())
    else:
        result = speech_recogniser(job.settings).transcribe(audio(job.clip, job.folders)).as_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(result)))
    return {
        "clip_id": job.clip.clip_id,
        "artefact": path.name,
        "has_audio": result["has_audio"],
        "has_speech": result["has_speech"],
        "words": len(result["text"].split()),
        "mean_logprob": result["mean_logprob"],
        "no_speech_prob": result["no_speech_prob"],
    }


def transcript_text(
    clip: ClipRef, settings: AsrSettings, folders: ArtefactFolders, first_segment: bool = False
) -> str:
    """The text of a transcript made by :func:`transcript`: all of it, or with
    ``first_segment`` the recogniser's first segment alone ("" without speech)."""
    result = json.loads(folders.transcript(clip, settings).read_text())
    if first_segment:
        return result["segments"][0]["text"].strip() if result["segments"] else ""
    return result["text"]


def speech_batch(
    clips: list[ClipRef],
    settings: AsrSettings,
    folders: ArtefactFolders,
    compute: Compute = Compute(),
) -> pd.DataFrame:
    """Every clip's decoded audio and transcript; returns the index and drops stale files."""
    done = sum(folders.transcript(c, settings).exists() for c in clips)
    if settings.device.startswith("cuda"):  # one model on the GPU, fed clip after clip
        compute = Compute(workers=1, progress=compute.progress)
    index = map_jobs(
        transcript, [SpeechJob(c, settings, folders) for c in clips], "asr", compute, done
    )
    prune(Path(folders.transcripts), set(index["artefact"]) if len(index) else set(), ".json")
    prune(Path(folders.audio), {folders.decoded_audio(c).name for c in clips}, ".npz")
    return index
