"""The models a params overlay needs, and where each will load from: a local mirror of
downloaded weights (``DIR/org/name``, as ``hf download ORG/NAME --local-dir DIR/ORG/NAME``
writes), the Hugging Face cache, the model catalogue, or the ``adapt`` stage's output.

:func:`model_needs` lists them (``mimicflow recipe check``); :func:`with_mirror` rewrites an
overlay's hub ids to mirror folders where they exist (``mimicflow recipe apply --weights``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from mimicflow.recipes import leaves

MODEL_KEYS = ("model", "text_model", "detector_model", "mesh_model", "fer_model")
BUILT_IN = ("", "default", "motion", "vit-scratch")  # computed here, or trained from scratch
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class ModelNeed:
    """One model a stage loads: ``source`` is ``mirror``, ``cache``, ``catalogue``, ``adapt``
    (the stage's own output), ``folder`` (a local path) or ``missing``."""

    stage: str
    key: str  # the dotted params key that names it
    model: str  # as the params name it
    hub_id: str | None
    source: str
    path: str | None  # where it loads from (None: fetched by `mimicflow models prepare`)
    parameters: int | None  # from its config, where readable
    trust_remote_code: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _adapted(model: str, adapted: Path) -> bool:
    return model.startswith(f"{adapted.as_posix().rstrip('/')}/")


def hub_id(key: str, model: str, adapted: Path) -> str | None:
    """The Hugging Face id behind a model value: ``org/name``, or a faster-whisper size
    (``asr.model: large-v3``); None for folders, the adapt stage's output and other names."""
    if _adapted(model, adapted) or Path(model).exists():
        return None
    if key == "asr.model":
        from faster_whisper.utils import _MODELS  # the sizes faster-whisper fetches, by repo

        return _MODELS.get(model) or (model if HUB_ID.match(model) else None)
    return model if HUB_ID.match(model) else None


def cached(repo: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of ``repo``, if it holds a ``config.json``."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def parameter_count(folder: Path, trust_remote_code: bool = False) -> int | None:
    """Parameters of the model ``folder``'s config describes, built on the meta device (no
    weights read or allocated); None where the config is not a transformers model's."""
    import torch
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            net = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return None
    return sum(p.numel() for p in net.parameters())


def _remote(overlay: Mapping, key: str) -> bool:
    node = overlay
    for part in key.split(".")[:-1]:
        node = node[part]
    return bool(node.get("trust_remote_code", False))


def _need(key: str, model: str, overlay: Mapping, weights: Path | None, known) -> ModelNeed:
    """Where one model value will load from."""
    catalogue, adapted = known
    stage, remote = key.split(".")[0], _remote(overlay, key)
    if model in catalogue:
        return ModelNeed(stage, key, model, None, "catalogue", None, None)
    repo = hub_id(key, model, adapted)
    if repo is None:
        source = "folder" if Path(model).exists() else "adapt" if _adapted(model, adapted) else ""
        return ModelNeed(stage, key, model, None, source or "missing", model, None, remote)
    mirrored = weights / repo if weights is not None else None
    folder = mirrored if mirrored is not None and mirrored.is_dir() else cached(repo)
    source = "missing" if folder is None else "mirror" if folder == mirrored else "cache"
    count = None if folder is None else parameter_count(folder, remote)
    return ModelNeed(stage, key, model, repo, source, folder and str(folder), count, remote)


def model_needs(
    overlay: Mapping, weights: Path | None, catalogue: set[str], adapted: Path
) -> list[ModelNeed]:
    """Every model ``overlay`` names (:data:`MODEL_KEYS`; built-in names skipped), in order,
    with where it will load from: the mirror ``weights`` first, then the Hugging Face cache."""
    return [
        _need(key, value, overlay, weights, (catalogue, adapted))
        for key, value in leaves(overlay)
        if key.rsplit(".", 1)[-1] in MODEL_KEYS and isinstance(value, str)
        if value not in BUILT_IN
    ]


def with_mirror(overlay: Mapping, weights: Path, adapted: Path) -> dict:
    """``overlay`` with each hub id whose folder ``weights/<org>/<name>`` exists replaced by
    that folder."""
    out = copy.deepcopy(dict(overlay))
    for key, value in leaves(overlay):
        if key.rsplit(".", 1)[-1] not in MODEL_KEYS or not isinstance(value, str):
            continue
        repo = hub_id(key, value, adapted)
        if repo is not None and (weights / repo).is_dir():
            *parents, last = key.split(".")
            node = out
            for part in parents:
                node = node[part]
            node[last] = str(weights / repo)
    return out
