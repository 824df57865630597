"""The features bench runs on a few clips (it had once failed unnoticed, after a params change)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "bench_features.py"


@pytest.mark.slow  # about a minute: it generates, validates and perceives its clips first
def test_the_bench_times_each_feature_set_and_projects_the_full_dataset(tmp_path):
    out = tmp_path / "features.json"
    command = [sys.executable, str(BENCH), "--n", "6", "--big", "0", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["feature_set"] for r in rows] == ["audio", "visual", "text"]
    assert all(r["clips"] == 6 and r["wall_s"] > 0 and r["peak_rss_gib"] > 0 for r in rows)
    assert all(r["video_s_per_wall_s"] > 0 and r["hume_projection_min"] > 0 for r in rows)
