"""Shared fixtures: one small synthetic dataset with planted faults, validated once per session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MIMICFLOW_CACHE", tempfile.mkdtemp(prefix="mimicflow-cache-"))
# Under `make test`'s xdist workers each process, and what it spawns, gets its share of the cores
# (set before torch loads): OpenMP threads spin-wait, and two workers with a thread per core each
# ran CPU-bound tests up to 10 times slower.
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if XDIST_WORKERS > 1:
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, str(max(1, (os.cpu_count() or 1) // XDIST_WORKERS)))

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


# The unit tier (tests not marked pipeline, slow or gpu; `make test-fast` also leaves out the
# heavy ones) is offline, spawns no DVC, server, package download or Dask, and writes nothing
# inside the repository.
REPO = Path(__file__).resolve().parents[1]
LOOPBACK = ("127.", "::1", "localhost")
SPAWN_REFUSED = {"dvc", "bentoml", "prefect", "pip", "evidently", "dask", "uv"}
OTHER_TIERS = ("pipeline", "slow", "gpu")
LONG_TIERS = ("pipeline", "slow", "heavy")
# The files that take longest in `make test` (its --durations on 2 cores, 2 workers), longest first.
LONGEST_FILES = (
    "test_recipe_dry_run.py",
    "test_monitor.py",
    "test_flows_concurrency.py",
    "test_pipeline_e2e.py",
)
_unit_test = {"running": None, "others_ran": False}  # the unit-tier test now running, if any
# Each session fixture's set-up has this budget of its own (the `timeout` ini option bounds only
# the test functions: timeout_func_only).
SESSION_FIXTURE_BUDGET_S = 1500


def pytest_collection_modifyitems(items):
    """Mark the tests that use a pipeline fixture ``pipeline``; then order the files (the same
    order on every xdist worker): ``make test`` hands whole files to its workers in this order
    (``--no-loadscope-reorder``: xdist would sort them by their number of tests), so the longest
    go first, then the others with a pipeline, slow or heavy test, and the many short unit-tier
    files last, which evens out the end."""
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pipeline)
    long_files = {
        item.path for item in items if any(item.get_closest_marker(m) for m in LONG_TIERS)
    }

    def rank(item) -> int:
        if item.path.name in LONGEST_FILES:
            return LONGEST_FILES.index(item.path.name)
        return len(LONGEST_FILES) + (item.path not in long_files)

    items.sort(key=rank)  # stable: the files of one rank keep their order


def _unit_tier_guard(event: str, args: tuple) -> None:
    """Audit hook: while a unit-tier test runs, refuse the network and the tools it must not
    spawn (the test fails with this message)."""
    test = _unit_test["running"]
    if test is None:
        return
    if event in ("socket.connect", "socket.getaddrinfo"):
        address = args[1] if event == "socket.connect" else args  # (host, port, …); AF_UNIX: str
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(host, str | bytes) and not os.fsdecode(host).startswith(LOOPBACK):
            raise RuntimeError(f"{test}: the unit tier is offline (mark it pipeline): {host}")
    elif event == "subprocess.Popen" and isinstance(args[1], list | tuple):
        names = {Path(os.fsdecode(a)).name for a in args[1][:3] if isinstance(a, str | bytes)}
        if names & SPAWN_REFUSED:
            command = " ".join(map(os.fsdecode, args[1][:4]))
            raise RuntimeError(f"{test}: the unit tier spawns no {command!r} (mark it pipeline)")


sys.addaudithook(_unit_tier_guard)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Guard a unit-tier test's set-up (its module fixtures' too), call and teardown."""
    if not any(item.get_closest_marker(m) for m in OTHER_TIERS):
        _unit_test["running"] = item.nodeid
    else:
        _unit_test["others_ran"] = True
    try:
        return (yield)
    finally:
        _unit_test["running"] = None


def _repository_state() -> set[str]:
    """``git status`` lines (ignored files too), less byte-code and tool caches."""
    done = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    caches = ("__pycache__", ".pytest_cache", ".ruff_cache", ".import_linter_cache")
    lines = done.stdout.splitlines() if done.returncode == 0 else []
    return {line for line in lines if not any(c in line for c in caches)}


@pytest.fixture(scope="session", autouse=True)
def _repository_untouched():
    """No unit-tier test writes inside the repository: ``git status`` is the same at the end of a
    session of them. (Not yet asserted with the pipeline tier: DVCLive in the train stage writes
    the repository's .dvc/tmp when the tests run from it.)"""
    before = _repository_state()
    yield
    changed = sorted(_repository_state() ^ before)
    if not _unit_test["others_ran"]:
        assert not changed, f"the repository changed during the tests (written by one?): {changed}"


@contextmanager
def _budget(seconds: float, what: str):
    def expired(signum, frame):
        raise TimeoutError(f"{what}: set-up took over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """A session fixture's set-up (its own work, its dependencies have theirs) is bounded by
    ``SESSION_FIXTURE_BUDGET_S``, not by the first test's timeout."""
    if fixturedef.scope != "session" or signal.getitimer(signal.ITIMER_REAL)[0]:
        return (yield)  # (a test's own timeout running: it bounds this set-up too)
    with _budget(SESSION_FIXTURE_BUDGET_S, f"session fixture {fixturedef.argname}"):
        return (yield)


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
    """The three features stages run once after ``perceived``: (params, metrics per feature set)."""
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
