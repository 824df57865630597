"""``bentofile.yaml`` is the bento: ``bentoml build -f bentofile.yaml src`` by hand (real BentoML,
a private BentoML home holding a stand-in ``mimicflow-ensemble`` model) gives the bento the
``package`` stage builds: the serving code path alone, the ``serving`` extra pinned to the
installed versions, the system packages in its generated Dockerfile (no Docker daemon here: the
Dockerfile's content is checked), the build settings it used and the service's description."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimicflow.serving.bundle import MODEL_NAME
from mimicflow.serving.service import DESCRIPTION
from mimicflow.stages.package import BENTO_NAME, serving_requirements, stale_pins

from .helpers.bento import bento_env
from .helpers.code_deps import code_deps

REPO = Path(__file__).resolve().parents[1]
BENTOFILE = yaml.safe_load((REPO / "bentofile.yaml").read_text())
PIPELINE_ONLY = ("mimicflow/cli/", "mimicflow/stages/", "mimicflow/orchestration.py")
FORBIDDEN = {"dvc", "dvclive", "prefect", "great-expectations", "evidently", "dask"}
MODEL = f"""\
import bentoml
with bentoml.models.create("{MODEL_NAME}", labels={{"model_version": "stand-in"}}) as model:
    (__import__("pathlib").Path(model.path) / "stand-in").write_text("weights")
"""
BUILD_LIKE_THE_STAGE = f"""\
from pathlib import Path
from mimicflow.stages.package import BENTO_NAME, build_bento
print(build_bento(Path({str(REPO / "bentofile.yaml")!r}), BENTO_NAME, {{}}).tag)
"""


def _serving_files() -> list[str]:
    """What the service imports (at any depth), with the packages' ``__init__`` files and the
    model catalogue it reads, relative to ``src/``."""
    files = {Path(f) for f in code_deps("mimicflow.serving.service")}
    for file in list(files):
        files |= {parent / "__init__.py" for parent in file.parents if parent.name != "src"}
    files = {f for f in files if (REPO / f).is_file() and f.parts[0] == "src"}
    files.add(Path("src/mimicflow/models/catalogue.yaml"))
    return sorted(f.relative_to("src").as_posix() for f in files)


def test_the_bentofile_includes_the_serving_code_path_alone():
    assert BENTOFILE["include"] == _serving_files()
    assert not [f for f in BENTOFILE["include"] if f.startswith(PIPELINE_ONLY)]


def test_the_bentofile_pins_the_serving_extra_at_the_installed_versions():
    packages = BENTOFILE["python"]["packages"]
    assert all(line.count("==") == 1 for line in packages)
    assert len(packages) == len(serving_requirements(REPO / "pyproject.toml"))
    assert stale_pins(REPO / "bentofile.yaml") == []


@pytest.fixture(scope="module")
def bentos(tmp_path_factory):
    """The bento built by hand and the one built as the stage builds it: their folders."""
    root = tmp_path_factory.mktemp("bentofile")
    env = bento_env(root)

    def run(*command: str) -> str:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    run(sys.executable, "-c", MODEL)
    bentoml = str(Path(sys.executable).parent / "bentoml")
    by_hand = run(bentoml, "build", "-f", "bentofile.yaml", "src", "--output", "tag").split()[-1]
    by_stage = run(sys.executable, "-c", BUILD_LIKE_THE_STAGE).split()[-1]
    folders = [
        root / "bentoml" / "bentos" / Path(tag.removeprefix("__tag__:").replace(":", "/"))
        for tag in (by_hand, by_stage)
    ]
    assert all(folder.is_dir() for folder in folders), folders
    return folders


def _contents(bento: Path) -> dict[str, str]:
    """The bento's files that make it what it is (not its tag, date or generated schema)."""
    files = {
        p.relative_to(bento).as_posix(): p.read_text()
        for p in sorted((bento / "src").rglob("*"))
        if p.is_file() and p.name != "bentofile.yaml"
    }
    for name in ("env/python/requirements.txt", "env/docker/Dockerfile", "README.md"):
        files[name] = (bento / name).read_text()
    return files


@pytest.mark.pipeline  # spawns bentoml build (the unit tier spawns none)
def test_bentoml_build_by_hand_gives_the_stages_bento(bentos):
    by_hand, by_stage = bentos
    assert _contents(by_hand) == _contents(by_stage)
    shipped = sorted(p.removeprefix("src/") for p in _contents(by_hand) if p.startswith("src/"))
    assert shipped == BENTOFILE["include"]  # the serving code path, no cli/, stages/ …
    info = yaml.safe_load((by_hand / "bento.yaml").read_text())
    assert info["name"] == BENTO_NAME
    (service,) = info["services"]
    assert [m["tag"].split(":")[0] for m in service["models"]] == [MODEL_NAME]  # named apart
    assert (by_hand / "README.md").read_text() == DESCRIPTION


@pytest.mark.pipeline  # the bentos fixture spawns bentoml build
def test_the_requirements_are_pinned_and_the_dockerfile_installs_them(bentos):
    bento, _ = bentos
    lines = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    packages = [line for line in lines if line.strip() and not line.startswith("-")]
    assert set(BENTOFILE["python"]["packages"]) <= set(packages)
    assert all("==" in line for line in packages), packages
    assert not {line.split("==")[0].lower() for line in packages} & FORBIDDEN
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    installs = [line.split() for line in dockerfile.splitlines() if "apt-get install" in line]
    system = BENTOFILE["docker"]["system_packages"]
    assert any(set(system) <= set(words) for words in installs), installs
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile
    recorded = yaml.safe_load((bento / "src" / "bentofile.yaml").read_text())
    assert recorded["python"]["lock_packages"] is False  # what was used, as recorded
    assert recorded["docker"]["system_packages"] == system
