"""``reports/index.html``: one page linking the Great Expectations data docs, the DVC plots of
the training run and the Evidently drift reports (newest first, with their verdicts), and saying
how to open the Evidently UI. Static HTML with relative links, so it opens from disk as it is.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from mimicflow.config import Params
from mimicflow.paths import StagePaths

log = logging.getLogger(__name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mimicflow reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }}
h1 {{ font-size: 1.6rem; }} table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .4rem .7rem; border-bottom: 1px solid #ddd; }}
.drift {{ color: #b00020; font-weight: 600; }} .ok {{ color: #1b7f3b; font-weight: 600; }}
.muted {{ color: #777; }} td span {{ white-space: nowrap; }}
</style></head><body>
<h1>mimicflow data-quality reports</h1>
<p class="muted">Updated {updated}.</p>
<h2>Training data: Great Expectations data docs</h2>
{pipeline}
<h2>Training results: DVC plots</h2>
{plots}
<h2>New clips: Evidently drift reports</h2>
{runs}
<p id="evidently-ui">Drift run after run: <code>evidently ui --workspace {workspace}</code>, then
open <a href="http://127.0.0.1:8000">http://127.0.0.1:8000</a> (project <code>mimicflow</code>;
each run tagged with its batch, model version and verdict).</p>
</body></html>
"""
DVC_PLOTS = Path("dvc_plots") / "index.html"  # what `dvc plots show` writes in the project


def write_index(params: Params) -> Path:
    """Write ``<monitor.reports>/index.html`` from what exists now; returns its path. Paths are
    the params' (relative ones to the current folder, the project)."""
    reports = Path(params.monitor.reports)
    reports.mkdir(parents=True, exist_ok=True)
    docs = StagePaths(params).data_docs / "index.html"
    pipeline = (
        f'<p><a id="pipeline-data-docs" href="{_href(docs, reports)}">Validation of '
        f"<code>{escape(str(params.data.root))}</code></a></p>"
        if docs.is_file()
        else '<p class="muted">No validation yet: run <code>dvc repro validate</code>.</p>'
    )
    plots = (
        f'<p><a id="dvc-plots" href="{_href(DVC_PLOTS, reports)}">Learning curves per fold, '
        "per-emotion Pearson, out-of-fold scatter</a> (<code>dvc plots show</code>; "
        "<code>dvc plots diff</code> compares commits and experiments)</p>"
        if DVC_PLOTS.is_file()
        else '<p class="muted">Not drawn yet: <code>dvc plots show</code> writes '
        f"<code>{DVC_PLOTS}</code>.</p>"
    )
    index = reports / "index.html"
    updated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = _PAGE.format(
        updated=updated,
        pipeline=pipeline,
        plots=plots,
        runs=_runs(reports),
        workspace=escape(str(params.monitor.workspace)),
    )
    index.write_text(page, encoding="utf-8")
    log.info("reports index: %s", index)
    return index


def _runs(reports: Path) -> str:
    """The drift runs' table, newest first."""
    rows = []
    for folder in sorted((reports / "drift").glob("*/"), reverse=True):
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            continue
        s = json.loads(summary_file.read_text())
        verdict = {
            True: '<span class="drift">drift</span>',
            False: '<span class="ok">no drift</span>',
            None: '<span class="muted">no verdict (no usable clip)</span>',
        }[s["drift"]]
        if s.get("warning"):
            verdict += f'<br><span class="muted small-batch">{escape(s["warning"])}</span>'
        columns = ", ".join(s["drifted_columns"]) or "—"
        links = []
        if (folder / "report.html").is_file():
            links.append(
                f'<a class="drift-report" href="{_href(folder / "report.html", reports)}">'
                "Evidently report</a>"
            )
        if (folder / "data_docs" / "index.html").is_file():
            docs = _href(folder / "data_docs" / "index.html", reports)
            links.append(f'<a class="batch-data-docs" href="{docs}">data docs</a>')
        rows.append(
            f"<tr><td>{escape(folder.name)}</td><td>{s['clips']}</td><td>{verdict}</td>"
            f"<td>{escape(columns)}</td><td>{' · '.join(links)}</td></tr>"
        )
    if not rows:
        return '<p class="muted">No monitoring run yet: <code>mimicflow monitor</code>.</p>'
    return (
        "<table><tr><th>run</th><th>clips</th><th>verdict</th><th>drifted columns</th>"
        f"<th>reports</th></tr>{''.join(rows)}</table>"
    )


def _href(target: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()
