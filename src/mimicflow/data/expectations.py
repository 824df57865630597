"""Great Expectations suites for the clip manifest and the labels table.

Both suites are defined in code and run against in-memory pandas DataFrames in an
ephemeral GX context; the only thing written to disk is a static Data Docs site
(``<out_dir>/data_docs/index.html``) with one validation result page per suite.
Great Expectations is imported inside the functions because importing it takes
several seconds.
"""

from __future__ import annotations

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


def _validate(
    context: Any, source: Any, name: str, frame: pd.DataFrame, expectations: list
) -> dict:
    """Run ``expectations`` as suite ``name`` on the whole of ``frame``; return its summary."""
    import great_expectations as gx

    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return _summarise(validation.run(batch_parameters={"dataframe": frame}))


def run_data_quality_suites(
    manifest: pd.DataFrame,
    labels: pd.DataFrame,
    out_dir: Path,
    *,
    min_duration_s: float,
    max_duration_s: float,
    min_fps: float,
    max_fps: float,
) -> dict:
    """Validate ``manifest`` and ``labels`` and build Data Docs under ``out_dir/data_docs``.

    An empty manifest fails its suite; an empty ``labels`` table (unlabelled data) is
    not validated and is reported as ``{"skipped": True}``. Returns::

        {"success": bool,   # every suite that ran passed
         "suites": {"manifest": {"success", "evaluated", "successful", "failed": [...]},
                    "labels": {... same ...} or {"skipped": True}},
         "data_docs": "<out_dir>/data_docs/index.html"}

    where each ``failed`` item is ``{"expectation", "column", "unexpected_count"}``.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    docs_dir = Path(out_dir).resolve() / "data_docs"
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_pandas("mimicflow")
    manifest_expectations = _manifest_expectations(min_duration_s, max_duration_s, min_fps, max_fps)
    suites = {
        "manifest": _validate(context, source, "manifest", manifest, manifest_expectations),
        "labels": {"skipped": True}
        if labels.empty
        else _validate(context, source, "labels", labels, _labels_expectations()),
    }

    context.build_data_docs(site_names=[DOCS_SITE])
    index = docs_dir / "index.html"
    html = index.read_text(encoding="utf-8") if index.is_file() else ""
    if any(f"validations/{name}/" not in html for name, s in suites.items() if "success" in s):
        raise RuntimeError(f"Great Expectations Data Docs at {index} lack the validation results")

    return {
        "success": all(s.get("success", True) for s in suites.values()),
        "suites": suites,
        "data_docs": str(index),
    }
