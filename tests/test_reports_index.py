"""``reports/index.html`` links the DVC plots of the training run (once ``dvc plots show`` has
drawn them) and says how to open the Evidently UI on the monitoring workspace."""

from __future__ import annotations

import re

import pytest

from mimicflow.config import Params
from mimicflow.monitoring.reports import write_index


def _href(html: str, anchor: str) -> str | None:
    match = re.search(rf'<a id="{anchor}" href="([^"]+)"', html)
    return match[1] if match else None


def test_the_index_links_the_dvc_plots_and_names_the_evidently_ui(tmp_path):
    params = Params()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)  # the project: params paths are relative to it
        before = write_index(params).read_text()
        (tmp_path / "dvc_plots").mkdir()
        (tmp_path / "dvc_plots" / "index.html").write_text("<html></html>")
        after = write_index(params).read_text()
    assert _href(before, "dvc-plots") is None and "dvc plots show" in before
    href = _href(after, "dvc-plots")
    reports = tmp_path / params.monitor.reports
    assert href and (reports / href).resolve() == tmp_path / "dvc_plots" / "index.html"
    command = f"evidently ui --workspace {params.monitor.workspace}"
    assert command in after and 'href="http://127.0.0.1:8000"' in after
