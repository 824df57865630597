"""Per-clip artefacts, keyed by clip id, content hash and the settings that made them.

A stage writes each clip's artefact atomically (temporary file, then rename), so a stage killed
half-way leaves only complete artefacts; re-running skips every clip whose key already exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path


def settings_hash(settings: dict) -> str:
    """Eight hex digits that change whenever the settings that shape an artefact change."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :8
    ]


def artefact_name(clip_id: str, content_sha256: str, settings: str, suffix: str) -> str:
    return f"{clip_id}-{content_sha256[:12]}-{settings}{suffix}"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then move ``tmp`` over ``path``: readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prune(folder: Path, keep: set[str], suffix: str) -> int:
    """Remove artefacts (and stray temporaries) not in ``keep``; returns how many went."""
    removed = 0
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        stray = path.name.startswith(".") and path.name.endswith(".tmp")
        if stray or (path.suffix == suffix and path.name not in keep):
            path.unlink()
            removed += 1
    return removed
