"""Code tests: the typed params object."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mimicflow.config import Params, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_load_into_the_typed_object():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.root == params.demo.out  # the demo is the embedded default
    assert params.validate_.min_duration_s > 0


def test_typos_in_params_fail_loudly(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("validate:\n  min_duraton_s: 1\n")
    with pytest.raises(ValidationError, match="min_duraton_s"):
        load_params(path)


def test_params_yaml_states_the_code_defaults():
    """Defaults live in config.py; params.yaml writes every one of them out (for DVC and for
    users to edit), and the two never disagree."""
    assert load_params(REPO / "params.yaml").model_dump() == Params().model_dump()


@pytest.mark.parametrize("folds, ids", [(3, (0, 1, 2)), ([0, 1], (0, 1))])
def test_folds_are_fold_ids(folds, ids):
    train = Params.model_validate({"train": {"folds": folds}}).train
    assert train.folds == ids and train.n_folds == len(ids)


@pytest.mark.parametrize("folds", [1, [1, 2], [0, 2]])
def test_fold_ids_must_count_from_zero(folds):
    with pytest.raises(ValidationError, match="fold"):
        Params.model_validate({"train": {"folds": folds}})


def test_a_typo_in_params_is_one_error_line_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from mimicflow.cli import app

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  patience: 0\n  batchsize: 8\n")
    result = CliRunner().invoke(app, ["stage", "train", "--fold", "0", "--params", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "train.patience" in result.output and "train.batchsize" in result.output


def _monitor_with_params(tmp_path, text: str):
    """``mimicflow monitor --json`` on a params file holding ``text``: (its path, the result)."""
    from typer.testing import CliRunner

    from mimicflow.cli import app

    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path, CliRunner().invoke(app, ["monitor", "--json", "--params", str(path)])


def test_the_old_monitor_modalities_key_is_one_error_line_naming_the_new_one(tmp_path):
    _, result = _monitor_with_params(tmp_path, "monitor:\n  modalities: [audio]\n")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "monitor.feature_sets" in result.stderr, result.stderr
    assert Params.model_validate({"monitor": {"feature_sets": ["audio"]}}).monitor.feature_sets == (
        "audio",
    )


def test_systems_and_their_sections_come_from_the_registry():
    from mimicflow.fusion.systems import SYSTEMS

    train = Params().train
    assert train.system in SYSTEMS
    for name, spec in SYSTEMS.items():
        assert type(train.system_params(name)) is spec.params
    with pytest.raises(ValidationError) as error:
        Params.model_validate(
            {
                "train": {
                    "system": "nosuchsystem",
                    "fuxi": {"embedd": 3},
                    "nosuch": {},
                    "patience": 0,
                }
            }
        )
    wrong = {".".join(map(str, e["loc"])) for e in error.value.errors()}
    assert wrong == {"train.system", "train.fuxi.embedd", "train.nosuch", "train.patience"}


@pytest.mark.parametrize("command", [["predict", "clip.mp4", "--json"], ["monitor", "--json"]])
def test_a_params_file_that_does_not_exist_is_an_error_on_stderr(tmp_path, command):
    from typer.testing import CliRunner

    from mimicflow.cli import app

    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(app, [*command, "--params", str(missing)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # stdout carries the JSON alone: error lines go to stderr
    assert result.stderr.strip() == f"error: {missing}: no such params file"


def test_broken_yaml_is_one_line_with_file_line_and_column(tmp_path):
    path, result = _monitor_with_params(tmp_path, "train:\n  patience: 3\nbad_indent: [unclosed\n")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}:4:1: not valid YAML"), result.stderr
