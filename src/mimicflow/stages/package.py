"""DVC stage ``package``: the ensemble (with ``ensemble.members``: their combination) and
everything its clip chain needs into the BentoML model store (``mimicflow-ensemble``), then the
bento ``mimicflow-emi`` built from the repository's ``bentofile.yaml`` (what ``bentoml build -f
bentofile.yaml src`` builds by hand), exported beside the pipeline's outputs.

The bentofile pins the ``serving`` extra of ``pyproject.toml`` to versions; the stage refuses to
build when this environment has others, so the bento carries the packages the pipeline ran with.
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
import re
import shutil
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

import mimicflow
from mimicflow.config import Params
from mimicflow.paths import MissingStageInput, StagePaths

log = logging.getLogger(__name__)
BENTO_NAME = "mimicflow-emi"  # the bento served; its model is serving.bundle.MODEL_NAME


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


def stale_pins(bentofile: Path) -> list[str]:
    """What keeps the bentofile's Python packages from being the ``serving`` extra (of the
    ``pyproject.toml`` beside it) at this environment's versions: ``"name==pin (installed X)"``
    or ``"name (not pinned)"`` each; empty when the bento would carry what the pipeline runs."""
    pins = dict(
        line.partition("==")[::2]
        for line in yaml.safe_load(bentofile.read_text())["python"]["packages"]
    )
    extra = [
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]
        for r in serving_requirements(bentofile.parent / "pyproject.toml")
    ]
    stale = [f"{name} (not pinned)" for name in extra if name not in pins]
    for name, pin in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "none"
        if installed != pin:
            stale.append(f"{name}=={pin} (installed {installed})")
    return stale


def build_bento(bentofile: Path, name: str, labels: dict[str, str]):
    """``bentoml build -f bentofile.yaml src`` with the bento's name and labels."""
    import bentoml

    return bentoml.bentos.build_bentofile(
        str(bentofile), name=name, labels=labels, build_ctx=str(bentofile.parent / "src")
    )


def run_package(params: Params) -> dict:
    import bentoml

    from mimicflow.serving.bundle import MODEL_NAME, write_bundle
    from mimicflow.training.combine import has_members, load_combination
    from mimicflow.training.ensemble import load_ensemble

    paths = StagePaths(params)
    bentofile = Path(mimicflow.__file__).resolve().parents[2] / "bentofile.yaml"
    if not bentofile.is_file():
        raise MissingStageInput(f"no {bentofile}: the bento is built from the repository's tree")
    if stale := stale_pins(bentofile):
        raise MissingStageInput(
            f"{bentofile.name} pins other versions than this environment has: "
            f"{', '.join(stale)}; pin the installed ones"
        )
    source = Path(params.ensemble.combined_out)
    if has_members(source):  # ensemble.members: the combination is served
        ensemble = load_combination(source)
    else:
        source = paths.ensemble
        try:
            ensemble = load_ensemble(source)
        except FileNotFoundError as exc:
            raise MissingStageInput(
                f"{exc} (run the 'ensemble' stage first: `dvc repro ensemble`)"
            ) from exc
    labels = {"model_version": ensemble.version}
    metadata = {"inputs": list(ensemble.inputs), "emotions": list(mimicflow.EMOTIONS)}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as model:
        write_bundle(ensemble, source, params, params.serving, Path(model.path))
    log.info("saved %s", model.tag)
    name, extra_labels = bento_identity()
    bento = build_bento(bentofile, name, labels | extra_labels)
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
        "inputs": list(ensemble.inputs),
        "archive": archive.name,
        "archive_mb": round(archive.stat().st_size / 2**20, 1),
    }
    (out / "bento.json").write_text(json.dumps(summary, indent=2))
    return summary
