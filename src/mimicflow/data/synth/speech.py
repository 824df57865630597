"""Speech for the demo clips: espeak-ng says the clip's sentences with emotion-driven prosody."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
from scipy.signal import resample_poly

ESPEAK_RATE = 22050  # espeak-ng's native rate
SAMPLE_RATE = 16000  # what the clips carry (as the organisers' audio/*.mp3)


class SpeechError(RuntimeError):
    pass


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def prosody_arguments(knobs: dict[str, float], speaker_pitch: int) -> dict[str, int]:
    """Map prosody knobs (≈0–1.5) to espeak-ng's pitch (0–99), rate (wpm) and amplitude (0–200)."""
    return {
        "pitch": int(np.clip(speaker_pitch + 38 * knobs["pitch"], 0, 99)),
        "rate": int(np.clip(135 + 75 * knobs["rate"], 80, 320)),
        "amplitude": int(np.clip(60 + 90 * knobs["loudness"], 10, 200)),
    }


def synthesize(text: str, voice: str, pitch: int, rate: int, amplitude: int) -> np.ndarray:
    """Speak ``text``; returns float32 mono samples at :data:`SAMPLE_RATE` (16 kHz).

    The text goes to espeak-ng as an argument list (never through a shell).
    """
    if not espeak_available():
        raise SpeechError("espeak-ng is not installed (apt-get install espeak-ng)")
    command = [
        "espeak-ng",
        "--stdout",
        "-v",
        voice,
        "-p",
        str(pitch),
        "-s",
        str(rate),
        "-a",
        str(amplitude),
        "--",
        text,
    ]
    result = subprocess.run(command, capture_output=True, check=False, timeout=60)
    if result.returncode != 0 or not result.stdout:
        raise SpeechError(f"espeak-ng failed for voice {voice}: {result.stderr.decode()[:200]}")
    with wave.open(io.BytesIO(result.stdout)) as wav:
        frames = wav.readframes(wav.getnframes())
        if wav.getframerate() != ESPEAK_RATE or wav.getsampwidth() != 2:
            raise SpeechError(f"unexpected espeak-ng output format ({wav.getframerate()} Hz)")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return resample_poly(samples, SAMPLE_RATE // 50, ESPEAK_RATE // 50).astype(np.float32)


def frame_envelope(samples: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """RMS loudness per video frame, scaled to [0, 1] (drives the talking mouth)."""
    hop = SAMPLE_RATE / fps
    rms = np.zeros(n_frames, dtype=np.float32)
    for i in range(n_frames):
        window = samples[int(i * hop) : int((i + 1) * hop)]
        if window.size:
            rms[i] = np.sqrt(np.mean(window**2))
    peak = rms.max()
    return rms / peak if peak > 0 else rms
