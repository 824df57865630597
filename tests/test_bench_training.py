"""The training bench's ``--floor`` mode: its JSON rows, on one small system, one repeat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "bench_training.py"


@pytest.mark.slow  # about 20 s: a fresh process trains one small fold twice
def test_floor_json_has_one_row_per_system_and_device_with_a_consistent_ratio(tmp_path):
    command = [sys.executable, str(BENCH), "--floor", "--json", "--systems", "augsburg"]
    command += ["--devices", "cpu", "--clips", "40", "--epochs", "1", "--repeats", "1"]
    command += ["--threads", "1", "--out", str(tmp_path / "floor.json")]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    rows = json.loads(done.stdout)  # stdout carries the JSON alone; the table goes to stderr
    assert [(r["system"], r["device"]) for r in rows] == [("augsburg", "cpu")]
    row = rows[0]
    assert set(row) == {"system", "device", "trainer_clips_s", "floor_clips_s", "ratio"}
    assert row["trainer_clips_s"] > 0 and row["floor_clips_s"] > 0
    assert abs(row["ratio"] - row["trainer_clips_s"] / row["floor_clips_s"]) < 1e-9
    assert json.loads((tmp_path / "floor.json").read_text()) == rows
