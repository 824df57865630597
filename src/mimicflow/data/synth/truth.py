"""Demo-only evaluation: what the demo generator knows and real data never has.

``synth_truth.csv`` holds every clip's labels, the unlabelled test split's included;
``oracle.json`` the best mean Pearson the designed signal allows. The ensemble and compare
stages score the demo's hidden test split with them when the data root has them; on real data
both functions return None and nothing more happens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mimicflow import EMOTIONS

TRUTH_FILE = "synth_truth.csv"
ORACLE_FILE = "oracle.json"


def hidden_labels(root: Path) -> pd.DataFrame | None:
    """Every demo clip's six labels (``label_<emotion>`` columns) by clip id, or None."""
    truth = Path(root) / TRUTH_FILE
    if not truth.is_file():
        return None
    frame = pd.read_csv(truth, dtype={"clip_id": str})
    columns = [f"label_{e}" for e in EMOTIONS]
    if not set(columns) <= set(frame.columns):
        return None
    return frame.set_index("clip_id")[columns]


def oracle(root: Path) -> dict | None:
    """The demo's signal report (``oracle_mean_pearson`` and each modality's ceiling), or None."""
    path = Path(root) / ORACLE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def oracle_mean_pearson(root: Path) -> float | None:
    report = oracle(root)
    return report["oracle_mean_pearson"] if report else None
