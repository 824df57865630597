"""Single-clip commands on odd containers: MJPEG AVI with 8 kHz 8-bit PCM, and no audio."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mimicflow.cli import app
from mimicflow.data.synth import face_rig, speech


@pytest.fixture(scope="module")
def params_file(models_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "params.yaml"
    path.write_text(f"models:\n  dir: {models_dir}\n")
    return path


@pytest.fixture(scope="module")
def mjpeg_clip(tmp_path_factory):
    """A talking face as MJPEG in AVI with 8 kHz unsigned 8-bit PCM speech."""
    path = tmp_path_factory.mktemp("odd") / "talking.avi"
    voice = speech.synthesize("I am so full of joy, this is wonderful.", "en-us", 50, 160, 120)
    pcm = np.interp(np.arange(0, len(voice), 2), np.arange(len(voice)), voice)  # 16 → 8 kHz
    face = face_rig.FaceAnimator(face_rig.identity_face(3), (256, 256))
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    frame = face.render(neutral | {"smile": 0.6}, 0.0, 0.0, np.zeros(2))
    with av.open(str(path), "w") as container:
        video = container.add_stream("mjpeg", rate=25)
        video.width, video.height, video.pix_fmt = 256, 256, "yuvj420p"
        sound = container.add_stream("pcm_u8", rate=8000, layout="mono")
        for _ in range(int(25 * len(pcm) / 8000)):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(video.encode())
        data = ((np.clip(pcm, -1, 1) + 1) * 127.5).astype(np.uint8)[None, :]
        chunk = av.AudioFrame.from_ndarray(data, format="u8", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = 8000, 0, Fraction(1, 8000)
        container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


def test_faces_cli_on_mjpeg_avi(mjpeg_clip, params_file, tmp_path):
    out = tmp_path / "crops"
    result = CliRunner().invoke(
        app, ["faces", str(mjpeg_clip), "--out", str(out), "--json", "--params", str(params_file)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["fps_sampled"] == 6 and summary["frames"] >= 12
    assert summary["frames_with_face"] == summary["frames"]
    assert len(list(out.glob("*.jpg"))) == summary["frames_with_face"]
    assert (out / "track.npz").is_file()


def test_transcribe_cli_on_8khz_pcm_u8(mjpeg_clip, params_file):
    result = CliRunner().invoke(
        app, ["transcribe", str(mjpeg_clip), "--json", "--params", str(params_file)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert "joy" in payload["text"].lower() or "wonderful" in payload["text"].lower()


def test_single_clip_commands_reject_non_media(tmp_path, params_file):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    for command in (["faces", str(fake), "--out", str(tmp_path / "o")], ["transcribe", str(fake)]):
        result = CliRunner().invoke(app, [*command, "--params", str(params_file)])
        assert result.exit_code == 2
        assert "not a readable media file" in result.output
