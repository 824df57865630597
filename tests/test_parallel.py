"""The local process pool of ``map_clips``."""

from __future__ import annotations

import os
import subprocess
import sys

MAP = "from mimicflow.parallel import map_clips; print(map_clips(abs, [-3, -1, -2], 2, False))"


def test_a_temporary_folder_too_long_for_a_socket_still_maps_the_clips(tmp_path):
    """forkserver binds a socket under $TMPDIR; past 107 bytes (a dry-run's scratch folder deep
    in a tree) that fails with "AF_UNIX path too long", so the pool spawns its workers instead."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    env = os.environ | {"TMPDIR": str(deep)}
    done = subprocess.run(
        [sys.executable, "-c", MAP], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[3, 1, 2]"
