"""The gates of ``mimicflow report --check``: served = evaluated (``served_vs_stored``,
``check_served``) and the headline figures (``headline_checks``), with the limits of params
``checks``; one fold's weights perturbed fails both."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from mimicflow import EMOTIONS
from mimicflow.config import ChecksParams
from mimicflow.inference import check_served, fixed_sample, served_vs_stored
from mimicflow.training.gates import headline_checks

LIMITS = ChecksParams()


def _stored(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"Filename": c, **dict.fromkeys(EMOTIONS, v)} for c, v in values.items()])


def _answer(value: float) -> dict:
    return {"intensities": dict.fromkeys(EMOTIONS, value)}


def test_served_vs_stored_passes_within_the_tolerance_and_fails_beyond_it():
    stored = _stored({"00001": 0.2, "00002": 0.5, "00003": 0.9})
    close = {"00001": _answer(0.2004), "00002": _answer(0.5), "00003": {"error": "nothing"}}
    summary = served_vs_stored(close, stored, 1e-3)
    assert (
        summary["passed"]
        and summary["compared"] == 2
        and summary["refused"] == {"00003": "nothing"}
    )
    assert summary["max_abs_difference"] == pytest.approx(4e-4)
    far = close | {"00002": _answer(0.502)}
    summary = served_vs_stored(far, stored, 1e-3)
    assert not summary["passed"] and summary["clips_over_tolerance"] == 1
    assert not served_vs_stored({"00003": {"error": "nothing"}}, stored, 1e-3)["passed"]


def test_the_served_sample_is_fixed_and_spread_over_the_clips():
    clips = [f"{i:05d}" for i in range(120, 0, -1)]
    sample = fixed_sample(clips, 24)
    assert sample == fixed_sample(list(reversed(clips)), 24) and len(set(sample)) == 24
    assert sample[0] == "00001" and sample[-1] == "00120"
    assert fixed_sample(clips, 0) == sorted(clips) == fixed_sample(clips, 500)


def _metrics(test: float | None, oracle: float = 0.9) -> dict:
    metrics = {"demo_oracle_mean_pearson": oracle}
    return metrics | ({"demo_hidden_test": {"mean_pearson": test}} if test is not None else {})


def _compare(fused: float, singles: list[float]) -> dict:
    runs = {"mimicmetrics": {"demo_hidden_test_mean_pearson": fused}}
    for name, value in zip(("audio", "visual", "text"), singles):
        runs[f"mimicmetrics ({name} only)"] = {"demo_hidden_test_mean_pearson": value}
    return {"default_system": "mimicmetrics", "runs": runs}


def test_headline_checks_take_their_limits_from_params():
    floor = LIMITS.min_fraction_of_oracle * 0.9
    passing = headline_checks(_metrics(floor + 0.01), _compare(0.8, [0.7, 0.4, 0.6]), LIMITS)
    assert [row["passed"] for row in passing] == [True, True]
    failing = headline_checks(_metrics(floor - 0.01), _compare(0.69, [0.7, 0.4, 0.6]), LIMITS)
    assert [row["passed"] for row in failing] == [False, False]
    assert failing[1]["value"] == pytest.approx(-0.01)
    stricter = LIMITS.model_copy(update={"min_fraction_of_oracle": 0.99})
    assert headline_checks(_metrics(floor + 0.01), None, stricter)[0]["passed"] is False


def test_a_figure_that_is_not_there_is_not_measured_rather_than_passed():
    rows = headline_checks({"out_of_fold": {"mean_pearson": 0.7}}, None, LIMITS)
    assert [row["passed"] for row in rows] == [None, None]
    assert "make compare" in rows[1]["note"]


def _perturb_fold(folder, name: str) -> None:
    """Every weight of one fold model plus noise of its own scale (a fixed seed)."""
    generator = torch.Generator().manual_seed(0)
    state = load_file(folder / name)
    for key, tensor in state.items():
        if tensor.is_floating_point():
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            state[key] = tensor + (noise * tensor.float().std().nan_to_num(0.1)).to(tensor.dtype)
    save_file(state, folder / name)


def test_one_perturbed_fold_fails_both_checks(featured, ensemble_dir, tmp_path, record_property):
    """What ``report --check`` runs, over the session's ensemble (served = its submission),
    then with one fold's weights perturbed and the ensemble stage run again: served no longer
    equals the submission, and demo-test ρ ÷ oracle is below the floor. (The session's
    3-epoch, 16-clip ensemble is below the floor too: only the perturbed case is asserted.)"""
    from mimicflow.stages.train import run_ensemble

    params, _ = featured
    trained = ensemble_dir.parent
    checks = params.checks.model_copy(update={"served_clips": 0})
    train = params.train.model_copy(update={"folds": (0, 1), "out": trained / "folds"})
    reports = params.ensemble.model_copy(
        update={"out": ensemble_dir, "reports": trained / "reports"}
    )
    settings = params.model_copy(update={"checks": checks, "train": train, "ensemble": reports})
    served = check_served(settings)
    record_property("served_max_abs_difference", served["max_abs_difference"])
    assert served["passed"] and served["compared"] >= 3, served

    shutil.copytree(trained / "folds", tmp_path / "folds")
    _perturb_fold(tmp_path / "folds" / "0", "model.safetensors")
    perturbed = settings.ensemble.model_copy(
        update={"out": tmp_path / "ensemble", "reports": tmp_path / "reports"}
    )
    metrics = run_ensemble(
        settings.model_copy(
            update={
                "train": train.model_copy(update={"out": tmp_path / "folds"}),
                "ensemble": perturbed,
            }
        )
    )
    rows = headline_checks(metrics, None, checks)
    original = json.loads((trained / "reports" / "metrics.json").read_text())
    record_property("fraction_of_oracle", [original["fraction_of_oracle"], rows[0]["value"]])
    assert rows[0]["passed"] is False and rows[0]["value"] < checks.min_fraction_of_oracle
    served = check_served(  # the perturbed ensemble served, against the trained one's submission
        settings.model_copy(
            update={"ensemble": settings.ensemble.model_copy(update={"out": perturbed.out})}
        )
    )
    record_property("perturbed_served_max_abs_difference", served["max_abs_difference"])
    assert not served["passed"] and served["max_abs_difference"] > 10 * checks.served_tolerance


def test_report_check_prints_the_gates_and_exits_1_when_one_fails(featured, ensemble_dir, tmp_path):
    """``mimicflow report --check`` over the session's outputs: the served check passes, the
    session's 16-clip, 3-epoch ensemble is below the demo-test floor, so the command exits 1."""
    import yaml
    from typer.testing import CliRunner

    from mimicflow.cli import app

    params, _ = featured
    raw = params.model_dump(mode="json", by_alias=True)
    raw["ensemble"] |= {"out": str(ensemble_dir), "reports": str(ensemble_dir.parent / "reports")}
    raw["checks"] |= {"served_clips": 3}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(
        app, ["report", "--check", "--params", str(tmp_path / "params.yaml")]
    )
    assert result.exit_code == 1, result.output
    # the table: the floor fails, served = submission passes, fused vs single is not measured
    assert "checks (params `checks`)" in result.output and "served" in result.output
    assert result.output.count("FAIL") == 1 and result.output.count("pass") == 1
    assert "not measured: run `make compare`" in result.output
