"""Shared fixtures: one small synthetic dataset with planted faults, validated once per session."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MIMICFLOW_CACHE", tempfile.mkdtemp(prefix="mimicflow-cache-"))

SYNTH_CLIPS = 16
SYNTH_SEED = 11
# Session fixtures that generate, perceive or train data, or start a server: a test using one
# (directly or through another fixture) is in the `pipeline` tier, not in `make test-fast`.
PIPELINE_FIXTURES = {
    "synth_root",
    "faulty_root",
    "validated",
    "models_dir",
    "perceived",
    "featured",
    "prefect_api",
    "ensemble_dir",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pipeline)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A 16-clip synthetic dataset (no faults)."""
    from mimicflow.data.synth.generator import generate_dataset

    root = tmp_path_factory.mktemp("synth") / "dataset"
    generate_dataset(root, SYNTH_CLIPS, SYNTH_SEED, workers=2, progress=False)
    return root


@pytest.fixture(scope="session")
def faulty_root(synth_root, tmp_path_factory):
    """The same dataset plus every planted fault."""
    import shutil

    from mimicflow.data.faults import plant_faults

    root = tmp_path_factory.mktemp("faulty") / "dataset"
    shutil.copytree(synth_root, root)
    plant_faults(root)
    return root


@pytest.fixture(scope="session")
def validated(faulty_root, tmp_path_factory):
    """The validate stage run once over the faulty dataset: (summary, output folder)."""
    from mimicflow.config import Params
    from mimicflow.stages import validate

    out = tmp_path_factory.mktemp("validated")
    summary = validate.run(Params(), faulty_root, out, progress=False)
    return summary, out


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """The embedded default models, materialised once for the session."""
    from mimicflow.config import Params
    from mimicflow.models.catalogue import catalogue, prepare

    root = tmp_path_factory.mktemp("models")
    prepare(list(Params().models.prepare), root, catalogue())
    return root


def perception_params(validated, faulty_root, models_dir, out, **compute):
    """Params for running the stages after validate over the faulty set into ``out``."""
    from mimicflow.config import Params

    _, validated_out = validated
    return Params.model_validate(
        {
            "data": {"root": str(faulty_root)},
            "validate": {"out": str(validated_out)},
            "models": {"dir": str(models_dir)},
            "faces": {"out": str(out / "faces"), "fps": 3},
            "asr": {"out": str(out / "asr"), "audio_out": str(out / "audio")},
            "features": {"out": str(out / "features")},
            "compute": {"workers": 2} | compute,
        }
    )


@pytest.fixture(scope="session")
def perceived(validated, faulty_root, models_dir, tmp_path_factory):
    """The faces and asr stages run once over the faulty set: (params, faces, asr metrics)."""
    from mimicflow.stages.asr import run_asr
    from mimicflow.stages.faces import run_faces

    params = perception_params(validated, faulty_root, models_dir, tmp_path_factory.mktemp("perc"))
    return params, run_faces(params, progress=False), run_asr(params, progress=False)


@pytest.fixture(scope="session")
def featured(perceived):
    """The three features stages run once after ``perceived``: (params, metrics per modality)."""
    from mimicflow.stages.features import run_features

    params, _, _ = perceived
    metrics = {m: run_features(params, m, progress=False) for m in ("audio", "visual", "text")}
    return params, metrics


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real Prefect server (`prefect server start`) on 127.0.0.1 for the session; this
    process's Prefect client talks to it. Yields (API URL, PREFECT_HOME)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from .prefect_server import start_server, stop

    home = tmp_path_factory.mktemp("prefect")
    process, url = start_server(home, home / "server.log")
    try:
        with temporary_settings({PREFECT_API_URL: url, PREFECT_HOME: home}):
            yield url, home
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)  # send the last run logs while the server is up
    finally:
        stop(process)


@pytest.fixture(scope="session")
def ensemble_dir(featured, tmp_path_factory):
    """A small ensemble of the default system trained on the featured clips (2 folds, a few
    epochs) through the real train and ensemble stages: for prediction, serving and
    monitoring tests. Returns the ensemble folder (what ``load_ensemble`` takes)."""
    from mimicflow.stages.train import run_ensemble, run_train

    params, _ = featured
    out = tmp_path_factory.mktemp("trained")
    train = params.train.model_copy(
        update={
            "folds": (0, 1),
            "epochs": 3,
            "patience": 2,
            "out": out / "folds",
            "mimicmetrics": params.train.mimicmetrics.model_copy(update={"pretrain_epochs": 2}),
        }
    )
    ensemble = params.ensemble.model_copy(
        update={"out": out / "ensemble", "reports": out / "reports"}
    )
    params = params.model_copy(update={"train": train, "ensemble": ensemble})
    for fold in train.folds:
        run_train(params, fold, progress=False)
    run_ensemble(params)
    return out / "ensemble"
