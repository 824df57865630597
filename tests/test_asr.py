"""ASR with the real embedded Whisper tiny.en weights, and audio decoding from odd containers."""

from __future__ import annotations

import json
from fractions import Fraction
from itertools import pairwise

import av
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mimicflow.cli import app
from mimicflow.config import Params
from mimicflow.models.catalogue import catalogue, resolve
from mimicflow.perception.asr import load_asr
from mimicflow.perception.audio import SAMPLE_RATE, decode_audio


@pytest.fixture(scope="module")
def asr(models_dir):
    model = resolve(Params().asr.model, models_dir, catalogue())
    return load_asr("faster-whisper", model, threads=2)


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref = [w.strip(".,!?").lower() for w in reference.split()]
    hyp = [w.strip(".,!?").lower() for w in hypothesis.split()]
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))


def test_transcribes_the_demo_speech(asr, synth_root):
    truth = pd.read_csv(synth_root / "synth_truth.csv", dtype=str, keep_default_na=False)
    spoken = truth[truth["text"] != ""].head(3)
    errors = []
    for row in spoken.itertuples():
        transcript = asr.transcribe(decode_audio(synth_root / "raw" / f"{row.clip_id}.mp4"))
        assert transcript.has_speech and transcript.language == "en"
        words = [w for s in transcript.segments for w in s.words]
        assert all(a.start <= b.start for a, b in pairwise(words))  # word timestamps
        errors.append(word_error_rate(row.text, transcript.text))
    assert np.median(errors) < 0.4, errors


def test_silence_and_missing_audio_are_flags_not_errors(asr):
    silent = asr.transcribe(np.zeros(3 * SAMPLE_RATE, np.float32))
    assert (silent.text, silent.has_audio, silent.has_speech) == ("", True, False)
    assert silent.duration_s == pytest.approx(3.0)
    missing = asr.transcribe(None)
    assert (missing.has_audio, missing.has_speech) == (False, False)


def _write_odd_clip(path, video_codec, audio_codec, rate, layout, fmt):
    seconds = 1.0
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(
        np.float32
    )
    channels = 2 if layout == "stereo" else 1
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=25)
        video.width, video.height = 64, 64
        video.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else "yuv420p"
        sound = container.add_stream(audio_codec, rate=rate, layout=layout)
        for _ in range(25):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = np.repeat(tone[None, :], channels, axis=0)
        if fmt == "u8":
            data = ((samples + 1) * 127.5).astype(np.uint8).T.reshape(1, -1)
        else:
            data = samples.T.reshape(1, -1).astype(np.float32) if fmt == "flt" else samples
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        container.mux(sound.encode(frame))
        container.mux(sound.encode())


@pytest.mark.parametrize(
    ("name", "video_codec", "audio_codec", "rate", "layout", "fmt"),
    [
        ("mjpeg_pcm_u8_8k.avi", "mjpeg", "pcm_u8", 8000, "mono", "u8"),
        ("h264_aac_48k_stereo.mp4", "libx264", "aac", 48000, "stereo", "fltp"),
    ],
)
def test_odd_containers_decode_to_16k_mono(
    tmp_path, name, video_codec, audio_codec, rate, layout, fmt
):
    path = tmp_path / name
    _write_odd_clip(path, video_codec, audio_codec, rate, layout, fmt)
    audio = decode_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(SAMPLE_RATE, rel=0.1)
    assert 0.1 < np.abs(audio).max() <= 1.0


def test_transcribe_cli_json(synth_root, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"models:\n  dir: {tmp_path / 'models'}\n")
    result = CliRunner().invoke(
        app,
        ["transcribe", str(synth_root / "raw" / "00001.mp4"), "--json", "--params", str(params)],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    truth = pd.read_csv(synth_root / "synth_truth.csv", dtype=str, keep_default_na=False)
    spoken = truth.set_index("clip_id").loc["00001", "text"]
    assert payload["language"] == "en" and payload["has_speech"]
    assert word_error_rate(spoken, payload["text"]) < 0.5, (spoken, payload["text"])
    assert payload["segments"] and payload["segments"][0]["words"]
