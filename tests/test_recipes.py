"""Paper recipes: cited overlays that make valid params, written into params.yaml in place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from mimicflow.cli import app
from mimicflow.config import Params, load_params
from mimicflow.models.catalogue import catalogue
from mimicflow.recipes import (
    REPLACED,
    Recipe,
    RecipeError,
    apply_overlay,
    leaves,
    load_recipes,
    merge,
    recipe_overlay,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
NAMES = ("augsburg-abaw8", "augsburg", "casia", "fuxi", "mimicmetrics", "taemi", "ustc")
SYSTEM = {"augsburg-abaw8": "abaw8"}  # a recipe's system where its name differs


def _system(name: str) -> str:
    return SYSTEM.get(name, name)


@pytest.fixture(scope="module")
def recipes():
    return load_recipes(RECIPES)


@pytest.fixture
def params_copy(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


def _raw(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def _merged(base: dict, overlay: dict) -> dict:
    merge(base, overlay)
    return base


def test_the_papers_each_with_valid_overlays(recipes):
    assert tuple(recipes) == NAMES
    defaults = Params().model_dump(mode="json", by_alias=True)
    for recipe in recipes.values():
        for demo in (False, True):
            params = Params.model_validate(_merged(dict(defaults), recipe_overlay(recipe, demo)))
            assert params.train.system == _system(recipe.name)
            assert set(params.train.inputs) <= set(params.features.sets)
        valid = recipe.reported.valid
        assert 0 < recipe.reported.test < 1 and (valid is None or 0 < valid < recipe.reported.test)
    assert recipes["taemi"].reported.valid == 0.55  # MimicMetrics §6.2 (a secondary source)


def test_every_overlay_value_has_a_source(recipes):
    for recipe in recipes.values():
        for key, _ in leaves(recipe.params):
            parts = key.split(".")
            assert any(".".join(parts[:n]) in recipe.sources for n in range(1, len(parts) + 1)), key
        assert all(text.strip() for text in recipe.sources.values())


def test_a_value_without_a_source_or_a_demo_change_without_a_note_is_refused():
    raw = _raw("fuxi")
    del raw["sources"]["train.patience"]
    with pytest.raises(ValidationError, match=r"train\.patience"):
        Recipe.model_validate(raw)
    raw = _raw("fuxi")
    raw["demo"]["params"]["train"]["batch_size"] = 8
    with pytest.raises(ValidationError, match=r"train\.batch_size"):
        Recipe.model_validate(raw)
    raw = _raw("fuxi")
    raw["params"]["train"]["inputs"] = ["visual", "audio", "lidar"]
    with pytest.raises(ValidationError, match="lidar"):
        Recipe.model_validate(raw)


def test_every_recipe_sets_the_same_shared_keys(recipes):
    """Applying one recipe after another leaves nothing of the first behind: every flavour
    sets the same keys outside its own system's section and its feature sets."""

    def shared(overlay):
        return {
            key
            for key, _ in leaves(overlay)
            if not key.startswith(
                (
                    "adapt.encoders.",
                    "features.sets.",
                    "train.frames.",
                    f"train.{overlay['train']['system']}.",
                )
            )
        }

    first = shared(recipes["fuxi"].params)
    assert {
        "faces.fps",
        "asr.model",
        "train.protocol",
        "train.epochs",
        "monitor.feature_sets",
    } <= first
    for recipe in recipes.values():
        assert shared(recipe.params) == shared(recipe.demo.params) == first, recipe.name


def test_demo_flavours_use_only_embedded_encoders(recipes):
    embedded = set(catalogue()) | {"default", "motion"}
    for recipe in recipes.values():
        demo = Params.model_validate(
            _merged(
                Params().model_dump(mode="json", by_alias=True), recipe_overlay(recipe, demo=True)
            )
        )
        adapted = {str(demo.adapt.out / n): e.model for n, e in demo.adapt.encoders.items()}
        for entry in demo.adapt.encoders.values():
            assert {entry.model, getattr(entry, "text_model", entry.model)} <= embedded | {
                "vit-scratch"
            }, recipe.name
        for name, spec in demo.features.sets.items():
            assert adapted.get(spec.model, spec.model) in embedded | {"vit-scratch"}, (
                recipe.name,
                name,
            )
            assert not spec.trust_remote_code and not spec.head_outputs
        assert demo.asr.model in embedded
        assert demo.train.epochs <= demo.ensemble.compare_epochs


