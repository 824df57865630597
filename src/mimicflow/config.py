"""Typed pipeline parameters, loaded once from ``params.yaml`` and passed down.

Every stage reads its own section of :class:`Params`; nothing else in the code base parses
``params.yaml``. Unknown keys are errors, so a typo in ``params.yaml`` fails loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
        "whisper-tiny.en", "blazeface", "facemesh", "centerface", "fer2013", "all-minilm-l6-v2",
    )  # fmt: skip
    entries: dict[str, ModelEntry] = {}


class FacesParams(_Section):
    """Face detection, tracking and alignment. Models: catalogue names, folders or files."""

    backend: Literal["blazeface", "centerface", "insightface"] = "blazeface"
    detector_model: str = "blazeface"
    mesh_model: str = "facemesh"  # used by the blazeface backend
    full_range: bool = False  # blazeface: far-face model (group shots) instead of close-up
    fps: float = Field(6.0, gt=0)
    crop_size: int = Field(224, ge=32)
    threshold: float = Field(0.5, gt=0, lt=1)
    out: Path = Path("data/perception/faces")


class AsrParams(_Section):
    """Speech recognition: backend and model (a catalogue name, a folder, or a hub id)."""

    out: Path = Path("data/perception/asr")
    audio_out: Path = Path("data/perception/audio")  # decoded 16 kHz audio, reused by features
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    model: str = "whisper-tiny.en"
    compute_type: str = "int8"
    language: str | None = "en"
    beam_size: int = Field(1, ge=1)


class AudioFeatureParams(_Section):
    """Audio encoder: a Whisper model (catalogue name, CTranslate2 folder or .pt: its encoder's
    hidden states) or any transformers speech model id/path (wav2vec2, HuBERT, WavLM …)."""

    model: str = "whisper-tiny.en"
    layer: int = -1


class VisualFeatureParams(_Section):
    """Visual encoder over the aligned crops: "default" (FaceMesh facial measures + FER2013
    expression probabilities) or any transformers image model id/path (ViT, DINOv2, MAE, CLIP)."""

    model: str = "default"
    fer_model: str = "fer2013"
    layer: int = -1
    pooling: Literal["cls", "mean"] = "cls"


class TextFeatureParams(_Section):
    """Text encoder over transcripts: any transformers text model id/path."""

    model: str = "all-minilm-l6-v2"
    layer: int = -1
    pooling: Literal["mean", "cls", "tokens", "sentences"] = "sentences"
    normalize: bool = True


class FeaturesParams(_Section):
    """Feature extraction: one store per modality under ``out``."""

    out: Path = Path("data/features")
    device: str = "auto"  # auto: CUDA when present, else CPU
    batch_size: int = Field(16, ge=1)  # encoder batch (audio windows, frames, texts)
    audio: AudioFeatureParams = AudioFeatureParams()
    visual: VisualFeatureParams = VisualFeatureParams()
    text: TextFeatureParams = TextFeatureParams()


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
    predictions: bool = True  # compare the predicted emotions of the ensemble (ensemble.out)
    modalities: tuple[str, ...] = ("audio", "visual", "text")
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


class FuxiParams(SystemParams):
    """Fuxi (ABAW6): TSN sampling, BiGRU branches, average fusion, text-anchored triplet, EMA."""

    hidden: int = 64
    dropout: float = 0.3
    embed: int = Field(256, ge=8)
    ema: float | None = 0.999
    encoder_lr_scale: float = Field(1.0, gt=0)  # per-module learning rates: branches vs head
    triplet_margin: float = 0.1
    triplet_weight: float = Field(0.1, ge=0)  # beside the regression loss; on unit-norm features
    restart_epochs: int = Field(5, ge=1)  # cosine annealing with warm restarts
    min_lr: float = 1e-8


class UstcParams(SystemParams):
    """USTC (ABAW8): TCN vision, gated BiLSTM audio, quality-aware weights, Transformer fusion."""

    heads: int = Field(4, ge=1)
    layers: int = Field(1, ge=1)
    ema: float | None = 0.999


class AugsburgParams(SystemParams):
    """Augsburg (ABAW6): audio only, global mean ⊕ LSTM last state → dense + tanh."""


class MimicMetricsParams(SystemParams):
    """MimicMetrics (ABAW10): unimodal pre-training, then MLP fusion with modality dropout."""

    loss: Literal["mse", "ccc", "mimicmetrics"] = "mimicmetrics"
    weight_decay: float = 1e-4
    modality_dropout: float = Field(0.3, ge=0, lt=1)
    queries: int = Field(6, ge=1)  # attention-pooling queries per encoder: one per emotion (paper: 1)
    encoder_lr_scale: float = Field(0.05, gt=0)  # encoders fine-tuned at 0.05 × lr
    pretrain_epochs: int = Field(20, ge=1)
    plateau_patience: int = Field(3, ge=1)  # ReduceLROnPlateau on the validation Pearson
    plateau_factor: float = Field(0.5, gt=0, lt=1)


SYSTEM_NAMES = ("fuxi", "ustc", "augsburg", "mimicmetrics")


class TrainParams(_Section):
    """Fusion training with k-fold cross-validation; ``system`` picks one of the four papers."""

    system: Literal["fuxi", "ustc", "augsburg", "mimicmetrics"] = "mimicmetrics"
    modalities: tuple[str, ...] = ("audio", "visual", "text")  # feature stores the model sees
    # merged: k folds over train+valid (Fuxi); official: k folds over train, valid held out.
    protocol: Literal["merged", "official"] = "merged"
    # The fold ids 0 … k−1 of k-fold cross-validation: dvc.yaml makes one train@<id> stage each
    # (an int k is read as range(k)).
    folds: tuple[int, ...] = (0, 1, 2, 3, 4)
    seed: int = 7
    epochs: int = Field(60, ge=1)
    patience: int = Field(12, ge=1)  # early stopping on the fold's validation mean Pearson
    batch_size: int = Field(16, ge=2)
    frames: dict[str, int] = {"audio": 32, "visual": 16, "text": 8}  # TSN segments per modality
    out: Path = Path("models/folds")
    fuxi: FuxiParams = FuxiParams()
    ustc: UstcParams = UstcParams()
    augsburg: AugsburgParams = AugsburgParams()
    mimicmetrics: MimicMetricsParams = MimicMetricsParams()

    @field_validator("folds", mode="before")
    @classmethod
    def _fold_ids(cls, value):
        ids = tuple(range(value)) if isinstance(value, int) else tuple(value)
        if len(ids) < 2 or ids != tuple(range(len(ids))):
            raise ValueError(f"folds must be the ids 0 … k−1 of k ≥ 2 folds (or k itself), got {value!r}")
        return ids

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def system_params(self, system: str | None = None) -> SystemParams:
        return getattr(self, system or self.system)


class EnsembleParams(_Section):
    """The fold models' mean, its metrics and plots, and the comparison table."""

    out: Path = Path("models/ensemble")
    reports: Path = Path("reports/training")
    # `mimicflow stage compare`: each system, and the default system on one modality at a time.
    compare_systems: tuple[str, ...] = SYSTEM_NAMES
    compare_epochs: int = Field(20, ge=1)  # every run of the table gets the same budget


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
    features: FeaturesParams = FeaturesParams()
    compute: ComputeParams = ComputeParams()
    flows: FlowsParams = FlowsParams()
    monitor: MonitorParams = MonitorParams()
    train: TrainParams = TrainParams()
    ensemble: EnsembleParams = EnsembleParams()
    serving: ServingParams = ServingParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def load_params(path: Path | str = DEFAULT_PARAMS_FILE) -> Params:
    """Read ``params.yaml``; a missing file gives the defaults."""
    path = Path(path)
    if not path.exists():
        return Params()
    raw = yaml.safe_load(path.read_text()) or {}
    return Params.model_validate(raw)
