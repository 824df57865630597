"""Audio decoding for every audio consumer (ASR, audio encoders): any container, codec or rate
to 16 kHz mono."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from mimicflow.media import decode_frames

SAMPLE_RATE = 16000


def decode_audio(path: Path | str, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Decode the first audio stream of ``path`` to float32 mono at ``sample_rate``.

    Returns None when the file has no audio stream; damage is met with the validate stage's
    tolerance (:func:`~mimicflow.media.decode_packets`).
    """
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        for frame in decode_frames(container, stream):
            chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
        chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
