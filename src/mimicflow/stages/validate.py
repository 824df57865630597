"""DVC stage ``validate``: probe and decode every clip, check labels, run the GX suites.

Outputs in ``validate.out``: ``manifest.parquet`` (usable clips), ``quarantine.csv``
(``Filename, reason``), ``data_docs/index.html`` and ``summary.json`` (DVC metrics).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mimicflow.config import Params
from mimicflow.data.layout import load_dataset
from mimicflow.data.validation import validate_dataset
from mimicflow.monitoring.expectations import run_data_quality_suites

log = logging.getLogger(__name__)


def run(params: Params, root: Path | None = None, out: Path | None = None, progress=True) -> dict:
    """Validate the dataset at ``root`` (default ``data.root``) into ``out``; returns the summary.

    Raises :class:`~mimicflow.data.layout.DatasetError` only when the dataset as a whole is
    unusable; bad clips and label rows are quarantined.
    """
    limits = params.validate_
    root = Path(root or params.data.root)
    out = Path(out or limits.out)
    dataset = load_dataset(root)
    log.info("validating %d clips in %s", len(dataset.clips), root)
    result = validate_dataset(dataset, limits, workers=params.compute.workers, progress=progress)

    out.mkdir(parents=True, exist_ok=True)
    result.manifest.to_parquet(out / "manifest.parquet", index=False)
    result.quarantine.to_csv(out / "quarantine.csv", index=False)
    quality = run_data_quality_suites(
        result.manifest,
        result.labels,
        out,
        min_duration_s=limits.min_duration_s,
        max_duration_s=limits.max_duration_s,
        min_fps=limits.min_fps,
        max_fps=limits.max_fps,
    )
    if not quality["suites"]["manifest"]["success"]:
        log.warning("the manifest fails its own expectations: see %s", quality["data_docs"])

    manifest = result.manifest
    summary = {
        "clips_found": len(dataset.clips),
        "clips_usable": len(manifest),
        "quarantined_rows": len(result.quarantine),
        "splits": manifest["split"].value_counts().sort_index().to_dict(),
        "clips_without_audio": int((~manifest["has_audio"]).sum()),
        "total_hours": round(float(manifest["duration_s"].sum()) / 3600, 4),
        "gx_manifest_success": quality["suites"]["manifest"]["success"],
        "gx_labels_success": quality["suites"]["labels"].get("success"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "%d usable clips, %d quarantined rows; data docs: %s",
        summary["clips_usable"], summary["quarantined_rows"], quality["data_docs"],
    )  # fmt: skip
    return summary
