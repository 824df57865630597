"""Evidently drift report of a batch's profile against the reference profile.

Every numeric column shared by both profiles gets a per-column drift test
(``monitor.stattest``, default the two-sample Kolmogorov–Smirnov test) at ``monitor.threshold``
(default p < 0.01: with batches of a few dozen clips a stricter level misses even a batch where
most clips lost their face; a same-distribution batch names about 0.35 of ~35 columns by chance).
The batch has drifted when at least ``monitor.drift_share`` of the columns drifted (Evidently's
``DataDriftPreset`` dataset verdict; default 0.1, i.e. four or more columns, never one alone), so
chance flags do not make a verdict. A batch of fewer than ``monitor.min_clips`` clips (default
10: below that one odd clip is over a tenth of each distribution) still gets the verdict, with a
warning in the summary and the log.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pandas as pd

from mimicflow.config import MonitorParams

log = logging.getLogger(__name__)


def _stamped(snapshot: dict, metadata: dict[str, str], clips: int, verdict: str) -> dict:
    """The serialised snapshot with the run's metadata and tags (public SnapshotModel fields)."""
    items = {key: str(value) for key, value in metadata.items()}
    snapshot["metadata"] = (
        snapshot.get("metadata", {})
        | items
        | {
            "clips": str(clips),
            "verdict": verdict,
        }
    )
    snapshot["tags"] = [*snapshot.get("tags", []), verdict, *(f"{k}:{v}" for k, v in items.items())]
    return snapshot


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out: Path,
    settings: MonitorParams,
    timestamp: datetime | None = None,
    metadata: dict[str, str] | None = None,
) -> dict:
    """Compare ``current`` with ``reference``; write ``report.html``, ``report.json`` (the
    Evidently snapshot, stamped ``timestamp``: what the workspace takes), ``profile.parquet``
    (``current``) and ``summary.json`` into ``out``. The snapshot's metadata are ``metadata``
    (e.g. the batch and the model version) plus the clip count and the verdict, its tags the
    verdict and each ``metadata`` item as ``key:value`` (what the Evidently UI filters by).
    Returns the summary::

        {"drift": bool, "drifted_columns": [...], "report": "<out>/report.html", "clips": n,
         "reference_clips": n, "share": float, "columns": [...], "not_compared": [...],
         "warning": str | None}

    Columns empty in either profile (e.g. ASR confidence when no clip has speech) cannot be
    tested and are listed in ``not_compared``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.presets import DataDriftPreset

    shared = [c for c in reference.columns if c in current.columns]
    columns = [c for c in shared if reference[c].notna().any() and current[c].notna().any()]
    not_compared = [c for c in shared if c not in columns]
    missing = sorted(set(reference.columns) ^ set(current.columns))
    if missing:
        log.warning("columns in only one profile (not compared): %s", ", ".join(missing))
    definition = DataDefinition(numerical_columns=columns)
    preset = DataDriftPreset(
        columns=columns,
        method=settings.stattest,
        threshold=settings.threshold,
        drift_share=settings.drift_share,
    )
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(
            current[columns].reset_index(drop=True), data_definition=definition
        ),
        reference_data=Dataset.from_pandas(
            reference[columns].reset_index(drop=True), data_definition=definition
        ),
        timestamp=timestamp,
    )
    # The verdicts are the preset's own: its metrics' results and the tests on them.
    results = {
        metric: snapshot.context.get_metric_result(metric)
        for metric in preset.metrics(snapshot.context)
    }
    (count,) = [r for m, r in results.items() if isinstance(m, DriftedColumnsCount)]
    drifted = [m.column for m, r in results.items() if isinstance(m, ValueDrift) and _failed(r)]
    share = float(count.share.value) if columns else 0.0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out / "report.html"))
    verdict = "drift" if bool(columns) and _failed(count) else "no drift"
    (out / "report.json").write_text(  # Snapshot.load reads it back
        json.dumps(_stamped(json.loads(snapshot.dumps()), metadata or {}, len(current), verdict))
    )
    current.reset_index().to_parquet(out / "profile.parquet", index=False)
    summary = {
        "drift": bool(columns) and _failed(count),
        "drifted_columns": drifted,
        "report": str(out / "report.html"),
        "clips": len(current),
        "reference_clips": len(reference),
        "share": round(share, 4),
        "stattest": settings.stattest,
        "threshold": settings.threshold,
        "columns": columns,
        "not_compared": not_compared,
        "warning": None,
    }
    if len(current) < settings.min_clips:
        summary["warning"] = (
            f"only {len(current)} clips (monitor.min_clips = "
            f"{settings.min_clips}): too few for a reliable drift verdict"
        )
        log.warning("drift: %s", summary["warning"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "drift: %s (%d of %d columns: %s)",
        summary["drift"],
        len(drifted),
        len(columns),
        ", ".join(drifted) or "none",
    )
    return summary


def _failed(result) -> bool:
    """Whether Evidently's test on a metric result failed (a column drifted; too many did)."""
    return any(test.status == "FAIL" for test in result.tests)
