"""DVC stage ``validate``: probe and decode every clip, check labels, run the GX suites.

Outputs in ``validate.out``: ``manifest.parquet`` (usable clips), ``quarantine.csv``
(``Filename, reason``), ``data_docs/index.html`` and ``summary.json`` (DVC metrics); the GX
context (suites, checkpoints, every run's results) is ``gx/``. A manifest that fails its suite
stops the stage when ``validate.on_failure`` is ``stop``.
"""

from __future__ import annotations

from pathlib import Path

from mimicflow.config import Params
from mimicflow.data.validation import validate_folder


class DataQualityError(RuntimeError):
    """The manifest fails its Great Expectations suite and ``validate.on_failure`` is stop."""


def run(params: Params, root: Path | None = None, out: Path | None = None, progress=True) -> dict:
    """Validate the dataset at ``root`` (default ``data.root``) into ``out`` (default
    ``validate.out``); returns the summary. Raises :class:`DataQualityError` when the manifest
    fails its suite and ``validate.on_failure`` is ``stop``."""
    out = Path(out or params.validate_.out)
    summary = validate_folder(
        Path(root or params.data.root), out, params.validate_, params.compute.workers, progress
    )
    if not summary["gx_manifest_success"] and params.validate_.on_failure == "stop":
        raise DataQualityError(
            f"the manifest ({summary['clips_usable']} usable of {summary['clips_found']} clips) "
            f"fails its Great Expectations suite: see {out / 'data_docs' / 'index.html'} "
            "(validate.on_failure: warn lets the pipeline go on)"
        )
    return summary
