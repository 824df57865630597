"""The encoder kinds (``features.sets.<set>.kind``), each registered beside its class: the
encoder over a batch of clips' inputs, ``encode(inputs)`` → per clip ``(values T × d float32,
mask (T,) bool)``.

Inputs per kind's ``reads``: ``audio`` a clip's 16 kHz audio (None without a track); ``faces``
its face track; ``transcript`` its transcript; ``organisers`` the organisers' pickle (None where
absent). A new kind is a class with ``encode`` and ``meta`` and its :class:`EncoderKind`. Every
encoder is batch-independent: a clip's features are the same alone or in any batch, so the
features a stage stores are the features serving computes. Encoders are built once per process
(:func:`clip_encoder`); their networks load on first use.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from mimicflow.clip.settings import (
    KINDS,
    EncoderKind,
    EncoderSettings,
    Runtime,
    is_whisper,
    register_kind,
)

Encoded = tuple[np.ndarray, np.ndarray]
EGEMAPS_DIM = 25


def _whole(values: np.ndarray) -> Encoded:
    return values, np.ones(len(values), bool)


def _absent(dim: int) -> Encoded:
    return np.zeros((0, dim), np.float32), np.zeros(0, bool)


class _Encoder:
    """An encoder whose network loads on first use."""

    def __init__(self, settings: EncoderSettings, runtime: Runtime):
        self.settings, self.runtime = settings, runtime
        self._net = None

    @property
    def net(self):
        if self._net is None:
            self._net = self._load()
        return self._net

    def _load(self):
        raise NotImplementedError


def _cut(audio: np.ndarray | None, seconds: float | None) -> np.ndarray | None:
    """The first ``seconds`` of a clip's audio (all of it without a cut)."""
    from mimicflow.perception.audio import SAMPLE_RATE

    return audio if audio is None or seconds is None else audio[: int(seconds * SAMPLE_RATE)]


class AudioEncoder(_Encoder):
    """``whisper``: a Whisper model's encoder states (a CTranslate2 folder, ``.pt`` or adapted
    folder); ``audio-transformers``: any transformers speech model's hidden states (and its
    regression head's outputs). Settings made without a kind go by the model's files."""

    def _load(self):
        from mimicflow.perception import encoders

        s, runtime = self.settings, self.runtime
        if s.kind != "whisper" and (s.kind or not is_whisper(s.model)):
            return encoders.HFAudioEncoder(
                s.model,
                s.layers,
                s.layer_merge,
                runtime.device,
                runtime.batch_size,
                head_outputs=s.head_outputs,
                trust_remote_code=s.trust_remote_code,
            )
        if s.head_outputs:
            raise encoders.ModelUnavailable(
                f"{s.model} is a Whisper model: {{setting}}.head_outputs needs a "
                "transformers model with a regression head"
            )
        return encoders.WhisperAudioEncoder(
            s.model, s.layers, s.layer_merge, runtime.device, runtime.batch_size
        )

    def encode(self, audios: list[np.ndarray | None]) -> list[Encoded]:
        audios = [_cut(a, self.settings.audio_cut_s) for a in audios]
        present = [a for a in audios if a is not None and a.size]
        encoded = iter(self.net.encode(present)) if present else iter(())
        return [
            _whole(next(encoded)) if a is not None and a.size else _absent(self.net.info.dim)
            for a in audios
        ]

    def meta(self) -> dict:
        info = self.net.info
        return {
            "model": self.settings.model,
            "layers": list(info.layers),
            "dim": info.dim,
            "rate_hz": info.rate_hz,
            "audio_cut_s": self.settings.audio_cut_s,
        }


