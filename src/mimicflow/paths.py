"""Every stage output path, in one place.

The stages write these paths and everything else (inference, serving, monitoring, reports, the
CLI) reads them through :class:`StagePaths`; ``dvc.yaml`` names the same files through the same
params keys. A missing upstream output becomes :class:`MissingStageInput`, whose message names
the stage that writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from mimicflow.config import Params


class MissingStageInput(FileNotFoundError):
    """An upstream stage's output is not there; the message says which stage to run."""


class NoCommitYet(RuntimeError):
    """The training curves' logger (DVCLive) cannot start in a git repository without a commit."""


def require(path: Path, stage: str) -> Path:
    """``path`` if the stage ``stage`` has written it, else explain which stage produces it."""
    path = Path(path)
    if not path.exists():
        raise MissingStageInput(
            f"{path} not found: run the {stage!r} stage first (`dvc repro {stage}`)"
        )
    return path


def read_table(path: Path, stage: str) -> pd.DataFrame:
    """A stage's parquet table, or a message naming the stage that writes it."""
    import pandas as pd

    return pd.read_parquet(require(path, stage))


@dataclass(frozen=True)
class StagePaths:
    """Where each stage's outputs lie for one set of params."""

    params: Params

    # validate
    @property
    def validated(self) -> Path:
        return Path(self.params.validate_.out)

    @property
    def manifest(self) -> Path:
        return self.validated / "manifest.parquet"

    @property
    def quarantine(self) -> Path:
        return self.validated / "quarantine.csv"

    @property
    def data_docs(self) -> Path:
        return self.validated / "data_docs"

    @property
    def validation_summary(self) -> Path:
        return self.validated / "summary.json"

    # faces, asr (each clip's artefact + index.parquet; metrics beside the folder)
    @property
    def faces(self) -> Path:
        return Path(self.params.faces.out)

    @property
    def transcripts(self) -> Path:
        return Path(self.params.asr.out)

    @property
    def audio(self) -> Path:
        return Path(self.params.asr.audio_out)

    @staticmethod
    def index(folder: Path) -> Path:
        return Path(folder) / "index.parquet"

    @staticmethod
    def metrics(folder: Path) -> Path:
        return Path(folder).with_suffix(".json")

    # features
    def features(self, name: str) -> Path:
        """Feature set ``name``'s store."""
        return Path(self.params.features.out) / name

    def packed(self, name: str) -> Path:
        return self.features(name) / "packed"

    def features_metrics(self, name: str) -> Path:
        return Path(self.params.features.out) / f"{name}.json"

    # training
    @property
    def inputs(self) -> Path:
        """The ``inputs`` stage's digest of the feature sets training reads."""
        return Path(self.params.train.out) / "inputs.json"

    def fold(self, fold: int) -> Path:
        return Path(self.params.train.out) / str(fold)

    def curves(self, fold: int) -> Path:
        return self.reports / "curves" / f"fold_{fold}"

    @property
    def ensemble(self) -> Path:
        return Path(self.params.ensemble.out)

    @property
    def reports(self) -> Path:
        return Path(self.params.ensemble.reports)

    # serving, monitoring
    @property
    def bento(self) -> Path:
        return Path(self.params.serving.out)

    @property
    def reference(self) -> Path:
        return Path(self.params.monitor.reference)

    def read_manifest(self) -> pd.DataFrame:
        return read_table(self.manifest, "validate")

    def read_index(self, stage: str) -> pd.DataFrame:
        """The ``faces`` or ``asr`` stage's index (one row per clip, its artefact's name)."""
        folder = {"faces": self.faces, "asr": self.transcripts}[stage]
        return read_table(self.index(folder), stage)
