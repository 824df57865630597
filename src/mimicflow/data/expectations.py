"""Great Expectations suites for the clip manifest and the labels table.

Both suites are defined in code and run against in-memory pandas DataFrames in a file-backed GX
context, ``<out_dir>/gx/``: each table has a Checkpoint whose UpdateDataDocsAction adds the run to
the Data Docs site ``<out_dir>/data_docs/index.html``. The context keeps every run's validation
result, so the site lists the history of runs. The pages load their scripts and stylesheets from
copies in ``data_docs/static/vendor/`` (from the npm packages that ``scripts/web_assets.py``
fetches), not from CDNs, so they render offline. Great Expectations is imported inside the
functions because importing it takes several seconds.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimicflow import EMOTIONS
from mimicflow.data.layout import MANIFEST_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

LABELS_COLUMNS: tuple[str, ...] = ("Filename", "clip_id", "split", "source", *EMOTIONS)
MANIFEST_SPLITS: tuple[str, ...] = ("train", "valid", "test", "unlabelled")
LABELLED_SPLITS: tuple[str, ...] = ("train", "valid")

DOCS_SITE = "mimicflow_data_docs"
GX_DIR = "gx"  # the file-backed context under the output folder: suites, checkpoints, results
DOCS_DIR = "data_docs"
# Where scripts/web_assets.py puts the npm files below (package@version/path), in this environment.
WEB_ASSETS = Path(sys.prefix) / "share" / "mimicflow" / "web"
VENDOR = "static/vendor"  # the copies' folder in the Data Docs site
# Each file the Data Docs pages of GX 1.24 load from a CDN, and the npm package file it is.
CDN_FILES: dict[str, str] = {
    "https://cdn.jsdelivr.net/npm/vega@5": "vega@5.33.1/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite@5.23.0/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed@6.29.0/build/vega-embed.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js@1.12.9/dist/umd/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap@4.3.1/dist/js/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap@4.3.1/dist/css/bootstrap.min.css",
    **{
        f"https://unpkg.com/bootstrap-table@{v}/dist/{f}": f"bootstrap-table@{v}/dist/{f}"
        for v, f in [
            ("1.19.1", "bootstrap-table.min.js"),
            ("1.19.1", "bootstrap-table.min.css"),
            ("1.19.1", "extensions/filter-control/bootstrap-table-filter-control.min.js"),
            ("1.19.0", "extensions/filter-control/bootstrap-table-filter-control.css"),
            ("1.19.0", "extensions/filter-control/bootstrap-table-filter-control.min.css"),
        ]
    },
    **{
        f"https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/{f}": f"bootstrap-datepicker@1.9.0/dist/{f}"
        for f in ("js/bootstrap-datepicker.min.js", "css/bootstrap-datepicker.min.css")
    },
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "@fortawesome/fontawesome-free@6.6.0/css/all.min.css",
    **{
        f"https://cdn.jsdelivr.net/npm/{f}": f
        for f in ["@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css"]
    },
}
# Folders the stylesheets above reference (Font Awesome's fonts), copied whole.
CDN_FOLDERS: tuple[str, ...] = ("@fortawesome/fontawesome-free@6.6.0/webfonts",)
_CDN_ATTRIBUTES = re.compile(r'\s+(?:integrity="[^"]*"|crossorigin="[^"]*")')
# GX's logo comes from its S3 bucket (with the context id in the query); the site has a copy.
_GX_IMAGE = re.compile(r'"https://great-expectations-web-assets\.s3\.[^/"]+/([\w.-]+)(?:\?[^"]*)?"')

log = logging.getLogger(__name__)


def _manifest_expectations(
    min_duration_s: float, max_duration_s: float, min_fps: float, max_fps: float
) -> list:
    """Expectations for the manifest (one row per usable clip)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    labelled = Column("split").is_in(LABELLED_SPLITS)
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(MANIFEST_COLUMNS), exact_match=False),
        gxe.ExpectColumnValuesToNotBeNull(column="clip_id"),
        gxe.ExpectColumnValuesToBeUnique(column="clip_id"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(MANIFEST_SPLITS)),
        gxe.ExpectColumnValuesToBeBetween(
            column="duration_s", min_value=min_duration_s, max_value=max_duration_s
        ),
        gxe.ExpectColumnValuesToBeBetween(column="fps", min_value=min_fps, max_value=max_fps),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=1)
            for column in ("width", "height", "n_frames", "size_bytes")
        ),
        # Range checks skip NaN (GX ignores nulls in column map expectations), so
        # test/unlabelled rows pass; train/valid rows must carry every intensity.
        *(gxe.ExpectColumnValuesToBeBetween(column=e, min_value=0, max_value=1) for e in EMOTIONS),
        *(gxe.ExpectColumnValuesToNotBeNull(column=e, row_condition=labelled) for e in EMOTIONS),
    ]


