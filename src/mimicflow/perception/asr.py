"""Speech recognition: Whisper through faster-whisper (CTranslate2) or openai-whisper (PyTorch),
on 16 kHz mono audio.

A backend is built once per worker (``load_asr``) and then transcribes many clips. Silence or no
audio gives an empty transcript with a flag, never an error.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mimicflow.models.catalogue import ALIGNED_WHISPER
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


def _without_speech(audio: np.ndarray | None) -> Transcript | None:
    """The empty transcript for no audio or silence (Whisper is not asked); None otherwise."""
    if audio is None:
        return empty_transcript(0.0, has_audio=False)
    if audio.size == 0 or float(np.sqrt(np.mean(audio**2))) < SILENCE_RMS:
        return empty_transcript(len(audio) / SAMPLE_RATE, has_audio=True)
    return None


class FasterWhisperASR:
    """faster-whisper on a CTranslate2 model folder (or a model name it can fetch)."""

    def __init__(
        self,
        model: str | Path,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 1,
        language: str | None = "en",
        beam_size: int = 1,
        batch_size: int = 8,
    ):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        kind, _, index = device.partition(":")
        self.model = WhisperModel(
            str(model),
            device=kind,
            device_index=int(index or 0),
            compute_type=compute_type,
            cpu_threads=threads,
        )
        # On a GPU, clips over 30 s go through faster-whisper's batched pipeline (VAD-cut windows
        # transcribed as one batch); on a CPU every clip takes the sequential path.
        self.batched = BatchedInferencePipeline(self.model) if kind == "cuda" else None
        self.language, self.beam_size, self.batch_size = language, beam_size, batch_size

    def transcribe(self, audio: np.ndarray | None) -> Transcript:
        if (silent := _without_speech(audio)) is not None:
            return silent
        duration = len(audio) / SAMPLE_RATE
        options = {
            "language": self.language,
            "beam_size": self.beam_size,
            "word_timestamps": True,
            "condition_on_previous_text": False,
            "temperature": 0.0,
        }
        if self.batched is not None and duration > 30:
            pieces, info = self.batched.transcribe(audio, batch_size=self.batch_size, **options)
        else:
            pieces, info = self.model.transcribe(audio, **options)
        segments = [
            Segment(
                s.start,
                s.end,
                s.text.strip(),
                s.avg_logprob,
                s.no_speech_prob,
                [Word(w.word.strip(), w.start, w.end, w.probability) for w in s.words or []],
            )
            for s in pieces
        ]
        return _transcript(segments, info.language, duration)


class OpenAIWhisperASR:
    """openai-whisper (PyTorch) on a CTranslate2 model folder, a ``.pt`` checkpoint or a model name.

    A CTranslate2 folder is converted once into the cache (see ``converted_checkpoint``); a name as
    "tiny.en" goes to ``whisper.load_model`` (which downloads it). ``compute_type`` "float16" runs
    fp16 on a GPU; anything else (and any CPU run) is fp32. ``threads`` sets torch's CPU threads
    for the whole process.
    """

    def __init__(
        self,
        model: str | Path,
        device: str = "cpu",
        compute_type: str = "float32",
        threads: int = 1,
        language: str | None = "en",
        beam_size: int = 1,
    ):
        import torch

        torch.set_num_threads(threads)
        self.model = load_openai_whisper(model, device)
        self.fp16 = compute_type == "float16" and device != "cpu"
        self.language = language
        self.beam_size = beam_size

    def transcribe(self, audio: np.ndarray | None) -> Transcript:
        if (silent := _without_speech(audio)) is not None:
            return silent
        duration = len(audio) / SAMPLE_RATE
        result = self.model.transcribe(
            audio.astype(np.float32, copy=False),
            language=self.language,
            word_timestamps=True,
            beam_size=None if self.beam_size == 1 else self.beam_size,  # None: greedy, like CT2's 1
            condition_on_previous_text=False,
            fp16=self.fp16,
            verbose=None,
            temperature=0.0,
        )
        segments = [
            Segment(
                s["start"],
                s["end"],
                s["text"].strip(),
                s["avg_logprob"],
                s["no_speech_prob"],
                [
                    Word(w["word"].strip(), w["start"], w["end"], w["probability"])
                    for w in s.get("words", [])
                ],
            )
            for s in result["segments"]
        ]
        return _transcript(segments, result["language"], duration)


def converted_checkpoint(ct2_dir: Path) -> Path:
    """Where a CTranslate2 folder's openai-whisper conversion is kept: a cache keyed by the
    weights' content (``$MIMICFLOW_CACHE``, default ``~/.cache/mimicflow``), so the prepared
    model folders (DVC outputs) stay exactly as fetched."""
    digest = hashlib.sha256((ct2_dir / "model.bin").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("MIMICFLOW_CACHE", Path.home() / ".cache" / "mimicflow"))
    return cache / "openai-whisper" / f"{ct2_dir.name}-{digest}.pt"


def whisper_checkpoint(model: str | Path) -> Path | None:
    """The openai-whisper checkpoint of a Whisper model on disk: a ``.pt``, an adapted folder's
    ``whisper.pt`` or a CTranslate2 folder's conversion (made once); None for anything else."""
    from mimicflow.perception.whisper_convert import convert_ct2_to_openai_whisper

    path = Path(model)
    if path.is_file() and path.suffix == ".pt":
        return path
    if (path / ALIGNED_WHISPER).is_file():
        return path / ALIGNED_WHISPER
    if (path / "model.bin").is_file():
        return convert_ct2_to_openai_whisper(path, converted_checkpoint(path))
    return None