class FaceMeasures(_Encoder):
    """FaceMesh features over the face track: facial measures + the FER model's expression
    probabilities per frame (``face-measures``), or the measures and head pose alone
    (``motion``, no model)."""

    def _load(self):
        if not self.settings.model:
            return None
        from mimicflow.perception.visual_default import ExpressionClassifier

        return ExpressionClassifier(Path(self.settings.model))

    def encode(self, tracks: list) -> list[Encoded]:
        from mimicflow.perception.visual_default import visual_default_features

        return [visual_default_features(track, self.net)[:2] for track in tracks]

    def meta(self) -> dict:
        from mimicflow.perception.visual_default import EXPRESSION_NAMES, FACIAL_MEASURE_NAMES

        columns = [*FACIAL_MEASURE_NAMES, *(EXPRESSION_NAMES if self.settings.model else ())]
        return {
            "model": self.settings.model or self.settings.kind,
            "layers": list(self.settings.layers),
            "dim": len(columns),
            "rate_hz": self.settings.faces.fps,
            "columns": columns,
        }


class VisualEncoder(_Encoder):
    """Any transformers image model over the aligned crops, one vector per crop (``pooling``)."""

    def _load(self):
        from mimicflow.perception.encoders import HFVisualEncoder

        s = self.settings
        return HFVisualEncoder(
            s.model,
            s.layers,
            s.layer_merge,
            s.pooling,
            self.runtime.device,
            self.runtime.batch_size,
            trust_remote_code=s.trust_remote_code,
        )

    def encode(self, tracks: list) -> list[Encoded]:
        crops = [[c[..., ::-1] for c, f in zip(t.crops, t.has_face) if f] for t in tracks]
        results = []
        for track, vectors in zip(tracks, self.net.encode(crops)):
            values = np.zeros((len(track.has_face), self.net.info.dim), np.float32)
            values[track.has_face] = vectors
            results.append((values, track.has_face.copy()))
        return results

    def meta(self) -> dict:
        return {
            "model": self.settings.model,
            "layers": list(self.settings.layers),
            "dim": self.net.info.dim,
            "rate_hz": self.settings.faces.fps,
            "columns": None,
        }


class TextEncoder(_Encoder):
    """Any transformers text model over transcripts."""

    def _load(self):
        from mimicflow.perception.encoders import HFTextEncoder

        s = self.settings
        return HFTextEncoder(
            s.model,
            s.layers,
            s.layer_merge,
            s.pooling,
            s.normalize,
            self.runtime.device,
            self.runtime.batch_size,
            s.max_tokens,
            trust_remote_code=s.trust_remote_code,
        )

    def encode(self, texts: list[str]) -> list[Encoded]:
        return [_whole(values) for values in self.net.encode(texts)]

    def meta(self) -> dict:
        return {
            "model": self.settings.model,
            "layers": list(self.settings.layers),
            "dim": self.net.info.dim,
            "rate_hz": None,
            "pooling": self.settings.pooling,
        }


class EgemapsEncoder(_Encoder):
    """eGeMAPS low-level descriptors (openSMILE, optional: research-only licence), 100 frames/s."""

    learns_width = True  # its columns come from a clip

    def __init__(self, settings: EncoderSettings, runtime: Runtime):
        super().__init__(settings, runtime)
        self._columns: list[str] | None = None

    def _load(self):
        try:
            import opensmile
        except ImportError as exc:
            raise RuntimeError(
                "eGeMAPS features need opensmile: pip install "
                "'mimicflow[prosody]' (research-only licence)"
            ) from exc
        return opensmile.Smile(
            opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.LowLevelDescriptors
        )

    def encode(self, audios: list[np.ndarray | None]) -> list[Encoded]:
        from mimicflow.perception.audio import SAMPLE_RATE

        results = []
        for audio in audios:
            audio = _cut(audio, self.settings.audio_cut_s)
            if audio is None or not audio.size:
                results.append(_absent(EGEMAPS_DIM))
                continue
            frame = self.net.process_signal(audio, SAMPLE_RATE)
            self._columns = list(frame.columns)
            results.append(_whole(frame.to_numpy(np.float32)))
        return results

    def meta(self) -> dict:
        return {
            "model": "eGeMAPSv02 LLD",
            "layers": None,
            "dim": EGEMAPS_DIM,
            "rate_hz": 100.0,
            "columns": self._columns,
        }


