"""Thin DVC stage modules: read params, call the library, write outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


class MissingStageInput(FileNotFoundError):
    """An upstream stage's output is not there; the message says which stage to run."""


def read_stage_output(path: Path, stage: str) -> pd.DataFrame:
    """Read an upstream stage's parquet table, or explain which stage produces it."""
    path = Path(path)
    if not path.is_file():
        raise MissingStageInput(f"{path} not found: run the {stage!r} stage first "
                                f"(`dvc repro {stage}`)")  # fmt: skip
    return pd.read_parquet(path)
