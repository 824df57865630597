"""One clip through the whole chain, in one process: what serving and ``mimicflow predict`` run,
with the functions the stages map over a dataset (the same artefacts, the same encoders)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mimicflow.clip.encoders import clip_encoder
from mimicflow.clip.faces import FacesJob, faces
from mimicflow.clip.features import ClipFeatures, inputs
from mimicflow.clip.folders import ArtefactFolders
from mimicflow.clip.settings import ClipSettings
from mimicflow.clip.speech import SpeechJob, transcript, transcript_text
from mimicflow.data.layout import ClipRef


def clip_features(clip: ClipRef, settings: ClipSettings, folders: ArtefactFolders) -> ClipFeatures:
    """One clip through the whole chain, as the stages take a dataset's clips: faces and
    transcript side by side (single-threaded, as the stages' workers run), then each encoder."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), ThreadPoolExecutor(2) as pool:
        face_job = pool.submit(faces, FacesJob(clip, settings.faces, folders))
        speech_job = pool.submit(transcript, SpeechJob(clip, settings.asr, folders))
        face_row, speech_row = face_job.result(), speech_job.result()
    features = {}
    for name, encoder in settings.encoders.items():
        values, mask = clip_encoder(encoder, settings.runtime).encode(
            inputs(encoder, folders)([clip])
        )[0]
        features[name] = (np.asarray(values, np.float16), np.asarray(mask, bool))
    return ClipFeatures(
        features,
        transcript_text(clip, settings.asr, folders),
        bool(speech_row["has_audio"]),
        float(face_row["face_rate"]),
    )
