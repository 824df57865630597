"""`recipe check` and `recipe apply --weights`: every model a recipe needs, from a local mirror
of downloaded weights (DIR/org/name), the missing ones named all at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
from typer.testing import CliRunner

from mimicflow.cli import app
from mimicflow.config import load_params
from mimicflow.perception.miniature import chatglm3_model

from .helpers.tiny_hf import tiny_audio_model

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["--recipes", str(ROOT / "recipes")]


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def mirror(tmp_path):
    """Fuxi's HuBERT and ChatGLM3 downloaded (tiny models), its MAE and Whisper not."""
    folder = tmp_path / "weights"
    tiny_audio_model(folder / "facebook" / "hubert-base-ls960")
    chatglm3_model(folder / "THUDM" / "chatglm3-6b")
    return folder


def _check(*args):
    return CliRunner().invoke(app, ["recipe", "check", *args, *RECIPES])


def test_check_lists_every_model_and_each_missing_one(mirror):
    run = _check("fuxi", "--weights", str(mirror), "--json")
    assert run.exit_code == 1, run.output
    needs = {n["key"]: n for n in json.loads(run.stdout)}
    assert list(needs) == [
        "asr.model",
        "features.sets.visual.model",
        "features.sets.audio.model",
        "features.sets.text.model",
    ]
    assert needs["asr.model"]["hub_id"] == "Systran/faster-whisper-large-v3"
    hubert, glm = needs["features.sets.audio.model"], needs["features.sets.text.model"]
    assert hubert["source"] == glm["source"] == "mirror"
    assert glm["path"] == str(mirror / "THUDM" / "chatglm3-6b") and glm["trust_remote_code"]
    from transformers import AutoModel

    for need in (hubert, glm):
        net = AutoModel.from_pretrained(need["path"], trust_remote_code=True)
        assert need["parameters"] == sum(p.numel() for p in net.parameters())
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in run.output
    assert errors[0].startswith("error: asr.model: large-v3 (Systran/faster-whisper-large-v3)")
    assert "features.sets.visual.model: facebook/vit-mae-base is missing" in errors[1]
    assert str(mirror / "facebook" / "vit-mae-base") in errors[1]


def test_check_on_an_empty_mirror_names_every_hub_model(tmp_path):
    (tmp_path / "empty").mkdir()
    run = _check("ustc", "--weights", str(tmp_path / "empty"))
    assert run.exit_code == 1
    errors = run.stderr.strip().splitlines()
    assert [e.split(":")[1].strip() for e in errors] == [
        "asr.model",
        "adapt.encoders.visual.model",
        "adapt.encoders.visual.text_model",
        "adapt.encoders.audio.model",
        "adapt.encoders.audio.text_model",
        "features.sets.text.model",
    ]
    listed = json.loads(_check("ustc", "--weights", str(tmp_path / "empty"), "--json").stdout)
    made = {n["key"]: n["source"] for n in listed if n["hub_id"] is None}
    assert made == {"features.sets.visual.model": "adapt", "features.sets.audio.model": "adapt"}
    demo = _check("ustc", "--demo", "--json")
    assert demo.exit_code == 0 and all(
        n["source"] in ("catalogue", "adapt") for n in json.loads(demo.stdout)
    )


def test_bad_input_is_one_line(tmp_path):
    for run, expected in (
        (_check("hsemotion"), "no recipe 'hsemotion'"),
        (_check("fuxi", "--weights", str(tmp_path / "nowhere")), "no such folder"),
    ):
        assert run.exit_code == 2 and expected in run.output
        assert len(run.output.strip().splitlines()) == 1 and "Traceback" not in run.output


def test_apply_writes_mirror_folders_and_records_the_mirror(mirror, tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    args = ["recipe", "apply", "fuxi", "--weights", str(mirror), "--params", str(params)]
    run = CliRunner().invoke(app, [*args, *RECIPES])
    assert run.exit_code == 0, run.output
    applied = load_params(params)
    sets = applied.features.sets
    assert sets["text"].model == str(mirror / "THUDM" / "chatglm3-6b")
    assert sets["audio"].model == str(mirror / "facebook" / "hubert-base-ls960")
    assert sets["visual"].model == "facebook/vit-mae-base"  # not in the mirror: the hub id
    assert applied.models.weights == mirror
    again = CliRunner().invoke(app, ["recipe", "check", "fuxi", "--json", "--params", str(params)])
    assert again.exit_code == 1  # the params' models.weights is the mirror --weights defaults to
    sources = {n["key"]: n["source"] for n in json.loads(again.stdout)}
    assert sources["features.sets.text.model"] == "mirror"
