"""DVC stage ``features@<set>``: encode every usable clip into a feature set's store.

A set (``features.sets``) names its encoder kind (:mod:`mimicflow.clip.encoders`), which reads
the asr stage's decoded audio (never decoded twice), the faces stage's tracks, the transcripts,
or the organisers' ``vit`` / ``wav2vec2`` pickles when the dataset has them. One process; clips
batched through the encoder (a GPU when present); each clip's features are content-keyed and
atomic, so a killed run resumes; at the end the set is packed.
"""

from __future__ import annotations

import json

import numpy as np

from mimicflow.clip.features import encode_set
from mimicflow.clip.settings import KINDS, EncoderSettings, Runtime
from mimicflow.config import Params
from mimicflow.data.layout import load_dataset
from mimicflow.paths import StagePaths
from mimicflow.perception.encoders import ModelUnavailable
from mimicflow.stages.clips import artefact_folders, manifest_clip_refs, write_metrics


def run_features(params: Params, name: str, progress: bool = True) -> dict:
    """Encode every clip of the manifest for feature set ``name``; pack; return the metrics."""
    paths = StagePaths(params)
    clips = manifest_clip_refs(params)
    settings = EncoderSettings.from_params(params, name)
    organisers = (
        load_dataset(params.data.root).features.get(settings.modality, {})
        if KINDS[settings.kind].reads == "organisers"
        else None
    )
    try:
        packed, meta = encode_set(
            clips,
            settings,
            Runtime.from_params(params),
            artefact_folders(params),
            paths.features(name),
            organisers,
            progress,
        )
    except ModelUnavailable as exc:
        raise exc.for_set(name) from exc
    present = json.loads((packed / "meta.json").read_text())["present"]
    lengths = np.diff(np.load(packed / "offsets.npy"))
    return write_metrics(
        paths.features_metrics(name),
        {
            "clips": len(clips),
            "clips_present": int(sum(present.values())),
            "dim": meta["dim"],
            "mean_frames": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            "model": meta["model"],
        },
    )
