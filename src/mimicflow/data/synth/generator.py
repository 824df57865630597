"""``mimicflow synth``: a synthetic demo dataset in exactly the Hume-Vidmimic2 layout.

Writes ``raw/*.mp4`` (animated real faces + speech), ``audio/*.mp3`` (16 kHz mono),
``train_split.csv`` / ``valid_split.csv`` (integer Filename, k/N labels; test clips have none),
and beside them ``oracle.json`` (the oracle ceiling and per-modality signal strengths) and
``synth_truth.csv`` (what each clip was built from, for tests and debugging).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.data.synth import face_rig, speech
from mimicflow.data.synth.scenario import ClipPlan, sample_plans, signal_report
from mimicflow.media import write_audio, write_video
from mimicflow.parallel import map_clips

NOISE_FLOOR = 0.002  # room noise, so silence is not digital zero
SPEAKER_PITCH = (30, 50, 40, 55, 25, 45)  # espeak pitch baseline per speaker voice


def generate_dataset(out: Path | str, n: int, seed: int, workers: int = 0, progress=True) -> dict:
    """Generate ``n`` clips into ``out`` (replacing what was there); returns the oracle report."""
    if not speech.espeak_available():
        raise speech.SpeechError("espeak-ng is not installed (apt-get install espeak-ng)")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "raw").mkdir(parents=True)
    (out / "audio").mkdir()

    plans = sample_plans(n, seed, face_rig.identities())
    jobs = [(plan, str(out), seed) for plan in plans]
    transcripts = map_clips(render_clip, jobs, workers=workers, progress=progress, label="synth")

    for split in ("train", "valid"):
        rows = [
            {"Filename": int(p.clip_id), **dict(zip(EMOTIONS, p.label))}
            for p in plans
            if p.split == split
        ]
        pd.DataFrame(rows, columns=["Filename", *EMOTIONS]).to_csv(
            out / f"{split}_split.csv", index=False
        )
    truth = pd.DataFrame(
        [
            {
                "clip_id": p.clip_id,
                "split": p.split,
                "identity": p.identity,
                "fps": p.fps,
                "width": p.size[0],
                "height": p.size[1],
                "voice": p.voice,
                "hard_cases": ";".join(p.hard_cases),
                "text": text,
                "annotators": p.annotators,
                **{f"latent_{e}": v for e, v in zip(EMOTIONS, p.latent)},
                **{f"label_{e}": v for e, v in zip(EMOTIONS, p.label)},
            }
            for p, text in zip(plans, transcripts)
        ]
    )
    truth.to_csv(out / "synth_truth.csv", index=False)
    report = signal_report(plans) | {"n_clips": n, "seed": seed}
    (out / "oracle.json").write_text(json.dumps(report, indent=2))
    return report


def render_clip(job: tuple[ClipPlan, str, int]) -> str:
    """Render one clip's video and audio files; returns the words spoken."""
    plan, out, seed = job
    cv2.setNumThreads(1)  # parallelism comes from the process pool
    rng = np.random.default_rng([seed, plan.index])
    silent = "silent" in plan.hard_cases
    text = "" if silent else " ".join(plan.sentences)
    if text:
        prosody = speech.prosody_arguments(plan.audio_knobs, SPEAKER_PITCH[plan.identity % 6])
        voiced = speech.synthesize(text, plan.voice, **prosody)
    else:
        voiced = np.zeros(int(rng.uniform(1.5, 5.0) * speech.SAMPLE_RATE), dtype=np.float32)
    rate = speech.SAMPLE_RATE
    lead, tail = int(plan.lead_in_s * rate), int(plan.tail_s * rate)
    audio = np.concatenate([np.zeros(lead, np.float32), voiced, np.zeros(tail, np.float32)])
    audio += rng.normal(0.0, NOISE_FLOOR, size=audio.size).astype(np.float32)

    n_frames = max(1, math.ceil(len(audio) / rate * plan.fps))
    speech_end_s = (lead + len(voiced)) / rate
    frames = _frames(
        plan, seed, rng, n_frames, speech.frame_envelope(audio, plan.fps, n_frames), speech_end_s
    )
    write_video(Path(out) / "raw" / f"{plan.clip_id}.mp4", frames, plan.fps, plan.size, audio, rate)
    write_audio(Path(out) / "audio" / f"{plan.clip_id}.mp3", audio, rate)
    return text


def _frames(
    plan: ClipPlan, seed: int, rng, n_frames: int, loudness: np.ndarray, speech_end_s: float
):
    """Yield the clip's BGR frames: expression envelopes, talking mouth, head motion, hard cases."""
    times = np.arange(n_frames) / plan.fps
    onset = plan.lead_in_s + rng.uniform(0.0, 0.5)
    envelope = (
        _sigmoid((times - onset) / 0.2)
        * (0.35 + 0.65 * _sigmoid((speech_end_s + 0.8 - times) / 0.3))
        * (0.9 + 0.1 * np.sin(2 * np.pi * times / rng.uniform(1.5, 4.0)))
    )
    roll = rng.uniform(2, 7) * np.sin(2 * np.pi * times / rng.uniform(2, 6) + rng.uniform(0, 6))
    yaw = rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * times / rng.uniform(2, 6) + rng.uniform(0, 6))
    drift = np.cumsum(rng.normal(0.0, 0.4, size=(n_frames, 2)), axis=0)
    drift -= drift.mean(axis=0)

    if "no_face" in plan.hard_cases:
        scene = face_rig.no_face_scene()
        width, height = plan.size
        base = cv2.resize(scene, (width, height), interpolation=cv2.INTER_AREA)
        for i in range(n_frames):
            yield np.roll(base, (int(drift[i, 1]), int(drift[i, 0])), axis=(0, 1))
        return

    animator = face_rig.FaceAnimator(face_rig.identity_face(plan.identity), plan.size)
    gain = rng.uniform(0.18, 0.32) if "dark" in plan.hard_cases else None
    noise_rng = np.random.default_rng([seed, plan.index, 1])
    for i in range(n_frames):
        activation = {au: plan.face_knobs[au] * envelope[i] for au in face_rig.ACTION_UNITS}
        activation["mouth_open"] += 0.45 * loudness[i]
        frame = animator.render(activation, float(yaw[i]), float(roll[i]), drift[i])
        if "occluded" in plan.hard_cases:
            face_rig.occlude(
                frame, animator.landmarks, np.random.default_rng([seed, plan.index, 2])
            )
        if gain is not None:
            frame = face_rig.darken(frame, gain, noise_rng)
        yield frame


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
