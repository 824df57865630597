"""Clips whose container header understates how long their streams run: what a hostile upload
does to slip past a duration limit that only reads the header."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from mimicflow.data.media import write_video

# ISO BMFF boxes holding a duration (offset of the 32-bit value from the box type, version 0):
# the movie header, each track header and each media header.
MP4_DURATIONS = {b"mvhd": 20, b"tkhd": 24, b"mdhd": 20}
MKV_DURATION = b"\x44\x89\x88"  # Matroska Segment/Info/Duration, an 8-byte float


def understate(path: Path, factor: float) -> None:
    """Divide every duration the header of the MP4 or Matroska file at ``path`` states by
    ``factor``, in place; the streams are untouched."""
    data = bytearray(path.read_bytes())
    if data[4:8] == b"ftyp":
        moov = data.index(b"moov")
        end = moov - 4 + struct.unpack(">I", data[moov - 4 : moov])[0]
        for box, offset in MP4_DURATIONS.items():
            at = data.find(box, moov, end)
            while at >= 0:
                duration = struct.unpack(">I", data[at + offset : at + offset + 4])[0]
                struct.pack_into(">I", data, at + offset, int(duration / factor))
                at = data.find(box, at + 4, end)
    else:
        at = data.index(MKV_DURATION) + len(MKV_DURATION)
        struct.pack_into(">d", data, at, struct.unpack(">d", data[at : at + 8])[0] / factor)
    path.write_bytes(data)


def lying_clip(path: Path, run_s: float, claim_s: float, audio_s: float | None = None) -> Path:
    """A small MP4 (``.mp4``) or Matroska (``.mkv``, via the ffmpeg CLI) clip whose video runs
    ``run_s`` seconds (with audio of ``audio_s``, default as long) but whose header says
    ``claim_s``."""
    import subprocess

    audio_s = run_s if audio_s is None else audio_s
    if path.suffix == ".mkv":
        subprocess.run(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=size=64x48:rate=10:duration={run_s}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=220:sample_rate=16000:duration={audio_s}",
                "-c:v",
                "mpeg4",
                "-c:a",
                "pcm_s16le",
                str(path),
            ],
            check=True,
        )
    else:
        frames = [np.full((48, 64, 3), 90, np.uint8)] * int(run_s * 10)
        tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(int(audio_s * 16000)) / 16000)
        write_video(path, frames, 10, (64, 48), audio=tone.astype(np.float32))
    understate(path, max(run_s, audio_s) / claim_s)
    return path