def _labels_expectations() -> list:
    """Expectations for the parsed label CSV rows (bad rows are what this suite reports)."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(LABELS_COLUMNS), exact_match=False),
        gxe.ExpectColumnValuesToNotBeNull(column="clip_id"),
        gxe.ExpectColumnValuesToBeUnique(column="clip_id"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(LABELLED_SPLITS)),
        *(gxe.ExpectColumnValuesToNotBeNull(column=e) for e in EMOTIONS),
        *(gxe.ExpectColumnValuesToBeBetween(column=e, min_value=0, max_value=1) for e in EMOTIONS),
    ]


def _summarise(result: Any) -> dict:
    """Reduce an ExpectationSuiteValidationResult to a small JSON-serialisable dict."""
    failed = []
    for r in result.results:
        if r.success:
            continue
        count = r.result.get("unexpected_count")
        failed.append(
            {
                "expectation": r.expectation_config.type,
                "column": r.expectation_config.kwargs.get("column"),
                "unexpected_count": None if count is None else int(count),
            }
        )
    stats = result.statistics
    return {
        "success": bool(result.success),
        "evaluated": int(stats["evaluated_expectations"]),
        "successful": int(stats["successful_expectations"]),
        "failed": failed,
    }


def _checkpoint(context: Any, source: Any, name: str, expectations: list) -> Any:
    """The checkpoint of table ``name`` (suite ``name`` on the whole dataframe, then the Data
    Docs update), created or brought up to date with the code's expectations."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    asset = source.add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(name)
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=name,
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])],
        )
    )


def _context(out_dir: Path) -> Any:
    """The file-backed context in ``out_dir/gx`` with the Data Docs site ``out_dir/data_docs``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=out_dir)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site = {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(out_dir / DOCS_DIR),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    for name in list(context.get_config().data_docs_sites or {}):  # GX's default local_site
        if name != DOCS_SITE:
            context.delete_data_docs_site(name)
    if DOCS_SITE in (context.get_config().data_docs_sites or {}):
        context.update_data_docs_site(DOCS_SITE, site)
    else:
        context.add_data_docs_site(DOCS_SITE, site)
    context.variables.save()
    return context


def run_data_quality_suites(
    manifest: pd.DataFrame,
    labels: pd.DataFrame,
    out_dir: Path,
    *,
    min_duration_s: float,
    max_duration_s: float,
    min_fps: float,
    max_fps: float,
    dataset: str = "dataset",
) -> dict:
    """Validate ``manifest`` and ``labels`` through their checkpoints in the context under
    ``out_dir/gx`` and add the run to the Data Docs under ``out_dir/data_docs``. The run is
    named by ``dataset`` and its time (``demo 2026-01-31 02:00:05``) and its batches by the
    dataset (``demo-manifest``), so the Data Docs list tells datasets and runs apart.

    An empty manifest fails its suite; an empty ``labels`` table (unlabelled data) is
    not validated and is reported as ``{"skipped": True}``. Returns::

        {"success": bool,   # every suite that ran passed
         "suites": {"manifest": {"success", "evaluated", "successful", "failed": [...]},
                    "labels": {... same ...} or {"skipped": True}},
         "data_docs": "<out_dir>/data_docs/index.html"}

    where each ``failed`` item is ``{"expectation", "column", "unexpected_count"}``.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    out_dir = Path(out_dir).resolve()
    index = out_dir / DOCS_DIR / "index.html"
    rebuild = not index.is_file()  # e.g. DVC removed the site before the stage: build every run
    context = _context(out_dir)
    source = context.data_sources.add_or_update_pandas(dataset)  # batch ids: <dataset>-<table>
    now = datetime.now(UTC)
    run_id = RunIdentifier(run_name=f"{dataset} {now:%Y-%m-%d %H:%M:%S}", run_time=now)
    tables = {
        "manifest": (
            manifest,
            _manifest_expectations(min_duration_s, max_duration_s, min_fps, max_fps),
        ),
        "labels": (labels, _labels_expectations()),
    }
    suites: dict[str, dict] = {}
    for name, (frame, expectations) in tables.items():
        if name == "labels" and frame.empty:
            suites[name] = {"skipped": True}
            continue
        checkpoint = _checkpoint(context, source, name, expectations)
        result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
        suites[name] = _summarise(next(iter(result.run_results.values())))
    if rebuild:  # the checkpoints' actions add this run's pages only
        context.build_data_docs(site_names=[DOCS_SITE])

    html = index.read_text(encoding="utf-8") if index.is_file() else ""
    if any(f"validations/{name}/" not in html for name, s in suites.items() if "success" in s):
        raise RuntimeError(f"Great Expectations Data Docs at {index} lack the validation results")
    localise_data_docs(out_dir / DOCS_DIR)
    return {
        "success": all(s.get("success", True) for s in suites.values()),
        "suites": suites,
        "data_docs": str(index),
    }


def localise_data_docs(site: Path, assets: Path = WEB_ASSETS) -> None:
    """Point every page of the Data Docs ``site`` at copies of its CDN files in
    ``site/static/vendor`` (copied from ``assets``) and of GX's logo. Without the assets
    (``make setup`` fetches them) the pages keep their CDN links and a warning says so."""
    missing = [f for f in (*CDN_FILES.values(), *CDN_FOLDERS) if not (assets / f).exists()]
    if missing:
        log.warning(
            "data docs load their scripts from CDNs: %s lacks %s (run `make setup`)",
            assets,
            missing[0],
        )
        return
    vendor = site / VENDOR
    for name in (*set(CDN_FILES.values()), *CDN_FOLDERS):
        target = vendor / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (assets / name).is_dir():
            shutil.copytree(assets / name, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(assets / name, target)
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        local = html
        for url, name in CDN_FILES.items():
            path = os.path.relpath(vendor / name, page.parent)
            local = local.replace(f'"{url}"', f'"{path}"')
        images = os.path.relpath(site / "static" / "images", page.parent)
        local = _GX_IMAGE.sub(f'"{images}/\\1"', local)
        local = _CDN_ATTRIBUTES.sub("", local)  # SRI and CORS attributes block file:// loads
        if local != html:
            page.write_text(local, encoding="utf-8")
