"""A 20-minute clip through faces and ASR (slow: `make test-all`)."""

from __future__ import annotations

import numpy as np
import pytest

from mimicflow.data.synth import speech
from mimicflow.media import write_video
from mimicflow.perception.asr import load_asr
from mimicflow.perception.audio import SAMPLE_RATE, decode_audio
from mimicflow.perception.faces import load_face_detector, process_clip

MINUTES = 20


@pytest.mark.slow
def test_twenty_minute_clip(tmp_path, models_dir):
    sentence = speech.synthesize(
        "Now this is the end of a very long recording.", "en-us", 50, 160, 120
    )
    audio = np.zeros(MINUTES * 60 * SAMPLE_RATE, np.float32)
    audio[-len(sentence) - SAMPLE_RATE : -SAMPLE_RATE] = sentence  # speech near the end only
    frames = (np.full((64, 64, 3), 90, np.uint8) for _ in range(MINUTES * 60 * 2))  # 2 fps
    clip = tmp_path / "long.mp4"
    write_video(clip, frames, 2, (64, 64), audio)

    decoded = decode_audio(clip)
    assert abs(len(decoded) / SAMPLE_RATE - MINUTES * 60) < 1.0
    transcript = load_asr("faster-whisper", models_dir / "whisper-tiny.en", threads=2).transcribe(
        decoded
    )
    assert "recording" in transcript.text.lower()
    assert transcript.segments[-1].end > (MINUTES - 1) * 60

    detector = load_face_detector(
        "blazeface", {"detector": models_dir / "blazeface", "mesh": models_dir / "facemesh"}, 0.5
    )
    track = process_clip(clip, detector, fps=6, crop_size=112)
    assert len(track.times) == MINUTES * 60 * 2  # a 2 fps source gives every frame, once
    assert track.complete and not track.has_face.any()
