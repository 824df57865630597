"""The monitor's inbox against hostile input, without the pipeline: a truncated clip that
validate accepts decodes in every stage that decodes; a file that is no clip is quarantined
with its reason; clips left to settle are counted, and no clip compared is no verdict."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mimicflow.config import Params, ValidateParams
from mimicflow.data.validation import clip_problem
from mimicflow.media import probe_media, write_video


@pytest.fixture
def truncated(tmp_path) -> Path:
    """A clip cut to 88 % of its bytes (the tail of its media data lost): within validate's
    truncation tolerance, and its last packets do not decode."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(50)]
    tone = (0.1 * np.sin(np.arange(2 * 16000) / 10)).astype(np.float32)
    whole = tmp_path / "whole.mp4"
    write_video(whole, frames, 25, (128, 96), audio=tone)
    data = whole.read_bytes()
    clip = tmp_path / "truncated.mp4"
    clip.write_bytes(data[: int(len(data) * 0.88)])
    return clip


def test_every_decoding_stage_shares_validates_tolerance(truncated, tmp_path):
    from mimicflow.monitoring.profile import brightness
    from mimicflow.perception.audio import decode_audio
    from mimicflow.perception.faces import sample_frames

    info = probe_media(truncated)
    assert clip_problem(info, ValidateParams()) is None  # validate accepts it
    faces = tmp_path / "faces.npz"
    np.savez(
        faces, jpeg_offsets=np.zeros(1, np.int64), jpeg=np.zeros(0, np.uint8), has_face=[False]
    )
    video_level, face_level = brightness((str(truncated), str(faces)))  # raised before
    assert 0 < video_level < 255 and np.isnan(face_level)
    sampled = sample_frames(truncated, 25)
    assert not sampled.complete and len(sampled.images) >= 0.8 * info.n_frames
    audio = decode_audio(truncated)
    assert len(audio) >= 0.8 * info.audio_decoded_s * 16000


def _params(root: Path, settle_s: float) -> Params:
    reference = root / "reference"
    reference.mkdir()
    pd.DataFrame({"clip_id": ["a"], "fps": [25.0]}).to_parquet(reference / "profile.parquet")
    np.savez(reference / "projections.npz")
    monitor = {
        k: str(root / k) for k in ("incoming", "work", "archive", "reports", "workspace")
    } | {"reference": str(reference), "settle_s": settle_s}
    return Params.model_validate({"monitor": monitor, "validate": {"out": str(root / "v")}})


def test_unsettled_clips_are_counted_and_a_file_that_is_no_clip_is_quarantined(tmp_path):
    from mimicflow.monitoring.monitor import run_monitor

    params = _params(tmp_path, settle_s=30)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for name in ("00001.mp4", "00002.mp4"):
        write_video(incoming / name, [np.zeros((48, 64, 3), np.uint8)] * 10, 10, (64, 48))
    notes = incoming / "notes.txt"
    notes.write_text("not a clip")
    old = time.time() - 600
    os.utime(notes, (old, old))
    before = time.time()
    summary = run_monitor(params)
    assert summary["drift"] is None and summary["clips"] == 0  # no verdict, not a clean one
    assert summary["waiting"] == 2
    until = pd.Timestamp(summary["waiting_until"]).timestamp()
    assert before + 25 < until < time.time() + 31
    assert summary["quarantine"] == [
        {"file": "not_clips/notes.txt", "reason": summary["quarantine"][0]["reason"]}
    ]
    assert summary["quarantine"][0]["reason"].startswith("not a clip")
    assert sorted(p.name for p in incoming.iterdir()) == ["00001.mp4", "00002.mp4"]
    archived = Path(summary["archive"])
    assert (archived / "not_clips" / "notes.txt").read_text() == "not a clip"
    saved = pd.read_csv(archived / "quarantine.csv")
    assert saved["Filename"].tolist() == ["not_clips/notes.txt"]
    again = run_monitor(params)  # nothing new: still no verdict, still two waiting
    assert again["drift"] is None and again["waiting"] == 2 and again["quarantine"] == []
    json.dumps(again)  # the CLI prints it
