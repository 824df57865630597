"""The headline figures as gates (``mimicflow report --check``): the ensemble's demo-test
Pearson as a fraction of the oracle ceiling, and fused against the best single input."""

from __future__ import annotations

from mimicflow.config import ChecksParams


def headline_checks(metrics: dict, compare: dict | None, limits: ChecksParams) -> list[dict]:
    """One row per gate: ``check``, ``value``, ``limit`` and ``passed`` (None: not measured,
    with ``note`` saying why). ``metrics``: the ensemble stage's ``metrics.json``;
    ``compare``: ``compare.json`` (``make compare``) or None."""
    test = metrics.get("demo_hidden_test", {}).get("mean_pearson")
    oracle = metrics.get("demo_oracle_mean_pearson")
    rows = [_at_least("demo test ρ ÷ oracle", _ratio(test, oracle), limits.min_fraction_of_oracle)]
    if rows[0]["value"] is None:
        rows[0]["note"] = "needs the demo's hidden test labels and oracle"
    runs = (compare or {}).get("runs", {})
    default = (compare or {}).get("default_system")
    singles = [
        run.get("demo_hidden_test_mean_pearson")
        for name, run in runs.items()
        if name.startswith(f"{default} (") and name.endswith(" only)")
    ]
    fused = runs.get(default, {}).get("demo_hidden_test_mean_pearson")
    margin = None
    if fused is not None and singles and None not in singles:
        margin = fused - max(singles)
    rows.append(
        _at_least("fused − best single input (demo test ρ)", margin, limits.fused_over_single)
    )
    if margin is None:
        rows[1]["note"] = "not measured: run `make compare`"
    return rows


def _ratio(value: float | None, ceiling: float | None) -> float | None:
    return value / ceiling if value is not None and ceiling else None


def _at_least(check: str, value: float | None, limit: float) -> dict:
    passed = None if value is None else bool(value >= limit)
    return {"check": check, "value": value, "limit": limit, "passed": passed}
