"""`recipe check NAME --estimate`: each real encoder's parameters and GPU memory from its config,
and the hours the whole dataset needs on one H100, labelled as estimates."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest
from typer.testing import CliRunner

from mimicflow.cli import app
from mimicflow.perception.miniature import chatglm3_model
from mimicflow.stages.estimate import CHATGLM3, chatglm_parameters

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["--recipes", str(ROOT / "recipes")]
NAMES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _estimate(name: str, *args) -> dict:
    run = CliRunner().invoke(
        app, ["recipe", "check", name, "--estimate", "--json", *args, *RECIPES]
    )
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_has_estimates(name):
    found = _estimate(name)
    assert found["label"].startswith("estimates")
    assert found["dataset"] == {"clips": 15000, "hours": 30.0}
    assert found["encoders"], "every paper flavour names real encoders"
    for e in found["encoders"]:
        assert e["config_from"] == "architecture"  # no mirror, an empty cache
        assert e["parameters"] > 1e7 and e["width"] >= 768
        weights_gb = e["parameters"] / 1e9  # a gigabyte a billion bytes
        assert e["gpu_gb_fp16"] == pytest.approx(2 * 1.2 * weights_gb, abs=0.006)
        assert e["gpu_gb_fp32"] == pytest.approx(4 * 1.2 * weights_gb, abs=0.006)
    hours = [found["hours_asr"], *found["hours_adapt"].values(), *found["hours_features"].values()]
    assert found["hours_total_h100"] == pytest.approx(sum(hours) + found["hours_train_h100"], 0.01)
    assert found["head_parameters"] > 0 and found["hours_train_cpu"] is None


def test_figures_scale_with_the_clip_count():
    one = _estimate("ustc", "--dataset", "1500", "3")
    ten = _estimate("ustc", "--dataset", "15000", "30")
    assert [e["parameters"] for e in one["encoders"]] == [e["parameters"] for e in ten["encoders"]]
    assert ten["hours_asr"] == pytest.approx(10 * one["hours_asr"], rel=0.01)
    for part in ("hours_adapt", "hours_features"):
        for name, hours in ten[part].items():
            assert hours == pytest.approx(10 * one[part][name], rel=0.01)
    assert ten["hours_train_h100"] == pytest.approx(10 * one["hours_train_h100"], rel=0.05)
    assert ten["hours_total_h100"] == pytest.approx(10 * one["hours_total_h100"], rel=0.05)


def test_a_dry_runs_train_cost_projects_the_cpu_hours(tmp_path):
    rows = [
        {"stage": "data", "seconds": 0.1, "outputs": "train 8, valid 2, test 2 clips"},
        {"stage": "train", "seconds": 48.0, "outputs": "fold 0 val ρ 0.1"},
    ]
    costs = tmp_path / "dry.json"
    costs.write_text(json.dumps(rows))
    found = _estimate("casia", "--costs", str(costs), "--dataset", "1200", "2.4")
    # 48 s / (12 clips × 2 epochs × 1 fold) = 2 s a clip and epoch; × 1200 clips × 30 epochs
    assert found["hours_train_cpu"] == pytest.approx(2 * 1200 * 30 / 3600, rel=0.01)


def test_chatglm3_counts_6_2_billion_and_a_mirror_config_is_read(tmp_path):
    assert chatglm_parameters(CHATGLM3) == pytest.approx(6.24e9, rel=0.01)  # the model card's 6B
    weights = tmp_path / "weights"
    folder = chatglm3_model(weights / "THUDM" / "chatglm3-6b")
    found = _estimate("fuxi", "--weights", str(weights))
    text = next(e for e in found["encoders"] if e["hub_id"] == "THUDM/chatglm3-6b")
    assert text["config_from"] == "mirror" and text["width"] == 32
    config = json.loads((folder / "config.json").read_text())
    assert text["parameters"] == chatglm_parameters(config) < 1e6


def test_a_missing_costs_file_is_one_line(tmp_path):
    run = CliRunner().invoke(
        app, ["recipe", "check", "fuxi", "--estimate", "--costs", str(tmp_path / "no.json")]
    )
    assert run.exit_code == 2 and "--costs" in run.output and "Traceback" not in run.output