def test_paper_recipes_name_the_papers_models(recipes):
    def sets(name):
        return recipes[name].params["features"]["sets"]

    augsburg = sets("augsburg")["audio"]
    fine_tuned = recipes["augsburg"].params["adapt"]["encoders"]["audio"]  # §4: wav2vec2 unfrozen
    assert augsburg["model"] == "models/adapted/audio" and fine_tuned["method"] == "finetune"
    assert fine_tuned["model"] == "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
    assert augsburg["head_outputs"] is fine_tuned["head_outputs"] is True
    assert augsburg["audio_cut_s"] == fine_tuned["audio_cut_s"] == 12
    assert recipes["augsburg"].params["train"]["protocol"] == "final"
    assert recipes["augsburg"].demo.params["features"]["sets"]["audio"]["audio_cut_s"] == 12
    text = sets("fuxi")["text"]
    assert (text["model"], text["layers"], text["trust_remote_code"]) == (
        "THUDM/chatglm3-6b",
        [21, 28],
        True,
    )
    assert recipes["fuxi"].demo.params["features"]["sets"]["text"]["layers"] == [5, 6]
    assert recipes["fuxi"].params["train"]["fuxi"]["branch_lr"] == {
        "visual": 1e-6,
        "audio": 1e-4,
        "text": 1e-4,
    }
    assert recipes["fuxi"].params["train"]["protocol"] == "merged"
    mm = sets("mimicmetrics")
    assert (mm["visual"]["model"], mm["motion"]["model"]) == ("facebook/dinov2-base", "motion")
    assert recipes["mimicmetrics"].params["train"]["mimicmetrics"]["missing_text"] == "zeros"
    assert sets("ustc")["visual"]["model"] == "models/adapted/visual"  # Stage I's output
    stage_one = recipes["ustc"].params["adapt"]["encoders"]
    assert stage_one["visual"]["model"] == "openai/clip-vit-base-patch16"
    assert (stage_one["audio"]["temperature"], stage_one["audio"]["lr"]) == (0.07, 1e-5)
    assert recipes["ustc"].params["train"]["protocol"] == "official"
    abaw8 = sets("augsburg-abaw8")
    assert (
        abaw8["audio"]["model"],
        abaw8["audio"]["head_outputs"],
        abaw8["audio"]["audio_cut_s"],
    ) == ("models/adapted/audio", True, 12)
    abaw8_tuned = recipes["augsburg-abaw8"].params["adapt"]["encoders"]["audio"]
    assert abaw8_tuned["model"] == "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
    assert (abaw8["visual"]["model"], abaw8["visual"]["pooling"]) == (
        "google/vit-huge-patch14-224-in21k",
        "mean",
    )
    assert (abaw8["text"]["model"], abaw8["text"]["pooling"], abaw8["text"]["max_tokens"]) == (
        "Alibaba-NLP/gte-en-mlm-base",
        "cls",
        128,
    )
    abaw8_demo = recipes["augsburg-abaw8"].demo.params["features"]["sets"]
    assert abaw8["text"]["transcript"] == abaw8_demo["text"]["transcript"] == "first_segment"
    assert abaw8_demo["audio"]["audio_cut_s"] == 12
    paper = recipes["augsburg-abaw8"].params
    assert (
        paper["faces"]["alignment"],
        paper["faces"]["crop_size"],
        paper["asr"]["beam_size"],
    ) == ("ffhq", 256, 5)
    assert paper["train"]["frames"]["visual"] == 400 and paper["train"]["seed"] == 3407
    assert paper["train"]["abaw8"]["grad_clip_mode"] == "value"
    taemi = recipes["taemi"]  # from its code: the text CLS queries; 4 heads of 512; MSE
    assert taemi.params["asr"] == {"model": "large-v3", "beam_size": 5}
    assert all(
        s["pooling"] == "cls"
        for flavour in (taemi.params, taemi.demo.params)
        for s in flavour["features"]["sets"].values()
        if s["modality"] == "text"
    )
    code = taemi.params["train"]["taemi"]
    assert (code["hidden"], code["heads"], code["modality_dropout"], code["loss"]) == (
        512,
        4,
        0.1,
        "mse",
    )
    assert (taemi.params["train"]["patience"], taemi.params["train"]["batch_size"]) == (5, 32)
    casia = recipes["casia"].params
    assert casia["train"]["frames"] == {"visual": 128, "audio": 128, "text": 128}
    assert (casia["train"]["casia"]["lr"], casia["train"]["casia"]["weight_decay"]) == (1e-4, 1e-4)
    assert casia["train"]["casia"]["ema"] == 0.999 and casia["train"]["epochs"] == 30


