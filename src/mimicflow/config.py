"""Typed pipeline parameters, loaded once from ``params.yaml`` and passed down.

Every stage reads its own section of :class:`Params`; nothing else in the code base parses
``params.yaml``. Unknown keys are errors, so a typo in ``params.yaml`` fails loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    """One named feature set: a modality's encoder and how its outputs become frame vectors.

    ``model``: a catalogue name, a folder or a hub id. Audio: a Whisper model (its encoder's
    hidden states) or any transformers speech model (wav2vec2, HuBERT, WavLM, audEERING's
    dimensional model …). Visual: ``default`` (FaceMesh facial measures + FER2013 expression
    probabilities), ``motion`` (the facial measures and head pose alone: the stand-in for
    OpenFace action units + pose) or any transformers image model over the aligned crops (ViT,
    DINOv2, MAE, CLIP). Text: any transformers text model over the transcript. ``egemaps``,
    ``vit`` and ``wav2vec2`` take no model (openSMILE; the organisers' pre-extracted features).
    """

    modality: FeatureModality
    model: str = ""
    layers: int | tuple[int, ...] = -1  # hidden layer(s); several are merged per frame
    layer_merge: Literal["concat", "mean"] = "concat"
    pooling: Literal["cls", "mean", "tokens", "sentences"] = "mean"  # visual: per crop; text
    normalize: bool = False  # text: L2-normalise pooled vectors
    max_tokens: int = Field(256, ge=1)  # text: longer transcripts are truncated
    transcript: Literal["full", "first_segment"] = "full"  # text: all | Whisper's first segment
    fer_model: str = "fer2013"  # visual "default": the expression classifier
    audio_cut_s: float | None = Field(None, gt=0)  # audio: only the first seconds are encoded
    head_outputs: bool = False  # audio: append the model's regression head per frame (VAD)
    trust_remote_code: bool = False  # run the model repository's own code (e.g. ChatGLM3)

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value):
        return tuple(value) if isinstance(value, list) else value

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return self.layers if isinstance(self.layers, tuple) else (self.layers,)


DEFAULT_FEATURE_SETS = {
    "audio": FeatureSetParams(modality="audio", model="whisper-tiny.en"),
    "visual": FeatureSetParams(modality="visual", model="default", pooling="cls"),
    "text": FeatureSetParams(
        modality="text", model="all-minilm-l6-v2", pooling="sentences", normalize=True
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
    grad_clip: float = Field(100.0, gt=0)  # gradient norm clip (the authors')
    epochs: int = Field(30, ge=1)  # cosine decay over them, the best on valid kept
    batch_size: int = Field(32, ge=1)
    hidden: int = Field(128, ge=8)  # the head's LSTM and dense width
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
    timeouts."""

    pipeline_cron: str = "0 2 * * *"  # the DVC pipeline, nightly
    monitor_cron: str = "0 * * * *"  # drift monitoring of new clips, hourly
    timezone: str = "UTC"
    retries: int = Field(2, ge=0)  # a failed DVC stage task is retried (lock held, I/O, OOM kill)
    retry_delay_s: float = Field(30.0, ge=0)
    task_timeout_s: float = Field(43200.0, gt=0)  # a task running longer fails (hung stage, clip)


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
    modalities: tuple[str, ...] = ("audio", "visual", "text")  # feature sets compared
    components: int = Field(3, ge=1)  # principal components summarising wide feature vectors
    stattest: str = "ks"  # Evidently per-column test
    threshold: float = Field(0.01, gt=0)  # per-column p-value below which a column drifted
    drift_share: float = Field(0.1, gt=0, le=1)  # the batch drifted when this share of columns did
    min_clips: int = Field(10, ge=1)  # smaller batches: the verdict comes with a warning
    settle_s: float = Field(30.0, ge=0)  # clips modified more recently are left for the next run


class SystemParams(_Section):
    """Optimisation shared by the systems; each system's section sets its paper's defaults."""

    hidden: int = Field(128, ge=8)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    loss: Literal["mse", "ccc", "mimicmetrics"] = "mse"
    ema: float | None = Field(None, gt=0, lt=1)  # decay of an exponential moving average
    grad_clip: float = Field(5.0, gt=0)  # gradient clip: the norm's bound, or each value's
    grad_clip_mode: Literal["norm", "value"] = "norm"  # the gradients' global norm | each value
    # none | cosine (to min_lr over the epochs, per batch) | sgdr (warm restarts every
    # restart_epochs) | plateau (×plateau_factor after plateau_patience epochs without gain)
    schedule: Literal["none", "cosine", "sgdr", "plateau"] = "none"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up before the schedule
    min_lr: float = Field(0.0, ge=0)
    restart_epochs: int = Field(5, ge=1)  # sgdr
    plateau_patience: int = Field(3, ge=1)  # plateau: on the validation mean Pearson
    plateau_factor: float = Field(0.5, gt=0, lt=1)


class FuxiParams(SystemParams):
    """Fuxi (ABAW6): TSN sampling, BiGRU branches, average fusion, text-anchored triplet, EMA."""

    hidden: int = 64
    dropout: float = 0.3
    embed: int = Field(256, ge=8)
    ema: float | None = 0.999
    schedule: Literal["none", "cosine", "sgdr", "plateau"] = "sgdr"
    min_lr: float = 1e-8
    # Per-module learning rates: a branch's by its modality (audio, visual, text); the fusion
    # head's is ``lr``. A modality not named here trains at ``lr``.
    branch_lr: dict[str, float] = {}
    triplet_margin: float = 0.1
    triplet_weight: float = Field(0.1, ge=0)  # beside the regression loss; on unit-norm features


class UstcParams(SystemParams):
    """USTC (ABAW8): TCN vision, gated BiLSTM audio, segment pooling, MLP mapping, per-step
    quality-aware weights, a Transformer over the modalities' steps in temporal order."""

    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)  # Transformer encoder layers
    segments: int = Field(8, ge=1)  # segment average pooling after each branch
    ema: float | None = 0.999


