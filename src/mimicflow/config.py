"""Typed pipeline parameters, loaded once from ``params.yaml`` and passed down.

Every stage reads its own section of :class:`Params`; nothing else in the code base parses
``params.yaml``. Unknown keys are errors, so a typo in ``params.yaml`` fails loudly.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mimicflow.models.catalogue import ModelEntry

DEFAULT_PARAMS_FILE = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    """Where the dataset lives (Hume-Vidmimic2 layout, DESIGN.md §2)."""

    root: Path = Path("data/demo")


class DemoParams(_Section):
    """The synthetic demo dataset that ``make demo`` generates."""

    out: Path = Path("data/demo")
    n_clips: int = Field(480, ge=6)
    seed: int = 7


class ValidateParams(_Section):
    """Raw video validation: what counts as a usable clip."""

    out: Path = Path("data/validated")
    min_duration_s: float = Field(0.5, ge=0)
    max_duration_s: float = Field(1800.0, gt=0)
    min_fps: float = Field(5.0, gt=0)
    max_fps: float = Field(1000.0, gt=0)
    min_side_px: int = Field(32, ge=1)
    # A clip whose decodable length falls short of what its header claims by more than this
    # fraction is truncated.
    truncation_tolerance: float = Field(0.15, ge=0, lt=1)
    # A manifest that fails its Great Expectations suite stops the stage (stop) or is logged (warn).
    on_failure: Literal["stop", "warn"] = "stop"


class ModelsParams(_Section):
    """Pretrained models: which catalogue entries to materialise, and users' own entries."""

    dir: Path = Path("models/pretrained")
    prepare: tuple[str, ...] = (
        "whisper-tiny.en",
        "blazeface",
        "facemesh",
        "centerface",
        "fer2013",
        "all-minilm-l6-v2",
    )
    entries: dict[str, ModelEntry] = {}
    # A local mirror of downloaded hub weights (DIR/org/name): `mimicflow recipe apply` and
    # `recipe check` resolve a recipe's hub ids to it (--weights overrides).
    weights: Path | None = None


class FacesParams(_Section):
    """Face detection, tracking and alignment. Models: catalogue names, folders or files."""

    backend: Literal["blazeface", "centerface", "insightface"] = "blazeface"
    detector_model: str = "blazeface"
    mesh_model: str = "facemesh"  # used by the blazeface backend
    full_range: bool = False  # blazeface: far-face model (group shots) instead of close-up
    # blazeface, short range: where it finds no face in a sampled frame, the full-range model
    # looks again (a small face in a large frame: a screencast, a wide shot)
    far_fallback: bool = True
    fps: float = Field(6.0, gt=0)
    crop_size: int = Field(224, ge=32)
    # arcface: similarity alignment of the five points to the ArcFace template | ffhq: the FFHQ
    # crop (eyes and mouth set the square: the whole head, hair and chin, upright)
    alignment: Literal["arcface", "ffhq"] = "arcface"
    threshold: float = Field(0.5, gt=0, lt=1)
    out: Path = Path("data/perception/faces")


class AsrParams(_Section):
    """Speech recognition: backend and model (a catalogue name, a folder, or a hub id)."""

    out: Path = Path("data/perception/asr")
    audio_out: Path = Path("data/perception/audio")  # decoded 16 kHz audio, reused by features
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    model: str = "whisper-tiny.en"
    device: str = "auto"  # auto: CUDA when present, else CPU | cpu | cuda | cuda:N
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA; or any CTranslate2 type
    language: str | None = "en"
    beam_size: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)  # CUDA, faster-whisper: clips over 30 s in batched windows


FeatureModality = Literal["audio", "visual", "text", "egemaps", "vit", "wav2vec2"]


