"""DVC stage ``asr``: every usable clip's decoded audio and transcript (resumable, parallel),
the index and the stage metrics."""

from __future__ import annotations

from mimicflow.clip.settings import AsrSettings
from mimicflow.clip.speech import speech_batch
from mimicflow.config import Params
from mimicflow.paths import StagePaths
from mimicflow.stages.clips import artefact_folders, compute, manifest_clip_refs, write_metrics


def run_asr(params: Params, progress: bool = True) -> dict:
    paths = StagePaths(params)
    settings = AsrSettings.from_params(params)  # a setting this machine cannot run fails first
    index = speech_batch(
        manifest_clip_refs(params), settings, artefact_folders(params), compute(params, progress)
    )
    index.to_parquet(paths.index(paths.transcripts), index=False)
    return write_metrics(
        paths.metrics(paths.transcripts),
        {
            "clips": len(index),
            "clips_with_speech": int(index["has_speech"].sum()) if len(index) else 0,
            "clips_without_audio": int((~index["has_audio"]).sum()) if len(index) else 0,
            "mean_words": round(float(index["words"].mean()), 2) if len(index) else 0.0,
        },
    )
