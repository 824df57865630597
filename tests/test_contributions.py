"""Per-prediction input contributions, measured on a real trained ensemble: what the six
intensities lose when one input is removed, and that change's share of the clip's total."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mimicflow.cli import app
from mimicflow.features.store import FeatureTable
from mimicflow.training.ensemble import contribution_shares, load_ensemble

INPUTS = ("audio", "visual", "text")  # what the session's ensemble is trained on


def _clip(params, clip_id: str) -> Path:
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet").set_index("clip_id")
    return Path(params.data.root) / manifest.loc[clip_id, "video_path"]


def _stored(params, clip_id: str) -> dict:
    return {m: FeatureTable.open(params.features.out / m).get(clip_id) for m in INPUTS}


@pytest.fixture(scope="module")
def full_clip(featured) -> str:
    """A clip with a face, audio and speech (every input in its stored features)."""
    params, _ = featured
    manifest = pd.read_parquet(params.validate_.out / "manifest.parquet")
    return next(
        c for c in manifest["clip_id"] if all(mask.any() for _, mask in _stored(params, c).values())
    )


def _without_audio(source: Path, target: Path) -> Path:
    """``source``'s video stream alone, remuxed (same frames: the face is still there)."""
    with av.open(str(source)) as given, av.open(str(target), "w") as written:
        stream = written.add_stream_from_template(given.streams.video[0])
        for packet in given.demux(given.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                written.mux(packet)
    return target


@pytest.fixture(scope="module")
def predicted(featured, ensemble_dir, full_clip, tmp_path_factory) -> dict[str, dict]:
    """``mimicflow predict --json`` on a clip with face and speech and on that clip without
    its audio track."""
    params, _ = featured
    silent = tmp_path_factory.mktemp("silent") / "silent.mp4"
    clips = {
        "full": _clip(params, full_clip),
        "silent": _without_audio(_clip(params, full_clip), silent),
    }
    result = CliRunner().invoke(
        app, ["predict", *map(str, clips.values()), "--json", "--ensemble", str(ensemble_dir)]
    )
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output.strip().splitlines()[-1])
    return dict(zip(clips, answers))


def test_a_clip_with_face_and_speech_gets_differing_contributions_that_sum_to_one(predicted):
    inputs = predicted["full"]["inputs"]
    assert all(m["present"] for m in inputs.values())
    assert all(m["change"] > 0 for m in inputs.values()), inputs
    assert sum(m["share"] for m in inputs.values()) == pytest.approx(1.0, abs=1e-5)
    assert len({round(m["share"], 3) for m in inputs.values()}) == len(inputs), inputs


def test_an_absent_input_contributes_nothing(predicted):
    inputs = predicted["silent"]["inputs"]
    for absent in ("audio", "text"):  # no audio track: no speech either
        assert not inputs[absent]["present"]
        assert inputs[absent]["change"] == 0 and inputs[absent]["share"] == 0
    assert inputs["visual"]["present"] and inputs["visual"]["share"] == pytest.approx(1.0)
    assert predicted["silent"]["intensities"] != predicted["full"]["intensities"]


def test_the_change_is_what_the_prediction_loses_without_the_input(
    featured, ensemble_dir, full_clip
):
    """Recomputed by hand from the feature store: the prediction with each input's mask
    all False, against the full prediction."""
    params, _ = featured
    ensemble = load_ensemble(ensemble_dir)
    assert ensemble.inputs == list(INPUTS)
    clip = _stored(params, full_clip)
    full = ensemble.predict([clip])[0]
    (changes,) = ensemble.ablation_changes([clip])
    for name, (values, mask) in clip.items():
        without = ensemble.predict([clip | {name: (values, np.zeros_like(mask))}])[0]
        assert changes[name] == pytest.approx(float(np.abs(full - without).mean()), abs=1e-6)
    (shares,) = ensemble.contributions([clip])
    assert shares == pytest.approx({m: c / sum(changes.values()) for m, c in changes.items()})


def test_shares_when_nothing_changes_are_equal_over_the_present_inputs():
    shares = contribution_shares(
        {"audio": 0.0, "visual": 0.0, "text": 0.0}, {"audio": True, "visual": True, "text": False}
    )
    assert shares == {"audio": 0.5, "visual": 0.5, "text": 0.0}