class FeatureSetParams(_Section):
    """One named feature set: which encoder kind makes it, from which model, and how.

    ``kind`` (the registry of :mod:`mimicflow.clip.encoders`): ``whisper`` (a Whisper model's
    encoder states), ``audio-transformers`` (any transformers speech model: wav2vec2, HuBERT,
    WavLM, audEERING's dimensional model …), ``face-measures`` (the default visual chain:
    FaceMesh facial measures + ``fer_model``'s expression probabilities per face frame),
    ``motion`` (the facial measures and head pose alone: the stand-in for OpenFace action units
    + pose), ``visual-transformers`` (any transformers image model over the aligned crops: ViT,
    DINOv2, MAE, CLIP), ``text-transformers`` (any transformers text model over the
    transcript), ``egemaps`` (openSMILE) and ``organisers`` (the organisers' pre-extracted
    ``vit``/``wav2vec2`` features). Left empty, the kind is read from ``modality`` and ``model``
    as params written before kinds had a name said it (``model: default``/``motion`` for the
    visual chains; a Whisper folder or name for ``whisper``).

    ``modality``: what the features are, which decides the fusion branch (audio, visual, text;
    ``egemaps``, ``vit``, ``wav2vec2`` for those features). ``model``: a catalogue name, a
    folder or a hub id (none for ``face-measures``, ``motion``, ``egemaps``, ``organisers``).
    ``pooling`` only pools: a visual model's per-crop vector, a text model's tokens.
    """

    modality: FeatureModality
    kind: str = ""  # the encoder kind ("": implied by modality and model, as before kinds)
    model: str = ""
    layers: int | tuple[int, ...] = -1  # hidden layer(s); several are merged per frame
    layer_merge: Literal["concat", "mean"] = "concat"
    pooling: Literal["cls", "mean", "tokens", "sentences"] = "mean"  # visual: per crop; text
    normalize: bool = False  # text: L2-normalise pooled vectors
    max_tokens: int = Field(256, ge=1)  # text: longer transcripts are truncated
    transcript: Literal["full", "first_segment"] = "full"  # text: all | Whisper's first segment
    fer_model: str = "fer2013"  # face-measures: the expression classifier
    audio_cut_s: float | None = Field(None, gt=0)  # audio: only the first seconds are encoded
    head_outputs: bool = False  # audio: append the model's regression head per frame (VAD)
    trust_remote_code: bool = False  # run the model repository's own code (e.g. ChatGLM3)
    # audio/visual: each frame through the Stage I projection its aligned folder keeps (adapt
    # method align: USTC's eq. 2 space); false: the tower's own states
    projected: bool = False

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value):
        return tuple(value) if isinstance(value, list) else value

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return self.layers if isinstance(self.layers, tuple) else (self.layers,)


DEFAULT_FEATURE_SETS = {
    "audio": FeatureSetParams(modality="audio", kind="whisper", model="whisper-tiny.en"),
    "visual": FeatureSetParams(modality="visual", kind="face-measures"),
    "text": FeatureSetParams(
        modality="text",
        kind="text-transformers",
        model="all-minilm-l6-v2",
        pooling="sentences",
        normalize=True,
    ),
}


class FeaturesParams(_Section):
    """Feature extraction: one store per named set under ``out`` (``<out>/<set>/packed``)."""

    out: Path = Path("data/features")
    device: str = "auto"  # auto: CUDA when present, else CPU
    batch_size: int = Field(16, ge=1)  # encoder batch (audio windows, frames, texts)
    sets: dict[str, FeatureSetParams] = DEFAULT_FEATURE_SETS

    @field_validator("sets")
    @classmethod
    def _set_names(cls, sets):
        bad = [name for name in sets if not name.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"feature set names must be letters, digits, - or _: {bad}")
        return sets


class AlignParams(_Section):
    """USTC's Stage I (ABAW8 §3.3): one encoder contrastively aligned with a text encoder on
    prompts built from each clip's intensities (docs/fidelity.md,
    :mod:`~mimicflow.training.alignment`).

    ``model``: audio: a Whisper model (catalogue name, CTranslate2 folder, ``.pt``) or a
    transformers speech model; visual: a transformers image model, or ``vit-scratch`` (a small
    ViT from seeded random weights, for the demo)."""

    method: Literal["align"]
    modality: Literal["audio", "visual"]
    model: str
    text_model: str = "all-minilm-l6-v2"
    text_layers: int = Field(0, ge=0)  # upper text-encoder blocks trained (0: frozen)
    layers: int = Field(2, ge=1)  # upper encoder blocks trained; the rest frozen
    dim: int = Field(256, ge=8)  # the shared space (linear projections of both encoders)
    temperature: float = Field(0.07, gt=0)  # τ of eq. 2, fixed
    symmetric: bool = False  # add CLIP's text → modality term (eq. 2 has modality → text)
    bins: tuple[float, float] = (
        1 / 3,
        2 / 3,
    )  # intensity words: low | medium from bins[0] | high from bins[1]
    epochs: int = Field(50, ge=0)  # 0: the starting encoder as it is (the run without Stage I)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(1e-5, gt=0)  # SGDR: η_max
    min_lr: float = Field(1e-7, ge=0)  # η_min
    restart_epochs: int = Field(10, ge=1)  # SGDR cycle length
    weight_decay: float = Field(0.01, ge=0)
    frames: int = Field(8, ge=1)  # visual: evenly spaced crops per clip (their embeddings' mean)
    audio_cut_s: float | None = Field(10.0, gt=0)  # audio: each clip's first seconds
    external: Path | None = None  # visual: an AffectNet-layout folder whose images join training
    seed: int = 7

    @model_validator(mode="after")
    def _external_images(self):
        if self.external is not None and self.modality != "visual":
            raise ValueError("external (AffectNet images) aligns a visual encoder only")
        return self


