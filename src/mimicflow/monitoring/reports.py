"""``reports/index.html``: one page linking the Great Expectations data docs and the Evidently
drift reports (newest first, with their verdicts). Static HTML with relative links, so the
``reports/`` folder can be served or opened from disk as it is.
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
<h2>New clips: Evidently drift reports</h2>
{runs}
</body></html>
"""


def write_index(params: Params) -> Path:
    """Write ``<monitor.reports>/index.html`` from what exists now; returns its path."""
    reports = Path(params.monitor.reports)
    reports.mkdir(parents=True, exist_ok=True)
    docs = StagePaths(params).data_docs / "index.html"
    pipeline = (
        f'<p><a id="pipeline-data-docs" href="{_href(docs, reports)}">Validation of '
        f"<code>{escape(str(params.data.root))}</code></a></p>"
        if docs.is_file()
        else '<p class="muted">No validation yet: run <code>dvc repro validate</code>.</p>'
    )
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
            links.append(
                '<a class="batch-data-docs" '
                f'href="{_href(folder / "data_docs" / "index.html", reports)}">'
                "data docs</a>"
            )
        rows.append(
            f"<tr><td>{escape(folder.name)}</td><td>{s['clips']}</td><td>{verdict}</td>"
            f"<td>{escape(columns)}</td><td>{' · '.join(links)}</td></tr>"
        )
    runs = (
        "<table><tr><th>run</th><th>clips</th><th>verdict</th><th>drifted columns</th>"
        f"<th>reports</th></tr>{''.join(rows)}</table>"
        if rows
        else '<p class="muted">No monitoring run yet: <code>mimicflow monitor</code>.</p>'
    )
    index = reports / "index.html"
    updated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    index.write_text(_PAGE.format(updated=updated, pipeline=pipeline, runs=runs), encoding="utf-8")
    log.info("reports index: %s", index)
    return index


def _href(target: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()
