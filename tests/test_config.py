"""Code tests: the typed params object."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mimicflow.config import Params, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_load_into_the_typed_object():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.root == params.demo.out  # the demo is the embedded default
    assert params.validate_.min_duration_s > 0


def test_typos_in_params_fail_loudly(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("validate:\n  min_duraton_s: 1\n")
    with pytest.raises(ValidationError, match="min_duraton_s"):
        load_params(path)