class FinetuneParams(_Section):
    """End-to-end fine-tuning of an audio encoder with Augsburg's head (ABAW6: wav2vec2 and its
    VAD head trained on the first 12 s). The upper ``train_layers`` transformer layers train,
    each layer below the top at ``lr`` × ``layer_lr_decay``^depth; the convolutional front-end
    and the layers below stay frozen. The best epoch on the valid clips (mean Pearson) is kept."""

    method: Literal["finetune"] = "finetune"
    modality: Literal["audio"] = "audio"
    model: str = "whisper-tiny.en"  # a catalogue name, folder or hub id
    audio_cut_s: float | None = Field(
        12.0, gt=0
    )  # only the first seconds (as the feature set must)
    train_layers: int = Field(12, ge=0)  # the upper layers that train (0: the head alone)
    layer_lr_decay: float = Field(1.0, gt=0, le=1)  # 1: one rate for all layers (the paper)
    lr: float = Field(1e-4, gt=0)  # the top layer's (and the VAD head's)
    head_lr: float = Field(1e-4, gt=0)  # the Augsburg head's
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(100.0, gt=0)  # gradient clip: each value's bound, or the norm's
    # value: each gradient value clipped (the authors' clip_grad_value_) | norm: the global norm
    grad_clip_mode: Literal["value", "norm"] = "value"
    epochs: int = Field(30, ge=1)  # cosine decay over them, the best on valid kept
    batch_size: int = Field(32, ge=1)
    hidden: int = Field(128, ge=8)  # the head's LSTM width (and its dense width, unless below)
    dense_hidden: int | None = Field(None, ge=8)  # None: the dense layer as wide as `hidden`
    dropout: float = Field(0.2, ge=0, lt=1)
    lstm_layers: int = Field(2, ge=1)
    lstm_dropout: float = Field(0.1, ge=0, lt=1)
    # The head's LSTM runs over at most this many segment means of a clip's frames (TSN, as
    # train.frames does for the fusion stage); None: over every frame.
    segments: int | None = Field(None, ge=1)
    gradient_checkpointing: bool = False  # recompute the trained layers' activations (memory)
    head_outputs: bool = False  # audEERING's VAD head: trains too, kept in the saved model
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA


# An ``adapt.encoders`` entry: its ``method`` says which.
AdaptEntry = Annotated[AlignParams | FinetuneParams, Field(discriminator="method")]


class AdaptParams(_Section):
    """Encoder adaptation (stage ``adapt``): each entry writes ``<out>/<name>``, an encoder
    folder a feature set names as its model (``features.sets.<set>.model: <out>/<name>``)."""

    out: Path = Path("models/adapted")
    device: str = "auto"  # auto: CUDA when present, else CPU | cpu | cuda | cuda:N
    encoders: dict[str, AdaptEntry] = {}


class ComputeParams(_Section):
    """How per-clip work is mapped: local worker processes (0 = one per core), or a Dask
    scheduler address (``tcp://host:8786``) to run it on a cluster instead."""

    workers: int = Field(0, ge=0)
    scheduler: str | None = None