class OrganisersFeatures(_Encoder):
    """The organisers' pre-extracted ``vit``/``wav2vec2`` pickles (their dataset's clips only)."""

    learns_width = True  # its width comes from a clip

    def __init__(self, settings: EncoderSettings, runtime: Runtime):
        super().__init__(settings, runtime)
        self._dim = 0

    def encode(self, paths: list[Path | None]) -> list[Encoded]:
        from mimicflow.data.layout import read_feature_pickle

        results = []
        for path in paths:
            if path is None:
                results.append(_absent(self._dim))
                continue
            values = read_feature_pickle(path)
            self._dim = values.shape[1]
            results.append(_whole(values))
        return results

    def meta(self) -> dict:
        return {"model": self.settings.model, "layers": None, "dim": self._dim, "rate_hz": None}


_TRANSFORMERS = ("layers", "layer_merge", "trust_remote_code")
_AUDIO = (*_TRANSFORMERS, "audio_cut_s", "head_outputs", "projected")
for _kind in (
    EncoderKind(
        "whisper", ("audio",), "audio", AudioEncoder, _AUDIO, adaptable=True, legacy_key=()
    ),
    EncoderKind(
        "audio-transformers",
        ("audio",),
        "audio",
        AudioEncoder,
        _AUDIO,
        adaptable=True,
        legacy_key=(),
    ),
    EncoderKind(
        "face-measures",
        ("visual",),
        "faces",
        FaceMeasures,
        model="fer_model",
        legacy_key=(("pooling", "default"),),
    ),
    EncoderKind(
        "motion",
        ("visual",),
        "faces",
        FaceMeasures,
        model=None,
        legacy_key=(("pooling", "motion"),),
    ),
    EncoderKind(
        "visual-transformers",
        ("visual",),
        "faces",
        VisualEncoder,
        (*_TRANSFORMERS, "pooling", "projected"),
        adaptable=True,
        legacy_key=(),
    ),
    EncoderKind(
        "text-transformers",
        ("text",),
        "transcript",
        TextEncoder,
        (*_TRANSFORMERS, "pooling", "normalize", "max_tokens", "transcript"),
        adaptable=True,
        legacy_key=(),
    ),
    EncoderKind(
        "egemaps",
        ("egemaps",),
        "audio",
        EgemapsEncoder,
        ("audio_cut_s",),
        model=None,
        fixed_model="eGeMAPSv02",
        legacy_key=(),
    ),
    EncoderKind(
        "organisers",
        ("vit", "wav2vec2"),
        "organisers",
        OrganisersFeatures,
        model=None,
        fixed_model="organisers' {modality}",
        legacy_key=(),
    ),
):
    register_kind(_kind)


class ProjectedEncoder:
    """An encoder whose every frame goes through the linear Stage I projection its aligned
    folder keeps (``PROJECTION_FILE``, written by the ``adapt`` stage's ``align``)."""

    def __init__(self, inner, folder: str):
        import torch

        from mimicflow.perception.encoders import PROJECTION_FILE

        path = Path(folder) / PROJECTION_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"projected: true needs a Stage I folder (adapt method align) with "
                f"{PROJECTION_FILE}; {folder} has none"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.inner = inner
        self.weight = state["weight"].double().numpy().T
        self.bias = state["bias"].double().numpy()

    def encode(self, inputs: list) -> list[Encoded]:
        out = []
        for values, mask in self.inner.encode(inputs):
            projected = (values.astype(np.float64) @ self.weight + self.bias) * mask[:, None]
            out.append((projected.astype(np.float32), mask))
        return out

    def meta(self) -> dict:
        return self.inner.meta() | {"dim": len(self.bias), "projected": True}


@cache
def clip_encoder(settings: EncoderSettings, runtime: Runtime):
    """The kind's encoder for these settings, built once per process."""
    encoder = KINDS[settings.kind].encoder(settings, runtime)
    return ProjectedEncoder(encoder, settings.model) if settings.projected else encoder