@pytest.mark.parametrize("name", NAMES)
def test_apply_keeps_comments_and_changes_only_the_overlay(recipes, params_copy, name):
    original = params_copy.read_text()
    overlay = recipe_overlay(recipes[name])
    changed = apply_overlay(params_copy, overlay)
    written = params_copy.read_text()
    assert yaml.safe_load(written) == _merged(yaml.safe_load(original), overlay)
    assert load_params(params_copy).train.system == _system(name)
    overlay_keys = {key for key, _ in leaves(overlay)}
    for key, old, new in changed:
        assert key in overlay_keys or key.startswith(tuple(f"{r}." for r in REPLACED)), key
        assert old != new
    # every comment outside the replaced feature sets survives, and so does the layout of the
    # flow mappings the overlay leaves alone (other systems' sections)
    sets_block = original[original.index("  sets:\n") : original.index("\ncompute:")]
    comments = [
        line.split("#", 1)[1]
        for line in original.replace(sets_block, "").splitlines()
        if "#" in line
    ]
    assert all(comment in written for comment in comments)
    for other in {_system(n) for n in NAMES} - {_system(name)}:
        start = original.index(f"  {other}: {{")
        section = original[start : original.index("}", start) + 1]
        assert section in written, other
    assert len(written.splitlines()) < len(original.splitlines()) + 40  # one block section more
    assert apply_overlay(params_copy, overlay) == [] and params_copy.read_text() == written


def test_an_overlay_that_does_not_fit_writes_nothing(params_copy):
    before = params_copy.read_bytes()
    with pytest.raises(RecipeError, match="lidar"):
        apply_overlay(params_copy, {"train": {"inputs": ["audio", "lidar"]}})
    with pytest.raises(RecipeError, match="epochs"):
        apply_overlay(params_copy, {"train": {"epochs": 0}})
    assert params_copy.read_bytes() == before


def test_recipe_list_json_and_apply_cli(params_copy):
    runner = CliRunner()
    listed = runner.invoke(app, ["recipe", "list", "--json", "--recipes", str(RECIPES)])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [row["name"] for row in rows] == list(NAMES)
    assert all(
        row["source"] and row["sources"] and row["paper"] and row["reported"]["test"]
        for row in rows
    )
    table = runner.invoke(app, ["recipe", "list", "--recipes", str(RECIPES)])
    assert table.exit_code == 0 and "0.7185" in table.stdout and "0.708" in table.stdout
    applied = runner.invoke(
        app,
        [
            "recipe",
            "apply",
            "ustc",
            "--demo",
            "--params",
            str(params_copy),
            "--recipes",
            str(RECIPES),
        ],
    )
    assert applied.exit_code == 0, applied.output
    assert "train.system: mimicmetrics → ustc" in applied.stdout
    assert load_params(params_copy).train.protocol == "official"
    unknown = runner.invoke(
        app,
        ["recipe", "apply", "hsemotion", "--params", str(params_copy), "--recipes", str(RECIPES)],
    )
    assert unknown.exit_code == 2
    assert "no recipe 'hsemotion'" in unknown.output and "Traceback" not in unknown.output
    missing = runner.invoke(app, ["recipe", "list", "--recipes", str(params_copy.parent / "none")])
    assert missing.exit_code == 2 and "no recipes folder" in missing.output


@pytest.mark.parametrize("name", NAMES)
def test_each_demo_recipe_trains_a_fold(featured, recipes, tmp_path, monkeypatch, name):
    """`recipe apply NAME --demo` then `stage train --fold 0` on the session's small dataset:
    the recipe's adapted encoders (USTC's Stage I) and own feature sets are made first (into
    this test's folder, the working directory: adapt.out is relative)."""
    from mimicflow.stages.adapt import run_adapt
    from mimicflow.stages.features import run_features

    monkeypatch.chdir(tmp_path)
    base, _ = featured
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        yaml.safe_dump(base.model_dump(mode="json", by_alias=True), sort_keys=False)
    )
    apply_overlay(
        params_file,
        {
            "features": {"out": str(tmp_path / "features")},
            "train": {"out": str(tmp_path / "folds")},
            "ensemble": {"reports": str(tmp_path / "reports")},
        },
    )
    runner = CliRunner()
    applied = runner.invoke(
        app,
        [
            "recipe",
            "apply",
            name,
            "--demo",
            "--params",
            str(params_file),
            "--recipes",
            str(RECIPES),
        ],
    )
    assert applied.exit_code == 0, applied.output
    apply_overlay(params_file, {"faces": {"fps": base.faces.fps}})  # the session's face tracks
    params = load_params(params_file)
    if params.adapt.encoders:
        one_epoch = {
            n: e.model_dump(mode="json") | {"epochs": 1} for n, e in params.adapt.encoders.items()
        }
        apply_overlay(params_file, {"adapt": {"encoders": one_epoch}})  # replaced whole
        assert set(run_adapt(load_params(params_file), progress=False)) == set(
            params.adapt.encoders
        )
    for feature_set in params.train.inputs:
        run_features(params, feature_set, progress=False)
    apply_overlay(params_file, {"train": {"epochs": 2}})
    trained = runner.invoke(app, ["stage", "train", "--fold", "0", "--params", str(params_file)])
    assert trained.exit_code == 0, trained.output
    fold = json.loads((tmp_path / "folds" / "0" / "fold.json").read_text())
    assert fold["system"] == _system(name)