def save_openai_whisper(net, folder: Path) -> Path:
    """An openai-whisper model ``net`` as an adapted folder's checkpoint (:data:`ALIGNED_WHISPER`,
    what :func:`load_openai_whisper` reads); returns its path."""
    import torch

    path = Path(folder) / ALIGNED_WHISPER
    state = {name: tensor.cpu() for name, tensor in net.state_dict().items()}
    torch.save({"dims": asdict(net.dims), "model_state_dict": state}, path)
    return path


def load_openai_whisper(model: str | Path, device: str):
    """``whisper.load_model``, plus CTranslate2 and adapted folders and the alignment heads a
    converted checkpoint carries (``load_model`` sets heads only for the models it names)."""
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    from mimicflow.perception.whisper_convert import convert_ct2_to_openai_whisper

    path = whisper_checkpoint(model) or Path(model)
    if path.is_dir():  # not a Whisper folder: the conversion says why
        path = convert_ct2_to_openai_whisper(path, converted_checkpoint(path))
    if not path.is_file():
        return whisper.load_model(str(model), device=device)
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    net = Whisper(ModelDimensions(**checkpoint["dims"]))
    net.load_state_dict(checkpoint["model_state_dict"])
    if "alignment_heads" in checkpoint:
        net.set_alignment_heads(checkpoint["alignment_heads"])
    return net.to(device)


def _transcript(segments: list[Segment], language: str | None, duration: float) -> Transcript:
    """Segments → transcript; text-less output is no speech. Means are weighted by duration."""
    text = " ".join(s.text for s in segments if s.text).strip()
    if not text:
        return empty_transcript(duration, has_audio=True)
    weights = np.array([s.end - s.start for s in segments]) + 1e-6
    return Transcript(
        text=text,
        language=language,
        segments=segments,
        duration_s=duration,
        has_audio=True,
        has_speech=True,
        mean_logprob=float(np.average([s.avg_logprob for s in segments], weights=weights)),
        no_speech_prob=float(np.average([s.no_speech_prob for s in segments], weights=weights)),
    )


BACKENDS = {"faster-whisper": FasterWhisperASR, "openai-whisper": OpenAIWhisperASR}


def load_asr(backend: str, model: str | Path, **options) -> FasterWhisperASR | OpenAIWhisperASR:
    """Build an ASR backend by name; unknown names get a clear error listing the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown ASR backend {backend!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](model, **options)
