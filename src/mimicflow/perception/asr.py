"""Speech recognition: Whisper through faster-whisper (CTranslate2), on 16 kHz mono audio.

A backend is built once per worker (``load_asr``) and then transcribes many clips. Silence or no
audio gives an empty transcript with a flag, never an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mimicflow.perception.audio import SAMPLE_RATE

SILENCE_RMS = 1e-3  # below this the clip is silent: Whisper is not asked (it would hallucinate)


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: list[Word] = field(default_factory=list)


@dataclass
class Transcript:
    text: str
    language: str | None
    segments: list[Segment]
    duration_s: float
    has_audio: bool
    has_speech: bool
    mean_logprob: float | None
    no_speech_prob: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def empty_transcript(duration_s: float, has_audio: bool) -> Transcript:
    return Transcript("", None, [], duration_s, has_audio, False, None, None)


class FasterWhisperASR:
    """faster-whisper on a CTranslate2 model folder (or a model name it can fetch)."""

    def __init__(self, model: str | Path, device: str = "cpu", compute_type: str = "int8",
                 threads: int = 1, language: str | None = "en", beam_size: int = 1):  # fmt: skip
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(model), device=device, compute_type=compute_type,
                                  cpu_threads=threads)  # fmt: skip
        self.language = language
        self.beam_size = beam_size

    def transcribe(self, audio: np.ndarray | None) -> Transcript:
        if audio is None:
            return empty_transcript(0.0, has_audio=False)
        duration = len(audio) / SAMPLE_RATE
        if audio.size == 0 or float(np.sqrt(np.mean(audio**2))) < SILENCE_RMS:
            return empty_transcript(duration, has_audio=True)
        pieces, info = self.model.transcribe(
            audio, language=self.language, beam_size=self.beam_size, word_timestamps=True,
            condition_on_previous_text=False,
        )  # fmt: skip
        segments = [
            Segment(s.start, s.end, s.text.strip(), s.avg_logprob, s.no_speech_prob,
                    [Word(w.word.strip(), w.start, w.end, w.probability) for w in s.words or []])
            for s in pieces
        ]  # fmt: skip
        text = " ".join(s.text for s in segments if s.text).strip()
        if not text:
            return empty_transcript(duration, has_audio=True)
        weights = np.array([s.end - s.start for s in segments]) + 1e-6
        return Transcript(
            text=text,
            language=info.language,
            segments=segments,
            duration_s=duration,
            has_audio=True,
            has_speech=True,
            mean_logprob=float(np.average([s.avg_logprob for s in segments], weights=weights)),
            no_speech_prob=float(np.average([s.no_speech_prob for s in segments], weights=weights)),
        )


BACKENDS = {"faster-whisper": FasterWhisperASR}


def load_asr(backend: str, model: str | Path, **options) -> FasterWhisperASR:
    """Build an ASR backend by name; unknown names get a clear error listing the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ASR backend {backend!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](model, **options)
