"""The bento as users deploy it: its image (the generated Dockerfile and requirements under the
bento's ``env/``) carries the ``serving`` extra and the system packages, none of the pipeline's
tools; the built bento, served by a real ``bentoml serve`` in which dvc, prefect, Great
Expectations, Evidently and Dask cannot be imported, answers BentoML's own ``SyncHTTPClient``
sent with the bearer token."""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import bentoml
import grimp
import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mimicflow import EMOTIONS
from mimicflow.data.faults import FAULTS
from mimicflow.features.store import FeatureTable
from mimicflow.inference import served_vs_stored
from mimicflow.stages.package import serving_requirements
from mimicflow.training.ensemble import load_ensemble

from .helpers.bento import bento_env, package, serve

REPO = Path(__file__).resolve().parents[1]
BENTOFILE = yaml.safe_load((REPO / "bentofile.yaml").read_text())
TOKEN = "deploy-token-81d0"
FORBIDDEN = {
    "dvc",
    "dvclive",
    "prefect",
    "prefect-dask",
    "great-expectations",
    "evidently",
    "dask",
    "distributed",
}
# Imported by modules the service imports, only inside functions serving never calls.
NOT_SERVED = {
    "great_expectations": "the validate stage's and the monitor's data checks",
    "dask": "the stages' and the monitor's Dask scheduler (compute.scheduler)",
    "opensmile": "the egemaps encoder (the prosody extra)",
}
# Loaded into every Python process of the server (and its workers): the forbidden packages
# cannot be imported; each process that loads it records its pid.
BLOCKER = """import os, sys
BLOCKED = {"dvc", "dvclive", "prefect", "prefect_dask", "great_expectations", "evidently",
           "dask", "distributed"}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name}: not in the serving image")
sys.meta_path.insert(0, Blocker())
with open(os.environ["MIMICFLOW_TEST_BLOCKED"], "a") as log:
    log.write(f"{os.getpid()}\\n")
"""


