"""The combination of several systems: per-emotion weights (non-negative, summing to 1) fitted
on out-of-fold predictions, and scored with weights fitted without the held-out fold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mimicflow import EMOTIONS
from mimicflow.training.combine import align_members, combine, cross_fitted, fit_weights


def _members(rows=120, seed=0):
    """Truth and three members: a good one, a noisy one, and noise, with per-emotion quality."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(size=(rows, 6))
    good = truth + rng.normal(0, 0.05, truth.shape)
    noisy = truth + rng.normal(0, 0.4, truth.shape)
    noise = rng.uniform(size=truth.shape)
    return np.stack([good, noisy, noise]), truth, np.arange(rows) % 5


def test_weights_are_non_negative_sum_to_one_and_favour_the_good_member():
    predictions, truth, _ = _members()
    weights = fit_weights(predictions, truth)
    assert weights.shape == (3, 6)
    assert (weights >= 0).all() and np.allclose(weights.sum(0), 1)
    assert (weights[0] > 0.7).all()
    combined = combine(predictions, weights)
    mean = predictions.mean(0)
    assert ((combined - truth) ** 2).mean() < ((mean - truth) ** 2).mean()


def test_a_member_that_tracks_one_emotion_only_wins_that_emotion():
    predictions, truth, _ = _members()
    swapped = predictions.copy()
    swapped[[0, 1], :, 2] = swapped[[1, 0], :, 2]  # the noisy member is the good one on emotion 2
    weights = fit_weights(swapped, truth)
    assert weights[1, 2] > 0.7 and (np.delete(weights[0], 2) > 0.7).all()


def test_fold_k_is_combined_with_weights_fitted_without_its_rows():
    """Changing fold k's true values changes nothing of fold k's combined predictions (they are
    fitted on the other folds), while every other fold's weights move."""
    predictions, truth, folds = _members()
    combined, weights = cross_fitted(predictions, truth, folds)
    assert set(weights) == set(range(5))
    poisoned = truth.copy()
    poisoned[folds == 2] = 1 - poisoned[folds == 2]  # fold 2's labels now favour no member
    again, weights_again = cross_fitted(predictions, poisoned, folds)
    assert np.array_equal(again[folds == 2], combined[folds == 2])
    assert np.array_equal(weights_again[2], weights[2])
    assert not np.allclose(weights_again[0], weights[0])
    # and fold 2's weights are those fitted on the other folds' rows
    assert np.allclose(weights[2], fit_weights(predictions[:, folds != 2], truth[folds != 2]))


def _table(clips, folds, value):
    return pd.DataFrame({"clip_id": clips, "fold": folds, **dict.fromkeys(EMOTIONS, value)})


def test_align_members_orders_rows_and_refuses_other_clips_or_folds():
    clips = [f"c{i}" for i in range(6)]
    a = _table(clips, [0, 1, 2, 0, 1, 2], 0.1)
    b = _table(clips, [0, 1, 2, 0, 1, 2], 0.2).iloc[::-1]  # same rows, another order
    ids, folds, stacked = align_members({"a": a, "b": b})
    assert ids == clips and list(folds) == [0, 1, 2, 0, 1, 2]
    assert stacked.shape == (2, 6, 6) and np.allclose(stacked[1], 0.2)
    with pytest.raises(ValueError, match="members a and c were trained on different clips"):
        align_members({"a": a, "c": _table(clips[:5], [0, 1, 2, 0, 1], 0.3)})
    with pytest.raises(ValueError, match="members a and d were trained on different folds"):
        align_members({"a": a, "d": _table(clips, [1, 0, 2, 0, 1, 2], 0.3)})


def _combine(tmp_path, members: dict, *args) -> object:
    import yaml
    from typer.testing import CliRunner

    from mimicflow.cli import app

    params = tmp_path / "params.yaml"
    ensemble = {
        "members": members,
        "members_out": str(tmp_path / "members"),
        "combined_out": str(tmp_path / "combined"),
        "reports": str(tmp_path / "reports"),
    }
    params.write_text(yaml.safe_dump({"ensemble": ensemble}))
    return CliRunner().invoke(app, ["stage", *args, "--params", str(params)])


def test_combine_refuses_a_member_without_folds_in_one_line(tmp_path):
    result = _combine(tmp_path, {"taemi": {"recipe": "taemi"}}, "combine")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "member taemi has no trained folds" in lines[0]
    assert "`dvc repro member@taemi`" in lines[0]


def test_combine_refuses_members_trained_on_other_folds_in_one_line(tmp_path):
    clips = [f"c{i}" for i in range(6)]
    for name, folds in (("a", [0, 1, 2, 0, 1, 2]), ("b", [1, 0, 2, 0, 1, 2])):
        (tmp_path / "members" / name).mkdir(parents=True)
        _table(clips, folds, 0.5).to_csv(tmp_path / "members" / name / "oof.csv", index=False)
    result = _combine(tmp_path, {"a": {}, "b": {}}, "combine")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: members a and b were trained on different folds: retrain them with the same "
        "train.folds and train.seed"
    ]


def test_stage_member_refuses_an_unknown_member_or_recipe(tmp_path):
    result = _combine(tmp_path, {"x": {"recipe": "nope"}}, "member", "y")
    assert result.exit_code == 2 and "no member 'y' in ensemble.members (it has x)" in result.output
    result = _combine(tmp_path, {"x": {"recipe": "nope"}}, "member", "x")
    assert result.exit_code == 2 and "member x: no recipe 'nope' in recipes" in result.output


def test_one_chain_computes_each_distinct_feature_set_once():
    """Members' equal sets are one input of the chain; another set under a taken name is
    renamed for its member; members with other faces settings are refused."""
    from mimicflow.config import ChainParams
    from mimicflow.training.combine import merged_chain

    a = ChainParams()
    sets = dict(a.features.sets)
    other_text = sets["text"].model_copy(update={"layers": sets["text"].layers - 1})
    b = a.model_copy(
        update={"features": a.features.model_copy(update={"sets": sets | {"text": other_text}})}
    )
    chain, inputs = merged_chain({"a": (a, ["audio", "text"]), "b": (b, ["audio", "text"])})
    assert inputs == {
        "a": {"audio": "audio", "text": "text"},
        "b": {"audio": "audio", "text": "text-b"},
    }
    assert set(chain.features.sets) == {"audio", "text", "text-b"}
    assert chain.features.sets["text-b"] == other_text
    c = a.model_copy(update={"faces": a.faces.model_copy(update={"fps": a.faces.fps + 1})})
    with pytest.raises(ValueError, match="members a and c were trained on other faces"):
        merged_chain({"a": (a, ["audio"]), "c": (c, ["audio"])})


def test_combine_without_members_writes_what_dvc_declares(tmp_path):
    """``ensemble.members: {}`` (the default): the combine stage still writes its outputs, and
    they say there is no combination (package serves the default system)."""
    from mimicflow.training.combine import has_members

    result = _combine(tmp_path, {}, "combine")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "reports" / "combined.json").read_text()) == {"members": {}}
    assert not has_members(tmp_path / "combined")
