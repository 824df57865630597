"""DVC stage ``package``: the ensemble and everything its clip chain needs into the BentoML
model store, then a bento around the service, exported beside the pipeline's outputs.

The bento is built offline: its Python packages are listed, not locked against an index. Serve
it with ``bentoml serve mimicflow-emi:latest``; on another machine ``bentoml import`` the
exported ``<serving.out>/mimicflow-emi.bento.tar`` first.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib.metadata import requires
from pathlib import Path

import mimicflow
from mimicflow.config import Params
from mimicflow.paths import MissingStageInput, StagePaths

log = logging.getLogger(__name__)
SERVICE = "mimicflow.serving.service:EMIService"


def _requirements() -> list[str]:
    """The project's runtime dependencies (extras left out), as the bento's package list."""
    return [r for r in requires("mimicflow") or [] if "extra ==" not in r]


def run_package(params: Params) -> dict:
    import bentoml

    from mimicflow.serving.bundle import write_bundle
    from mimicflow.serving.service import MODEL_NAME
    from mimicflow.training.ensemble import load_ensemble

    paths = StagePaths(params)
    try:
        ensemble = load_ensemble(paths.ensemble)
    except FileNotFoundError as exc:
        raise MissingStageInput(f"{exc} (run the 'ensemble' stage first: `dvc repro ensemble`)"
                                ) from exc  # fmt: skip
    labels = {"model_version": ensemble.version}
    metadata = {"modalities": list(ensemble.modalities), "emotions": list(mimicflow.EMOTIONS)}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as model:
        write_bundle(ensemble, paths.ensemble, params, params.serving, Path(model.path))
    log.info("saved %s", model.tag)
    src = Path(mimicflow.__file__).resolve().parent.parent
    bento = bentoml.bentos.build(
        SERVICE,
        name=MODEL_NAME,
        labels=labels,
        include=["mimicflow/**/*.py", "mimicflow/**/*.yaml"],
        exclude=["**/__pycache__"],
        python={"packages": _requirements(), "lock_packages": False},
        build_ctx=str(src),
    )
    log.info("built %s", bento.tag)
    out = paths.bento.resolve()  # BentoML's export reads a relative path from /
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    archive = Path(bentoml.bentos.export_bento(  # plain tar: gzip of the weights costs minutes
        bento.tag, str(out / f"{MODEL_NAME}.bento.tar"), output_format="tar"))  # fmt: skip
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
