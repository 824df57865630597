"""A shifted batch of clips for drift tests: slower and lower speech, darker video, no faces.

Post-processes clips made by the demo generator: the audio is resampled to play ``slow`` times
longer (slower speech, pitch lowered by the same factor) and attenuated; the video is stretched
to match (frames repeated, same fps and size) and darkened; all but every ``face_every``-th clip
show the generator's face-free scene instead of the person.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.signal import resample_poly

from mimicflow.data.synth import face_rig
from mimicflow.media import write_video
from mimicflow.perception.audio import SAMPLE_RATE, decode_audio


def shift_clip(
    source: Path,
    target: Path,
    slow: float = 2.0,
    gain: float = 0.3,
    volume: float = 0.25,
    no_face: bool = False,
) -> None:
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = round(float(stream.average_rate))
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    height, width = frames[0].shape[:2]
    ratio = Fraction(slow).limit_denominator(10)
    audio = decode_audio(source)
    if audio is not None:
        audio = (resample_poly(audio, ratio.numerator, ratio.denominator) * volume).astype(
            np.float32
        )
    scene = cv2.resize(face_rig.no_face_scene(), (width, height)) if no_face else None
    n_out = math.ceil(len(frames) * slow)

    def stretched():
        for i in range(n_out):
            frame = scene if no_face else frames[min(int(i / slow), len(frames) - 1)]
            yield (frame.astype(np.float32) * gain).astype(np.uint8)

    write_video(target, stretched(), fps, (width, height), audio, SAMPLE_RATE)


def shift_dataset(dataset: Path, out: Path, face_every: int = 8) -> list[Path]:
    """Shift every clip of ``dataset/raw`` into the plain folder ``out`` (no labels, no audio/)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, clip in enumerate(sorted((Path(dataset) / "raw").glob("*.mp4"))):
        shift_clip(clip, out / clip.name, no_face=index % face_every != 0)
        written.append(out / clip.name)
    return written
