"""Typed settings of the per-clip chain, built once from :class:`~mimicflow.config.Params`.

Model names are resolved here (catalogue name → prepared folder; a path or hub id passes), so
the settings say exactly which files a clip goes through. Each settings object's :meth:`key` is
the hash that names the artefacts it makes: change a setting and the clips are made anew.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mimicflow.config import ChainParams, FeatureSetParams, Params
from mimicflow.devices import ctranslate2_device, torch_device
from mimicflow.store import settings_hash


def resolve_model(params: Params | ChainParams, name: str) -> str:
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
    def from_params(cls, params: Params | ChainParams) -> FaceSettings:
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
    def from_params(cls, params: Params | ChainParams) -> AsrSettings:
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
class EncoderKind:
    """One kind of encoder (``features.sets.<set>.kind``), registered by its module.

    ``modalities``: the feature sets' modalities it makes; ``reads``: what it takes from a clip
    (``audio``, ``faces``: the face track, ``transcript``, ``organisers``: the dataset's
    pre-extracted file, so never from a clip's own media); ``options``: the set's fields it
    uses; ``model``: the set's field naming its model (None: ``fixed_model`` names it, where
    ``{modality}`` stands for the set's);
    ``adaptable``: its model may be an ``adapt`` stage's folder; ``legacy_key``: for a kind
    older than kind names, the fields that named its artefacts instead of its name (so they
    keep their names; a new kind leaves it None and its name is in the key);
    ``encoder``: the class that encodes a batch (:mod:`mimicflow.clip.encoders`)."""

    name: str
    modalities: tuple[str, ...]
    reads: str
    encoder: type
    options: tuple[str, ...] = ()
    model: str | None = "model"
    fixed_model: str = ""
    adaptable: bool = False
    legacy_key: tuple[tuple[str, object], ...] | None = None


KINDS: dict[str, EncoderKind] = {}
KINDS_MODULE = "mimicflow.clip.encoders"  # registers the kinds when imported


def encoder_kinds() -> dict[str, EncoderKind]:
    """The registered kinds; the first call imports the module that registers them (by name:
    it imports this one)."""
    if not KINDS:
        importlib.import_module(KINDS_MODULE)
    return KINDS


def register_kind(kind: EncoderKind) -> EncoderKind:
    if kind.name in KINDS:
        raise ValueError(f"encoder kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def is_whisper(model: str) -> bool:
    """A Whisper model: a CTranslate2 or adapted folder, or an openai-whisper ``.pt``."""
    from mimicflow.models.catalogue import ALIGNED_WHISPER

    folder = Path(model)
    return (
        (folder / "model.bin").exists()
        or (folder / ALIGNED_WHISPER).exists()
        or model.endswith(".pt")
    )


def implied_kind(spec: FeatureSetParams, model: str = "") -> str:
    """The kind a set names, or the one its modality and model implied before kinds had names
    (``model``: the resolved model, which tells Whisper from other speech models)."""
    if spec.kind:
        return spec.kind
    if spec.modality == "audio":
        return "whisper" if is_whisper(model) else "audio-transformers"
    if spec.modality == "visual":
        legacy = {"default": "face-measures", "motion": "motion"}
        return legacy.get(spec.model, "visual-transformers")
    if spec.modality == "text":
        return "text-transformers"
    return "egemaps" if spec.modality == "egemaps" else "organisers"


def model_field(spec: FeatureSetParams) -> str | None:
    """The set's field naming the model its encoder loads (None: it loads none). Whisper and
    other speech models both name theirs in ``model``, so the model need not be resolved."""
    kind = encoder_kinds().get(implied_kind(spec, spec.model))
    return kind.model if kind else None


def encoder_kind(params: Params | ChainParams, name: str) -> EncoderKind:
    """Feature set ``name``'s encoder kind (a one-line error for an unknown one)."""
    spec = params.features.sets[name]
    kind_name = implied_kind(spec, resolve_model(params, spec.model) if spec.model else "")
    kinds = encoder_kinds()
    if kind_name not in kinds:
        raise ValueError(
            f"features.sets.{name}.kind {kind_name!r} is not an encoder kind ({', '.join(kinds)})"
        )
    kind = kinds[kind_name]
    if spec.modality not in kind.modalities:
        raise ValueError(
            f"features.sets.{name}: kind {kind.name} makes {', '.join(kind.modalities)} "
            f"features, not {spec.modality}"
        )
    return kind


@dataclass(frozen=True)
class EncoderSettings(_Keyed):
    """One feature set's encoder, and the artefacts it reads (faces or transcripts)."""

    modality: str
    model: str  # resolved; for the face-measures chain, the FER model
    layers: tuple[int, ...] = (-1,)
    layer_merge: str = "concat"
    pooling: str = ""
    normalize: bool = False
    max_tokens: int = 256
    audio_cut_s: float | None = None
    head_outputs: bool = False
    trust_remote_code: bool = False
    faces: FaceSettings | None = None  # visual: the face tracks it encodes
    asr: AsrSettings | None = None  # text: the transcripts it encodes
    transcript: str = "full"  # text: the whole transcript or its first segment
    model_version: str = ""  # an adapted encoder folder's version: retrained, clips re-encode
    kind: str = ""  # the encoder kind (KINDS)
    projected: bool = False  # the aligned folder's Stage I projection after the tower

    later_options = (("transcript", "full"), ("model_version", ""), ("projected", False))

    def key(self) -> str:
        """As :meth:`_Keyed.key`, with the kind's name; a kind older than kind names is keyed
        as its artefacts were named then (its ``key_fields``), so they keep their names."""
        kind = encoder_kinds()[self.kind]
        fields = {k: v for k, v in asdict(self).items() if k != "kind"}
        for name, implied in self.later_options:
            if fields.get(name) == implied:
                del fields[name]
        extra = {"kind": self.kind} if kind.legacy_key is None else dict(kind.legacy_key)
        return settings_hash(fields | extra)

    @classmethod
    def from_params(cls, params: Params | ChainParams, name: str) -> EncoderSettings:
        """The encoder of feature set ``name`` (``features.sets``)."""
        sets = params.features.sets
        if name not in sets:
            raise ValueError(f"unknown feature set {name!r}; features.sets has {', '.join(sets)}")
        spec, kind = sets[name], encoder_kind(params, name)
        options = {field: getattr(spec, field) for field in kind.options}
        if "layers" in options:
            options["layers"] = spec.layer_ids
        if kind.adaptable:
            options["model_version"] = adapted_version(spec.model)
        if kind.model is not None:
            model = getattr(spec, kind.model)
            model = resolve_model(params, model) if model else ""
        else:
            model = kind.fixed_model.format(modality=spec.modality)
        return cls(
            spec.modality,
            model,
            **options,
            faces=FaceSettings.from_params(params) if kind.reads == "faces" else None,
            asr=AsrSettings.from_params(params) if kind.reads == "transcript" else None,
            kind=kind.name,
        )


@dataclass(frozen=True)
class Runtime:
    """How encoders run: neither changes a clip's features (every encoder is batch-independent)."""

    device: str = "auto"
    batch_size: int = 16

    @classmethod
    def from_params(cls, params: Params | ChainParams) -> Runtime:
        return cls(params.features.device, params.features.batch_size)


@dataclass(frozen=True)
class ClipSettings:
    """Everything that takes one clip to its features."""

    faces: FaceSettings
    asr: AsrSettings
    encoders: dict[str, EncoderSettings]  # feature set name → its encoder
    runtime: Runtime

    @classmethod
    def from_params(
        cls, params: Params | ChainParams, sets: tuple[str, ...] | list[str]
    ) -> ClipSettings:
        """The chain to the features of ``sets`` (names in ``features.sets``)."""
        encoders = tuple(EncoderSettings.from_params(params, name) for name in sets)
        unknown = [
            n for n, e in zip(sets, encoders) if encoder_kinds()[e.kind].reads == "organisers"
        ]
        if unknown:
            raise ValueError(
                f"feature sets {unknown} cannot be computed from a clip (the organisers' "
                "features exist for their dataset's clips only)"
            )
        return cls(
            FaceSettings.from_params(params),
            AsrSettings.from_params(params),
            dict(zip(sets, encoders)),
            Runtime.from_params(params),
        )