@pytest.fixture(scope="module")
def deployed(ensemble_dir, models_dir, tmp_path_factory):
    """The package stage into a private BentoML home, then ``bentoml serve`` of its bento with
    a token set and the forbidden packages blocked; yields (url, built bento folder, the file
    listing the blocked processes)."""
    root = tmp_path_factory.mktemp("deploy")
    env = bento_env(root, MIMICFLOW_API_TOKEN=TOKEN)
    summary = package(root, models_dir, ensemble_dir, env)
    name, version = summary["bento"].split(":")
    (root / "blocker").mkdir()
    (root / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join([str(root / "blocker"), *filter(None, [env.get("PYTHONPATH")])])
    env |= {"PYTHONPATH": path, "MIMICFLOW_TEST_BLOCKED": str(root / "blocked.txt")}
    with serve(summary["bento"], root, env) as url:
        yield url, root / "bentoml" / "bentos" / name / version, root / "blocked.txt"


def _names(lines: list[str]) -> set[str]:
    return {
        canonicalize_name(Requirement(line).name)
        for line in lines
        if line.strip() and not line.startswith("-")
    }


def test_the_bento_requirements_are_the_serving_extra(deployed):
    _, bento, _ = deployed
    lines = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    extra = serving_requirements(REPO / "pyproject.toml")
    assert _names(lines) == _names(extra)
    assert not _names(lines) & FORBIDDEN
    (index,) = BENTOFILE["python"]["extra_index_url"]  # CPU torch
    assert f"--extra-index-url {index}" in lines
    assert [t for t in lines if t.startswith("torch")] == [
        t for t in BENTOFILE["python"]["packages"] if t.startswith("torch")
    ]


def test_the_dockerfile_installs_the_system_packages_and_the_requirements(deployed):
    _, bento, _ = deployed
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    installs = [line.split() for line in dockerfile.splitlines() if "apt-get install" in line]
    system = BENTOFILE["docker"]["system_packages"]
    assert any(set(system) <= set(words) for words in installs), installs
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile


def test_sync_http_client_gets_six_intensities_from_the_served_bento(deployed, featured):
    url, _, blocked = deployed
    params, _ = featured
    clip = next(
        p
        for p in sorted((Path(params.data.root) / "raw").glob("*.mp4"))
        if p.stem not in FAULTS.values()
    )
    with bentoml.SyncHTTPClient(url, token=TOKEN, timeout=120) as client:
        answer = client.predict(file=clip)
    assert list(answer["intensities"]) == list(EMOTIONS)
    assert all(0 <= v <= 1 for v in answer["intensities"].values())
    assert len(set(blocked.read_text().split())) >= 2  # the server and its worker(s)
    with (
        pytest.raises(bentoml.exceptions.BentoMLException, match="bearer token"),
        bentoml.SyncHTTPClient(url, timeout=120) as client,
    ):
        client.predict(file=clip)


def test_every_dataset_clip_served_equals_the_ensembles_stored_prediction(
    deployed, featured, ensemble_dir, record_property
):
    """Served = evaluated at scale: every clip of the session's manifest POSTed to the served
    bento, against the ensemble's prediction from the feature store (what the ensemble stage
    scores); for the test split that prediction is the stored submission row. A refused clip
    is one in which the stages found nothing either."""
    url, _, _ = deployed
    params, _ = featured
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet").set_index("clip_id")
    submission = pd.read_csv(
        ensemble_dir.parent / "reports" / "submission.csv", dtype={"Filename": str}
    )
    ensemble = load_ensemble(ensemble_dir)
    stored = ensemble.predict_store(params.features.out, list(manifest.index))
    stored = stored.rename(columns={"clip_id": "Filename"})
    test = sorted(submission["Filename"])
    assert test == sorted(manifest.index[manifest["split"] == "test"])
    np.testing.assert_allclose(  # the submission is the store's prediction, to its 6 decimals
        submission.set_index("Filename").loc[test, list(EMOTIONS)],
        stored.set_index("Filename").loc[test, list(EMOTIONS)],
        atol=1e-6,
    )
    answers = {}
    for clip_id, row in manifest.iterrows():
        with open(Path(params.data.root) / row.video_path, "rb") as handle:
            response = httpx.post(
                f"{url}/predict",
                files={"file": (f"{clip_id}.mp4", handle)},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=300,
            )
        assert response.status_code in (200, 422), response.text
        answers[clip_id] = response.json()
    summary = served_vs_stored(answers, stored, 1e-3)
    record_property(
        "served", {k: summary[k] for k in ("compared", "refused", "max_abs_difference")}
    )
    assert summary["compared"] >= 16 and summary["passed"], summary
    on_test = served_vs_stored({c: answers[c] for c in test}, submission, 1e-3)
    assert on_test["passed"] and on_test["compared"] == len(test) - len(on_test["refused"])
    tables = {m: FeatureTable.open(params.features.out / m) for m in ensemble.inputs}
    for clip_id, error in summary["refused"].items():
        assert "nothing to predict from" in error
        assert not any(t.get(clip_id)[1].any() for t in tables.values() if clip_id in t)


def _installed_closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, with everything they require."""
    todo, seen = [Requirement(r).name for r in requirements], set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = [Requirement(r) for r in requires(name) or []]
        except PackageNotFoundError:
            continue
        todo += [r.name for r in needs if r.marker is None or r.marker.evaluate({"extra": ""})]
    return seen


def test_the_serving_extra_covers_every_package_the_service_imports():
    graph = grimp.build_graph(
        "mimicflow",
        include_external_packages=True,
        exclude_type_checking_imports=True,
        cache_dir=None,  # no .grimp_cache written into the repository
    )
    todo, seen = ["mimicflow.serving.service"], set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            if module.startswith("mimicflow"):
                parts = module.split(".")  # its packages' __init__ run first
                todo += [".".join(parts[:i]) for i in range(1, len(parts))]
                todo += graph.find_modules_directly_imported_by(module)
    imported = {m for m in seen if "." not in m} - set(sys.stdlib_module_names) - {"mimicflow"}
    served = _installed_closure(serving_requirements(REPO / "pyproject.toml"))
    assert not served & FORBIDDEN
    distributions = packages_distributions()
    missing = {
        m
        for m in imported - set(NOT_SERVED)
        if not {canonicalize_name(d) for d in distributions[m]} & served
    }
    assert missing == set(), f"add their distributions to the serving extra: {missing}"
    assert set(NOT_SERVED) <= imported  # each exception still exists
