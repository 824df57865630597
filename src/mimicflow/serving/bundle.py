"""What the ``package`` stage puts in the BentoML model store, and how a worker reads it back.

One folder, self-contained (the bento carries it; nothing is fetched at serve time)::

    ensemble/      the fold ensemble, as training wrote it, or
    combined/      with ``ensemble.members``: the combine stage's folder (each member's fold
                   ensemble and their weights per emotion)
    pretrained/    every model the clip chain uses (face detector and mesh, Whisper, encoders)
    params.json    the training-time clip chain (:class:`~mimicflow.config.ChainParams`, its own
                   versioned schema), model references pointing into pretrained/ (relative,
                   made absolute where the bundle lands)
    serving.json   the limits on uploads and the token variable's name
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mimicflow.clip.settings import model_field, resolve_model
from mimicflow.config import ChainParams, Params, ServingParams

if TYPE_CHECKING:
    from mimicflow.training.combine import Combination
    from mimicflow.training.ensemble import Ensemble

log = logging.getLogger(__name__)
PRETRAINED = "pretrained"
COMBINED = "combined"  # the bundle's folder of a combination (else "ensemble")
MODEL_NAME = (
    "mimicflow-ensemble"  # the model-store entry the package stage writes, the service reads
)


def model_fields(params: Params | ChainParams, inputs: list[str]) -> list[tuple[str, ...]]:
    """The params fields (paths into the params dict) that name a model the chain loads."""
    fields = [("faces", "detector_model"), ("asr", "model")]
    if params.faces.backend == "blazeface":
        fields.append(("faces", "mesh_model"))
    for name in inputs:
        field = model_field(params.features.sets[name])
        if field is not None:
            fields.append(("features", "sets", name, field))
    return fields


def _section(data: dict, field: tuple[str, ...]) -> dict:
    for key in field[:-1]:
        data = data[key]
    return data


def write_bundle(
    ensemble: Ensemble | Combination,
    ensemble_dir: Path,
    params: Params,
    serving: ServingParams,
    folder: Path,
) -> None:
    """Fill ``folder`` (a fresh model-store entry) from the ensemble (or combination) and the
    models it was trained with, resolved through ``params`` (the catalogue as configured now)."""
    from mimicflow.training.combine import Combination

    folder = Path(folder)
    combined = isinstance(ensemble, Combination)
    shutil.copytree(ensemble_dir, folder / (COMBINED if combined else "ensemble"))
    chain = ensemble.params
    data = chain.model_dump(mode="json", by_alias=True)
    copied: dict[Path, str] = {}
    for field in model_fields(chain, ensemble.inputs):
        section = _section(data, field)
        source = Path(resolve_model(params, section[field[-1]]))
        if not source.exists():
            log.warning(
                "%s = %r is not a local model: the serving machine must be able to load "
                "it by that name",
                ".".join(field),
                section[field[-1]],
            )
            continue
        source = source.resolve()
        if source not in copied:
            name = source.name
            while name in copied.values():
                name += "_"
            target = folder / PRETRAINED / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
            copied[source] = name
        section[field[-1]] = f"{PRETRAINED}/{copied[source]}"
    data["models"]["dir"] = PRETRAINED  # no machine path travels; made absolute when read
    (folder / "params.json").write_text(json.dumps(data, indent=2))
    (folder / "serving.json").write_text(serving.model_dump_json(indent=2))


@dataclass
class Bundle:
    ensemble: Ensemble | Combination
    params: ChainParams  # the clip chain's params, model references absolute
    serving: ServingParams


def read_bundle(folder: Path) -> Bundle:
    """The ensemble (or combination) and the chain's params from a bundle folder (wherever it
    now lies)."""
    from mimicflow.training.combine import load_combination
    from mimicflow.training.ensemble import load_ensemble

    folder = Path(folder).resolve()
    data = json.loads((folder / "params.json").read_text())
    if (folder / COMBINED).is_dir():
        ensemble = load_combination(folder / COMBINED)
    else:
        ensemble = load_ensemble(folder / "ensemble")
    for field in model_fields(ChainParams.model_validate(data), ensemble.inputs):
        section = _section(data, field)
        if section[field[-1]].startswith(f"{PRETRAINED}/"):
            section[field[-1]] = str(folder / section[field[-1]])
    data["models"]["dir"] = str(folder / PRETRAINED)  # nothing is fetched beside the bundle
    serving = ServingParams.model_validate_json((folder / "serving.json").read_text())
    return Bundle(ensemble, ChainParams.model_validate(data), serving)