class AugsburgParams(SystemParams):
    """Augsburg (ABAW6): audio only, global mean ⊕ LSTM last state → dense + tanh."""

    lstm_layers: int = Field(2, ge=1)
    lstm_dropout: float = Field(0.1, ge=0, lt=1)


class Abaw8Params(SystemParams):
    """Augsburg (ABAW8): an LSTM per audio and visual input (last valid step), the text vector,
    concatenated → dense + tanh → linear 6 (clipped to [0, 1] after the loss)."""

    hidden: int = Field(1027, ge=8)  # the fusion head's dense layer
    dropout: float = Field(0.0, ge=0, lt=1)  # on the concatenated branch outputs (the code: none)
    audio_hidden: int | None = Field(None, ge=8)  # audio LSTM width (None: its input's width)
    visual_hidden: int = Field(768, ge=8)  # visual LSTM width
    lstm_layers: int = Field(2, ge=1)
    lr: float = 1e-4
    grad_clip: float = 100.0
    grad_clip_mode: Literal["norm", "value"] = "value"
    schedule: Literal["none", "cosine", "sgdr", "plateau"] = "cosine"
    warmup_epochs: float = 1.0


class MimicMetricsParams(SystemParams):
    """MimicMetrics (ABAW10): unimodal pre-training, then MLP fusion with modality dropout."""

    loss: Literal["mse", "ccc", "mimicmetrics"] = "mimicmetrics"
    weight_decay: float = 1e-4
    schedule: Literal["none", "cosine", "sgdr", "plateau"] = "plateau"  # every stage
    modality_dropout: float = Field(0.3, ge=0, lt=1)
    queries: int = Field(
        6, ge=1
    )  # attention-pooling queries per encoder: one per emotion (paper: 1)
    encoder_lr_scale: float = Field(0.05, gt=0)  # encoders fine-tuned at 0.05 × lr
    pretrain_epochs: int = Field(20, ge=1)
    # A clip without a transcript: "mask" leaves text out of its fusion; "zeros" feeds the
    # text encoder's output for an all-zero input as if present (the authors' fallback).
    missing_text: Literal["mask", "zeros"] = "mask"


class TaemiParams(SystemParams):
    """TAEMI (ABAW10 winner), after its abstract: the transcript queries a cross-attention
    branch over the visual and one over the acoustic frames; learnable tokens for a missing
    stream; modality dropout. Every value below is ours (docs/fidelity.md)."""

    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)  # decoder layers per branch (self-attn, cross-attn, feed-forward)
    modality_dropout: float = Field(0.2, ge=0, lt=1)  # per stream; the text anchor is always kept
    loss: Literal["mse", "ccc", "mimicmetrics"] = "mimicmetrics"
    ema: float | None = 0.999
    schedule: Literal["none", "cosine", "sgdr", "plateau"] = "cosine"
    warmup_epochs: float = 1.0