class FlowsParams(_Section):
    """Prefect orchestration: cron schedules of the served deployments, task retries and
    timeouts, and how many independent DVC stages the pipeline flow runs at once (locally, or
    on the workers of a Dask cluster)."""

    pipeline_cron: str = "0 2 * * *"  # the DVC pipeline, nightly
    monitor_cron: str = "0 * * * *"  # drift monitoring of new clips, hourly
    timezone: str = "UTC"
    retries: int = Field(2, ge=0)  # a failed DVC stage task is retried (lock held, I/O, OOM kill)
    retry_delay_s: float = Field(30.0, ge=0)
    task_timeout_s: float = Field(43200.0, gt=0)  # a task running longer fails (hung stage, clip)
    stage_concurrency: int = Field(0, ge=0)  # independent DVC stages at once; 0 = one per core
    dask_address: str | None = None  # a Dask scheduler (tcp://host:8786): stages run on its workers


class MonitorParams(_Section):
    """Drift monitoring of new clips against the reference profile of the training data.

    ``incoming``, ``work`` and ``archive`` must be on one file system: clips move by rename.
    """

    incoming: Path = Path("data/incoming")  # new clips arrive here (plain clips or the Hume layout)
    work: Path = Path("data/monitor/work")  # one folder per run while it runs
    archive: Path = Path("data/monitor/archive")  # processed clips, one folder per run
    reference: Path = Path("data/monitor/reference")  # the `reference` stage's profile
    reports: Path = Path("reports")  # index.html, drift/<run>/
    workspace: Path = Path(
        "data/monitor/workspace"
    )  # Evidently workspace: `evidently ui --workspace`
    predictions: bool = True  # compare the predicted emotions of the ensemble (ensemble.out)
    feature_sets: tuple[str, ...] = ("audio", "visual", "text")  # features.sets compared
    components: int = Field(3, ge=1)  # principal components summarising wide feature vectors
    stattest: str = "ks"  # Evidently per-column test
    threshold: float = Field(0.01, gt=0)  # per-column p-value below which a column drifted
    drift_share: float = Field(0.1, gt=0, le=1)  # the batch drifted when this share of columns did
    min_clips: int = Field(10, ge=1)  # smaller batches: the verdict comes with a warning
    settle_s: float = Field(30.0, ge=0)  # clips modified more recently are left for the next run

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "modalities" in data:
            raise ValueError("monitor.modalities is now monitor.feature_sets: rename the key")
        return data


Loss = Literal["mse", "ccc", "mimicmetrics"]  # the regression losses (fusion.losses)
LrSchedule = Literal["none", "cosine", "sgdr", "plateau"]
ClipMode = Literal["norm", "value"]


class SystemParams(_Section):
    """Optimisation shared by the systems: the base of each system's section (``train.<name>``,
    defined in the system's module under ``fusion/``, which sets its paper's defaults)."""

    hidden: int = Field(128, ge=8)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    loss: Loss = "mse"
    ema: float | None = Field(None, gt=0, lt=1)  # decay of an exponential moving average
    grad_clip: float = Field(5.0, gt=0)  # gradient clip: the norm's bound, or each value's
    grad_clip_mode: ClipMode = "norm"  # the gradients' global norm | each value
    # none | cosine (to min_lr over the epochs, per batch) | sgdr (warm restarts every
    # restart_epochs) | plateau (×plateau_factor after plateau_patience epochs without gain)
    schedule: LrSchedule = "none"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up before the schedule
    min_lr: float = Field(0.0, ge=0)
    restart_epochs: int = Field(5, ge=1)  # sgdr
    plateau_patience: int = Field(3, ge=1)  # plateau: on the validation mean Pearson
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    # batch: the schedule steps after every optimiser step | epoch: after every epoch
    schedule_step: Literal["batch", "epoch"] = "batch"
    ema_warmup: bool = True  # the EMA's decay grows to ``ema`` over the first steps
    min_delta: float = Field(0.0, ge=0)  # early stopping: a gain must exceed this
    standardise: bool = True  # z-score each input feature with the training fold's statistics
    bias_init: Literal["mean", "default"] = "mean"  # output layers start at the training mean


# The fusion systems' params sections by name (``train.<name>``), registered by the systems'
# modules (:mod:`mimicflow.fusion.systems`); ``train.system`` names one of them.
SYSTEM_PARAMS: dict[str, type[SystemParams]] = {}
_DEFAULT_SYSTEM: list[str] = []
SYSTEMS_PACKAGE = "mimicflow.fusion"


