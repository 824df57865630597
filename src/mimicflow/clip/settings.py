"""Typed settings of the per-clip chain, built once from :class:`~mimicflow.config.Params`.

Model names are resolved here (catalogue name → prepared folder; a path or hub id passes), so
the settings say exactly which files a clip goes through. Each settings object's :meth:`key` is
the hash that names the artefacts it makes: change a setting and the clips are made anew.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mimicflow.config import Params
from mimicflow.devices import ctranslate2_device, torch_device
from mimicflow.store import settings_hash

CLIP_MODALITIES = ("audio", "visual", "text", "egemaps")  # computed from a clip's own media
DATASET_MODALITIES = ("vit", "wav2vec2")  # the organisers' pre-extracted features


def resolve_model(params: Params, name: str) -> str:
    """A catalogue name becomes its prepared folder (fetched once); a path or hub id passes."""
    from mimicflow.models.catalogue import catalogue, resolve

    return resolve(name, params.models.dir, catalogue(params.models.entries))


class _Keyed:
    runtime_fields: tuple[str, ...] = ()  # where it runs: not part of what it makes
    # Options added after artefacts existed, at the value they implied then: left out of the
    # key at that value, so those artefacts keep their names.
    later_options: tuple[tuple[str, object], ...] = ()

    def key(self) -> str:
        """Eight hex digits naming the artefacts these settings make."""
        fields = asdict(self)  # type: ignore[call-overload]
        fields = {k: v for k, v in fields.items() if k not in self.runtime_fields}
        for name, implied in self.later_options:
            if fields.get(name) == implied:
                del fields[name]
        return settings_hash(fields)


@dataclass(frozen=True)
class FaceSettings(_Keyed):
    """Face detection, tracking and alignment of one clip."""

    backend: str
    detector: str
    mesh: str  # "" unless the backend is blazeface
    fps: float
    crop_size: int
    threshold: float
    full_range: bool
    alignment: str = "arcface"
    far_fallback: bool = False

    later_options = (("alignment", "arcface"), ("far_fallback", False))

    @classmethod
    def from_params(cls, params: Params) -> FaceSettings:
        faces = params.faces
        mesh = resolve_model(params, faces.mesh_model) if faces.backend == "blazeface" else ""
        return cls(
            faces.backend,
            resolve_model(params, faces.detector_model),
            mesh,
            faces.fps,
            faces.crop_size,
            faces.threshold,
            faces.full_range,
            faces.alignment,
            faces.far_fallback,
        )


@dataclass(frozen=True)
class AsrSettings(_Keyed):
    """Speech recognition of one clip's audio."""

    backend: str
    model: str
    compute_type: str
    language: str | None
    beam_size: int
    device: str = "cpu"
    batch_size: int = 8

    runtime_fields = ("device", "batch_size")

    @classmethod
    def from_params(cls, params: Params) -> AsrSettings:
        asr = params.asr
        resolve = ctranslate2_device if asr.backend == "faster-whisper" else torch_device
        device = resolve(asr.device, "asr.device")
        compute_type = asr.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device.startswith("cuda") else "int8"
        return cls(
            asr.backend,
            resolve_model(params, asr.model),
            compute_type,
            asr.language,
            asr.beam_size,
            device,
            asr.batch_size,
        )


def adapted_version(model: str) -> str:
    """The version an adapted encoder folder records (``adapted.json``, the ``adapt`` stage);
    "" for any other model."""
    record = Path(model) / "adapted.json"
    return json.loads(record.read_text())["version"] if record.is_file() else ""


@dataclass(frozen=True)
class EncoderSettings(_Keyed):
    """One feature set's encoder, and the artefacts it reads (faces or transcripts)."""

    modality: str
    model: str  # resolved; for the default visual features, the FER model
    layers: tuple[int, ...] = (-1,)
    layer_merge: str = "concat"
    pooling: str = ""  # visual: "default" / "motion" for the FaceMesh features
    normalize: bool = False
    max_tokens: int = 256
    audio_cut_s: float | None = None
    head_outputs: bool = False
    trust_remote_code: bool = False
    faces: FaceSettings | None = None  # visual: the face tracks it encodes
    asr: AsrSettings | None = None  # text: the transcripts it encodes
    transcript: str = "full"  # text: the whole transcript or its first segment
    model_version: str = ""  # an adapted encoder folder's version: retrained, clips re-encode

    later_options = (("transcript", "full"), ("model_version", ""))

    @classmethod
    def from_params(cls, params: Params, name: str) -> EncoderSettings:
        """The encoder of feature set ``name`` (``features.sets``)."""
        sets = params.features.sets
        if name not in sets:
            raise ValueError(f"unknown feature set {name!r}; features.sets has {', '.join(sets)}")
        spec = sets[name]
        modality = spec.modality
        common = {
            "layers": spec.layer_ids,
            "layer_merge": spec.layer_merge,
            "trust_remote_code": spec.trust_remote_code,
        }
        common["model_version"] = adapted_version(spec.model)
        if modality == "audio":
            return cls(
                "audio",
                resolve_model(params, spec.model),
                **common,
                audio_cut_s=spec.audio_cut_s,
                head_outputs=spec.head_outputs,
            )
        if modality == "visual":
            facemesh = spec.model in ("default", "motion")
            if facemesh:
                return cls(
                    "visual",
                    resolve_model(params, spec.fer_model) if spec.model == "default" else "",
                    pooling=spec.model,
                    faces=FaceSettings.from_params(params),
                )
            return cls(
                "visual",
                resolve_model(params, spec.model),
                **common,
                pooling=spec.pooling,
                faces=FaceSettings.from_params(params),
            )
        if modality == "text":
            return cls(
                "text",
                resolve_model(params, spec.model),
                **common,
                pooling=spec.pooling,
                normalize=spec.normalize,
                max_tokens=spec.max_tokens,
                asr=AsrSettings.from_params(params),
                transcript=spec.transcript,
            )
        if modality == "egemaps":
            return cls("egemaps", "eGeMAPSv02", audio_cut_s=spec.audio_cut_s)
        return cls(modality, f"organisers' {modality}")


@dataclass(frozen=True)
class Runtime:
    """How encoders run: neither changes a clip's features (every encoder is batch-independent)."""

    device: str = "auto"
    batch_size: int = 16

    @classmethod
    def from_params(cls, params: Params) -> Runtime:
        return cls(params.features.device, params.features.batch_size)


@dataclass(frozen=True)
class ClipSettings:
    """Everything that takes one clip to its features."""

    faces: FaceSettings
    asr: AsrSettings
    encoders: dict[str, EncoderSettings]  # feature set name → its encoder
    runtime: Runtime

    @classmethod
    def from_params(cls, params: Params, sets: tuple[str, ...] | list[str]) -> ClipSettings:
        """The chain to the features of ``sets`` (names in ``features.sets``)."""
        encoders = tuple(EncoderSettings.from_params(params, name) for name in sets)
        unknown = [n for n, e in zip(sets, encoders) if e.modality not in CLIP_MODALITIES]
        if unknown:
            raise ValueError(
                f"feature sets {unknown} cannot be computed from a clip (only "
                f"{', '.join(CLIP_MODALITIES)} sets can)"
            )
        return cls(
            FaceSettings.from_params(params),
            AsrSettings.from_params(params),
            dict(zip(sets, encoders)),
            Runtime.from_params(params),
        )
