"""Plant the faults real data has into a dataset, to show and test what validation does with them.

Each planted case gets its own clip id (9000x) and an expected outcome: ``quarantine`` (with a
reason that must mention the given words) or ``manifest`` (usable, possibly with a modality
marked missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.data.layout import SPLIT_FILES
from mimicflow.data.media import write_video


@dataclass(frozen=True)
class PlantedFault:
    clip_id: str
    description: str
    outcome: str  # "quarantine" or "manifest"
    reason_words: str = ""  # words the quarantine reason must contain


PLANTED = (
    PlantedFault("90001", "zero-byte clip", "quarantine", "empty file"),
    PlantedFault("90002", "a text file named .mp4", "quarantine", "not a readable media file"),
    PlantedFault("90003", "truncated clip (header claims more than it holds)", "quarantine",
                 "truncated"),
    PlantedFault("90004", "audio-only file", "quarantine", "no video stream"),
    PlantedFault("90005", "clip without audio (and no audio/ file)", "manifest"),
    PlantedFault("90006", "0.2 s clip", "quarantine", "too short"),
    PlantedFault("90007", "1000 fps clip", "manifest"),
    PlantedFault("90008", "label out of range (Joy = 1.7)", "quarantine", "outside [0, 1]"),
    PlantedFault("90009", "label NaN (Admiration empty)", "quarantine", "Admiration is missing"),
    PlantedFault("90010", "duplicated label rows that disagree", "quarantine", "conflicting"),
    PlantedFault("90011", "duplicated identical label rows", "manifest"),
    PlantedFault("90012", "label row without a clip", "quarantine", "has no clip"),
)  # fmt: skip


def _source_frames(root: Path, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames and 16 kHz audio of the dataset's first clip, to build faulty clips from."""
    first = min((root / "raw").glob("*.mp4"))
    with av.open(str(first)) as container:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(count), container.decode(video=0))]
    with av.open(str(first)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = [r.to_ndarray()[0] for f in container.decode(audio=0) for r in resampler.resample(f)]
    return frames, np.concatenate(chunks)


def plant_faults(root: Path | str) -> list[PlantedFault]:
    """Add the planted cases to a Hume-layout dataset at ``root`` (e.g. a synth set)."""
    root = Path(root)
    raw = root / "raw"
    frames, audio = _source_frames(root, 50)
    height, width = frames[0].shape[:2]
    size = (width, height)
    good = min(raw.glob("*.mp4"))

    (raw / "90001.mp4").write_bytes(b"")
    (raw / "90002.mp4").write_text("This is a note, not a video.\n")
    write_video(raw / "90003.mp4", frames * 4, 25, size, np.tile(audio, 2)[: 8 * 16000])
    data = (raw / "90003.mp4").read_bytes()
    (raw / "90003.mp4").write_bytes(data[: len(data) * 2 // 5])
    with av.open(str(raw / "90004.mp4"), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray((audio[None, :16000] * 32767).astype(np.int16),
                                           format="s16", layout="mono")  # fmt: skip
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    write_video(raw / "90005.mp4", frames, 25, size, audio=None)
    write_video(raw / "90006.mp4", frames[:5], 25, size, audio[:3200])
    small = [f[::2, ::2].copy() for f in frames] * 20
    write_video(raw / "90007.mp4", small, 1000, (width // 2, height // 2), audio[:16000])
    for clip_id in ("90008", "90009", "90010", "90011"):
        (raw / f"{clip_id}.mp4").write_bytes(good.read_bytes())

    def row(clip_id: str, **values: float) -> dict:
        return {"Filename": int(clip_id), **dict.fromkeys(EMOTIONS, 0.25), **values}

    extra_rows = [
        row("90001"), row("90002"), row("90003"), row("90004"), row("90005"), row("90006"),
        row("90007"), row("90008", Joy=1.7), row("90009", Admiration=float("nan")),
        row("90010", Joy=0.2), row("90010", Joy=0.8), row("90011"), row("90011"), row("90012"),
    ]  # fmt: skip
    train_csv = root / SPLIT_FILES["train"]
    labels = pd.read_csv(train_csv)
    pd.concat([labels, pd.DataFrame(extra_rows)], ignore_index=True).to_csv(train_csv, index=False)
    return list(PLANTED)