def register_system_params(name: str, section: type[SystemParams], default: bool = False) -> None:
    """Make ``section`` the params of system ``name`` (``default``: when ``train.system`` is
    left out)."""
    SYSTEM_PARAMS[name] = section
    if default:
        _DEFAULT_SYSTEM[:] = [name]


def system_sections() -> dict[str, type[SystemParams]]:
    """The registered systems' params sections. The first call imports the systems' package,
    whose modules register themselves: the plug-in lookup, the one import by name up the layers
    (docs/architecture.md)."""
    if not SYSTEM_PARAMS:
        importlib.import_module(SYSTEMS_PACKAGE)
    return SYSTEM_PARAMS


PROTOCOLS = ("merged", "official", "final", "resplit")


class TrainParams(_Section):
    """Fusion training; ``system`` picks one of the papers, ``protocol`` how models are made.

    - ``merged`` (Fuxi): k folds over train+valid; the served model is the folds' mean.
    - ``official`` (USTC, MimicMetrics): one model trained on train, early-stopped on valid.
    - ``final`` (Augsburg): as ``official`` to choose the epochs, then one model trained on
      train+valid for that many epochs; it is the served model.
    - ``resplit`` (MimicMetrics' F3/F4): one model; ``holdout_fraction`` of the labelled clips,
      drawn from the valid split, validate it, the rest of valid joins train.
    """

    # extra keys: the systems' sections, one per registered system (train.<name>, validated
    # by its own model); any other unknown key is an error, as everywhere else
    model_config = ConfigDict(extra="allow", frozen=True)

    system: str = ""  # a registered system ("": the registry's default)
    inputs: tuple[str, ...] = (
        "audio",
        "visual",
        "text",
    )  # feature sets (features.sets) the model sees
    protocol: Literal["merged", "official", "final", "resplit"] = "merged"
    holdout_fraction: float = Field(0.2, gt=0, lt=1)  # resplit: the held-out share of labelled
    # The fold ids 0 … k−1 (merged: k ≥ 2; official and final: [0], the single model):
    # dvc.yaml makes one train@<id> stage each (an int k is read as range(k)).
    folds: tuple[int, ...] = (0, 1, 2, 3, 4)
    seed: int = 7
    device: str = "auto"  # auto: CUDA when present, else CPU | cpu | cuda | cuda:N
    amp: bool = True  # on CUDA: bf16 autocast (no effect on a CPU)
    # On CUDA: every clip pooled once and held on the GPU, each batch gathered there. False: each
    # batch assembled on the host by loader_workers processes (features larger than GPU memory).
    # On the CPU the clips are held in memory and gathered in place unless loader_workers > 0.
    batches_on_device: bool = True
    loader_workers: int | None = Field(
        None, ge=0
    )  # batch-assembling processes (None: 4 on CUDA, 0 on CPU)
    epochs: int = Field(60, ge=1)
    patience: int = Field(12, ge=1)  # early stopping on the validation mean Pearson
    batch_size: int = Field(16, ge=2)
    frames: dict[str, int] = {"audio": 32, "visual": 16, "text": 8}  # TSN segments per input
    out: Path = Path("models/folds")

    @model_validator(mode="wrap")
    @classmethod
    def _system_sections(cls, data, handler):
        """``system`` resolved to a registered one, every registered system's section validated
        by its own model (its defaults when absent), any other unknown key an error; all the
        errors reported together."""
        if not isinstance(data, dict):
            return handler(data)
        sections, data, errors = system_sections(), dict(data), []
        data["system"] = data.get("system") or _DEFAULT_SYSTEM[0]
        if data["system"] not in sections:
            choices = {"expected": ", ".join(sections)}
            errors.append(_error("literal_error", ("system",), data["system"], choices))
        for key in [k for k in data if k not in cls.model_fields and k not in sections]:
            errors.append(_error("extra_forbidden", (key,), data.pop(key)))
        for name, section in sections.items():
            try:
                data[name] = section.model_validate(data.get(name) or {})
            except ValidationError as error:
                errors += [
                    _error(e["type"], (name, *e["loc"]), e["input"], e.get("ctx"))
                    for e in error.errors()
                ]
        try:
            validated = handler(data)
        except ValidationError as error:
            errors += [
                _error(e["type"], e["loc"], e["input"], e.get("ctx")) for e in error.errors()
            ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return validated

    @field_validator("folds", mode="before")
    @classmethod
    def _fold_ids(cls, value):
        ids = tuple(range(value)) if isinstance(value, int) else tuple(value)
        if not ids or ids != tuple(range(len(ids))):
            raise ValueError(f"folds must be the ids 0 … k−1 (or k itself), got {value!r}")
        return ids

    @model_validator(mode="after")
    def _protocol_folds(self):
        if self.protocol == "merged" and len(self.folds) < 2:
            raise ValueError("protocol merged needs k ≥ 2 folds (train.folds)")
        if self.protocol != "merged" and self.folds != (0,):
            raise ValueError(f"protocol {self.protocol} trains one model: train.folds must be [0]")
        missing = [name for name in self.inputs if name not in self.frames]
        if missing:
            raise ValueError(f"train.frames has no segment count for inputs {missing}")
        return self

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def system_params(self, system: str | None = None) -> SystemParams:
        """A system's section (default: ``system``'s)."""
        return getattr(self, system or self.system)


def _error(kind: str, loc: tuple, value, ctx=None) -> dict:
    """One error of a :class:`ValidationError`, for ``from_exception_data``."""
    return {"type": kind, "loc": loc, "input": value, **({"ctx": ctx} if ctx else {})}


class MemberParams(_Section):
    """One system of a combined ensemble (``ensemble.members.<name>``): a recipe's demo or paper
    flavour, or (``recipe: null``) the workspace's own system, with a params overlay of its own."""

    recipe: str | None = None  # a recipe in ensemble.recipes_dir; None: the workspace's params
    flavour: Literal["demo", "paper"] = "demo"
    overlay: dict = Field(default_factory=dict)  # params keys set on top (nested, as in YAML)


class EnsembleParams(_Section):
    """The fold models' mean, its metrics and plots, the comparison table, and the combination
    of several trained systems (``members``, weighted per emotion)."""

    out: Path = Path("models/ensemble")
    reports: Path = Path("reports/training")
    # Several systems behind one endpoint: each member is trained by its own stage (member@<name>)
    # on train.folds (protocol merged); the combine stage fits per-emotion weights on their
    # out-of-fold predictions. Empty: the served model is the default system's ensemble alone.
    members: dict[str, MemberParams] = Field(default_factory=dict)
    members_out: Path = Path("models/members")  # each member's folds and fold ensemble
    combined_out: Path = Path("models/combined")  # the weights (combined.json) package reads
    # `mimicflow stage compare` (`make compare`): each recipe's demo flavour, each system on the
    # feature sets of train.inputs, and the default system on one input at a time.
    compare_recipes: tuple[str, ...] | None = None  # None: every recipe in recipes_dir
    recipes_dir: Path = Path("recipes")
    compare_out: Path = Path("data/compare")  # the recipes' own feature sets (a working folder)
    compare_systems: tuple[str, ...] | None = None  # None: every registered system
    compare_epochs: int = Field(20, ge=1)  # every run of the table gets the same budget and folds


class ServingParams(_Section):
    """The ``package`` stage's bento and the service's limits on uploads (packaged with it)."""

    out: Path = Path("models/bento")  # the exported bento + bento.json (tags)
    max_upload_mb: float = Field(50.0, gt=0)  # larger uploads: 413
    max_duration_s: float = Field(60.0, gt=0)  # longer clips: 422 (enforced while decoding)
    max_frame_pixels: int = Field(3840 * 2160, ge=1)  # larger frames (width x height): 422
    max_features_mb: float = Field(16.0, gt=0)  # larger /predict_features bodies: 413
    token_env: str = "MIMICFLOW_API_TOKEN"  # when this variable is set, predict endpoints need it
    guard_metrics: bool = True  # with a token set, /metrics needs it too (false: open to scrapers)


CHAIN_SCHEMA = 1


class ChainParams(BaseModel):
    """What a trained ensemble keeps of the params it was trained with (``ensemble.json``, the
    bento's ``params.json``): the clip chain's sections, the upload limits and where the folds
    lie, on a versioned schema of its own, so that an ensemble or a bento keeps loading when
    other params keys change. On reading, keys it does not know are dropped (the other
    sections; a file written before the schema, version 0, is a whole params dump); a key
    renamed within these sections needs a new version and its migration here."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_version: int = CHAIN_SCHEMA
    validate_: ValidateParams = Field(default_factory=ValidateParams, alias="validate")
    models: ModelsParams = Field(default_factory=ModelsParams)
    faces: FacesParams = Field(default_factory=FacesParams)
    asr: AsrParams = Field(default_factory=AsrParams)
    features: FeaturesParams = Field(default_factory=FeaturesParams)
    serving: ServingParams = Field(default_factory=ServingParams)
    train_out: Path = Path("models/folds")  # the folds' own folders (validation predictions)

    @model_validator(mode="before")
    @classmethod
    def _read(cls, data):
        if not isinstance(data, dict):
            return data
        version = data.get("schema_version", 0)
        if version > CHAIN_SCHEMA:
            raise ValueError(
                f"written by a newer mimicflow (schema {version}; this one reads up to "
                f"{CHAIN_SCHEMA})"
            )
        train = data.get("train")
        if version == 0 and isinstance(train, dict) and "out" in train:
            data = {**data, "train_out": train["out"]}
        return _known_keys(cls, data) | {"schema_version": CHAIN_SCHEMA}

    @classmethod
    def from_params(cls, params: Params) -> ChainParams:
        return cls.model_validate(
            params.model_dump(mode="json", by_alias=True) | {"train_out": str(params.train.out)}
        )


def _known_keys(model: type[BaseModel], raw: dict) -> dict:
    """``raw`` without the keys ``model`` does not know, at every depth of its sections."""
    out = {}
    for name, field in model.model_fields.items():
        key = next((k for k in (field.alias, name) if k and k in raw), None)
        if key is None:
            continue
        value, annotation = raw[key], field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            value = _known_keys(annotation, value) if isinstance(value, dict) else value
        elif get_origin(annotation) is dict and isinstance(value, dict):
            inner = get_args(annotation)[1]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                value = {
                    k: _known_keys(inner, v) if isinstance(v, dict) else v for k, v in value.items()
                }
        out[key] = value
    return out


class ChecksParams(_Section):
    """The gates of ``mimicflow report --check`` (the end of ``make demo``): served = evaluated,
    and the headline figures on the demo's hidden test labels."""

    served_clips: int = Field(24, ge=0)  # test clips re-predicted from their videos (0: all)
    served_tolerance: float = Field(1e-3, gt=0)  # largest |served − submission| allowed
    min_fraction_of_oracle: float = Field(0.85, ge=0, le=1)  # ensemble demo-test ρ ÷ oracle
    # fused demo-test ρ minus the best single input's (`make compare`'s table) is at least this
    fused_over_single: float = 0.0


class Params(_Section):
    data: DataParams = DataParams()
    demo: DemoParams = DemoParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    models: ModelsParams = ModelsParams()
    faces: FacesParams = FacesParams()
    asr: AsrParams = AsrParams()
    adapt: AdaptParams = AdaptParams()
    features: FeaturesParams = FeaturesParams()
    compute: ComputeParams = ComputeParams()
    flows: FlowsParams = FlowsParams()
    monitor: MonitorParams = MonitorParams()
    train: TrainParams = Field(default_factory=TrainParams)
    ensemble: EnsembleParams = EnsembleParams()
    serving: ServingParams = ServingParams()
    checks: ChecksParams = ChecksParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _known_sets(self):
        sets = self.features.sets
        for where, names in (
            ("train.inputs", self.train.inputs),
            ("monitor.feature_sets", self.monitor.feature_sets),
        ):
            unknown = [n for n in names if n not in sets]
            if unknown:
                raise ValueError(
                    f"{where} names feature sets {unknown} that features.sets lacks "
                    f"(it has {', '.join(sets)})"
                )
        adapted = self.adapt.encoders
        for name, spec in sets.items():
            path = Path(spec.model)
            if path.parent == self.adapt.out and (
                path.name not in adapted or adapted[path.name].modality != spec.modality
            ):
                raise ValueError(
                    f"features.sets.{name} names {spec.model}: adapt.encoders needs "
                    f"a {spec.modality} entry {path.name!r}"
                )
        return self


def load_params(path: Path | str = DEFAULT_PARAMS_FILE) -> Params:
    """Read ``params.yaml``; a missing file gives the defaults."""
    path = Path(path)
    if not path.exists():
        return Params()
    raw = yaml.safe_load(path.read_text()) or {}
    return Params.model_validate(raw)
