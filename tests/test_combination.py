"""A combination of two systems on the test suite's tiny pipeline: each member trained by its
own stage on the pipeline's folds (its feature sets linked, not encoded again), weighted per
emotion by the combine stage, and served = evaluated through the bundle the package stage
writes (to 1e-3), with a ``members`` block and input shares summing to 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mimicflow import EMOTIONS
from mimicflow.inference import clip_prediction, extract_clip, served_vs_stored


@pytest.fixture(scope="module")
def combined(featured, tmp_path_factory):
    """(params, the combine stage's report) for members ``mimicmetrics`` (the default system)
    and ``fuxi`` (an overlay), 2 folds, 3 epochs."""
    from mimicflow.stages.members import run_combine, run_member

    params, _ = featured
    out = tmp_path_factory.mktemp("combined")
    train = params.train.model_copy(
        update={
            "folds": (0, 1),
            "epochs": 3,
            "patience": 2,
            "mimicmetrics": params.train.mimicmetrics.model_copy(update={"pretrain_epochs": 2}),
        }
    )
    members = {"mimicmetrics": {}, "fuxi": {"overlay": {"train": {"system": "fuxi"}}}}
    ensemble = params.ensemble.model_validate(
        params.ensemble.model_dump()
        | {
            "members": members,
            "members_out": out / "members",
            "combined_out": out / "combined",
            "compare_out": out / "work",
            "reports": out / "reports",
        }
    )
    params = params.model_copy(update={"train": train, "ensemble": ensemble})
    for name in members:
        run_member(params, name, progress=False)
    return params, run_combine(params)


def test_members_share_the_pipelines_feature_sets_and_weights_sum_to_one(combined):
    params, report = combined
    for name in ("mimicmetrics", "fuxi"):
        linked = sorted((params.ensemble.compare_out / f"member-{name}").iterdir())
        assert linked and all(p.is_symlink() for p in linked)  # encoded once: the pipeline's
    weights = np.array([list(m["weights"].values()) for m in report["members"].values()])
    assert (weights >= 0).all() and np.allclose(weights.sum(0), 1)
    rows = report["out_of_fold"]
    assert set(rows) == {"mimicmetrics", "fuxi", "mean of members", "combined"}
    assert all(set(r["pearson"]) == set(EMOTIONS) for r in rows.values())
    assert json.loads((params.ensemble.reports / "combined.json").read_text()) == json.loads(
        json.dumps(report)
    )


def test_served_combination_equals_the_evaluated_one(combined, tmp_path):
    """The bundle package writes, read back as the service reads it: each test clip's answer
    from its video equals the combine stage's prediction from the stored features."""
    from mimicflow.serving.bundle import read_bundle, write_bundle
    from mimicflow.training.combine import has_members, load_combination

    params, report = combined
    source = params.ensemble.combined_out
    assert has_members(source)
    write_bundle(load_combination(source), source, params, params.serving, tmp_path / "bundle")
    bundle = read_bundle(tmp_path / "bundle")
    assert bundle.ensemble.version == report["version"]
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet").set_index("clip_id")
    clips = [c for c in manifest.index if manifest.loc[c, "split"] == "test"][:4]
    answers = {}
    for clip_id in clips:
        video = Path(params.data.root) / manifest.loc[clip_id, "video_path"]
        work = tmp_path / clip_id
        inputs = extract_clip(bundle.params, video, work, tuple(bundle.ensemble.inputs))
        answers[clip_id] = clip_prediction(bundle.ensemble, inputs)
    evaluated = pd.read_csv(source / "predictions.csv", dtype={"clip_id": str})
    summary = served_vs_stored(answers, evaluated.rename(columns={"clip_id": "Filename"}), 1e-3)
    assert summary["passed"] and summary["compared"] == len(clips), summary
    for clip_id, answer in answers.items():
        shares = [m["share"] for m in answer["inputs"].values() if m["present"]]
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
        assert set(answer["members"]) == {"mimicmetrics", "fuxi"}
        for name, member in answer["members"].items():
            stored = pd.read_csv(
                params.ensemble.members_out / name / "predictions.csv", dtype={"clip_id": str}
            ).set_index("clip_id")
            served = [member["intensities"][e] for e in EMOTIONS]
            np.testing.assert_allclose(served, stored.loc[clip_id, list(EMOTIONS)], atol=1e-3)
            assert member["weights"] == pytest.approx(report["members"][name]["weights"], abs=1e-6)


def test_the_package_stage_bento_serves_the_combination(combined, tmp_path):
    """``mimicflow stage package`` with a combination, then ``bentoml serve`` of its bento: a
    test clip's answer is the combine stage's prediction (1e-3), with its members block."""
    import bentoml

    from .helpers.bento import bento_env, package, serve

    params, report = combined
    env = bento_env(tmp_path)
    source = params.ensemble.combined_out
    summary = package(tmp_path, params.models.dir, tmp_path / "none", env, combined=source)
    assert summary["model_version"] == report["version"]
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet").set_index("clip_id")
    clip_id = next(c for c in manifest.index if manifest.loc[c, "split"] == "test")
    evaluated = pd.read_csv(source / "predictions.csv", dtype={"clip_id": str}).set_index("clip_id")
    with (
        serve(summary["bento"], tmp_path, env, timeout=600) as url,
        bentoml.SyncHTTPClient(url, timeout=300) as client,
    ):
        answer = client.predict(file=Path(params.data.root) / manifest.loc[clip_id, "video_path"])
    served = [answer["intensities"][e] for e in EMOTIONS]
    np.testing.assert_allclose(served, evaluated.loc[clip_id, list(EMOTIONS)], atol=1e-3)
    assert answer["model_version"] == report["version"]
    assert set(answer["members"]) == {"mimicmetrics", "fuxi"}
