"""DVC stage ``package``: the ensemble and everything its clip chain needs into the BentoML
model store, then a bento around the service, exported beside the pipeline's outputs.

The bento's image is the service's ``bentoml.images.Image`` (Debian, Python 3.11, the system
packages it needs) with the ``serving`` extra of ``pyproject.toml`` as its Python packages (torch
from PyTorch's CPU index), listed, not locked against an index: the stage builds offline.
Serve it with ``bentoml serve mimicflow-emi:latest``, build its container with ``bentoml
containerize mimicflow-emi:latest``; on another machine ``bentoml import`` the exported
``<serving.out>/<bento>.bento.tar`` first.

Inside a DVC experiment (``dvc exp run``, which sets ``DVC_EXP_NAME``) the bento is
``mimicflow-emi-exp``, labelled with the experiment's name: ``mimicflow-emi:latest``, the bento
served, moves only when the stage runs outside an experiment (``make demo``, ``make promote``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tomllib
from pathlib import Path

import mimicflow
from mimicflow.config import Params
from mimicflow.paths import MissingStageInput, StagePaths

log = logging.getLogger(__name__)
SERVICE = "mimicflow.serving.service:EMIService"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # CPU torch: no CUDA stack in the image


BENTO_NAME = "mimicflow-emi"  # the bento served; its model is serving.service.MODEL_NAME


def bento_identity(env=os.environ) -> tuple[str, dict[str, str]]:
    """The bento's name and extra labels: ``mimicflow-emi``, or in a DVC experiment
    ``mimicflow-emi-exp`` labelled ``experiment=<name>`` (the served bento stays as it was)."""
    experiment = env.get("DVC_EXP_NAME")
    if experiment:
        return f"{BENTO_NAME}-exp", {"experiment": experiment}
    return BENTO_NAME, {}


def serving_requirements(pyproject: Path) -> list[str]:
    """The ``serving`` extra of the project's ``pyproject.toml``: what the service imports."""
    if not pyproject.is_file():
        raise MissingStageInput(
            f"no {pyproject}: the bento is built from the repository's source tree"
        )
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["optional-dependencies"]["serving"])


def run_package(params: Params) -> dict:
    import bentoml

    from mimicflow.serving.bundle import write_bundle
    from mimicflow.serving.service import MODEL_NAME
    from mimicflow.training.ensemble import load_ensemble

    paths = StagePaths(params)
    try:
        ensemble = load_ensemble(paths.ensemble)
    except FileNotFoundError as exc:
        raise MissingStageInput(
            f"{exc} (run the 'ensemble' stage first: `dvc repro ensemble`)"
        ) from exc
    labels = {"model_version": ensemble.version}
    metadata = {"modalities": list(ensemble.modalities), "emotions": list(mimicflow.EMOTIONS)}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as model:
        write_bundle(ensemble, paths.ensemble, params, params.serving, Path(model.path))
    log.info("saved %s", model.tag)
    src = Path(mimicflow.__file__).resolve().parent.parent
    packages = serving_requirements(src.parent / "pyproject.toml")
    name, extra_labels = bento_identity()
    bento = bentoml.bentos.build(
        SERVICE,
        name=name,
        labels=labels | extra_labels,
        include=["mimicflow/**/*.py", "mimicflow/**/*.yaml"],
        exclude=["**/__pycache__"],
        python={"packages": packages, "extra_index_url": [TORCH_CPU_INDEX]},
        build_ctx=str(src),
    )
    log.info("built %s", bento.tag)
    out = paths.bento.resolve()  # BentoML's export reads a relative path from /
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    archive = Path(
        bentoml.bentos.export_bento(  # plain tar: gzip of the weights costs minutes
            bento.tag, str(out / f"{name}.bento.tar"), output_format="tar"
        )
    )
    summary = {
        "bento": str(bento.tag),
        "model": str(model.tag),
        "model_version": ensemble.version,
        "modalities": list(ensemble.modalities),
        "archive": archive.name,
        "archive_mb": round(archive.stat().st_size / 2**20, 1),
    }
    (out / "bento.json").write_text(json.dumps(summary, indent=2))
    return summary
