"""DVC stage ``validate``: probe and decode every clip, check labels, run the GX suites.

Outputs in ``validate.out``: ``manifest.parquet`` (usable clips), ``quarantine.csv``
(``Filename, reason``), ``data_docs/index.html`` and ``summary.json`` (DVC metrics).
"""

from __future__ import annotations

from pathlib import Path

from mimicflow.config import Params
from mimicflow.data.validation import validate_folder


def run(params: Params, root: Path | None = None, out: Path | None = None, progress=True) -> dict:
    """Validate the dataset at ``root`` (default ``data.root``) into ``out`` (default
    ``validate.out``); returns the summary."""
    return validate_folder(Path(root or params.data.root), Path(out or params.validate_.out),
                           params.validate_, params.compute.workers, progress)  # fmt: skip