SYSTEM_NAMES = ("fuxi", "ustc", "augsburg", "abaw8", "mimicmetrics", "taemi")
PROTOCOLS = ("merged", "official", "final")


class TrainParams(_Section):
    """Fusion training; ``system`` picks one of the papers, ``protocol`` how models are made.

    - ``merged`` (Fuxi): k folds over train+valid; the served model is the folds' mean.
    - ``official`` (USTC, MimicMetrics): one model trained on train, early-stopped on valid.
    - ``final`` (Augsburg): as ``official`` to choose the epochs, then one model trained on
      train+valid for that many epochs; it is the served model.
    """

    system: Literal["fuxi", "ustc", "augsburg", "abaw8", "mimicmetrics", "taemi"] = "mimicmetrics"
    inputs: tuple[str, ...] = (
        "audio",
        "visual",
        "text",
    )  # feature sets (features.sets) the model sees
    protocol: Literal["merged", "official", "final"] = "merged"
    # The fold ids 0 … k−1 (merged: k ≥ 2; official and final: [0], the single model):
    # dvc.yaml makes one train@<id> stage each (an int k is read as range(k)).
    folds: tuple[int, ...] = (0, 1, 2, 3, 4)
    seed: int = 7
    device: str = "auto"  # auto: CUDA when present, else CPU | cpu | cuda | cuda:N
    amp: bool = True  # on CUDA: bf16 autocast (no effect on a CPU)
    # On CUDA: every clip pooled once and held on the GPU, each batch gathered there. False: each
    # batch assembled on the host by loader_workers processes (features larger than GPU memory).
    batches_on_device: bool = True
    loader_workers: int | None = Field(
        None, ge=0
    )  # batch-assembling processes (None: 4 on CUDA, 0 on CPU)
    epochs: int = Field(60, ge=1)
    patience: int = Field(12, ge=1)  # early stopping on the validation mean Pearson
    batch_size: int = Field(16, ge=2)
    frames: dict[str, int] = {"audio": 32, "visual": 16, "text": 8}  # TSN segments per input
    out: Path = Path("models/folds")
    fuxi: FuxiParams = FuxiParams()
    ustc: UstcParams = UstcParams()
    augsburg: AugsburgParams = AugsburgParams()
    abaw8: Abaw8Params = Abaw8Params()
    mimicmetrics: MimicMetricsParams = MimicMetricsParams()
    taemi: TaemiParams = TaemiParams()

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
        return getattr(self, system or self.system)


class EnsembleParams(_Section):
    """The fold models' mean, its metrics and plots, and the comparison table."""

    out: Path = Path("models/ensemble")
    reports: Path = Path("reports/training")
    # `mimicflow stage compare` (`make compare`): each recipe's demo flavour, each system on the
    # feature sets of train.inputs, and the default system on one input at a time.
    compare_recipes: tuple[str, ...] = (
        "fuxi",
        "ustc",
        "augsburg",
        "augsburg-abaw8",
        "mimicmetrics",
        "taemi",
    )
    recipes_dir: Path = Path("recipes")
    compare_out: Path = Path("data/compare")  # the recipes' own feature sets (a working folder)
    compare_systems: tuple[str, ...] = SYSTEM_NAMES
    compare_epochs: int = Field(20, ge=1)  # every run of the table gets the same budget and folds


class ServingParams(_Section):
    """The ``package`` stage's bento and the service's limits on uploads (packaged with it)."""

    out: Path = Path("models/bento")  # the exported bento + bento.json (tags)
    max_upload_mb: float = Field(50.0, gt=0)  # larger uploads: 413
    max_duration_s: float = Field(60.0, gt=0)  # longer clips: 422
    token_env: str = "MIMICFLOW_API_TOKEN"  # when this variable is set, predict endpoints need it
    guard_metrics: bool = True  # with a token set, /metrics needs it too (false: open to scrapers)


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
    train: TrainParams = TrainParams()
    ensemble: EnsembleParams = EnsembleParams()
    serving: ServingParams = ServingParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _known_sets(self):
        sets = self.features.sets
        for where, names in (
            ("train.inputs", self.train.inputs),
            ("monitor.modalities", self.monitor.modalities),
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
