"""Thin DVC stage modules: read params, call the library, write outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mimicflow.config import Params


class MissingStageInput(FileNotFoundError):
    """An upstream stage's output is not there; the message says which stage to run."""


def require_stage_output(path: Path, stage: str) -> Path:
    """``path`` if an upstream stage has written it, else explain which stage produces it."""
    path = Path(path)
    if not path.exists():
        raise MissingStageInput(f"{path} not found: run the {stage!r} stage first "
                                f"(`dvc repro {stage}`)")  # fmt: skip
    return path


def read_stage_output(path: Path, stage: str) -> pd.DataFrame:
    """Read an upstream stage's parquet table, or explain which stage produces it."""
    return pd.read_parquet(require_stage_output(path, stage))


def resolve_model(params: Params, name: str) -> str:
    """A catalogue name becomes its prepared folder (fetched once); a path or hub id passes."""
    from mimicflow.models.catalogue import catalogue, resolve

    return resolve(name, params.models.dir, catalogue(params.models.entries))


def face_models(params: Params) -> dict[str, Path | None]:
    """The face backend's model folders by role (the mesh only for blazeface)."""
    faces = params.faces
    mesh = resolve_model(params, faces.mesh_model) if faces.backend == "blazeface" else None
    return {"detector": Path(resolve_model(params, faces.detector_model)),
            "mesh": Path(mesh) if mesh else None}  # fmt: skip
