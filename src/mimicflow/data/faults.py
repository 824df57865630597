"""Plant the faults real data has into a dataset, to show and test what validation does with them.

Each planted case gets its own clip id (9000x) and an expected outcome: ``quarantine`` (with a
reason that must mention the given words) or ``manifest`` (usable, possibly with a modality
marked missing).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.data.layout import SPLIT_FILES
from mimicflow.media import write_video


@dataclass(frozen=True)
class PlantedFault:
    clip_id: str
    description: str
    outcome: str  # "quarantine" or "manifest"
    reason_words: str = ""  # words the quarantine reason must contain


# Each planted case's clip id, by name: tests refer to the cases through this table.
FAULTS = {
    "empty": "90001",
    "text_file": "90002",
    "truncated": "90003",
    "audio_only": "90004",
    "no_audio": "90005",
    "too_short": "90006",
    "high_fps": "90007",
    "label_out_of_range": "90008",
    "label_nan": "90009",
    "conflicting_labels": "90010",
    "duplicate_labels": "90011",
    "label_without_clip": "90012",
}


PLANTED = (
    PlantedFault(FAULTS["empty"], "zero-byte clip", "quarantine", "empty file"),
    PlantedFault(
        FAULTS["text_file"], "a text file named .mp4", "quarantine", "not a readable media file"
    ),
    PlantedFault(
        FAULTS["truncated"],
        "truncated clip (header claims more than it holds)",
        "quarantine",
        "truncated",
    ),
    PlantedFault(FAULTS["audio_only"], "audio-only file", "quarantine", "no video stream"),
    PlantedFault(FAULTS["no_audio"], "clip without audio (and no audio/ file)", "manifest"),
    PlantedFault(FAULTS["too_short"], "0.2 s clip", "quarantine", "too short"),
    PlantedFault(FAULTS["high_fps"], "1000 fps clip", "manifest"),
    PlantedFault(
        FAULTS["label_out_of_range"],
        "label out of range (Joy = 1.7)",
        "quarantine",
        "outside [0, 1]",
    ),
    PlantedFault(
        FAULTS["label_nan"], "label NaN (Admiration empty)", "quarantine", "Admiration is missing"
    ),
    PlantedFault(
        FAULTS["conflicting_labels"],
        "duplicated label rows that disagree",
        "quarantine",
        "conflicting",
    ),
    PlantedFault(FAULTS["duplicate_labels"], "duplicated identical label rows", "manifest"),
    PlantedFault(
        FAULTS["label_without_clip"], "label row without a clip", "quarantine", "has no clip"
    ),
)


def _source_frames(root: Path, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames and 16 kHz audio of the dataset's first clip, to build faulty clips from."""
    first = min((root / "raw").glob("*.mp4"))
    with av.open(str(first)) as container:
        frames = [
            f.to_ndarray(format="bgr24") for _, f in zip(range(count), container.decode(video=0))
        ]
    with av.open(str(first)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = [
            r.to_ndarray()[0] for f in container.decode(audio=0) for r in resampler.resample(f)
        ]
    return frames, np.concatenate(chunks)


def plant_faults(root: Path | str) -> list[PlantedFault]:
    """Add the planted cases to a Hume-layout dataset at ``root`` (e.g. a synth set)."""
    root = Path(root)
    raw = root / "raw"
    frames, audio = _source_frames(root, 50)
    height, width = frames[0].shape[:2]
    size = (width, height)
    good = min(raw.glob("*.mp4"))
    clip = {name: raw / f"{clip_id}.mp4" for name, clip_id in FAULTS.items()}

    clip["empty"].write_bytes(b"")
    clip["text_file"].write_text("This is a note, not a video.\n")
    write_video(clip["truncated"], frames * 4, 25, size, np.tile(audio, 2)[: 8 * 16000])
    data = (clip["truncated"]).read_bytes()
    clip["truncated"].write_bytes(data[: len(data) * 2 // 5])
    with av.open(str(clip["audio_only"]), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (audio[None, :16000] * 32767).astype(np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    write_video(clip["no_audio"], frames, 25, size, audio=None)
    write_video(clip["too_short"], frames[:5], 25, size, audio[:3200])
    small = [f[::2, ::2].copy() for f in frames] * 20
    write_video(clip["high_fps"], small, 1000, (width // 2, height // 2), audio[:16000])
    for name in ("label_out_of_range", "label_nan", "conflicting_labels", "duplicate_labels"):
        clip[name].write_bytes(good.read_bytes())

    def row(name: str, **values: float) -> dict:
        return {"Filename": int(FAULTS[name]), **dict.fromkeys(EMOTIONS, 0.25), **values}

    extra_rows = [
        *(
            row(name)
            for name in (
                "empty",
                "text_file",
                "truncated",
                "audio_only",
                "no_audio",
                "too_short",
                "high_fps",
            )
        ),
        row("label_out_of_range", Joy=1.7),
        row("label_nan", Admiration=float("nan")),
        row("conflicting_labels", Joy=0.2),
        row("conflicting_labels", Joy=0.8),
        row("duplicate_labels"),
        row("duplicate_labels"),
        row("label_without_clip"),
    ]
    train_csv = root / SPLIT_FILES["train"]
    labels = pd.read_csv(train_csv)
    pd.concat([labels, pd.DataFrame(extra_rows)], ignore_index=True).to_csv(train_csv, index=False)
    return list(PLANTED)


# ISO BMFF boxes holding a duration (offset of the 32-bit value from the box type, version 0):
# the movie header, each track header and each media header.
_MP4_DURATIONS = {b"mvhd": 20, b"tkhd": 24, b"mdhd": 20}
_MKV_DURATION = b"\x44\x89\x88"  # Matroska Segment/Info/Duration, an 8-byte float


def understate_duration(path: Path, factor: float) -> None:
    """Divide every duration the header of the MP4 or Matroska file at ``path`` states by
    ``factor``, in place, the streams untouched: what a hostile upload does to slip past a
    duration limit that reads only the header."""
    data = bytearray(Path(path).read_bytes())
    if data[4:8] == b"ftyp":
        moov = data.index(b"moov")
        end = moov - 4 + struct.unpack(">I", data[moov - 4 : moov])[0]
        for box, offset in _MP4_DURATIONS.items():
            at = data.find(box, moov, end)
            while at >= 0:
                duration = struct.unpack(">I", data[at + offset : at + offset + 4])[0]
                struct.pack_into(">I", data, at + offset, int(duration / factor))
                at = data.find(box, at + 4, end)
    else:
        at = data.index(_MKV_DURATION) + len(_MKV_DURATION)
        struct.pack_into(">d", data, at, struct.unpack(">d", data[at : at + 8])[0] / factor)
    Path(path).write_bytes(data)


def lying_clip(path: Path, run_s: float, claim_s: float, audio_s: float | None = None) -> Path:
    """A small 10 fps clip, MP4 (H.264/AAC) or, named ``.mkv``, Matroska (MPEG-4/PCM), whose
    video runs ``run_s`` seconds (its audio ``audio_s``, default as long) but whose header
    says ``claim_s``."""
    audio_s = run_s if audio_s is None else audio_s
    frames = [np.full((48, 64, 3), 90, np.uint8)] * int(run_s * 10)
    tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(audio_s * 16000)) / 16000)).astype(
        np.float32
    )
    if Path(path).suffix == ".mkv":
        with av.open(str(path), "w", format="matroska") as container:
            video = container.add_stream("mpeg4", rate=10)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
            sound = container.add_stream("pcm_s16le", rate=16000, layout="mono")
            for image in frames:
                container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            container.mux(video.encode())
            chunk = av.AudioFrame.from_ndarray(
                (tone * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
            )
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, 0, Fraction(1, 16000)
            container.mux(sound.encode(chunk))
            container.mux(sound.encode())
    else:
        write_video(path, frames, 10, (64, 48), audio=tone)
    understate_duration(path, max(run_s, audio_s) / claim_s)
    return Path(path)
